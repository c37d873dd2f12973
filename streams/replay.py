"""``atoguard replay``: the stream worker's driver over a JSON Lines file, no broker.

A line of the file is a message: its topic is the line's ``topic``, its key the value's
``account_id``, its partition ``murmur2(key) mod N`` (``--partitions N``, the deployment's
partition count, 6 by default) and its offset the 0-based line number; file order is the order of
arrival. Replay then does what a worker that finds all these messages on the broker does
(``docs/determinism.md``): every partition takes its messages in ``(ts, id)`` order across the
heads of its topics (:func:`streams.driver.order_key`), through the same
:class:`streams.driver.Task` (decode, key, partition, late, duplicate, facts, engine), with the
cross-account facts computed by a facts stage of its own from the same messages as of each
event's bound. The same file and configuration give byte-identical output.

With ``--respond LABELS`` the replay is closed-loop (contract v2/v3, "Closed-loop replay"): the
account service and the people answer each challenge (:mod:`streams.respond`), the answers are
merged into their partition in ``(ts, id)`` order, refused attackers' events are withheld, and
OUT is the transcript: every input fed as an input line followed by its outputs, and a
``withheld`` line per withheld event.
"""

from __future__ import annotations

import heapq
import mmap
import os
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator

import msgspec
import orjson

from detectors import contract as c
from detectors.config import Config
from detectors.engine import dead_letter_output
from detectors.events import DeadLetter
from detectors.outputs import Output
from detectors.sharding import shard_of
from streams.driver import NO_ORDER, Driver, Task, order_key, updates_of

__all__ = ["ReplaySummary", "replay_file", "output_line", "INPUTS", "DEFAULT_PARTITIONS"]

#: the topics a replay takes as input (contract v3: partners' signals included)
INPUTS = (*c.INPUT_TOPICS, c.SIGNALS) if c.SIGNALS not in c.INPUT_TOPICS else c.INPUT_TOPICS
#: lines of these topics are outputs of an earlier run (a transcript): not inputs
SKIPPED = frozenset({*c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS_OUT, "withheld"})
DEFAULT_PARTITIONS = 6


@dataclass
class ReplaySummary:
    lines: int = 0
    events: int = 0
    verdicts: int = 0
    duplicates: int = 0
    late: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    commands: Counter = field(default_factory=Counter)
    alerts: int = 0
    decisions: int = 0
    accounts: int = 0
    partitions: int = 1
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
            ("decisions", f"{self.decisions:,}"),
            ("accounts", f"{self.accounts:,} in {self.partitions} partitions"),
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


# -- the file as messages ------------------------------------------------------------------------

class _Line(msgspec.Struct, gc=False):
    topic: Any = None
    value: msgspec.Raw = msgspec.Raw(b"")
    raw: Any = None


class _Account(msgspec.Struct, gc=False):
    account_id: Any = None


_line = msgspec.json.Decoder(_Line)
_account = msgspec.json.Decoder(_Account)


def _message(line: bytes) -> tuple[str, bytes, bytes | None] | str | None:
    """``(topic, value bytes, key)`` of a line; None for a line to skip; a dead-letter reason
    for a line that is not a message."""
    try:
        msg = _line.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return c.NOT_JSON
    topic = msg.topic
    if type(topic) is not str or (not msg.value and msg.raw is None):
        return c.NOT_OBJECT
    if topic in SKIPPED:
        return None
    if msg.raw is not None:
        value = msg.raw.encode("utf-8") if type(msg.raw) is str else orjson.dumps(msg.raw)
    else:
        value = bytes(msg.value)
    try:
        account = _account.decode(value).account_id
    except (msgspec.DecodeError, UnicodeDecodeError):
        account = None
    return topic, value, account.encode("utf-8") if type(account) is str else None


