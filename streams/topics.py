"""The one registry of atoguard's Kafka topics, their idempotent creation, and the worker's
start-up check that the input topics exist and are co-partitioned (:func:`shards_for`).

Everything that names a topic reads it from here: the stream worker, ``atoguard topics
create``, the tests and the deployment files. Logical names (``device``, ``dead-letter``)
come from :mod:`detectors.contract`; a deployment puts its prefix before them
(:func:`topic_name`). Every message is keyed by the account id (UTF-8), so all topics share
one partition count (``Settings.partitions``): the input topics must, to be co-partitioned
by account, and the outputs do too so one account's decisions stay in order on one partition.

>>> topic_name("device")
'ato.device'
>>> [spec.logical for spec in registry(Settings())][:4]
['device', 'location', 'transaction', 'verdicts']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from detectors import contract as c
from detectors.config import Config
from streams.settings import Settings

__all__ = [
    "PartitionMismatch", "TopicSpec", "check_input_partitions", "create_topics", "input_topic_names",
    "new_topic_request", "registry", "shards_for", "spec", "topic_name",
]

log = logging.getLogger("atoguard.worker")

_DAY_MS = 24 * 60 * 60 * 1000

#: The account id, UTF-8; the dead-letter topic keeps the original key, whatever it was.
ACCOUNT_KEY = "account_id (UTF-8)"


@dataclass(frozen=True)
class TopicSpec:
    """One contract topic: what it carries and how it is configured.

    ``value_schema`` is a file name under ``schemas/v1/``. ``retention_ms`` of ``None`` keeps
    the broker's default; ``compacted`` chooses ``cleanup.policy=compact`` over ``delete``.
    """

    logical: str
    partitions: int
    key: str
    value_schema: str
    compacted: bool
    retention_ms: int | None
    description: str

    def name(self, prefix: str = "ato.") -> str:
        """The topic's name on the broker under ``prefix``."""
        return topic_name(self.logical, prefix)

    def configs(self) -> dict[str, str]:
        """The topic-level configuration sent when the topic is created."""
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


# logical name -> (schema file, retention, description); compaction is off for all of them:
# each is a log of facts or decisions, not a table of latest values.
_CATALOGUE: dict[str, tuple[str, int | None, str]] = {
    c.DEVICE: ("device.schema.json", 7 * _DAY_MS,
               "in: authentication and device/credential lifecycle events"),
    c.LOCATION: ("location.schema.json", 7 * _DAY_MS, "in: location fixes"),
    c.TRANSACTION: ("transaction.schema.json", 7 * _DAY_MS,
                    "in: money movement and credit events"),
    c.VERDICTS: ("verdict.schema.json", 90 * _DAY_MS,
                 "in: feedback from analysts and account holders"),
    c.COMMANDS: ("command.schema.json", 7 * _DAY_MS,
                 "out: step_up / freeze / unfreeze / close for the account service"),
    c.ALERTS: ("alert.schema.json", 30 * _DAY_MS,
               "out: OCSF detection findings for the security team"),
    c.DEAD_LETTER: ("dead-letter.schema.json", 14 * _DAY_MS,
                    "out: inputs that could not be accepted, with the reason"),
    c.DECISIONS: ("decision.schema.json", 7 * _DAY_MS,
                  "out: allow / hold / deny on every money movement, and each hold's resolution (v3)"),
    c.SIGNALS: ("signal.schema.json", 30 * _DAY_MS, "in: partners' security events, verified and mapped (v3)"),
    c.SIGNALS_OUT: ("signals-out.schema.json", 30 * _DAY_MS, "out: security events shared with partners (v3)"),
}


def topic_name(logical: str, prefix: str = "ato.") -> str:
    """The broker name of a logical topic: ``prefix + logical``.

    >>> topic_name("dead-letter", "t1234abcd.")
    't1234abcd.dead-letter'
    """
    if logical not in _CATALOGUE:
        raise ValueError(f"unknown topic {logical!r}; the contract's topics are {list(_CATALOGUE)}")
    return f"{prefix}{logical}"


def registry(settings: Settings | None = None) -> list[TopicSpec]:
    """Every contract topic, inputs first, sized by ``settings``."""
    settings = settings or Settings()
    return [
        TopicSpec(logical, settings.partitions, ACCOUNT_KEY, schema, False, retention, text)
        for logical, (schema, retention, text) in _CATALOGUE.items()
    ]


def spec(logical: str, settings: Settings | None = None) -> TopicSpec:
    """The registry entry of one logical topic."""
    for entry in registry(settings):
        if entry.logical == logical:
            return entry
    raise ValueError(f"unknown topic {logical!r}; the contract's topics are {list(_CATALOGUE)}")


