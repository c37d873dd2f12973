"""Helpers for tests that read as tables: records through the engine, and records through the
closed loop (``atoguard replay --respond``) with the people given as a
:class:`simulator.people.People`."""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, Iterator

import orjson

from detectors.config import Config
from detectors.events import to_dict
from detectors.outputs import Output
from simulator.people import People

__all__ = ["labels_of", "run_records", "transcript_of"]


def run_records(engine, records: Iterable, states: dict) -> Iterator[Output]:
    """``records`` in order through :meth:`Engine.process`, the accounts' states in ``states``;
    yields the outputs."""
    for record in records:
        result = engine.process(record, states.get(record.account_id))
        if result.state is not None:
            states[record.account_id] = result.state
        yield from result.outputs


def labels_of(people: People) -> list[dict]:
    """The labels file that :func:`simulator.people.load_people` reads back as ``people``."""
    lines: list[dict] = []
    by_attack: dict[int, list[str]] = {}
    for eid, i in people.attacker_of.items():
        by_attack.setdefault(i, []).append(eid)
    for i, passes in enumerate(people.attacker_passes):
        lines.append({"account_id": "a1", "scenario": "test", "label": "ato", "start_ts": 0, "end_ts": 0,
                      "first_loss_ts": None, "event_ids": sorted(by_attack.get(i, ())),
                      "attacker_passes": sorted(passes)})
    for account, methods in people.enrolled.items():
        lines.append({"account_id": account, "label": "enrolled", "methods": sorted(methods)})
    for account, situations in people.situations.items():
        for start, end, can in situations:
            lines.append({"account_id": account, "scenario": "test", "label": "legit", "start_ts": start,
                          "end_ts": end, "first_loss_ts": None, "event_ids": [], "holder_passes": sorted(can)})
    return lines


def transcript_of(records: Iterable, people: People, cfg: Config) -> list[dict]:
    """The closed-loop transcript of ``records`` (contract records) with ``people``."""
    from streams.replay import replay_file

    with tempfile.TemporaryDirectory() as tmp:
        ev, lab, out = (os.path.join(tmp, n) for n in ("ev.jsonl", "lab.jsonl", "out.jsonl"))
        with open(ev, "wb") as fh:
            for r in records:
                fh.write(orjson.dumps({"topic": r.topic, "value": to_dict(r)}) + b"\n")
        with open(lab, "wb") as fh:
            for line in labels_of(people):
                fh.write(orjson.dumps(line) + b"\n")
        replay_file(ev, out, cfg, respond=lab)
        with open(out, "rb") as fh:
            return [orjson.loads(line) for line in fh if line.strip()]
