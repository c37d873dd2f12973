"""Typed records of the wire contract, and the decoder that turns bytes into them.

Every input message goes through :func:`decode`, which either returns a record or raises
:class:`BadInput` carrying one of the contract's dead-letter reasons. :func:`decode_or_dead_letter`
is the total version used at the boundaries: it never raises, and a bad message comes back as a
:class:`DeadLetter` holding the original bytes, so nothing is lost.

Validation is table-driven (one :class:`Field` row per contract field, one :data:`KIND_REQUIRES`
row per field that a kind makes required) and is kept in agreement with the JSON Schema files
under ``schemas/v2/`` (and ``schemas/v1/`` for v1 input) by a property test.

>>> ev = decode("device", b'{"event_id":"e2","account_id":"a1","ts":1764000000000,"kind":"challenge_failed","method":"sms_otp","reason":"wrong_code"}')
>>> ev.method, ev.reason, ev.command_id
('sms_otp', 'wrong_code', None)
>>> decode_or_dead_letter("device", b'{"event_id":"e3","account_id":"a1","ts":1,"kind":"challenge_passed"}').reason
'MISSING_FIELD'

>>> ev = decode("device", b'{"event_id":"e1","account_id":"a1","ts":1764000000000,"kind":"login_success"}')
>>> ev.kind, ev.device_id
('login_success', None)
>>> dl = decode_or_dead_letter("device", b"not json", key=b"a1", partition=0, offset=7)
>>> dl.reason, dl.offset
('NOT_JSON', 7)
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Callable, ClassVar, Union

import msgspec
import orjson

from detectors import contract as c

__all__ = [
    "BadInput", "DeadLetter", "DeviceEvent", "Event", "LocationEvent", "Signal", "TransactionEvent",
    "Verdict", "decode", "decode_or_dead_letter", "parse_value", "Field", "to_dict",
]


class BadInput(ValueError):
    """An input message that the contract rejects; ``reason`` is a dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# -- records ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """An authentication or device/credential lifecycle event (topic ``device``)."""

    topic: ClassVar[str] = c.DEVICE
    event_id: str
    account_id: str
    ts: int
    kind: str
    device_id: str | None = None
    session_id: str | None = None
    ip: str | None = None
    device_model: str | None = None
    os: str | None = None
    user_agent: str | None = None
    is_emulator: bool | None = None
    is_rooted: bool | None = None
    # v2: the outcome of a challenge (required ``method`` on challenge kinds), and how a sign-in
    # was authenticated. Appended last so positional construction of v1 fields keeps working.
    method: str | None = None
    command_id: str | None = None
    reason: str | None = None
    auth_method: str | None = None
    attestation: str | None = None


