"""Engine speed, stage by stage, over a contract JSON Lines file.

    python -m bench.engine_bench EVENTS.jsonl [--limit N] [--config FILE]

Prints events/s for the whole replay path (decode, engine, output encoding) and the µs per
event of each stage, measured by running the stages separately over the same events:

  decode     bytes -> validated record (detectors.events.parse_value)
  facts      cross-account facts (LocalFacts, MIDAS-R burst scorer)
  context    feature extraction (build_context)
  <detector> each detector's score()
  policy     fusion and the action ladder
  learn      detectors' learn() and the profile update (observe)
  profile    profile to_bytes + from_bytes (what the stream worker adds per event)

Compare figures within one run; the machines are noisy.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import defaultdict

import orjson

from detectors.config import Config
from detectors.engine import Engine
from detectors.events import BadInput, parse_value
from detectors.context import build_context
from detectors.update import observe
from detectors.policy import decide
from detectors.profile import Profile
from streams.config import load_config
from streams.replay import output_line


def read_records(path: str, limit: int | None):
    with open(path, "rb") as fh:
        lines = list(itertools.islice(fh, limit))
    records = []
    t = time.perf_counter()
    for line in lines:
        msg = orjson.loads(line)
        if "value" not in msg or msg["topic"] not in ("device", "location", "transaction", "verdicts"):
            continue
        try:
            records.append(parse_value(msg["topic"], msg["value"]))
        except BadInput:
            pass
    return records, (time.perf_counter() - t) / max(1, len(lines))


def whole(records, cfg: Config) -> tuple[float, int]:
    engine, states = Engine(cfg), {}
    t = time.perf_counter()
    n_out = 0
    for r in records:
        result = engine.process(r, states.get(r.account_id))
        if result.state is not None:
            states[r.account_id] = result.state
        for o in result.outputs:
            output_line(o)
            n_out += 1
    return time.perf_counter() - t, n_out


def staged(records, cfg: Config) -> dict[str, float]:
    """Re-run the engine's steps one by one with a timer around each."""
    engine = Engine(cfg)
    profiles: dict[str, Profile] = {}
    cost: dict[str, float] = defaultdict(float)
    clock = time.perf_counter
    for r in records:
        if r.topic == "verdicts":
            continue
        p = profiles.get(r.account_id) or Profile()
        t0 = clock()
        facts = engine.facts.lookup(r)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events")
    ap.add_argument("--limit", type=int, default=300_000)
    ap.add_argument("--config", default=None)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    records, decode_s = read_records(args.events, args.limit)
    n = len(records)
    secs, n_out = whole(records, cfg)
    print(f"events: {n:,}   outputs: {n_out:,}   detectors: {', '.join(cfg.detectors)}")
    print(f"whole engine (no decode): {n / secs:,.0f} events/s, {secs / n * 1e6:.1f} µs/event")
    total_with_decode = secs / n + decode_s
    print(f"with decode:              {1 / total_with_decode:,.0f} events/s, {total_with_decode * 1e6:.1f} µs/event")
    cost = staged(records, cfg)
    print()
    print(f"{'stage':<24} {'µs/event':>9}")
    print(f"{'decode':<24} {decode_s * 1e6:>9.2f}")
    for name, s in sorted(cost.items(), key=lambda kv: -kv[1]):
        print(f"{name:<24} {s / n * 1e6:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
