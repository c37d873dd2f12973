"""A poison pill in the middle of a stream lands in the dead-letter topic, with its original
bytes, topic, partition, offset and reason, while the messages around it are processed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import orjson
import pytest

from detectors import contract as c
from streams.deadletter import pump, route
from streams.settings import Settings
from streams.topics import input_topic_names, topic_name

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "v1" / "dead-letter.schema.json"


def login(event_id: str, account: str = "a1") -> bytes:
    return orjson.dumps({"event_id": event_id, "account_id": account, "ts": 1764000000000,
                         "kind": "login_success"})


# key, value, expected dead-letter reason (None: accepted). One account, so one partition,
# so the order below is the order the pipeline sees.
STREAM = [
    (b"a1", login("e1"), None),
    (b"a1", login("e2"), None),
    (b"a1", b"\x00not json at all", c.NOT_JSON),
    (b"a1", login("e3"), None),
    (b"a1", login("e4", account="someone-else"), c.KEY_MISMATCH),
    (b"a1", b"[1, 2, 3]", c.NOT_OBJECT),
    (b"a1", login("e5"), None),
]


def message(topic: str, value: bytes, key: bytes | None = b"a1", offset: int = 0):
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=key, value=value)


def test_route_picks_the_schema_by_logical_name_and_keeps_the_real_topic():
    record, dead = route(message("t1.device", login("e1")), prefix="t1.")
    assert dead is None and record.event_id == "e1"

    record, dead = route(message("t1.device", b"{", offset=9), prefix="t1.")
    assert record is None
    assert (dead.topic, dead.offset, dead.reason) == ("t1.device", 9, c.NOT_JSON)


def test_route_dead_letters_a_topic_outside_the_contract():
    record, dead = route(message("t1.payments", login("e1")), prefix="t1.")
    assert record is None and dead.reason == c.UNKNOWN_TOPIC


@pytest.mark.kafka
def test_poison_pills_go_to_dead_letter_and_the_stream_goes_on(
        fresh_topics: Settings, producer, consumer_factory):
    prefix = fresh_topics.topic_prefix
    device = topic_name(c.DEVICE, prefix)
    for key, value, _ in STREAM:
        producer.send(device, key=key, value=value)
    producer.flush()

    accepted = []
    consumer = consumer_factory(*input_topic_names(fresh_topics))
    stats = pump(consumer, producer, accepted.append, prefix=prefix,
                 max_messages=len(STREAM), idle_timeout_s=20)

    bad = [(value, reason) for _, value, reason in STREAM if reason]
    assert [r.event_id for r in accepted] == ["e1", "e2", "e3", "e5"]
    assert (stats.consumed, stats.accepted, stats.dead_lettered) == (len(STREAM), 4, len(bad))

    letters = _read_all(consumer_factory, topic_name(c.DEAD_LETTER, prefix), len(bad))
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    values = [orjson.loads(m.value) for m in letters]
    for value in values:
        validator.validate(value)
    assert [(base64.b64decode(v["value_b64"]), v["reason"]) for v in values] == bad
    assert all(m.key == b"a1" and v["key_b64"] == "YTE=" for m, v in zip(letters, values))
    assert all(v["topic"] == device for v in values)
    assert [v["offset"] for v in values] == [2, 4, 5], "the offsets of the poison pills"

    tp = _partition_of(consumer, device)
    assert consumer.committed(tp) == len(STREAM), "committed past the poison pills"


def _partition_of(consumer, topic: str):
    """The partition of ``topic`` that received data (one account: one partition)."""
    ends = consumer.end_offsets([tp for tp in consumer.assignment() if tp.topic == topic])
    return next(tp for tp, end in ends.items() if end > 0)


def _read_all(consumer_factory, topic: str, count: int):
    consumer = consumer_factory(topic, group_id=None)
    out = []
    for msg in consumer:
        out.append(msg)
        if len(out) == count:
            break
    out.sort(key=lambda m: m.offset)
    return out