@dataclass(frozen=True, slots=True)
class LocationEvent:
    """A location fix (topic ``location``)."""

    topic: ClassVar[str] = c.LOCATION
    event_id: str
    account_id: str
    ts: int
    kind: str
    lat: float
    lon: float
    device_id: str | None = None
    session_id: str | None = None
    ip: str | None = None
    accuracy_m: float | None = None
    country: str | None = None
    city: str | None = None
    asn: int | None = None
    ip_type: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """A money movement or credit event (topic ``transaction``)."""

    topic: ClassVar[str] = c.TRANSACTION
    event_id: str
    account_id: str
    ts: int
    kind: str
    device_id: str | None = None
    session_id: str | None = None
    ip: str | None = None
    amount: float | None = None
    currency: str | None = None
    counterparty_id: str | None = None
    channel: str | None = None
    balance_after: float | None = None
    credit_limit: float | None = None
    lender_id: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Feedback on an account or an alert (topic ``verdicts``)."""

    topic: ClassVar[str] = c.VERDICTS
    verdict_id: str
    account_id: str
    ts: int
    label: str
    source: str
    alert_id: str | None = None
    note: str | None = None

    @property
    def event_id(self) -> str:
        """Verdicts are deduplicated by ``verdict_id``, like events by ``event_id``."""
        return self.verdict_id


@dataclass(frozen=True, slots=True)
class Signal:
    """A partner's security event (topic ``signals``, contract v3 "Partners' signals"): a
    RISC/CAEP event the SSF receiver verified and mapped to the account. ``ts`` is when the
    receiver accepted it (what atoguard could know, and when); ``event_ts`` the partner's own
    time of the event."""

    topic: ClassVar[str] = c.SIGNALS
    event_id: str
    account_id: str
    ts: int
    kind: str
    issuer: str
    partner_role: str
    subject_format: str
    event_ts: int | None = None
    reason: str | None = None
    initiating_entity: str | None = None
    change_type: str | None = None
    credential_type: str | None = None
    current_level: str | None = None
    previous_level: str | None = None
    current_status: str | None = None


Event = Union[DeviceEvent, LocationEvent, TransactionEvent]
Record = Union[DeviceEvent, LocationEvent, TransactionEvent, Verdict, Signal]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input that could not be accepted, with its original bytes and the reason."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The ``dead-letter`` message value (``schemas/v1/dead-letter.schema.json``)."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key_b64": None if self.key is None else base64.b64encode(self.key).decode("ascii"),
            "value_b64": base64.b64encode(self.value).decode("ascii"),
            "reason": self.reason,
            "detail": self.detail,
        }


# -- field checks -----------------------------------------------------------------------------

def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_int(v: Any) -> bool:
    # JSON Schema counts 3.0 as an integer; so do we (and store it as int).
    return type(v) is int or (type(v) is float and v.is_integer())


def _is_num(v: Any) -> bool:
    return type(v) is float or type(v) is int


def _is_bool(v: Any) -> bool:
    return type(v) is bool


@lru_cache(maxsize=65536)
def _valid_ip(text: str) -> bool:
    # Same acceptance as JSON Schema's "ipv4"/"ipv6" formats (no IPv6 zone ids).
    try:
        return not getattr(ipaddress.ip_address(text), "scope_id", None)
    except ValueError:
        return False


def _id(v: str) -> bool:
    return 1 <= len(v) <= c.ID_MAX


def _text(v: str) -> bool:
    return 1 <= len(v) <= c.TEXT_MAX


def _upper(n: int) -> Callable[[str], bool]:
    return lambda v: len(v) == n and v.isascii() and v.isalpha() and v.isupper()


def _one_of(values: frozenset[str]) -> Callable[[str], bool]:
    return values.__contains__


@dataclass(frozen=True, slots=True)
class Field:
    """One contract field: its name, type test, whether required, and its range test."""

    name: str
    type_ok: Callable[[Any], bool]
    type_name: str
    required: bool = False
    in_range: Callable[[Any], bool] | None = None
    range_text: str = ""


_COMMON = (
    Field("event_id", _is_str, "string", True, _id, "1-128 characters"),
    Field("account_id", _is_str, "string", True, _id, "1-128 characters"),
    Field("ts", _is_int, "integer", True, lambda v: c.TS_MIN <= v <= c.TS_MAX, "epoch milliseconds"),
    Field("kind", _is_str, "string", True),
    Field("device_id", _is_str, "string", False, _text, "1-1024 characters"),
    Field("session_id", _is_str, "string", False, _text, "1-1024 characters"),
    Field("ip", _is_str, "string", False, _valid_ip, "an IPv4 or IPv6 address"),
)
_TEXT = ("1-1024 characters")

FIELDS: dict[str, tuple[Field, ...]] = {
    c.DEVICE: _COMMON + (
        Field("device_model", _is_str, "string", False, _text, _TEXT),
        Field("os", _is_str, "string", False, _text, _TEXT),
        Field("user_agent", _is_str, "string", False, _text, _TEXT),
        Field("is_emulator", _is_bool, "boolean"),
        Field("is_rooted", _is_bool, "boolean"),
        Field("method", _is_str, "string", False, _one_of(frozenset((*c.METHODS, c.ID_CHECK))), "|".join((*c.METHODS, c.ID_CHECK))),
        Field("command_id", _is_str, "string", False, _id, "1-128 characters"),
        Field("reason", _is_str, "string", False, _one_of(frozenset(c.FAILURE_REASONS)),
              "|".join(c.FAILURE_REASONS)),
        Field("auth_method", _is_str, "string", False, _one_of(frozenset(c.AUTH_METHODS)),
              "|".join(c.AUTH_METHODS)),
        Field("attestation", _is_str, "string", False, _one_of(frozenset(c.ATTESTATIONS)),
              "|".join(c.ATTESTATIONS)),
    ),
    c.LOCATION: _COMMON + (
        Field("lat", _is_num, "number", True, lambda v: -90 <= v <= 90, "-90..90"),
        Field("lon", _is_num, "number", True, lambda v: -180 <= v <= 180, "-180..180"),
        Field("accuracy_m", _is_num, "number", False, lambda v: v >= 0, ">= 0"),
        Field("country", _is_str, "string", False, _upper(2), "ISO 3166-1 alpha-2"),
        Field("city", _is_str, "string", False, _text, _TEXT),
        Field("asn", _is_int, "integer", False, lambda v: 0 <= v <= 4_294_967_295, "0..2^32-1"),
        Field("ip_type", _is_str, "string", False, _one_of(c.IP_TYPES), "|".join(sorted(c.IP_TYPES))),
    ),
    c.TRANSACTION: _COMMON + (
        Field("amount", _is_num, "number", False, lambda v: v >= 0, ">= 0"),
        Field("currency", _is_str, "string", False, _upper(3), "ISO 4217"),
        Field("counterparty_id", _is_str, "string", False, _text, _TEXT),
        Field("channel", _is_str, "string", False, _one_of(c.CHANNELS), "|".join(sorted(c.CHANNELS))),
        Field("balance_after", _is_num, "number"),
        Field("credit_limit", _is_num, "number"),
        Field("lender_id", _is_str, "string", False, _text, _TEXT),
    ),
    c.VERDICTS: (
        Field("verdict_id", _is_str, "string", True, _id, "1-128 characters"),
        Field("account_id", _is_str, "string", True, _id, "1-128 characters"),
        Field("ts", _is_int, "integer", True, lambda v: c.TS_MIN <= v <= c.TS_MAX, "epoch milliseconds"),
        Field("label", _is_str, "string", True, _one_of(c.VERDICT_LABELS), "ato|legit"),
        Field("source", _is_str, "string", True, _one_of(c.VERDICT_SOURCES), "analyst|user"),
        Field("alert_id", _is_str, "string", False, _id, "1-128 characters"),
        Field("note", _is_str, "string", False, lambda v: len(v) <= 4096, "at most 4096 characters"),
        Field("actor", _is_str, "string", False, _text, _TEXT),  # v3: who gave it (pseudonymous)
    ),
    c.SIGNALS: _COMMON[:4] + (
        Field("issuer", _is_str, "string", True, _text, _TEXT),
        Field("partner_role", _is_str, "string", True, _one_of(frozenset(c.PARTNER_ROLES)),
              "|".join(c.PARTNER_ROLES)),
        Field("subject_format", _is_str, "string", True, _one_of(frozenset(c.SUBJECT_FORMATS)),
              "|".join(c.SUBJECT_FORMATS)),
        Field("event_ts", _is_int, "integer", False, lambda v: c.TS_MIN <= v <= c.TS_MAX, "epoch milliseconds"),
        Field("reason", _is_str, "string", False, _text, _TEXT),
        Field("initiating_entity", _is_str, "string", False, _one_of(frozenset(c.INITIATING_ENTITIES)),
              "|".join(c.INITIATING_ENTITIES)),
        Field("change_type", _is_str, "string", False, _text, _TEXT),
        Field("credential_type", _is_str, "string", False, _text, _TEXT),
        Field("current_level", _is_str, "string", False, _text, _TEXT),
        Field("previous_level", _is_str, "string", False, _text, _TEXT),
        Field("current_status", _is_str, "string", False, _text, _TEXT),
    ),
}

#: Fields that a kind makes required: topic -> kind -> field names.
KIND_REQUIRES: dict[str, dict[str, tuple[str, ...]]] = {
    c.DEVICE: {kind: ("method",) for kind in c.CHALLENGE_KINDS},
    c.TRANSACTION: {kind: ("amount",) for kind in c.AMOUNT_KINDS},
}


class _Rows:
    """The fields of one topic as the decoder walks them: required rows in contract order, and
    optional rows by name (the decoder visits only the keys an object actually has, so a field
    added to the contract costs nothing on messages that do not carry it)."""

    __slots__ = ("required", "optional")

    def __init__(self, spec: tuple[Field, ...]) -> None:
        self.required = tuple(_row(f) for f in spec if f.required)
        self.optional = {f.name: _row(f) for f in spec if not f.required}


def _row(f: Field) -> tuple[Any, ...]:
    return (f.name, f.type_ok, f.type_ok is _is_int, f.in_range, f)


def _checked(row: tuple[Any, ...], v: Any) -> Any:
    """The value of a present (non-null) field, or :class:`BadInput` with its reason."""
    name, type_ok, integral, in_range, f = row
    if not type_ok(v):
        raise BadInput(c.WRONG_TYPE, f"field {name!r} must be {f.type_name}, got {type(v).__name__}")
    if integral and type(v) is float:
        v = int(v)
    if in_range is not None and not in_range(v):
        raise BadInput(c.OUT_OF_RANGE, f"field {name!r} must be {f.range_text}, got {_short(v)}")
    return v


_ROWS = {topic: _Rows(spec) for topic, spec in FIELDS.items()}

_RECORDS = {c.DEVICE: DeviceEvent, c.LOCATION: LocationEvent, c.TRANSACTION: TransactionEvent,
            c.VERDICTS: Verdict, c.SIGNALS: Signal}
_SLOTS = {t: tuple(f.name for f in fields(cls)) for t, cls in _RECORDS.items()}


def _builder(cls: type) -> Callable[[dict[str, Any]], Any]:
    """A fast constructor of a frozen record from a dict of validated values (absent = None).

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, the largest
    single cost of decoding; this one calls each slot's own setter, with the same result for
    about two thirds of the cost. It is only for the decoder, on values it has validated: records
    have no ``__post_init__`` to skip, and every optional field defaults to ``None``.
    """
    names = [f.name for f in fields(cls)]
    optional = set(_ROWS[cls.topic].optional)
    assert all(f.default is None for f in fields(cls) if f.name in optional), cls
    body = "".join(f"    _set_{n}(self, get({n!r}))\n" for n in names)
    source = f"def build(values):\n    self = _new(_cls)\n    get = values.get\n{body}    return self\n"
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls,
                                 **{f"_set_{n}": cls.__dict__[n].__set__ for n in names}}
    exec(source, namespace)  # noqa: S102 - source built from the record's own field names
    return namespace["build"]


_BUILD = {topic: _builder(cls) for topic, cls in _RECORDS.items()}


def parse_value(topic: str, obj: Any, key: bytes | None = None) -> DeviceEvent | LocationEvent | TransactionEvent | Verdict:
    """Validate an already-parsed JSON value of ``topic`` and build its record.

    ``key`` is the message key; when given it must equal ``account_id`` (files carry no key).
    Raises :class:`BadInput`.
    """
    rows = _ROWS.get(topic)
    if rows is None:
        raise BadInput(c.UNKNOWN_TOPIC, f"topic {topic!r} is not an input topic of the contract")
    if type(obj) is not dict:
        raise BadInput(c.NOT_OBJECT, f"the value is a JSON {type(obj).__name__}, not an object")
    values: dict[str, Any] = {}
    for row in rows.required:
        name = row[0]
        v = obj.get(name)
        if v is None:
            what = "null" if name in obj else "missing"
            raise BadInput(c.MISSING_FIELD if what == "missing" else c.WRONG_TYPE,
                           f"required field {name!r} is {what}")
        values[name] = _checked(row, v)
    optional = rows.optional
    for name, v in obj.items():
        row = optional.get(name)
        if row is not None and v is not None:  # else: required (done), unknown (ignored) or null
            values[name] = _checked(row, v)
    kinds = c.KINDS.get(topic)
    if kinds is not None:
        kind = values["kind"]
        if kind not in kinds:
            raise BadInput(c.UNKNOWN_KIND, f"kind {_short(kind)} is not a {topic} kind")
        needs = KIND_REQUIRES.get(topic, {}).get(kind)
        if needs:
            for name in needs:
                if name not in values:
                    raise BadInput(c.MISSING_FIELD, f"field {name!r} is required for kind {kind!r}")
    if key is not None:
        try:
            key_text = key.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(c.KEY_MISMATCH, "the message key is not UTF-8") from None
        if key_text != values["account_id"]:
            raise BadInput(c.KEY_MISMATCH,
                           f"key {_short(key_text)} differs from account_id {_short(values['account_id'])}")
    return _BUILD[topic](values)


def decode(topic: str, value: bytes, key: bytes | None = None) -> DeviceEvent | LocationEvent | TransactionEvent | Verdict:
    """Decode the bytes of one input message. Raises :class:`BadInput`.

    A well-formed message takes the typed fast path (:func:`_fast_decode`); anything it does not
    accept is decoded again by the table-driven path, which says what is wrong with it."""
    record = _fast_decode(topic, value, key)
    if record is not None:
        return record
    return _decode_by_table(topic, value, key)


def _decode_by_table(topic: str, value: bytes, key: bytes | None) -> DeviceEvent | LocationEvent | TransactionEvent | Verdict:
    """:func:`decode` without the fast path: orjson, then :func:`parse_value`."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadInput(c.NOT_JSON, f"not valid UTF-8 JSON ({exc.args[0] if exc.args else exc})") from None
    return parse_value(topic, obj, key)


