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
however strong, gets a step-up.

**Challenge first** (contract v2). Corroborated evidence above ``freeze_at`` still gets a step-up
with methods the thief in view cannot pass (:mod:`detectors.challenge`), not a freeze: the
account service holds the payout until the challenge is answered, so a freeze adds nothing but
a shut-out holder when the person acting is the holder. A freeze needs a failed or unanswered
challenge of the same device, session or address (a finding of family ``challenge``) with the
evidence, the failure included, above ``freeze_at`` and corroborated: someone is acting who could
not prove to be the holder. (Or a verdict: the holder reporting a takeover.)

When is evidence so strong that waiting for the answer is the bigger risk? We looked for such a
case and found none the challenge does not cover: the payout waits for the answer, and where
the evidence says the thief holds a channel (a new SIM, a changed e-mail or authenticator, pushes
refused) that channel is left out of the methods, leaving the ones no remote thief holds. So
behaviour alone, however alarming, never freezes; it challenges.

Every freeze names its way back (:func:`detectors.challenge.way_back`). A strong pass makes the
device and session known-good: their findings no longer count until new evidence (a credential
changed after the pass, the crowd, a failed challenge) says otherwise; a weak pass only
halves the device's novelty for a day, and a second risky moment after it is challenged with
remote-proof methods only. The evidence about one sign-in arrives as several events (the
login, its location fixes, the first payment), so findings of the last ten minutes count with the
current event's (:func:`with_recent`). The policy only reads the profile: each decision
carries the state change it calls for, which :mod:`detectors.update` writes. Allow-listed accounts, IPs and
devices are capped at alerts. Everything depends on event time and the input only.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors import challenge as ch
from detectors import contract as c
from detectors.base import Finding
from detectors.config import Config
from detectors.profile import HOUR_MS, Evidence, Profile, Restriction, State

__all__ = ["Actor", "Change", "Decision", "decide", "decide_verdict", "effective", "fuse",
           "remote_thief_likely", "decide_answer", "with_recent", "ALERT", "CARRY_MS", "CLOSE_FAMILIES", "CORROBORATE_AT"]

ALERT = "alert"
MINUTE_MS = 60_000
#: families whose findings may count towards an automatic close or corroborate a freeze
CLOSE_FAMILIES = frozenset({"device", "location", "network", "credential", "money", "crowd", "challenge", "partner"})
#: families that point at a thief elsewhere, beyond the novelty of a device
REMOTE_FAMILIES = frozenset({"location", "network", "credential", "crowd", "challenge", "partner"})
#: after a weak pass (a code, a push, the payment password), the device's novelty counts this much
WEAK_PASS_WEIGHT = 0.5
#: families that still count on a device or session that passed a strong challenge (and
#: ``credential`` for a change made after the pass)
NEW_EVIDENCE = frozenset({"crowd", "challenge"})

#: a finding corroborates a freeze from this score up
CORROBORATE_AT = 0.25


@dataclass(frozen=True, slots=True)
class Change:
    """The change of an account's state a decision calls for (None: unchanged)."""

    restriction: Restriction | None = None
    #: actions (and ``"alert"``) to stamp with the event's time and risk
    marks: tuple[str, ...] = ()
    #: a challenge (the step_up, or the freeze's way back) now awaits its answer until this time
    challenge_until: int | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, as the context sees it: the event's device, session and address, whether
    the device is trusted, and the recent credential window (ms) for compromised methods."""

    device: str | None = None
    session: str | None = None
    ip: str | None = None
    device_trusted: bool = True
    cred_ms: int = 72 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do about one event: ``action`` is a command action or None; ``alert`` says whether
    an alert goes to the security team; ``change`` is the state change it makes."""

    risk: float
    reasons: tuple[str, ...]
    action: str | None
    alert: bool
    expires_at: int | None = None
    change: Change | None = None
    #: the challenge methods of a step_up or the way back of a freeze, strongest first
    methods: tuple[str, ...] | None = None


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


def effective(restriction: Restriction, ts: int) -> str:
    """The account's state at ``ts``: a freeze whose ``expires_at`` has passed, or a step-up older
    than its cooldown, has lapsed."""
    state = restriction.state
    if state in (State.FROZEN, State.STEPPED_UP) and restriction.until and ts >= restriction.until:
        return State.NONE
    return state


