"""Cross-account facts: what is known about a network address, a device or a payee across
accounts, **as of a point in event time**.

The engine judges one account at a time, but credential stuffing, device farms and mule payees
show only across accounts. What the engine may know of other accounts is fixed by event time,
never by arrival order (``docs/determinism.md``): the facts of an event at ``ts`` are made of the
records of *all* accounts with ``ts`` below its **bound**, ``facts_bound(ts)``: ``ts`` minus
``delay_ms``, rounded down to a bucket edge. Records are counted in epoch-aligned buckets of
``bucket_ms``; the facts sum the ``window`` buckets below the bound.

* A :class:`SourceUpdate` is what one accepted input tells about a source (``ip:<address>``,
  ``dev:<device>``, ``pay:<payee>``): a login edge, a payment edge, or what IP geolocation says the
  address is. :func:`source_updates` derives them; the facts stage of a stream runtime re-keys
  them by source (a repartition topic), replay feeds them straight in.
* A :class:`FactsTable` holds the buckets and answers :meth:`FactsTable.facts` as of a bound. It
  is a set union underneath: adding an update twice, or updates in any order, gives the same
  answer, so the table only has to know that it has *every* update below the bound, which is what
  the facts watermark says (``streams.driver``).

>>> t = FactsTable(FactsSettings(delay_ms=0, bucket_ms=60_000, window=60))
>>> for i in range(5):
...     t.add(SourceUpdate("ip:198.51.100.9", "login", f"a{i}", f"e{i}", 60_000 * 10 + i, failed=True))
>>> t.facts(DeviceEvent("x", "a9", 60_000 * 11, "login_failure", ip="198.51.100.9"), 11).ip
SourceFacts(accounts=5, failures=5, logins=5)
>>> t.facts(DeviceEvent("x", "a9", 60_000 * 11, "login_failure", ip="198.51.100.9"), 10).ip  # bound before them
SourceFacts(accounts=0, failures=0, logins=0)
"""

from __future__ import annotations

import math
from bisect import insort
from dataclasses import dataclass

from detectors import contract as c
from detectors.events import DeviceEvent, Event, LocationEvent, TransactionEvent

__all__ = ["EventFacts", "FactsSettings", "FactsTable", "SourceFacts", "SourceUpdate", "NO_FACTS",
           "source_updates"]

LOGIN_KINDS = frozenset({"login_success", "login_failure"})


@dataclass(frozen=True, slots=True)
class FactsSettings:
    """How far back and how fine the facts are (the same in replay and every runtime).

    ``delay_ms``: the facts of an event at ``ts`` are made of records below ``ts - delay_ms``
    (rounded down to a bucket edge): a live worker rarely waits for them. ``bucket_ms``: the
    bucket width. ``window``: how many buckets the facts sum.
    """

    delay_ms: int = 60_000
    bucket_ms: int = 60_000
    window: int = 90

    def bound(self, ts: int) -> int:
        """The bucket index below which records count for an event at ``ts``.

        >>> FactsSettings().bound(10 * 60_000 + 59_999), FactsSettings().bound(10 * 60_000 + 60_000)
        (9, 10)
        """
        return (ts - self.delay_ms) // self.bucket_ms


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """Recent facts about one source (an IP, a device or a payee) across all accounts."""

    accounts: int = 0
    failures: int = 0
    logins: int = 0


@dataclass(frozen=True, slots=True)
class EventFacts:
    """The facts about the event's IP, device and payee, and the burst value of its login
    edges (0..1)."""

    ip: SourceFacts = SourceFacts()
    device: SourceFacts = SourceFacts()
    burst: float = 0.0
    #: what IP geolocation said about the event's IP on any account (``ato.location`` ip_geo)
    ip_type: str | None = None
    asn: int | None = None
    #: accounts that paid the event's payee (money out)
    payee: SourceFacts = SourceFacts()


NO_FACTS = EventFacts()
_NO_SOURCE = SourceFacts()


@dataclass(frozen=True, slots=True)
class SourceUpdate:
    """What one input tells about a source: a login edge (``kind`` ``"login"``), a payment edge
    (``"pay"``), or what IP geolocation says the address is (``"geo"``)."""

    source: str
    kind: str
    account_id: str
    event_id: str
    ts: int
    failed: bool = False
    ip_type: str | None = None
    asn: int | None = None


def source_updates(record: object) -> tuple[SourceUpdate, ...]:
    """The cross-account fact updates an accepted record carries.

    >>> [u.source for u in source_updates(DeviceEvent("e1", "a1", 5, "login_failure", device_id="d1",
    ...                                                 ip="192.0.2.1"))]
    ['ip:192.0.2.1', 'dev:d1']
    """
    t = type(record)
    if t is DeviceEvent and record.kind in LOGIN_KINDS:
        failed = record.kind == "login_failure"
        out = []
        if record.ip:
            out.append(SourceUpdate("ip:" + record.ip, "login", record.account_id, record.event_id, record.ts, failed))
        if record.device_id:
            out.append(SourceUpdate("dev:" + record.device_id, "login", record.account_id, record.event_id,
                                    record.ts, failed))
        return tuple(out)
    if t is LocationEvent and record.ip and (record.ip_type or record.asn is not None):
        return (SourceUpdate("ip:" + record.ip, "geo", record.account_id, record.event_id, record.ts,
                             False, record.ip_type, record.asn),)
    if t is TransactionEvent and record.counterparty_id and record.kind in c.MONEY_OUT_KINDS \
            and record.channel != "pos":
        return (SourceUpdate("pay:" + record.counterparty_id, "pay", record.account_id, record.event_id,
                             record.ts),)
    return ()


