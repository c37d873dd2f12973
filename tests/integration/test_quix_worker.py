"""The Quix runtime (``atoguard run``, the default) against the real broker.

The reference is ``atoguard replay`` of the same input sorted by ``ts``. The worker is started
after every event has been produced (a catch-up run, as after an outage), so it is the event-time
order of :mod:`streams.runtimes.eventtime`, not the order of arrival, that makes the decisions
equal. Outputs are read with ``isolation.level=read_committed``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from detectors import contract as c
from detectors.config import DEFAULT_DETECTORS, Config
from streams.replay import replay_file
from streams.topics import topic_name

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.kafka

#: a simulated population with attacks enough to give a few dozen commands
SIMULATE = ["--accounts", "300", "--days", "5", "--seed", "7", "--rate-credential-stuffing", "0.03",
            "--rate-phishing-takeover", "0.03", "--rate-sim-swap-payout", "0.03", "--rate-session-hijack", "0.03"]

def _rules() -> tuple[str, ...]:
    """The stateless per-account rules: no online model (a crash restarts those from their last
    snapshot, which this test does not cover) and no cross-account facts (held in memory)."""
    from detectors.base import Rule
    from detectors.registry import build_detectors

    dets = build_detectors(Config(shards=1), 0)
    return tuple(d.name for d in dets if isinstance(d, Rule) and d.name not in ("cross_account", "login_burst"))


RULES = _rules()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> list[dict]:
    """The simulated events, in the simulator's file order."""
    out = tmp_path_factory.mktemp("sim") / "events.jsonl"
    done = subprocess.run([sys.executable, "-m", "streams.cli", "simulate", *SIMULATE, "--out", str(out),
                           "--labels", str(out.with_suffix(".labels")), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = []
    for raw in out.read_bytes().splitlines():
        rec = orjson.loads(raw)
        if rec.get("topic") in c.INPUT_TOPICS:
            lines.append(rec)
    return lines


def replay_of(lines: list[dict], tmp_path: Path, cfg: Config) -> dict[str, list[dict]]:
    """What ``atoguard replay`` writes for ``lines``: {logical topic: [values]}."""
    src, out = tmp_path / "replay-in.jsonl", tmp_path / "replay-out.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    replay_file(src, out, cfg, partitions=cfg.shards)
    result: dict[str, list[dict]] = {t: [] for t in (*c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS_OUT)}
    for line in out.read_bytes().splitlines():
        rec = orjson.loads(line)
        result[rec["topic"]].append(rec["value"])
    return result


def command_ids(values: list[dict]) -> list[str]:
    return [v["command_id"] for v in values]


def wait_handled(worker, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.handled() < n:
        assert time.monotonic() < deadline, f"handled {worker.handled()} of {n}\n{worker.log_text()[-3000:]}"
        time.sleep(0.2)


def test_catch_up_run_decides_as_ts_sorted_replay(fresh_topics, simulated, quix_worker, kit, tmp_path):
    settings = fresh_topics
    expected = replay_of(kit.ts_sorted(simulated), tmp_path, Config(shards=settings.partitions))
    assert len(expected[c.COMMANDS]) >= 10  # the population is not trivial

    # every event first, in file order, with two poison pills in the middle of the device topic
    half = len(simulated) // 2
    poison = [{"topic": c.DEVICE, "key": "acct-x", "raw": b"\x00not json"},
              {"topic": c.DEVICE, "key": "acct-y", "raw": orjson.dumps(
                  {"event_id": "x", "account_id": "acct-z", "ts": 1, "kind": "login_success"})}]
    targets = kit.produce_lines(settings, simulated[:half] + poison + simulated[half:])
    w = quix_worker(settings, "w1", "--instance-id", "w1")
    wait_handled(w, len(simulated) + len(poison))
    kit.wait_committed(settings, f"{settings.topic_prefix}worker", targets, workers=(w,))

    commands = [orjson.loads(m.value()) for m in kit.read_committed(settings, c.COMMANDS)]
    # the same commands, byte for byte, none repeated
    assert sorted(command_ids(commands)) == sorted(command_ids(expected[c.COMMANDS]))
    want = {v["command_id"]: v for v in expected[c.COMMANDS]}
    assert all(v == want[v["command_id"]] for v in commands)
    alert_msgs = kit.read_committed(settings, c.ALERTS)
    alerts = [orjson.loads(m.value()) for m in alert_msgs]
    assert sorted(a["finding_info"]["uid"] for a in alerts) == \
        sorted(a["finding_info"]["uid"] for a in expected[c.ALERTS])
    for m in alert_msgs:  # CloudEvents binary-mode headers
        headers = {k: v for k, v in m.headers()}
        assert headers["ce_id"].decode() == orjson.loads(m.value())["finding_info"]["uid"]
        assert {"ce_specversion", "ce_source", "ce_type", "ce_time"} <= set(headers)

    letters = kit.read_committed(settings, c.DEAD_LETTER)
    device = topic_name(c.DEVICE, settings.topic_prefix)
    got = sorted((orjson.loads(m.value())["reason"], orjson.loads(m.value())["topic"], m.key()) for m in letters)
    assert got == [(c.KEY_MISMATCH, device, b"acct-y"), (c.NOT_JSON, device, b"acct-x")]
    for m in letters:  # the real partition and offset of the bad input
        v = orjson.loads(m.value())
        assert v["partition"] is not None and v["offset"] is not None
        assert v["offset"] <= targets[f"{device}:{v['partition']}"]

    text = w.metrics()
    assert 'atoguard_dead_letters_total{topic="device",reason="NOT_JSON"} 1.0' in text
    assert "atoguard_receive_to_output_seconds_bucket" in text and "atoguard_consumer_lag{" in text
    decisions = [orjson.loads(m.value()) for m in kit.read_committed(settings, c.DECISIONS)]
    assert sorted(d["decision_id"] for d in decisions) == sorted(d["decision_id"] for d in expected[c.DECISIONS])
    assert w.stop() == 0  # SIGTERM: a clean stop


def test_kill_9_and_restart_lose_and_repeat_nothing(fresh_topics, simulated, quix_worker, kit, tmp_path):
    settings = fresh_topics
    policy = tmp_path / "policy.toml"
    policy.write_text("detectors = [" + ", ".join(f'"{d}"' for d in RULES) + "]\n")
    expected = replay_of(kit.ts_sorted(simulated), tmp_path, Config(shards=settings.partitions, detectors=RULES))
    first_part, second_part = simulated[: len(simulated) * 2 // 3], simulated[len(simulated) * 2 // 3:]
    kit.produce_lines(settings, first_part)
    args = ("--instance-id", "w1", "--config", str(policy))
    first = quix_worker(settings, "w1", *args)
    wait_handled(first, len(first_part) // 2)
    first.kill()  # mid-run: a transaction is open, some outputs produced but not committed
    assert first.proc.returncode == -9

    targets = kit.produce_lines(settings, second_part)
    again = quix_worker(settings, "w1-again", *args, data="w1")
    started = again.started_at
    while again.handled() == 0:  # the predecessor's transaction is fenced (same transactional.id)
        assert time.monotonic() - started < 60, again.log_text()[-3000:]
        time.sleep(0.05)
    resumed = time.monotonic() - started
    kit.wait_committed(settings, f"{settings.topic_prefix}worker", targets, workers=(again,))
    print(f"\nrestart -> first event processed {resumed:.1f} s, -> all committed {time.monotonic() - started:.1f} s")

    commands = [orjson.loads(m.value()) for m in kit.read_committed(settings, c.COMMANDS)]
    ids = command_ids(commands)
    assert len(ids) == len(set(ids)), "a command was committed twice"
    assert sorted(ids) == sorted(command_ids(expected[c.COMMANDS]))
    uncommitted = kit.read_committed(settings, c.COMMANDS, isolation="read_uncommitted")
    print(f"commands: {len(ids)} committed, {len(uncommitted)} written (aborted ones included)")
