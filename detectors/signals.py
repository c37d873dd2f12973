"""Partners' signals as evidence, and what atoguard shares with partners (contract v3,
"Partners' signals").

What comes in (``ato.signals``, a :class:`~detectors.events.Signal`) is a partner's word about the
same person elsewhere: the e-mail provider that saw the password phished, the carrier that moved
the number to a new SIM, the other lender that stopped the same thief. It is evidence of its own
family, ``partner``, and nothing more:

* **It weighs by kind and by who says it** (:data:`WEIGHTS`, :func:`weight_of`): a carrier's
  ``identifier_changed`` is a SIM swap or a port, an e-mail provider's ``credential_compromise``
  a mailbox in someone else's hands, a lender's ``account_disabled`` (``hijacking``) the same
  thief at work. What the holder does themselves (``initiating_entity`` ``user``: their own
  password change, their own sign-out) weighs half. Some signals lower it: ``account_enabled``
  takes back the same partner's ``account_disabled``, a risk level back to ``low`` or a higher
  assurance level takes back a little.
* **One family beside the account's own evidence** (:func:`with_partners`): the signals of the
  last ``credential_change_hours`` (72 h by default) make one finding of family ``partner``, their
  noisy-OR capped at :data:`PARTNER_MAX` (0.45): below the 0.5 of a strong finding, so it never
  makes a device suspect or counts towards an automatic close; at or above the 0.25 that
  corroborates, so beside a failed challenge it is the second family a freeze needs.
* **It never decides alone.** The partner finding joins an event's findings only when the
  account's own evidence has something to say about that event; a signal by itself writes no
  command, no alert, passes no challenge, trusts no device and trains no model (the engine learns
  from the risk without it). A partner's "all clear" never lifts a restriction either.
* **It narrows the methods** (:func:`removed_methods`, read by
  :func:`detectors.challenge.compromised`): no ``email_otp`` after the e-mail provider's
  ``credential_compromise`` or ``sessions_revoked``, no ``sms_otp`` after the carrier's
  ``identifier_changed``.

What goes out (``ato.signals-out``, :func:`shared_on_decision`, :func:`shared_on_lapse`):
``account_disabled`` (reason ``hijacking``) on a freeze that follows a failed or unanswered
challenge, on a close, on an ``ato`` verdict; ``account_enabled`` when that restriction is
lifted (an unfreeze, a ``legit`` verdict, or the freeze lapsing); ``credential_compromise`` on an
``ato`` verdict; ``session_revoked`` when the trigger of such a freeze carries a session. Never a
re-share of what a partner told us (a signal writes nothing), nothing in shadow mode (``dry_run``).

>>> from detectors.events import Signal
>>> from detectors.profile import Profile
>>> p = Profile()
>>> remember(p, Signal("s1", "a1", 1_000, "credential_compromise", "https://mail.example", "email_provider", "email"),
...          window_ms=72 * 3_600_000)
>>> sorted(removed_methods(p, 2_000, 72 * 3_600_000))
['email_otp']
>>> with_partners(p, [], 2_000, 72 * 3_600_000)  # never alone
[]
>>> [f.family for f in with_partners(p, [Finding("new_device", 0.3, ("NEW_DEVICE_LOGIN",), "device")], 2_000, 72 * 3_600_000)]
['device', 'partner']
"""

from __future__ import annotations

import hashlib
from typing import Any

from detectors import contract as c
from detectors.base import Finding
from detectors.outputs import Output, deterministic_id
from detectors.profile import PartnerNote, Profile, State

__all__ = [
    "FAMILY", "MAX_NOTES", "PARTNER_MAX", "REASON_OF_ROLE", "WEIGHTS", "finding", "own_risk", "remember",
    "removed_methods", "shared_on_decision", "shared_on_lapse", "sharing", "weight_of", "with_partners",
]

