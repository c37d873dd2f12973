"""Per-account behavioural profile: named records, bounded, aged, one versioned binary codec.

A :class:`Profile` holds what the detectors need to judge one account's next event: the devices,
countries, networks and payees it has used and when, its location centre and last fix, its
active hours, amount statistics, loan cycle, recent credential changes and failed logins, the
restriction it is under, and the ids of the last events applied (so a redelivered event changes
nothing). Every collection has a cap and entries age out.

The records are :mod:`msgspec` structs with named fields, stored as MessagePack arrays
(:func:`encode` / :func:`decode`, format :data:`FORMAT`). Profiles written by earlier versions (JSON
lists, formats 1 and 2; MessagePack with the event ids in full and the alerted features by name,
format 3) still load. Only :mod:`detectors.update` writes a profile; every other module reads it.

>>> p = Profile()
>>> p.devices["d1"] = Device(1000, 2000, 3)
>>> decode(encode(p)).devices["d1"]
Device(first=1000, last=2000, n=3, trust=0, home=0)
"""

from __future__ import annotations

import hashlib
from typing import Callable, TypeVar

import msgspec
import orjson

__all__ = [
    "Address", "AlertedSituation", "AmountStats", "Centre", "Challenge", "CredentialChange", "Device",
    "Evidence", "Failure", "Fix", "Hold", "Loan", "Mark", "PartnerNote", "Pass", "Payee", "Profile", "Restriction", "Seen",
    "Session", "State",
    "decode", "encode", "event_digest", "touch", "DAY_MS", "HOUR_MS", "FEATURE_NAMES", "FORMAT",
]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

#: the codec's format: a leading byte, then the MessagePack array of the profile
FORMAT = 4

#: the numeric features of an event (:meth:`detectors.context.Context.features`), in the order
#: the features dict has them. An alerted situation stores its features by position in this
#: order, so a new feature goes at the end, and none is ever removed or moved.
FEATURE_NAMES = ("device_new", "device_young", "ip_new", "asn_new", "country_new", "risky_network",
                 "fails", "cred_recent", "money_out", "ip_accounts", "burst", "log_amount", "amount_z",
                 "hour_share", "log_speed", "drain", "credit")


class State:
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
MAX_PASSES = 8
MAX_FAILURES = 8


class _Record(msgspec.Struct, array_like=True, gc=False):
    """Base of the profile's records: stored as compact arrays, field order is wire order."""


class Seen(_Record):
    """Something the account has used: first and last seen (event time, ms) and how often."""

    first: int
    last: int
    n: int = 1


class Device(Seen):
    """A device of the account. ``trust``: 1 trusted (bound while settled, or confirmed), 0
    unknown, -1 suspect. ``home``: 0 never seen at home, 1 by a GPS fix, 2 on the home network."""

    trust: int = 0
    home: int = 0


class Address(Seen):
    """An IP address the account used, with what was learnt about it."""

    asn: int | None = None
    country: str | None = None
    ip_type: str | None = None
    suspect: bool = False


class Payee(Seen):
    """A payee or merchant; ``paid`` once money went to it (added but never paid otherwise)."""

    paid: bool = False


class Session(Seen):
    """A session: the network it started on (address and operator) and its device."""

    ip: str | None = None
    asn: int | None = None
    device: str | None = None


class CredentialChange(_Record):
    """A recent change of a credential or contact point (or a device registration).

    ``bound_device``: for ``device_bound``, the device registered. ``novel_device``: the device
    whose novelty is the only thing suspect about the change (one line of evidence, not two)."""

    ts: int
    event_id: str
    suspicious: bool
    bound_device: str | None = None
    novel_device: str | None = None


class Restriction(_Record):
    """Where the account stands on the action ladder, since when, until when, and why."""

    state: str = State.NONE
    since: int = 0
    until: int = 0
    alert_id: str | None = None
    #: the freeze or close in force (v3: a ``deny`` names it); None for older stored profiles
    command_id: str | None = None


