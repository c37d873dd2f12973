"""``atoguard replay``: the stream worker's engine over a JSON Lines file, in file order, no broker.

The same file and configuration give byte-identical output: every id is derived from the input,
every time is event time, and the output is written in the order the engine produced it.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

import orjson

from detectors import contract as c
from detectors.config import Config
from detectors.engine import Engine
from detectors.profile import Profile
from detectors.events import BadInput, DeadLetter, parse_value
from detectors.outputs import Output

__all__ = ["ReplaySummary", "replay_file", "replay_lines", "output_line"]


@dataclass
class ReplaySummary:
    lines: int = 0
    events: int = 0
    verdicts: int = 0
    duplicates: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    commands: Counter = field(default_factory=Counter)
    alerts: int = 0
    accounts: int = 0
    seconds: float = 0.0
    answers: int = 0   # closed loop: challenge answers injected
    withheld: int = 0  # closed loop: attacker events refused by the account service

    def table(self) -> str:
        rate = self.lines / self.seconds if self.seconds else 0.0
        rows = [
            ("lines read", f"{self.lines:,}"), ("events", f"{self.events:,}"),
            ("verdicts", f"{self.verdicts:,}"), ("duplicates ignored", f"{self.duplicates:,}"),
            ("dead letters", f"{sum(self.dead_letters.values()):,}" + (
                " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letters.items())) + ")"
                if self.dead_letters else "")),
            ("alerts", f"{self.alerts:,}"),
            ("commands", ", ".join(f"{a} {self.commands.get(a, 0):,}" for a in c.ACTIONS)),
            ("accounts", f"{self.accounts:,}"),
            *((("answers injected", f"{self.answers:,}"), ("events withheld", f"{self.withheld:,}"))
              if self.answers or self.withheld else ()),
            ("time", f"{self.seconds:.1f} s ({rate:,.0f} lines/s, {1e6 / rate if rate else 0:.1f} µs/line)"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def output_line(out: Output) -> bytes:
    """One output as a contract JSON Lines record."""
    record: dict[str, Any] = {"topic": out.topic, "value": out.value}
    if out.headers:
        record["headers"] = {k: v.decode("utf-8") for k, v in out.headers}
    return orjson.dumps(record) + b"\n"


def _dead(topic: str, line_no: int, raw: bytes, reason: str, detail: str) -> Output:
    return Output(c.DEAD_LETTER, "", DeadLetter(topic, None, line_no, None, raw, reason, detail).to_dict())


def replay_lines(lines: Iterator[bytes], engine: Engine, states: dict[str, Profile] | None = None,
                 summary: ReplaySummary | None = None) -> Iterator[Output]:
    """Run contract lines through ``engine``, the accounts' states kept in ``states``; bad lines
    come out as dead letters (offset = the 0-based line number, partition null)."""
    states = states if states is not None else {}
    summary = summary if summary is not None else ReplaySummary()
    for n, line in enumerate(lines):
        summary.lines += 1
        if not line.strip():
            continue
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            summary.dead_letters[c.NOT_JSON] += 1
            yield _dead("", n, line.rstrip(b"\n"), c.NOT_JSON, "the line is not JSON")
            continue
        topic = msg.get("topic") if type(msg) is dict else None
        if type(topic) is not str or ("value" not in msg and "raw" not in msg):
            summary.dead_letters[c.NOT_OBJECT] += 1
            yield _dead(topic if type(topic) is str else "", n, line.rstrip(b"\n"), c.NOT_OBJECT,
                        'a line must be {"topic": ..., "value": {...}} or {"topic": ..., "raw": "..."}')
            continue
        if topic in c.OUTPUT_TOPICS:
            continue  # outputs of an earlier run in the same file are not inputs
        try:
            if "raw" in msg:
                raw = msg["raw"] if type(msg["raw"]) is str else orjson.dumps(msg["raw"]).decode()
                record = parse_value(topic, _loads_raw(raw))
            else:
                record = parse_value(topic, msg["value"])
        except BadInput as exc:
            raw_bytes = msg["raw"].encode("utf-8") if type(msg.get("raw")) is str else orjson.dumps(msg.get("value"))
            summary.dead_letters[exc.reason] += 1
            yield _dead(topic, n, raw_bytes, exc.reason, exc.detail)
            continue
        if topic == c.VERDICTS:
            summary.verdicts += 1
        else:
            summary.events += 1
        result = engine.process(record, states.get(record.account_id))
        if result.state is not None:
            states[record.account_id] = result.state
        elif result.duplicate:
            summary.duplicates += 1
        yield from result.outputs
    summary.accounts = len(states)


def _loads_raw(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadInput(c.NOT_JSON, "the raw message is not JSON") from None


def _lines_with_progress(fh: IO[bytes], total: int, enabled: bool) -> Iterator[bytes]:
    if not enabled:
        yield from fh
        return
    from tqdm import tqdm
    with tqdm(total=total, unit="B", unit_scale=True, desc="replay", file=sys.stderr, mininterval=0.5) as bar:
        done = 0
        for i, line in enumerate(fh):
            done += len(line)
            if i % 4096 == 0:
                bar.update(done)
                done = 0
            yield line
        bar.update(done)


def replay_file(in_path: str | os.PathLike, out_path: str | os.PathLike, config: Config | None = None,
                progress: bool = False, engine: Engine | None = None,
                respond: str | os.PathLike | None = None) -> ReplaySummary:
    """Replay ``in_path`` into ``out_path``; returns the summary. With ``respond`` (a labels
    file) the replay is closed-loop (:mod:`streams.respond`) and ``out_path`` its transcript."""
    engine = engine or Engine(config or Config())
    summary = ReplaySummary()
    states: dict[str, Profile] = {}
    start = time.perf_counter()
    with open(in_path, "rb") as fh, open(out_path, "wb") as out:
        total = os.fstat(fh.fileno()).st_size
        lines = _lines_with_progress(fh, total, progress)
        if respond is not None:
            from streams.respond import closed_loop, load_people
            counts = closed_loop(lines, engine, load_people(str(respond)), out, states)
            summary.lines, summary.answers, summary.withheld = counts["lines"], counts["answers"], counts["withheld"]
            summary.events = engine.counts["events"]
            summary.verdicts = engine.counts["verdicts"]
            summary.duplicates = engine.counts["duplicates"]
            summary.alerts = engine.counts["alerts"]
            summary.commands.update(counts["commands"])
            summary.accounts = len(states)
        else:
            buffer: list[bytes] = []
            for o in replay_lines(lines, engine, states, summary):
                if o.topic == c.COMMANDS:
                    summary.commands[o.value["action"]] += 1
                elif o.topic == c.ALERTS:
                    summary.alerts += 1
                buffer.append(output_line(o))
                if len(buffer) >= 1024:
                    out.writelines(buffer)
                    buffer.clear()
            out.writelines(buffer)
    summary.seconds = time.perf_counter() - start
    return summary