def _allowed(profile: Profile, cfg: Config, account_id: str, ip: str | None, device: str | None, ts: int) -> bool:
    for entry in cfg.allow:
        if entry.until >= ts and (
            (entry.kind == "account" and entry.value == account_id)
            or (entry.kind == "ip" and entry.value == ip)
            or (entry.kind == "device" and entry.value == device)
        ):
            return True
    return False


#: a command that lists ``id_check`` expires no sooner than this after it is issued (contract v3)
ID_CHECK_EXPIRY_MS = 3 * HOUR_MS

#: findings this recent still corroborate: the evidence about one sign-in arrives as several
#: events (the login, its ip_geo and gps_fix, the first payment) within seconds or minutes
CARRY_MS = 10 * MINUTE_MS


def with_recent(evidence: dict[str, Evidence], findings: list[Finding],
                ts: int) -> tuple[list[Finding], dict[str, Evidence] | None]:
    """``findings`` plus, for each rule family they lack at corroborating strength, the strongest
    finding of that family on the account within the last :data:`CARRY_MS` (detector
    ``"recent"``); and the account's recent evidence as it stands after this event (None when
    unchanged): the event's own corroborating findings, kept for the events that follow.

    >>> from detectors.base import Finding
    >>> device = [Finding("new_device", 0.3, ("NEW_DEVICE_LOGIN",), "device")]
    >>> found, recent = with_recent({}, device, 1_000)
    >>> found == device, sorted(recent)
    (True, ['device'])
    >>> travel = [Finding("impossible_travel", 0.6, ("IMPOSSIBLE_TRAVEL",), "location")]
    >>> found, recent = with_recent(recent, travel, 2_000)
    >>> [f.family for f in found]
    ['location', 'device']
    >>> with_recent(recent, [], 1_000 + CARRY_MS + 1)[0]  # the device finding has gone stale
    [Finding(detector='recent', score=0.6, reasons=('IMPOSSIBLE_TRAVEL',), family='location')]
    """
    recent = evidence
    have = set()
    for f in findings:
        if f.score >= CORROBORATE_AT and f.family in CLOSE_FAMILIES:
            have.add(f.family)
            old = recent.get(f.family)
            if old is None or ts - old.ts > CARRY_MS or f.score >= old.score or ts < old.ts:
                if recent is evidence:
                    recent = dict(evidence)
                recent[f.family] = Evidence(ts, f.score, list(f.reasons))
    out = findings
    for family, e in list(recent.items()):
        if not 0 <= ts - e.ts <= CARRY_MS:
            if ts - e.ts > CARRY_MS:
                if recent is evidence:
                    recent = dict(evidence)
                del recent[family]
            continue
        if family not in have:
            if out is findings:
                out = list(findings)
            out.append(Finding("recent", e.score, tuple(e.reasons), family))
    return out, (None if recent is evidence else recent)


def _two_strong(findings: list[Finding], strong_at: float) -> bool:
    families = {f.family for f in findings if f.score >= strong_at and f.family in CLOSE_FAMILIES}
    return len(families) >= 2


def _corroborated(findings: list[Finding]) -> bool:
    families = {f.family for f in findings if f.score >= CORROBORATE_AT and f.family in CLOSE_FAMILIES}
    return len(families) >= 2


def remote_thief_likely(findings: list[Finding]) -> bool:
    """Whether the evidence points at someone elsewhere (not only at a new device)."""
    return any(f.score >= CORROBORATE_AT and f.family in REMOTE_FAMILIES for f in findings)


def _answered(profile: Profile, findings: list[Finding], actor: Actor, ts: int) -> tuple[list[Finding], frozenset[str]]:
    """The findings a past challenge of this device or session has not already answered, and
    the methods passed weakly on it in the last day."""
    if not profile.passes or not (actor.device or actor.session):
        return findings, frozenset()
    verified = ch.strongly_verified(profile, ts, actor.device, actor.session)
    if verified is not None:
        # the holder, proven: what they do is theirs, until new evidence - a credential changed
        # since, the crowd, a failed challenge - says otherwise
        changed = any(v.ts > verified for v in profile.creds.values())
        findings = [f for f in findings if f.family in NEW_EVIDENCE or (changed and f.family == "credential")]
    weak = ch.weak_passes(profile, ts, actor.device, actor.session)
    if weak:
        # a code or a push passed: the device's novelty is half answered (a relay passes them)
        findings = [Finding(f.detector, f.score * WEAK_PASS_WEIGHT, f.reasons, f.family)
                    if f.family in ("device", "model") else f for f in findings]
    return findings, weak