class Mark(_Record):
    """When an action (or an alert) was last taken, and at what risk."""

    ts: int
    risk: float


class Evidence(_Record):
    """A recent corroborating finding of one family, carried to the events of the same sign-in."""

    ts: int
    score: float
    reasons: list[str]


class AlertedSituation(_Record):
    """The features and the device, country and payee of the last alert, for verdict learning.
    ``values``: the features in :data:`FEATURE_NAMES` order, None where absent (trailing ones
    dropped); :meth:`features` gives them back by name."""

    alert_id: str
    values: list[float | None]
    device: str | None = None
    country: str | None = None
    payee: str | None = None

    @staticmethod
    def feature_values(features: dict[str, float]) -> list[float | None]:
        """``features`` (keys among :data:`FEATURE_NAMES`) by position, as :attr:`values` holds them."""
        values = [features.get(name) for name in FEATURE_NAMES]
        while values and values[-1] is None:
            values.pop()
        return values

    def features(self) -> dict[str, float]:
        """The features by name, in :data:`FEATURE_NAMES` order (the order they were alerted in)."""
        return {name: v for name, v in zip(FEATURE_NAMES, self.values) if v is not None}


class Centre(_Record):
    """The account's home centre, learnt from GPS fixes of settled devices."""

    lat: float
    lon: float
    weight: int


class Fix(_Record):
    """The last location fix that locates the person: time, place, error (km), country."""

    ts: int
    lat: float
    lon: float
    err_km: float
    country: str | None = None


class AmountStats(_Record):
    """Running mean and variance of log1p(amount) of money going out (river ``stats.Var``)."""

    n: float = 0.0
    mean: float = 0.0
    var: float = 0.0


class Loan(_Record):
    """The credit line's cycle: the last draw and repayment (ts), and how many of each."""

    last_draw: int = 0
    last_repay: int = 0
    draws: int = 0
    repays: int = 0


class Challenge(_Record):
    """The account's open challenge: a ``step_up`` (or the way back of a ``freeze``) awaiting its
    answer, the session it was put to, and when it counts as unanswered."""

    command_id: str
    action: str
    issued_at: int
    expires_at: int
    methods: list[str]
    risk: float
    device: str | None = None
    session: str | None = None
    ip: str | None = None
    #: a failed attempt was already recorded as evidence (v3: the challenge stays open after it,
    #: so its expiry adds no second failure)
    failed: bool = False


class Hold(_Record):
    """A decided event held (contract v3, "Decisions"): the ``hold`` decision's id, the
    challenge it waits on, that challenge's methods and ``expires_at`` (the hold lapses then,
    writing nothing)."""

    decision_id: str
    command_id: str
    expires_at: int
    methods: list[str]


class Pass(_Record):
    """A challenge the person on a device or session passed: when, with what, how strongly
    (``strong``: face, passkey, or a strongly attested device bound for long)."""

    ts: int
    method: str
    strong: bool


class Failure(_Record):
    """A challenge failed or left unanswered: when, the method, the reason, and where from."""

    ts: int
    method: str | None
    reason: str
    device: str | None = None
    session: str | None = None
    ip: str | None = None


class PartnerNote(_Record):
    """A partner's signal (contract v3 ``ato.signals``) as evidence: when it came, its kind, the
    partner's role, a digest of its issuer and its weight (:mod:`detectors.signals`)."""

    ts: int
    kind: str
    role: str
    issuer: str
    weight: float


def _dict() -> dict:
    return {}


