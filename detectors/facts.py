"""Cross-account facts: what is known about a network address or a device across accounts.

The engine judges one account at a time, but credential stuffing and device farms show only
across accounts. A :class:`FactSource` answers, for the event being judged, how many accounts
its IP and device have touched recently and how many of those logins failed, and how bursty its
login edges are (MIDAS-R, :mod:`detectors.burst`).

Two sources exist:

* :class:`LocalFacts` computes the facts itself from the events it is shown, in order; ``atoguard
  replay`` uses it, and so does a worker that owns a whole stream.
* :class:`ExternalFacts` only stores facts handed to it from outside (the stream worker feeds it
  from agents that see the login stream repartitioned by IP and by device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from detectors.events import DeviceEvent, Event, LocationEvent

__all__ = ["EventFacts", "ExternalFacts", "FactSource", "LocalFacts", "SourceFacts", "SourceUpdate",
           "NO_FACTS", "source_updates"]

HOUR_MS = 3_600_000
LOGIN_KINDS = frozenset({"login_success", "login_failure"})


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """Recent facts about one source (an IP or a device) across all accounts."""

    accounts: int = 0
    failures: int = 0
    logins: int = 0


@dataclass(frozen=True, slots=True)
class EventFacts:
    """The facts about the event's IP and device, and the burst score of its login edges (0..1)."""

    ip: SourceFacts = SourceFacts()
    device: SourceFacts = SourceFacts()
    burst: float = 0.0
    #: what IP geolocation said about the event's IP on any account (``ato.location`` ip_geo)
    ip_type: str | None = None
    asn: int | None = None


NO_FACTS = EventFacts()
_NO_SOURCE = SourceFacts()


def _event_facts(ip: SourceFacts, device: SourceFacts, burst: float, ip_type: str | None,
                 asn: int | None) -> EventFacts:
    """``EventFacts(ip, device, burst, ip_type, asn)`` without the frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` a field): built once or twice per event."""
    facts = _new(EventFacts)
    _set_ip(facts, ip)
    _set_device(facts, device)
    _set_burst(facts, burst)
    _set_ip_type(facts, ip_type)
    _set_asn(facts, asn)
    return facts


_new = object.__new__
_set_ip, _set_device, _set_burst, _set_ip_type, _set_asn = (
    EventFacts.__dict__[name].__set__ for name in ("ip", "device", "burst", "ip_type", "asn"))


@dataclass(frozen=True, slots=True)
class SourceUpdate:
    """What one input tells about a source (``ip:<address>`` or ``dev:<device id>``) across
    accounts: a login edge (``kind`` ``"login"``), or what IP geolocation says the address is
    (``kind`` ``"geo"``). A stream runtime sends these to the worker that owns the source."""

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
    return ()


class FactSource(Protocol):
    def lookup(self, event: Event) -> EventFacts:
        """Facts for ``event``'s IP and device, the event itself included."""


class _Window:
    """Counts of one source over the current and the previous hour window."""

    __slots__ = ("start", "accounts", "prev_accounts", "failures", "prev_failures", "logins", "prev_logins",
                 "_facts")

    def __init__(self, start: int) -> None:
        self.start = start
        self.accounts: set[str] = set()
        self.prev_accounts: set[str] = set()
        self.failures = self.prev_failures = self.logins = self.prev_logins = 0
        self._facts: SourceFacts | None = None  # facts() until the counts change

    def roll(self, ts: int) -> None:
        if ts - self.start < HOUR_MS:
            return
        self._facts = None
        if ts - self.start < 2 * HOUR_MS:
            self.prev_accounts, self.prev_failures, self.prev_logins = self.accounts, self.failures, self.logins
        else:
            self.prev_accounts, self.prev_failures, self.prev_logins = set(), 0, 0
        self.accounts, self.failures, self.logins = set(), 0, 0
        self.start = ts - (ts - self.start) % HOUR_MS

    def add(self, account: str, failed: bool, max_accounts: int) -> None:
        if len(self.accounts) < max_accounts:
            self.accounts.add(account)
        self.logins += 1
        self.failures += failed
        self._facts = None

    def facts(self) -> SourceFacts:
        facts = self._facts
        if facts is None:
            accounts = len(self.accounts | self.prev_accounts) if self.prev_accounts else len(self.accounts)
            facts = self._facts = SourceFacts(accounts, self.failures + self.prev_failures,
                                              self.logins + self.prev_logins)
        return facts


