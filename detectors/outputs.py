"""What the engine emits: commands for the account service, OCSF alerts for the security team,
dead letters. Deterministic ids, HMAC signatures, pseudonymised evidence and the plain-language
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

__all__ = ["Output", "alert_value", "cloudevents_headers", "command_value", "deterministic_id",
           "message_for", "pseudonym", "sign"]

PRODUCT = {"name": "atoguard", "vendor_name": "atoguard", "version": "0.1.0"}
OCSF_VERSION = "1.3.0"
SEVERITY = ((0.85, 5, "Critical"), (0.65, 4, "High"), (0.45, 3, "Medium"), (0.0, 2, "Low"))


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


def pseudonym(value: str, key: str) -> str:
    """A keyed hash standing in for an IP address or device id in alerts."""
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def message_for(action: str, reasons: tuple[str, ...], expires_at: int | None = None) -> str:
    """The plain-language explanation for the account holder.

    >>> message_for("step_up", ("NEW_DEVICE_LOGIN",))
    'To keep your account safe we need to check it is really you: we saw a sign-in from a device we have not seen on your account before. Please complete the extra check in the app; nothing else changes.'
    """
    seen = _join([phrase(r) for r in reasons[:3]]) if reasons else "unusual activity"
    if action == c.STEP_UP:
        return (f"To keep your account safe we need to check it is really you: we saw {seen}. "
                "Please complete the extra check in the app; nothing else changes.")
    if action == c.FREEZE:
        until = f" at {_utc(expires_at)}" if expires_at else ""
        return (f"We have paused payments and credit on your account for your protection: we saw {seen}. "
                "If this was you, confirm it in the app or call us and we lift the pause at once; "
                f"otherwise it lifts by itself{until}.")
    if action == c.CLOSE:
        return (f"We have closed your account to stop further loss: {seen}. Your money and credit line "
                "are protected. Contact us to restore access; this can be reversed.")
    if action == c.UNFREEZE:
        return (f"Your account is fully active again: {seen}. Thank you; we will remember this "
                "so it does not happen again for the same reason.")
    raise ValueError(f"unknown action {action!r}")


def command_value(*, account_id: str, action: str, reasons: tuple[str, ...], risk: float, issued_at: int,
                  expires_at: int | None, trigger_event_id: str, alert_id: str | None,
                  policy_version: str, dry_run: bool, key: str) -> dict[str, Any]:
    """A signed ``ato.commands`` value, exactly the contract's fields."""
    value: dict[str, Any] = {
        "command_id": deterministic_id("command", policy_version, account_id, trigger_event_id, action),
        "account_id": account_id,
        "action": action,
        "reasons": list(reasons),
        "message": message_for(action, reasons, expires_at),
        "risk": round(risk, 4),
        "issued_at": issued_at,
        "expires_at": expires_at,
        "trigger_event_id": trigger_event_id,
        "alert_id": alert_id,
        "policy_version": policy_version,
        "dry_run": dry_run,
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
