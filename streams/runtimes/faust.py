"""The stream worker as a Faust app: ``create_app(settings, cfg, options) -> faust.App``.

Topology (``P`` = the input topics' partition count = ``cfg.shards``)::

    <prefix>device ─┐
    <prefix>location ─┤ accounts agent (concurrency 1)     ──> <prefix>commands
    <prefix>transaction ─┤   decode (ours) -> Engine.handle  ──> <prefix>alerts (CloudEvents headers)
    <prefix>verdicts ─┘   table <app_id>-profiles         ──> <prefix>dead-letter
                           │ logins, ip_geo fixes, re-keyed by source
                           v
                    <app_id>-sources ──> sources agent, table <app_id>-sources
                                            │ facts per IP / device (hourly windows, MIDAS-R)
                                            v
                    <app_id>-facts (compacted) ──> FactsFollower (every worker, all partitions)
                                                   -> ExternalFacts of the engine

* Input topics are declared raw (bytes in, bytes out) and decoded by
  :func:`detectors.events.decode_or_dead_letter`, so bad input reaches the dead-letter topic with
  its real topic name, partition and offset instead of being skipped by Faust.
* One agent reads all four input topics, so the events of one account go through one agent in
  partition order; concurrency stays 1 (faust #606).
* Profiles are bytes (:func:`detectors.profile.encode`) in the Faust table ``profiles``
  (changelog ``<app_id>-profiles-changelog``); each message is one call of the engine's seam,
  :meth:`detectors.engine.Engine.process_message`, with the stored profile of the message key.
  The engine ignores repeated event ids, so a redelivered event changes nothing.
* No lost outputs after a crash: when an event produces commands or alerts, the worker waits
  until Kafka has acknowledged them *before* it writes the profile (which marks the event as
  seen) to the table. A crash in between replays the event, which emits the same outputs again
  with the same deterministic ids; consumers drop repeats by ``command_id`` / ``ce_id``.
  Offsets are committed only after the producer is flushed (Faust), so it is at least once.
* Models: one :class:`~detectors.engine.Engine` per worker, sharded like the partitions;
  snapshotted to a signed file (:mod:`streams.snapshots`) on a timer and at shutdown, loaded at
  start. Models of a partition that moves to another worker start from that worker's state.
* Metrics at ``/metrics`` on the web port (:mod:`streams.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson

from detectors import contract as c
from detectors.config import Config
from detectors.engine import Engine
from detectors.events import Verdict
from detectors.facts import ExternalFacts
from detectors.outputs import Output
from detectors.profile import decode as decode_profile, encode as encode_profile
from streams.runtimes.faust_facts import FactsFollower, apply_source_message, source_message
from streams.metrics import CONTENT_TYPE, WorkerMetrics
from streams.settings import Settings
from streams import snapshots
from streams.topics import PartitionMismatch, topic_name

__all__ = ["PartitionMismatch", "WorkerOptions", "Runtime", "create_app",
           "ensure_internal_topics", "internal_topic_names"]

log = logging.getLogger("atoguard.worker")

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
#: table keys are account ids (JSON strings in the changelog), values raw bytes
TABLE_RAW = {"key_type": str, "value_type": bytes}


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker process runs (the engine's policy is in :class:`Config`).

    ``app_id`` defaults to ``<prefix>worker``: the consumer group, and the prefix of the
    internal topics (``<app_id>-profiles-changelog``, ``<app_id>-sources``, ``<app_id>-facts``).
    Each worker process needs its own ``data_dir`` (RocksDB locks its files).
    """

    app_id: str | None = None
    store: str = "rocksdb"                 # or "memory"
    data_dir: Path = Path(".atoguard/worker")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_enabled: bool = True
    snapshot_path: Path | None = None      # default <data_dir>/<app_id>.models.snap
    snapshot_interval_s: float = 60.0
    instance_id: str | None = None         # static group membership (no rebalance on restart)
    session_timeout_s: float = 30.0
    standby_replicas: int = 1
    commit_interval_s: float = 1.0
    stream_buffer_maxsize: int = 4096
    max_poll_records: int | None = None
    producer_linger_ms: int = 1
    #: compute cross-account facts (the sources agent and the facts follower); off when the
    #: cross-account detectors are off, or to measure what the facts cost
    follow_facts: bool = True
    #: wait for Kafka's acknowledgement of an event's outputs before its profile is written (the
    #: no-loss guarantee above); off only to measure what it costs
    ack_outputs: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # more faust settings, verbatim

    def resolved_app_id(self, settings: Settings) -> str:
        return self.app_id or f"{settings.topic_prefix}worker"

    def resolved_snapshot(self, settings: Settings) -> Path:
        return self.snapshot_path or (self.data_dir / f"{self.resolved_app_id(settings)}.models.snap")


def internal_topic_names(app_id: str) -> dict[str, str]:
    """Our own internal topics (Faust names the table changelogs itself)."""
    return {"sources": f"{app_id}-sources", "facts": f"{app_id}-facts"}


# -- internal topics -------------------------------------------------------------------------