def decide(profile: Profile, account_id: str, ts: int, ip: str | None, device: str | None,
           findings: list[Finding], cfg: Config, actor: Actor | None = None, own_challenge: bool = False) -> Decision:
    """Decide what one event calls for, and the change of the account's restriction it makes
    (the profile is not modified: :func:`detectors.update.apply_decision` writes the change).

    ``own_challenge``: the event is a decided event (contract v3) of a device or session no open
    challenge was put to, so it gets a step_up of its own even while the account is stepped up
    (never a ride on someone else's challenge)."""
    actor = actor or Actor(device, None, ip)
    if findings:
        findings, weak = _answered(profile, findings, actor, ts)
    if not findings:
        return NOTHING
    pol = cfg.policy
    risk, reasons = fuse(findings)
    if risk < pol.alert_at:
        return Decision(risk, reasons, None, False)
    restriction = profile.restriction
    state = effective(restriction, ts)
    lapsed = Restriction(State.NONE, ts, 0, None) if state != restriction.state else None
    failed = any(f.family == "challenge" for f in findings)
    if failed and risk >= pol.freeze_at and _corroborated(findings):
        target = c.FREEZE
        if pol.auto_close and _two_strong(findings, pol.strong_at):
            target = c.CLOSE
    elif risk >= pol.step_up_at:  # challenge first, however high the risk
        target = c.STEP_UP
    else:
        target = ALERT
    if target != ALERT and _allowed(profile, cfg, account_id, ip, device, ts):
        target = ALERT

    action: str | None = None
    expires_at: int | None = None
    if state == State.CLOSED:
        action = None
    elif target == c.CLOSE:
        action = c.CLOSE
    elif target == c.FREEZE and state != State.FROZEN:
        action = c.FREEZE
        expires_at = ts + int(pol.freeze_ttl_hours * HOUR_MS)
    elif target == c.STEP_UP and (state == State.NONE or (own_challenge and state == State.STEPPED_UP)):
        action = c.STEP_UP
        expires_at = ts + int(pol.challenge_expiry_minutes * MINUTE_MS)

    if action is None:
        last = profile.actions.get(ALERT)
        quiet = last is None or ts - last.ts >= pol.alert_cooldown_minutes * MINUTE_MS
        if not (quiet or risk >= last.risk + pol.min_escalation):
            return Decision(risk, reasons, None, False, None, Change(restriction=lapsed) if lapsed else None)
        return Decision(risk, reasons, None, True, None, Change(restriction=lapsed, marks=(ALERT,)))
    elsewhere = remote_thief_likely(findings)
    remote = failed or bool(weak) or elsewhere  # for a freeze's way back
    methods: tuple[str, ...] | None = None
    if action == c.CLOSE:
        new = Restriction(State.CLOSED, ts, 0, None)
    elif action == c.FREEZE:
        new = Restriction(State.FROZEN, ts, expires_at, None)
        methods = tuple(ch.way_back(profile, ts, remote_thief=remote, cred_ms=actor.cred_ms))
    else:
        new = Restriction(State.STEPPED_UP, ts, ts + int(pol.step_up_cooldown_minutes * MINUTE_MS), None)
        methods = tuple(ch.methods_for(profile, ts, device_trusted=actor.device_trusted, weak_passed=weak,
                                       cred_ms=actor.cred_ms, remote=elsewhere))
    if methods and ch.ID_CHECK in methods:  # the identity re-check takes time (contract v3)
        expires_at = max(expires_at or 0, ts + ID_CHECK_EXPIRY_MS)
    until = expires_at if methods else None
    return Decision(risk, reasons, action, True, expires_at,
                    Change(restriction=new, marks=(ALERT, action), challenge_until=until), methods)