FAMILY = "partner"
#: the partner finding never reaches a strong finding's 0.5
PARTNER_MAX = 0.45
#: below this the partner finding is dropped (a holder's own sign-out alone says little)
PARTNER_MIN = 0.05
#: signals kept per account (the most recent)
MAX_NOTES = 8
#: a lowering signal can take the novelty of a device (families ``device`` and ``model``) down
#: to this share at most, and only while nothing raises
MIN_DAMPING = 0.8

#: the weight of a signal by kind, then by partner role (``*``: any other role). Positive weights
#: raise risk, negative ones lower it. What each means is in docs/partners-signals.md.
WEIGHTS: dict[str, dict[str, float]] = {
    "credential_compromise": {"email_provider": 0.40, "identity_provider": 0.40, "lender": 0.30, "*": 0.20},
    "account_disabled": {"lender": 0.45, "email_provider": 0.40, "identity_provider": 0.40, "carrier": 0.30,
                         "*": 0.20},
    "account_enabled": {"*": -0.10},
    "account_purged": {"*": 0.05},
    "identifier_changed": {"carrier": 0.40, "email_provider": 0.25, "identity_provider": 0.25, "*": 0.15},
    "identifier_recycled": {"carrier": 0.30, "*": 0.20},
    "recovery_activated": {"email_provider": 0.30, "identity_provider": 0.30, "*": 0.20},
    "recovery_information_changed": {"email_provider": 0.25, "identity_provider": 0.25, "*": 0.15},
    "sessions_revoked": {"email_provider": 0.25, "identity_provider": 0.25, "*": 0.15},
    "session_revoked": {"*": 0.10},
    "credential_change": {"email_provider": 0.10, "identity_provider": 0.10, "*": 0.05},
    "assurance_level_change": {"*": 0.10},      # a lower level; a higher one takes back 0.10
    "device_compliance_change": {"*": 0.05},    # not compliant; compliant again takes back 0.05
    "risk_level_change": {"*": 0.30},           # high; medium half; low takes back 0.15
}
#: ``account_disabled`` for another reason than ``hijacking`` (``bulk-account``: a spam farm)
OTHER_DISABLE_SHARE = 0.5
#: what the holder started themselves (``initiating_entity`` ``user``) weighs this share
USER_INITIATED_SHARE = 0.5
USER_KINDS = frozenset({"credential_change", "sessions_revoked", "session_revoked", "recovery_information_changed",
                        "identifier_changed"})

#: the reason code of a partner finding, by the role of the partner who spoke
#: (:mod:`detectors.reasons`, family ``partner``)
REASON_OF_ROLE = {
    "email_provider": "PARTNER_EMAIL_PROVIDER",
    "identity_provider": "PARTNER_IDENTITY_PROVIDER",
    "carrier": "PARTNER_CARRIER",
    "lender": "PARTNER_LENDER",
    "other": "PARTNER_OTHER",
}

#: (role, kind) -> the method whose channel the signal says someone else may hold
NARROWS: dict[tuple[str, str], str] = {
    ("email_provider", "credential_compromise"): "email_otp",
    ("email_provider", "sessions_revoked"): "email_otp",
    ("carrier", "identifier_changed"): "sms_otp",
}

_LEVEL_ORDER = {"low": 0, "medium": 1, "high": 2}


def _issuer_digest(issuer: str) -> str:
    return hashlib.blake2b(issuer.encode("utf-8"), digest_size=6).hexdigest()


