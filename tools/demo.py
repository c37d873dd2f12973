"""The demo's orchestration: broker, topics, worker and simulated traffic in one go, ending
with the report. ``atoguard demo`` (:mod:`streams.demo_cli`) parses the options and calls
:func:`run`.

Steps (each prints what it does):
  1. start the local Kafka broker (or use the one at --bootstrap-servers if it answers);
  2. create the contract topics under a fresh prefix (demo<N>.), so runs never mix;
  3. simulate a small population with ground truth (events file + labels);
  4. start the stream worker (`atoguard run`) on those topics;
  5. publish the simulated events to the input topics (as the upstream services would);
  6. collect the worker's commands and alerts from the output topics until they go quiet;
  7. score them against the labels (`atoguard eval`) and write the report;
  8. replay the same file offline and compare the command ids with the live run.

example:
  atoguard demo                       # about 2-4 minutes on a laptop
  atoguard demo --accounts 300 --days 5 --dir demo-out
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson

ATOGUARD = [sys.executable, "-m", "streams.cli"]


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _run(*args: str) -> None:
    subprocess.run([*ATOGUARD, *args], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collect(bootstrap: str, prefix: str, out: Path, quiet_s: float, expected_min: int) -> int:
    from kafka import KafkaConsumer
    topics = [f"{prefix}commands", f"{prefix}alerts", f"{prefix}dead-letter"]
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=1000)
    n, last = 0, time.monotonic()
    with out.open("wb") as fh:
        while time.monotonic() - last < quiet_s or n < expected_min:
            for msg in consumer:
                logical = msg.topic[len(prefix):]
                record = {"topic": logical, "value": orjson.loads(msg.value)}
                if msg.headers:
                    record["headers"] = {k: v.decode() for k, v in msg.headers}
                fh.write(orjson.dumps(record) + b"\n")
                n += 1
                last = time.monotonic()
            if time.monotonic() - last > 600:
                break
    consumer.close()
    return n


def run(args: argparse.Namespace) -> int:
    """Run the demo with the options of ``atoguard demo``; returns an exit code."""
    from tools.kafka_broker import Broker, BrokerConfig, answers

    args.dir.mkdir(parents=True, exist_ok=True)
    events, labels = args.dir / "events.jsonl", args.dir / "labels.jsonl"
    live_out, replay_out = args.dir / "live-outputs.jsonl", args.dir / "replay-outputs.jsonl"
    bootstrap = args.bootstrap_servers
    started_broker = None

    _say(f"1/8 Kafka broker at {bootstrap}")
    if not answers(bootstrap):
        host, _, port = bootstrap.rpartition(":")
        started_broker = Broker(BrokerConfig.from_env(port=int(port), data_dir=args.dir / "kafka"))
        seconds = started_broker.start()
        print(f"started a local Apache Kafka in {seconds:.1f} s (data in {args.dir / 'kafka'})")
    else:
        print("a broker answers there; using it")
    prefix = f"demo{int(time.time())}."
    env = dict(os.environ, ATOGUARD_BOOTSTRAP_SERVERS=bootstrap, ATOGUARD_TOPIC_PREFIX=prefix)
    os.environ.update(env)
    worker = None
    try:
        _say(f"2/8 topics under the prefix {prefix}")
        _run("topics", "create")

        _say(f"3/8 simulating {args.accounts} accounts over {args.days} days (seed {args.seed})")
        sim = ["--accounts", str(args.accounts), "--days", str(args.days), "--seed", str(args.seed)]
        _run("simulate", *sim, "--out", str(events), "--labels", str(labels), "--quiet")

        _say("4/8 starting the stream worker (atoguard run)")
        worker_log = (args.dir / "worker.log").open("wb")
        worker = subprocess.Popen(
            [*ATOGUARD, "run", "--store", "memory", "--app-id", f"{prefix}worker", "--web-port", str(_free_port()),
             "--data-dir", str(args.dir / "worker"), "--log-level", "warning",
             *(["--config", str(args.config)] if args.config else [])],
            stdout=worker_log, stderr=subprocess.STDOUT, env=env)
        time.sleep(8)
        if worker.poll() is not None:
            print((args.dir / "worker.log").read_text()[-3000:], file=sys.stderr)
            print("atoguard demo: the worker exited early; its log is above", file=sys.stderr)
            return 1

        _say("5/8 publishing the simulated events to the input topics")
        with events.open("rb") as fh:
            n_events = sum(1 for _ in fh)
        t0 = time.monotonic()
        _run("simulate", *sim, "--to-kafka", "--bootstrap-servers", bootstrap, "--topic-prefix", prefix,
             "--labels", str(args.dir / "labels-kafka.jsonl"), "--quiet")
        print(f"published {n_events:,} events in {time.monotonic() - t0:.1f} s")

        _say("6/8 collecting commands and alerts from the output topics")
        from streams.replay import replay_file
        from streams.config import load_config
        summary = replay_file(events, replay_out, load_config(args.config))
        expected = summary.alerts + sum(summary.commands.values())
        n = _collect(bootstrap, prefix, live_out, args.quiet_seconds, expected_min=int(expected * 0.9))
        print(f"{n:,} messages from the worker -> {live_out}")
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if started_broker is not None and not args.keep_broker:
            started_broker.stop()

    _say("7/8 evaluation of the live run against the ground truth")
    _run("eval", "--events", str(events), "--labels", str(labels), "--out", str(live_out),
         "--report", str(args.dir / "report"), "--no-progress")

    _say("8/8 live stream vs offline replay of the same events")

    def command_ids(path: Path) -> set[str]:
        with path.open("rb") as fh:
            return {m["value"]["command_id"] for m in map(orjson.loads, fh) if m["topic"] == "commands"}
    live, offline = command_ids(live_out), command_ids(replay_out)
    print(f"commands live {len(live)}, replay {len(offline)}, in both {len(live & offline)}"
          " (cross-account facts reach the live worker asynchronously, so a few may differ)")
    print(f"\nreport: {args.dir / 'report' / 'report.md'}")
    return 0
