"""Streaming readers for the three files of an evaluation.

Every reader is a generator: it reads one line at a time, yields a small record and keeps
nothing, so a 2 GB events file costs no more memory than a small one. A tqdm progress bar (on
stderr) follows the bytes read when ``progress`` is true.

The outputs file may be a closed-loop transcript (contract v2): its input lines are counted as
``transcript_input`` and skipped (verdicts are kept), its ``withheld`` lines are counted and
collected; the labels file may hold enrolment lines (``enrolment``) and v2 fields.

Lines that are not usable are skipped and counted in the optional ``stats`` counter, never
fatal: blank lines, lines that are not JSON objects (``bad_json``), ``"raw"`` lines
(``raw``), dead letters (``dead_letter``), events the engine would dead-letter
(``invalid_event``, checked with the engine's own :func:`detectors.events.parse_value`),
verdicts (``verdict``: feedback, not account activity), malformed labels (``invalid_label``)
and malformed outputs (``invalid_output``).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
from tqdm import tqdm

from detectors import contract as c
from detectors.events import BadInput, parse_value

from .metrics import ALERT, Decision, Event, Incident, Verdict

#: The topic of a transcript line naming an event the account service refused (contract v2).
WITHHELD = "withheld"

__all__ = ["WITHHELD", "alert_account_id", "unreadable", "iter_decisions", "iter_events", "iter_incidents", "iter_messages"]

_CHUNK = 1 << 20  # update the progress bar once per MiB


def iter_messages(path: str | os.PathLike[str], *, stats: Counter[str] | None = None,
                  progress: bool = False, desc: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield each line of a JSON Lines file that is a JSON object, as a dict.

    Blank lines are skipped; lines that are not a JSON object are counted as ``bad_json``.
    """
    stats = Counter() if stats is None else stats
    size = os.path.getsize(path)
    with open(path, "rb") as fh, tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                      desc=desc or os.path.basename(os.fspath(path)),
                                      disable=not progress, file=sys.stderr, leave=False,
                                      delay=0.5) as bar:
        pending = 0
        for line in fh:
            pending += len(line)
            if pending >= _CHUNK:
                bar.update(pending)
                pending = 0
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                stats["bad_json"] += 1
                continue
            if type(obj) is not dict:
                stats["bad_json"] += 1
                continue
            yield obj
        bar.update(pending)


#: What a line of each file looks like, for the one-line error of :func:`unreadable`.
SHAPES = {
    "events": '{"topic": "device", "value": {"event_id": ..., "account_id": ..., "ts": ..., "kind": ...}}',
    "labels": '{"account_id": ..., "scenario": ..., "label": "ato" or "legit", "start_ts": ..., ...}',
    "out": '{"topic": "commands", "value": {...}} (or alerts, decisions, transcript lines)',
}
_OUT_TOPICS = frozenset({*c.INPUT_TOPICS, *c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS, c.SIGNALS_OUT, WITHHELD})


def _kind_of(obj: Any) -> str | None:
    """Which evaluation file a parsed line belongs to: ``events``, ``labels``, ``out`` or None."""
    if type(obj) is not dict:
        return None
    if "topic" in obj and ("value" in obj or "raw" in obj):
        return "events" if obj["topic"] in c.INPUT_TOPICS else ("out" if obj["topic"] in _OUT_TOPICS else None)
    if obj.get("label") in ("ato", "legit", c.ENROLLED) and "account_id" in obj:
        return "labels"
    return None


def unreadable(path: str | os.PathLike[str], kind: str, sample: int = 200) -> str | None:
    """Why ``path`` cannot be the evaluation's ``kind`` file (``events``, ``labels`` or ``out``),
    or None when it can: it is checked on its first ``sample`` non-blank lines, and refused when
    fewer than half of them are lines of that kind (a CSV, the events file given as labels).
    An empty file is readable (it holds nothing). The reason is one line, naming what the lines
    look like instead and what a line should look like.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "l.csv").write_text("account_id,label\\na1,ato\\n")
    >>> unreadable(d / "l.csv", "labels").split(":")[0]
    '2 of the first 2 lines are not labels'
    """
    seen = bad = 0
    looks: Counter[str] = Counter()
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                seen += 1
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    obj = None
                got = _kind_of(obj)
                ok = got == kind or (kind == "out" and got == "events")  # a transcript holds inputs
                if not ok:
                    bad += 1
                    looks["not JSON" if obj is None and line.strip()[:1] not in (b"{", b"[") else
                          "not a JSON object" if type(obj) is not dict else
                          f"lines of the {got} file" if got else "JSON objects of another shape"] += 1
                if seen >= sample:
                    break
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if seen and bad * 2 > seen:
        what = looks.most_common(1)[0][0]
        return (f"{bad} of the first {seen} lines are not {kind}: they are {what}; "
                f"a line of {kind} is {SHAPES[kind]}")
    return None


