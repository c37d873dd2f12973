"""The demo's orchestration: the product working, live, then the report from what the worker
wrote. ``atoguard demo`` (:mod:`streams.cli.demo`) parses the options and calls :func:`run`.

Steps (each prints what it does):
  1. start the local Kafka broker (or use the one at --bootstrap-servers if it answers);
  2. create the contract topics under a fresh prefix (demo<N>.), so runs never mix;
  3. simulate a population with ground truth (events file + labels) in which every attack
     scenario has attacks with a loss (the attack shares are raised so a small population has
     them; the labels are checked and the count printed);
  4. start the stream worker (`atoguard run`) on those topics;
  5. stream the events to the input topics at a steady rate for --minutes, through the live
     account service (simulator/account_service.py), which answers the worker's step-ups and
     freezes on <prefix>device and withholds the events of attackers it refused. A live view
     prints events/s, the worker's consumer lag, each command as it goes out (with its reasons
     and the message the holder sees), each challenge answered, and alerts;
  6. read back the commands and alerts from the output topics (read_committed) and score the
     transcript (inputs sent + answers + outputs read) against the labels (`atoguard eval`);
  7. compare with the closed-loop replay (`atoguard replay --respond`) of the same events.

Ctrl-C stops everything the demo started (worker, broker) and says so.

example:
  atoguard demo                       # about three minutes: two of streaming
  atoguard demo --short               # under two minutes in all (what the tests run)
  atoguard demo --accounts 3000 --days 14 --minutes 4 --dir demo-out
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson

ATOGUARD = [sys.executable, "-m", "streams.cli"]

#: the attack shares of the demo's population: with 1,200 accounts over 10 days every attack
#: scenario has several attacks with a loss (the labels are checked)
DEMO_RATES = {"credential_stuffing": 0.008, "phishing_takeover": 0.006, "sim_swap_payout": 0.005,
              "session_hijack": 0.005, "impossible_travel": 0.008, "slow_takeover": 0.008}
FULL = {"accounts": 1200, "days": 10, "minutes": 2.0}
SHORT = {"accounts": 400, "days": 5, "minutes": 0.5}


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _run(*args: str) -> None:
    subprocess.run([*ATOGUARD, *args], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _utc(ms: int) -> str:
    return time.strftime("%m-%d %H:%M", time.gmtime(ms / 1000))


def losses_by_scenario(labels: Path) -> dict[str, int]:
    """Attack scenario -> how many of its incidents have a loss (``first_loss_ts``)."""
    from simulator.config import ATTACK_SCENARIOS

    out = {s: 0 for s in ATTACK_SCENARIOS}
    with labels.open("rb") as fh:
        for line in fh:
            rec = orjson.loads(line)
            if rec.get("label") == "ato" and rec.get("first_loss_ts") is not None and rec["scenario"] in out:
                out[rec["scenario"]] += 1
    return out


class LiveView:
    """Reads the output topics (read_committed) into ``out`` and prints what happens: each
    command with its reasons and the holder's message, alerts, and every ``every_s`` a status
    line (events/s, the worker's lag, commands, answers)."""

    def __init__(self, bootstrap: str, prefix: str, out: Path, service, every_s: float = 5.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from streams.topics import topic_name

        self.prefix, self.service, self.every_s = prefix, service, every_s
        self.out = out.open("wb")
        self.outputs: Counter = Counter()
        self.stop = threading.Event()
        base = {"bootstrap.servers": bootstrap, "enable.auto.commit": False}
        self._reader = Consumer({**base, "group.id": f"{prefix}demo-view", "isolation.level": "read_committed"})
        self._lag = Consumer({**base, "group.id": f"{prefix}worker"})
        self._topics = [topic_name(t, prefix) for t in ("commands", "alerts", "dead-letter")]
        meta = self._reader.list_topics(timeout=10).topics
        self._reader.assign([TopicPartition(t, p, 0) for t in self._topics for p in meta[t].partitions])
        self._inputs = [TopicPartition(topic_name(t, prefix), p) for t in ("device", "location", "transaction")
                        for p in meta[topic_name(t, prefix)].partitions]
        self._thread = threading.Thread(target=self._loop, name="demo-view", daemon=True)
        self.quiet_since = time.monotonic()

    def start(self) -> "LiveView":
        self._began = time.monotonic()
        self._thread.start()
        return self

    def lag(self) -> int:
        """Input messages the worker has not committed yet."""
        committed = {(tp.topic, tp.partition): tp.offset for tp in self._lag.committed(self._inputs, timeout=5)}
        total = 0
        for tp in self._inputs:
            _, high = self._lag.get_watermark_offsets(tp, 5, False)
            total += max(0, high - max(committed.get((tp.topic, tp.partition), 0), 0))
        return total

    def _loop(self) -> None:
        last_status, last_sent = time.monotonic(), 0
        while not self.stop.is_set():
            for msg in self._reader.consume(200, 0.2):
                if msg.error():
                    continue
                self._output(msg)
            now = time.monotonic()
            if now - last_status >= self.every_s:
                st = self.service.stats
                rate = (st.events_sent - last_sent) / (now - last_status)
                last_status, last_sent = now, st.events_sent
                print(f"   [{now - self._began:5.0f} s] {rate:6.0f} events/s  sent {st.events_sent:,}  "
                      f"lag {self.lag():,}  commands {sum(st.commands.values())}  "
                      f"answers {st.answers['challenge_passed']} passed / {st.answers['challenge_failed']} failed  "
                      f"withheld {st.withheld}", flush=True)

    def drain(self, quiet_s: float = 2.0) -> None:
        """Stop after the output topics were quiet for ``quiet_s``."""
        while time.monotonic() - self.quiet_since < quiet_s:
            time.sleep(0.2)
        self.stop.set()
        self._thread.join(10)
        self.out.close()
        self._reader.close()
        self._lag.close()

    def _output(self, msg) -> None:
        self.quiet_since = time.monotonic()
        logical = msg.topic()[len(self.prefix):]
        value = orjson.loads(msg.value())
        record = {"topic": logical, "value": value}
        if msg.headers():
            record["headers"] = {k: v.decode() for k, v in msg.headers()}
        self.out.write(orjson.dumps(record) + b"\n")
        self.outputs[logical] += 1
        if logical == "commands":
            reasons = ", ".join(value.get("reasons", [])[:3])
            methods = "/".join(value.get("methods") or []) or "-"
            print(f"   {_utc(value['issued_at'])}  {value['account_id']:<12}  {value['action'].upper():<9} "
                  f"risk {value.get('risk', 0):.2f}  methods {methods}  [{reasons}]", flush=True)
            if value.get("message"):
                print(f"{'':37}holder sees: \"{value['message']}\"", flush=True)
        elif logical == "alerts" and self.outputs["alerts"] % 10 == 1:
            info = value.get("finding_info", {})
            print(f"   alert #{self.outputs['alerts']}: {info.get('title', '')} ({value.get('severity', '')})", flush=True)


def _answer_printer(cmd: dict, answer: dict | None) -> None:
    """The service's hook: say how the person will answer this command."""
    if answer is not None:
        verb = "passes" if answer["kind"] == "challenge_passed" else f"FAILS ({answer.get('reason')})"
        print(f"   account service: {cmd['account_id']} {cmd['action']} -> {answer['method']} challenge, "
              f"the person acting {verb}", flush=True)


def _wait_healthy(worker: subprocess.Popen, port: int, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited early; its log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the worker did not answer within {timeout_s:.0f} s; its log: {log}")


def _options(args: argparse.Namespace) -> tuple[int, int, float]:
    preset = SHORT if args.short else FULL
    return (args.accounts or preset["accounts"], args.days or preset["days"], args.minutes or preset["minutes"])


def run(args: argparse.Namespace) -> int:
    """Run the demo with the options of ``atoguard demo``; returns an exit code. Ctrl-C at any
    step stops what the demo started and ends with one line (exit 130)."""
    try:
        return _demo(args)
    except KeyboardInterrupt:
        print("\natoguard demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as exc:
        print(f"atoguard demo: atoguard {exc.cmd[3]} failed (exit {exc.returncode})", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    from tools.kafka_broker import Broker, BrokerConfig, answers

    accounts, days, minutes = _options(args)
    args.dir.mkdir(parents=True, exist_ok=True)
    events, labels = args.dir / "events.jsonl", args.dir / "labels.jsonl"
    inputs, outputs = args.dir / "live-inputs.jsonl", args.dir / "live-outputs.jsonl"
    transcript, replay_out = args.dir / "live-transcript.jsonl", args.dir / "replay-transcript.jsonl"
    bootstrap = args.bootstrap_servers
    started_broker = worker = service = view = None
    try:
        _say(f"1/7 Kafka broker at {bootstrap}")
        if not answers(bootstrap):
            host, _, port = bootstrap.rpartition(":")
            started_broker = Broker(BrokerConfig.from_env(port=int(port), data_dir=args.dir / "kafka"))
            seconds = started_broker.start()
            print(f"started a local Apache Kafka in {seconds:.1f} s (data in {args.dir / 'kafka'})")
        else:
            print("a broker answers there; using it")
        prefix = f"demo{time.time_ns() // 1_000_000}."
        env = dict(os.environ, ATOGUARD_BOOTSTRAP_SERVERS=bootstrap, ATOGUARD_TOPIC_PREFIX=prefix)

        _say(f"2/7 topics under the prefix {prefix}")
        subprocess.run([*ATOGUARD, "topics", "create"], check=True, env=env)

        _say(f"3/7 simulating {accounts:,} accounts over {days} days (seed {args.seed})")
        rates = [x for name, share in DEMO_RATES.items() for x in (f"--rate-{name.replace('_', '-')}", str(share))]
        _run("simulate", "--accounts", str(accounts), "--days", str(days), "--seed", str(args.seed), *rates,
             "--out", str(events), "--labels", str(labels), "--quiet")
        losses = losses_by_scenario(labels)
        print("attacks with a loss: " + ", ".join(f"{s} {n}" for s, n in losses.items()))
        if not all(losses.values()):
            print("   (some attack scenario has no attack with a loss here: raise --accounts or --days)")

        _say("4/7 starting the stream worker (atoguard run)")
        port = _free_port()
        worker_log = args.dir / "worker.log"
        worker = subprocess.Popen(
            [*ATOGUARD, "run", "--dev", "--store", "memory", "--app-id", f"{prefix}worker", "--web-port", str(port),
             "--data-dir", str(args.dir / "worker"), "--log-level", "warning",
             *(["--config", str(args.config)] if args.config else [])],
            stdout=worker_log.open("wb"), stderr=subprocess.STDOUT, env=env)
        _wait_healthy(worker, port, worker_log)
        print(f"worker up (health on http://127.0.0.1:{port}/healthz, log {worker_log})")

        from detectors.config import Config
        from simulator.account_service import AccountService, publish_file
        from simulator.generate import KafkaSink
        from streams.config import load_config
        from streams.respond import load_people

        cfg: Config = load_config(args.config)
        with events.open("rb") as fh:
            n_events = sum(1 for _ in fh)
        rate = n_events / (minutes * 60)
        _say(f"5/7 streaming {n_events:,} events at {rate:,.0f}/s for {minutes:g} min; the account service answers")
        with inputs.open("wb") as sent:
            service = AccountService(load_people(str(labels)), bootstrap, prefix, cfg.keys.command_hmac,
                                     worker_group=f"{prefix}worker", transcript=sent,
                                     on_command=_answer_printer)
            view = LiveView(bootstrap, prefix, outputs, service).start()
            t0 = time.monotonic()
            publish_file(events, KafkaSink(bootstrap, prefix, rate, service=service))
            print(f"   all events offered in {time.monotonic() - t0:.0f} s; sending the held-back ones and "
                  "the last answers", flush=True)
            if not service.finish(timeout_s=max(120.0, minutes * 60)):
                print(f"   {service.pending()} inputs still unconfirmed by the worker; going on", flush=True)
            view.drain()
            st = stats = service.stats
            print(f"   done in {time.monotonic() - t0:.0f} s: {st.events_sent:,} events sent, {st.withheld} withheld, "
                  f"{st.held_back:,} held back a moment for the worker, commands "
                  f"{dict(st.commands)}, answers {dict(st.answers)}, bad signatures {st.bad_signatures}")
    except RuntimeError as exc:
        print(f"atoguard demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if view is not None and not view.stop.is_set():
            view.stop.set()
        if service is not None:
            service.close()
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if started_broker is not None and not args.keep_broker:
            started_broker.stop()

    _say("6/7 the report, from what was read back from the output topics")
    with transcript.open("wb") as fh:
        fh.write(inputs.read_bytes())
        fh.write(outputs.read_bytes())
    _run("eval", "--events", str(events), "--labels", str(labels), "--out", str(transcript),
         "--report", str(args.dir / "report"), "--no-progress")

    _say("7/7 live loop vs closed-loop replay of the same events")
    _run("replay", str(events), "--out", str(replay_out), "--respond", str(labels), "--quiet",
         *(["--config", str(args.config)] if args.config else []))

    def commands(path: Path) -> set[str]:
        with path.open("rb") as fh:
            return {m["value"]["command_id"] for m in map(orjson.loads, fh) if m["topic"] == "commands"}
    live, offline = commands(transcript), commands(replay_out)
    print(f"commands live {len(live)}, replay {len(offline)}, in both {len(live & offline)} (the models and "
          "cross-account facts see the accounts slightly out of ts order live, so a few may differ)")
    (args.dir / "summary.json").write_bytes(orjson.dumps({
        "prefix": prefix, "accounts": accounts, "days": days, "minutes": minutes, "attacks_with_loss": losses,
        "events_sent": stats.events_sent, "withheld": stats.withheld, "commands_seen": dict(stats.commands),
        "answers": dict(stats.answers), "bad_signatures": stats.bad_signatures,
        "commands_live": len(live), "commands_replay": len(offline), "commands_both": len(live & offline),
    }, option=orjson.OPT_INDENT_2))
    print(f"\nreport: {args.dir / 'report' / 'report.md'}")
    return 0
