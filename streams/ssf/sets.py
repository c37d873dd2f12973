"""Security Event Tokens (RFC 8417) as SSF 1.0 profiles them: parsing, verification, building.

No cryptography is written here: signatures are joserfc's (RS256 over ``cryptography``). What
this module adds is the SET profile and its refusals, each with the RFC 8935 error code:

| check | refusal |
|---|---|
| not a compact JWS, bad base64/JSON, claims not an object | ``invalid_request`` |
| header ``typ`` not ``secevent+jwt`` | ``invalid_request`` |
| ``sub`` or ``exp`` claim present (RFC 8417 section 2.2) | ``invalid_request`` |
| ``jti``/``iat``/``events`` missing or mistyped, a forwarded event without a subject | ``invalid_request`` |
| ``iss`` not a configured transmitter (or not the one the bearer token names) | ``invalid_issuer`` |
| ``alg`` not RS256, ``kid`` not in the transmitter's JWKS, key under 2048 bits, bad signature | ``invalid_key`` |
| ``aud`` does not name this receiver | ``invalid_audience`` |

Event types are RISC 1.0 / CAEP 1.0 URIs; the *kind* is the URI's last segment with ``-`` as
``_`` (contract v3). :func:`signals_of` turns a verified SET into the ``ato.signals`` messages.

>>> kind_of(RISC + "account-disabled")
'account_disabled'
>>> event_id("https://idp.example", "j1", "account_disabled") == event_id("https://idp.example", "j1", "account_disabled")
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from detectors import contract as c
from streams.ssf.subjects import Directory, SubjectError, user_subject

__all__ = [
    "CAEP", "ERROR_CODES", "EVENT_URIS", "RISC", "SSF", "VERIFICATION", "Outcome", "Parsed", "Refusal",
    "build_set", "check_claims", "event_id", "kind_of", "parse", "rsa_key_ok", "sign", "signals_of",
    "verify_signature",
]

RISC = "https://schemas.openid.net/secevent/risc/event-type/"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
VERIFICATION = SSF + "verification"
STREAM_UPDATED = SSF + "stream-updated"

#: kind -> the event type URI we send for it (CAEP 1.0 for session and level changes, RISC 1.0
#: for the rest). A receiver accepts a kind under either prefix.
EVENT_URIS: dict[str, str] = {
    kind: (CAEP if kind in {"session_revoked", "credential_change", "assurance_level_change",
                            "device_compliance_change", "risk_level_change"} else RISC) + kind.replace("_", "-")
    for kind in sorted(c.SIGNAL_KINDS)
}

#: RFC 8935 section 2.4 error codes, with the HTTP status we answer them with.
ERROR_CODES = {
    "invalid_request": 400, "invalid_key": 400, "invalid_issuer": 400, "invalid_audience": 400,
    "authentication_failed": 401, "access_denied": 403,
}

MIN_RSA_BITS = 2048
ALGORITHM = "RS256"
_TS_MAX = 253402300799999


class Refusal(Exception):
    """A SET or request refused: ``code`` (RFC 8935), a description, and the HTTP status."""

    def __init__(self, code: str, description: str, status: int | None = None, *, reason: str | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.status = status or ERROR_CODES.get(code, 400)
        #: the metric label: finer than the code (``replayed_jti``, ``bad_signature``...)
        self.reason = reason or code

    def body(self) -> dict[str, str]:
        return {"err": self.code, "description": self.description}


@dataclass(frozen=True, slots=True)
class Parsed:
    """A SET's header and claims before the signature is checked."""

    token: bytes
    header: dict
    claims: dict

    @property
    def iss(self) -> str:
        return self.claims["iss"]

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def _b64(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def parse(token: bytes | str) -> Parsed:
    """Header and claims of a compact SET; :class:`Refusal` ``invalid_request`` if it is not one.

    Checks what needs no key: the JWS shape, ``typ``, an ``iss`` string.
    """
    if isinstance(token, str):
        token = token.encode("utf-8", "surrogatepass")
    token = token.strip()
    parts = token.split(b".")
    if len(parts) != 3 or not all(parts):
        raise Refusal("invalid_request", "the body is not a compact JWS (three base64url parts)", reason="malformed")
    try:
        header = orjson.loads(_b64(parts[0]))
        claims = orjson.loads(_b64(parts[1]))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise Refusal("invalid_request", "header or claims are not base64url JSON", reason="malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Refusal("invalid_request", "header and claims must be JSON objects", reason="malformed")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ("secevent+jwt", "application/secevent+jwt"):
        raise Refusal("invalid_request", "header typ must be secevent+jwt", reason="bad_typ")
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss or len(iss) > 1024:
        raise Refusal("invalid_request", "the iss claim is missing or not a string", reason="malformed")
    return Parsed(token, header, claims)


def rsa_key_ok(key) -> bool:
    """An RSA public key of at least 2048 bits (the CAEP interoperability profile)."""
    from joserfc.jwk import RSAKey

    return isinstance(key, RSAKey) and key.public_key.key_size >= MIN_RSA_BITS


def verify_signature(parsed: Parsed, key) -> None:
    """RS256 over the token with ``key`` (a joserfc RSA key); :class:`Refusal` ``invalid_key``."""
    from joserfc import jws
    from joserfc.errors import JoseError

    if parsed.header.get("alg") != ALGORITHM:
        raise Refusal("invalid_key", f"alg must be {ALGORITHM}", reason="bad_alg")
    if key is None:
        raise Refusal("invalid_key", f"no usable key {parsed.kid!r} in the transmitter's JWKS", reason="unknown_key")
    if not rsa_key_ok(key):
        raise Refusal("invalid_key", f"key {parsed.kid!r} is not an RSA key of >= {MIN_RSA_BITS} bits", reason="weak_key")
    try:
        jws.deserialize_compact(parsed.token, key, algorithms=[ALGORITHM])
    except (JoseError, ValueError):
        raise Refusal("invalid_key", f"the signature does not verify with key {parsed.kid!r}", reason="bad_signature") from None


def check_claims(claims: dict, audience: str) -> None:
    """RFC 8417 / SSF 1.0 claims of a SET whose signature verified."""
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in auds:
        raise Refusal("invalid_audience", f"aud does not name this receiver ({audience})")
    if "sub" in claims:
        raise Refusal("invalid_request", "a SET carries no sub claim (RFC 8417 2.2); use sub_id", reason="sub_claim")
    if "exp" in claims:
        raise Refusal("invalid_request", "a SET carries no exp claim (RFC 8417 2.2)", reason="exp_claim")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise Refusal("invalid_request", "jti must be a string of 1-256 characters", reason="malformed")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise Refusal("invalid_request", "iat must be a NumericDate", reason="malformed")
    events = claims.get("events")
    if not isinstance(events, dict) or not events or not all(isinstance(v, dict) for v in events.values()):
        raise Refusal("invalid_request", "events must be a non-empty object of event objects", reason="malformed")


def kind_of(uri: str) -> str | None:
    """The contract kind of a RISC/CAEP event type URI, ``None`` for any other type."""
    for prefix in (RISC, CAEP):
        if uri.startswith(prefix):
            kind = uri[len(prefix):].replace("-", "_")
            return kind if kind in c.SIGNAL_KINDS else None
    return None


def event_id(iss: str, jti: str, kind: str) -> str:
    """The ``event_id`` of one event of a SET: a hash of ``iss``, ``jti`` and the kind."""
    digest = hashlib.sha256(b"\x00".join(s.encode("utf-8", "surrogatepass") for s in (iss, jti, kind)))
    return "ssf-" + digest.hexdigest()[:40]


def _text(value: Any) -> str | None:
    if isinstance(value, dict):  # CAEP reason_admin / reason_user: {"en": "..."}
        value = value.get("en", next(iter(value.values()), None)) if value else None
    return value if isinstance(value, str) and 0 < len(value) <= 1024 else None


def _optional(payload: dict) -> dict:
    out: dict[str, Any] = {}
    ts = payload.get("event_timestamp")
    if isinstance(ts, int | float) and not isinstance(ts, bool) and 0 <= ts * 1000 <= _TS_MAX:
        out["event_ts"] = int(ts * 1000)
    reason = _text(payload.get("reason")) or _text(payload.get("reason_admin")) or _text(payload.get("reason_user"))
    if reason:
        out["reason"] = reason
    if payload.get("initiating_entity") in c.INITIATING_ENTITIES:
        out["initiating_entity"] = payload["initiating_entity"]
    for name in ("change_type", "credential_type", "current_level", "previous_level", "current_status"):
        value = _text(payload.get(name))
        if value:
            out[name] = value
    return out


@dataclass
class Outcome:
    """What a verified SET turned into: the messages to write and what was left aside."""

    messages: list[tuple[str, dict]]   # (account_id, ato.signals value)
    unknown_types: list[str]
    unknown_subjects: int
    verifications: list[dict]


def signals_of(claims: dict, *, partner: str, role: str, directory: Directory, now_ms: int) -> Outcome:
    """The ``ato.signals`` messages of a verified SET (contract v3 "Partners' signals").

    One message per forwarded event; the subject is the SET's ``sub_id`` (SSF 1.0) or the
    event's own ``subject`` member (earlier drafts). A subject that maps to no account is left
    aside and counted, never refused: a partner must not learn who is a customer.
    """
    out = Outcome([], [], 0, [])
    iss, jti = claims["iss"], claims["jti"]
    for uri, payload in claims["events"].items():
        kind = kind_of(uri)
        if kind is None:
            if uri == VERIFICATION:
                out.verifications.append(payload)
            else:
                out.unknown_types.append(uri)
            continue
        sub_id = claims.get("sub_id", payload.get("subject"))
        if sub_id is None:
            raise Refusal("invalid_request", f"event {uri} has no subject (sub_id)", reason="no_subject")
        try:
            candidates = user_subject(sub_id)
        except SubjectError as exc:
            raise Refusal("invalid_request", f"sub_id: {exc}", reason="bad_subject") from None
        mapped = next((m for m in (directory.account_of(s, partner) for s in candidates) if m), None)
        if mapped is None:
            out.unknown_subjects += 1
            continue
        account_id, fmt = mapped
        message = {"event_id": event_id(iss, jti, kind), "account_id": account_id, "ts": now_ms,
                   "kind": kind, "issuer": iss, "partner_role": role, "subject_format": fmt,
                   **_optional(payload)}
        out.messages.append((account_id, message))
    return out


# -- transmitting ------------------------------------------------------------------------------

def build_set(*, iss: str, aud: str | list[str], jti: str, iat: int, sub_id: dict, events: dict,
              txn: str | None = None) -> dict:
    """The claims of an SSF 1.0 SET (no ``sub``, no ``exp``)."""
    claims = {"iss": iss, "jti": jti, "iat": iat, "aud": aud, "sub_id": sub_id, "events": events}
    if txn:
        claims["txn"] = txn
    return claims


def sign(claims: dict, key, kid: str) -> str:
    """The compact SET: RS256 with ``key`` (a private joserfc RSA key), ``typ`` secevent+jwt."""
    from joserfc import jws

    header = {"alg": ALGORITHM, "typ": "secevent+jwt", "kid": kid}
    return jws.serialize_compact(header, orjson.dumps(claims), key, algorithms=[ALGORITHM])
