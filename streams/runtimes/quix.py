"""The stream worker on Quix Streams (the default runtime of ``atoguard run``).

A small driver around the engine's seam, :meth:`detectors.engine.Engine.process_message`::

    <prefix>device ─┐  raw bytes, merged with concat,
    <prefix>location ─┤  taken in event-time (ts) order      ──> <prefix>commands
    <prefix>transaction ─┤  (streams.runtimes.eventtime)        ──> <prefix>alerts (CloudEvents headers)
    <prefix>verdicts ─┘  state: the account's profile bytes  ──> <prefix>dead-letter
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
* Models: one engine per worker, sharded like the partitions; snapshotted to a signed file
  (:mod:`streams.snapshots`) every ``snapshot_interval_s`` and at shutdown, loaded at start. They
  are not in the transactional state: after a crash they restart from the last snapshot.
* Cross-account facts: the engine's :class:`detectors.facts.LocalFacts` over the events this
  worker processes (see ``docs/performance.md``, "live and replay").
* Metrics and ``/healthz`` on the web port (:class:`streams.metrics.MetricsServer`).
* SIGTERM and Ctrl-C: Quix stops its loop and commits a last checkpoint; then the models are saved.
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
from detectors.engine import Engine
from detectors.events import Verdict
from detectors.profile import decode as decode_profile, encode as encode_profile
from streams.metrics import MetricsServer, WorkerMetrics
from streams.settings import Settings
from streams import snapshots
from streams.topics import topic_name

__all__ = ["QuixOptions", "QuixWorker", "PROFILE_KEY"]

log = logging.getLogger("atoguard.worker")

#: the state key of the account's profile (under the message key's prefix)
PROFILE_KEY = b"p"


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
    snapshot_path: Path | None = None
    snapshot_interval_s: float = 60.0
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
    #: an event more than this earlier than its partition's stream time counts as late
    allowed_lateness_ms: int = 60_000
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

    def resolved_snapshot(self, settings: Settings) -> Path:
        return Path(self.snapshot_path or (self.data_dir / f"{self.resolved_app_id(settings)}.models.snap"))


class QuixWorker:
    """One worker: the Quix application, the engine, the metrics and the web port.

    ``QuixWorker(settings, cfg, options).run()`` processes until SIGTERM / Ctrl-C (or ``stop()``).
    """

    def __init__(self, settings: Settings, cfg: Config, options: QuixOptions | None = None,
                 engine: Engine | None = None) -> None:
        self.settings = settings
        self.cfg = cfg
        self.options = options = options or QuixOptions()
        self.app_id = options.resolved_app_id(settings)
        self.engine = engine or Engine(cfg)
        self.metrics = WorkerMetrics()
        self.snapshot_path = options.resolved_snapshot(settings)
        prefix = settings.topic_prefix
        self.logical = {topic_name(t, prefix): t for t in c.INPUT_TOPICS}
        self.output_names = {t: topic_name(t, prefix) for t in c.OUTPUT_TOPICS}
        #: "topic:partition" -> last input offset processed (checkpointed or not), for /healthz
        self.processed: dict[str, int] = {}
        #: partition -> highest ts processed (the partition's stream time), for late events
        self.stream_time: dict[int, int] = {}
        self.web: MetricsServer | None = None
        self._next_snapshot = time.monotonic() + options.snapshot_interval_s
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
            on_message_processed=self._after_message,
        )
        topics = [app.topic(name, key_deserializer="bytes", value_deserializer="bytes",
                            timestamp_extractor=_timestamp) for name in self.logical]
        sdfs = [app.dataframe(t) for t in topics]
        sdf = sdfs[0]
        for other in sdfs[1:]:
            sdf = sdf.concat(other)
        sdf = sdf.update(self.handle, stateful=True, metadata=True)
        if o.event_time:
            from streams.runtimes.eventtime import install
            install(app, o.max_partition_buffer_size)
        self._producer = sdf.processing_context.producer
        return app, sdf

    def _broker_address(self):
        """The bootstrap servers, or with SASL/TLS configured a Quix ``ConnectionConfig`` with
        them (the password as a secret string, never logged)."""
        if not self.settings.secured:
            return self.settings.bootstrap_servers
        from quixstreams.kafka.configuration import ConnectionConfig

        return ConnectionConfig.from_librdkafka_dict(self.settings.librdkafka_options())

    # -- one input message ------------------------------------------------------------------------
    def handle(self, value: bytes | None, key: bytes | None, timestamp: int, headers: Any, state: Any) -> None:
        """Process one raw input message: the engine's seam, then the outputs and the state."""
        from quixstreams import message_context

        received = time.monotonic()
        ctx = message_context()
        topic, partition, offset = ctx.topic, ctx.partition, ctx.offset
        logical = self.logical.get(topic)
        stored = state.get_bytes(PROFILE_KEY) if key is not None else None
        result = self.engine.process_message(
            topic, value, key, None if stored is None else decode_profile(stored),
            partition=partition, offset=offset, logical_topic=logical)
        self.processed[f"{topic}:{partition}"] = offset
        m = self.metrics
        record = result.record
        if record is None:
            m.dead_letters.inc(topic=logical or topic, reason=result.outputs[0].value["reason"])
            self.emit(result.outputs, None, received)
            return
        if result.duplicate:
            m.duplicates.inc(topic=logical)
            return
        m.events.inc(topic=logical, kind=record.label if type(record) is Verdict else record.kind)
        self._lateness(partition, record.ts, logical)
        if result.outputs:
            self.emit(result.outputs, record.ts, received)
        state.set_bytes(PROFILE_KEY, encode_profile(result.state))

    def _lateness(self, partition: int, ts: int, logical: str) -> None:
        now = self.stream_time.get(partition)
        if now is None or ts > now:
            self.stream_time[partition] = ts
        elif now - ts > self.options.allowed_lateness_ms:
            self.metrics.late_events.inc(topic=logical)

    def emit(self, outputs, event_ts: int | None, received: float) -> None:
        """Produce ``outputs`` with Quix's producer (inside the checkpoint's transaction)."""
        produce = self._producer.produce
        for o in outputs:
            produce(topic=self.output_names[o.topic], key=o.key.encode("utf-8"), value=orjson.dumps(o.value),
                    headers=list(o.headers) if o.headers else None)
        self.metrics.sent(outputs, received, event_ts)

    def _after_message(self, topic: str, partition: int, offset: int) -> None:
        if self.options.snapshot_interval_s > 0 and time.monotonic() >= self._next_snapshot:
            self._next_snapshot = time.monotonic() + self.options.snapshot_interval_s
            self.save_models()

    # -- models -----------------------------------------------------------------------------------
    def load_models(self) -> str:
        """Load the signed snapshot, if any; returns the outcome (:func:`streams.snapshots.load_models`)."""
        return snapshots.load_models(self.engine, self.snapshot_path, self.cfg, self.metrics)

    def save_models(self) -> None:
        snapshots.save_models(self.engine, self.snapshot_path, self.cfg, self.metrics)

    # -- web --------------------------------------------------------------------------------------
    def health(self) -> dict:
        try:
            consumer = self.app._consumer
            assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in consumer.assignment())
        except Exception:  # not subscribed yet, or closing
            assigned = []
        return {"app_id": self.app_id, "runtime": "quix", "guarantee": self.options.processing_guarantee,
                "events": dict(self.engine.counts), "processed": dict(self.processed), "assigned": assigned}

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
        """Load the models, serve the web port, process until stopped, save the models."""
        self.build()
        self.load_models()
        if self.options.web_enabled:
            self.metrics.lag.collect = self.lag_rows
            self.web = MetricsServer(self.options.web_host, self.options.web_port, self.metrics.render,
                                     self.health).start()
        try:
            self.app.run()
        finally:
            try:
                self.save_models()
            except Exception:
                log.exception("could not save the model snapshot at shutdown")
            if self.web is not None:
                self.web.stop()

    def stop(self) -> None:
        self.app.stop()


def _timestamp(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    """Quix's ``timestamp_extractor``: the event's ``ts``, or the Kafka timestamp when the value
    has none (bad input still flows, to the dead-letter topic)."""
    from streams.runtimes.eventtime import event_ts

    return event_ts(value, timestamp)