def ensure_internal_topics(settings: Settings, app_id: str, partitions: int) -> None:
    """Create ``<app_id>-sources`` and the compacted ``<app_id>-facts`` if they do not exist."""
    from kafka import KafkaAdminClient
    from kafka import errors as kafka_errors

    names = internal_topic_names(app_id)
    request = {
        names["sources"]: {"num_partitions": partitions, "replication_factor": settings.replication_factor,
                           "configs": {"cleanup.policy": "delete", "retention.ms": str(7 * 86_400_000)}},
        names["facts"]: {"num_partitions": partitions, "replication_factor": settings.replication_factor,
                         "configs": {"cleanup.policy": "compact"}},
    }
    admin = KafkaAdminClient(**settings.client_options(), client_id="atoguard-worker-admin")
    try:
        response = admin.create_topics(request, timeout_ms=30_000, raise_errors=False)
        for topic in response["topics"]:
            error = kafka_errors.for_code(topic["error_code"])
            if error not in (kafka_errors.NoError, kafka_errors.TopicAlreadyExistsError):
                raise error(f"creating {topic['name']}: {topic.get('error_message') or error.message}")
        admin.wait_for_topics(list(request), timeout_ms=30_000)
    finally:
        admin.close()


# -- the worker's state and per-message work ------------------------------------------------------

class Runtime:
    """What the agents of one app share: the engine, its facts, the metrics, the topics."""

    def __init__(self, settings: Settings, cfg: Config, options: WorkerOptions) -> None:
        self.settings = settings
        self.cfg = cfg
        self.options = options
        self.prefix = settings.topic_prefix
        self.facts = ExternalFacts()
        self.engine = Engine(cfg, self.facts)
        self.metrics = WorkerMetrics()
        self.snapshot_path = options.resolved_snapshot(settings)
        self.app: faust.App | None = None
        self.profiles: Any = None
        self.outputs: dict[str, Any] = {}
        self.sources_topic: Any = None
        self.follower: FactsFollower | None = None
        self.burst = None
        if "login_burst" in cfg.detectors:
            from detectors.burst_facts import BurstScorer
            self.burst = BurstScorer(seed=cfg.seed)
        self._logical = {topic_name(t, self.prefix): t for t in c.INPUT_TOPICS}
        #: "topic:partition" -> last input offset fully processed by this worker (for /healthz)
        self.processed: dict[str, int] = {}

    # -- snapshots ---------------------------------------------------------------------------------
    def load_models(self) -> str:
        """Load the signed snapshot, if any; returns the outcome (:func:`streams.snapshots.load_models`)."""
        return snapshots.load_models(self.engine, self.snapshot_path, self.cfg, self.metrics)

    def save_models(self) -> None:
        snapshots.save_models(self.engine, self.snapshot_path, self.cfg, self.metrics)

    # -- one input message -------------------------------------------------------------------------
    async def process(self, message: Any) -> None:
        await self._process(message)
        self.processed[f"{message.topic}:{message.partition}"] = message.offset

    async def _process(self, message: Any) -> None:
        received = message.time_in if message.time_in is not None else time.monotonic()
        topic = message.topic
        logical = self._logical.get(topic)
        key = message.key
        stored = self.profiles.get(key.decode("utf-8", "replace")) if key else None
        result = self.engine.process_message(
            topic, message.value, key, None if stored is None else decode_profile(stored),
            partition=message.partition, offset=message.offset, logical_topic=logical)
        m = self.metrics
        record = result.record
        if record is None:
            m.dead_letters.inc(topic=logical or topic, reason=result.outputs[0].value["reason"])
            await self.emit(result.outputs, None, received)
            return
        if result.duplicate:
            m.duplicates.inc(topic=logical)
            return
        m.events.inc(topic=logical, kind=record.label if type(record) is Verdict else record.kind)
        if self.sources_topic is not None:
            for update in result.facts:
                skey, value = source_message(update)
                await self.sources_topic.send(key=skey, value=value)
        if result.outputs:
            await self.emit(result.outputs, record.ts, received)
        # written only now: its outputs are acknowledged (a crash before this replays the event)
        self.profiles[record.account_id] = encode_profile(result.state)

    async def emit(self, outputs: tuple[Output, ...], event_ts: int | None, received: float) -> None:
        """Send ``outputs`` and wait until Kafka has acknowledged every one of them."""
        futures = []
        for o in outputs:
            futures.append(await self.outputs[o.topic].send(
                key=o.key.encode("utf-8"), value=orjson.dumps(o.value),
                headers=list(o.headers) if o.headers else None))
        if self.options.ack_outputs:
            await asyncio.gather(*futures)
        self.metrics.sent(outputs, received, event_ts)

    async def process_source(self, message: Any) -> None:
        key = message.key.decode("utf-8", "replace") if message.key else ""
        fact = apply_source_message(self.sources_table, self.burst, key, message.value)
        if fact is not None:
            await self.facts_topic.send(key=message.key, value=fact)

    # -- gauges ------------------------------------------------------------------------------------
    def lag_rows(self):
        app = self.app
        if app is None or app.consumer is None:
            return []
        read = app.monitor.tp_read_offsets
        rows = []
        for tp in app.consumer.assignment():
            if tp.topic not in self._logical:
                continue
            try:
                hw = app.consumer.highwater(tp)
            except Exception:
                continue
            if hw is None:
                continue
            last = read.get(tp)
            rows.append(((tp.topic, str(tp.partition)), float(max(0, hw - (last + 1 if last is not None else 0)))))
        return rows

    _size_cache: tuple[float, list] = (0.0, [])

    def table_rows(self):
        at, rows = self._size_cache
        if time.monotonic() - at < 15.0 and rows:
            return rows
        rows = [(("profiles",), float(len(self.profiles))), (("sources",), float(len(self.sources_table)))]
        self._size_cache = (time.monotonic(), rows)
        return rows


