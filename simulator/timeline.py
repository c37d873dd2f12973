"""The shared timeline: event emission, per-day buckets and ground-truth incidents.

Everything that produces events (normal life, benign situations, attacks) calls
:meth:`World.emit`. An event goes into the bucket of the simulated day its ``ts`` falls in; the
day loop sorts a bucket and writes it once the simulation reaches that day. Producers only ever
emit at or after the start of the day being generated, so the written file is in event-time
order.

Non-transaction events are serialised at once (to their file line) to keep a day's bucket small; money
events stay dicts until they are written, because ``balance_after`` (and the amount of an
attacker's "drain the account" transfer) can only be known in event-time order.
"""

from __future__ import annotations

import random
from collections import defaultdict

import orjson

from simulator import methods
from simulator.config import MONEY_KINDS

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

TOPICS = ("device", "location", "transaction")
DEVICE, LOCATION, TRANSACTION = 0, 1, 2
#: a file line is LINE_PREFIX[topic] + value JSON + LINE_SUFFIX
LINE_PREFIX = tuple(b'{"topic":"' + t.encode() + b'","value":' for t in TOPICS)
LINE_SUFFIX = b"}\n"


def line_of(topic: int, value: dict) -> bytes:
    """The JSON Lines line of one event (a fresh, exactly sized bytes object)."""
    return b"".join((LINE_PREFIX[topic], orjson.dumps(value), LINE_SUFFIX))


def value_of(topic: int, line: bytes) -> bytes:
    """The value JSON inside a line (what a Kafka message carries)."""
    return line[len(LINE_PREFIX[topic]) : -len(LINE_SUFFIX)]


def local_ts(day_start: int, tz_min: int, local_minute: float) -> int:
    """The instant within the UTC day ``day_start`` whose local clock shows ``local_minute``.

    >>> local_ts(0, 60, 9 * 60) // HOUR_MS   # 09:00 in UTC+1 is 08:00 UTC
    8
    """
    return day_start + int(((local_minute - tz_min) % 1440) * MINUTE_MS)


class Incident:
    """One labelled situation on one account; collects the events that make it up."""

    __slots__ = ("account", "scenario", "label", "day", "params", "events")

    def __init__(self, account: int, scenario: str, label: str, day: int, params: dict | None = None) -> None:
        self.account = account
        self.scenario = scenario
        self.label = label
        self.day = day  # the simulated day it starts on
        self.params = params or {}
        self.events: list[tuple[int, str, str]] = []  # (ts, event_id, kind)

    def record(self, ts: int, event_id: str, kind: str) -> None:
        self.events.append((ts, event_id, kind))

    def to_label(self, end_ms: int, account_id: str) -> dict | None:
        """The contract's label line, keeping only events inside the simulated span; with the v2
        fields ``attacker_passes`` (every ``ato``) or ``holder_passes`` (a ``legit`` situation that
        narrows what the holder can pass), see :mod:`simulator.methods`."""
        events = sorted((e for e in self.events if e[0] < end_ms), key=lambda e: e[0])
        if not events:
            return None
        first_loss = None
        if self.label == "ato":
            first_loss = next((ts for ts, _, kind in events if kind in MONEY_KINDS), None)
        label = {
            "account_id": account_id,
            "scenario": self.scenario,
            "label": self.label,
            "start_ts": events[0][0],
            "end_ts": events[-1][0],
            "first_loss_ts": first_loss,
            "event_ids": [e[1] for e in events],
        }
        if self.label == "ato":
            label["attacker_passes"] = methods.attacker_passes(self.scenario, self.params, (e[2] for e in events))
        else:
            holder = methods.holder_passes(self.scenario, self.params)
            if holder is not None:
                label["holder_passes"] = holder
        return label


class World:
    """Buckets of events by simulated day, plus the incidents being recorded."""

    def __init__(self, start_ms: int, days: int, late_share: float = 0.0, late_max_s: float = 0.0, seed: int = 0) -> None:
        self.start_ms = start_ms
        self.late_share = late_share
        self.late_max_ms = int(late_max_s * 1000)
        self._late = random.Random(f"late/{seed}")
        self.days = days
        self.end_ms = start_ms + days * DAY_MS
        #: day -> [(sort_key, topic, payload, persona)]: payload is the file line, or a dict for money events
        self.buckets: defaultdict[int, list] = defaultdict(list)
        self.incidents: list[Incident] = []
        self.floor_ms = start_ms  # nothing may be emitted before this (the current day's start)

    def emit(self, p, topic: int, ts: int, kind: str, fields: dict | None = None, incident: Incident | None = None) -> str:
        """Append one event of persona ``p``; returns its event id."""
        if ts < self.floor_ms:
            ts = self.floor_ms
        p.n += 1
        # opaque but unique per account: a bijection of the counter, so ids do not reveal the
        # order in which the simulator generated events (attacks are planned ahead)
        eid = f"{p.account_id}-{(p.n * 0x9E3779B1 + p.idx * 0x85EBCA6B) & 0xFFFFFFFF:08x}"
        value = {"event_id": eid, "account_id": p.account_id, "ts": ts, "kind": kind}
        if fields:
            value.update(fields)
        if topic == TRANSACTION:
            self.buckets[(ts - self.start_ms) // DAY_MS].append((ts, topic, value, p))
        else:
            key = ts
            if topic == LOCATION and self.late_share and self._late.random() < self.late_share:
                key = ts + 1 + int(self._late.random() * self.late_max_ms)  # delivered late
            self.buckets[(key - self.start_ms) // DAY_MS].append((key, topic, b"".join((LINE_PREFIX[topic], orjson.dumps(value), LINE_SUFFIX)), p))
        if incident is not None:
            incident.record(ts, eid, kind)
        return eid


__all__ = ["line_of", "value_of", "LINE_PREFIX", "local_ts", "DAY_MS", "HOUR_MS", "MINUTE_MS", "TOPICS", "DEVICE", "LOCATION", "TRANSACTION", "Incident", "World"]
