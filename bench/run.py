"""One benchmark entry point: the stream runtimes next to their ceilings, and latency.

    python -m bench [--quick] [--bootstrap-servers HOST:PORT] [--accounts N --days D] [--json FILE]

Without ``--bootstrap-servers`` a local broker is started (and stopped) in a temporary dir. Over
the same simulated events (``atoguard simulate``), each preloaded into fresh topics:

* ``ceiling``: confluent-kafka (the Quix runtime's client) consume -> decode -> produce, no engine;
* ``client + engine``: the same loop calling the engine's seam, profiles as codec bytes in a dict;
* ``quix worker``: ``atoguard run`` (exactly once, commit every 0.1 s, RocksDB state, changelog);
* ``faust worker``: ``atoguard run --runtime faust`` (RocksDB tables, facts agents);
* ``engine alone``: decoded records through ``Engine.process``, states as objects in a dict;
* latency: a fresh Quix worker fed by an open-loop producer (a fixed send schedule) at 25%, 50%
  and 75% of the Quix worker's sustained rate; for every command and alert, the time from the
  scheduled send of its trigger event to its arrival at a ``read_committed`` consumer.

Rates are events per wall-clock second from the first event processed to the last (start-up
excluded) and events per CPU second of the process doing the work. Prints a table and writes
JSON (``--json``, default ``bench-results.json``). Figures are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

from detectors import contract as c
from detectors.config import Config
from detectors.engine import Engine
from detectors.events import decode_or_dead_letter, parse_value
from detectors.profile import decode as decode_profile, encode as encode_profile
from streams.driver import Driver
from streams.settings import Settings
from streams.topics import create_topics, topic_name

REPO = Path(__file__).resolve().parents[1]
INPUT = tuple(c.INPUT_TOPICS)


# -- input ------------------------------------------------------------------------------------------

def simulate(accounts: int, days: int, seed: int, workdir: Path) -> list[tuple[str, bytes, bytes]]:
    """(logical topic, key, value) of simulated events, in the simulator's (event-time) order."""
    out = workdir / "events.jsonl"
    subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--accounts", str(accounts), "--days", str(days),
                    "--seed", str(seed), "--out", str(out), "--labels", str(workdir / "labels.jsonl"), "--quiet"],
                   cwd=REPO, check=True, capture_output=True)
    events = []
    for line in out.read_bytes().splitlines():
        rec = orjson.loads(line)
        if rec.get("topic") in INPUT and "value" in rec:
            events.append((rec["topic"], rec["value"]["account_id"].encode(), orjson.dumps(rec["value"])))
    return events


def fresh(bootstrap: str, partitions: int) -> Settings:
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}.", partitions=partitions)
    create_topics(settings)
    return settings


def preload(settings: Settings, events) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20, "batch.size": 262144,
                  "partitioner": "murmur2_random"})
    for topic, key, value in events:
        while True:
            try:
                p.produce(topic_name(topic, settings.topic_prefix), key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)


# -- the loops without a framework ------------------------------------------------------------------

def client_loop(settings: Settings, total: int, with_engine: bool) -> dict:
    """confluent-kafka consume -> decode (-> engine) -> produce, at least once; events/s."""
    from confluent_kafka import Consumer, Producer

    prefix = settings.topic_prefix
    logical = {topic_name(t, prefix): t for t in INPUT}
    out_names = {t: topic_name(t, prefix) for t in (*c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS_OUT)}
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5,
                         "partitioner": "murmur2_random"})
    consumer.subscribe(list(logical))
    engine = Driver(Config(), settings.partitions) if with_engine else None  # the driver, as the worker runs it
    states: dict[bytes, bytes] = {}
    seen, start, cpu0 = 0, None, 0.0
    deadline = time.monotonic() + 1800
    try:
        while seen < total and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                if m.error():
                    continue
                if start is None:
                    start, cpu0 = time.perf_counter(), time.process_time()
                seen += 1
                topic, key = m.topic(), m.key()
                if engine is None:
                    rec = decode_or_dead_letter(topic, m.value(), key, partition=m.partition(), offset=m.offset(),
                                                logical_topic=logical.get(topic))
                    producer.produce(out_names[c.COMMANDS], key=key, value=orjson.dumps(rec.event_id)
                                     if hasattr(rec, "event_id") else b"{}")
                else:
                    for o in engine.task(m.partition()).handle_local(logical.get(topic, topic), m.value(), key,
                                                                     m.offset(), topic):
                        producer.produce(out_names[o.topic], key=o.key.encode(),
                                         value=orjson.dumps(o.value), headers=list(o.headers) if o.headers else None)
                    if seen % 1000 == 0:
                        engine.checkpoint()
                producer.poll(0)
        producer.flush(30)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    finally:
        consumer.close()
    return {"events": seen, "events_per_s": seen / wall, "events_per_cpu_s": seen / cpu}


