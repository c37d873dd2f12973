"""Fixtures of the stream-runtime tests: a Quix worker in a subprocess, and helpers around it.

``quix_worker(settings, name, *args)`` starts ``atoguard run`` (the Quix runtime) in a
subprocess with its own data dir and web port; every worker started is stopped after the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from detectors import contract as c
from streams.settings import Settings
from streams.topics import topic_name

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcess:
    """``atoguard run`` (the ``runtime`` given) in a subprocess, its log in a file, its /healthz
    at hand; ``args`` are more options of ``atoguard run``."""

    runtime = "quix"

    def __init__(self, settings: Settings, workdir: Path, name: str, args: tuple[str, ...] = (),
                 data: str | None = None, port: int | None = None) -> None:
        self.settings = settings
        self.name = name
        self.port = port or _free_port()
        self.data_dir = workdir / (data or name)
        self.log_path = workdir / f"{name}.log"
        self.args = [sys.executable, "-m", "streams.cli", "run", "--runtime", self.runtime,
                     "--bootstrap-servers", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix,
                     "--data-dir", str(self.data_dir), "--web-port", str(self.port), "--session-timeout", "10",
                     *args]
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> "WorkerProcess":
        self.log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                self.health()
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"worker {self.name} did not answer:\n{self.log_text()[-3000:]}")

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
            return json.load(r)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def handled(self) -> int:
        """Input messages this process has handled (events, verdicts, duplicates, dead letters)."""
        counts = self.health()["events"]
        return sum(counts[k] for k in ("events", "verdicts", "duplicates", "dead_letters"))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None


class QuixProcess(WorkerProcess):
    """The Quix runtime's worker (the default of ``atoguard run``) in a subprocess."""

    runtime = "quix"


@pytest.fixture
def quix_worker(tmp_path) -> Iterator[Callable[..., QuixProcess]]:
    """``quix_worker(settings, name, *args, data=None, port=None)`` starts a Quix worker."""
    made: list[QuixProcess] = []

    def start(settings: Settings, name: str, *args: str, data: str | None = None,
              port: int | None = None) -> QuixProcess:
        w = QuixProcess(settings, tmp_path, name, args, data=data, port=port).start()
        made.append(w)
        return w

    yield start
    for w in made:
        w.stop()


# -- producing and reading with confluent-kafka (the Quix runtime's own client) ---------------------

def produce_lines(settings: Settings, lines: list[dict]) -> dict[str, int]:
    """Produce contract lines ``{"topic", "value"|"raw", "key"?}`` in order, keyed by account id
    (or ``key``); returns the last offset per ``"topic:partition"``."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 10,
                         "partitioner": "murmur2_random"})  # as every producer (contract v3)
    last: dict[str, int] = {}

    def delivered(err, msg) -> None:
        assert err is None, err
        k = f"{msg.topic()}:{msg.partition()}"
        last[k] = max(last.get(k, -1), msg.offset())

    for line in lines:
        if "raw" in line:
            value = line["raw"]
        else:
            value = orjson.dumps(line["value"])
        key = line.get("key", line.get("value", {}).get("account_id", "")).encode()
        producer.produce(topic_name(line["topic"], settings.topic_prefix), key=key, value=value,
                         on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return last


def read_committed(settings: Settings, logical: str, idle_s: float = 2.0,
                   isolation: str = "read_committed") -> list:
    """Every committed message of ``<prefix><logical>`` (isolation.level=read_committed), or
    every message written, aborted ones too, with ``isolation="read_uncommitted"``."""
    from confluent_kafka import Consumer, TopicPartition

    name = topic_name(logical, settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"reader-{time.time_ns()}",
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        parts = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, 0) for p in parts])
        out = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            m = consumer.poll(0.2)
            if m is None or m.error():
                continue
            out.append(m)
            quiet_since = time.monotonic()
        return out
    finally:
        consumer.close()


def wait_committed(settings: Settings, group: str, targets: dict[str, int], timeout_s: float = 60.0,
                   workers: tuple[QuixProcess, ...] = ()) -> None:
    """Until the consumer group ``group`` has committed every input partition past its target
    offset (under exactly-once: the transactions with those inputs' outputs have committed)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False})
    tps = [TopicPartition(k.rsplit(":", 1)[0], int(k.rsplit(":", 1)[1])) for k in targets]
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            done = {f"{tp.topic}:{tp.partition}": tp.offset for tp in consumer.committed(tps, timeout=10)}
            missing = {k: (done.get(k), v) for k, v in targets.items() if done.get(k, -1) <= v}
            if not missing:
                return
            if time.monotonic() > deadline:
                logs = "\n".join(w.log_text()[-2000:] for w in workers)
                raise AssertionError(f"not committed in {timeout_s}s: {missing}\n{logs}")
            time.sleep(0.2)
    finally:
        consumer.close()


def input_lines(path: Path) -> list[dict]:
    """The input lines of a contract JSON Lines file, in file order."""
    out = []
    with open(path, "rb") as fh:
        for line in fh:
            rec = orjson.loads(line)
            if rec.get("topic") in c.INPUT_TOPICS:
                out.append(rec)
    return out


def ts_sorted(lines: list[dict]) -> list[dict]:
    """The reference order: by ``ts``, stable (``atoguard replay`` of the input sorted by ts)."""
    return sorted(lines, key=lambda r: r["value"]["ts"])


@pytest.fixture
def kit():
    """The helpers above, for the test modules (conftest modules are not imported by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(REPO=REPO, input_lines=input_lines, produce_lines=produce_lines,
                           read_committed=read_committed, ts_sorted=ts_sorted, wait_committed=wait_committed)
