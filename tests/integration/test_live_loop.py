"""The closed loop live, on the real broker: the worker (``atoguard run``) and the live account
service (:mod:`simulator.account_service`) answer each other as ``atoguard replay --respond``
plays it offline.

A scripted stream: two accounts with ten quiet days each; then on ``a1`` a thief signs in on a
new device, changes the password, adds a payee and tries to drain the account; on ``a2`` the
holder does the very same things. The worker steps both up; the service answers for the person
acting: the thief fails (``challenge_failed``), so the worker freezes ``a1`` on that answer
(trigger ``ch-<command_id>``) and the thief's cash-out is withheld; the holder passes. The
commands read back (read_committed) are those of the closed-loop replay of the same input.
"""

from __future__ import annotations

import io

import orjson
import pytest

from detectors import contract as c
from detectors.config import Config
from detectors.events import to_dict
from simulator.account_service import AccountService, publish_file
from simulator.generate import KafkaSink
from streams.replay import replay_file
from streams.respond import load_people
from tests.test_policy import takeover_stream

pytestmark = pytest.mark.kafka

HOUR_MS = 3_600_000
THIEF = ["a1-x1", "a1-x2", "a1-x3", "a1-x4"]


def _rules() -> tuple[str, ...]:
    """The per-account rules: no online model and no cross-account facts, whose live state
    depends on how the two accounts' events interleave."""
    from detectors.base import Rule
    from detectors.registry import build_detectors

    dets = build_detectors(Config(shards=1), 0)
    return tuple(d.name for d in dets if isinstance(d, Rule) and d.name not in ("cross_account", "login_burst"))


@pytest.fixture
def scripted(tmp_path):
    """The events file (ts order) and the labels file of the scripted stream."""
    events = sorted(takeover_stream("a1") + takeover_stream("a2", start=takeover_stream("a1")[0].ts + HOUR_MS // 2),
                    key=lambda e: e.ts)
    path, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"topic": e.topic, "value": to_dict(e)}) + b"\n" for e in events))
    first = next(e for e in events if e.event_id == THIEF[0])
    labels.write_bytes(orjson.dumps({
        "account_id": "a1", "scenario": "phishing_takeover", "label": "ato", "start_ts": first.ts,
        "end_ts": first.ts + 3 * 60_000, "first_loss_ts": first.ts + 3 * 60_000, "event_ids": THIEF,
        "attacker_passes": []}) + b"\n")
    return path, labels


def test_the_live_account_service_answers_the_worker_as_the_closed_loop_replay(
        fresh_topics, quix_worker, kit, scripted, tmp_path):
    settings = fresh_topics
    events, labels = scripted
    rules = _rules()
    policy = tmp_path / "policy.toml"
    policy.write_text("detectors = [" + ", ".join(f'"{d}"' for d in rules) + "]\n")
    cfg = Config(shards=settings.partitions, detectors=rules)

    # offline: the closed-loop replay of the same input
    replay_out = tmp_path / "transcript.jsonl"
    replay_file(events, replay_out, cfg, respond=labels)
    offline = [orjson.loads(line) for line in replay_out.read_bytes().splitlines()]
    expected = [m["value"] for m in offline if m["topic"] == c.COMMANDS]

    # live: the worker, and the account service sending the events and answering
    quix_worker(settings, "w1", "--config", str(policy))
    transcript = io.BytesIO()
    service = AccountService(load_people(str(labels)), settings.bootstrap_servers, settings.topic_prefix,
                             cfg.keys.command_hmac, worker_group=f"{settings.topic_prefix}worker",
                             transcript=transcript)
    try:
        sink = KafkaSink(settings.bootstrap_servers, settings.topic_prefix, service=service)
        publish_file(events, sink)
        assert service.finish(timeout_s=120), "the loop did not come to rest"
    finally:
        service.close()
    commands = [orjson.loads(m.value()) for m in kit.read_committed(settings, c.COMMANDS)]
    answers = [orjson.loads(m.value()) for m in kit.read_committed(settings, c.DEVICE)
               if m.value().startswith(b'{"event_id":"ch-')]

    # the thief's step-up, failed, then the freeze triggered by that answer
    step_up = next(v for v in commands if v["account_id"] == "a1" and v["action"] == c.STEP_UP)
    assert step_up["trigger_event_id"] == "a1-x3"
    failed = next(a for a in answers if a["command_id"] == step_up["command_id"])
    assert failed["kind"] == c.CHALLENGE_FAILED and failed["event_id"] == "ch-" + step_up["command_id"]
    assert failed["ts"] == step_up["issued_at"] + 30_000 and failed["method"] == step_up["methods"][0]
    freeze = next(v for v in commands if v["account_id"] == "a1" and v["action"] == c.FREEZE)
    assert freeze["trigger_event_id"] == "ch-" + step_up["command_id"]
    # the holder of a2 passes and is not frozen; the thief's cash-out never reached the worker
    assert {a["kind"] for a in answers if a["account_id"] == "a2"} == {c.CHALLENGE_PASSED}
    assert not any(v["account_id"] == "a2" and v["action"] == c.FREEZE for v in commands)
    sent = [orjson.loads(line) for line in transcript.getvalue().splitlines()]
    assert {"topic": "withheld", "value": {"event_id": "a1-x4"}} in sent
    assert service.stats.bad_signatures == 0

    # the very commands of the closed-loop replay, none repeated
    assert sorted(v["command_id"] for v in commands) == sorted(v["command_id"] for v in expected)
    want = {v["command_id"]: v for v in expected}
    assert all(v == want[v["command_id"]] for v in commands)
    # and the same inputs: the events sent, the answers, the withheld lines
    assert sorted(map(orjson.dumps, sent)) == sorted(
        orjson.dumps(m) for m in offline if m["topic"] not in (*c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS_OUT))