def engine_alone(events, partitions: int) -> dict:
    """Decoded records through ``Engine.process``; states as objects; plus the profile codec's cost."""
    records = [parse_value(t, orjson.loads(v)) for t, _, v in events]
    engine = Engine(Config(shards=partitions))
    states: dict = {}
    t0, cpu0 = time.perf_counter(), time.process_time()
    for record in records:
        r = engine.process(record, states.get(record.account_id))
        states[record.account_id] = r.state
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    blobs = [encode_profile(p) for p in states.values()]
    t1 = time.perf_counter()
    for p in states.values():
        decode_profile(encode_profile(p))
    codec_us = (time.perf_counter() - t1) / max(1, len(states)) * 1e6
    return {"events": len(records), "events_per_s": len(records) / wall, "events_per_cpu_s": len(records) / cpu,
            "profile_codec_us": codec_us, "profile_bytes_mean": sum(map(len, blobs)) / max(1, len(blobs)),
            "accounts": len(states)}


# -- the workers as subprocesses ---------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerProc:
    """``atoguard run`` in a subprocess with its /healthz."""

    def __init__(self, settings: Settings, workdir: Path, runtime: str, extra: tuple[str, ...] = ()) -> None:
        self.port = _free_port()
        self.log = open(workdir / f"{runtime}-{self.port}.log", "wb")
        args = [sys.executable, "-m", "streams.cli", "run", "--dev", "--runtime", runtime,
                "--bootstrap-servers", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix,
                "--data-dir", str(workdir / f"w{self.port}"), "--web-port", str(self.port), "--log-level", "warning",
                *extra]
        if runtime == "faust":
            args += ["--standby-replicas", "0"]
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                return json.load(r)
        except OSError:
            return None

    def handled(self) -> int:
        counts = (self.health() or {}).get("events") or {}
        return sum(counts.get(k, 0) for k in ("events", "verdicts", "duplicates", "dead_letters"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def sustained(settings: Settings, total: int, workdir: Path, runtime: str) -> dict:
    """A worker over ``total`` preloaded events: events/s from its first to its last event."""
    w = WorkerProc(settings, workdir, runtime)
    try:
        first = None
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            n = w.handled()
            now = time.perf_counter()
            if first is None and n > 0:
                first = (now, n, _cpu_seconds(w.proc.pid))
            if n >= total:
                wall, cpu = now - first[0], _cpu_seconds(w.proc.pid) - first[2]
                done = n - first[1]
                return {"events": n, "events_per_s": done / wall, "events_per_cpu_s": done / cpu if cpu else None}
            if w.proc.poll() is not None:
                raise RuntimeError(f"{runtime} worker exited {w.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"{runtime} worker did not finish")
    finally:
        w.stop()


# -- latency -------------------------------------------------------------------------------------------

def _quantiles(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))] * 1000  # noqa: E731
    return {"n": len(xs), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99)}


