"""Engine speed, stage by stage, over a contract JSON Lines file.

    python -m bench.engine_bench EVENTS.jsonl [--limit N] [--config FILE] [--engine python|native|both]

Prints events/s for the whole replay path (decode, engine, output encoding) and the µs per
event of each stage, measured by running the stages separately over the same events:

  decode     bytes -> validated record (the line split into topic and value bytes, then
             detectors.events.decode, as a stream worker decodes a message); for comparison,
             the replay's way (orjson, then detectors.events.parse_value on the dict)
  facts      cross-account facts: the event's source updates added to a FactsTable, then its
             facts as of ts - facts_delay (what the facts stage and the driver do per event)
  context    feature extraction (build_context)
  <detector> each detector's score()
  policy     fusion and the action ladder
  learn      detectors' learn() and the profile update (observe)
  profile    profile to_bytes + from_bytes (what the stream worker adds per event)

Also prints the distribution of the stored state per account (bytes of
detectors.profile.encode) after the replay. Compare figures within one run; the machines are noisy.

--engine picks the kernels (detectors.native: the Rust ones built from native/, or the Python
reference); ``both`` (the default when the native module is built) runs everything once per
engine and prints a column for each.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections import defaultdict

import msgspec
import orjson

from detectors.config import Config
from detectors import native
from detectors.engine import Engine
from detectors.facts import NO_FACTS, FactsTable, source_updates
from detectors.events import BadInput, decode, parse_value
from detectors.context import build_context
from detectors.update import observe
from detectors.policy import decide
from detectors.profile import Profile, encode as encode_profile
from detectors.registry import build_detectors
from streams.config import load_config
from streams.replay import output_line


INPUT_TOPICS = ("device", "location", "transaction", "verdicts")


class _Line(msgspec.Struct):
    """A contract JSON Lines record: the topic, and the message value's bytes as they are."""

    topic: str
    value: msgspec.Raw = msgspec.Raw(b"null")


_LINE = msgspec.json.Decoder(_Line)


def read_records(path: str, limit: int | None):
    """The records of the first ``limit`` lines, and the seconds (wall clock, CPU) per line to decode them: the
    line's topic and value bytes split apart, then the value decoded by
    :func:`detectors.events.decode` (what a stream worker does with a message's bytes)."""
    with open(path, "rb") as fh:
        lines = list(itertools.islice(fh, limit))
    records = []
    t, cpu = time.perf_counter(), time.process_time()
    for line in lines:
        msg = _LINE.decode(line)
        if msg.topic not in INPUT_TOPICS:
            continue
        try:
            records.append(decode(msg.topic, bytes(msg.value)))
        except BadInput:
            pass
    n = max(1, len(lines))
    return records, (time.perf_counter() - t) / n, (time.process_time() - cpu) / n


def read_records_by_dict(lines: list[bytes]) -> float:
    """Seconds per line of the replay's way (orjson, then parse_value on the dict), for comparison."""
    t = time.perf_counter()
    for line in lines:
        msg = orjson.loads(line)
        if "value" in msg and msg["topic"] in INPUT_TOPICS:
            try:
                parse_value(msg["topic"], msg["value"])
            except BadInput:
                pass
    return (time.perf_counter() - t) / max(1, len(lines))


