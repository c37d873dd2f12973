"""The one module that writes a profile.

Everything else reads: :mod:`detectors.context` derives an event's features from the profile as
it was, :mod:`detectors.policy` returns a :class:`~detectors.policy.Decision` that names the
state change it calls for, and the engine hands both to the functions here:

* :func:`observe` learns the event itself (devices, networks, places, money, credentials);
* :func:`apply_decision` records what the policy decided (restriction, last actions, the evidence
  carried to the rest of the sign-in, the alerted situation a verdict may later judge);
* :func:`apply_verdict` makes a situation confirmed legitimate known-good;
* :func:`mark_seen` remembers the event id, so a redelivered event changes nothing.
"""

from __future__ import annotations

import math

from detectors import contract as c
from detectors.config import Config
from detectors.context import HOME_KM, Context, fix_error
from detectors.events import DeviceEvent, LocationEvent
from detectors.geo import haversine_km
from detectors.profile import (
    DAY_MS, DIGEST_BYTES, HOUR_MS, MAX_ASNS, MAX_COUNTRIES, MAX_DEVICES, MAX_FAILS, MAX_FAILURES, MAX_IPS, MAX_PASSES,
    MAX_PAYEES, MAX_SEEN, MAX_SESSIONS, Address, AlertedSituation, AmountStats, Centre, Challenge,
    CredentialChange, Device, Evidence, Failure, Fix, Mark, Pass, Payee, Profile, Restriction, Seen,
    Session, State, event_digest, touch,
)

__all__ = ["alerted_situation", "apply_decision", "apply_verdict", "close_challenge", "expire_challenge",
           "find_challenge", "mark_seen", "observe", "open_challenges", "prune", "record_answer"]


def mark_seen(profile: Profile, event_id: str) -> None:
    """Remember ``event_id`` (its :func:`~detectors.profile.event_digest`) among the last
    :data:`~detectors.profile.MAX_SEEN` applied."""
    profile.seen = (profile.seen + event_digest(event_id))[-MAX_SEEN * DIGEST_BYTES:]


# -- the decision ------------------------------------------------------------------------------

def apply_decision(profile: Profile, decision, ts: int, *, alert_id: str | None = None,
                   evidence: dict[str, Evidence] | None = None,
                   alerted: AlertedSituation | None = None, command_id: str | None = None,
                   device: str | None = None, session: str | None = None, ip: str | None = None) -> None:
    """Record what the policy decided about the event at ``ts`` (a
    :class:`~detectors.policy.Decision`): its new restriction (explained by ``alert_id``, and for
    a freeze or close the command in force, ``command_id``), the actions it took, the challenge
    it opened (``command_id``, put to the session of ``device``, ``session`` and ``ip``), the
    findings it carries to the next events of the same sign-in (``evidence``, from
    :func:`~detectors.policy.with_recent`), and the alerted situation.

    A step_up opened while another is open leaves the other open (contract v3: a risky event of
    another device or session gets its own challenge); a freeze or close closes every open
    challenge (the freeze opens its way back)."""
    if evidence is not None:
        profile.evidence = evidence
    change = decision.change
    if change is not None:
        if change.restriction is not None:
            profile.restriction = change.restriction
            if alert_id is not None and decision.action and change.restriction.state != "none":
                profile.restriction.alert_id = alert_id
            if decision.action in (c.FREEZE, c.CLOSE):
                profile.restriction.command_id = command_id
        for action in change.marks:
            profile.actions[action] = Mark(ts, decision.risk)
        if decision.action in (c.FREEZE, c.CLOSE, c.UNFREEZE):
            profile.others = []  # a freeze or close ends every open step_up
        if change.challenge_until is not None and command_id is not None:
            if decision.action == c.STEP_UP and profile.challenge is not None:
                profile.others.append(profile.challenge)
            profile.challenge = Challenge(command_id, decision.action, ts, change.challenge_until,
                                          list(decision.methods or ()), decision.risk, device, session, ip)
        elif decision.action is not None:
            profile.challenge = None  # a close, an unfreeze, a freeze with no way back
    if alerted is not None:
        profile.alerted = alerted


# -- challenges --------------------------------------------------------------------------------

def _remember(table: list, record, cap: int) -> None:
    table.append(record)
    if len(table) > cap:
        del table[: len(table) - cap]


def open_challenges(profile: Profile) -> list[Challenge]:
    """The account's open challenges, oldest first (the latest is :attr:`Profile.challenge`)."""
    return [*profile.others, profile.challenge] if profile.challenge is not None else list(profile.others)