class _File:
    """The input file, memory-mapped, indexed by (topic, partition): line numbers and spans."""

    def __init__(self, fh: IO[bytes], partitions: int, on_bad: Callable[[int, bytes, str], None]) -> None:
        self.mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(fh.fileno()).st_size else b""
        self.topics: list[str] = []
        self.index: dict[tuple[str, int], tuple[array, array, array]] = {}
        self.lines = 0
        mm, start, n = self.mm, 0, len(self.mm)
        while start < n:
            end = mm.find(b"\n", start)
            end = n if end < 0 else end
            line = mm[start:end]
            if line.strip():
                got = _message(line)
                if type(got) is str:
                    on_bad(self.lines, line, got)
                elif got is not None:
                    topic, _, key = got
                    p = shard_of(key.decode("utf-8"), partitions) if key else 0
                    slot = self.index.get((topic, p))
                    if slot is None:
                        if topic not in self.topics:
                            self.topics.append(topic)
                        slot = self.index[(topic, p)] = (array("q"), array("q"), array("q"))
                    slot[0].append(self.lines)
                    slot[1].append(start)
                    slot[2].append(end)
            self.lines += 1
            start = end + 1

    def messages(self, partition: int) -> Iterator[tuple[tuple[int, bytes], int, str, int, bytes, bytes | None]]:
        """The partition's messages, merged by ``(ts, id)`` across the heads of its topics
        (ties: topic order, then offset): ``(order key, topic rank, topic, offset, value, key)``."""
        rank = {t: i for i, t in enumerate(_topic_order(self.topics))}
        heads: list = []
        cursors = {}
        for topic in rank:
            slot = self.index.get((topic, partition))
            if slot is not None:
                cursors[topic] = [slot, 0]
                heads.append(self._head(topic, rank[topic], cursors[topic]))
        heads = [h for h in heads if h is not None]
        heapq.heapify(heads)
        while heads:
            item = heapq.heappop(heads)
            yield item
            topic = item[2]
            nxt = self._head(topic, item[1], cursors[topic])
            if nxt is not None:
                heapq.heappush(heads, nxt)

    def _head(self, topic: str, rank: int, cursor: list):
        slot, i = cursor
        if i >= len(slot[0]):
            return None
        cursor[1] = i + 1
        got = _message(self.mm[slot[1][i]:slot[2][i]])
        _, value, key = got
        return order_key(value, topic == c.VERDICTS), rank, topic, slot[0][i], value, key


def _topic_order(topics: list[str]) -> list[str]:
    """Inputs in the contract's order (the tie rule of every runtime), then any other topic."""
    return [t for t in INPUTS if t in topics] + sorted(t for t in topics if t not in INPUTS)


# -- the run ---------------------------------------------------------------------------------------

class _Partition:
    """One partition's account stage: its merged messages, and injected answers (closed loop)."""

    def __init__(self, task: Task, messages: Iterator) -> None:
        self.task = task
        self.messages = messages
        self.next = next(messages, None)
        self.answers: list = []  # heap of (order key, seq, topic, value, key, who)

    def head(self) -> tuple[int, bytes] | None:
        a = self.answers[0][0] if self.answers else None
        m = self.next[0] if self.next is not None else None
        if a is None:
            return m
        return a if m is None or a < m else m

    def pop(self) -> tuple:
        if self.answers and (self.next is None or self.answers[0][0] < self.next[0]):
            key, _, topic, value, acct, who = heapq.heappop(self.answers)
            return key, topic, None, value, acct, who
        item = self.next
        self.next = next(self.messages, None)
        return item[0], item[2], item[3], item[4], item[5], None


class _FactsStage:
    """Replay's facts stage: per partition, the same admitted messages feed the facts table, as
    far as the account stage needs them (every partition's watermark past the bound)."""

    def __init__(self, file: _File, driver: Driver) -> None:
        self.driver = driver
        self.facts = Driver(driver.cfg, driver.partitions, engine=False)
        self.facts.facts = driver.facts  # one table: the account stage reads what this stage writes
        self.streams = {p: file.messages(p) for p in range(driver.partitions)}
        self.tasks = {p: self.facts.task(p) for p in self.streams}

    def ensure(self, bound: int) -> None:
        """Admit messages until every partition's watermark reaches the bound (or its end)."""
        limit = bound * self.driver.facts_settings.bucket_ms
        table = self.driver.facts
        for p in list(self.streams):
            task, stream = self.tasks[p], self.streams[p]
            while (wm := task.watermark()) is None or wm < limit:
                item = next(stream, None)
                if item is None:
                    del self.streams[p]
                    break
                for u in updates_of(task.admit(item[2], item[4], item[5], item[3])):
                    table.add(u)


def replay_file(in_path: str | os.PathLike, out_path: str | os.PathLike, config: Config | None = None,
                progress: bool = False, respond: str | os.PathLike | None = None,
                partitions: int = DEFAULT_PARTITIONS) -> ReplaySummary:
    """Replay ``in_path`` into ``out_path``; returns the summary. With ``respond`` (a labels
    file) the replay is closed-loop and ``out_path`` its transcript."""
    cfg = config or Config()
    driver = Driver(cfg, partitions)
    summary = ReplaySummary(partitions=partitions)
    start = time.perf_counter()
    people = None
    if respond is not None:
        from streams.respond import load_people
        people = load_people(str(respond))
    with open(in_path, "rb") as fh, open(out_path, "wb") as out:
        buffer: list[bytes] = []

        def bad(line_no: int, line: bytes, reason: str) -> None:
            letter = DeadLetter("", None, line_no, None, line, reason,
                                'a line must be {"topic": ..., "value": {...}} or {"topic": ..., "raw": "..."}'
                                if reason == c.NOT_OBJECT else "the line is not JSON")
            driver.counts.dead_letters[reason] = driver.counts.dead_letters.get(reason, 0) + 1
            buffer.append(output_line(dead_letter_output(letter, None)))

        file = _File(fh, partitions, bad)
        summary.lines = file.lines
        loop = _ClosedLoop(people, driver) if people is not None else None
        for chunk in _run(file, driver, loop, progress):
            buffer.extend(chunk)
            if len(buffer) >= 1024:
                out.writelines(buffer)
                buffer.clear()
        out.writelines(buffer)
        if loop is not None:
            summary.answers, summary.withheld = loop.answers, loop.withheld
    counts = driver.counts
    summary.events, summary.verdicts, summary.duplicates = counts.events, counts.verdicts, counts.duplicates
    summary.late, summary.alerts, summary.decisions = counts.late, counts.alerts, counts.decisions
    summary.dead_letters.update(counts.dead_letters)
    summary.commands.update(counts.commands)
    summary.accounts = sum(1 for task in driver.tasks.values() for (_, name) in task.store.accounts if name == b"p")
    summary.seconds = time.perf_counter() - start
    return summary


