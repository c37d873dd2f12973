"""Stream worker throughput and latency on the local broker, next to the ceilings.

    atoguard broker start --port 29092 --data-dir /tmp/kafka-bench
    python -m bench.worker_throughput --bootstrap-servers 127.0.0.1:29092 [--accounts 2000 --days 3]

In one run, over the same simulated events (``atoguard simulate``) preloaded into fresh topics:

1. ``aiokafka bare``: an aiokafka consumer -> ``decode_or_dead_letter`` -> aiokafka producer loop,
   no engine: the transport ceiling of one Python process.
2. ``aiokafka + engine``: the same loop calling the detection engine (every detector on, profiles
   as bytes in a dict): the ceiling of one process without Faust.
3. ``faust worker``: ``atoguard run`` (RocksDB tables, changelogs, facts agents), sustained events/s
   from its first processed message to its last (start-up excluded).
4. Latency: a fresh worker fed at half the sustained rate; for every command, the time from the
   bench producing its trigger event to the command arriving on the commands topic (p50 / p99;
   an upper bound on receive -> command), and the worker's own receive -> output histogram.

Prints a table: events per wall-clock second, and events per CPU second of the process that
does the work (which does not depend on what else runs on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
from detectors.profile import decode as decode_profile, encode as encode_profile
from detectors.events import DeadLetter, decode_or_dead_letter
from streams.driver import Driver
from streams.settings import Settings
from streams.topics import create_topics, topic_name

REPO = Path(__file__).resolve().parents[1]


def load_events(path: Path) -> list[tuple[str, bytes, bytes]]:
    """(logical topic, key, value) of the input lines of a contract file, in file order."""
    out = []
    with open(path, "rb") as fh:
        for line in fh:
            rec = orjson.loads(line)
            if rec.get("topic") in c.INPUT_TOPICS and "value" in rec:
                out.append((rec["topic"], rec["value"]["account_id"].encode(), orjson.dumps(rec["value"])))
    return out


def preload(settings: Settings, events) -> None:
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=settings.servers(), linger_ms=20, batch_size=256 * 1024)
    for topic, key, value in events:
        p.send(topic_name(topic, settings.topic_prefix), key=key, value=value)
    p.flush()
    p.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- ceilings -------------------------------------------------------------------------------------

async def _aiokafka_loop(settings: Settings, total: int, with_engine: bool, shards: int) -> tuple[float, float]:
    """(events per wall second, events per CPU second of this process)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    prefix = settings.topic_prefix
    names = [topic_name(t, prefix) for t in c.INPUT_TOPICS]
    logical = {topic_name(t, prefix): t for t in c.INPUT_TOPICS}
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=settings.bootstrap_servers,
                                group_id=f"bench-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                                enable_auto_commit=False, max_poll_records=2000)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await consumer.start()
    await producer.start()
    driver = Driver(Config(), shards) if with_engine else None
    sink = topic_name(c.DEAD_LETTER, prefix)
    outs = {t: topic_name(t, prefix) for t in (*c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS_OUT)}
    seen = 0
    start = None
    cpu0 = 0.0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if start is None and batches:
                start, cpu0 = time.perf_counter(), time.process_time()
            for tp, msgs in batches.items():
                for m in msgs:
                    if driver is not None:
                        for o in driver.task(m.partition).handle_local(logical.get(m.topic, m.topic), m.value,
                                                                        m.key, m.offset, m.topic):
                            await producer.send(outs[o.topic], key=o.key.encode(),
                                                value=orjson.dumps(o.value), headers=list(o.headers) or None)
                        seen += 1
                        continue
                    rec = decode_or_dead_letter(m.topic, m.value, m.key, partition=m.partition, offset=m.offset,
                                                logical_topic=logical.get(m.topic))
                    if type(rec) is DeadLetter:
                        await producer.send(sink, key=m.key, value=orjson.dumps(rec.to_dict()))
                    else:  # the bare loop produces one small record per message
                        await producer.send(sink, key=m.key, value=orjson.dumps({"ok": rec.event_id}))
                    seen += 1
            if batches:
                if driver is not None:
                    driver.checkpoint()
                await consumer.commit()
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    wall, cpu = time.perf_counter() - (start or time.perf_counter()), time.process_time() - cpu0
    return seen / wall, seen / cpu


