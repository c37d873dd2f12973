"""The evaluation figures, as pure functions over small in-memory structures.

Nothing here reads a file. The readers in :mod:`evaluation.io` turn the three files into

* ``incidents``: a list of :class:`Incident` (the labels file, one incident a line);
* ``decisions``: ``{account_id: [Decision, ...]}`` sorted by time (the alerts and commands of the
  outputs file, kept as compact ``(ts, action, risk)`` tuples; an alert has action ``"alert"``);
* a :class:`EventSummary`, folded from the events stream by :func:`summarise_events`, which keeps
  only what the figures need: the time span, per-account first/last-seen times, the repayment
  times of accounts without an attack, the money movements of attack incidents and the event
  counts from an incident's start to its first freeze.

:func:`evaluate` turns the three into one JSON-ready dictionary (what ``metrics.json`` holds).
Every definition used below is written out in :data:`DEFINITIONS`, which the report prints.

>>> inc = Incident("a1", "sim_swap", "ato", 0, 600_000, 300_000, ("e1",))
>>> ds = {"a1": [Decision(120_000, "freeze", 0.9)]}
>>> s = summarise_events([], [inc], freeze_times([inc], ds))
>>> row = incident_outcome(inc, ds["a1"], s, 0)
>>> row["stopped_before_loss"], row["time_to_freeze_s"]
(True, 120.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from detectors import contract as c

__all__ = [
    "ALERT", "DAY_MS", "DEFINITIONS", "FLAGGING_ACTIONS", "MONEY_KINDS", "REPAY_WINDOW_MS",
    "STOPPING_ACTIONS", "Decision", "Event", "EventSummary", "Incident", "Verdict", "alert_precision",
    "attack_summary", "benign_situations", "evaluate", "first_stop", "freeze_times",
    "group_decisions", "incident_outcome", "is_v2", "legit_accounts", "legit_rates", "max_risk",
    "median", "merge_intervals", "repay_cohort", "summarise_events", "threshold_curve",
]

DAY_MS = 86_400_000
#: The 24 h after a legitimate incident ends, and after a loan repayment, that still count.
REPAY_WINDOW_MS = DAY_MS
#: The pseudo-action of an alert in a :class:`Decision`.
ALERT = "alert"
#: Money-moving kinds: an attacker's money movements (``payment``, ``transfer_out``,
#: ``withdrawal``, ``loan_draw``).
MONEY_KINDS = c.MONEY_OUT_KINDS
#: Actions that stop an attacker: a freeze or a close.
STOPPING_ACTIONS = frozenset({c.FREEZE, c.CLOSE})
#: What counts as "the engine flagged the account": any alert or command except ``unfreeze``.
FLAGGING_ACTIONS = frozenset({ALERT, c.STEP_UP, c.FREEZE, c.CLOSE})


# -- records ----------------------------------------------------------------------------------

class Incident(NamedTuple):
    """One line of the labels file."""

    account_id: str
    scenario: str
    label: str  # "ato" or "legit"
    start_ts: int
    end_ts: int
    first_loss_ts: int | None
    event_ids: tuple[str, ...] = ()
    #: v2: the methods the attacker passes (ato); None when the label has no such field (= none)
    attacker_passes: tuple[str, ...] | None = None
    #: v2: the methods the holder can pass in this situation (legit); None = all (not narrowed)
    holder_passes: tuple[str, ...] | None = None

    @property
    def is_attack(self) -> bool:
        return self.label == "ato"

    @property
    def deadline(self) -> int:
        """The last moment at which acting still prevents the loss: ``first_loss_ts`` when the
        attacker moved money, else ``end_ts``."""
        return self.end_ts if self.first_loss_ts is None else self.first_loss_ts


class Decision(NamedTuple):
    """One alert or command of the outputs file, reduced to what the figures use."""

    ts: int  # command: issued_at; alert: time
    action: str  # "alert", "step_up", "freeze", "unfreeze" or "close"
    risk: float  # [0, 1]; alerts: risk_score / 100
    command_id: str | None = None
    trigger_event_id: str | None = None
    methods: tuple[str, ...] | None = None  # v2 step_up / freeze; None: a v1 command or no list
    expires_at: int | None = None
    contract_version: int | None = None


class Verdict(NamedTuple):
    """One valid verdict (events file or transcript), reduced to what the figures use."""

    account_id: str
    ts: int
    label: str  # "ato" or "legit"
    source: str  # "analyst" or "user"


class Event(NamedTuple):
    """One valid input event, reduced to what the figures use."""

    event_id: str
    account_id: str
    ts: int
    kind: str
    amount: float | None = None


@dataclass
class EventSummary:
    """What :func:`summarise_events` keeps of the events stream (no event is kept whole).

    ``incident_money[i]`` maps an event id to ``(ts, amount)`` for the money movements of attack
    incident ``i``; ``events_to_freeze[i]`` counts the account's events with
    ``start_ts <= ts <= first freeze`` (None when never frozen or not an attack).
    """

    n_events: int = 0
    t0: int | None = None
    t1: int | None = None
    first_seen: dict[str, int] = field(default_factory=dict)
    last_seen: dict[str, int] = field(default_factory=dict)
    repayments: dict[str, list[int]] = field(default_factory=dict)
    incident_money: list[dict[str, tuple[int, float]]] = field(default_factory=list)
    events_to_freeze: list[int | None] = field(default_factory=list)

    @property
    def days(self) -> float:
        """Observed days: the span of the events file (0 when it has fewer than two times)."""
        if self.t0 is None or self.t1 is None:
            return 0.0
        return (self.t1 - self.t0) / DAY_MS


# -- small helpers ----------------------------------------------------------------------------

def median(values: Iterable[float]) -> float | None:
    """The median, or None for no values.

    >>> median([3, 1, 2]), median([1, 2, 3, 4]), median([])
    (2, 2.5, None)
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return None
    mid = n // 2
    return xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2


