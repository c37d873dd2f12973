"""The stream worker on Quix Streams (the default runtime of ``atoguard run``).

The Quix loop around the driver (:mod:`streams.driver`), the same path replay takes::

    <prefix>device ─┐  raw bytes, merged with concat,
    <prefix>location ─┤  taken in event-time (ts) order      ──> <prefix>commands
    <prefix>transaction ─┤  (streams.runtimes.eventtime)        ──> <prefix>alerts (CloudEvents headers)
    <prefix>verdicts ─┤
    <prefix>signals ─┘  state: the account's profile bytes  ──> <prefix>dead-letter
                          (RocksDB + changelog topic, per partition)

* Input topics are read as raw bytes and decoded by the engine, so bad input reaches the
  dead-letter topic with its real topic, partition and offset.
* The account's profile is stored in Quix's state of the merged stream, one entry per account
  (the message key), as :func:`detectors.profile.encode` bytes (``state.get_bytes`` /
  ``state.set_bytes``: no JSON, no base64). RocksDB per partition, changelog topic per store.
* Each output is produced with Quix's own producer from inside the processing function, so under
  exactly-once (the default) the commands, alerts, dead letters, the state's changelog and the
  input offsets of a checkpoint commit in one Kafka transaction. A checkpoint is taken every
  ``commit_interval_s`` (default 0.1 s); ``read_committed`` consumers see the outputs then.
  At-least-once is an option: a crash then repeats the outputs of the last events with the same
  deterministic ids.
* Transactions and restarts (quixstreams 3.28.1, ``kafka/producer.py`` and ``app.py``): the
  producer's ``transactional.id`` is a fresh random UUID unless ``producer_extra_config`` sets
  ``transactional.id`` (spelt right in this version). A restarted worker with a new random id does
  not fence its killed predecessor, whose open transaction then holds back ``read_committed``
  readers of those partitions until ``transaction.timeout.ms`` expires. So with ``instance_id``
  set the worker uses ``transactional.id = <app_id>-<instance_id>``: the successor's
  ``InitProducerId`` aborts the predecessor's transaction at once. Without ``instance_id`` the id
  is random and ``transaction.timeout.ms`` is lowered to ``transaction_timeout_s`` (default 10 s).
* Static membership: ``instance_id`` becomes ``group.instance.id``.
* Security: with ``Settings.security_protocol`` other than PLAINTEXT the application connects
  with the settings' SASL and TLS options (:meth:`Settings.librdkafka_options`).
* Everything that decides is in the checkpoint: each partition is a :class:`streams.driver.Task`
  whose profiles, seen event ids, stream time and shard of the online models are written into
  the partition's state transaction just before Quix commits it (a hook on the checkpoint), so a
  restarted or rebalanced worker continues with exactly what was committed with the outputs.
  The state store is pinned to the stream id of the v2 inputs (:func:`stream_id`): adding
  ``signals`` to the inputs does not rename the store or its changelog.
* Cross-account facts: a :class:`detectors.facts.FactsTable` fed by the records this worker
  admits, answered as of each event's bound. With one worker reading its inputs in event-time
  order this is replay's facts; with several workers, or after a restart, it is not yet (the
  facts stage of issue #17 item 3 is not built: ``docs/determinism.md``).
* Metrics and ``/healthz`` on the web port (:class:`streams.metrics.MetricsServer`).
* SIGTERM and Ctrl-C: Quix stops its loop and commits a last checkpoint (models included).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from detectors import contract as c
from detectors.config import Config
from streams.driver import PROFILE, Driver
from streams.metrics import MetricsServer, WorkerMetrics
from streams.settings import Settings
from streams.topics import topic_name

__all__ = ["QuixOptions", "QuixWorker", "PROFILE_KEY", "QuixStore", "stream_id"]

log = logging.getLogger("atoguard.worker")

#: the state key of the account's profile (under the message key's prefix)
PROFILE_KEY = PROFILE


@dataclass(frozen=True)
class QuixOptions:
    """How one Quix worker process runs (the engine's policy is in :class:`Config`).

    ``app_id`` defaults to ``<prefix>worker``: the consumer group; Quix names the changelog
    topics after it. Each worker process needs its own ``data_dir`` (RocksDB locks its files).
    """

    app_id: str | None = None
    data_dir: Path = Path(".atoguard/worker")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_enabled: bool = True
    instance_id: str | None = None
    session_timeout_s: float = 30.0
    processing_guarantee: str = "exactly-once"   # or "at-least-once"
    commit_interval_s: float = 0.1
    transaction_timeout_s: float = 10.0
    poll_timeout_s: float = 0.05
    producer_linger_ms: int = 5
    max_partition_buffer_size: int = 2000
    #: take records in ts order across the worker's input partitions (streams.runtimes.eventtime)
    event_time: bool = True
    loglevel: str = "WARNING"
    extra_consumer: dict[str, Any] = field(default_factory=dict)
    extra_producer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.processing_guarantee not in ("exactly-once", "at-least-once"):
            raise ValueError(f"processing_guarantee must be exactly-once or at-least-once, "
                             f"not {self.processing_guarantee!r}")
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    def resolved_app_id(self, settings: Settings) -> str:
        return self.app_id or f"{settings.topic_prefix}worker"


def stream_id(prefix: str) -> str:
    """The pinned stream id of the worker's state store: Quix's id of the v2 inputs'
    concatenation, so the store and its changelog keep their names whatever inputs are added.

    >>> stream_id("ato.")
    'ato.device--ato.location--ato.transaction--ato.verdicts'
    """
    return "--".join(sorted(topic_name(t, prefix) for t in (c.DEVICE, c.LOCATION, c.TRANSACTION, c.VERDICTS)))


#: the input topics of the worker (contract v3: partners' signals too)
INPUTS = (c.DEVICE, c.LOCATION, c.TRANSACTION, c.VERDICTS, c.SIGNALS)
#: the prefix of a partition's own entries in the state (stream time, models): never an account id
TASK_PREFIX = b"\x00task"


class QuixStore:
    """A :class:`streams.driver.Store` over the partition's transaction of the current checkpoint
    (an account's entries under the account id as Quix's state prefix: the layout ``state.set_bytes``
    gives a message's key)."""

    __slots__ = ("worker", "partition")

    def __init__(self, worker: "QuixWorker", partition: int) -> None:
        self.worker = worker
        self.partition = partition

    def _tx(self):
        return self.worker.app._processing_context.checkpoint.get_store_transaction(
            stream_id=self.worker.stream_id, partition=self.partition)

    def get(self, account: str, name: bytes) -> bytes | None:
        return self._tx().get_bytes(name, prefix=account.encode("utf-8"))

    def put(self, account: str, name: bytes, value: bytes) -> None:
        self._tx().set_bytes(name, value, prefix=account.encode("utf-8"))

    def get_meta(self, name: bytes) -> bytes | None:
        return self._tx().get_bytes(name, prefix=TASK_PREFIX)

    def put_meta(self, name: bytes, value: bytes) -> None:
        self._tx().set_bytes(name, value, prefix=TASK_PREFIX)


class QuixWorker:
    """One worker: the Quix application, the driver, the metrics and the web port.

    ``QuixWorker(settings, cfg, options).run()`` processes until SIGTERM / Ctrl-C (or ``stop()``).
    """

    def __init__(self, settings: Settings, cfg: Config, options: QuixOptions | None = None) -> None:
        self.settings = settings
        self.options = options = options or QuixOptions()
        self.app_id = options.resolved_app_id(settings)
        self.driver = Driver(cfg, settings.partitions)
        self.cfg = self.driver.cfg
        self.metrics = WorkerMetrics()
        prefix = settings.topic_prefix
        self.stream_id = stream_id(prefix)
        self.logical = {topic_name(t, prefix): t for t in INPUTS}
        self.output_names = {t: topic_name(t, prefix)
                             for t in (*c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS_OUT)}
        #: "topic:partition" -> last input offset processed (checkpointed or not), for /healthz
        self.processed: dict[str, int] = {}
        self.web: MetricsServer | None = None
        self.app: Any = None
        self.sdf: Any = None
        self._producer: Any = None

    # -- the application --------------------------------------------------------------------------
    def build(self) -> "QuixWorker":
        """Create the Quix application (it talks to the broker); :meth:`run` does it if needed."""
        if self.app is None:
            self.app, self.sdf = self._build()
        return self

    def _build(self):
        from quixstreams import Application

        o = self.options
        consumer = {"session.timeout.ms": int(o.session_timeout_s * 1000), **o.extra_consumer}
        producer: dict[str, Any] = {"linger.ms": o.producer_linger_ms, **o.extra_producer}
        if o.instance_id:
            consumer["group.instance.id"] = o.instance_id
        if o.processing_guarantee == "exactly-once":
            if o.instance_id:
                producer.setdefault("transactional.id", f"{self.app_id}-{o.instance_id}")
            producer.setdefault("transaction.timeout.ms", int(o.transaction_timeout_s * 1000))
        data_dir = Path(o.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        app = Application(
            broker_address=self._broker_address(),
            consumer_group=self.app_id,
            auto_offset_reset="earliest",
            processing_guarantee=o.processing_guarantee,
            commit_interval=o.commit_interval_s,
            consumer_poll_timeout=o.poll_timeout_s,
            consumer_extra_config=consumer,
            producer_extra_config=producer,
            state_dir=data_dir / "state",
            max_partition_buffer_size=o.max_partition_buffer_size,
            loglevel=o.loglevel,
            auto_create_topics=True,
        )
        topics = [app.topic(name, key_deserializer="bytes", value_deserializer="bytes",
                            timestamp_extractor=_timestamp) for name in self.logical]
        sdfs = [app.dataframe(t) for t in topics]
        sdf = sdfs[0]
        for other in sdfs[1:]:
            sdf = sdf.concat(other)
        # pinned: the store and its changelog do not change name when an input is added
        sdf = sdf.__dataframe_clone__(stream=sdf.stream, stream_id=self.stream_id)
        sdf = sdf.update(self.handle, stateful=True, metadata=True)
        if o.event_time:
            from streams.runtimes.eventtime import install
            install(app, o.max_partition_buffer_size, self.cfg.stream.max_idle_ms)
        self._producer = sdf.processing_context.producer
        self._hook(app)
        return app, sdf

    def _hook(self, app: Any) -> None:
        """Write the tasks' state into the checkpoint's transactions just before Quix commits
        it, and forget a partition's task once it is revoked (quixstreams 3.28.1:
        ``ProcessingContext.commit_checkpoint``, ``Application._on_revoke`` / ``_on_lost``;
        ``tests/test_worker_unit.py`` pins the version)."""
        context = app._processing_context
        commit = context.commit_checkpoint
        driver = self.driver

        def commit_checkpoint(force: bool = False, revoking: bool = False) -> None:
            # Decide once whether this call commits, and tell Quix with force=True: Quix tests
            # expired() again, and a checkpoint expiring between the two tests was committed
            # without the tasks' state (at the last checkpoint of a run, for good).
            if not (force or context.checkpoint.expired()):
                return
            if not context.checkpoint.empty():
                driver.checkpoint()
            commit(force=True, revoking=revoking)

        context.commit_checkpoint = commit_checkpoint
        for name in ("_on_revoke", "_on_lost"):
            original = getattr(app, name)

            def lose(consumer, topic_partitions, _original=original):
                _original(consumer, topic_partitions)
                for tp in topic_partitions:
                    if tp.topic in self.logical:
                        driver.drop(tp.partition)

            setattr(app, name, lose)

    def _broker_address(self):
        """The bootstrap servers, or with SASL/TLS configured a Quix ``ConnectionConfig`` with
        them (the password as a secret string, never logged)."""
        if not self.settings.secured:
            return self.settings.bootstrap_servers
        from quixstreams.kafka.configuration import ConnectionConfig

        return ConnectionConfig.from_librdkafka_dict(self.settings.librdkafka_options())

    # -- one input message ------------------------------------------------------------------------
    def handle(self, value: bytes | None, key: bytes | None, timestamp: int, headers: Any, state: Any) -> None:
        """Process one raw input message through the partition's task; produce the outputs."""
        from quixstreams import message_context

        received = time.monotonic()
        ctx = message_context()
        topic, partition, offset = ctx.topic, ctx.partition, ctx.offset
        logical = self.logical.get(topic, topic)
        driver = self.driver
        task = driver.tasks.get(partition)
        if task is None:
            task = driver.task(partition, QuixStore(self, partition))
        self.processed[f"{topic}:{partition}"] = offset
        admitted = task.admit(logical, value, key, offset, topic)
        m = self.metrics
        if admitted.record is None:
            letter = admitted.dead_letter
            reason = letter.value["reason"]
            m.dead_letters.inc(topic=logical, reason=reason)
            if reason == c.LATE:
                m.late_events.inc(topic=logical)
            driver.counts.count((letter,))
            self.emit((letter,), None, received)
            return
        record = admitted.record
        before = driver.counts.duplicates
        outputs = task.apply_local(record)
        if driver.counts.duplicates != before:
            m.duplicates.inc(topic=logical)
            return
        m.events.inc(topic=logical, kind=getattr(record, "kind", None) or getattr(record, "label", "verdict"))
        if outputs:
            self.emit(outputs, record.ts, received)

    def emit(self, outputs, event_ts: int | None, received: float) -> None:
        """Produce ``outputs`` with Quix's producer (inside the checkpoint's transaction)."""
        produce = self._producer.produce
        for o in outputs:
            produce(topic=self.output_names[o.topic], key=o.key.encode("utf-8"), value=orjson.dumps(o.value),
                    headers=list(o.headers) if o.headers else None)
        self.metrics.sent(outputs, received, event_ts)

    # -- web --------------------------------------------------------------------------------------
    def health(self) -> dict:
        try:
            consumer = self.app._consumer
            assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in consumer.assignment())
        except Exception:  # not subscribed yet, or closing
            assigned = []
        counts = self.driver.counts
        return {"app_id": self.app_id, "runtime": "quix", "guarantee": self.options.processing_guarantee,
                "events": {"events": counts.events, "verdicts": counts.verdicts, "duplicates": counts.duplicates,
                           "late": counts.late, "dead_letters": sum(counts.dead_letters.values()),
                           "commands": sum(counts.commands.values()), "alerts": counts.alerts,
                           "decisions": counts.decisions},
                "processed": dict(self.processed), "assigned": assigned}

    def lag_rows(self):
        from confluent_kafka import TopicPartition

        consumer = self.app._consumer
        rows = []
        for tp in consumer.assignment():
            if tp.topic not in self.logical:
                continue
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
            except Exception:
                continue
            if high is None or high < 0:
                continue
            last = self.processed.get(f"{tp.topic}:{tp.partition}")
            rows.append(((self.logical[tp.topic], str(tp.partition)),
                         float(max(0, high - (last + 1 if last is not None else 0)))))
        return rows

    # -- running ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve the web port and process until stopped (Quix commits a last checkpoint)."""
        self.build()
        if self.options.web_enabled:
            self.metrics.lag.collect = self.lag_rows
            self.web = MetricsServer(self.options.web_host, self.options.web_port, self.metrics.render,
                                     self.health).start()
        try:
            self.app.run()
        finally:
            if self.web is not None:
                self.web.stop()

    def stop(self) -> None:
        self.app.stop()


def _timestamp(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    """Quix's ``timestamp_extractor``: the event's ``ts``, or the Kafka timestamp when the value
    has none (bad input still flows, to the dead-letter topic)."""
    from streams.runtimes.eventtime import event_ts

    return event_ts(value, timestamp)
