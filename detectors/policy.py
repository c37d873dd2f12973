"""The decision policy, kept apart from the detectors.

It fuses detector findings into one risk (noisy-OR: independent evidence adds up, one weak signal
stays weak), orders the reason codes, and climbs the action ladder

    nothing -> alert -> step_up -> freeze -> close

with hysteresis: an account is never moved *down* the ladder by a quieter event (only a verdict,
or a freeze lapsing at ``expires_at``, does that), a step-up is not repeated within its cooldown,
an alert is not repeated within its cooldown unless risk rose by ``min_escalation``. ``close``
needs an analyst's ``ato`` verdict, or - where ``auto_close`` is on - two strong findings from
independent detector families, never the behaviour models alone. A freeze needs corroboration
too: findings from at least two independent rule families (the behaviour models add risk but
never corroborate, since they react to the same novelty the rules see); one line of evidence,
however strong, gets a step-up. The evidence about one sign-in arrives as several events (the
login, its location fixes, the first payment), so findings of the last ten minutes count with the
current event's (:func:`with_recent`). Allow-listed accounts, IPs and
devices are capped at alerts. Everything depends on event time and the input only.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors import contract as c
from detectors.base import Finding
from detectors.config import Config
from detectors.profile import HOUR_MS, Profile, Restriction

__all__ = ["Decision", "decide", "fuse", "lapse", "with_recent", "ALERT", "CARRY_MS"]

ALERT = "alert"
MINUTE_MS = 60_000
#: families whose findings may count towards an automatic close or corroborate a freeze
CLOSE_FAMILIES = frozenset({"device", "location", "network", "credential", "money", "crowd"})
#: a finding corroborates a freeze from this score up
CORROBORATE_AT = 0.25


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do about one event: ``action`` is a command action or None; ``alert`` says whether
    an alert goes to the security team."""

    risk: float
    reasons: tuple[str, ...]
    action: str | None
    alert: bool
    expires_at: int | None = None


NOTHING = Decision(0.0, (), None, False)


def fuse(findings: list[Finding]) -> tuple[float, tuple[str, ...]]:
    """Noisy-OR of the findings' scores; reasons ordered by the score that raised them.

    >>> from detectors.base import Finding
    >>> risk, reasons = fuse([Finding("a", 0.5, ("X",), "f"), Finding("b", 0.6, ("Y", "X"), "g")])
    >>> round(risk, 2), reasons
    (0.8, ('Y', 'X'))
    """
    keep = 1.0
    reasons: list[str] = []
    for f in sorted(findings, key=lambda f: (-f.score, f.detector)):
        keep *= 1.0 - f.score
        for r in f.reasons:
            if r not in reasons:
                reasons.append(r)
    return 1.0 - keep, tuple(reasons)


def lapse(profile: Profile, ts: int) -> None:
    """Let a freeze whose ``expires_at`` has passed, or a step-up older than its cooldown, lapse."""
    state, _since, until, _alert = profile.restriction
    if state in (Restriction.FROZEN, Restriction.STEPPED_UP) and until and ts >= until:
        profile.restriction = [Restriction.NONE, ts, 0, None]


def _allowed(profile: Profile, cfg: Config, account_id: str, ip: str | None, device: str | None, ts: int) -> bool:
    for entry in cfg.allow:
        if entry.until >= ts and (
            (entry.kind == "account" and entry.value == account_id)
            or (entry.kind == "ip" and entry.value == ip)
            or (entry.kind == "device" and entry.value == device)
        ):
            return True
    return False


#: findings this recent still corroborate: the evidence about one sign-in arrives as several
#: events (the login, its ip_geo and gps_fix, the first payment) within seconds or minutes
CARRY_MS = 10 * MINUTE_MS


def with_recent(profile: Profile, findings: list[Finding], ts: int) -> list[Finding]:
    """``findings`` plus, for each rule family they lack at corroborating strength, the strongest
    finding of that family on the account within the last :data:`CARRY_MS` (detector
    ``"recent"``). Records the event's own corroborating findings for the events that follow.

    >>> from detectors.base import Finding
    >>> p = Profile()
    >>> with_recent(p, [Finding("new_device", 0.3, ("NEW_DEVICE_LOGIN",), "device")], 1_000)
    [Finding(detector='new_device', score=0.3, reasons=('NEW_DEVICE_LOGIN',), family='device')]
    >>> [f.family for f in with_recent(p, [Finding("impossible_travel", 0.6, ("IMPOSSIBLE_TRAVEL",),
    ...                                           "location")], 2_000)]
    ['location', 'device']
    >>> with_recent(p, [], 1_000 + CARRY_MS + 1)  # the device finding has gone stale
    [Finding(detector='recent', score=0.6, reasons=('IMPOSSIBLE_TRAVEL',), family='location')]
    """
    recent = profile.evidence
    have = set()
    for f in findings:
        if f.score >= CORROBORATE_AT and f.family in CLOSE_FAMILIES:
            have.add(f.family)
            old = recent.get(f.family)
            if old is None or ts - old[0] > CARRY_MS or f.score >= old[1] or ts < old[0]:
                recent[f.family] = [ts, f.score, list(f.reasons)]
    out = findings
    for family, (seen, score, reasons) in list(recent.items()):
        if not 0 <= ts - seen <= CARRY_MS:
            if ts - seen > CARRY_MS:
                del recent[family]
            continue
        if family not in have:
            if out is findings:
                out = list(findings)
            out.append(Finding("recent", score, tuple(reasons), family))
    return out


