"""Shared fixtures: one real Kafka broker per session, fresh topics and groups per test.

``kafka`` (session) starts the local broker of :mod:`tools.kafka_broker` on free ports with a
temporary data dir, or, when ``ATOGUARD_TEST_BOOTSTRAP=host:port`` is set (``.ci/run`` does),
uses the broker that answers there and leaves it running. Tests never share topics or consumer
groups: ``topic_prefix`` is new for every test (``t<8 hex>.``), ``fresh_topics`` creates the
whole registry under it, ``group_id`` is new too.

Every test that uses ``kafka`` (directly or through another fixture) is marked ``kafka``, so
``pytest -m "not kafka"`` runs the rest without a broker.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tools.kafka_broker import Broker, BrokerConfig, BrokerError, answers
from streams.deadletter import prime_metadata
from streams.settings import Settings
from streams.topics import create_topics

TEST_PARTITIONS = 3  # enough to see partitioning at work, cheap to create

# The tests are development runs: `atoguard run` may use the built-in development keys
# (streams/security.py); tests of the refusal clear it in their own subprocess environment.
os.environ.setdefault("ATOGUARD_DEV", "1")


@dataclass(frozen=True)
class KafkaUnderTest:
    """The broker the tests talk to; ``broker`` is ``None`` when it was already running."""

    bootstrap_servers: str
    broker: Broker | None


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaUnderTest]:
    external = os.environ.get("ATOGUARD_TEST_BOOTSTRAP", "").strip()
    if external:
        if not answers(external, timeout_s=10):
            pytest.fail(f"ATOGUARD_TEST_BOOTSTRAP={external} is set but no Kafka answers there")
        yield KafkaUnderTest(external, None)
        return
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    broker = Broker(BrokerConfig.from_env(
        port=port, controller_port=controller_port, heap="512m",
        data_dir=tmp_path_factory.mktemp("kafka"),
    ))
    try:
        broker.start(timeout_s=120)
    except BrokerError as exc:
        pytest.fail(f"could not start the test broker: {exc}")
    try:
        yield KafkaUnderTest(broker.config.bootstrap, broker)
    finally:
        broker.stop()


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """``free_port()``: a TCP port nothing listens on right now."""
    return free_port


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, e.g. ``t1a2b3c4d.``."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def group_id() -> str:
    """A consumer group id no other test uses."""
    return f"g{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kafka_settings(kafka: KafkaUnderTest, topic_prefix: str) -> Settings:
    """Settings pointing at the test broker with this test's own prefix (no topics yet)."""
    return Settings(bootstrap_servers=kafka.bootstrap_servers, topic_prefix=topic_prefix,
                    partitions=TEST_PARTITIONS)


@pytest.fixture
def fresh_topics(kafka_settings: Settings) -> Settings:
    """Every registry topic created under this test's prefix; returns the settings to use."""
    create_topics(kafka_settings)
    return kafka_settings


@pytest.fixture
def producer(kafka: KafkaUnderTest) -> Iterator:
    """A kafka-python producer of raw bytes (acks=all, idempotent: the 3.x defaults)."""
    from kafka import KafkaProducer

    client = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, linger_ms=0)
    yield client
    client.close(timeout=10)


@pytest.fixture
def consumer_factory(kafka: KafkaUnderTest, group_id: str) -> Iterator[Callable[..., object]]:
    """``consumer_factory(*topics, **overrides)``: a raw-bytes consumer in this test's group,
    reading from the earliest offset, committing only when told to; closed after the test."""
    from kafka import KafkaConsumer

    made: list[KafkaConsumer] = []

    def make(*topics: str, **overrides: object) -> KafkaConsumer:
        options: dict[str, object] = {
            "bootstrap_servers": kafka.bootstrap_servers, "group_id": group_id,
            "auto_offset_reset": "earliest", "enable_auto_commit": False,
            "consumer_timeout_ms": 10_000,
        }
        options.update(overrides)
        consumer = KafkaConsumer(*topics, **options)
        made.append(consumer)
        prime_metadata(consumer)  # see its docstring: avoids a kafka-python rebalance race
        return consumer

    yield make
    for consumer in made:
        consumer.close()
