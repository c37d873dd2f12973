"""The local broker and the topic registry against a real Kafka: status, idempotent topic
creation, and events that round-trip keyed by account."""

from __future__ import annotations

import orjson
import pytest

from streams import cli
from tools.kafka_broker import Broker, BrokerConfig, answers
from streams.settings import Settings
from streams.topics import create_topics, registry, topic_name

pytestmark = pytest.mark.kafka


def test_status_says_down_when_nothing_answers(free_port, tmp_path):
    broker = Broker(BrokerConfig(port=free_port(), data_dir=tmp_path))

    status = broker.status()

    assert not status.up and status.pid is None
    assert status.describe().startswith("down")


def test_cli_status_exits_3_when_down_and_0_when_up(kafka, free_port, tmp_path, capsys):
    down = cli.main(["broker", "status", "--port", str(free_port()), "--data-dir", str(tmp_path)])
    port = kafka.bootstrap_servers.rpartition(":")[2]
    up = cli.main(["broker", "status", "--port", port, "--data-dir", str(tmp_path)])

    assert (down, up) == (3, 0)
    assert "up:" in capsys.readouterr().out


def test_status_says_up_while_the_session_broker_runs(kafka):
    assert answers(kafka.bootstrap_servers)
    if kafka.broker is not None:
        status = kafka.broker.status()
        assert status.up and status.pid is not None


def test_start_is_idempotent_and_stop_leaves_nothing_running(kafka, free_port, tmp_path):
    # `kafka` first, so a session broker that cannot start fails here with its own message.
    broker = Broker(BrokerConfig.from_env(port=free_port(), data_dir=tmp_path, heap="384m"))
    try:
        first = broker.start(timeout_s=120)
        again = broker.start()
        assert first > 0 and again == 0.0
        assert broker.status().up
    finally:
        stopped = broker.stop()

    assert stopped and broker.pid() is None
    assert not broker.config.pid_file.exists()
    assert not broker.status().up
    assert broker.stop() is False


def test_topics_created_twice_report_exists_the_second_time(kafka_settings: Settings):
    names = [spec.name(kafka_settings.topic_prefix) for spec in registry(kafka_settings)]

    first = create_topics(kafka_settings)
    second = create_topics(kafka_settings)

    assert first == {name: "created" for name in names}
    assert second == {name: "exists" for name in names}


def test_created_topics_have_the_registry_partition_count(fresh_topics: Settings):
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=fresh_topics.servers())
    try:
        described = admin.describe_topics([topic_name("device", fresh_topics.topic_prefix),
                                           topic_name("dead-letter", fresh_topics.topic_prefix)])
    finally:
        admin.close()

    assert [len(t["partitions"]) for t in described] == [fresh_topics.partitions] * 2


def test_events_round_trip_keyed_by_account(fresh_topics: Settings, producer, consumer_factory):
    topic = topic_name("device", fresh_topics.topic_prefix)
    events = [
        {"event_id": f"e{i}", "account_id": account, "ts": 1764000000000 + i,
         "kind": "login_success", "device_id": "d1", "ip": "203.0.113.7"}
        for i, account in enumerate(["a1", "a2", "a1", "a3", "a1"])
    ]
    for event in events:
        producer.send(topic, key=event["account_id"].encode(), value=orjson.dumps(event))
    producer.flush()

    received = list(_take(consumer_factory(topic), len(events)))

    assert sorted(orjson.loads(m.value)["event_id"] for m in received) == [e["event_id"] for e in events]
    assert all(m.key == orjson.loads(m.value)["account_id"].encode() for m in received)
    partitions_of_a1 = {m.partition for m in received if m.key == b"a1"}
    assert len(partitions_of_a1) == 1, "one account's events share a partition"
    a1_order = [orjson.loads(m.value)["event_id"] for m in received if m.key == b"a1"]
    assert a1_order == ["e0", "e2", "e4"], "and keep their order"


def _take(consumer, count: int):
    for n, message in enumerate(consumer, start=1):
        yield message
        if n == count:
            return