def find_challenge(profile: Profile, command_id: str | None) -> Challenge | None:
    """The open challenge an answer belongs to: the one named by ``command_id``, or without it
    the account's latest open challenge (contract v3); None when it is not open."""
    if command_id is None:
        return profile.challenge
    return next((ch for ch in open_challenges(profile) if ch.command_id == command_id), None)


def close_challenge(profile: Profile, challenge: Challenge, ts: int) -> None:
    """Close one open challenge; the latest of the others becomes the latest. An account with no
    open step_up left is no longer stepped up."""
    if profile.challenge is challenge:
        profile.challenge = profile.others.pop() if profile.others else None
    else:
        profile.others = [ch for ch in profile.others if ch is not challenge]
    if profile.restriction.state == State.STEPPED_UP and not any(
            ch.action == c.STEP_UP for ch in open_challenges(profile)):
        profile.restriction = Restriction(State.NONE, ts, 0, None)


def record_answer(profile: Profile, event: DeviceEvent, challenge: Challenge, strong: bool, cfg: Config,
                  trusted: bool = True) -> bool:
    """Learn the answer ``event`` (``challenge_passed`` / ``challenge_failed``) to the open
    ``challenge``; returns whether it closed the challenge (contract v3: its first ``trusted``
    pass, or a failure with reason ``abandoned``; after any other failure the person may try
    another listed method). A pass is remembered for the answering device and session (a strong
    one makes them known-good and trusts the device); a failure is remembered as evidence."""
    ts = event.ts
    device = event.device_id or challenge.device
    session = event.session_id or challenge.session
    if event.kind == c.CHALLENGE_FAILED:
        reason = event.reason or "wrong_code"
        _remember(profile.failures, Failure(ts, event.method, reason, device, session,
                                            event.ip or challenge.ip), MAX_FAILURES)
        challenge.failed = True
        if reason == "abandoned":
            close_challenge(profile, challenge, ts)
            return True
        return False
    if not trusted:
        return False
    close_challenge(profile, challenge, ts)
    _passed(profile, Pass(ts, event.method, strong), device, session)
    if strong:
        until = ts + int(cfg.policy.known_good_days * DAY_MS)
        for key in (device and "device:" + device, session and "session:" + session):
            if key:
                profile.good[key] = until
        d = profile.devices.get(device) if device else None
        if d is not None:
            d.trust = 1
        profile.evidence = {}  # the sign-in's evidence is answered
    return True


def _passed(profile: Profile, record: Pass, device: str | None, session: str | None) -> None:
    """Remember a pass for the device and the session it was made on."""
    profile.methods_used[record.method] = record.ts
    for key in (device and "device:" + device, session and "session:" + session):
        if key:
            if key not in profile.passes and len(profile.passes) >= MAX_PASSES:
                del profile.passes[min(profile.passes, key=lambda k: profile.passes[k].ts)]
            profile.passes[key] = record


def expire_challenge(profile: Profile, ts: int) -> bool:
    """Close every open challenge past its ``expires_at`` at ``ts``; an unanswered step-up counts
    as failed (reason ``timeout``) unless a failed attempt was already recorded. Open holds past
    their ``expires_at`` lapse too, writing nothing (contract v3: the account service refuses the
    held movement by itself). Returns whether anything expired."""
    expired = False
    for challenge in open_challenges(profile):
        if ts < challenge.expires_at:
            continue
        expired = True
        close_challenge(profile, challenge, ts)
        if challenge.action == c.STEP_UP and not challenge.failed:
            _remember(profile.failures, Failure(challenge.expires_at, None, "timeout", challenge.device,
                                                challenge.session, challenge.ip), MAX_FAILURES)
    if profile.holds and any(ts >= h.expires_at for h in profile.holds):
        profile.holds = [h for h in profile.holds if ts < h.expires_at]
        expired = True
    return expired


def _set_home(device: Device, how: int) -> None:
    """Seen at home: 1 by a GPS fix, 2 on the home network (which a GPS fix never downgrades)."""
    if device.home < how:
        device.home = how