# -- the typed fast path ---------------------------------------------------------------------
#
# msgspec decodes a message straight into a struct whose field types are the contract's (an
# "integer" is a JSON integer, a "number" an integer or a float kept as it came, a required field
# has no default, a null optional field is absent; an unknown field is refused, so that no part of
# the message goes unread: orjson checks all of it, escapes and UTF-8 included); a generated function then runs the same range
# checks as the table, checks the kind and the key, and builds the record. Whatever either step
# refuses returns None, and :func:`decode` takes the table-driven path, which either accepts it
# (an integer written as 3.0) or raises the contract's dead-letter reason. The fast path accepts
# nothing the table-driven path refuses, and gives the same record (``tests/test_decode_fast.py``).

_WIRE_TYPES: dict[Callable[[Any], bool], Any] = {_is_str: str, _is_int: int, _is_num: int | float, _is_bool: bool}


def _fast_path(topic: str) -> tuple[Any, Callable[[Any, bytes | None], Any]]:
    """The msgspec decoder of ``topic`` and the function that checks a decoded struct and
    builds its record (or returns None)."""
    spec = FIELDS[topic]
    struct = msgspec.defstruct(
        f"_Wire_{topic}",
        [(f.name, _WIRE_TYPES[f.type_ok]) if f.required else (f.name, _WIRE_TYPES[f.type_ok] | None, None)
         for f in spec],
        kw_only=True, forbid_unknown_fields=True, gc=False)
    cls = _RECORDS[topic]
    names = [f.name for f in fields(cls)]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls,
                                 **{f"_set_{n}": cls.__dict__[n].__set__ for n in names}}
    lines = ["def build(w, key):"]
    for f in spec:
        lines.append(f"    v = w.{f.name}")
        if f.in_range is not None:
            namespace[f"_ok_{f.name}"] = f.in_range
            test = f"not _ok_{f.name}(v)" if f.required else f"v is not None and not _ok_{f.name}(v)"
            lines.append(f"    if {test}: return None")
    kinds = c.KINDS.get(topic)
    if kinds is not None:
        namespace["_kinds"] = kinds
        lines.append("    if w.kind not in _kinds: return None")
        for kind, needs in KIND_REQUIRES.get(topic, {}).items():
            absent = " or ".join(f"w.{name} is None" for name in needs)
            lines.append(f"    if w.kind == {kind!r} and ({absent}): return None")
    lines.append("    if key is not None and key != w.account_id.encode('utf-8'): return None")
    lines.append("    self = _new(_cls)")
    lines += [f"    _set_{n}(self, w.{n})" for n in names]
    lines.append("    return self")
    exec("\n".join(lines) + "\n", namespace)  # noqa: S102 - source built from the contract's field names
    return msgspec.json.Decoder(struct), namespace["build"]


