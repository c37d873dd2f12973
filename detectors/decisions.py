"""Decisions on payouts (contract v3, "Decisions"): ``allow``, ``hold`` or ``deny`` for every
decided event, and one resolution for every hold.

The engine calls these after it has applied the event's own decision (its command, if any) to
the profile, so the account's restriction and open challenges are those *at* the event, a
freeze or step_up issued on it included:

* ``deny`` when the account is frozen or closed (this wins over an open way back), naming the
  freeze or close in force;
* ``hold`` when a step_up was issued on this event, or a challenge is open whose trigger had
  the same ``device_id`` (and the same ``session_id`` where both carry one): the hold waits on
  that challenge and carries its ``methods`` and ``expires_at``; the profile keeps it open
  (:attr:`detectors.profile.Profile.holds`);
* ``allow`` otherwise.

A hold is resolved once: ``allow`` on its challenge's first trusted pass, ``deny`` on a failure
with reason ``abandoned`` or when a freeze, a close or an ``ato`` verdict comes while it is
open (:func:`deny_all`). At its ``expires_at`` it lapses, writing nothing
(:func:`detectors.update.expire_challenge`). Everything here is deterministic: ids come from the
policy version, the account, the event and the hold resolved.
"""

from __future__ import annotations

from detectors import contract as c
from detectors.config import Config
from detectors.outputs import Output, decision_value
from detectors.policy import effective
from detectors.profile import Challenge, Hold, Profile, State
from detectors.update import open_challenges

__all__ = ["decide_event", "deny_all", "resolve", "riding"]


def riding(profile: Profile, device: str | None, session: str | None) -> Challenge | None:
    """The latest open challenge whose trigger had this ``device`` (and this ``session`` where
    both carry one): what a decided event of that device waits on. None for an event without a
    device, which rides on nobody's challenge."""
    if device is None:
        return None
    for ch in reversed(open_challenges(profile)):
        if ch.device == device and (session is None or ch.session is None or ch.session == session):
            return ch
    return None


def _value(cfg: Config, account: str, event_id: str, ts: int, decision: str, *, command_id: str | None = None,
           methods: list[str] | None = None, expires_at: int | None = None, resolves: str | None = None,
           risk: float = 0.0, reasons: tuple[str, ...] | list[str] = ()) -> dict:
    return decision_value(account_id=account, event_id=event_id, ts=ts, decision=decision, command_id=command_id,
                          methods=methods, expires_at=expires_at, resolves=resolves, risk=risk, reasons=reasons,
                          policy_version=cfg.policy.version, dry_run=cfg.policy.dry_run,
                          key=cfg.keys.command_hmac)


def decide_event(profile: Profile, cfg: Config, account: str, event_id: str, ts: int, device: str | None,
                 session: str | None, risk: float, reasons: tuple[str, ...], step_up: dict | None) -> Output:
    """The decision on one decided event (the rules above); ``step_up`` is the step_up command
    issued on this event, if any. A hold is kept in the profile until resolved or expired."""
    restriction = profile.restriction
    state = effective(restriction, ts)
    if state in (State.FROZEN, State.CLOSED):
        why = tuple(reasons) or (("ACCOUNT_CLOSED",) if state == State.CLOSED else ("ACCOUNT_FROZEN",))
        value = _value(cfg, account, event_id, ts, c.DENY, command_id=restriction.command_id, risk=risk,
                       reasons=why)
        return Output(c.DECISIONS, account, value)
    if step_up is not None:
        command_id, methods, expires_at = step_up["command_id"], step_up["methods"], step_up["expires_at"]
    else:
        ch = riding(profile, device, session)
        if ch is None:
            return Output(c.DECISIONS, account, _value(cfg, account, event_id, ts, c.ALLOW, risk=risk,
                                                         reasons=reasons))
        command_id, methods, expires_at = ch.command_id, list(ch.methods), ch.expires_at
    value = _value(cfg, account, event_id, ts, c.HOLD, command_id=command_id, methods=methods,
                   expires_at=expires_at, risk=risk, reasons=reasons)
    profile.holds.append(Hold(value["decision_id"], command_id, expires_at, list(methods)))
    return Output(c.DECISIONS, account, value)


def resolve(profile: Profile, cfg: Config, account: str, event_id: str, ts: int, command_id: str,
            decision: str, risk: float, reasons: tuple[str, ...]) -> tuple[Output, ...]:
    """Resolve every open hold waiting on challenge ``command_id`` with ``decision`` (``allow``
    on its first trusted pass, ``deny`` when it is abandoned), as of input ``event_id``."""
    mine = [h for h in profile.holds if h.command_id == command_id]
    if not mine:
        return ()
    profile.holds = [h for h in profile.holds if h.command_id != command_id]
    return tuple(_resolution(cfg, account, event_id, ts, h, decision, risk, reasons) for h in mine)


def deny_all(profile: Profile, cfg: Config, account: str, event_id: str, ts: int, risk: float,
             reasons: tuple[str, ...]) -> tuple[Output, ...]:
    """Resolve every open hold ``deny``: a freeze, a close or an ``ato`` verdict at input
    ``event_id``."""
    if not profile.holds:
        return ()
    holds, profile.holds = profile.holds, []
    return tuple(_resolution(cfg, account, event_id, ts, h, c.DENY, risk, reasons) for h in holds)


def _resolution(cfg: Config, account: str, event_id: str, ts: int, hold: Hold, decision: str, risk: float,
                reasons: tuple[str, ...]) -> Output:
    return Output(c.DECISIONS, account, _value(cfg, account, event_id, ts, decision, command_id=hold.command_id,
                                                 methods=list(hold.methods), expires_at=hold.expires_at,
                                                 resolves=hold.decision_id, risk=risk, reasons=reasons))