def _share(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge half-open ``[lo, hi)`` intervals; empty ones are dropped.

    >>> merge_intervals([(5, 9), (0, 3), (2, 4), (9, 10), (7, 7)])
    [(0, 4), (5, 10)]
    """
    out: list[list[int]] = []
    for lo, hi in sorted(i for i in intervals if i[1] > i[0]):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def group_decisions(pairs: Iterable[tuple[str, Decision]]) -> dict[str, list[Decision]]:
    """``(account_id, Decision)`` pairs -> ``{account_id: decisions sorted by time}``."""
    out: dict[str, list[Decision]] = {}
    for account, d in pairs:
        out.setdefault(account, []).append(d)
    for ds in out.values():
        ds.sort(key=lambda d: (d.ts, d.action, d.risk))
    return out


def _in_window(ds: Sequence[Decision], lo: int, hi: int, actions: frozenset[str]) -> list[Decision]:
    return [d for d in ds if lo <= d.ts <= hi and d.action in actions]


def first_stop(incident: Incident, ds: Sequence[Decision]) -> int | None:
    """Time of the first freeze or close on the account at or after the incident's start."""
    for d in ds:
        if d.ts >= incident.start_ts and d.action in STOPPING_ACTIONS:
            return d.ts
    return None


def freeze_times(incidents: Sequence[Incident], decisions: Mapping[str, Sequence[Decision]]) -> list[int | None]:
    """:func:`first_stop` of every attack incident (None for benign ones)."""
    return [first_stop(inc, decisions.get(inc.account_id, ())) if inc.is_attack else None
            for inc in incidents]


def max_risk(ds: Iterable[Decision], lo: int | None = None, hi: int | None = None) -> float | None:
    """Highest risk of the flagging decisions (alerts, step_up, freeze, close) in ``[lo, hi]``."""
    best = None
    for d in ds:
        if d.action not in FLAGGING_ACTIONS:
            continue
        if (lo is not None and d.ts < lo) or (hi is not None and d.ts > hi):
            continue
        if best is None or d.risk > best:
            best = d.risk
    return best


# -- the events fold --------------------------------------------------------------------------

def summarise_events(events: Iterable[Event], incidents: Sequence[Incident],
                     first_freeze: Sequence[int | None]) -> EventSummary:
    """Fold the events stream into an :class:`EventSummary`, keeping only aggregates.

    ``first_freeze[i]`` is the first freeze of incident ``i`` (from :func:`freeze_times`).
    An attack incident's money movements are its ``event_ids`` with a money-moving kind; an
    incident without ``event_ids`` falls back to the account's money movements in
    ``[start_ts, end_ts]``. Repeated deliveries of one ``event_id`` are counted once in the
    incident figures (money, events to freeze); the span and first/last-seen times are not
    affected by repeats.
    """
    s = EventSummary()
    s.incident_money = [{} for _ in incidents]
    s.events_to_freeze = [None] * len(incidents)
    attack_accounts = {inc.account_id for inc in incidents if inc.is_attack}
    by_event: dict[str, list[int]] = {}
    window_money: dict[str, list[int]] = {}  # account -> incidents that use the window fallback
    to_freeze: dict[str, list[int]] = {}  # account -> frozen incidents whose events we count
    seen_in_window: list[set[str]] = [set() for _ in incidents]
    for i, inc in enumerate(incidents):
        if not inc.is_attack:
            continue
        if inc.event_ids:
            for eid in inc.event_ids:
                by_event.setdefault(eid, []).append(i)
        else:
            window_money.setdefault(inc.account_id, []).append(i)
        if first_freeze[i] is not None:
            to_freeze.setdefault(inc.account_id, []).append(i)
            s.events_to_freeze[i] = 0

    first_seen, last_seen = s.first_seen, s.last_seen
    t0 = t1 = None
    n = 0
    for ev in events:
        n += 1
        acc, ts = ev.account_id, ev.ts
        if t0 is None or ts < t0:
            t0 = ts
        if t1 is None or ts > t1:
            t1 = ts
        f = first_seen.get(acc)
        if f is None or ts < f:
            first_seen[acc] = ts
        la = last_seen.get(acc)
        if la is None or ts > la:
            last_seen[acc] = ts
        if ev.kind == "loan_repayment" and acc not in attack_accounts:
            s.repayments.setdefault(acc, []).append(ts)
        if ev.kind in MONEY_KINDS:
            for i in by_event.get(ev.event_id, ()):
                if incidents[i].account_id == acc:
                    s.incident_money[i][ev.event_id] = (ts, float(ev.amount or 0.0))
            for i in window_money.get(acc, ()):
                inc = incidents[i]
                if inc.start_ts <= ts <= inc.end_ts:
                    s.incident_money[i][ev.event_id] = (ts, float(ev.amount or 0.0))
        for i in to_freeze.get(acc, ()):
            if incidents[i].start_ts <= ts <= first_freeze[i] and ev.event_id not in seen_in_window[i]:
                seen_in_window[i].add(ev.event_id)
                s.events_to_freeze[i] += 1
    s.n_events, s.t0, s.t1 = n, t0, t1
    for ts_list in s.repayments.values():
        ts_list.sort()
    return s


# -- attacks ----------------------------------------------------------------------------------

def incident_outcome(inc: Incident, ds: Sequence[Decision], s: EventSummary, index: int,
                     scoring: Any = None, withheld: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The figures of one attack incident (``index`` is its position in the labels).

    With a :class:`evaluation.challenges.Scoring` (v2), "stopped before loss" follows the v2
    rule; without, the v1 rule (a freeze or close in ``[start_ts, deadline]``). ``withheld``:
    event ids the account service refused in a closed-loop replay.
    """
    detected = bool(_in_window(ds, inc.start_ts, inc.end_ts, FLAGGING_ACTIONS))
    if scoring is not None:
        stopped = scoring.stopped_before_loss(inc, ds)
    else:
        stopped = bool(_in_window(ds, inc.start_ts, inc.deadline, STOPPING_ACTIONS))
    stepped = bool(_in_window(ds, inc.start_ts, inc.deadline, frozenset({c.STEP_UP})))
    freeze = first_stop(inc, ds)
    money = s.incident_money[index] if index < len(s.incident_money) else {}
    before = [amt for ts, amt in money.values() if freeze is None or ts < freeze]
    return {
        "account_id": inc.account_id,
        "scenario": inc.scenario,
        "start_ts": inc.start_ts,
        "first_loss_ts": inc.first_loss_ts,
        "detected": detected,
        "stopped_before_loss": stopped,
        "stepped_up_before_loss": stepped,
        "first_freeze_ts": freeze,
        "time_to_freeze_s": None if freeze is None else (freeze - inc.start_ts) / 1000,
        "events_to_freeze": s.events_to_freeze[index] if index < len(s.events_to_freeze) else None,
        "money_movements": len(money),
        "money_movements_before_freeze": len(before),
        "money_amount": sum(amt for _, amt in money.values()),
        "money_amount_before_freeze": sum(before),
        "max_risk_before_loss": max_risk(ds, inc.start_ts, inc.deadline),
        "events_withheld": sum(1 for e in inc.event_ids if e in withheld),
    }


def _attack_row(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    # a loss can only be stopped where there was one: incidents without a money movement by the
    # attacker (stuffing attempts that never got in, takeovers cut short) count as detected only
    lossy = [r for r in rows if r["first_loss_ts"] is not None]
    stopped = sum(r["stopped_before_loss"] for r in lossy)
    stepped_up = sum(r["stepped_up_before_loss"] for r in lossy)
    frozen = [r for r in rows if r["first_freeze_ts"] is not None]
    moves = sum(r["money_movements"] for r in rows)
    amount = sum(r["money_amount"] for r in rows)
    return {
        "incidents": n,
        "detected": sum(r["detected"] for r in rows),
        "detected_share": _share(sum(r["detected"] for r in rows), n),
        "with_loss": len(lossy),
        "stopped_before_loss": stopped,
        "stopped_before_loss_share": _share(stopped, len(lossy)),
        "stepped_up_before_loss": stepped_up,
        "stepped_up_before_loss_share": _share(stepped_up, len(lossy)),
        "frozen": len(frozen),
        "median_time_to_freeze_s": median(r["time_to_freeze_s"] for r in frozen),
        "median_events_to_freeze": median(r["events_to_freeze"] for r in frozen
                                          if r["events_to_freeze"] is not None),
        "money_movements": moves,
        "money_movements_before_freeze_share": _share(
            sum(r["money_movements_before_freeze"] for r in rows), moves),
        "money_amount": amount,
        "money_amount_before_freeze_share": _share(
            sum(r["money_amount_before_freeze"] for r in rows), amount),
        "events_withheld": sum(r.get("events_withheld", 0) for r in rows),
    }


def attack_summary(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-scenario rows (sorted by name) and the all-attacks row from :func:`incident_outcome`s."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in outcomes:
        by.setdefault(r["scenario"], []).append(r)
    return {
        "scenarios": {name: _attack_row(rows) for name, rows in sorted(by.items())},
        "all": _attack_row(outcomes),
    }


# -- legitimate accounts ----------------------------------------------------------------------

def legit_accounts(incidents: Iterable[Incident], s: EventSummary) -> list[str]:
    """Accounts seen in the events file that have no ``ato`` incident in the labels, sorted."""
    attacked = {inc.account_id for inc in incidents if inc.is_attack}
    return sorted(a for a in s.first_seen if a not in attacked)


def legit_rates(legit: Sequence[str], decisions: Mapping[str, Sequence[Decision]], days: float) -> dict[str, Any]:
    """Share of legitimate accounts ever frozen / closed / stepped up, also per 30 days."""
    out: dict[str, Any] = {"accounts": len(legit), "observed_days": days}
    for action, name in ((c.FREEZE, "frozen"), (c.CLOSE, "closed"), (c.STEP_UP, "stepped_up")):
        k = sum(1 for a in legit if any(d.action == action for d in decisions.get(a, ())))
        share = _share(k, len(legit))
        out[name] = k
        out[f"{name}_share"] = share
        out[f"{name}_per_30d"] = None if share is None or days <= 0 else share * 30 / days
    return out


def benign_situations(incidents: Iterable[Incident], decisions: Mapping[str, Sequence[Decision]]) -> dict[str, Any]:
    """Per ``legit`` scenario: share of incidents with a freeze / close / step_up on the account
    in ``[start_ts, end_ts + 24 h]``."""
    by: dict[str, list[Incident]] = {}
    for inc in incidents:
        if not inc.is_attack:
            by.setdefault(inc.scenario, []).append(inc)
    out: dict[str, Any] = {}
    for name, incs in sorted(by.items()):
        row: dict[str, Any] = {"incidents": len(incs)}
        for action, key in ((c.FREEZE, "frozen"), (c.CLOSE, "closed"), (c.STEP_UP, "stepped_up")):
            k = sum(1 for inc in incs
                    if _in_window(decisions.get(inc.account_id, ()), inc.start_ts,
                                  inc.end_ts + REPAY_WINDOW_MS, frozenset({action})))
            row[key] = k
            row[f"{key}_share"] = _share(k, len(incs))
        out[name] = row
    return out


def repay_cohort(legit: Iterable[str], decisions: Mapping[str, Sequence[Decision]], s: EventSummary) -> dict[str, Any]:
    """Freezes per account-day in the 24 h after a loan repayment vs the rest of the time.

    For each legitimate account, observed time is ``[first_seen, t1]`` (its first event to the
    end of the file); the exposure after repayments is the union of ``[r, r + 24 h)`` over its
    repayment times ``r``, clipped to observed time; the rest is the other observed time. A
    freeze at ``t`` counts after a repayment when ``r <= t < r + 24 h`` for some ``r``.
    """
    t1 = s.t1
    after_freezes = other_freezes = 0
    after_ms = total_ms = 0
    cohort = 0
    for acc in legit:
        first = s.first_seen.get(acc)
        if first is None or t1 is None:
            continue
        total_ms += t1 - first
        windows = merge_intervals((r, min(r + REPAY_WINDOW_MS, t1)) for r in s.repayments.get(acc, ())
                                  if r >= first)
        if s.repayments.get(acc):
            cohort += 1
        after_ms += sum(hi - lo for lo, hi in windows)
        reps = s.repayments.get(acc, ())
        for d in decisions.get(acc, ()):
            if d.action != c.FREEZE:
                continue
            if any(r <= d.ts < r + REPAY_WINDOW_MS for r in reps):
                after_freezes += 1
            else:
                other_freezes += 1
    after_days = after_ms / DAY_MS
    other_days = (total_ms - after_ms) / DAY_MS
    rate_after = _share(after_freezes, after_days)
    rate_other = _share(other_freezes, other_days)
    return {
        "cohort_accounts": cohort,
        "freezes_after_repayment": after_freezes,
        "exposure_days_after_repayment": after_days,
        "rate_after_repayment": rate_after,
        "freezes_otherwise": other_freezes,
        "exposure_days_otherwise": other_days,
        "rate_otherwise": rate_other,
        "rate_ratio": None if rate_after is None or not rate_other else rate_after / rate_other,
    }


# -- precision and threshold ------------------------------------------------------------------

def alert_precision(incidents: Iterable[Incident], decisions: Mapping[str, Sequence[Decision]]) -> dict[str, Any]:
    """Share of alerts (and of each command action) issued while an ``ato`` incident of the
    account was in progress (``start_ts <= t <= end_ts``)."""
    windows: dict[str, list[tuple[int, int]]] = {}
    for inc in incidents:
        if inc.is_attack:
            windows.setdefault(inc.account_id, []).append((inc.start_ts, inc.end_ts))
    counts: dict[str, list[int]] = {a: [0, 0] for a in (ALERT, *c.ACTIONS)}
    for acc, ds in decisions.items():
        w = windows.get(acc, ())
        for d in ds:
            tally = counts.setdefault(d.action, [0, 0])
            tally[1] += 1
            if any(lo <= d.ts <= hi for lo, hi in w):
                tally[0] += 1
    return {a: {"total": tot, "during_attack": hit, "precision": _share(hit, tot)}
            for a, (hit, tot) in counts.items()}


def threshold_curve(attack_risks: Sequence[float | None], legit_risks: Sequence[float | None],
                    thresholds: Sequence[float] | None = None) -> dict[str, list[float | None]]:
    """Attack catch rate and share of legitimate accounts flagged, for each threshold θ.

    An attack counts as caught at θ when its highest risk before the loss is ``>= θ``; a
    legitimate account counts as flagged when its highest risk is ``>= θ`` (None: never).

    >>> threshold_curve([0.9, 0.4, None], [0.5, None], [0.0, 0.5, 1.0])["catch_rate"]
    [0.6666666666666666, 0.3333333333333333, 0.0]
    """
    if thresholds is None:
        thresholds = [i / 100 for i in range(101)]
    th = np.asarray(thresholds, dtype=float)

    def at_or_above(risks: Sequence[float | None]) -> list[float | None]:
        xs = np.sort(np.asarray([r for r in risks if r is not None], dtype=float))
        if not risks:
            return [None] * len(th)
        counts = len(xs) - np.searchsorted(xs, th, side="left")  # how many r >= θ
        return [int(k) / len(risks) for k in counts]

    return {
        "threshold": [float(t) for t in th],
        "catch_rate": at_or_above(attack_risks),
        "legit_flagged": at_or_above(legit_risks),
    }


# -- everything -------------------------------------------------------------------------------

def is_v2(incidents: Iterable[Incident], decisions: Mapping[str, Sequence[Decision]],
          enrolled: Mapping[str, frozenset[str]]) -> bool:
    """Whether to score under v2: the labels carry v2 fields or enrolment lines, or a command
    carries ``contract_version`` 2 or ``methods``."""
    if enrolled or any(i.attacker_passes is not None or i.holder_passes is not None for i in incidents):
        return True
    return any(d.contract_version == 2 or d.methods is not None for ds in decisions.values() for d in ds)


def evaluate(incidents: Sequence[Incident], decisions: Mapping[str, Sequence[Decision]],
             s: EventSummary, enrolled: Mapping[str, frozenset[str]] | None = None,
             verdicts: Sequence[Verdict] = (), withheld: set[str] | None = None,
             holds: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """All figures, as one JSON-ready dictionary (the content of ``metrics.json``).

    ``enrolled`` (account -> enrolled methods, from the labels' enrolment lines), ``verdicts``
    (from the events file and the transcript) and ``withheld`` (event ids a closed-loop replay
    withheld) feed the v2/v3 figures, ``holds`` (v3 hold decisions, from
    :func:`evaluation.io.iter_decisions`) the hours held; see :mod:`evaluation.challenges`.
    """
    from . import challenges as ch

    enrolled = enrolled or {}
    v2 = is_v2(incidents, decisions, enrolled)
    sc = ch.Scoring(incidents, decisions, enrolled)
    withheld = withheld or set()
    outcomes = [incident_outcome(inc, decisions.get(inc.account_id, ()), s, i, sc if v2 else None, withheld)
                for i, inc in enumerate(incidents) if inc.is_attack]
    attacks = attack_summary(outcomes)
    legit = legit_accounts(incidents, s)
    rates = legit_rates(legit, decisions, s.days)
    benign = benign_situations(incidents, decisions)
    cohort = repay_cohort(legit, decisions, s)
    cohort.update(ch.repay_challenges(legit, decisions, s.repayments, cohort["exposure_days_after_repayment"],
                                      cohort["exposure_days_otherwise"]))
    friction = {
        "ordinary_days": ch.ordinary_challenges(legit, decisions, sc, s.days),
        "situations": ch.situation_challenges(incidents, decisions, sc),
        "lockouts": ch.lockouts(decisions, sc, len(s.first_seen)),
        "frozen": ch.frozen_hours(legit, decisions, sc, s.t1, s.days),
        "closes": ch.closes_without_verdict(decisions, verdicts, legit),
        "slow_checks": ch.slow_checks(legit, decisions, sc, s.days),
        "held": ch.held_hours(holds or {}, legit, s.t1, s.days),
    }
    precision = alert_precision(incidents, decisions)
    # the same incidents as the stopped-before-loss share: those with a loss to stop
    curve = threshold_curve([o["max_risk_before_loss"] for o in outcomes if o["first_loss_ts"] is not None],
                            [max_risk(decisions.get(a, ())) for a in legit])
    legit_stopped = sum(1 for a in legit
                        if any(d.action in STOPPING_ACTIONS for d in decisions.get(a, ())))
    # the x axis of the "false freezes" plot: legitimate accounts with a freeze or close of risk >= θ
    curve["legit_frozen"] = threshold_curve(
        [], [max_risk(d for d in decisions.get(a, ()) if d.action in STOPPING_ACTIONS) for a in legit],
        curve["threshold"])["legit_flagged"]
    curve["operating_point"] = {
        "catch_rate": attacks["all"]["stopped_before_loss_share"],
        "legit_flagged": _share(legit_stopped, len(legit)),
    }
    worst_scn = min(((name, row["stopped_before_loss_share"]) for name, row in attacks["scenarios"].items()
                     if row["stopped_before_loss_share"] is not None),
                    key=lambda x: x[1], default=(None, None))
    worst_benign = max(((name, row["frozen_share"]) for name, row in benign.items()),
                       key=lambda x: x[1], default=(None, None))
    headline = {
        "stopped_before_loss": attacks["all"]["stopped_before_loss_share"],
        "worst_scenario": worst_scn[0],
        "worst_scenario_stopped_before_loss": worst_scn[1],
        "legit_frozen_per_30d": rates["frozen_per_30d"],
        "legit_closed_per_30d": rates["closed_per_30d"],
        "worst_benign_situation": worst_benign[0],
        "worst_benign_situation_frozen": worst_benign[1],
        "alert_precision": precision[ALERT]["precision"],
        "scoring": "v3" if v2 else "v1",
        "stopped_before_loss_by_scenario": {name: row["stopped_before_loss_share"]
                                            for name, row in attacks["scenarios"].items()},
        "challenged_on_ordinary_days_share": friction["ordinary_days"]["share"],
        "challenged_on_ordinary_days_per_30d": friction["ordinary_days"]["per_30d"],
        "challenges_per_lookalike_situation": friction["situations"]["challenges_per_situation"],
        "locked_out_accounts": friction["lockouts"]["accounts"],
        "locked_out_share": friction["lockouts"]["share"],
        "legit_frozen_hours": friction["frozen"]["hours"],
        "slow_checks_per_30d": friction["slow_checks"]["per_30d"],
        "legit_hours_held": friction["held"]["legit_hours"],
        "hours_held": friction["held"]["hours"],
        "closed_without_analyst_verdict": friction["closes"]["without_analyst_verdict"],
        "repay_freeze_rate_ratio": cohort["rate_ratio"],
        "repay_challenge_rate_ratio": cohort["challenge_rate_ratio"],
    }
    return {
        "events": {"count": s.n_events, "accounts": len(s.first_seen), "t0": s.t0, "t1": s.t1,
                   "observed_days": s.days},
        "labels": {"incidents": len(incidents),
                   "attack_incidents": sum(1 for i in incidents if i.is_attack),
                   "benign_incidents": sum(1 for i in incidents if not i.is_attack)},
        "outputs": {"accounts": len(decisions),
                    "decisions": {a: v["total"] for a, v in precision.items()}},
        "attacks": attacks,
        "legit_accounts": rates,
        "benign_situations": benign,
        "repay_cohort": cohort,
        "friction": friction,
        "precision": precision,
        "threshold_curve": curve,
        "incidents": outcomes,
        "headline": headline,
        "definitions": DEFINITIONS,
    }


#: The definitions behind every figure, printed in the report.
DEFINITIONS: dict[str, str] = {
    "decision": "an alert (its time; risk = risk_score / 100) or a command (its issued_at; its "
                "risk) on an account. Commands with dry_run true count: they are what the policy "
                "decided.",
    "flagged": "an alert or a step_up, freeze or close command (unfreeze is not a detection).",
    "detected": "an attack incident with a flagging decision on its account with "
                "start_ts <= t <= end_ts.",
    "deadline": "first_loss_ts, or end_ts for an incident without loss.",
    "stopped before loss": "v1 scoring (labels and commands without v2 fields): a freeze or close on "
                           "the account with start_ts <= issued_at <= first_loss_ts. v3 scoring: a "
                           "command with start_ts - 1 h <= issued_at <= first_loss_ts that is a close; "
                           "a freeze none of whose listed enrolled methods is in attacker_passes, or with "
                           "empty or no methods; or a step_up whose person is the attacker and none of "
                           "whose listed enrolled methods is in attacker_passes (id_check is always "
                           "enrolled). Shares are over the incidents "
                           "with a loss (column 'with loss').",
    "person (v2)": "the attacker of an ato incident when the command's trigger_event_id is in its "
                   "event_ids, the holder otherwise; a trigger ch-<command_id> (an injected "
                   "answer) has the person of that command.",
    "offered method (v2)": "the first listed method the account enrolled (no enrolment line: all "
                           "methods); 'none' when it enrolled none of them, which nobody passes.",
    "holder passes (v2)": "the enrolled methods, narrowed by holder_passes of every legit situation "
                          "with start_ts <= t <= end_ts + 24 h; also while an attack is going on.",
    "challenged on ordinary days": "legitimate accounts with a step_up outside every labelled "
                                   "situation window [start_ts, end_ts + 24 h], as a share of "
                                   "legitimate accounts and per 30 days.",
    "challenges per look-alike situation": "step_ups addressed to the holder within a legit "
                                           "situation's [start_ts, end_ts + 24 h], per situation.",
    "lock-outs": "step_ups addressed to a holder none of whose listed enrolled methods the holder passes "
                 "(v3: id_check is always enrolled and always passed by a holder), on any account; counted as challenges and as accounts (share of all "
                 "accounts seen in the events). Freezes addressed to a holder without a way back "
                 "they pass are counted apart.",
    "hours frozen": "per legitimate account, the union of its freezes, each lasting until the first "
                    "of: its way back (the holder passes a listed enrolled method: +10 min, +2 h "
                    "when that is id_check, the closed-loop answer), the next unfreeze, expires_at, "
                    "the last event time.",
    "slow checks (v3)": "legitimate accounts with a step_up or freeze addressed to the holder whose "
                        "first listed enrolled method the holder passes is id_check; share of "
                        "legitimate accounts per 30 days.",
    "hours held (v3)": "per hold decision, from its ts to its resolution, its expires_at or the last "
                       "event time; all holds and those on legitimate accounts.",
    "closed without analyst verdict": "close commands with no analyst verdict labelled ato on the "
                                      "account at or before issued_at (verdicts from the events "
                                      "file and the transcript).",
    "transcript": "the outputs file may be a closed-loop transcript: its input lines are skipped "
                  "(verdicts are read), its withheld lines are counted per incident (events "
                  "withheld).",
    "stepped up before loss": "a step_up on the account with start_ts <= issued_at <= deadline.",
    "time / events to freeze": "from start_ts to the first freeze or close issued at or after "
                               "start_ts (no upper bound); events = the account's events with "
                               "start_ts <= ts <= that freeze, each event_id once. Medians over "
                               "the incidents that were frozen.",
    "money movements before freeze": "the incident's events (event_ids; if empty, the account's "
                                     "events in [start_ts, end_ts]) of kind payment, transfer_out, "
                                     "withdrawal or loan_draw with ts < first freeze (all of them "
                                     "if never frozen). Shares pooled over incidents: "
                                     "sum(before) / sum(all), by count and by amount.",
    "legitimate account": "an account seen in the events file (device, location, transaction "
                          "topics) with no incident labelled ato. Accounts that appear only in "
                          "the outputs are not counted.",
    "per 30 days": "share x 30 / observed days, observed days = (last ts - first ts) of the "
                   "events file / 86,400,000 ms.",
    "benign situation rate": "share of legit-labelled incidents with a freeze / close / step_up on "
                             "the account with start_ts <= issued_at <= end_ts + 24 h.",
    "repayment cohort": "for each legitimate account: observed time [first event, end of file]; "
                        "exposure after repayment = union of [r, r + 24 h) over its "
                        "loan_repayment times r, within observed time; rate = freeze commands in "
                        "that exposure / its account-days; compared with freeze commands at other "
                        "times / the remaining account-days. rate ratio = after / otherwise. The "
                        "same for challenges (step_up commands).",
    "precision": "share of alerts (or of commands of one action) whose time falls in an ato "
                 "incident of the same account (start_ts <= t <= end_ts).",
    "threshold curve": "for θ in 0..1: attack caught if a flagging decision on its account in "
                       "[start_ts, deadline] has risk >= θ; legitimate account flagged if any "
                       "flagging decision on it has risk >= θ. The operating point is the actual "
                       "freezes/closes: stopped-before-loss share vs share of legitimate accounts "
                       "ever frozen or closed.",
}
