"""The v3 scoring of a closed loop (contract "Scoring (v3)", which is v2's with any listed
method): who each command addresses, which of its methods the account has, who can pass them,
and the figures built on that.

* The **person** of a command is the attacker of an ``ato`` incident when its
  ``trigger_event_id`` is one of that incident's ``event_ids``, the holder otherwise; when the
  trigger is an injected answer ``ch-<command_id>``, the person of that command (the chain is
  followed).
* The **listed enrolled methods** of a ``step_up`` or ``freeze`` are its methods the account has
  enrolled (an account without an enrolment line has every method; every account has
  ``id_check``). Any of them will do (v3): a command stops an attacker when the attacker passes
  none of them, and locks a holder out when the holder passes none of them. The v2 **offered
  method** (the first of them, :data:`NONE` when there is none) is kept for reference.
* The **holder** passes the account's enrolled methods, narrowed by ``holder_passes`` of every
  labelled ``legit`` situation whose window ``[start_ts, end_ts + 24 h]`` holds the command,
  also while an attack on the account is going on, and always ``id_check``; the holder answers
  with the first listed enrolled method they pass (``id_check``: a **slow check**).

Everything is a pure function of the incidents, the decisions and the enrolment.

>>> inc = Incident("a", "sim_swap_payout", "ato", 1000, 9000, 5000, ("e1",), ("sms_otp",))
>>> sc = Scoring([inc], {}, {"a": frozenset({"sms_otp", "face"})})
>>> sms = Decision(2000, "step_up", 0.5, "c1", "e1", ("sms_otp", "face"))
>>> face = Decision(2000, "step_up", 0.5, "c2", "e1", ("face", "sms_otp"))
>>> only_face = Decision(2000, "step_up", 0.5, "c3", "e1", ("face", "id_check"))
>>> sc.offered("a", sms), sc.stops(inc, "a", sms), sc.stops(inc, "a", face), sc.stops(inc, "a", only_face)
('sms_otp', False, False, True)
>>> sc.holder_choice("a", only_face), sc.holder_choice("a", Decision(0, "step_up", 0.5, "c4", "h", ("passkey", "id_check")))
('face', 'id_check')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from detectors import contract as c

from .metrics import REPAY_WINDOW_MS, Decision, Incident, Verdict, _share, merge_intervals

__all__ = [
    "ALL_METHODS", "ANSWER_PREFIX", "FREEZE_ANSWER_MS", "HOUR_MS", "ID_CHECK_ANSWER_MS", "NONE", "Scoring",
    "closes_without_verdict", "frozen_hours", "held_hours", "lockouts", "ordinary_challenges",
    "repay_challenges", "situation_challenges", "slow_checks",
]

HOUR_MS = 3_600_000
#: Every challenge method: what an account without an enrolment line has.
ALL_METHODS = frozenset(c.METHODS)
#: The offered method of a command none of whose methods the account has enrolled.
NONE = "none"
#: The event id of an injected answer is this prefix and the command id.
ANSWER_PREFIX = "ch-"
#: A freeze's way back, when the holder passes it, ends the freeze this long after it (the
#: closed-loop answer to a freeze comes 10 minutes of event time later).
FREEZE_ANSWER_MS = 10 * 60_000
#: ... 2 hours after it when the holder's way back is ``id_check`` (v3)
ID_CHECK_ANSWER_MS = 2 * HOUR_MS


class Scoring:
    """The v2 view of the commands of one evaluation (see the module docstring)."""

    def __init__(self, incidents: Sequence[Incident], decisions: Mapping[str, Sequence[Decision]],
                 enrolled: Mapping[str, frozenset[str]]) -> None:
        self.incidents = incidents
        self.enrolled = enrolled
        self.attacker_of: dict[str, int] = {}
        self.situations: dict[str, list[Incident]] = {}
        for i, inc in enumerate(incidents):
            if inc.is_attack:
                for eid in inc.event_ids:
                    self.attacker_of.setdefault(eid, i)
            else:
                self.situations.setdefault(inc.account_id, []).append(inc)
        self.by_command = {d.command_id: d for ds in decisions.values() for d in ds
                           if d.command_id is not None}

    # -- who and what ----------------------------------------------------------------------

    def enrolled_of(self, account: str) -> frozenset[str]:
        """The account's enrolled methods, ``id_check`` always among them (v3)."""
        return self.enrolled.get(account, ALL_METHODS) | {c.ID_CHECK}

    def listed_enrolled(self, account: str, d: Decision) -> tuple[str, ...]:
        """The methods of ``d`` the account enrolled, in its order (empty without methods)."""
        have = self.enrolled_of(account)
        return tuple(m for m in d.methods or () if m in have)

    def offered(self, account: str, d: Decision) -> str | None:
        """The method the account service offers for ``d``: the first listed one the account
        enrolled, :data:`NONE` when it enrolled none of them, None for a command without
        ``methods`` (v1)."""
        if d.methods is None:
            return None
        have = self.enrolled_of(account)
        return next((m for m in d.methods if m in have), NONE)

    def person(self, d: Decision) -> int | None:
        """Index of the ``ato`` incident whose attacker ``d`` addresses; None for the holder."""
        trigger, seen = d.trigger_event_id, set()
        while trigger is not None and trigger.startswith(ANSWER_PREFIX) and trigger not in seen:
            seen.add(trigger)
            cmd = self.by_command.get(trigger[len(ANSWER_PREFIX):])
            if cmd is None:
                break
            trigger = cmd.trigger_event_id
        if trigger is None:
            return None
        return self.attacker_of.get(trigger)

    def holder_methods(self, account: str, ts: int) -> frozenset[str]:
        """What the holder passes at ``ts``: enrolled, narrowed by every situation around ts."""
        can = self.enrolled.get(account, ALL_METHODS)
        for inc in self.situations.get(account, ()):
            if inc.holder_passes is not None and inc.start_ts <= ts <= inc.end_ts + REPAY_WINDOW_MS:
                can = can & frozenset(inc.holder_passes)
        return can | {c.ID_CHECK}

    def holder_choice(self, account: str, d: Decision) -> str | None:
        """The method the holder answers ``d`` with: the first listed enrolled one they pass
        (None: none, a lock-out)."""
        can = self.holder_methods(account, d.ts)
        return next((m for m in self.listed_enrolled(account, d) if m in can), None)

    def holder_passes(self, account: str, d: Decision) -> bool:
        """Whether the holder passes any listed enrolled method of ``d`` (False without one)."""
        return self.holder_choice(account, d) is not None

    def attacker_passes_any(self, inc: Incident, account: str, d: Decision) -> bool:
        """Whether the attacker of ``inc`` passes any listed enrolled method of ``d``."""
        passes = inc.attacker_passes or ()
        return any(m in passes for m in self.listed_enrolled(account, d))

    # -- attacks ---------------------------------------------------------------------------

    def stops(self, inc: Incident, account: str, d: Decision) -> bool:
        """Whether ``d`` stops the attacker of ``inc`` (time window aside): a close; a freeze
        without methods (v1 or empty) or none of whose listed enrolled methods the attacker
        passes; a step_up to an attacker none of whose listed enrolled methods they pass."""
        if d.action == c.CLOSE:
            return True
        if d.action == c.FREEZE:
            if not d.methods:
                return True
            return not self.attacker_passes_any(inc, account, d)
        if d.action == c.STEP_UP and d.methods is not None:
            who = self.person(d)
            if who is None:
                return False
            return not self.attacker_passes_any(self.incidents[who], account, d)
        return False

    def stopped_before_loss(self, inc: Incident, ds: Sequence[Decision]) -> bool:
        """A stopping command issued in ``[start_ts - 1 h, deadline]`` (contract "Scoring (v2)")."""
        lo, hi = inc.start_ts - HOUR_MS, inc.deadline
        return any(lo <= d.ts <= hi and self.stops(inc, inc.account_id, d) for d in ds)


