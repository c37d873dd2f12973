"""The stream worker as a Faust app: ``create_app(settings, cfg, options) -> faust.App``.

The Faust loop around the driver (:mod:`streams.driver`), the same path replay takes::

    <prefix>device ─┐
    <prefix>location ─┤ accounts agent (concurrency 1)       ──> <prefix>commands
    <prefix>transaction ─┤   one streams.driver.Task per partition ──> <prefix>alerts (CloudEvents headers)
    <prefix>verdicts ─┤   table <app_id>-profiles             ──> <prefix>decisions, <prefix>signals-out
    <prefix>signals ─┘                                          ──> <prefix>dead-letter

* Input topics are declared raw (bytes in, bytes out); every message goes through
  :meth:`streams.driver.Task.admit` and :meth:`streams.driver.Task.apply` of its partition's task
  (decode, key, partition, lateness, duplicates, facts, engine), so bad input reaches the
  dead-letter topic with its real topic name, partition and offset instead of being skipped by Faust.
* One agent reads all input topics, so the events of one account go through one agent in
  partition order; concurrency stays 1 (faust #606). Faust takes the messages in its own
  (arrival) order, not in the ``(ts, id)`` order of :func:`streams.driver.order_key`.
* The task's :class:`~streams.driver.Store` is the Faust table ``profiles`` (changelog
  ``<app_id>-profiles-changelog``, co-partitioned with the inputs: Faust writes an entry to the
  changelog partition of the message being processed): an account's profile under
  ``p:<account>``, its seen event ids under ``d:<account>``, the partition's stream time and shard
  of the online models under ``m:<partition>:time`` / ``m:<partition>:models``
  (:class:`FaustStore`). A redelivered event is found among the seen ids and changes nothing.
* No lost outputs after a crash: the worker waits until Kafka has acknowledged a message's
  outputs *before* :meth:`~streams.driver.Task.checkpoint` writes the table (which marks the event
  as seen). A crash in between replays the event, which emits the same outputs again with the
  same deterministic ids; consumers drop repeats by ``command_id`` / ``ce_id``. Offsets are
  committed only after the producer is flushed (Faust), so it is at least once.
* Cross-account facts: the worker's own :class:`detectors.facts.FactsTable`
  (``driver.facts``), fed with the source updates of the records *this worker* admits. With one
  worker that is every record; with several Faust workers the facts are per worker (each sees
  the sources of its own partitions only), and after a restart they start empty. There is no
  facts stage across workers in this runtime.
* Models: one :class:`~detectors.engine.Engine` per worker (the driver's), one shard per
  partition, kept in the table with the partition's entries; also snapshotted to a signed file
  (:mod:`streams.snapshots`) on a timer and at shutdown, and loaded at start: a partition whose
  table has no models yet starts from the snapshot's shard.
* Metrics at ``/metrics`` and the counts at ``/healthz`` on the web port (:mod:`streams.metrics`,
  :class:`streams.driver.Counts`).
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
from detectors.outputs import Output
from streams.driver import MODELS, Driver, Task, updates_of
from streams.metrics import CONTENT_TYPE, WorkerMetrics
from streams.settings import Settings
from streams import snapshots
from streams.topics import PartitionMismatch, topic_name

__all__ = ["PartitionMismatch", "WorkerOptions", "FaustStore", "Runtime", "create_app",
           "ensure_internal_topics", "internal_topic_names", "INPUTS", "OUTPUTS"]

log = logging.getLogger("atoguard.worker")

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
#: table keys are strings (``p:<account>``, ``d:<account>``, ``m:<partition>:<name>``), values raw bytes
TABLE_RAW = {"key_type": str, "value_type": bytes}
#: the input topics of the worker (contract v3: partners' signals too)
INPUTS = (c.DEVICE, c.LOCATION, c.TRANSACTION, c.VERDICTS, c.SIGNALS)
#: every topic an :class:`~detectors.outputs.Output` can name
OUTPUTS = (c.COMMANDS, c.ALERTS, c.DEAD_LETTER, c.DECISIONS, c.SIGNALS_OUT)
#: evict facts no task can ask for any more, every this many messages
EVICT_EVERY = 4096


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker process runs (the engine's policy is in :class:`Config`).

    ``app_id`` defaults to ``<prefix>worker``: the consumer group, and the prefix of the
    table's changelog topic (``<app_id>-profiles-changelog``).
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
    #: feed the worker's cross-account facts table; off when the cross-account detectors are
    #: off, or to measure what the facts cost
    follow_facts: bool = True
    #: wait for Kafka's acknowledgement of a message's outputs before the table is written (the
    #: no-loss guarantee above); off only to measure what it costs
    ack_outputs: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # more faust settings, verbatim

    def resolved_app_id(self, settings: Settings) -> str:
        return self.app_id or f"{settings.topic_prefix}worker"

    def resolved_snapshot(self, settings: Settings) -> Path:
        return self.snapshot_path or (self.data_dir / f"{self.resolved_app_id(settings)}.models.snap")


def internal_topic_names(app_id: str) -> dict[str, str]:
    """Our own internal topics: none any more (Faust names the table's changelog itself)."""
    return {}


def ensure_internal_topics(settings: Settings, app_id: str, partitions: int) -> None:
    """Nothing to create: the facts are the worker's own table (kept for the command line's
    start-up, which still calls it)."""
    return None


# -- the task's store -----------------------------------------------------------------------------

class FaustStore:
    """A :class:`streams.driver.Store` over the Faust table (any mapping of str -> bytes).

    Written only from inside the accounts agent, while the message of ``partition`` is the
    current event: Faust sends each entry to that changelog partition.
    """

    __slots__ = ("runtime", "partition", "_meta")

    def __init__(self, runtime: "Runtime", partition: int) -> None:
        self.runtime = runtime
        self.partition = partition
        self._meta = f"m:{partition}:"

    def get(self, account: str, name: bytes) -> bytes | None:
        return self.runtime.profiles.get(f"{name.decode()}:{account}")

    def put(self, account: str, name: bytes, value: bytes) -> None:
        self.runtime.profiles[f"{name.decode()}:{account}"] = value

    def get_meta(self, name: bytes) -> bytes | None:
        return self.runtime.profiles.get(self._meta + name.decode())

    def put_meta(self, name: bytes, value: bytes) -> None:
        self.runtime.profiles[self._meta + name.decode()] = value


# -- the worker's state and per-message work ------------------------------------------------------

class Runtime:
    """What the agent of one app shares: the driver (engine, facts, tasks, counts), the metrics,
    the topics."""

    def __init__(self, settings: Settings, cfg: Config, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.prefix = settings.topic_prefix
        self.driver = Driver(cfg, settings.partitions)
        self.cfg = self.driver.cfg
        self.metrics = WorkerMetrics()
        self.snapshot_path = options.resolved_snapshot(settings)
        self.app: faust.App | None = None
        self.profiles: Any = None
        self.outputs: dict[str, Any] = {}
        self._logical = {topic_name(t, self.prefix): t for t in INPUTS}
        #: "topic:partition" -> last input offset fully processed by this worker (for /healthz)
        self.processed: dict[str, int] = {}
        #: source updates added to the worker's facts table
        self.facts_applied = 0
        self._since_evict = 0

    @property
    def engine(self) -> Engine:
        return self.driver.engine

    # -- snapshots ---------------------------------------------------------------------------------
    def load_models(self) -> str:
        """Load the signed snapshot, if any; returns the outcome (:func:`streams.snapshots.load_models`)."""
        return snapshots.load_models(self.engine, self.snapshot_path, self.cfg, self.metrics)

    def save_models(self) -> None:
        snapshots.save_models(self.engine, self.snapshot_path, self.cfg, self.metrics)

    # -- tasks -------------------------------------------------------------------------------------
    def task(self, partition: int) -> Task:
        """The partition's task; a new one reads what the table holds (after Faust's recovery)."""
        task = self.driver.tasks.get(partition)
        if task is not None:
            return task
        engine = self.engine
        # the snapshot's shard, for a partition whose table has no models yet
        snapshot = engine.shard_state(partition)
        store = FaustStore(self, partition)
        task = self.driver.task(partition, store)
        if snapshot and store.get_meta(MODELS) is None:
            engine.load_shard(partition, snapshot)
        return task

    def revoked(self, partitions) -> None:
        """Input partitions moved away (or a rebalance started): forget their tasks."""
        for tp in partitions:
            if tp.topic in self._logical:
                self.driver.drop(tp.partition)

    # -- one input message -------------------------------------------------------------------------
    async def process(self, message: Any) -> None:
        await self._process(message)
        self.processed[f"{message.topic}:{message.partition}"] = message.offset

    async def _process(self, message: Any) -> None:
        received = message.time_in if message.time_in is not None else time.monotonic()
        topic = message.topic
        logical = self._logical.get(topic, topic)
        driver = self.driver
        counts = driver.counts
        m = self.metrics
        task = self.task(message.partition)
        admitted = task.admit(logical, message.value, message.key, message.offset, topic)
        record = admitted.record
        if record is None:
            letter = admitted.dead_letter
            reason = letter.value["reason"]
            m.dead_letters.inc(topic=logical, reason=reason)
            counts.count((letter,))
            if reason == c.LATE:
                counts.late += 1
                m.late_events.inc(topic=logical)
            await self.emit((letter,), None, received)
            task.checkpoint()
            return
        if self.options.follow_facts:
            for u in updates_of(admitted):
                driver.facts.add(u)
                self.facts_applied += 1
        before = counts.duplicates
        outputs = task.apply(record)
        if counts.duplicates != before:
            m.duplicates.inc(topic=logical)
        else:
            m.events.inc(topic=logical, kind=getattr(record, "kind", None) or getattr(record, "label", "verdict"))
            if outputs:
                await self.emit(outputs, record.ts, received)
        # written only now: its outputs are acknowledged (a crash before this replays the message)
        task.checkpoint()
        self._since_evict += 1
        if self._since_evict >= EVICT_EVERY:
            self._since_evict = 0
            self.evict_facts()

    def evict_facts(self) -> None:
        """Forget facts none of this worker's tasks can ask for any more."""
        marks = [w for t in self.driver.tasks.values() if (w := t.watermark()) is not None]
        if marks:
            self.driver.facts.evict(self.driver.facts_settings.bound(min(marks)))

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

    # -- web ---------------------------------------------------------------------------------------
    def health(self, app_id: str) -> dict:
        app = self.app
        try:
            assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in (app.consumer.assignment() if app.consumer else ()))
        except Exception:  # not subscribed yet, or closing
            assigned = []
        counts = self.driver.counts
        return {"app_id": app_id, "runtime": "faust", "guarantee": "at-least-once",
                "events": {"events": counts.events, "verdicts": counts.verdicts, "duplicates": counts.duplicates,
                           "late": counts.late, "dead_letters": sum(counts.dead_letters.values()),
                           "commands": sum(counts.commands.values()), "alerts": counts.alerts,
                           "decisions": counts.decisions},
                "processed": dict(self.processed), "assigned": assigned, "facts_applied": self.facts_applied}

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
        profiles = sum(1 for k in self.profiles.keys() if k.startswith("p:"))
        rows = [(("profiles",), float(profiles))]
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
    inputs = app.topic(*[topic_name(t, prefix) for t in INPUTS], **RAW)
    rt.outputs = {t: app.topic(topic_name(t, prefix), **RAW) for t in OUTPUTS}
    rt.profiles = app.Table("profiles", default=None, partitions=settings.partitions,
                            help="the tasks' stores: profiles, seen ids, stream time, models", **TABLE_RAW)

    @app.agent(inputs, name="accounts", concurrency=1)
    async def accounts(stream):
        async for event in stream.events():
            await rt.process(event.message)

    rt.accounts_agent = accounts

    @app.on_partitions_revoked.connect
    async def _on_revoked(app, revoked, **kwargs):
        rt.revoked(revoked)

    if options.snapshot_interval_s > 0:
        @app.timer(options.snapshot_interval_s)
        async def snapshot_models():
            rt.save_models()

    @app.on_before_shutdown.connect
    async def _on_shutdown(app, **kwargs):
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
        return self.json(rt.health(app_id))

    rt.load_models()
    return app
