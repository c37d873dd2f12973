"""What the engine emits: commands and decisions (v3) for the account service, OCSF alerts for
the security team, dead letters. Deterministic ids, HMAC signatures, pseudonymised evidence and the plain-language
message all live here.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from detectors import contract as c
from detectors.reasons import REASONS, phrase

__all__ = ["Output", "alert_value", "cloudevents_headers", "command_value", "decision_message", "decision_value",
           "deterministic_id", "message_for", "METHODS_V3", "ID_CHECK_MIN_EXPIRY_MS", "pseudonym", "sign", "verify", "canonical"]

PRODUCT = {"name": "atoguard", "vendor_name": "atoguard", "version": "0.1.0"}
OCSF_VERSION = "1.3.0"
SEVERITY = ((0.85, 5, "Critical"), (0.65, 4, "High"), (0.45, 3, "Medium"), (0.0, 2, "Low"))

#: How each challenge method is named to the account holder ("confirm with ...").
METHOD_PHRASES = {
    "sms_otp": "the code we text to your phone",
    "email_otp": "the code we e-mail to you",
    "app_push": "the request in our app on a phone you already use",
    "totp": "the code from your authenticator app",
    "payment_password": "your payment password",
    "face": "your face in the app",
    "passkey": "the passkey on a device you already use",
    "id_check": "a photo of your ID and a selfie in the app (this takes a while)",
}

#: Every challenge method of contract v3: v2's and ``id_check``.
METHODS_V3 = (*c.METHODS, c.ID_CHECK)
#: A command that lists ``id_check`` expires at least this long after it is issued (v3).
ID_CHECK_MIN_EXPIRY_MS = 3 * 3_600_000

#: Transitional: the methods of a step_up or freeze whose caller chose none. Only the methods no
#: remote thief can pass for a step_up; no way back but a call for a freeze. The policy should
#: always choose (strongest first, leaving out what the evidence says is compromised).
UNCHOSEN_METHODS: dict[str, tuple[str, ...]] = {c.STEP_UP: ("passkey", "face"), c.FREEZE: ()}
#: Transitional: a step_up's ``expires_at`` when its caller gives none (the contract's minimum).
STEP_UP_MIN_EXPIRY_MS = 120_000


@dataclass(frozen=True, slots=True)
class Output:
    """One message to write: a logical topic (``commands``, ``alerts``, ``dead-letter``), key,
    JSON value and headers."""

    topic: str
    key: str
    value: dict[str, Any]
    headers: tuple[tuple[str, bytes], ...] = ()


def deterministic_id(*parts: str) -> str:
    """A stable id from its parts: the same input stream gives the same ids.

    >>> deterministic_id("a", "b") == deterministic_id("a", "b") != deterministic_id("a", "c")
    True
    """
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def canonical(value: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no spaces (orjson's compact form)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def sign(value: dict[str, Any], key: str) -> str:
    """Hex HMAC-SHA256 over the canonical JSON of every field but ``signature``."""
    body = {k: v for k, v in value.items() if k != "signature"}
    return hmac.new(key.encode("utf-8"), canonical(body), hashlib.sha256).hexdigest()


def verify(value: dict[str, Any], key: str) -> bool:
    """Whether a command's ``signature`` is the HMAC of its other fields under ``key``, what the
    account service checks before acting. Compared in constant time.

    >>> cmd = {"command_id": "c1", "action": "freeze", "methods": ["face"]}
    >>> cmd["signature"] = sign(cmd, "k")
    >>> verify(cmd, "k"), verify({**cmd, "methods": ["sms_otp"]}, "k"), verify(cmd, "other key")
    (True, False, False)
    """
    signature = value.get("signature")
    if type(signature) is not str:
        return False
    return hmac.compare_digest(sign(value, key), signature)


def pseudonym(value: str, key: str) -> str:
    """A keyed hash standing in for an IP address or device id in alerts."""
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _either(methods: list[str] | tuple[str, ...]) -> str:
    """The methods as the holder reads them: "a, b or c" (the service offers the first enrolled)."""
    words = [METHOD_PHRASES.get(m, m.replace("_", " ")) for m in methods]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def message_for(action: str, reasons: tuple[str, ...], expires_at: int | None = None,
                methods: list[str] | tuple[str, ...] | None = None) -> str:
    """The plain-language explanation for the account holder.

    ``methods`` (v2) names the check a step_up asks for, and a freeze's way back; ``None`` gives
    the v1 wording, which names no check.

    >>> message_for("step_up", ("NEW_DEVICE_LOGIN",))
    'To keep your account safe we need to check it is really you: we saw a sign-in from a device we have not seen on your account before. Please complete the extra check in the app; nothing else changes.'
    >>> message_for("step_up", ("SIM_SWAP",), methods=["face"])
    'To keep your account safe we need to check it is really you: we saw your phone number recently moved to a new SIM card. Please confirm with your face in the app; nothing else changes.'
    >>> message_for("freeze", ("CHALLENGE_FAILED",), methods=[])
    'We have paused payments and credit on your account for your protection: we saw a failed identity check on your account. If this was you, please call us: only our security team can lift this pause.'
    """
    seen = _join([phrase(r) for r in reasons[:3]]) if reasons else "unusual activity"
    if action == c.STEP_UP:
        check = "complete the extra check in the app" if not methods else f"confirm with {_either(methods)}"
        return (f"To keep your account safe we need to check it is really you: we saw {seen}. "
                f"Please {check}; nothing else changes.")
    if action == c.FREEZE:
        paused = f"We have paused payments and credit on your account for your protection: we saw {seen}. "
        if methods is not None and not methods:
            return paused + "If this was you, please call us: only our security team can lift this pause."
        until = f" at {_utc(expires_at)}" if expires_at else ""
        way_back = ("confirm it in the app or call us and we lift the pause at once" if methods is None
                    else f"confirm it is you with {_either(methods)} to lift the pause at once, or call us")
        return paused + f"If this was you, {way_back}; otherwise it lifts by itself{until}."
    if action == c.CLOSE:
        return (f"We have closed your account to stop further loss: {seen}. Your money and credit line "
                "are protected. Contact us to restore access; this can be reversed.")
    if action == c.UNFREEZE:
        return (f"Your account is fully active again: {seen}. Thank you; we will remember this "
                "so it does not happen again for the same reason.")
    raise ValueError(f"unknown action {action!r}")


def _checked_methods(action: str, methods: list[str] | tuple[str, ...] | None) -> list[str] | None:
    """The ``methods`` field of a command: a list on step_up and freeze, absent (None) otherwise.

    Raises ``ValueError`` for methods on another action, an unknown or repeated method, or an
    empty step_up list (a challenge must name a check).
    """
    if action not in c.METHOD_ACTIONS:
        if methods is not None:
            raise ValueError(f"a {action} command carries no methods (got {list(methods)!r})")
        return None
    chosen = list(UNCHOSEN_METHODS[action] if methods is None else methods)
    unknown = [m for m in chosen if m not in METHODS_V3]
    if unknown:
        raise ValueError(f"unknown challenge method(s) {unknown!r}; the contract's are {list(METHODS_V3)!r}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"repeated challenge method in {chosen!r}")
    if action == c.STEP_UP and not chosen:
        raise ValueError("a step_up needs at least one challenge method")
    return chosen


def command_value(*, account_id: str, action: str, reasons: tuple[str, ...], risk: float, issued_at: int,
                  expires_at: int | None, trigger_event_id: str, alert_id: str | None,
                  policy_version: str, dry_run: bool, key: str,
                  methods: list[str] | tuple[str, ...] | None = None,
                  contract_version: int = c.COMMAND_CONTRACT_VERSION + 1) -> dict[str, Any]:
    """A signed ``ato.commands`` value, exactly the contract's fields (v3 by default).

    ``methods`` is the step_up's challenge or the freeze's way back, strongest first; it must be
    ``None`` for unfreeze and close. A step_up or freeze given none gets :data:`UNCHOSEN_METHODS`,
    and a step_up given no ``expires_at`` gets ``issued_at`` + :data:`STEP_UP_MIN_EXPIRY_MS`.
    A command listing ``id_check`` expires no sooner than :data:`ID_CHECK_MIN_EXPIRY_MS` after
    ``issued_at``. ``contract_version`` 2 writes a v2 command: ``id_check`` is left out of
    ``methods`` (a v2 account service does not know it).
    """
    if contract_version == 2 and methods is not None:
        methods = [m for m in methods if m != c.ID_CHECK]
    chosen = _checked_methods(action, methods)
    if action == c.STEP_UP and expires_at is None:
        expires_at = issued_at + STEP_UP_MIN_EXPIRY_MS
    if chosen and c.ID_CHECK in chosen:
        expires_at = max(expires_at or 0, issued_at + ID_CHECK_MIN_EXPIRY_MS)
    value: dict[str, Any] = {
        "command_id": deterministic_id("command", policy_version, account_id, trigger_event_id, action),
        "account_id": account_id,
        "action": action,
        "reasons": list(reasons),
        "message": message_for(action, reasons, expires_at, chosen),
        "risk": round(risk, 4),
        "issued_at": issued_at,
        "expires_at": expires_at,
        "trigger_event_id": trigger_event_id,
        "alert_id": alert_id,
        "policy_version": policy_version,
        "dry_run": dry_run,
        "contract_version": contract_version,
    }
    if chosen is not None:
        value["methods"] = chosen
    value["signature"] = sign(value, key)
    return value


def decision_message(decision: str, reasons: tuple[str, ...] | list[str], methods: list[str] | None) -> str | None:
    """The holder's message of a decision: why a payment waits (``hold``: the check that
    releases it) or is refused (``deny``); None for ``allow``.

    >>> decision_message("hold", ("NEW_DEVICE_LOGIN",), ["face", "id_check"])
    'We are holding this until we know it is really you: we saw a sign-in from a device we have not seen on your account before. Please confirm with your face in the app or a photo of your ID and a selfie in the app (this takes a while); it goes ahead as soon as you do.'
    >>> decision_message("allow", (), None) is None
    True
    """
    seen = _join([phrase(r) for r in list(reasons)[:3]]) if reasons else "unusual activity"
    if decision == c.HOLD:
        check = f"confirm with {_either(methods)}" if methods else "complete the check in the app"
        return (f"We are holding this until we know it is really you: we saw {seen}. "
                f"Please {check}; it goes ahead as soon as you do.")
    if decision == c.DENY:
        return (f"We have not carried this out, to protect your account: we saw {seen}. "
                "Nothing has left your account; the app tells you how to restore access.")
    return None


def decision_value(*, account_id: str, event_id: str, ts: int, decision: str, command_id: str | None,
                   methods: list[str] | None, expires_at: int | None, resolves: str | None, risk: float,
                   reasons: tuple[str, ...] | list[str], policy_version: str, dry_run: bool,
                   key: str) -> dict[str, Any]:
    """A signed ``ato.decisions`` value (contract v3, "Decisions"): every field present, null
    where it does not apply; ``decision_id`` from the policy version, the account, the event
    and ``resolves``.

    >>> d = decision_value(account_id="a1", event_id="e1", ts=1, decision="allow", command_id=None,
    ...                    methods=None, expires_at=None, resolves=None, risk=0.0, reasons=(),
    ...                    policy_version="p", dry_run=False, key="k" * 8)
    >>> d["decision"], d["message"], d["resolves"], d["contract_version"], verify(d, "k" * 8)
    ('allow', None, None, 3, True)
    """
    if decision not in c.DECISION_VALUES:
        raise ValueError(f"unknown decision {decision!r}; the contract's are {list(c.DECISION_VALUES)!r}")
    value: dict[str, Any] = {
        "decision_id": deterministic_id("decision", policy_version, account_id, event_id, resolves or ""),
        "event_id": event_id,
        "account_id": account_id,
        "ts": ts,
        "decision": decision,
        "command_id": command_id,
        "methods": list(methods) if methods is not None else None,
        "expires_at": expires_at,
        "resolves": resolves,
        "risk": round(risk, 4),
        "reasons": list(reasons),
        "message": decision_message(decision, reasons, methods),
        "policy_version": policy_version,
        "dry_run": dry_run,
        "contract_version": 3,
    }
    value["signature"] = sign(value, key)
    return value


def _severity(risk: float) -> tuple[int, str]:
    for floor, sid, name in SEVERITY:
        if risk >= floor:
            return sid, name
    return 1, "Informational"  # pragma: no cover


def alert_value(*, alert_id: str, account_id: str, ts: int, risk: float, reasons: tuple[str, ...],
                action: str | None, scores: dict[str, float], evidence: list[dict[str, Any]],
                policy_version: str, dry_run: bool) -> dict[str, Any]:
    """An OCSF Detection Finding (class 2004). ``evidence`` entries must already be pseudonymised."""
    severity_id, severity = _severity(risk)
    title = REASONS[reasons[0]].phrase if reasons and reasons[0] in REASONS else "suspicious activity"
    return {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "time": ts,
        "severity_id": severity_id,
        "severity": severity,
        "risk_score": int(round(risk * 100)),
        "status_id": 1,
        "status": "New",
        "finding_info": {
            "uid": alert_id,
            "title": f"Possible account takeover: {title}",
            "types": list(reasons),
            "desc": message_for(action or c.STEP_UP, reasons) if action else
            f"Signals on the account: {_join([phrase(r) for r in reasons[:3]])}.",
            "analytic": {"name": "atoguard", "type_id": 1, "type": "Rule"},
        },
        "resources": [{"uid": account_id, "type": "account"}],
        "evidences": evidence,
        "metadata": {"version": OCSF_VERSION, "product": PRODUCT, "log_name": "ato.alerts"},
        "unmapped": {"account_id": account_id, "action": action, "detector_scores": scores,
                     "policy_version": policy_version, "dry_run": dry_run},
    }


def cloudevents_headers(alert: dict[str, Any]) -> tuple[tuple[str, bytes], ...]:
    """CloudEvents 1.0 binary-mode headers for an alert message."""
    time = datetime.fromtimestamp(alert["time"] / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    return (
        ("ce_specversion", b"1.0"),
        ("ce_id", alert["finding_info"]["uid"].encode()),
        ("ce_source", b"urn:atoguard:engine"),
        ("ce_type", b"dev.atoguard.detection_finding.v1"),
        ("ce_time", time.encode()),
        ("content-type", b"application/json"),
    )
