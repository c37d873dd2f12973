"""The people behind the accounts and the account service's rules (contract v3, "Closed-loop
replay"), played from the ground-truth labels. One model, used by the offline closed loop
(``atoguard replay --respond``, :mod:`streams.replay`) and by the live account service
(:mod:`simulator.account_service`); only the Kafka transport differs.

* **Who acts.** The person of a command is the person whose event triggered it: the attacker
  of the ``ato`` incident whose ``event_ids`` hold the trigger, the holder otherwise; for a
  command triggered by an injected answer, the person who gave that answer.
* **What they pass.** An attacker passes the incident's ``attacker_passes`` (``id_check`` only
  where the label names it). A holder passes the account's enrolled methods (all, without an
  enrolment line), narrowed by ``holder_passes`` inside a labelled ``legit`` situation, and
  always ``id_check``. Every account has ``id_check`` enrolled.
* **The answer.** The person uses the first listed method the account enrolled and the person
  passes: ``challenge_passed`` with it; where there is none, ``challenge_failed`` with the first
  listed enrolled method (``wrong_code``), or ``not_enrolled`` when no listed method is
  enrolled. It comes 30 s after a ``step_up``, 10 min after a ``freeze`` with a way back, and
  2 h after either when the method used is ``id_check``; as event ``ch-<command_id>`` with the
  trigger's device, address and session. ``dry_run`` commands get no answer.
* **Refusals.** When none of the listed enrolled methods is one the attacker passes (a freeze
  with no way back included), or the account is closed, the attacker's later events are
  refused (withheld). A holder's events never are.
* **Holding payouts.** The account service holds a decided event until its decision; a ``hold``
  until its resolution or its ``expires_at`` (then it refuses it); a ``dry_run`` decision counts
  as ``allow`` (:func:`payout_outcome`).

>>> people = People()
>>> thief = Respondent(people.add_attack(["e1"], ["sms_otp"]))
>>> cmd = {"command_id": "c1", "account_id": "a1", "action": "step_up", "dry_run": False,
...        "issued_at": 0, "methods": ["face", "sms_otp", "id_check"]}
>>> refuse, answer = respond_to(cmd, thief, {}, people)
>>> refuse, answer["kind"], answer["method"], answer["ts"]
(False, 'challenge_passed', 'sms_otp', 30000)
>>> respond_to(cmd, HOLDER, {}, people)[1]["method"]
'face'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import orjson

from detectors import contract as c

__all__ = ["ALL_METHODS", "ANSWER_PREFIX", "FREEZE_ANSWER_MS", "HOLDER", "ID_CHECK_ANSWER_MS", "People",
           "Respondent", "STEP_UP_ANSWER_MS", "load_people", "payout_outcome", "respond_to"]

STEP_UP_ANSWER_MS = 30_000
FREEZE_ANSWER_MS = 10 * 60_000
#: an identity re-check takes time: its answer comes this long after the command
ID_CHECK_ANSWER_MS = 2 * 3_600_000
#: what an account without an enrolment line has (v2's methods; ``id_check`` everyone has)
ALL_METHODS = frozenset(c.METHODS)
ANSWER_PREFIX = "ch-"


@dataclass(frozen=True, slots=True)
class Respondent:
    """The person a command addresses: ``incident`` is the index of the attack whose attacker
    acts, or None for the holder."""

    incident: int | None


HOLDER = Respondent(None)


class People:
    """The people of a labels file: attackers by event, what each passes, what accounts enrolled."""

    def __init__(self) -> None:
        self.attacker_of: dict[str, int] = {}  # event id -> attack index
        self.attacker_passes: list[frozenset[str]] = []
        self.enrolled: dict[str, frozenset[str]] = {}
        self.situations: dict[str, list[tuple[int, int, frozenset[str]]]] = {}

    def add_attack(self, event_ids: Iterable[str], passes: Iterable[str]) -> int:
        index = len(self.attacker_passes)
        self.attacker_passes.append(frozenset(passes))
        for eid in event_ids:
            self.attacker_of.setdefault(eid, index)
        return index

    def add_situation(self, account: str, start: int, end: int, holder_passes: Iterable[str]) -> None:
        self.situations.setdefault(account, []).append((start, end, frozenset(holder_passes)))

    def has(self, account: str) -> frozenset[str]:
        """The methods the account enrolled, ``id_check`` always among them (v3)."""
        return self.enrolled.get(account, ALL_METHODS) | {c.ID_CHECK}

    def listed_enrolled(self, account: str, methods: Iterable[str]) -> list[str]:
        """The listed methods the account enrolled, in the command's order."""
        have = self.has(account)
        return [m for m in methods if m in have]

    def offered(self, account: str, methods: list[str]) -> str | None:
        """The first listed method the account enrolled (v2's offered method)."""
        return next(iter(self.listed_enrolled(account, methods)), None)

    def passes(self, who: Respondent, account: str, method: str | None, ts: int) -> bool:
        """Whether ``who`` passes ``method`` at ``ts`` (the rules of the module docstring)."""
        if method is None:
            return False
        if who.incident is not None:
            return method in self.attacker_passes[who.incident]
        if method == c.ID_CHECK:
            return True
        if method not in self.enrolled.get(account, ALL_METHODS):
            return False
        return all(method in can for start, end, can in self.situations.get(account, ()) if start <= ts <= end)

    def choice(self, who: Respondent, account: str, methods: list[str], ts: int) -> tuple[str | None, bool]:
        """The method ``who`` answers with and whether they pass: the first listed enrolled one
        they pass, else the first listed enrolled one (failed), else None (nothing enrolled)."""
        listed = self.listed_enrolled(account, methods)
        for m in listed:
            if self.passes(who, account, m, ts):
                return m, True
        return (listed[0] if listed else None), False