def decide_answer(profile: Profile, passed: bool, method: str, reason: str | None, *, action: str,
                  issued_at: int, ts: int, actor: Actor, recent: list[Finding], cfg: Config,
                  listed: tuple[str, ...] | list[str] | None = None) -> Decision:
    """What an answer to one of the account's open challenges calls for (the challenge was a
    ``step_up`` or the way back of a ``freeze``, issued at ``issued_at``, listing ``listed``).

    * A pass with a method the challenge did not list proves nothing (contract v3: any *listed*
      method will do); the challenge stays open.
    * A pass of a freeze's way back lifts it (``unfreeze``, reason CHALLENGE_PASSED) unless a
      credential change since the freeze hands that method's channel to someone else.
    * A pass of a step-up needs nothing more (:func:`detectors.update.record_answer` cleared it).
    * A failure is evidence, weighed with the sign-in's ``recent`` findings by :func:`decide`:
      a freeze when they stay above ``freeze_at``, otherwise an alert for the security team -
      never a second challenge in a row.
    """
    if passed:
        if listed is not None and method not in listed:
            return NOTHING
        if action != c.FREEZE:
            return NOTHING  # the step-up is answered (its restriction is already cleared)
        changed_since = {k for k, v in profile.creds.items() if v.ts > issued_at}
        if any(method in ch.TAKES_OVER.get(k, ()) for k in changed_since):
            return Decision(0.0, ("CHALLENGE_PASSED",), None, True)  # for an analyst to look at
        return Decision(0.0, ("CHALLENGE_PASSED",), c.UNFREEZE, False, None,
                        Change(restriction=Restriction(State.NONE, ts, 0, None)))
    if action == c.FREEZE:
        return NOTHING  # still frozen; the failure is recorded
    decision = decide(profile, "", ts, actor.ip, actor.device, recent, cfg, actor)
    if decision.action == c.STEP_UP or (decision.action == c.FREEZE and reason == "not_enrolled"):
        # no second challenge in a row (the person has just shown what they cannot pass), and
        # an account without the methods asked for is no evidence against the person: the
        # security team looks at it, the account service keeps holding what was asked
        return Decision(decision.risk, decision.reasons, None, True)
    if decision.action is None and not decision.alert:
        # the security team hears of every failed challenge (v3: the challenge may stay open, so
        # the alert cooldown of the step_up would otherwise swallow it)
        return Decision(decision.risk, decision.reasons, None, True, None, decision.change)
    return decision


def decide_verdict(profile: Profile, label: str, source: str, ts: int, cfg: Config) -> Decision:
    """What a verdict calls for (contract v3, "Verdicts"): an analyst's ``legit`` lifts a freeze
    or close; a ``user`` ``legit`` lifts nothing (the holder's way back is a challenge, which a
    thief holding the session cannot fake as easily as a click); an analyst's ``ato`` closes; an
    account holder's ``ato`` freezes until an analyst confirms."""
    state = effective(profile.restriction, ts)
    if label == "legit":
        if source != "analyst":
            return Decision(0.0, ("CONFIRMED_LEGITIMATE",), None, False)
        change = Change(restriction=Restriction(State.NONE, ts, 0, None))
        if state in (State.FROZEN, State.CLOSED):
            return Decision(0.0, ("CONFIRMED_LEGITIMATE",), c.UNFREEZE, False, None, change)
        return Decision(0.0, ("CONFIRMED_LEGITIMATE",), None, False, None, change)
    if source == "analyst":
        if state == State.CLOSED:
            return Decision(1.0, ("ANALYST_CONFIRMED_ATO",), None, False)
        return Decision(1.0, ("ANALYST_CONFIRMED_ATO",), c.CLOSE, True, None,
                        Change(restriction=Restriction(State.CLOSED, ts, 0, None)))
    if state in (State.FROZEN, State.CLOSED):
        return Decision(1.0, ("USER_REPORTED_ATO",), None, False)
    expires_at = ts + int(7 * 24 * HOUR_MS)
    # the holder says someone else is in: no way back but an analyst's verdict
    return Decision(1.0, ("USER_REPORTED_ATO",), c.FREEZE, True, expires_at,
                    Change(restriction=Restriction(State.FROZEN, ts, expires_at, None)), ())