def latency(settings: Settings, events, rates: list[float], seconds: float, workdir: Path,
            extra: tuple[str, ...] = ()) -> list[dict]:
    """Open-loop: events sent on a fixed schedule at each rate; produce -> command/alert latency."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    w = WorkerProc(settings, workdir, "quix", extra)
    sched: dict[str, float] = {}
    arrivals: list[tuple[str, float]] = []
    stop = threading.Event()

    def read() -> None:
        cons = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"lat-{uuid.uuid4().hex[:6]}",
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        tps = [TopicPartition(topic_name(t, settings.topic_prefix), p, 0)
               for t in (c.COMMANDS, c.ALERTS) for p in range(settings.partitions)]
        cons.assign(tps)
        while not stop.is_set():
            for m in cons.consume(100, 0.05):
                if m.error():
                    continue
                now = time.perf_counter()
                v = orjson.loads(m.value())
                trig = v.get("trigger_event_id") or v.get("evidences", [{}])[0].get("data", {}).get("event_id")
                arrivals.append((trig, now))
        cons.close()

    try:
        deadline = time.monotonic() + 90
        while not any(a.split(":")[0] in {topic_name(t, settings.topic_prefix) for t in INPUT}
                      for a in (w.health() or {}).get("assigned", [])):
            if time.monotonic() > deadline or w.proc.poll() is not None:
                raise RuntimeError("latency worker did not start")
            time.sleep(0.2)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(1.0)
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 0,
                             "partitioner": "murmur2_random"})
        rows = []
        pos = 0
        for rate in rates:
            n = max(1, int(rate * seconds))
            batch = events[pos:pos + n]
            pos += n
            t0 = time.perf_counter() + 0.05
            first = len(sched)
            for i, (topic, key, value) in enumerate(batch):
                at = t0 + i / rate
                while (d := at - time.perf_counter()) > 0:
                    time.sleep(min(d, 0.002))
                sched[orjson.loads(value)["event_id"]] = at
                producer.produce(topic_name(topic, settings.topic_prefix), key=key, value=value)
                producer.poll(0)
            producer.flush(30)
            ids = set(list(sched)[first:])
            time.sleep(2.0)  # let the last outputs commit and arrive
            lat = [t - sched[trig] for trig, t in list(arrivals) if trig in ids]
            rows.append({"rate": rate, "events": len(batch), **_quantiles(lat)})
        return rows
    finally:
        stop.set()
        w.stop()


# -- the run ---------------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def table(results: dict) -> str:
    rows = results["throughput"]
    ceiling = rows["ceiling"]["events_per_cpu_s"]
    client = rows["client + engine"]["events_per_cpu_s"]
    lines = [f"{'pipeline':<18} {'events/s':>10} {'events/CPU-s':>13} {'% ceiling':>10} {'% client+engine':>16}"]
    for name, r in rows.items():
        cpu_rate = r.get("events_per_cpu_s") or 0.0
        lines.append(f"{name:<18} {r['events_per_s']:>10,.0f} {cpu_rate:>13,.0f} {100 * cpu_rate / ceiling:>9.0f}% "
                     f"{100 * cpu_rate / client:>15.0f}%")
    e = rows["engine alone"]
    lines.append(f"profile codec (encode + decode) {e['profile_codec_us']:.1f} µs, {e['profile_bytes_mean']:.0f} bytes "
                 f"mean over {e['accounts']} accounts")
    lines.append("")
    lines.append(f"latency produce -> command/alert (quix, exactly once, commit {results['commit_interval_s']} s)")
    lines.append(f"{'share':>6} {'rate/s':>8} {'outputs':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    fmt = lambda v: f"{v:8.0f}" if v is not None else f"{'-':>8}"  # noqa: E731
    for share, r in zip(results["latency_shares"], results["latency"]):
        lines.append(f"{share:>5.0%} {r['rate']:>8.0f} {r['n']:>8} {fmt(r['p50_ms'])} {fmt(r['p95_ms'])} "
                     f"{fmt(r['p99_ms'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tiny input and short latency phases (seconds, not minutes)")
    ap.add_argument("--bootstrap-servers", help="a running broker (default: start one in a temporary dir)")
    ap.add_argument("--accounts", type=int, default=None, help="simulated accounts (default 2000; quick 60)")
    ap.add_argument("--days", type=int, default=None, help="simulated days (default 3; quick 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--latency-seconds", type=float, default=None, help="seconds per latency phase (default 20; quick 2)")
    ap.add_argument("--skip-faust", action="store_true", help="leave the Faust worker out")
    ap.add_argument("--json", type=Path, default=Path("bench-results.json"), help="where to write the figures")
    args = ap.parse_args(argv)
    accounts = args.accounts or (60 if args.quick else 2000)
    days = args.days or (1 if args.quick else 3)
    seconds = args.latency_seconds or (2.0 if args.quick else 20.0)

    broker = None
    workdir = Path(tempfile.mkdtemp(prefix="atoguard-bench-"))
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        from tools.kafka_broker import Broker, BrokerConfig
        port, ctl = _free_port(), _free_port()
        broker = Broker(BrokerConfig.from_env(port=port, controller_port=ctl, heap="768m", data_dir=workdir / "kafka"))
        broker.start(timeout_s=120)
        bootstrap = broker.config.bootstrap
    try:
        events = simulate(accounts, days, args.seed, workdir)
        total = len(events)
        print(f"{total:,} events ({accounts} accounts x {days} days), {args.partitions} partitions, broker {bootstrap}",
              file=sys.stderr)
        results: dict = {"machine": machine(), "events": total, "accounts": accounts, "days": days,
                         "partitions": args.partitions, "commit_interval_s": 0.1, "throughput": {}}
        rows = results["throughput"]

        def step(name: str, fn) -> None:
            print(f"  {name} ...", file=sys.stderr, flush=True)
            rows[name] = fn()

        def preloaded() -> Settings:
            s = fresh(bootstrap, args.partitions)
            preload(s, events)
            return s

        step("ceiling", lambda: client_loop(preloaded(), total, with_engine=False))
        step("client + engine", lambda: client_loop(preloaded(), total, with_engine=True))
        step("quix worker", lambda: sustained(preloaded(), total, workdir, "quix"))
        if not args.skip_faust:
            step("faust worker", lambda: sustained(preloaded(), total, workdir, "faust"))
        step("engine alone", lambda: engine_alone(events, args.partitions))
        shares = [0.25, 0.5, 0.75]
        rate = rows["quix worker"]["events_per_s"]
        results["latency_shares"] = shares
        print("  latency ...", file=sys.stderr, flush=True)
        results["latency"] = latency(fresh(bootstrap, args.partitions), events, [s * rate for s in shares],
                                     seconds, workdir)
        print(table(results))
        args.json.write_text(json.dumps(results, indent=2))
        print(f"figures written to {args.json}", file=sys.stderr)
        return 0
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
