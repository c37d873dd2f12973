"""The demo's orchestration: the product working, live, then the report from what the worker
wrote. ``atoguard demo`` (:mod:`streams.cli.demo`) parses the options and calls :func:`run`.

Steps (each prints what it does):
  1. start the local Kafka broker (or use the one at --bootstrap-servers if it answers);
  2. create the contract topics under a fresh prefix (demo<N>.), so runs never mix;
  3. simulate a population with ground truth (events file + labels) in which every attack
     scenario has attacks with a loss (the attack shares are raised so a small population has
     them; the labels are checked and the count printed);
  4. start the stream worker (`atoguard run`) on those topics, and the analyst console
     (`atoguard console`) over them, with a demo sign-in it prints;
  5. stream the events to the input topics at a steady rate for --minutes, through the live
     account service (simulator/account_service.py), which answers the worker's step-ups and
     freezes on <prefix>device and withholds the events of attackers it refused. The live view
     (:class:`LiveView`) is a steady status line (events/s, the worker's lag, commands by action,
     answers) and a short log of what matters - freezes, closes, unfreezes, failed challenges and
     the first few step-ups, with the holder's message - in simulated-time order; everything else
     is counted, and the console shows all of it;
  6. close every client, then stop the console, the worker and the broker (in that order);
     read back the commands and alerts and score the transcript (inputs sent + answers + outputs
     read) against the labels (`atoguard eval`);
  7. compare with the closed-loop replay (`atoguard replay --respond`) of the same events.

Ctrl-C stops everything the demo started (console, worker, broker) and says so.

example:
  atoguard demo                       # 6-7 minutes: the account service waits for the worker
  atoguard demo --short               # about three minutes in all (what the tests run)
  atoguard demo --accounts 3000 --days 14 --minutes 4 --dir demo-out
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
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


def port_if_free(port: int) -> int | None:
    """``port`` when nothing listens on it on the loopback, else ``None``."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return None
    return port


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


#: how many step-ups the log shows before it only counts them
STEP_UPS_SHOWN = 3
#: the longest an answer comes after its command in simulated time (an id_check answer: 2 h)
ANSWER_HORIZON_MS = 2 * 3_600_000 + 60_000
#: the holder's message is cut to this many characters in the log (the console shows it whole)
MESSAGE_CHARS = 180