class _Source:
    """One source's buckets: bucket index -> {event id: (account, failed)}; and a cache of the
    last answer (the bound moves once a bucket, so most lookups hit it)."""

    __slots__ = ("buckets", "cached_bound", "cached")

    def __init__(self) -> None:
        self.buckets: dict[int, dict[str, tuple[str, bool]]] = {}
        self.cached_bound = -1
        self.cached: tuple[SourceFacts, float] = (_NO_SOURCE, 0.0)


class FactsTable:
    """Bucketed cross-account facts, answered as of a bound (see the module docstring).

    ``burst_floor`` and ``burst_scale``: a source's logins in the last bucket below the bound, in
    excess of its average bucket in the window, give the burst value: 0 up to ``burst_floor`` edges
    more than usual, 1 at ``burst_floor * burst_scale``.
    """

    def __init__(self, settings: FactsSettings | None = None, burst_floor: float = 4.0,
                 burst_scale: float = 10.0) -> None:
        self.settings = settings or FactsSettings()
        self.burst_floor = burst_floor
        self.burst_scale = burst_scale
        self._sources: dict[str, _Source] = {}
        #: ip -> sorted [(ts, event_id, ip_type, asn)] from ip_geo fixes
        self._geo: dict[str, list[tuple[int, str, str | None, int | None]]] = {}
        self.updates = 0

    # -- writing --------------------------------------------------------------------------------
    def add(self, u: SourceUpdate) -> None:
        """Add one update; adding the same update again changes nothing."""
        self.updates += 1
        if u.kind == "geo":
            entries = self._geo.setdefault(u.source[3:], [])
            entry = (u.ts, u.event_id, u.ip_type, u.asn)
            if entry not in entries:
                insort(entries, entry, key=_geo_key)
            return
        src = self._sources.get(u.source)
        if src is None:
            src = self._sources[u.source] = _Source()
        b = u.ts // self.settings.bucket_ms
        bucket = src.buckets.get(b)
        if bucket is None:
            bucket = src.buckets[b] = {}
        bucket[u.event_id] = (u.account_id, u.failed)
        if b < src.cached_bound:
            src.cached_bound = -1

    def evict(self, bound: int) -> None:
        """Forget what no lookup with a bound of ``bound`` or more can need."""
        low = bound - self.settings.window
        dead = []
        for key, src in self._sources.items():
            old = [b for b in src.buckets if b < low]
            for b in old:
                del src.buckets[b]
            if not src.buckets:
                dead.append(key)
        for key in dead:
            del self._sources[key]
        low_ms = low * self.settings.bucket_ms
        for entries in self._geo.values():
            # keep the last fix before the window: it still says what the address is
            i = 0
            while i + 1 < len(entries) and entries[i + 1][0] < low_ms:
                i += 1
            if i:
                del entries[:i]

    # -- reading --------------------------------------------------------------------------------
    def source(self, key: str, bound: int) -> tuple[SourceFacts, float]:
        """The facts and the burst value of one source over the window below ``bound``."""
        src = self._sources.get(key)
        if src is None:
            return _NO_SOURCE, 0.0
        if src.cached_bound == bound:
            return src.cached
        window = self.settings.window
        accounts: set[str] = set()
        logins = failures = last = 0
        for b, bucket in src.buckets.items():
            if bound - window <= b < bound:
                n = len(bucket)
                logins += n
                if b == bound - 1:
                    last = n
                for account, failed in bucket.values():
                    accounts.add(account)
                    failures += failed
        facts = SourceFacts(len(accounts), failures, logins) if logins else _NO_SOURCE
        burst = 0.0
        if last:
            excess = last - (logins - last) / max(1, window - 1)
            if excess > self.burst_floor:
                burst = min(1.0, math.log(excess / self.burst_floor) / math.log(self.burst_scale))
        src.cached_bound, src.cached = bound, (facts, burst)
        return facts, burst

    def geo(self, ip: str, bound: int) -> tuple[str | None, int | None]:
        """What the last ip_geo fix below the bound said the address is."""
        entries = self._geo.get(ip)
        if not entries:
            return None, None
        limit = bound * self.settings.bucket_ms
        for ts, _, ip_type, asn in reversed(entries):
            if ts < limit:
                return ip_type, asn
        return None, None

    def facts(self, event: Event, bound: int) -> EventFacts:
        """The facts of ``event`` as of ``bound`` (:meth:`FactsSettings.bound` of its ``ts``)."""
        ip, device, payee = event.ip, event.device_id, None
        if type(event) is TransactionEvent and event.kind in c.MONEY_OUT_KINDS:
            payee = event.counterparty_id
        ip_facts, ip_burst = self.source("ip:" + ip, bound) if ip else (_NO_SOURCE, 0.0)
        dev_facts, dev_burst = self.source("dev:" + device, bound) if device else (_NO_SOURCE, 0.0)
        pay_facts = self.source("pay:" + payee, bound)[0] if payee else _NO_SOURCE
        ip_type, asn = self.geo(ip, bound) if ip else (None, None)
        burst = max(ip_burst, dev_burst) if type(event) is DeviceEvent and event.kind in LOGIN_KINDS else 0.0
        if ip_facts is _NO_SOURCE and dev_facts is _NO_SOURCE and pay_facts is _NO_SOURCE and ip_type is None \
                and asn is None:
            return NO_FACTS
        return EventFacts(ip_facts, dev_facts, burst, ip_type, asn, pay_facts)


def _geo_key(entry: tuple) -> tuple[int, str]:
    return entry[0], entry[1]