class Profile(msgspec.Struct, array_like=True, gc=False):
    """Everything atoguard remembers about one account. Field order is the wire order."""

    first_ts: int = 0
    last_ts: int = 0
    n_events: int = 0
    devices: dict[str, Device] = msgspec.field(default_factory=_dict)
    countries: dict[str, Seen] = msgspec.field(default_factory=_dict)
    ips: dict[str, Address] = msgspec.field(default_factory=_dict)
    asns: dict[str, Seen] = msgspec.field(default_factory=_dict)
    centre: Centre | None = None
    last_fix: Fix | None = None
    hours: list[int] = msgspec.field(default_factory=lambda: [0] * 24)  # decayed counts per UTC hour
    amount: AmountStats = msgspec.field(default_factory=AmountStats)
    payees: dict[str, Payee] = msgspec.field(default_factory=_dict)
    loan: Loan = msgspec.field(default_factory=Loan)
    creds: dict[str, CredentialChange] = msgspec.field(default_factory=_dict)  # by kind
    fails: list[int] = msgspec.field(default_factory=list)  # ts of recent failed logins
    sessions: dict[str, Session] = msgspec.field(default_factory=_dict)
    restriction: Restriction = msgspec.field(default_factory=Restriction)
    actions: dict[str, Mark] = msgspec.field(default_factory=_dict)  # action or "alert" -> last
    seen: bytes = b""  # the event_digest of each of the last applied event ids, oldest first
    good: dict[str, int] = msgspec.field(default_factory=_dict)  # "device:x"/"country:x"/"payee:x" -> until
    alerted: AlertedSituation | None = None
    balance: float | None = None
    credit_limit: float | None = None
    pruned_ts: int = 0
    evidence: dict[str, Evidence] = msgspec.field(default_factory=_dict)  # family -> recent finding
    # -- the closed loop (contract v2); new fields go last so older format-3 bytes still load
    challenge: Challenge | None = None  # the open challenge
    passes: dict[str, Pass] = msgspec.field(default_factory=_dict)  # "device:x"/"session:x" -> last pass
    failures: list[Failure] = msgspec.field(default_factory=list)  # recent failed/unanswered challenges
    methods_used: dict[str, int] = msgspec.field(default_factory=_dict)  # method -> last ts the holder used it
    # -- contract v3; new fields go last so older stored profiles still load
    others: list[Challenge] = msgspec.field(default_factory=list)  # open challenges older than ``challenge``
    holds: list[Hold] = msgspec.field(default_factory=list)  # open holds, oldest first
    # partners' signals (contract v3): recent signals, and the restriction shared as account_disabled
    signals: list[PartnerNote] = msgspec.field(default_factory=list)
    shared: str | None = None

    # -- queries ---------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.restriction.state

    def is_good(self, key: str, ts: int) -> bool:
        until = self.good.get(key)
        return until is not None and until >= ts

    def has_seen(self, event_id: str) -> bool:
        """Whether ``event_id`` is among the last applied events (:attr:`seen`)."""
        digest, seen = event_digest(event_id), self.seen
        i = seen.find(digest)
        while i >= 0:
            if i % DIGEST_BYTES == 0:
                return True
            i = seen.find(digest, i + 1)
        return False

    def to_bytes(self) -> bytes:
        return encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Profile":
        return decode(data)


#: bytes of an event id's digest in :attr:`Profile.seen`
DIGEST_BYTES = 8


def event_digest(event_id: str) -> bytes:
    """A stable 64-bit digest of an event id (BLAKE2b; the same in every process, unlike
    ``hash``): what :attr:`Profile.seen` keeps of it. Two ids share one with odds of 2**-64."""
    return hashlib.blake2b(event_id.encode(), digest_size=DIGEST_BYTES).digest()


R = TypeVar("R", bound=Seen)


def touch(table: dict[str, R], key: str, ts: int, cap: int, record: Callable[[int, int], R]) -> R:
    """Count ``key`` as seen at ``ts`` in a table of at most ``cap`` records, evicting the least
    recently seen; a new key gets ``record(ts, ts)``. Returns the record."""
    entry = table.get(key)
    if entry is None:
        if len(table) >= cap:
            del table[min(table, key=lambda k: table[k].last)]
        entry = table[key] = record(ts, ts)
    else:
        if ts > entry.last:
            entry.last = ts
        if ts < entry.first:
            entry.first = ts
        entry.n += 1
    return entry


# -- codec -------------------------------------------------------------------------------------

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Profile)
_HEADER = bytes([FORMAT])
_FORMAT_3 = b"\x03"