def apply_verdict(profile: Profile, is_ato: bool, ts: int, cfg: Config) -> dict[str, float]:
    """Learn a verdict on the account's last alerted situation; returns that situation's features
    (empty when the verdict is about another alert, or there was none) for the models.

    A ``legit`` verdict makes the situation's device, country and payee known-good for
    ``known_good_days``, trusts the device, and marks the recent credential changes as the
    holder's own."""
    situation = profile.alerted
    if situation is None:
        return {}
    if not is_ato:
        until = ts + int(cfg.policy.known_good_days * DAY_MS)
        for kind, value in (("device", situation.device), ("country", situation.country),
                            ("payee", situation.payee)):
            if value:
                profile.good[f"{kind}:{value}"] = until
        device = profile.devices.get(situation.device) if situation.device else None
        if device is not None:
            device.trust = 1
        for change in profile.creds.values():
            change.suspicious = False  # the holder made these changes
        profile.failures.clear()  # and failed those checks (a lost phone, a typo)
    return situation.features()


def alerted_situation(alert_id: str, x: Context) -> AlertedSituation:
    """What a later verdict on ``alert_id`` judges: the event's features and identifiers."""
    return AlertedSituation(alert_id, AlertedSituation.feature_values(x.features()), x.event.device_id, x.country,
                            getattr(x.event, "counterparty_id", None))


# -- the event -----------------------------------------------------------------------------------

def _new_address(first: int, last: int) -> Address:
    return Address(first, last)