def load_people(path: str) -> People:
    """Read a labels file (contract "Ground-truth labels", "Labels (v2)" and "Labels (v3)")."""
    people = People()
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            obj = orjson.loads(line)
            label = obj.get("label")
            if label == c.ENROLLED:
                people.enrolled[obj["account_id"]] = frozenset(obj.get("methods") or ())
            elif label == "ato":
                people.add_attack(obj.get("event_ids") or (), obj.get("attacker_passes") or ())
            elif label == "legit" and obj.get("holder_passes") is not None:
                people.add_situation(obj["account_id"], obj["start_ts"], obj["end_ts"], obj["holder_passes"])
    return people


def _answer(cmd: dict, trigger: dict, method: str | None, passed: bool, ts: int) -> dict:
    value = {"event_id": ANSWER_PREFIX + cmd["command_id"], "account_id": cmd["account_id"], "ts": ts,
             "kind": c.CHALLENGE_PASSED if passed else c.CHALLENGE_FAILED,
             "method": method or cmd["methods"][0], "command_id": cmd["command_id"]}
    if not passed:
        value["reason"] = "wrong_code" if method else "not_enrolled"
    for name in ("device_id", "ip", "session_id"):
        if trigger.get(name) is not None:
            value[name] = trigger[name]
    return value


def respond_to(cmd: dict, person: Respondent, trigger: dict, people: People) -> tuple[bool, dict | None]:
    """What the account service and ``person`` do with one command (the rules above): whether
    the person's attack is refused from now on, and the answer event, with its ``ts`` (None: no
    answer - a dry run, no methods, or neither a step_up nor a freeze). ``trigger`` is the value
    of the event that triggered the command (its device, address and session). A command
    without ``id_check`` in its methods (v2) is answered by the same rule."""
    if cmd["dry_run"]:
        return False, None  # shadow mode: the account service records it and does nothing
    action, account, issued = cmd["action"], cmd["account_id"], cmd["issued_at"]
    methods = cmd.get("methods") or []
    attacker = person.incident is not None
    if action == c.CLOSE:
        return attacker, None
    if action not in c.METHOD_ACTIONS:
        return False, None
    refuse = attacker and not any(people.passes(person, account, m, issued)
                                  for m in people.listed_enrolled(account, methods))
    if not methods:
        return refuse, None
    delay = STEP_UP_ANSWER_MS if action == c.STEP_UP else FREEZE_ANSWER_MS
    method, passed = people.choice(person, account, methods, issued + delay)
    if method == c.ID_CHECK:
        delay = ID_CHECK_ANSWER_MS
    return refuse, _answer(cmd, trigger, method, passed, issued + delay)


def payout_outcome(decision: dict, resolution: dict | None, now: int) -> str:
    """What the account service does with a decided event at ``now``: ``go``, ``refused`` or
    ``held`` (a ``hold`` neither resolved nor past its ``expires_at``). A ``dry_run`` decision
    counts as ``allow``.

    >>> hold = {"decision": "hold", "dry_run": False, "expires_at": 100}
    >>> payout_outcome(hold, None, 50), payout_outcome(hold, None, 100), payout_outcome(hold, {"decision": "allow"}, 60)
    ('held', 'refused', 'go')
    """
    if decision["dry_run"]:
        return "go"
    if decision["decision"] == c.ALLOW:
        return "go"
    if decision["decision"] == c.DENY:
        return "refused"
    if resolution is not None:
        return "go" if resolution["decision"] == c.ALLOW else "refused"
    return "refused" if decision["expires_at"] is not None and now >= decision["expires_at"] else "held"