def _run(file: _File, driver: Driver, loop: "_ClosedLoop | None", progress: bool) -> Iterator[list[bytes]]:
    """The account stages of all partitions, the earliest head first (any order would give the
    same decisions; this one keeps the facts stage's memory small)."""
    facts = _FactsStage(file, driver)
    parts = {p: _Partition(driver.task(p), file.messages(p)) for p in range(driver.partitions)}
    heap = [(h, p) for p, part in parts.items() if (h := part.head()) is not None]
    heapq.heapify(heap)
    settings = driver.facts_settings
    bar = _progress(file.lines, progress)
    done = 0
    while heap:
        _, p = heapq.heappop(heap)
        part = parts[p]
        key, topic, offset, value, acct, who = part.pop()
        if key is not NO_ORDER and key[0] != NO_ORDER[0]:
            facts.ensure(settings.bound(key[0]))
        chunk: list[bytes] = []
        if loop is not None:
            if loop.withholds(value, who):
                chunk.append(loop.withheld_line(value))
            else:
                outputs = part.task.process(topic, value, acct, offset)
                chunk.append(orjson.dumps({"topic": topic, "value": orjson.loads(value)}) + b"\n"
                             if _is_object(value) else orjson.dumps({"topic": topic, "raw": value.decode("utf-8", "replace")}) + b"\n")
                chunk.extend(output_line(o) for o in outputs)
                loop.after(part, topic, value, outputs, who)
        else:
            outputs = part.task.process(topic, value, acct, offset)
            chunk.extend(output_line(o) for o in outputs)
        yield chunk
        h = part.head()
        if h is not None:
            heapq.heappush(heap, (h, p))
        done += 1
        if done % 8192 == 0:
            driver.checkpoint()
            _evict(driver, parts)
            if bar is not None:
                bar.update(8192)
    driver.checkpoint()
    if bar is not None:
        bar.close()


def _is_object(value: bytes) -> bool:
    try:
        return type(orjson.loads(value)) is dict
    except orjson.JSONDecodeError:
        return False


def _evict(driver: Driver, parts: dict[int, _Partition]) -> None:
    """Forget facts no partition can ask for any more (each takes nothing below its watermark)."""
    marks = [part.task.watermark() for part in parts.values() if part.head() is not None]
    marks = [m for m in marks if m is not None]
    if marks:
        driver.facts.evict(driver.facts_settings.bound(min(marks)))


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="line", unit_scale=True, desc="replay", file=sys.stderr, mininterval=0.5)


class _ClosedLoop:
    """The account service and the people, played from the labels (:mod:`streams.respond`)."""

    def __init__(self, people, driver: Driver) -> None:
        from streams.respond import Respondent
        self.people = people
        self.driver = driver
        self.refused: set[int] = set()
        self.answers = 0
        self.withheld = 0
        self.seq = 0
        self._respondent = Respondent

    def withholds(self, value: bytes, who) -> bool:
        if who is not None:
            return False
        try:
            eid = orjson.loads(value).get("event_id")
        except (orjson.JSONDecodeError, AttributeError):
            return False
        attack = self.people.attacker_of.get(eid) if type(eid) is str else None
        if attack is not None and attack in self.refused:
            self.withheld += 1
            return True
        return False

    @staticmethod
    def withheld_line(value: bytes) -> bytes:
        return orjson.dumps({"topic": "withheld", "value": {"event_id": orjson.loads(value)["event_id"]}}) + b"\n"

    def after(self, part: _Partition, topic: str, value: bytes, outputs, who) -> None:
        from streams.respond import respond_to
        if who is not None:
            self.answers += 1
        try:
            trigger = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if type(trigger) is not dict:
            return
        for o in outputs:
            if o.topic != c.COMMANDS:
                continue
            cmd = o.value
            person = who if who is not None else self._respondent(self.people.attacker_of.get(cmd["trigger_event_id"]))
            refuse, answer = respond_to(cmd, person, trigger, self.people)
            if refuse:
                self.refused.add(person.incident)
            if answer is None:
                continue
            raw = orjson.dumps(answer)
            self.seq += 1
            heapq.heappush(part.answers, (order_key(raw), self.seq, c.DEVICE, raw,
                                          answer["account_id"].encode("utf-8"), person))
