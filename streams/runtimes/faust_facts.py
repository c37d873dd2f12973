"""Cross-account facts in the stream worker: login counts per IP and per device.

The account agent sees one account at a time. Every accepted login (``login_success`` /
``login_failure``) with an IP or a device id, and every location fix that says what kind of
network an IP is (``ip_type`` / ``asn``), is re-keyed by its source (``ip:<addr>`` or
``dev:<id>``) and sent to ``<app_id>-sources`` (internal, same partition count). The
``sources`` agent keeps one hourly window per source in the ``<app_id>-sources`` table (accounts
seen, capped; failures; logins; the current and the previous hour, exactly the windows of
:class:`detectors.facts.LocalFacts`), scores the login edge with MIDAS-R, and publishes the
source's facts to the compacted topic ``<app_id>-facts`` keyed by source. Every worker follows
all partitions of that topic (:class:`FactsFollower`, a plain aiokafka consumer outside the
consumer group, from the beginning) into the engine's :class:`detectors.facts.ExternalFacts`.

Timing caveat
-------------
Facts travel asynchronously: account agent -> sources topic -> sources agent -> facts topic
-> follower. A login is judged with the facts published *before* it, usually missing itself
and the logins of the last few tens of milliseconds; in replay (:class:`LocalFacts`) the facts
include the event itself and every earlier line of the file. So where cross-account facts
matter (credential stuffing, device farms, login bursts) the live decisions can differ from
``atoguard replay`` on the same events, typically one or two logins later at the start of a
burst. Per-account decisions do not depend on this. Repeated deliveries of a login are
counted once per source (the window remembers its last event ids). The MIDAS-R burst state is
held in memory by the worker that owns the source partition and starts cold after a restart or
a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from detectors.burst_facts import BurstScorer

from detectors.facts import ExternalFacts, SourceFacts, SourceUpdate, _Window

__all__ = ["FactsFollower", "SourceState", "source_message", "apply_source_message", "apply_fact"]

log = logging.getLogger(__name__)

#: distinct accounts counted per source and window (as LocalFacts)
MAX_ACCOUNTS = 256
#: event ids remembered per source, so a redelivered login is not counted twice
RECENT_IDS = 64


def source_message(update: SourceUpdate) -> tuple[bytes, bytes]:
    """The ``(key, value)`` message of one fact update (:attr:`detectors.engine.Result.facts`)
    on the sources topic.

    >>> from detectors.events import DeviceEvent
    >>> from detectors.facts import source_updates
    >>> [source_message(u) for u in source_updates(
    ...     DeviceEvent("e1", "a1", 5, "login_failure", device_id="d1", ip="192.0.2.1"))]
    [(b'ip:192.0.2.1', b'["L","a1","e1",5,1]'), (b'dev:d1', b'["L","a1","e1",5,1]')]
    """
    if update.kind == "login":
        value = orjson.dumps(["L", update.account_id, update.event_id, update.ts, 1 if update.failed else 0])
    else:
        value = orjson.dumps(["G", update.ip_type, update.asn])
    return update.source.encode(), value


class SourceState:
    """One source's window, ip info and recent event ids, as bytes for a Faust table."""

    __slots__ = ("window", "recent", "ip_type", "asn")

    def __init__(self, ts: int = 0) -> None:
        self.window = _Window(ts)
        self.recent: list[str] = []
        self.ip_type: str | None = None
        self.asn: int | None = None

    def to_bytes(self) -> bytes:
        w = self.window
        return orjson.dumps([w.start, sorted(w.accounts), sorted(w.prev_accounts), w.failures,
                             w.prev_failures, w.logins, w.prev_logins, self.recent, self.ip_type, self.asn])

    @classmethod
    def from_bytes(cls, data: bytes) -> "SourceState":
        v = orjson.loads(data)
        s = cls(v[0])
        w = s.window
        w.accounts, w.prev_accounts = set(v[1]), set(v[2])
        w.failures, w.prev_failures, w.logins, w.prev_logins = v[3], v[4], v[5], v[6]
        s.recent, s.ip_type, s.asn = v[7], v[8], v[9]
        return s


def apply_source_message(table: Any, burst: BurstScorer | None, key: str, value: bytes) -> bytes | None:
    """Apply one sources-topic message to ``table`` (a mapping of key -> bytes); returns the
    facts value to publish for ``key`` (None when nothing changed, e.g. a repeated login).

    The published value is ``[accounts, failures, logins, burst, ip_type, asn]``.

    >>> t = {}
    >>> apply_source_message(t, None, "ip:x", b'["L","a1","e1",1000,1]')
    b'[1,1,1,0.0,null,null]'
    >>> apply_source_message(t, None, "ip:x", b'["L","a1","e1",1000,1]') is None
    True
    """
    msg = orjson.loads(value)
    data = table.get(key)
    if msg[0] == "L":
        _, account, event_id, ts, failed = msg
        state = SourceState(ts) if data is None else SourceState.from_bytes(data)
        if event_id in state.recent:
            return None
        state.recent.append(event_id)
        del state.recent[:-RECENT_IDS]
        state.window.roll(ts)
        state.window.add(account, bool(failed), MAX_ACCOUNTS)
        score = burst.score(key, account, ts, 2 if failed else 1) if burst is not None else 0.0
    elif msg[0] == "G":
        state = SourceState(0) if data is None else SourceState.from_bytes(data)
        if (state.ip_type, state.asn) == (msg[1], msg[2]):
            return None
        state.ip_type, state.asn = msg[1], msg[2]
        score = 0.0
    else:  # pragma: no cover - only our own code writes this topic
        return None
    table[key] = state.to_bytes()
    f = state.window.facts()
    return orjson.dumps([f.accounts, f.failures, f.logins, round(score, 6), state.ip_type, state.asn])


def apply_fact(facts: ExternalFacts, key: bytes, value: bytes | None) -> None:
    """Feed one ``<app_id>-facts`` message into ``facts``."""
    if value is None or not key:
        return
    accounts, failures, logins, burst, ip_type, asn = orjson.loads(value)
    sf = SourceFacts(accounts, failures, logins)
    k = key.decode("utf-8", "replace")
    if k.startswith("ip:"):
        facts.put_ip(k[3:], sf, burst, ip_type, asn)
    elif k.startswith("dev:"):
        facts.put_device(k[4:], sf, burst)


class FactsFollower:
    """Follows every partition of the facts topic into an :class:`ExternalFacts`.

    A plain aiokafka consumer with no group (each worker needs all of it), starting from the
    beginning of the compacted topic. Run with :meth:`run` as a task; :meth:`stop` ends it.
    """

    def __init__(self, bootstrap_servers: str, topic: str, facts: ExternalFacts) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.facts = facts
        self.applied = 0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    client_id="atoguard-facts-follower")
        await consumer.start()
        try:
            parts = None
            while not parts and not self._stopping.is_set():
                parts = consumer.partitions_for_topic(self.topic)
                if not parts:
                    await consumer._client.force_metadata_update()  # the topic may be new
                    await asyncio.sleep(0.5)
            if self._stopping.is_set():
                return
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for messages in batches.values():
                    for m in messages:
                        try:
                            apply_fact(self.facts, m.key, m.value)
                            self.applied += 1
                        except Exception:  # pragma: no cover - only our own code writes it
                            log.exception("facts: ignoring a malformed facts message at %s", m.offset)
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stopping.set()
