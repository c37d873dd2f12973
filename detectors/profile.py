"""Per-account behavioural profile: bounded, aged, serialisable to compact bytes (no pickle).

A :class:`Profile` holds what the detectors need to judge one account's next event: the devices,
countries, networks and payees it has used and when, its location centre and last fix, its
active hours, amount statistics, loan cycle, recent credential changes and failed logins, the
restriction it is under, and the ids of the last events applied (so a redelivered event changes
nothing). Every collection has a cap and entries age out.

>>> p = Profile()
>>> p.devices["d1"] = [1000, 2000, 3, 0]
>>> Profile.from_bytes(p.to_bytes()).devices
{'d1': [1000, 2000, 3, 0]}
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["Profile", "Restriction", "touch"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


class Restriction:
    """The states of the action ladder an account can be in."""

    NONE = "none"
    STEPPED_UP = "step_up"
    FROZEN = "frozen"
    CLOSED = "closed"


# caps of each collection
MAX_DEVICES = 6
MAX_COUNTRIES = 6
MAX_IPS = 8
MAX_ASNS = 6
MAX_PAYEES = 24
MAX_SESSIONS = 4
MAX_FAILS = 20
MAX_SEEN = 48
MAX_GOOD = 12


def touch(table: dict, key: Any, ts: int, cap: int) -> list:
    """Count ``key`` as seen at ``ts`` in a ``key -> [first, last, n, ...]`` table of at most
    ``cap`` entries, evicting the least recently seen. Returns the entry."""
    entry = table.get(key)
    if entry is None:
        if len(table) >= cap:
            del table[min(table, key=lambda k: table[k][1])]
        entry = table[key] = [ts, ts, 1, 0]
    else:
        if ts > entry[1]:
            entry[1] = ts
        if ts < entry[0]:
            entry[0] = ts
        entry[2] += 1
    return entry


class Profile:
    """Everything atoguard remembers about one account. Field order is the wire order."""

    __slots__ = (
        "first_ts", "last_ts", "n_events", "devices", "countries", "ips", "asns", "centre",
        "last_fix", "hours", "amount", "payees", "loan", "creds", "fails", "sessions",
        "restriction", "actions", "seen", "good", "alert_x", "balance", "credit_limit", "pruned_ts",
        "evidence",
    )
    VERSION = 2

    def __init__(self) -> None:
        self.first_ts = 0
        self.last_ts = 0
        self.n_events = 0
        self.devices: dict[str, list] = {}     # id -> [first, last, n, trust: 1/0/-1 suspect, (home: 0, 1 by GPS, 2 on the home network)]
        self.countries: dict[str, list] = {}   # cc -> [first, last, n, 0]
        self.ips: dict[str, list] = {}         # ip -> [first, last, n, asn, cc, ip_type, suspect]
        self.asns: dict[str, list] = {}        # str(asn) -> [first, last, n, 0]
        self.centre: list = []                 # [lat, lon, weight]
        self.last_fix: list = []               # [ts, lat, lon, err_km, cc]
        self.hours: list = [0] * 24            # decayed counts of active hours (UTC)
        self.amount: list = [0, 0.0, 0.0]      # River stats.Var state of log1p(amount): n, mean, var
        self.payees: dict[str, list] = {}      # id -> [first, last, n, 0]
        self.loan: list = [0, 0, 0, 0]         # last draw ts, last repay ts, draws, repays
        self.creds: dict[str, list] = {}       # kind -> [ts, event_id, suspicious 0/1]
        self.fails: list = []                  # ts of recent failed logins
        self.sessions: dict[str, list] = {}    # session -> [first, last, n, ip, asn, device]
        self.restriction: list = [Restriction.NONE, 0, 0, None]  # state, since, until, alert_id
        self.actions: dict[str, list] = {}     # action/alert -> [ts, risk]
        self.seen: list = []                   # last applied event ids
        self.good: dict[str, int] = {}         # "device:x" / "country:x" / "payee:x" -> until ts
        self.alert_x: list = []                # features of the last alert, for verdict learning
        self.balance: float | None = None
        self.credit_limit: float | None = None
        self.pruned_ts = 0
        self.evidence: dict[str, list] = {}    # family -> [ts, score, reasons] of a recent finding

    # -- serialisation -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return orjson.dumps([self.VERSION, *(getattr(self, s) for s in self.__slots__)])

    @classmethod
    def from_bytes(cls, data: bytes) -> "Profile":
        values = orjson.loads(data)
        if not values or values[0] not in (1, cls.VERSION):
            raise ValueError(f"profile format {values[:1]} is not version {cls.VERSION}")
        p = cls.__new__(cls)
        for name, value in zip(cls.__slots__, values[1:]):
            setattr(p, name, value)
        if values[0] == 1:  # version 1 had no recent evidence
            p.evidence = {}
        return p

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and self.to_bytes() == other.to_bytes()

    # -- queries ---------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.restriction[0]

    def is_good(self, key: str, ts: int) -> bool:
        until = self.good.get(key)
        return until is not None and until >= ts

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.seen

    def mark_seen(self, event_id: str) -> None:
        seen = self.seen
        seen.append(event_id)
        if len(seen) > MAX_SEEN:
            del seen[: len(seen) - MAX_SEEN]

    # -- ageing ------------------------------------------------------------------------------------
    def prune(self, now: int, retention_ms: int, cred_ms: int) -> None:
        """Drop entries not seen within the retention; run at most once a day per account."""
        if now - self.pruned_ts < DAY_MS:
            return
        self.pruned_ts = now
        cutoff = now - retention_ms
        for table in (self.devices, self.countries, self.ips, self.asns, self.payees):
            if table:
                stale = [k for k, v in table.items() if v[1] < cutoff]
                for key in stale:
                    del table[key]
        if self.sessions:
            for key in [k for k, v in self.sessions.items() if v[1] < now - DAY_MS]:
                del self.sessions[key]
        if self.creds:
            for key in [k for k, v in self.creds.items() if v[0] < now - cred_ms]:
                del self.creds[key]
        if self.good:
            for key in [k for k, until in self.good.items() if until < now]:
                del self.good[key]
        if self.fails:
            self.fails = [t for t in self.fails if t >= now - DAY_MS]