def _two_strong(findings: list[Finding], strong_at: float) -> bool:
    families = {f.family for f in findings if f.score >= strong_at and f.family in CLOSE_FAMILIES}
    return len(families) >= 2


def _corroborated(findings: list[Finding]) -> bool:
    families = {f.family for f in findings if f.score >= CORROBORATE_AT and f.family in CLOSE_FAMILIES}
    return len(families) >= 2


def decide(profile: Profile, account_id: str, ts: int, ip: str | None, device: str | None,
           findings: list[Finding], cfg: Config) -> Decision:
    """Decide what one event calls for, and record it in the profile's restriction state."""
    if not findings:
        return NOTHING
    pol = cfg.policy
    risk, reasons = fuse(findings)
    if risk < pol.alert_at:
        return Decision(risk, reasons, None, False)
    lapse(profile, ts)
    state = profile.restriction[0]
    if risk >= pol.freeze_at and _corroborated(findings):
        target = c.FREEZE
        if pol.auto_close and _two_strong(findings, pol.strong_at):
            target = c.CLOSE
    elif risk >= pol.step_up_at:  # includes uncorroborated risk above freeze_at
        target = c.STEP_UP
    else:
        target = ALERT
    if target != ALERT and _allowed(profile, cfg, account_id, ip, device, ts):
        target = ALERT

    action: str | None = None
    expires_at: int | None = None
    if state == Restriction.CLOSED:
        action = None
    elif target == c.CLOSE:
        action = c.CLOSE
    elif target == c.FREEZE and state != Restriction.FROZEN:
        action = c.FREEZE
        expires_at = ts + int(pol.freeze_ttl_hours * HOUR_MS)
    elif target == c.STEP_UP and state == Restriction.NONE:
        action = c.STEP_UP

    if action is None:
        last = profile.actions.get(ALERT)
        quiet = last is None or ts - last[0] >= pol.alert_cooldown_minutes * MINUTE_MS
        if not (quiet or risk >= last[1] + pol.min_escalation):
            return Decision(risk, reasons, None, False)
    profile.actions[ALERT] = [ts, risk]
    if action is not None:
        profile.actions[action] = [ts, risk]
        if action == c.CLOSE:
            profile.restriction = [Restriction.CLOSED, ts, 0, None]
        elif action == c.FREEZE:
            profile.restriction = [Restriction.FROZEN, ts, expires_at, None]
        else:
            profile.restriction = [Restriction.STEPPED_UP, ts,
                                   ts + int(pol.step_up_cooldown_minutes * MINUTE_MS), None]
    return Decision(risk, reasons, action, True, expires_at)


def decide_verdict(profile: Profile, label: str, source: str, ts: int, cfg: Config) -> Decision:
    """What a verdict calls for: ``legit`` lifts a freeze or close; an analyst's ``ato`` closes;
    an account holder's ``ato`` freezes until an analyst confirms."""
    lapse(profile, ts)
    state = profile.restriction[0]
    if label == "legit":
        profile.restriction = [Restriction.NONE, ts, 0, None]
        if state in (Restriction.FROZEN, Restriction.CLOSED):
            return Decision(0.0, ("CONFIRMED_LEGITIMATE",), c.UNFREEZE, False)
        return Decision(0.0, ("CONFIRMED_LEGITIMATE",), None, False)
    if source == "analyst":
        if state == Restriction.CLOSED:
            return Decision(1.0, ("ANALYST_CONFIRMED_ATO",), None, False)
        profile.restriction = [Restriction.CLOSED, ts, 0, None]
        return Decision(1.0, ("ANALYST_CONFIRMED_ATO",), c.CLOSE, True)
    if state in (Restriction.FROZEN, Restriction.CLOSED):
        return Decision(1.0, ("USER_REPORTED_ATO",), None, False)
    expires_at = ts + int(7 * 24 * HOUR_MS)
    profile.restriction = [Restriction.FROZEN, ts, expires_at, None]
    return Decision(1.0, ("USER_REPORTED_ATO",), c.FREEZE, True, expires_at)