# -- friction --------------------------------------------------------------------------------

def _in_situation(sc: Scoring, account: str, ts: int) -> bool:
    return any(inc.start_ts <= ts <= inc.end_ts + REPAY_WINDOW_MS for inc in sc.situations.get(account, ()))


def ordinary_challenges(legit: Sequence[str], decisions: Mapping[str, Sequence[Decision]],
                        sc: Scoring, days: float) -> dict[str, Any]:
    """Legitimate accounts challenged (``step_up``) outside every labelled situation window
    ``[start_ts, end_ts + 24 h]``: accounts, share, share per 30 days, challenges, and
    challenges per legitimate account per 30 days."""
    accounts = challenges = 0
    for acc in legit:
        k = sum(1 for d in decisions.get(acc, ()) if d.action == c.STEP_UP and not _in_situation(sc, acc, d.ts))
        challenges += k
        accounts += k > 0
    share = _share(accounts, len(legit))
    per_acc = _share(challenges, len(legit))
    return {
        "accounts": accounts,
        "share": share,
        "per_30d": None if share is None or days <= 0 else share * 30 / days,
        "challenges": challenges,
        "challenges_per_account_per_30d": None if per_acc is None or days <= 0 else per_acc * 30 / days,
    }


def situation_challenges(incidents: Iterable[Incident], decisions: Mapping[str, Sequence[Decision]],
                         sc: Scoring) -> dict[str, Any]:
    """Challenges (``step_up`` to the holder) per look-alike (``legit``) situation, within
    ``[start_ts, end_ts + 24 h]``; per scenario and over all situations."""
    rows: dict[str, list[int]] = {}
    for inc in incidents:
        if inc.is_attack:
            continue
        k = sum(1 for d in decisions.get(inc.account_id, ())
                if d.action == c.STEP_UP and inc.start_ts <= d.ts <= inc.end_ts + REPAY_WINDOW_MS
                and sc.person(d) is None)
        rows.setdefault(inc.scenario, []).append(k)
    out: dict[str, Any] = {name: {"situations": len(ks), "challenges": sum(ks),
                                  "challenges_per_situation": _share(sum(ks), len(ks))}
                           for name, ks in sorted(rows.items())}
    n = sum(len(ks) for ks in rows.values())
    total = sum(sum(ks) for ks in rows.values())
    return {"scenarios": out, "situations": n, "challenges": total,
            "challenges_per_situation": _share(total, n)}