_FAST = {topic: _fast_path(topic) for topic in FIELDS}


def _fast_decode(topic: str, value: Any, key: bytes | None) -> Any:
    """The record of a well-formed message of ``topic``, or None (then ask the table)."""
    fast = _FAST.get(topic)
    if fast is None:
        return None
    try:
        return fast[1](fast[0].decode(value), key)
    except Exception:  # noqa: BLE001 - anything unusual is left to the table-driven path
        return None


def decode_or_dead_letter(topic: str, value: bytes | None, key: bytes | None = None, *,
                          partition: int | None = None, offset: int | None = None,
                          logical_topic: str | None = None) -> DeviceEvent | LocationEvent | TransactionEvent | Verdict | DeadLetter:
    """Like :func:`decode` but total: bad input comes back as a :class:`DeadLetter`.

    ``topic`` is recorded in the dead letter as given (the real topic name on a broker);
    ``logical_topic`` selects the schema when it differs (``ato.device`` -> ``device``).
    """
    raw = b"" if value is None else value
    try:
        return decode(logical_topic or topic, raw, key)
    except BadInput as exc:
        return DeadLetter(topic, partition, offset, key, raw, exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - the boundary must never raise
        return DeadLetter(topic, partition, offset, key, raw, c.WRONG_TYPE, f"undecodable: {exc!r}"[:300])


def to_dict(record: DeviceEvent | LocationEvent | TransactionEvent | Verdict) -> dict[str, Any]:
    """The record as a contract JSON object, without the absent optional fields."""
    return {name: getattr(record, name) for name in _SLOTS[record.topic]
            if getattr(record, name) is not None}


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