# -- the app --------------------------------------------------------------------------------------

def create_app(settings: Settings, cfg: Config, options: WorkerOptions | None = None) -> faust.App:
    """A fresh Faust app for ``settings`` (broker, prefix, partitions) and ``cfg`` (the engine).

    ``cfg.shards`` must equal ``settings.partitions`` (the input topics' partition count; see
    :func:`streams.topics.check_input_partitions`). The returned app carries its :class:`Runtime` as
    ``app.atoguard``.
    """
    options = options or WorkerOptions()
    if cfg.shards != settings.partitions:
        raise PartitionMismatch(f"cfg.shards={cfg.shards} but the input topics have {settings.partitions} "
                                "partitions; models are sharded like the partitions, set them equal")
    app_id = options.resolved_app_id(settings)
    store = {"rocksdb": "rocksdb://", "memory": "memory://"}.get(options.store, options.store)
    data_dir = Path(options.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = dict(
        broker=[f"kafka://{s}" for s in settings.servers()],
        store=store,
        datadir=str(data_dir / "faust"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=options.standby_replicas,
        broker_session_timeout=options.session_timeout_s,
        broker_commit_interval=options.commit_interval_s,
        stream_buffer_maxsize=options.stream_buffer_maxsize,
        producer_linger_ms=options.producer_linger_ms,
        web_enabled=options.web_enabled,
        web_host=options.web_host,
        web_port=options.web_port,
        web_in_thread=False,
    )
    if options.instance_id:
        conf["consumer_group_instance_id"] = options.instance_id
    if options.max_poll_records:
        conf["broker_max_poll_records"] = options.max_poll_records
    conf.update(options.extra)
    app = faust.App(app_id, **conf)
    rt = Runtime(settings, cfg, options)
    rt.app = app
    app.atoguard = rt  # type: ignore[attr-defined]

    prefix = settings.topic_prefix
    inputs = app.topic(*[topic_name(t, prefix) for t in c.INPUT_TOPICS], **RAW)
    rt.outputs = {t: app.topic(topic_name(t, prefix), **RAW) for t in c.OUTPUT_TOPICS}
    internal = internal_topic_names(app_id)
    sources_in = app.topic(internal["sources"], partitions=settings.partitions, **RAW)
    rt.sources_topic = sources_in if options.follow_facts else None
    rt.facts_topic = app.topic(internal["facts"], partitions=settings.partitions, compacting=True, **RAW)

    rt.profiles = app.Table("profiles", default=None, partitions=settings.partitions,
                            help="account profiles (detectors.profile.Profile as bytes)", **TABLE_RAW)
    rt.sources_table = app.Table("sources", default=None, partitions=settings.partitions,
                                 help="hourly login windows per IP / device", **TABLE_RAW)

    @app.agent(inputs, name="accounts", concurrency=1)
    async def accounts(stream):
        async for event in stream.events():
            await rt.process(event.message)

    @app.agent(sources_in, name="sources", concurrency=1)
    async def sources(stream):
        async for event in stream.events():
            await rt.process_source(event.message)

    rt.accounts_agent, rt.sources_agent = accounts, sources

    if options.follow_facts:
        rt.follower = FactsFollower(settings.bootstrap_servers, internal["facts"], rt.facts)

        @app.task
        async def follow_facts():
            await rt.follower.run()

    if options.snapshot_interval_s > 0:
        @app.timer(options.snapshot_interval_s)
        async def snapshot_models():
            rt.save_models()

    @app.on_before_shutdown.connect
    async def _on_shutdown(app, **kwargs):
        if rt.follower is not None:
            rt.follower.stop()
        try:
            rt.save_models()
        except Exception:
            log.exception("could not save the model snapshot at shutdown")

    rt.metrics.lag.collect = rt.lag_rows
    rt.metrics.table_keys.collect = rt.table_rows

    @app.page("/metrics")
    async def metrics(self, request):
        return self.bytes(rt.metrics.render(), content_type=CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(self, request):
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in (app.consumer.assignment() if app.consumer else ()))
        return self.json({"app_id": app_id, "events": rt.engine.counts, "processed": rt.processed,
                          "assigned": assigned, "facts_applied": rt.follower.applied if rt.follower else 0})

    rt.load_models()
    return app