def lockouts(decisions: Mapping[str, Sequence[Decision]], sc: Scoring, n_accounts: int) -> dict[str, Any]:
    """Holders challenged with a method they cannot pass, or with none of the listed methods
    enrolled (v2 step_ups addressed to the holder, on any account, also during an attack):
    challenges, accounts, share of all accounts. Also the freezes addressed to a holder whose
    way back the holder cannot pass (empty methods included)."""
    challenges = freezes = 0
    accounts: set[str] = set()
    frozen_accounts: set[str] = set()
    for acc, ds in decisions.items():
        for d in ds:
            if d.methods is None or sc.person(d) is not None:
                continue
            if d.action == c.STEP_UP and not sc.holder_passes(acc, d):
                challenges += 1
                accounts.add(acc)
            elif d.action == c.FREEZE and not sc.holder_passes(acc, d):
                freezes += 1
                frozen_accounts.add(acc)
    return {"challenges": challenges, "accounts": len(accounts), "share": _share(len(accounts), n_accounts),
            "freezes_without_way_back": freezes, "freezes_without_way_back_accounts": len(frozen_accounts)}


def frozen_hours(legit: Sequence[str], decisions: Mapping[str, Sequence[Decision]], sc: Scoring,
                 t1: int | None, days: float) -> dict[str, Any]:
    """Hours legitimate accounts spent frozen. A freeze lasts until the first of: its way back
    (the holder passes its offered method: 10 minutes after it), the next ``unfreeze`` of the
    account, its ``expires_at``, the end of the data (last event time); overlapping freezes of
    one account count once."""
    total_ms = 0
    freezes = lifted_by_way_back = 0
    accounts = 0
    for acc in legit:
        ds = decisions.get(acc, ())
        spans = []
        for i, d in enumerate(ds):
            if d.action != c.FREEZE:
                continue
            freezes += 1
            ends = [e for e in (d.expires_at, t1) if e is not None]
            choice = sc.holder_choice(acc, d)
            if choice is not None:
                ends.append(d.ts + (ID_CHECK_ANSWER_MS if choice == c.ID_CHECK else FREEZE_ANSWER_MS))
                lifted_by_way_back += 1
            nxt = next((u.ts for u in ds[i + 1:] if u.action == c.UNFREEZE and u.ts >= d.ts), None)
            if nxt is not None:
                ends.append(nxt)
            spans.append((d.ts, max(d.ts, min(ends)) if ends else d.ts))
        merged = merge_intervals(spans)
        if spans:
            accounts += 1
        total_ms += sum(hi - lo for lo, hi in merged)
    hours = total_ms / HOUR_MS
    per_acc = _share(hours, len(legit))
    return {
        "freezes": freezes,
        "accounts": accounts,
        "lifted_by_way_back": lifted_by_way_back,
        "hours": hours,
        "hours_per_frozen_account": _share(hours, accounts),
        "hours_per_account_per_30d": None if per_acc is None or days <= 0 else per_acc * 30 / days,
    }


