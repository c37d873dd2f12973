"""The driver around the engine's seam: one module that replay, every runtime and the
benchmarks call, so that a file replay and the live stream decide the same.

Between a message and :meth:`detectors.engine.Engine.process` there is always the same path,
here and nowhere else (``docs/determinism.md``)::

    message (topic, partition, offset, key, value)
      -> decode          bad bytes, fields, kinds           -> dead letter (reason)
      -> key             no key; key is not account_id      -> dead letter MISSING_KEY / KEY_MISMATCH
      -> partition       not murmur2(key) mod N             -> dead letter WRONG_PARTITION
      -> late            ts < stream time - max_lateness     -> dead letter late
      -> duplicate       event_id seen within dedup_hours    -> nothing
      -> facts           cross-account facts as of ts - facts_delay (FactsTable)
      -> engine          profile in, outputs and profile out (the partition's own models)

A :class:`Task` owns one partition number of the co-partitioned input topics: its stream time,
its duplicate store, its profiles and its shard of the online models. What it keeps lives in a
:class:`Store` that the runtime provides (RocksDB with changelogs in a stream runtime, a dict in
replay), written in the runtime's checkpoint with the outputs. The order in which a task takes
its messages is :func:`order_key` - ``(ts, id)`` across the heads of its input partitions -
applied by the runtime's buffer or by replay's merge, with the waiting rule of
:class:`OrderRule`.

The facts stage is the same decode, key, partition and late path (:meth:`Task.admit`) followed
by :func:`detectors.facts.source_updates`: it sees exactly the records the account stage accepts.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

import msgspec

from detectors import contract as c
from detectors.config import Config
from detectors.engine import Engine, dead_letter_output
from detectors.events import DeadLetter, Event, Verdict, decode_or_dead_letter
from detectors.facts import NO_FACTS, FactsTable, SourceUpdate, source_updates
from detectors.outputs import Output
from detectors.profile import Profile, decode as decode_profile, encode as encode_profile
from detectors.sharding import shard_of

__all__ = ["Admitted", "Counts", "Driver", "MemoryStore", "Store", "Task", "order_key", "updates_of", "PROFILE",
           "SEEN"]

#: names of an account's entries in the store
PROFILE = b"p"
SEEN = b"d"
#: names of the task's own entries (one per partition)
STREAM_TIME = b"time"
MODELS = b"models"


class Store(Protocol):
    """The state of one partition, as the runtime keeps it (RocksDB + changelog, or a dict)."""

    def get(self, account: str, name: bytes) -> bytes | None: ...
    def put(self, account: str, name: bytes, value: bytes) -> None: ...
    def get_meta(self, name: bytes) -> bytes | None: ...
    def put_meta(self, name: bytes, value: bytes) -> None: ...


class MemoryStore:
    """A :class:`Store` in dicts (replay, tests)."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, bytes], bytes] = {}
        self.meta: dict[bytes, bytes] = {}

    def get(self, account: str, name: bytes) -> bytes | None:
        return self.accounts.get((account, name))

    def put(self, account: str, name: bytes, value: bytes) -> None:
        self.accounts[(account, name)] = value

    def get_meta(self, name: bytes) -> bytes | None:
        return self.meta.get(name)

    def put_meta(self, name: bytes, value: bytes) -> None:
        self.meta[name] = value


# -- order ---------------------------------------------------------------------------------------

class _Head(msgspec.Struct, gc=False):
    ts: Any = None
    event_id: Any = None
    verdict_id: Any = None


_head = msgspec.json.Decoder(_Head)
#: the key of a message without a readable (ts, id): taken as soon as it is at the head (it is
#: bound for the dead-letter topic and must not hold back the good messages behind it)
NO_ORDER = (-(1 << 62), b"")


def order_key(value: bytes | None, verdict: bool = False) -> tuple[int, bytes]:
    """``(ts, id)`` of a raw input value, ``id`` as UTF-8 bytes (contract v3, "Order": the
    ``verdict_id`` of a message of the verdicts topic, the ``event_id`` otherwise); bad input
    sorts first.

    >>> order_key(b'{"ts": 5, "event_id": "b"}') < order_key(b'{"ts": 5, "event_id": "c"}') < order_key(b'{"ts": 6, "event_id": "a"}')
    True
    >>> order_key(b"not json") == NO_ORDER
    True
    """
    if not value:
        return NO_ORDER
    try:
        head = _head.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return NO_ORDER
    ts, eid = head.ts, head.verdict_id if verdict or head.event_id is None else head.event_id
    if type(ts) is not int or type(eid) is not str:
        return NO_ORDER
    return ts, eid.encode("utf-8")


# -- one partition -----------------------------------------------------------------------------