class LocalFacts:
    """Computes cross-account facts from the login events it is shown, in order.

    Parameters
    ----------
    max_sources
        Sources kept before the stale ones (silent for two hours) are dropped.
    max_accounts
        Distinct accounts counted per source and window (a cap keeps memory bounded).
    burst
        A burst scorer with ``score(src_key, dst_key, ts, weight) -> float in [0, 1]`` or None.

    >>> from detectors.events import DeviceEvent
    >>> lf = LocalFacts()
    >>> for i in range(3):
    ...     f = lf.lookup(DeviceEvent(f"e{i}", f"a{i}", 1000 + i, "login_failure", ip="198.51.100.9"))
    >>> f.ip
    SourceFacts(accounts=3, failures=3, logins=3)
    """

    def __init__(self, max_sources: int = 500_000, max_accounts: int = 256, burst=None) -> None:
        self.max_sources = max_sources
        self.max_accounts = max_accounts
        self.burst = burst
        self._ips: dict[str, _Window] = {}
        self._devices: dict[str, _Window] = {}
        self._ip_info: dict[str, tuple[str | None, int | None]] = {}

    def lookup(self, event: Event) -> EventFacts:
        if type(event) is LocationEvent and event.ip and (event.ip_type or event.asn is not None):
            if len(self._ip_info) >= self.max_sources:
                self._ip_info.clear()
            self._ip_info[event.ip] = (event.ip_type, event.asn)
        if type(event) is not DeviceEvent or event.kind not in LOGIN_KINDS:
            return self.peek(event)
        failed = event.kind == "login_failure"
        ip_facts = self._observe(self._ips, event.ip, event, failed)
        dev_facts = self._observe(self._devices, event.device_id, event, failed)
        burst = 0.0
        if self.burst is not None:
            weight = 2 if failed else 1
            if event.ip:
                burst = self.burst.score("ip:" + event.ip, event.account_id, event.ts, weight)
            if event.device_id:
                burst = max(burst, self.burst.score("dev:" + event.device_id, event.account_id, event.ts, weight))
        return _event_facts(ip_facts, dev_facts, burst, *self._ip_info.get(event.ip, (None, None)))

    def peek(self, event: Event) -> EventFacts:
        """Facts for a non-login event, without counting it."""
        ip = self._ips.get(event.ip) if event.ip else None
        dev = self._devices.get(event.device_id) if event.device_id else None
        info = self._ip_info.get(event.ip) if event.ip else None
        if ip is None and dev is None and info is None:
            return NO_FACTS
        return _event_facts(ip.facts() if ip else _NO_SOURCE, dev.facts() if dev else _NO_SOURCE, 0.0,
                            *(info or (None, None)))

    def _observe(self, table: dict[str, _Window], key: str | None, event: Event, failed: bool) -> SourceFacts:
        if not key:
            return _NO_SOURCE
        window = table.get(key)
        if window is None:
            if len(table) >= self.max_sources:
                self._evict(table, event.ts)
            window = table[key] = _Window(event.ts)
        window.roll(event.ts)
        window.add(event.account_id, failed, self.max_accounts)
        return window.facts()

    @staticmethod
    def _evict(table: dict[str, _Window], now: int) -> None:
        stale = [k for k, w in table.items() if now - w.start >= 2 * HOUR_MS]
        for k in stale or list(table)[: len(table) // 10 + 1]:
            del table[k]


class ExternalFacts:
    """Facts supplied from outside (the stream worker's IP and device agents)."""

    def __init__(self) -> None:
        self._ips: dict[str, SourceFacts] = {}
        self._devices: dict[str, SourceFacts] = {}
        self._burst: dict[str, float] = {}
        self._ip_info: dict[str, tuple[str | None, int | None]] = {}

    def put_ip(self, ip: str, facts: SourceFacts, burst: float = 0.0,
               ip_type: str | None = None, asn: int | None = None) -> None:
        self._ips[ip] = facts
        self._burst["ip:" + ip] = burst
        if ip_type is not None or asn is not None:
            self._ip_info[ip] = (ip_type, asn)

    def put_device(self, device_id: str, facts: SourceFacts, burst: float = 0.0) -> None:
        self._devices[device_id] = facts
        self._burst["dev:" + device_id] = burst

    def lookup(self, event: Event) -> EventFacts:
        ip = self._ips.get(event.ip, SourceFacts()) if event.ip else SourceFacts()
        dev = self._devices.get(event.device_id, SourceFacts()) if event.device_id else SourceFacts()
        burst = max(self._burst.get("ip:" + (event.ip or ""), 0.0),
                    self._burst.get("dev:" + (event.device_id or ""), 0.0))
        return EventFacts(ip, dev, burst, *self._ip_info.get(event.ip or "", (None, None)))