def input_topic_names(settings: Settings | None = None) -> list[str]:
    """The broker names of the input topics, which the stream worker subscribes to.

    >>> input_topic_names(Settings(topic_prefix="x."))
    ['x.device', 'x.location', 'x.transaction', 'x.verdicts']
    """
    prefix = (settings or Settings()).topic_prefix
    return [topic_name(logical, prefix) for logical in c.INPUT_TOPICS]


def new_topic_request(settings: Settings, specs: Iterable[TopicSpec]) -> dict[str, dict]:
    """The ``create_topics`` argument of kafka-python 3 for ``specs`` under ``settings``."""
    return {
        s.name(settings.topic_prefix): {
            "num_partitions": s.partitions,
            "replication_factor": settings.replication_factor,
            "configs": s.configs(),
        }
        for s in specs
    }


def create_topics(settings: Settings, specs: Iterable[TopicSpec] | None = None, *,
                  timeout_ms: int = 30_000) -> dict[str, Literal["created", "exists"]]:
    """Create the topics of ``specs`` (default: the whole registry); safe to run again.

    Returns each topic name with ``"created"`` or ``"exists"``. A topic that exists is left as
    it is (its partitions and configs are not checked). Any other broker error is raised as the
    matching ``kafka.errors.KafkaError``. Returns once every new topic has a leader.
    """
    from kafka import KafkaAdminClient
    from kafka import errors as kafka_errors

    request = new_topic_request(settings, registry(settings) if specs is None else specs)
    admin = KafkaAdminClient(**settings.client_options(), client_id="atoguard-topics",
                             request_timeout_ms=timeout_ms)
    try:
        response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
        outcome: dict[str, Literal["created", "exists"]] = {}
        for topic in response["topics"]:
            error = kafka_errors.for_code(topic["error_code"])
            if error is kafka_errors.NoError:
                outcome[topic["name"]] = "created"
            elif error is kafka_errors.TopicAlreadyExistsError:
                outcome[topic["name"]] = "exists"
            else:
                raise error(f"creating {topic['name']}: {topic.get('error_message') or error.message}")
        created = [name for name, state in outcome.items() if state == "created"]
        if created:
            admin.wait_for_topics(created, timeout_ms=timeout_ms)
        return {name: outcome[name] for name in request}
    finally:
        admin.close()


# -- the worker's start-up check ---------------------------------------------------------------

class PartitionMismatch(RuntimeError):
    """The input topics are missing or not co-partitioned; the message says what to do."""


def check_input_partitions(settings: Settings, timeout_s: float = 30.0) -> int:
    """The partition count shared by the four input topics; :class:`PartitionMismatch` when a
    topic is missing or the counts differ (the account's events must be co-partitioned)."""
    from kafka import KafkaConsumer

    names = [topic_name(t, settings.topic_prefix) for t in c.INPUT_TOPICS]
    # connecting is bounded too: an unreachable cluster fails in seconds, not the library's 30
    consumer = KafkaConsumer(**settings.client_options(min(timeout_s, 10.0)), client_id="atoguard-check")
    try:
        deadline = time.monotonic() + timeout_s
        counts: dict[str, int | None] = {}
        while True:
            topics = consumer.topics()
            counts = {n: (len(consumer.partitions_for_topic(n) or ()) if n in topics else None) for n in names}
            if all(counts.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        consumer.close()
    missing = [n for n, k in counts.items() if not k]
    if missing:
        raise PartitionMismatch(f"input topic(s) {', '.join(missing)} do not exist on "
                                f"{settings.bootstrap_servers}; create them with `atoguard topics create` "
                                f"(same --topic-prefix {settings.topic_prefix!r})")
    distinct = set(counts.values())
    if len(distinct) != 1:
        table = ", ".join(f"{n}={k}" for n, k in counts.items())
        raise PartitionMismatch(f"input topics are not co-partitioned ({table}); every input topic must have "
                                "the same partition count so one account's events meet in one worker")
    return distinct.pop()


def shards_for(settings: Settings, cfg: Config) -> tuple[Settings, Config]:
    """Settings and config with the partition count of the live input topics (checked)."""
    partitions = check_input_partitions(settings)
    if cfg.shards != partitions:
        log.warning("cfg.shards=%d but the input topics have %d partitions; using %d shards",
                    cfg.shards, partitions, partitions)
        cfg = cfg.replace(shards=partitions)
    if settings.partitions != partitions:
        settings = replace(settings, partitions=partitions)
    return settings, cfg