@dataclass
class Counts:
    """What a driver did, by kind of input and output."""

    events: int = 0
    verdicts: int = 0
    duplicates: int = 0
    late: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    decisions: int = 0

    def count(self, outputs: Iterable[Output]) -> None:
        for o in outputs:
            if o.topic == c.COMMANDS:
                action = o.value["action"]
                self.commands[action] = self.commands.get(action, 0) + 1
            elif o.topic == c.ALERTS:
                self.alerts += 1
            elif o.topic == c.DECISIONS:
                self.decisions += 1
            elif o.topic == c.DEAD_LETTER:
                reason = o.value["reason"]
                self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class Admitted:
    """A message that passed decode, key, partition and lateness: its record, or its dead letter."""

    record: Event | Verdict | None
    dead_letter: Output | None = None


class Task:
    """One partition number of the input topics: stream time, duplicates, profiles, models.

    ``load`` reads what a previous owner committed; ``admit`` is the common front of the account
    stage and the facts stage; ``process`` is the account stage; ``checkpoint`` writes the task's
    own entries (stream time, models) into the store before the runtime commits.
    """

    #: decoded accounts kept between checkpoints (changed ones are written at the checkpoint)
    cache_size = 50_000

    def __init__(self, driver: "Driver", partition: int, store: Store) -> None:
        self.driver = driver
        self.partition = partition
        self.store = store
        #: account -> (profile, seen ids); ``dirty``: changed since the last checkpoint
        self.accounts: dict[str, tuple[Profile, list]] = {}
        self.dirty: set[str] = set()
        raw = store.get_meta(STREAM_TIME)
        self.stream_time: int | None = int(raw) if raw else None
        self.models_dirty = False
        self.time_dirty = False
        models = store.get_meta(MODELS) if driver.engine is not None else None
        if driver.engine is not None:
            driver.engine.load_shard(partition, _load_models(models, driver.cfg) if models else None)

    # -- the common front ----------------------------------------------------------------------
    def admit(self, topic: str, value: bytes | None, key: bytes | None, offset: int | None,
              real_topic: str | None = None) -> Admitted:
        """Decode and check one message of this partition (``topic`` is the logical input
        topic, ``real_topic`` the broker's name for dead letters); advances the stream time."""
        where = real_topic or topic
        if key is None:
            letter = DeadLetter(where, self.partition, offset, None, value or b"", c.MISSING_KEY,
                                "a message must be keyed by its account id")
            return Admitted(None, dead_letter_output(letter, None))
        record = decode_or_dead_letter(where, value, key, partition=self.partition, offset=offset,
                                       logical_topic=topic)
        if type(record) is DeadLetter:
            return Admitted(None, dead_letter_output(record, key))
        n = self.driver.partitions
        if n and shard_of(record.account_id, n) != self.partition:
            letter = DeadLetter(where, self.partition, offset, key, value or b"", c.WRONG_PARTITION,
                                f"murmur2(key) mod {n} is {shard_of(record.account_id, n)}, "
                                f"not {self.partition}")
            return Admitted(None, dead_letter_output(letter, key))
        ts = record.ts
        now = self.stream_time
        if now is None or ts > now:
            self.stream_time = ts
            self.time_dirty = True
        elif ts < now - self.driver.cfg.stream.max_lateness_ms:
            letter = DeadLetter(where, self.partition, offset, key, value or b"", c.LATE,
                                f"ts {ts} is more than {self.driver.cfg.stream.max_lateness_ms} ms below "
                                f"the partition's stream time {now}")
            return Admitted(None, dead_letter_output(letter, key))
        return Admitted(record)

    def handle_local(self, topic: str, value: bytes | None, key: bytes | None, offset: int | None,
                     real_topic: str | None = None) -> tuple[Output, ...]:
        """One message for a worker that counts the facts of what it admits itself (the Quix
        worker, the benchmarks): admit, add its facts, apply."""
        admitted = self.admit(topic, value, key, offset, real_topic)
        if admitted.record is None:
            self.driver.counts.count((admitted.dead_letter,))
            return (admitted.dead_letter,)
        return self.apply_local(admitted.record)

    def apply_local(self, record: Event | Verdict) -> tuple[Output, ...]:
        """An admitted record for a worker that counts its own facts: its facts, then apply."""
        facts = self.driver.facts
        for u in source_updates(record):
            facts.add(u)
        return self.apply(record)

    def watermark(self) -> int | None:
        """No record below this ts will be accepted by this partition any more."""
        if self.stream_time is None:
            return None
        return self.stream_time - self.driver.cfg.stream.max_lateness_ms

    # -- the account stage ---------------------------------------------------------------------
    def process(self, topic: str, value: bytes | None, key: bytes | None, offset: int | None,
                real_topic: str | None = None) -> tuple[Output, ...]:
        """One message of the account stage: its outputs (possibly one dead letter, or none
        for a duplicate). The facts table must hold every update below the record's bound."""
        admitted = self.admit(topic, value, key, offset, real_topic)
        counts = self.driver.counts
        if admitted.record is None:
            outputs = (admitted.dead_letter,)
            counts.count(outputs)
            if admitted.dead_letter.value["reason"] == c.LATE:
                counts.late += 1
            return outputs
        return self.apply(admitted.record)

    def apply(self, record: Event | Verdict) -> tuple[Output, ...]:
        """An admitted record: duplicates, facts, the engine; the account's entries updated."""
        driver = self.driver
        account = record.account_id
        entry = self.accounts.get(account)
        if entry is None:
            entry = self.accounts[account] = self._load(account)
        profile, seen = entry
        event_id = record.event_id
        for eid, _ in seen:
            if eid == event_id:
                driver.counts.duplicates += 1
                return ()
        # exact ids, kept for dedup_hours of the partition's event time (a store entry of their own)
        horizon = self.stream_time - driver.cfg.stream.dedup_ms
        if seen and seen[0][1] < horizon:
            seen[:] = [e for e in seen if e[1] >= horizon]
        seen.append((event_id, record.ts))
        if type(record) is Verdict:
            facts = NO_FACTS
            driver.counts.verdicts += 1
        elif record.topic == c.SIGNALS:  # a partner's word about the account: no network facts
            facts = NO_FACTS
            driver.counts.events += 1
        else:
            facts = driver.facts.facts(record, driver.facts_settings.bound(record.ts))
            driver.counts.events += 1
        result = driver.engine.process(record, profile, facts)
        if result.state is not profile:
            self.accounts[account] = (result.state, seen)
        self.dirty.add(account)
        self.models_dirty = True
        driver.counts.count(result.outputs)
        return result.outputs

    def _load(self, account: str) -> tuple[Profile, list]:
        store = self.store
        raw = store.get(account, PROFILE)
        seen = store.get(account, SEEN)
        return (decode_profile(raw) if raw else Profile()), (list(_seen_decode(seen)) if seen else [])

    def checkpoint(self) -> None:
        """Write what changed since the last checkpoint into the store: the accounts' profiles
        and seen ids, the stream time, the shard's models. The runtime commits them with the
        outputs and the input offsets."""
        store = self.store
        accounts = self.accounts
        for account in self.dirty:
            profile, seen = accounts[account]
            store.put(account, PROFILE, encode_profile(profile))
            store.put(account, SEEN, _seen_encode(seen))
        self.dirty.clear()
        if len(accounts) > self.cache_size:
            for account in list(accounts)[: len(accounts) - self.cache_size // 2]:
                del accounts[account]
        if self.time_dirty and self.stream_time is not None:
            self.store.put_meta(STREAM_TIME, str(self.stream_time).encode())
            self.time_dirty = False
        engine = self.driver.engine
        if self.models_dirty and engine is not None:
            self.store.put_meta(MODELS, _dump_models(engine.shard_state(self.partition), self.driver.cfg))
            self.models_dirty = False


_seen_encode = msgspec.msgpack.Encoder().encode
_seen_decode = msgspec.msgpack.Decoder(list[tuple[str, int]]).decode


def _dump_models(states: dict[str, bytes], cfg: Config) -> bytes:
    """The shard's models, signed (the store's changelog is a topic: never unpickle what
    another principal could have written)."""
    payload = msgspec.msgpack.encode(states)
    return hmac.new(cfg.keys.snapshot_hmac.encode(), payload, hashlib.sha256).digest() + payload


def _load_models(raw: bytes, cfg: Config) -> dict[str, bytes] | None:
    sig, payload = raw[:32], raw[32:]
    if not hmac.compare_digest(sig, hmac.new(cfg.keys.snapshot_hmac.encode(), payload, hashlib.sha256).digest()):
        raise ValueError("the stored models' signature does not match the snapshot key")
    return msgspec.msgpack.decode(payload, type=dict[str, bytes])


# -- the driver ----------------------------------------------------------------------------------

class Driver:
    """The engine, the facts table and the tasks of the partitions a process owns.

    ``partitions``: the input topics' partition count N (the engine's models are sharded by it:
    one shard per partition). ``engine=False`` makes a facts-stage driver (no engine, no
    profiles). ``store_for(partition)`` gives each new task its store.
    """

    def __init__(self, cfg: Config, partitions: int, store_for=None, *, engine: bool = True) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.cfg = cfg.replace(shards=partitions) if cfg.shards != partitions else cfg
        self.partitions = partitions
        self.engine: Engine | None = Engine(self.cfg) if engine else None
        self.facts_settings = self.cfg.stream.facts()
        self.facts = FactsTable(self.facts_settings)
        self.counts = Counts()
        self.tasks: dict[int, Task] = {}
        self._store_for = store_for or (lambda partition: MemoryStore())

    def task(self, partition: int, store: Store | None = None) -> Task:
        task = self.tasks.get(partition)
        if task is None:
            task = self.tasks[partition] = Task(self, partition, store or self._store_for(partition))
        elif store is not None:
            task.store = store
        return task

    def drop(self, partition: int) -> None:
        """The partition moved away: forget its task and its models."""
        self.tasks.pop(partition, None)
        if self.engine is not None:
            self.engine.drop_shard(partition)

    def partition_of(self, account_id: str) -> int:
        return shard_of(account_id, self.partitions)

    def checkpoint(self) -> None:
        for task in self.tasks.values():
            task.checkpoint()


def updates_of(admitted: Admitted) -> tuple[SourceUpdate, ...]:
    """The facts stage's output for one admitted message."""
    return source_updates(admitted.record) if admitted.record is not None else ()