def encode(profile: Profile) -> bytes:
    """The profile as bytes: the format byte, then MessagePack."""
    return _HEADER + _ENCODER.encode(profile)


def decode(data: bytes) -> Profile:
    """A profile from :func:`encode`'s bytes, or from those of an earlier format: MessagePack of
    format 3, JSON lists of formats 1 and 2."""
    if data[:1] == _HEADER:
        return _DECODER.decode(memoryview(data)[1:])
    if data[:1] == _FORMAT_3:
        return _from_format_3(msgspec.msgpack.decode(memoryview(data)[1:]))
    if data[:1] == b"[":
        return _from_lists(orjson.loads(data))
    raise ValueError(f"not a stored profile (format byte {data[:1]!r}, expected {FORMAT})")


def _digests(event_ids: list[str]) -> bytes:
    """:attr:`Profile.seen` of the event ids an earlier format kept in full."""
    return b"".join(event_digest(e) for e in event_ids[-MAX_SEEN:])


_SEEN_AT = Profile.__struct_fields__.index("seen")
_ALERTED_AT = Profile.__struct_fields__.index("alerted")


def _from_format_3(values: list) -> Profile:
    """A profile of format 3: the same MessagePack array, but with the event ids in full and the
    alerted situation's features as a dict."""
    values[_SEEN_AT] = _digests(values[_SEEN_AT])
    alerted = values[_ALERTED_AT] if len(values) > _ALERTED_AT else None
    if alerted:
        alerted[1] = AlertedSituation.feature_values(alerted[1])
    return msgspec.convert(values, Profile)


def _from_lists(values: list) -> Profile:
    """A profile of format 1 or 2: JSON lists in the order of the old ``__slots__``."""
    if not values or values[0] not in (1, 2):
        raise ValueError(f"profile format {values[:1]} is not a known format")
    (first_ts, last_ts, n_events, devices, countries, ips, asns, centre, last_fix, hours, amount,
     payees, loan, creds, fails, sessions, restriction, actions, seen, good, alert_x, balance,
     credit_limit, pruned_ts, *rest) = values[1:]
    evidence = rest[0] if rest else {}  # format 1 had no recent evidence

    def seen_rec(v: list) -> Seen:
        return Seen(v[0], v[1], v[2])

    return Profile(
        first_ts=first_ts, last_ts=last_ts, n_events=n_events,
        devices={k: Device(v[0], v[1], v[2], v[3], v[4] if len(v) > 4 else 0) for k, v in devices.items()},
        countries={k: seen_rec(v) for k, v in countries.items()},
        ips={k: Address(v[0], v[1], v[2], *(v[3:6] if len(v) > 6 else (None, None, None)),
                        bool(v[6]) if len(v) > 6 else False) for k, v in ips.items()},
        asns={k: seen_rec(v) for k, v in asns.items()},
        centre=Centre(*centre) if centre else None,
        last_fix=Fix(*last_fix) if last_fix else None,
        hours=list(hours), amount=AmountStats(*amount),
        payees={k: Payee(v[0], v[1], v[2], bool(v[3])) for k, v in payees.items()},
        loan=Loan(*loan),
        creds={k: CredentialChange(v[0], v[1], bool(v[2]), v[3] if len(v) > 3 else None,
                                   v[4] if len(v) > 4 else None) for k, v in creds.items()},
        fails=list(fails),
        sessions={k: Session(v[0], v[1], v[2], *(v[3:6] if len(v) > 5 else (None, None, None)))
                  for k, v in sessions.items()},
        restriction=Restriction(*restriction), actions={k: Mark(*v) for k, v in actions.items()},
        seen=_digests(seen), good=dict(good),
        alerted=AlertedSituation(alert_x[0], AlertedSituation.feature_values(alert_x[1]), *alert_x[2:])
        if alert_x else None,
        balance=balance, credit_limit=credit_limit, pruned_ts=pruned_ts,
        evidence={k: Evidence(v[0], v[1], list(v[2])) for k, v in evidence.items()},
    )
