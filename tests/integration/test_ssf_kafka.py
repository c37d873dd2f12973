"""Two atoguard deployments on the real broker, A transmitting to B over real HTTP: a message
written to A's ``signals-out`` arrives in B's ``signals``, keyed and partitioned by B's account."""

from __future__ import annotations

import json
import time

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from detectors import contract as c
from streams.settings import Settings
from streams.ssf.receiver import KafkaWriter
from streams.ssf.transmitter import POLL, PUSH
from streams.topics import create_topics, spec, topic_name
from tests.ssf_helpers import PartyA, PartyB, wait_for

pytestmark = pytest.mark.kafka


def _topics(settings: Settings) -> None:
    create_topics(settings, [spec(c.SIGNALS, settings), spec(c.SIGNALS_OUT, settings)])


def _read(settings: Settings, topic: str, n: int, timeout_s: float = 30.0) -> list:
    consumer = KafkaConsumer(topic, **settings.client_options(10.0), group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        time.sleep(0.5)
        for batch in consumer.poll(timeout_ms=500).values():  # and nothing more
            records.extend(batch)
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize("method", [PUSH, POLL])
def test_a_signals_out_message_reaches_b_signals_over_http(kafka_settings, tmp_path, method):
    from dataclasses import replace

    settings_a = replace(kafka_settings, topic_prefix=kafka_settings.topic_prefix + "a.")
    settings_b = replace(kafka_settings, topic_prefix=kafka_settings.topic_prefix + "b.")
    _topics(settings_a)
    _topics(settings_b)
    a = PartyA(tmp_path, settings=settings_a, topic=topic_name(c.SIGNALS_OUT, settings_a.topic_prefix)).start()
    b = None
    try:
        writer = KafkaWriter(settings_b, topic_name(c.SIGNALS, settings_b.topic_prefix))
        if method == PUSH:
            b = PartyB(a, writer=writer).start()
            a.open_stream(PUSH, b.url)
        else:
            stream_id = a.open_stream(POLL)
            b = PartyB(a, writer=writer, poll_url=f"{a.url}/ssf/poll/{stream_id}").start()
        producer = KafkaProducer(**settings_a.client_options(10.0))
        message = {"event_id": "out-1", "account_id": "acct-A1", "ts": 1_760_000_000_000, "kind": "account_disabled",
                   "reason": "hijacking", "command_id": "cmd-1", "contract_version": 3}
        producer.send(topic_name(c.SIGNALS_OUT, settings_a.topic_prefix), key=b"acct-A1", value=orjson.dumps(message)).get(10)
        producer.close()
        [record] = _read(settings_b, topic_name(c.SIGNALS, settings_b.topic_prefix), 1)
        value = json.loads(record.value)
        assert record.key == b"acct-B9" and value["account_id"] == "acct-B9"
        assert (value["kind"], value["reason"], value["issuer"]) == ("account_disabled", "hijacking", a.url)
        from kafka.partitioner.default import murmur2
        assert record.partition == (murmur2(b"acct-B9") & 0x7FFFFFFF) % settings_b.partitions  # Kafka's default
        wait_for(lambda: a.tx.offsets.pending() == 0, what="A finished the message")
    finally:
        if b is not None:
            b.stop()
        a.stop()