def _verdict(value: Any) -> Verdict | None:
    """The verdict of a ``verdicts`` value, or None when the engine would dead-letter it."""
    try:
        rec = parse_value(c.VERDICTS, value)
    except BadInput:
        return None
    return Verdict(rec.account_id, rec.ts, rec.label, rec.source)


def iter_events(path: str | os.PathLike[str], *, stats: Counter[str] | None = None,
                progress: bool = False, verdicts: list[Verdict] | None = None) -> Iterator[Event]:
    """Yield the valid events (topics device, location, transaction) of an events file.

    Verdicts are not events; when ``verdicts`` is a list, the valid ones are appended to it.
    """
    stats = Counter() if stats is None else stats
    for msg in iter_messages(path, stats=stats, progress=progress, desc="events"):
        topic = msg.get("topic")
        if "value" not in msg:
            stats["raw" if "raw" in msg else "bad_json"] += 1
            continue
        if topic == c.VERDICTS:
            stats["verdict"] += 1
            v = _verdict(msg["value"])
            if v is not None and verdicts is not None:
                verdicts.append(v)
            continue
        if topic not in c.EVENT_TOPICS:
            stats["unknown_topic"] += 1
            continue
        try:
            rec = parse_value(topic, msg["value"])
        except BadInput:
            stats["invalid_event"] += 1
            continue
        stats["event"] += 1
        yield Event(rec.event_id, rec.account_id, rec.ts, rec.kind, getattr(rec, "amount", None))


def _is_int(v: Any) -> bool:
    return type(v) is int or (type(v) is float and v.is_integer())


def _methods(v: Any) -> tuple[str, ...] | None:
    """A list of known challenge methods as a tuple; None when it is not one."""
    if type(v) is not list or not all(m in c.METHODS or m == c.ID_CHECK for m in v):
        return None
    return tuple(v)


def iter_incidents(path: str | os.PathLike[str], *, stats: Counter[str] | None = None,
                   progress: bool = False, enrolled: dict[str, frozenset[str]] | None = None) -> Iterator[Incident]:
    """Yield the incidents of a labels file (contract "Ground-truth labels", and "Labels (v2)").

    Required: ``account_id`` (string), ``scenario`` (string), ``label`` (``ato`` or ``legit``),
    ``start_ts`` and ``end_ts`` (integers); ``first_loss_ts`` is an integer or null/absent;
    ``event_ids`` a list of strings (absent: empty); optional (v2) ``attacker_passes`` and
    ``holder_passes``, lists of challenge methods. Other lines count as ``invalid_label``.

    Enrolment lines (``label`` ``enrolled``, ``methods``) are not incidents: they are counted as
    ``enrolment`` and, when ``enrolled`` is a dict, stored in it (account -> methods).
    """
    stats = Counter() if stats is None else stats
    for obj in iter_messages(path, stats=stats, progress=progress, desc="labels"):
        acc, scn, label = obj.get("account_id"), obj.get("scenario"), obj.get("label")
        if label == c.ENROLLED:
            methods = _methods(obj.get("methods"))
            if type(acc) is not str or not acc or methods is None:
                stats["invalid_label"] += 1
                continue
            stats["enrolment"] += 1
            if enrolled is not None:
                enrolled[acc] = frozenset(methods)
            continue
        start, end, loss = obj.get("start_ts"), obj.get("end_ts"), obj.get("first_loss_ts")
        ids = obj.get("event_ids") or []
        if (type(acc) is not str or not acc or type(scn) is not str or label not in ("ato", "legit")
                or not _is_int(start) or not _is_int(end) or not (loss is None or _is_int(loss))
                or type(ids) is not list or not all(type(e) is str for e in ids)):
            stats["invalid_label"] += 1
            continue
        attacker = _methods(obj["attacker_passes"]) if "attacker_passes" in obj else ()
        holder = _methods(obj["holder_passes"]) if "holder_passes" in obj else ()
        if attacker is None or holder is None:
            stats["invalid_label"] += 1
            continue
        stats["incident"] += 1
        if "attacker_passes" in obj or "holder_passes" in obj:
            stats["v2_fields"] += 1
        yield Incident(acc, scn, label, int(start), int(end), None if loss is None else int(loss),
                       tuple(ids), attacker if "attacker_passes" in obj else None,
                       holder if "holder_passes" in obj else None)


