"""Closed-loop replay (contract v2, "Closed-loop replay"): ``atoguard replay --respond LABELS``.

Replays a file and also plays the account service and the people behind the accounts, from the
ground-truth labels:

* **who is acting** - the person of a command is the person whose event triggered it: the
  attacker of the ``ato`` incident whose ``event_ids`` hold the trigger, the holder otherwise; for
  a command triggered by an injected answer, the person who gave that answer;
* **the answer** - 30 s of event time after a ``step_up``, 10 min after a ``freeze`` with a way
  back, that person answers the offered method (the first listed one the account has enrolled):
  ``challenge_passed`` when they pass it, ``challenge_failed`` otherwise (``wrong_code``, or
  ``not_enrolled`` when no listed method is enrolled), as event ``ch-<command_id>`` with the
  device, address and session of the trigger event; ``dry_run`` commands get no answer;
* **order** - answers are merged into the file by ``ts``: fed before the first file line with a
  larger ``ts``, after file lines with the same ``ts``; the rest in ``ts`` order at the end;
* **refusals** - once the attacker is challenged with a method they will fail, frozen with no
  way back they pass, or the account is closed, the incident's later attacker events are
  withheld (the account service refused them); a holder's events never are;
* **the transcript** - OUT holds every event fed (file lines and answers) as an input line, then
  the outputs it caused, and ``{"topic": "withheld", "value": {"event_id": ...}}`` per withheld
  event. Replaying the input lines of OUT with plain ``atoguard replay`` gives the same commands.

Who passes what: an attacker passes the incident's ``attacker_passes``; a holder passes the
account's enrolled methods (all, without an enrolment line), narrowed by ``holder_passes``
inside a labelled ``legit`` situation (``start_ts`` to ``end_ts``), also while an attack on the
account is going on.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

import orjson

from detectors import contract as c
from detectors.engine import Engine

from detectors.profile import Profile

__all__ = ["People", "Respondent", "closed_loop", "load_people", "respond_to"]

STEP_UP_ANSWER_MS = 30_000
FREEZE_ANSWER_MS = 10 * 60_000
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

    def offered(self, account: str, methods: list[str]) -> str | None:
        """The method the account service offers: the first listed one the account enrolled."""
        have = self.enrolled.get(account, ALL_METHODS)
        return next((m for m in methods if m in have), None)

    def passes(self, who: Respondent, account: str, method: str | None, ts: int) -> bool:
        if method is None:
            return False
        if who.incident is not None:
            return method in self.attacker_passes[who.incident]
        if method not in self.enrolled.get(account, ALL_METHODS):
            return False
        return all(method in can for start, end, can in self.situations.get(account, ()) if start <= ts <= end)


def load_people(path: str) -> People:
    """Read a labels file (contract "Ground-truth labels" and "Labels (v2)")."""
    people = People()
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            obj = orjson.loads(line)
            label = obj.get("label")
            if label == "enrolled":
                people.enrolled[obj["account_id"]] = frozenset(obj.get("methods") or ())
            elif label == "ato":
                people.add_attack(obj.get("event_ids") or (), obj.get("attacker_passes") or ())
            elif label == "legit" and obj.get("holder_passes") is not None:
                people.add_situation(obj["account_id"], obj["start_ts"], obj["end_ts"], obj["holder_passes"])
    return people


def _answer(cmd: dict, trigger: dict, offered: str | None, passed: bool, ts: int) -> dict:
    value = {"event_id": ANSWER_PREFIX + cmd["command_id"], "account_id": cmd["account_id"], "ts": ts,
             "kind": c.CHALLENGE_PASSED if passed else c.CHALLENGE_FAILED,
             "method": offered or cmd["methods"][0], "command_id": cmd["command_id"]}
    if not passed:
        value["reason"] = "wrong_code" if offered else "not_enrolled"
    for name in ("device_id", "ip", "session_id"):
        if trigger.get(name) is not None:
            value[name] = trigger[name]
    return value


def respond_to(cmd: dict, person: Respondent, trigger: dict, people: People) -> tuple[bool, dict | None]:
    """What the account service and ``person`` do with one command (the rules above): whether
    the person's attack is refused from now on (an attacker challenged with a method they fail,
    frozen with no way back they pass, or closed), and the answer event, with its ``ts``
    (None: no answer - a dry run, no methods, or neither a step_up nor a freeze). ``trigger``
    is the value of the event that triggered the command (its device, address and session)."""
    if cmd["dry_run"]:
        return False, None  # shadow mode: the account service records it and does nothing
    methods = cmd.get("methods")
    offered = people.offered(cmd["account_id"], methods) if methods else None
    refuse = person.incident is not None and (cmd["action"] == c.CLOSE or (
        cmd["action"] in (c.STEP_UP, c.FREEZE)
        and not people.passes(person, cmd["account_id"], offered, cmd["issued_at"])))
    if not methods or cmd["action"] not in (c.STEP_UP, c.FREEZE):
        return refuse, None
    at = cmd["issued_at"] + (STEP_UP_ANSWER_MS if cmd["action"] == c.STEP_UP else FREEZE_ANSWER_MS)
    passed = people.passes(person, cmd["account_id"], offered, at)
    return refuse, _answer(cmd, trigger, offered, passed, at)


def closed_loop(lines: Iterator[bytes], engine: Engine, people: People, out: IO[bytes],
                states: dict[str, Profile] | None = None) -> dict:
    """Run the closed loop over contract ``lines`` and write the transcript to ``out``; returns
    counts (lines, answers, withheld, outputs)."""
    from streams.replay import output_line, replay_lines  # the plain replay decodes the lines

    states = states if states is not None else {}
    pending: list[tuple[int, int, bytes, dict, Respondent]] = []  # (ts, seq, line, value, person)
    person_of: dict[str, Respondent] = {}  # event id of an injected answer -> who gave it
    refused: set[int] = set()  # attacks whose later events are withheld
    counts = {"lines": 0, "answers": 0, "withheld": 0, "outputs": 0, "commands": Counter()}
    seq = 0

    def feed(raw: bytes, value: dict | None, who: Respondent | None) -> None:
        nonlocal seq
        out.write(raw if raw.endswith(b"\n") else raw + b"\n")
        trigger = value or {}
        for o in replay_lines(iter((raw,)), engine, states):
            out.write(output_line(o))
            counts["outputs"] += 1
            if o.topic != c.COMMANDS:
                continue
            cmd = o.value
            counts["commands"][cmd["action"]] += 1
            person = who if who is not None else Respondent(people.attacker_of.get(cmd["trigger_event_id"]))
            refuse, answer = respond_to(cmd, person, trigger, people)
            if refuse:
                refused.add(person.incident)
            if answer is None:
                continue
            person_of[answer["event_id"]] = person
            line = orjson.dumps({"topic": c.DEVICE, "value": answer})
            seq += 1
            heapq.heappush(pending, (answer["ts"], seq, line, answer, person))

    def feed_answers(before: int | None) -> None:
        while pending and (before is None or pending[0][0] < before):
            _, _, line, answer, person = heapq.heappop(pending)
            counts["answers"] += 1
            feed(line, answer, person)

    for raw in lines:
        if not raw.strip():
            continue
        counts["lines"] += 1
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = None
        value = msg.get("value") if type(msg) is dict else None
        value = value if type(value) is dict else None
        ts = value.get("ts") if value is not None else None
        if pending and type(ts) is int:
            feed_answers(ts)
        eid = value.get("event_id") if value is not None else None
        attack = people.attacker_of.get(eid) if type(eid) is str else None
        if attack is not None and attack in refused:
            out.write(orjson.dumps({"topic": "withheld", "value": {"event_id": eid}}) + b"\n")
            counts["withheld"] += 1
            continue
        feed(raw, value, None)
    feed_answers(None)
    return counts