def observe(profile: Profile, x: Context, cfg: Config, risk: float = 0.0,
            evidence: frozenset[str] = frozenset()) -> None:
    """Learn ``x.event`` into ``profile``: the profile's side of online learning.

    When the evidence against an event risky enough for a step-up (``risk``; ``evidence``: the
    families of its strong findings) goes beyond the device's novelty, its young device and its
    IP address stay suspect until a verdict clears them, so the suspicion carries independent
    evidence to the next event from them (and a device never incriminates itself)."""
    event, ts = x.event, x.ts
    p = profile
    if p.n_events == 0 or ts < p.first_ts:
        p.first_ts = ts
    if ts > p.last_ts:
        p.last_ts = ts
    p.n_events += 1
    failed = event.kind == "login_failure"  # a failed attempt is not the holder's usage
    suspect = risk >= cfg.policy.step_up_at and bool(evidence - {"device", "model"})
    if event.device_id and not failed:
        d = touch(p.devices, event.device_id, ts, MAX_DEVICES, Device)
        if suspect and x.device_young and d.trust == 0:
            d.trust = -1
        if x.device_home_net:
            _set_home(d, 2)
    if event.ip and not failed:
        entry = touch(p.ips, event.ip, ts, MAX_IPS, _new_address)
        if suspect and not x.device_trusted:
            entry.suspect = True
        if x.asn is not None:
            entry.asn = x.asn
            touch(p.asns, str(x.asn), ts, MAX_ASNS, Seen)
        if type(event) is LocationEvent:
            entry.country = event.country or entry.country
        entry.ip_type = x.ip_type or entry.ip_type
    if event.session_id and not failed:
        s = touch(p.sessions, event.session_id, ts, MAX_SESSIONS, Session)
        if event.ip and s.ip is None:
            s.ip = event.ip  # the network the session started on
            s.asn = x.asn
        if event.device_id:
            s.device = event.device_id
    if type(event) is DeviceEvent:
        _observe_device_event(p, x, event)
    elif type(event) is LocationEvent:
        _observe_fix(p, x, event)
    else:
        _observe_money(p, event)
    if event.kind != "login_failure":
        hours = p.hours
        hour = (ts // HOUR_MS) % 24
        hours[hour] += 1
        if hours[hour] > 400:
            p.hours = [h // 2 for h in hours]
    if ts - p.pruned_ts >= DAY_MS:  # (prune checks this too; the call is the hot path's)
        prune(p, ts, int(cfg.windows.profile_retention_days * DAY_MS),
              int(cfg.windows.credential_change_hours * HOUR_MS))


def _observe_device_event(p: Profile, x: Context, event: DeviceEvent) -> None:
    kind, ts = event.kind, x.ts
    if kind == "login_success" and event.auth_method in ("passkey", "face"):
        # signed in with a passkey or the holder's face: as good as a strong challenge passed
        _passed(p, Pass(ts, event.auth_method, True), event.device_id, event.session_id)
    elif kind == "login_failure":
        p.fails.append(ts)
        if len(p.fails) > MAX_FAILS:
            del p.fails[0]
    elif kind in c.CREDENTIAL_KINDS:
        # suspect only because the device making it is new (nothing else about its origin):
        # remember which device, for that is one line of evidence, not two
        only_device = kind != "sim_change" and x.untrusted and not x.origin_untrusted
        p.creds[kind] = CredentialChange(ts, event.event_id, kind == "sim_change" or x.untrusted, None,
                                         event.device_id if only_device else None)
    elif kind == "device_bound" and event.device_id:
        device = p.devices[event.device_id]
        if not x.device_young and device.trust == 0:
            device.trust = 1
        elif x.untrusted:
            # registering a device is adding a way in: from an untrusted origin it counts as a
            # credential change, until the device shows up at the holder's home
            p.creds[kind] = CredentialChange(ts, event.event_id, True, event.device_id,
                                             None if x.origin_untrusted else event.device_id)


def _observe_fix(p: Profile, x: Context, event: LocationEvent) -> None:
    ts = x.ts
    err = fix_error(p, event)
    if err is not None and (p.last_fix is None or ts >= p.last_fix.ts):
        p.last_fix = Fix(ts, event.lat, event.lon, err, event.country)
    if event.country:
        touch(p.countries, event.country, ts, MAX_COUNTRIES, Seen)
    centre = p.centre
    if event.kind == "gps_fix" and event.device_id and centre is not None and centre.weight >= 5:
        d = p.devices.get(event.device_id)
        if d is not None and haversine_km(centre.lat, centre.lon, event.lat, event.lon) <= HOME_KM:
            _set_home(d, 1)
    if event.kind == "gps_fix" and not x.device_young:  # the home centre learns from settled devices
        if centre is not None:
            wgt = min(centre.weight + 1, 50)
            p.centre = Centre(centre.lat + (event.lat - centre.lat) / wgt,
                              centre.lon + (event.lon - centre.lon) / wgt, wgt)
        else:
            p.centre = Centre(event.lat, event.lon, 1)


def _amount_update(a: AmountStats, x: float) -> AmountStats:
    """River's ``stats.Var`` (ddof 1) restored from ``a``, updated with ``x``: the same floats,
    without building the River objects (a test checks them against River)."""
    n, mean = (a.n, a.mean) if a.n else (0.0, 0.0)
    s = (n - 1) * a.var if a.n else 0.0
    n += 1.0
    new_mean = mean + (1.0 / n) * (x - mean)
    s += 1.0 * (x - mean) * (x - new_mean)
    return AmountStats(n, new_mean, s / (n - 1) if n > 1 else 0.0)


def _observe_money(p: Profile, event) -> None:
    kind, ts = event.kind, event.ts
    if kind == "payee_added" and event.counterparty_id:
        if event.counterparty_id not in p.payees:
            touch(p.payees, event.counterparty_id, ts, MAX_PAYEES, Payee)  # added, never paid
    elif event.counterparty_id and kind in c.MONEY_OUT_KINDS:
        touch(p.payees, event.counterparty_id, ts, MAX_PAYEES, Payee).paid = True
    if kind in c.MONEY_OUT_KINDS and event.amount is not None:
        p.amount = _amount_update(p.amount, math.log1p(event.amount))
    if kind == "loan_draw":
        p.loan.last_draw = ts
        p.loan.draws += 1
    elif kind == "loan_repayment":
        p.loan.last_repay = max(p.loan.last_repay, ts)
        p.loan.repays += 1
    if event.balance_after is not None:
        p.balance = event.balance_after
    if event.credit_limit is not None:
        p.credit_limit = event.credit_limit


# -- ageing ------------------------------------------------------------------------------------

def prune(p: Profile, now: int, retention_ms: int, cred_ms: int) -> None:
    """Drop entries not seen within the retention; runs at most once a day per account."""
    if now - p.pruned_ts < DAY_MS:
        return
    p.pruned_ts = now
    cutoff = now - retention_ms
    for table in (p.devices, p.countries, p.ips, p.asns, p.payees):
        if table:
            for key in [k for k, v in table.items() if v.last < cutoff]:
                del table[key]
    if p.sessions:
        for key in [k for k, v in p.sessions.items() if v.last < now - DAY_MS]:
            del p.sessions[key]
    if p.creds:
        for key in [k for k, v in p.creds.items() if v.ts < now - cred_ms]:
            del p.creds[key]
    if p.good:
        for key in [k for k, until in p.good.items() if until < now]:
            del p.good[key]
    if p.fails:
        p.fails = [t for t in p.fails if t >= now - DAY_MS]
    if p.failures:
        p.failures = [f for f in p.failures if f.ts >= now - DAY_MS]
    if p.passes:
        for key in [k for k, v in p.passes.items() if v.ts < now - DAY_MS and not v.strong]:
            del p.passes[key]