def state_sizes(states: dict[str, Profile]) -> tuple[int, int, int, int]:
    """p50, p99 and max of the stored state's bytes per account (detectors.profile.encode), and
    the number of accounts."""
    sizes = sorted(len(encode_profile(p)) for p in states.values())
    if not sizes:
        return 0, 0, 0, 0
    return sizes[len(sizes) // 2], sizes[min(len(sizes) - 1, int(len(sizes) * 0.99))], sizes[-1], len(sizes)


def whole(records, cfg: Config, states: dict[str, Profile] | None = None) -> tuple[float, float, int]:
    """Seconds (wall clock, and CPU: on a busy machine less inflated) to run ``records`` through
    a new engine (outputs encoded as replay does), and the number of outputs; the accounts' states are left in ``states``. The detectors' modules are
    imported before the clock starts (importing River is a one-off cost of a second or so)."""
    build_detectors(cfg, 0)
    engine, states = Engine(cfg), states if states is not None else {}
    table, settings = FactsTable(cfg.stream.facts()), cfg.stream.facts()
    t, cpu = time.perf_counter(), time.process_time()
    n_out = 0
    for r in records:
        result = engine.process(r, states.get(r.account_id), _facts(table, settings, r))
        if result.state is not None:
            states[r.account_id] = result.state
        for o in result.outputs:
            output_line(o)
            n_out += 1
    return time.perf_counter() - t, time.process_time() - cpu, n_out


def _facts(table: FactsTable, settings, r):
    """The record's source updates added to the facts table, then its facts as of its bound."""
    if r.topic == "verdicts":
        return NO_FACTS
    for u in source_updates(r):
        table.add(u)
    return table.facts(r, settings.bound(r.ts))


def staged(records, cfg: Config) -> dict[str, float]:
    """Re-run the engine's steps one by one with a timer around each."""
    engine = Engine(cfg)
    table, settings = FactsTable(cfg.stream.facts()), cfg.stream.facts()
    profiles: dict[str, Profile] = {}
    cost: dict[str, float] = defaultdict(float)
    clock = time.perf_counter
    for r in records:
        if r.topic == "verdicts":
            continue
        p = profiles.get(r.account_id) or Profile()
        t0 = clock()
        facts = _facts(table, settings, r)
        t1 = clock()
        x = build_context(p, r, cfg, facts)
        t2 = clock()
        dets = engine.detectors(r.account_id)
        findings = []
        for d in dets:
            ta = clock()
            f = d.score(x)
            cost[d.name] += clock() - ta
            if f is not None and f.score > 0:
                findings.append(f)
        t3 = clock()
        dec = decide(p, r.account_id, r.ts, r.ip, r.device_id, findings, cfg)
        t4 = clock()
        for d in dets:
            d.learn(x, dec.risk)
        observe(p, x, cfg)
        t5 = clock()
        p = Profile.from_bytes(p.to_bytes())
        t6 = clock()
        profiles[r.account_id] = p
        cost["facts"] += t1 - t0
        cost["context"] += t2 - t1
        cost["policy"] += t4 - t3
        cost["learn"] += t5 - t4
        cost["profile"] += t6 - t5
    return cost


def run(records, cfg: Config, decode_s: float, decode_cpu_s: float) -> dict[str, float]:
    """The whole engine and the stages over ``records`` with the kernels chosen now; prints the
    whole-engine lines and returns the stages' µs per event."""
    n = len(records)
    states: dict[str, Profile] = {}
    secs, cpu_s, n_out = whole(records, cfg, states)
    print(f"events: {n:,}   outputs: {n_out:,}   engine: {native.engine()}   detectors: {', '.join(cfg.detectors)}")
    print(f"whole engine (no decode): {n / secs:,.0f} events/s, {secs / n * 1e6:.1f} µs/event")
    total_with_decode = secs / n + decode_s
    print(f"with decode:              {1 / total_with_decode:,.0f} events/s, {total_with_decode * 1e6:.1f} µs/event")
    cpu_with_decode = cpu_s / n + decode_cpu_s
    print(f"with decode, CPU time:    {1 / cpu_with_decode:,.0f} events/s, {cpu_with_decode * 1e6:.1f} µs/event "
          f"(engine {cpu_s / n * 1e6:.1f}, decode {decode_cpu_s * 1e6:.1f})")
    p50, p99, largest, accounts = state_sizes(states)
    print(f"state per account (detectors.profile.encode, {accounts:,} accounts): "
          f"p50 {p50:,} B, p99 {p99:,} B, max {largest:,} B")
    cost = {name: s / n * 1e6 for name, s in staged(records, cfg).items()}
    cost["whole engine, CPU"] = cpu_s / n * 1e6
    return cost


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events")
    ap.add_argument("--limit", type=int, default=300_000)
    ap.add_argument("--config", default=None)
    ap.add_argument("--engine", choices=("python", "native", "both"), default=None,
                    help="the kernels to time (default: both when the native module is built, else python)")
    args = ap.parse_args(argv)
    engines = [args.engine] if args.engine not in (None, "both") else ["python", "native"]
    if args.engine is None and native.module({}) is None:
        engines = ["python"]
    if "native" in engines and native.module({}) is None:
        print("engine_bench: the native module is not built (.venv/bin/pip install ./native)", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    records, decode_s, decode_cpu_s = read_records(args.events, args.limit)
    with open(args.events, "rb") as fh:
        by_dict_s = read_records_by_dict(list(itertools.islice(fh, args.limit)))
    costs = {}
    before = os.environ.get(native.ENV)
    try:
        for engine in engines:
            os.environ[native.ENV] = engine
            costs[engine] = run(records, cfg, decode_s, decode_cpu_s)
            print()
    finally:
        if before is None:
            os.environ.pop(native.ENV, None)
        else:
            os.environ[native.ENV] = before
    first = costs[engines[0]]
    print(f"{'stage (µs/event)':<24} " + " ".join(f"{e:>9}" for e in engines))
    print(f"{'decode':<24} " + " ".join(f"{decode_s * 1e6:>9.2f}" for _ in engines))
    print(f"{'(decode as replay does)':<24} " + " ".join(f"{by_dict_s * 1e6:>9.2f}" for _ in engines))
    for name in sorted(first, key=lambda k: (k.startswith("whole"), -first[k])):
        print(f"{name:<24} " + " ".join(f"{costs[e].get(name, 0.0):>9.2f}" for e in engines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