class LiveView:
    """What the demo shows while it streams: a steady status area and a short log.

    Reads the output topics (read_committed) into ``out``. Every ``every_s`` it prints the log
    entries gathered since (freezes, closes, unfreezes, failed challenges, the first
    :data:`STEP_UPS_SHOWN` step-ups; each with its simulated time, sorted by it) and then one
    status line (events/s, the worker's lag, commands by action, answers, alerts). On a terminal
    the status line stays at the bottom and is redrawn in place; elsewhere it is one line per tick.
    """

    def __init__(self, bootstrap: str, prefix: str, out: Path, service, every_s: float = 5.0,
                 tty: bool | None = None) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from streams.topics import topic_name

        self.prefix, self.service, self.every_s = prefix, service, every_s
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.out = out.open("wb")
        self.outputs: Counter = Counter()
        self.actions: Counter = Counter()
        self.stop = threading.Event()
        self._log: list[tuple[int, int, list[str]]] = []  # (simulated ts, seq, lines)
        self._seq = 0
        self._lock = threading.Lock()
        self._status = ""
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
        self._closed = False

    def start(self) -> "LiveView":
        print(f"   the live view: every {self.every_s:g} s the freezes, closes, unfreezes, failed challenges and the "
              f"first {STEP_UPS_SHOWN} step-ups, in simulated-time order (each held until the simulation is 2 h past "
              "it, so late answers still fit), then a status line; everything else is counted (the console shows "
              "all of it)", flush=True)
        self._began = time.monotonic()
        self._last = (self._began, 0)
        self._thread.start()
        return self

    def note(self, ts: int, *lines: str) -> None:
        """A log entry at simulated time ``ts``; printed at the next tick, in ts order."""
        with self._lock:
            self._seq += 1
            self._log.append((ts, self._seq, list(lines)))

    def lag(self) -> int:
        """Input messages the worker has not committed yet."""
        committed = {(tp.topic, tp.partition): tp.offset for tp in self._lag.committed(self._inputs, timeout=5)}
        total = 0
        for tp in self._inputs:
            _, high = self._lag.get_watermark_offsets(tp, 5, False)
            total += max(0, high - max(committed.get((tp.topic, tp.partition), 0), 0))
        return total

    def _loop(self) -> None:
        while not self.stop.is_set():
            for msg in self._reader.consume(200, 0.2):
                if msg.error():
                    continue
                self._output(msg)
            if time.monotonic() - self._last[0] >= self.every_s:
                self.tick()

    def tick(self) -> None:
        """Print the log entries gathered since the last tick (ts order), then the status."""
        now = time.monotonic()
        st = self.service.stats
        rate = (st.events_sent - self._last[1]) / max(now - self._last[0], 1e-9)
        self._last = (now, st.events_sent)
        # an entry waits until the simulated time the service has reached is past it by the
        # longest answer delay (an id_check answer comes 2 h after its command), so that what
        # arrives a little late still prints in order; the last tick prints everything
        horizon = getattr(self.service, "now", -1) - ANSWER_HORIZON_MS if not self.stop.is_set() else None
        with self._lock:
            self._log.sort()
            cut = len(self._log) if horizon is None else sum(1 for ts, _, _ in self._log if ts <= horizon)
            entries, self._log = self._log[:cut], self._log[cut:]
        try:
            lag = f"{self.lag():,}"
        except Exception:  # the broker is going away at the end
            lag = "?"
        actions = ", ".join(f"{n} {a}" for a, n in sorted(self.actions.items())) or "none"
        self._status = (f"[{now - self._began:4.0f} s] {rate:5.0f} events/s  sent {st.events_sent:,}  lag {lag}  "
                        f"commands: {actions}  answers {st.answers['challenge_passed']} passed / "
                        f"{st.answers['challenge_failed']} failed  withheld {st.withheld}  alerts {self.outputs['alerts']}")
        lines = [line for _, _, group in entries for line in group]
        if self.tty:
            sys.stdout.write("\r\033[K" + "".join(f"{line}\n" for line in lines) + self._status)
            sys.stdout.flush()
        else:
            print("".join(f"{line}\n" for line in lines) + "   " + self._status, flush=True)

    def drain(self, quiet_s: float = 2.0) -> None:
        """Stop after the output topics were quiet for ``quiet_s``; a last tick, then close."""
        while time.monotonic() - self.quiet_since < quiet_s:
            time.sleep(0.2)
        self.stop.set()
        self._thread.join(10)
        self.tick()  # stop is set: every entry still held prints now
        if self.tty:
            print(flush=True)
        self.close()

    def close(self) -> None:
        """Close the view's Kafka clients and its file (idempotent)."""
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if not self._closed:
            self._closed = True
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
        if logical != "commands":
            return
        action = value["action"]
        self.actions[action] += 1
        if action == "step_up" and self.actions[action] > STEP_UPS_SHOWN:
            return
        reasons = ", ".join(value.get("reasons", [])[:3])
        methods = "/".join(value.get("methods") or []) or "-"
        more = f" (the first {STEP_UPS_SHOWN} step-ups are shown, the rest counted)" \
            if action == "step_up" and self.actions[action] == STEP_UPS_SHOWN else ""
        lines = [f"   {_utc(value['issued_at'])}  {value['account_id']:<12}  {action.upper():<9} "
                 f"risk {value.get('risk', 0):.2f}  methods {methods}  [{reasons}]{more}"]
        if value.get("message") and action != "unfreeze":
            text = value["message"]
            text = text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS].rsplit(" ", 1)[0] + " ..."
            lines.append(f"{'':37}holder sees: \"{text}\"")
        self.note(value["issued_at"], *lines)

    def answered(self, cmd: dict, answer: dict | None) -> None:
        """The account service's hook: log a failed challenge (passes are counted)."""
        if answer is None or answer["kind"] == "challenge_passed":
            return
        self.note(answer["ts"], f"   {_utc(answer['ts'])}  {cmd['account_id']:<12}  account service: the "
                                f"{cmd['action']} challenge ({answer['method']}) FAILS ({answer.get('reason')})")


def _wait_up(proc: subprocess.Popen, url: str, log: Path, what: str, timeout_s: float = 90) -> None:
    """Until ``url`` answers (any status: the process serves), or ``proc`` exits."""
    import urllib.error

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {what} exited early; its log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the {what} did not answer within {timeout_s:.0f} s; its log: {log}")