# -- the faust worker ------------------------------------------------------------------------------

class WorkerProc:
    def __init__(self, settings: Settings, workdir: Path, store: str, extra: list[str]) -> None:
        self.port = _free_port()
        self.log = open(workdir / f"worker-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "run", "--dev", "--runtime", "faust", "--bootstrap-servers", settings.bootstrap_servers,
             "--topic-prefix", settings.topic_prefix, "--store", store, "--data-dir", str(workdir / f"w{self.port}"),
             "--web-port", str(self.port), "--standby-replicas", "0", "--log-level", "warning", *extra],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                return json.load(r)
        except OSError:
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _processed(h: dict | None) -> int:
    c_ = (h or {}).get("events") or {}
    return c_.get("events", 0) + c_.get("verdicts", 0) + c_.get("duplicates", 0) + c_.get("dead_letters", 0)


def faust_sustained(settings: Settings, total: int, workdir: Path, store: str, extra: list[str]) -> tuple[float, float]:
    """(events per wall second, events per CPU second of the worker process)."""
    w = WorkerProc(settings, workdir, store, extra)
    try:
        first_t = first_n = first_cpu = None
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            n = _processed(w.health())
            now = time.perf_counter()
            if first_t is None and n > 0:
                first_t, first_n, first_cpu = now, n, _cpu_seconds(w.proc.pid)
            if n >= total:
                cpu = _cpu_seconds(w.proc.pid) - first_cpu
                return (n - first_n) / (now - first_t), (n - first_n) / cpu if cpu else float("nan")
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker exited {w.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("worker did not finish within 30 minutes")
    finally:
        w.stop()


def _hist_quantile(text: str, name: str, topic: str, q: float) -> float | None:
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{topic=\"{topic}\""):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    for le, cum in buckets:
        if cum >= target:
            return le
    return None


def latency(settings: Settings, events, rate: float, seconds: float, workdir: Path, store: str,
            extra: list[str]) -> dict:
    from kafka import KafkaConsumer, KafkaProducer

    n = min(len(events), int(rate * seconds))
    w = WorkerProc(settings, workdir, store, extra)
    sent_at: dict[str, float] = {}
    lat: list[float] = []
    lat_alerts: list[float] = []
    stop = threading.Event()

    def watch():
        commands = topic_name(c.COMMANDS, settings.topic_prefix)
        consumer = KafkaConsumer(commands, topic_name(c.ALERTS, settings.topic_prefix),
                                 bootstrap_servers=settings.servers(), group_id=None, auto_offset_reset="earliest",
                                 consumer_timeout_ms=500)
        while not stop.is_set():
            for m in consumer:
                now = time.time()
                v = orjson.loads(m.value)
                trig = v["trigger_event_id"] if m.topic == commands else v["evidences"][0]["data"]["event_id"]
                if trig in sent_at:
                    (lat if m.topic == commands else lat_alerts).append(now - sent_at[trig])
        consumer.close()

    try:
        deadline = time.monotonic() + 120
        while not (w.health() or {}).get("assigned"):
            if time.monotonic() > deadline:
                raise RuntimeError("worker got no partitions")
            time.sleep(0.2)
        time.sleep(2.0)
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        p = KafkaProducer(bootstrap_servers=settings.servers(), linger_ms=1)
        start = time.perf_counter()
        for i, (topic, key, value) in enumerate(events[:n]):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent_at[orjson.loads(value).get("event_id") or orjson.loads(value).get("verdict_id")] = time.time()
            p.send(topic_name(topic, settings.topic_prefix), key=key, value=value)
        p.flush()
        achieved = n / (time.perf_counter() - start)
        deadline = time.monotonic() + 120
        while _processed(w.health()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
        stop.set()
        t.join(10)
        text = w.metrics()
    finally:
        w.stop()
    def pick(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")
    both = lat + lat_alerts
    return {"rate": achieved, "events": n, "commands": len(lat), "alerts": len(lat_alerts),
            "p50": pick(lat, 0.5), "p99": pick(lat, 0.99), "all_p50": pick(both, 0.5), "all_p99": pick(both, 0.99),
            "worker_p50": _hist_quantile(text, "atoguard_receive_to_output_seconds", "commands", 0.5),
            "worker_p99": _hist_quantile(text, "atoguard_receive_to_output_seconds", "commands", 0.99)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap-servers", default=os.environ.get("ATOGUARD_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--store", choices=("rocksdb", "memory"), default="rocksdb")
    ap.add_argument("--latency-seconds", type=float, default=40.0)
    ap.add_argument("--worker-arg", action="append", default=[],
                    help="extra `atoguard run` option, e.g. --worker-arg=--max-poll-records=2000")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="atoguard-bench-"))
    src = workdir / "events.jsonl"
    subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--accounts", str(args.accounts), "--days",
                    str(args.days), "--seed", str(args.seed), "--out", str(src), "--labels",
                    str(workdir / "labels.jsonl")], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    events = load_events(src)
    total = len(events)
    run_id = uuid.uuid4().hex[:6]
    s1 = Settings(bootstrap_servers=args.bootstrap_servers, topic_prefix=f"bench{run_id}.", partitions=args.partitions)
    s2 = Settings(bootstrap_servers=args.bootstrap_servers, topic_prefix=f"benchlat{run_id}.", partitions=args.partitions)
    for s in (s1, s2):
        create_topics(s)
    print(f"{total:,} events ({args.accounts} accounts, {args.days} days), {args.partitions} partitions, "
          f"store {args.store}; preloading...", file=sys.stderr)
    preload(s1, events)

    rows = []
    bare = asyncio.run(_aiokafka_loop(s1, total, False, args.partitions))
    rows.append(("aiokafka bare (consume, decode, produce)", bare))
    ceiling = asyncio.run(_aiokafka_loop(s1, total, True, args.partitions))
    rows.append(("aiokafka + engine (no faust)", ceiling))
    sustained = faust_sustained(s1, total, workdir, args.store, args.worker_arg)
    rows.append(("faust worker (atoguard run)", sustained))
    lat = latency(s2, events, sustained[0] / 2, args.latency_seconds, workdir, args.store, args.worker_arg)

    print()
    print(f"  {'pipeline':<44} {'events/s':>10} {'events/CPU-s':>13} {'µs CPU/event':>13}")
    for name, (rate, per_cpu) in rows:
        print(f"  {name:<44} {rate:>10,.0f} {per_cpu:>13,.0f} {1e6 / per_cpu:>13,.0f}")
    print(f"  (this machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          "events/CPU-s does not depend on the load)")
    print()
    print(f"  latency at {lat['rate']:,.0f} events/s (half the sustained rate), {lat['events']:,} events, "
          f"{lat['commands']} commands, {lat['alerts']} alerts:")
    print(f"    produce -> command on the topic   p50 {lat['p50']:7.1f} ms   p99 {lat['p99']:7.1f} ms")
    print(f"    produce -> command or alert       p50 {lat['all_p50']:7.1f} ms   p99 {lat['all_p99']:7.1f} ms "
          f"({lat['commands'] + lat['alerts']} outputs)")
    wp50, wp99 = lat["worker_p50"], lat["worker_p99"]
    fmt = lambda v: "   n/a" if v is None else f"<= {v * 1000:g}"
    print(f"    worker receive -> command sent    p50 {fmt(wp50)} ms   p99 {fmt(wp99)} ms (histogram buckets)")
    print(f"\n  goal: 10,000 events/s and p99 < 100 ms; logs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