def slow_checks(legit: Sequence[str], decisions: Mapping[str, Sequence[Decision]], sc: Scoring,
                days: float) -> dict[str, Any]:
    """Legitimate accounts that answered with ``id_check`` (v3 slow checks): a step_up or freeze
    addressed to the holder whose first listed enrolled method the holder passes is
    ``id_check``. Checks, accounts, share of legitimate accounts, share per 30 days."""
    checks = 0
    accounts = 0
    for acc in legit:
        k = sum(1 for d in decisions.get(acc, ()) if d.action in (c.STEP_UP, c.FREEZE) and d.methods
                and sc.person(d) is None and sc.holder_choice(acc, d) == c.ID_CHECK)
        checks += k
        accounts += k > 0
    share = _share(accounts, len(legit))
    return {"checks": checks, "accounts": accounts, "share": share,
            "per_30d": None if share is None or days <= 0 else share * 30 / days}


def held_hours(holds: Mapping[str, Sequence[Any]], legit: Sequence[str], t1: int | None,
               days: float) -> dict[str, Any]:
    """Hours decided events were held (v3): each ``hold`` from its ``ts`` until its resolution,
    its ``expires_at`` or the end of the data; all holds, and those on legitimate accounts (per
    legitimate account per 30 days)."""
    legit_set = set(legit)
    total_ms = legit_ms = n = n_legit = 0
    for acc, ts, expires, resolved in holds.values():
        if type(ts) is not int:
            continue
        ends = [e for e in (resolved, expires, t1) if type(e) is int]
        span = max(0, min(ends) - ts) if ends else 0
        n += 1
        total_ms += span
        if acc in legit_set:
            n_legit += 1
            legit_ms += span
    per_acc = _share(legit_ms / HOUR_MS, len(legit))
    return {"holds": n, "hours": total_ms / HOUR_MS, "legit_holds": n_legit, "legit_hours": legit_ms / HOUR_MS,
            "legit_hours_per_account_per_30d": None if per_acc is None or days <= 0 else per_acc * 30 / days}


def closes_without_verdict(decisions: Mapping[str, Sequence[Decision]], verdicts: Iterable[Verdict],
                           legit: Iterable[str]) -> dict[str, Any]:
    """``close`` commands with no analyst ``ato`` verdict on the account at or before them;
    all of them, and those on legitimate accounts."""
    confirmed: dict[str, int] = {}
    for v in verdicts:
        if v.source == "analyst" and v.label == "ato":
            confirmed[v.account_id] = min(v.ts, confirmed.get(v.account_id, v.ts))
    legit_set = set(legit)
    total = without = on_legit = 0
    for acc, ds in decisions.items():
        for d in ds:
            if d.action != c.CLOSE:
                continue
            total += 1
            if acc in confirmed and confirmed[acc] <= d.ts:
                continue
            without += 1
            on_legit += acc in legit_set
    return {"closes": total, "without_analyst_verdict": without,
            "without_analyst_verdict_on_legit_accounts": on_legit}


def repay_challenges(legit: Iterable[str], decisions: Mapping[str, Sequence[Decision]],
                     repayments: Mapping[str, Sequence[int]], after_days: float, other_days: float) -> dict[str, Any]:
    """Challenges (``step_up``) per account-day in the 24 h after a loan repayment vs otherwise,
    over the exposure of :func:`evaluation.metrics.repay_cohort`."""
    after = other = 0
    for acc in legit:
        reps = repayments.get(acc, ())
        for d in decisions.get(acc, ()):
            if d.action != c.STEP_UP:
                continue
            if any(r <= d.ts < r + REPAY_WINDOW_MS for r in reps):
                after += 1
            else:
                other += 1
    ra, ro = _share(after, after_days), _share(other, other_days)
    return {"challenges_after_repayment": after, "challenge_rate_after_repayment": ra,
            "challenges_otherwise": other, "challenge_rate_otherwise": ro,
            "challenge_rate_ratio": None if ra is None or not ro else ra / ro}