def weight_of(sig: Any) -> float:
    """The signed weight of one signal (a :class:`~detectors.events.Signal`).

    >>> from detectors.events import Signal
    >>> weight_of(Signal("s", "a", 1, "identifier_changed", "https://tel.example", "carrier", "phone_number"))
    0.4
    >>> weight_of(Signal("s", "a", 1, "credential_change", "https://mail.example", "email_provider", "email",
    ...                  initiating_entity="user"))
    0.05
    >>> weight_of(Signal("s", "a", 1, "risk_level_change", "https://idp.example", "identity_provider", "iss_sub",
    ...                  current_level="low", previous_level="high"))
    -0.15
    """
    row = WEIGHTS.get(sig.kind)
    if row is None:
        return 0.0
    w = row.get(sig.partner_role, row["*"])
    kind = sig.kind
    if kind == "account_disabled" and sig.reason not in (None, c.HIJACKING):
        w *= OTHER_DISABLE_SHARE
    elif kind == "assurance_level_change":
        if sig.current_level and sig.previous_level and sig.current_level > sig.previous_level:
            w = -w  # e.g. nist-aal1 -> nist-aal2: the partner trusts the person more
    elif kind == "device_compliance_change":
        if (sig.current_status or "").lower() == "compliant":
            w = -w
    elif kind == "risk_level_change":
        level = _LEVEL_ORDER.get((sig.current_level or "").lower())
        if level == 0:
            w = -w / 2
        elif level == 1:
            w = w / 2
        elif level is None:
            w = 0.0
    if kind in USER_KINDS and sig.initiating_entity == "user" and w > 0:
        w *= USER_INITIATED_SHARE
    return round(w, 4)


def remember(profile: Profile, sig: Any, *, window_ms: int) -> None:
    """Keep one accepted signal on the account (the only state change a signal makes).
    ``account_enabled`` takes back the same partner's ``account_disabled``; signals older than
    ``window_ms`` and beyond :data:`MAX_NOTES` are forgotten."""
    issuer = _issuer_digest(sig.issuer)
    notes = [n for n in profile.signals if 0 <= sig.ts - n.ts <= window_ms or n.ts > sig.ts]
    if sig.kind == "account_enabled":
        notes = [n for n in notes if not (n.issuer == issuer and n.kind == "account_disabled" and n.ts <= sig.ts)]
    notes.append(PartnerNote(sig.ts, sig.kind, sig.partner_role, issuer, weight_of(sig)))
    notes.sort(key=lambda n: n.ts)
    profile.signals = notes[-MAX_NOTES:]


def _recent(profile: Profile, ts: int, window_ms: int) -> list[PartnerNote]:
    return [n for n in profile.signals if 0 <= ts - n.ts <= window_ms]


def finding(profile: Profile, ts: int, window_ms: int) -> tuple[Finding | None, float]:
    """The partner finding at ``ts`` (None when nothing raises), and the damping of a device's
    novelty that lowering signals ask for (1.0: none).

    Raising weights add up like independent evidence (noisy-OR), lowering ones subtract; the
    finding is capped at :data:`PARTNER_MAX`, its reasons name the partners who spoke, the
    strongest first."""
    keep = 1.0
    lower = 0.0
    by_role: dict[str, float] = {}
    for n in _recent(profile, ts, window_ms):
        if n.weight > 0:
            keep *= 1.0 - n.weight
            by_role[n.role] = max(by_role.get(n.role, 0.0), n.weight)
        else:
            lower -= n.weight
    score = min(PARTNER_MAX, 1.0 - keep) - lower
    if score < PARTNER_MIN:
        damping = 1.0 if score >= 0 or by_role else max(MIN_DAMPING, 1.0 + score)
        return None, damping
    reasons = tuple(REASON_OF_ROLE.get(role, "PARTNER_OTHER")
                    for role, _ in sorted(by_role.items(), key=lambda kv: (-kv[1], kv[0])))
    return Finding(FAMILY, round(score, 4), reasons, FAMILY), 1.0


def with_partners(profile: Profile, findings: list[Finding], ts: int, window_ms: int) -> list[Finding]:
    """``findings`` (the account's own evidence about the event at ``ts``) with the partners' word
    beside it: the partner finding added, or a device's novelty damped by a partner's "all clear".
    Unchanged when the account's own evidence is silent: a signal never decides alone."""
    if not profile.signals or not any(f.score > 0.0 and f.family != FAMILY for f in findings):
        return findings
    partner, damping = finding(profile, ts, window_ms)
    if partner is not None:
        return [*findings, partner]
    if damping < 1.0:
        return [Finding(f.detector, f.score * damping, f.reasons, f.family) if f.family in ("device", "model")
                else f for f in findings]
    return findings