def alert_account_id(alert: dict[str, Any]) -> str | None:
    """The account an alert is about, or None.

    Accepts, in this order, the first non-empty string among: ``resources[0]["uid"]`` (the
    OCSF resource, as the contract asks), a top-level ``"account_id"``, and
    ``unmapped["account_id"]`` (what atoguard's engine also writes).

    >>> alert_account_id({"resources": [{"uid": "a1", "type": "account"}]})
    'a1'
    >>> alert_account_id({"unmapped": {"account_id": "a2"}}), alert_account_id({})
    ('a2', None)
    """
    res = alert.get("resources")
    if type(res) is list and res and type(res[0]) is dict:
        uid = res[0].get("uid")
        if type(uid) is str and uid:
            return uid
    acc = alert.get("account_id")
    if type(acc) is str and acc:
        return acc
    unmapped = alert.get("unmapped")
    if type(unmapped) is dict:
        acc = unmapped.get("account_id")
        if type(acc) is str and acc:
            return acc
    return None


def _risk(v: Any, scale: float) -> float | None:
    if type(v) not in (int, float):
        return None
    return min(max(v / scale, 0.0), 1.0)  # out-of-range risks are clipped, not dropped


def _str(v: Any) -> str | None:
    return v if type(v) is str and v else None


def iter_decisions(path: str | os.PathLike[str], *, stats: Counter[str] | None = None,
                   progress: bool = False, verdicts: list[Verdict] | None = None,
                   withheld: set[str] | None = None,
                   holds: dict[str, list] | None = None) -> Iterator[tuple[str, Decision]]:
    """Yield ``(account_id, Decision)`` for each command and alert of an outputs file.

    Commands need ``account_id``, ``action`` (one of the contract's) and an integer
    ``issued_at``; a missing ``risk`` reads as 0; ``command_id``, ``trigger_event_id``,
    ``methods`` (v2: a list of challenge methods, else None), ``expires_at`` and
    ``contract_version`` are kept. Alerts need an account (see :func:`alert_account_id`) and an
    integer ``time`` (ms); ``risk_score`` (0-100, missing: 0) becomes ``risk_score / 100``.
    Dead letters and ``raw`` lines are skipped.

    The file may be a closed-loop transcript (contract v2, ``replay --respond``): its input
    lines (topics device, location, transaction, verdicts; counted as ``transcript_input``) are
    skipped, except that valid verdicts are appended to ``verdicts`` when it is a list; its
    ``withheld`` lines are counted and their event ids added to ``withheld`` when it is a set.
    v3 ``decisions`` lines are counted; when ``holds`` is a dict it receives, per ``hold``,
    ``decision_id -> [account, ts, expires_at, ts of its resolution or None]``.
    """
    stats = Counter() if stats is None else stats
    for msg in iter_messages(path, stats=stats, progress=progress, desc="outputs"):
        topic, value = msg.get("topic"), msg.get("value")
        if topic == c.DEAD_LETTER:
            stats["dead_letter"] += 1
            continue
        if topic in c.INPUT_TOPICS:
            stats["transcript_input"] += 1
            if topic == c.VERDICTS and verdicts is not None:
                v = _verdict(value)
                if v is not None:
                    verdicts.append(v)
            continue
        if topic == WITHHELD:
            eid = value.get("event_id") if type(value) is dict else None
            if type(eid) is not str:
                stats["invalid_output"] += 1
                continue
            stats["withheld"] += 1
            if withheld is not None:
                withheld.add(eid)
            continue
        if type(value) is not dict:
            stats["raw" if "raw" in msg else "invalid_output"] += 1
            continue
        if topic == c.COMMANDS:
            acc, action, ts = value.get("account_id"), value.get("action"), value.get("issued_at")
            risk = _risk(value.get("risk", 0.0), 1.0)
            if type(acc) is not str or not acc or action not in c.ACTIONS or not _is_int(ts) or risk is None:
                stats["invalid_output"] += 1
                continue
            stats[f"command_{action}"] += 1
            methods = _methods(value.get("methods")) if action in (c.STEP_UP, c.FREEZE) else None
            expires = value.get("expires_at")
            version = value.get("contract_version")
            yield acc, Decision(int(ts), action, risk, _str(value.get("command_id")),
                                _str(value.get("trigger_event_id")), methods,
                                int(expires) if _is_int(expires) else None,
                                version if type(version) is int else None)
        elif topic == c.DECISIONS:
            stats[f"decision_{value.get('decision')}"] += 1
            if holds is not None:
                if value.get("decision") == c.HOLD and value.get("resolves") is None:
                    holds[value.get("decision_id")] = [value.get("account_id"), value.get("ts"),
                                                       value.get("expires_at"), None]
                elif value.get("resolves") in holds:
                    holds[value["resolves"]][3] = value.get("ts")
        elif topic == c.ALERTS:
            acc, ts = alert_account_id(value), value.get("time")
            risk = _risk(value.get("risk_score", 0), 100.0)
            if acc is None or not _is_int(ts) or risk is None:
                stats["invalid_output"] += 1
                continue
            stats["alert"] += 1
            yield acc, Decision(int(ts), ALERT, risk)
        else:
            stats["unknown_topic"] += 1