def _stop(proc: subprocess.Popen | None, timeout_s: float = 30) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_console(args, env: dict, prefix: str, worker_port: int) -> tuple[subprocess.Popen, str, str, Path]:
    """``atoguard console`` over the demo's topics, with a demo analyst; returns the process,
    its address, the password and its log."""
    console_dir = args.dir / "console"
    console_dir.mkdir(parents=True, exist_ok=True)
    users = console_dir / "users.sqlite"
    password = secrets.token_urlsafe(12)
    subprocess.run([*ATOGUARD, "console", "--users", str(users), "--add-user", "demo", "--role", "analyst"],
                   check=True, env=dict(env, ATOGUARD_CONSOLE_PASSWORD=password), stdout=subprocess.DEVNULL)
    port = getattr(args, "console_port", None) or _free_port()
    index = console_dir / f"index-{prefix.rstrip('.')}.sqlite"
    log = console_dir / "console.log"
    proc = subprocess.Popen([*ATOGUARD, "console", "--users", str(users), "--index", str(index), "--port", str(port),
                             "--worker-metrics", f"127.0.0.1:{worker_port}", "--refresh", "5",
                             *(["--config", str(args.config)] if args.config else [])],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    _wait_up(proc, url + "login", log, "console", 60)
    return proc, url, password, log


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
    started_broker = worker = console = service = view = None
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

        _say("4/7 starting the stream worker (atoguard run) and the analyst console (atoguard console)")
        port = _free_port()
        worker_log = args.dir / "worker.log"
        worker = subprocess.Popen(
            [*ATOGUARD, "run", "--dev", "--store", "memory", "--app-id", f"{prefix}worker", "--web-port", str(port),
             "--data-dir", str(args.dir / "worker"), "--log-level", "warning",
             *(["--config", str(args.config)] if args.config else [])],
            stdout=worker_log.open("wb"), stderr=subprocess.STDOUT, env=env)
        _wait_up(worker, f"http://127.0.0.1:{port}/metrics", worker_log, "worker")
        print(f"worker up (metrics on http://127.0.0.1:{port}/metrics, log {worker_log})")
        console, console_url, password, console_log = _start_console(args, env, prefix, port)
        print(f"console: {console_url}  sign in as demo / {password}  (it shows the demo's traffic live; "
              f"log {console_log})", flush=True)

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
            hook: list = []
            service = AccountService(load_people(str(labels)), bootstrap, prefix, cfg.keys.command_hmac,
                                     max_skew_ms=cfg.stream.max_lateness_ms // 2,
                                     worker_group=f"{prefix}worker", transcript=sent,
                                     on_command=lambda cmd, answer: hook and hook[0](cmd, answer))
            view = LiveView(bootstrap, prefix, outputs, service).start()
            hook.append(view.answered)
            t0 = time.monotonic()
            publish_file(events, KafkaSink(bootstrap, prefix, rate, service=service))
            print(f"   all events offered in {time.monotonic() - t0:.0f} s; sending the held-back ones and "
                  "the last answers", flush=True)
            if not service.finish(timeout_s=max(600.0, minutes * 300)):
                print(f"   {service.pending()} inputs still unconfirmed by the worker; going on", flush=True)
            view.drain()
            st = stats = service.stats
            if console is not None:
                print(f"   the console still shows it all at {console_url} until the demo ends", flush=True)
            print(f"   done in {time.monotonic() - t0:.0f} s: {st.events_sent:,} events sent, {st.withheld} withheld, "
                  f"{st.held_back:,} held back a moment for the worker, commands "
                  f"{dict(st.commands)}, answers {dict(st.answers)}, bad signatures {st.bad_signatures}")
    except RuntimeError as exc:
        print(f"atoguard demo: {exc}", file=sys.stderr)
        return 1
    finally:
        # every client first (the view's consumers, the service's producer and consumers), then
        # the console and the worker, then the broker: nothing is left to reconnect to it
        print("\n   closing the demo's Kafka clients, then stopping the console and the worker"
              + ("" if started_broker is None or args.keep_broker else ", then the broker"), flush=True)
        if view is not None:
            view.close()
        if service is not None:
            service.close()
        view = service = None
        gc.collect()  # the confluent-kafka producer and consumers are destroyed here, not at exit
        _stop(console)
        _stop(worker)
        if started_broker is not None and not args.keep_broker:
            started_broker.stop()
            print("   broker stopped", flush=True)

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
    print(f"commands live {len(live)}, replay {len(offline)}, in both {len(live & offline)} (the account service "
          "lets no account fall more than half the allowed lateness behind the others; within that, the online "
          "models and the cross-account facts may see the accounts a little out of ts order live)")
    (args.dir / "summary.json").write_bytes(orjson.dumps({
        "prefix": prefix, "accounts": accounts, "days": days, "minutes": minutes, "attacks_with_loss": losses,
        "events_sent": stats.events_sent, "withheld": stats.withheld, "commands_seen": dict(stats.commands),
        "answers": dict(stats.answers), "bad_signatures": stats.bad_signatures,
        "commands_live": len(live), "commands_replay": len(offline), "commands_both": len(live & offline),
    }, option=orjson.OPT_INDENT_2))
    print(f"\nreport: {args.dir / 'report' / 'report.md'}")
    return 0