def own_risk(findings: list[Finding], risk: float) -> float:
    """The fused risk of ``findings`` without the partner finding (what models learn from, so
    no training comes from signals), or ``risk`` when there is none."""
    if not any(f.family == FAMILY for f in findings):
        return risk
    keep = 1.0
    for f in findings:
        if f.family != FAMILY:
            keep *= 1.0 - f.score
    return 1.0 - keep


def removed_methods(profile: Profile, ts: int, window_ms: int) -> set[str]:
    """The methods the partners' recent signals say someone else may hold (:data:`NARROWS`)."""
    out: set[str] = set()
    for n in profile.signals:
        method = NARROWS.get((n.role, n.kind))
        if method is not None and 0 <= ts - n.ts <= window_ms:
            out.add(method)
    return out


# -- what atoguard shares --------------------------------------------------------------------------

def sharing(dry_run: bool) -> bool:
    """Whether ``ato.signals-out`` is written: never in shadow mode, and only once the runtimes
    route the topic (``signals-out`` among :data:`detectors.contract.OUTPUT_TOPICS`); tests and
    replay may turn it on with :data:`SHARE`."""
    return not dry_run and (SHARE or c.SIGNALS_OUT in c.OUTPUT_TOPICS)


#: turn sharing on before the runtimes list ``signals-out`` among their outputs (tests, replay)
SHARE = False


def _out(account: str, ts: int, kind: str, reason: str | None, command_id: str | None, trigger: str) -> Output:
    value = {
        "event_id": deterministic_id("signals-out", account, trigger, kind),
        "account_id": account,
        "ts": ts,
        "kind": kind,
        "reason": reason,
        "command_id": command_id,
        "contract_version": 3,
    }
    return Output(c.SIGNALS_OUT, account, value)


FAILED_REASONS = frozenset({"CHALLENGE_FAILED", "CHALLENGE_UNANSWERED"})


def shared_on_decision(profile: Profile, account: str, trigger: str, ts: int, action: str | None,
                       reasons: tuple[str, ...], command_id: str | None, *, session: str | None = None,
                       failed: bool = False, verdict: str | None = None, dry_run: bool = False) -> list[Output]:
    """What a decision shares, after it was applied to ``profile``: ``trigger`` is the input
    that led to it (an event or a verdict id), ``failed`` says the trigger is a failed challenge,
    ``verdict`` is the label of a verdict trigger. Remembers the restriction shared
    (``profile.shared``: the command's id, ``""`` for a verdict on a closed account) so it is
    shared once and its lifting once."""
    if not sharing(dry_run):
        return []
    out: list[Output] = []
    disable = (action == c.CLOSE
               or (action == c.FREEZE and (failed or verdict == "ato" or bool(FAILED_REASONS.intersection(reasons))))
               or verdict == "ato")
    if disable and profile.shared is None:
        out.append(_out(account, ts, "account_disabled", c.HIJACKING, command_id, trigger))
        profile.shared = command_id or ""
        if action == c.FREEZE and session:
            out.append(_out(account, ts, "session_revoked", None, command_id, trigger))
    if verdict == "ato":
        out.append(_out(account, ts, "credential_compromise", None, command_id, trigger))
    elif action == c.UNFREEZE and profile.shared is not None:
        out.append(_out(account, ts, "account_enabled", None, command_id, trigger))
        profile.shared = None
    return out


def shared_on_lapse(profile: Profile, account: str, trigger: str, ts: int, dry_run: bool = False) -> list[Output]:
    """``account_enabled`` when the restriction shared as ``account_disabled`` is no longer in
    force at ``ts`` (a freeze past its ``expires_at``, or lifted without an unfreeze)."""
    if profile.shared is None or not sharing(dry_run):
        return []
    r = profile.restriction
    in_force = r.state == State.CLOSED or (r.state == State.FROZEN and (not r.until or ts < r.until))
    if in_force:
        return []
    shared = profile.shared
    profile.shared = None
    return [_out(account, ts, "account_enabled", None, shared or None, trigger)]
