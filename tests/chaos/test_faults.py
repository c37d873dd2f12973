"""The fault scenarios of issue #13 against the real broker, default runtime (Quix, exactly once).

Every scenario ends with the verifier (tests/chaos/conftest.py): the committed commands and
alerts are exactly those of the uninterrupted reference run, none twice, and the final state of
every account equal.
"""

from __future__ import annotations

import base64
import random
import shutil
import time

import orjson
import pytest

from detectors import contract as c
from streams.topics import topic_name
from tests.chaos.conftest import collect, compare, report, state_difference

pytestmark = [pytest.mark.kafka, pytest.mark.chaos]


def test_kill_9_five_times_with_restarts(chaos, chaos_input, reference):
    run = chaos()
    run.produce(chaos_input)
    n = len(chaos_input)
    w = run.start("w1")
    for _ in range(5):
        run.wait_handled(w, n // 8)
        died = run.kill(w)  # a transaction is open: outputs written, not committed
        w = run.start("w1")  # same --instance-id: fences the dead worker's transaction at once
        run.wait_resumed(died, before=0)
    run.wait_done()
    run.finish()
    got = collect(run.settings, run.app_id)
    report("kill-9 x5", n, run.handled(), reference, got, run.resumes)
    diff = compare(reference, got)
    assert diff.equal, (diff, [state_difference(reference, got, k) for k in diff.state_differs[:3]])
    assert got.dead_letters == []


def test_scale_1_2_3_1_while_events_flow(chaos, chaos_input, reference):
    run = chaos()
    n = len(chaos_input)
    chunks = [chaos_input[i * n // 4:(i + 1) * n // 4] for i in range(4)]
    run.produce(chunks[0])
    w1 = run.start("w1")
    run.wait_handled(w1, len(chunks[0]) // 2)
    for step, name in ((1, "w2"), (2, "w3")):
        run.produce(chunks[step])
        before = sum(x.handled() for x in run.live())
        joined = time.monotonic()
        run.start(name)
        run.wait_resumed(joined, before=before)
        time.sleep(3)
    run.produce(chunks[3])
    for w in [x for x in run.live() if not x.name.startswith("w1")]:
        left = time.monotonic()
        before = sum(x.handled() for x in run.live() if x is not w)
        run.stop(w)  # a clean leave: its partitions go back to w1
        run.wait_resumed(left, before=before)
    run.wait_done()
    run.finish()
    got = collect(run.settings, run.app_id)
    report("scale 1-2-3-1", n, run.handled(), reference, got, run.resumes)
    diff = compare(reference, got)
    assert diff.equal, (diff, [state_difference(reference, got, k) for k in diff.state_differs[:3]])


@pytest.mark.parametrize("how", ["clean", "kill-9"])
def test_broker_restart_while_workers_run(how, chaos, chaos_input, reference, tmp_path):
    """The broker (one of our own, not the session's) stopped and started again mid-run."""
    from tests.conftest import free_port
    from tools.kafka_broker import Broker, BrokerConfig

    broker = Broker(BrokerConfig(port=free_port(), controller_port=free_port(), heap="512m",
                                 data_dir=tmp_path / "broker"))
    broker.start(timeout_s=120)
    try:
        run = chaos(broker.config.bootstrap)
        run.produce(chaos_input)
        w = run.start("w1")
        run.wait_handled(w, len(chaos_input) // 3)
        before = w.handled()
        down = time.monotonic()
        if how == "clean":
            broker.stop()
        else:
            import os
            import signal

            os.kill(broker.pid(), signal.SIGKILL)
            while broker.pid() is not None:
                time.sleep(0.05)
        time.sleep(5)
        broker.start(timeout_s=120)
        up = time.monotonic() - down
        # a worker whose outputs could not be delivered while the broker was away exits (Quix:
        # "Message timed out"), now or a little later: it is restarted as its supervisor would
        run.wait_resumed(down, before=before, timeout_s=300, restart="w1")
        run.wait_done(restart="w1")
        run.finish()
        got = collect(run.settings, run.app_id)
        report(f"broker restart ({how})", len(chaos_input), run.handled(), reference, got, run.resumes,
               broker_down_s=f"{up:.1f}", worker_restarts=str(len(run.workers) - 1))
        diff = compare(reference, got)
        assert diff.equal, (diff, [state_difference(reference, got, k) for k in diff.state_differs[:3]])
    finally:
        broker.stop()


def test_duplicates_and_out_of_order_within_lateness(chaos, chaos_input, reference):
    """Every event delivered twice, and the events of each account shuffled across topics within
    30 s of event time. A copy within ``dedup_hours`` of the partition's stream time is dropped as a
    duplicate; an older one takes the late path (dead-lettered ``late``): the second delivery
    comes after the whole input, so most copies are late."""
    run = chaos()
    rng = random.Random(5)
    keyed = [(r["value"]["ts"] + rng.randint(0, 30_000), i, r) for i, r in enumerate(chaos_input)]
    shuffled = [r for _, _, r in sorted(keyed, key=lambda t: (t[0], t[1]))]
    run.produce(shuffled)
    w = run.start("w1")
    run.produce(chaos_input)  # the same events again, while it runs
    run.wait_done()
    metrics = w.metrics()
    run.finish()
    got = collect(run.settings, run.app_id)
    dups = _metric_sum(metrics, "atoguard_duplicates_total")
    late = _metric_sum(metrics, "atoguard_late_events_total")
    report("duplicates + out of order", 2 * len(chaos_input), run.handled(), reference, got, run.resumes,
           duplicates_dropped=int(dups), late_counted=int(late))
    assert dups > 0 and dups + late == len(chaos_input)
    assert {d["reason"] for d in got.dead_letters} <= {c.LATE} and len(got.dead_letters) == late
    diff = compare(reference, got)
    assert diff.equal, (diff, [state_difference(reference, got, k) for k in diff.state_differs[:3]])


def test_poison_one_percent_in_every_input_topic(chaos, chaos_input, reference):
    run = chaos()
    rng = random.Random(9)
    lines, poison = [], []
    for r in chaos_input:
        lines.append(r)
        if rng.random() < 0.01:
            raw = rng.choice([b"\x00\xffnot json", b'{"ts": "soon"}', b"[1, 2]",
                              orjson.dumps({**r["value"], "account_id": "someone-else"})])
            bad = {"topic": r["topic"], "key": r["value"]["account_id"], "raw": raw}
            lines.append(bad)
            poison.append(bad)
    for t in c.INPUT_TOPICS[:3]:  # device, location, transaction at least
        assert any(p["topic"] == t for p in poison)
    run.produce(lines)
    run.start("w1")
    run.wait_done()
    run.finish()
    got = collect(run.settings, run.app_id)
    report("poison 1%", len(lines), run.handled(), reference, got, run.resumes, poison=len(poison),
           dead_letters=len(got.dead_letters))
    diff = compare(reference, got)
    assert diff.equal, (diff, [state_difference(reference, got, k) for k in diff.state_differs[:3]])
    want = sorted((topic_name(p["topic"], run.settings.topic_prefix), p["raw"]) for p in poison)
    have = sorted((d["topic"], base64.b64decode(d["value_b64"])) for d in got.dead_letters)
    assert have == want
    assert all(d["partition"] is not None and d["offset"] is not None and d["reason"] for d in got.dead_letters)
    assert len({(d["topic"], d["partition"], d["offset"]) for d in got.dead_letters}) == len(poison)


def test_local_state_deleted_while_down_is_rebuilt_from_the_changelog(chaos, chaos_input, reference):
    run = chaos()
    run.produce(chaos_input)
    w = run.start("w1")
    run.wait_handled(w, len(chaos_input) // 2)
    run.stop(w)
    shutil.rmtree(w.data_dir / "state")
    began = time.monotonic()
    run.start("w1")
    run.wait_resumed(began, before=0)
    run.wait_done()
    run.finish()
    got = collect(run.settings, run.app_id)
    report("state folder deleted", len(chaos_input), run.handled(), reference, got, run.resumes)
    diff = compare(reference, got)
    assert diff.equal, (diff, [state_difference(reference, got, k) for k in diff.state_differs[:3]])


def _metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))
