"""Security against a real broker with a SASL_SSL listener (SCRAM-SHA-512, certificates made for
the test) and ACLs (StandardAuthorizer): the worker with the right and the wrong credentials, what
its principal may and may not do, another principal refused on the command topic, the reference
consumer refusing forged, altered and replayed commands, no IP address or device id in clear in
the outputs, log or metrics of a run, the built-in development keys refused, a snapshot with a
bad signature refused, no secret in ``--help``.

The module starts its own secured broker (the session broker of the other tests is plaintext).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from detectors import contract as c
from detectors.outputs import sign
from streams import reference_consumer as rc
from streams.security import worker_acls
from streams.settings import Settings
from streams.topics import create_topics, topic_name
from tools.kafka_broker import Broker, BrokerConfig, BrokerError

REPO = Path(__file__).resolve().parents[2]
PREFIX = "sec."
APP_ID = f"{PREFIX}worker"
WORKER, WORKER_PASSWORD = "ato-worker", "worker-pass-7d1f0c"
INTRUDER, INTRUDER_PASSWORD = "intruder", "intruder-pass-55ab"
#: real (non-development) keys for the worker run, from the environment as in production
KEYS = {"ATOGUARD_KEYS__COMMAND_HMAC": "test-command-key-0b6e2a9c41",
        "ATOGUARD_KEYS__PSEUDONYM_HMAC": "test-pseudonym-key-7f3d18e2aa",
        "ATOGUARD_KEYS__SNAPSHOT_HMAC": "test-snapshot-key-c94e0d7713"}

pytestmark = pytest.mark.kafka


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """A SASL_SSL + ACL broker with the contract's topics under ``sec.``, a worker principal
    holding exactly :func:`worker_acls`, and an intruder principal holding none."""
    port, ctl = _free_port(), _free_port()
    broker = Broker(BrokerConfig(port=port, controller_port=ctl, heap="512m", security="sasl_ssl",
                                 data_dir=tmp_path_factory.mktemp("secure-kafka")))
    try:
        broker.start(timeout_s=120)
    except BrokerError as exc:
        pytest.fail(f"could not start the secured broker: {exc}")
    try:
        admin = Settings(bootstrap_servers=broker.config.bootstrap, topic_prefix=PREFIX, partitions=3,
                         security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="admin",
                         sasl_password=broker.admin_password(), ssl_cafile=str(broker.config.ca_file))
        create_topics(admin)
        broker.add_scram_user(WORKER, WORKER_PASSWORD)
        broker.add_scram_user(INTRUDER, INTRUDER_PASSWORD)
        broker.add_acls(worker_acls(admin, APP_ID, f"User:{WORKER}"))
        yield broker, admin
    finally:
        broker.stop()


def as_user(admin: Settings, user: str, password: str) -> Settings:
    from dataclasses import replace

    return replace(admin, sasl_username=user, sasl_password=password)


def worker_env(admin: Settings, password: str = WORKER_PASSWORD, dev: bool = False) -> dict[str, str]:
    """The environment of a worker connecting as the worker principal; secrets only here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATOGUARD_")}
    env.update(KEYS, PYTHONUNBUFFERED="1", ATOGUARD_SECURITY_PROTOCOL="SASL_SSL",
               ATOGUARD_SASL_MECHANISM="SCRAM-SHA-512", ATOGUARD_SASL_USERNAME=WORKER,
               ATOGUARD_SASL_PASSWORD=password, ATOGUARD_SSL_CAFILE=admin.ssl_cafile)
    if dev:
        env["ATOGUARD_DEV"] = "1"
    return env


def produce(settings: Settings, lines: list[tuple[str, bytes | None, bytes]]) -> list:
    """Produce ``(topic name, key, value)`` as the settings' user; returns the delivery errors."""
    from confluent_kafka import Producer

    errors: list = []
    producer = Producer({**settings.librdkafka_options(), "linger.ms": 5, "log_level": 0, "partitioner": "murmur2_random",
                         "message.timeout.ms": 15000})
    for topic, key, value in lines:
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: errors.append(err))
        producer.poll(0)
    producer.flush(30)
    return errors


def read_all(settings: Settings, logical: str, idle_s: float = 3.0) -> list:
    from confluent_kafka import Consumer, TopicPartition

    name = topic_name(logical, settings.topic_prefix)
    consumer = Consumer({**settings.librdkafka_options(), "group.id": f"reader-{time.time_ns()}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "log_level": 0})
    try:
        parts = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, 0) for p in parts])
        out, quiet = [], time.monotonic()
        while time.monotonic() - quiet < idle_s:
            m = consumer.poll(0.2)
            if m is not None and not m.error():
                out.append(m)
                quiet = time.monotonic()
        return out
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("sim-sec") / "events.jsonl"
    done = subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--accounts", "120", "--days", "3",
                           "--seed", "11", "--rate-credential-stuffing", "0.05", "--rate-phishing-takeover", "0.05",
                           "--rate-session-hijack", "0.05", "--out", str(out), "--labels",
                           str(out.with_suffix(".labels")), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [r for r in map(orjson.loads, out.read_bytes().splitlines()) if r.get("topic") in c.INPUT_TOPICS]


def start_worker(tmp_path: Path, admin: Settings, env: dict[str, str], name: str = "w1") -> tuple:
    port = _free_port()
    log = tmp_path / f"{name}.log"
    args = [sys.executable, "-m", "streams.cli", "run", "--bootstrap-servers", admin.bootstrap_servers,
            "--topic-prefix", PREFIX, "--data-dir", str(tmp_path / name), "--web-port", str(port),
            "--instance-id", name, "--session-timeout", "10"]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    return proc, port, log


def health(port: int) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        return json.load(r)


def test_worker_with_right_credentials_works_and_leaks_no_ip_device_or_secret(secure, simulated, tmp_path):
    broker, admin = secure

    lines = [(topic_name(r["topic"], PREFIX), r["value"]["account_id"].encode(), orjson.dumps(r["value"]))
             for r in simulated]
    assert produce(admin, lines) == [None] * len(lines)
    proc, port, log = start_worker(tmp_path, admin, worker_env(admin))  # real keys, no --dev
    try:
        deadline = time.monotonic() + 120
        handled = 0
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                counts = health(port)["events"]
                handled = sum(counts[k] for k in ("events", "verdicts", "duplicates", "dead_letters"))
            except OSError:
                pass
            if handled >= len(lines):
                break
            time.sleep(0.5)
        assert handled == len(lines), log.read_text()[-3000:]
        import urllib.request

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        time.sleep(1.0)  # the last checkpoint (commit interval 0.1 s)
    finally:
        proc.terminate()
        proc.wait(60)
    assert proc.returncode == 0
    text = log.read_text(errors="replace")

    outputs = {t: read_all(admin, t) for t in c.OUTPUT_TOPICS}
    assert outputs[c.COMMANDS] and outputs[c.ALERTS], "the run made no command or alert to scan"
    assert outputs[c.DEAD_LETTER] == []
    blob = b"\n".join(m.value() + b"|" + (m.key() or b"") + b"|" + repr(m.headers()).encode()
                      for msgs in outputs.values() for m in msgs)
    blob += text.encode() + metrics.encode()
    secrets = {"ip": {r["value"]["ip"] for r in simulated if r["value"].get("ip")},
               "device": {r["value"]["device_id"] for r in simulated if r["value"].get("device_id")}}
    assert len(secrets["ip"]) > 50 and len(secrets["device"]) > 50
    for kind, values in secrets.items():
        leaked = sorted(v for v in values if v.encode() in blob)
        assert leaked == [], f"{kind} in clear in outputs, log or metrics: {leaked[:5]}"
    for secret in (WORKER_PASSWORD, *KEYS.values()):
        assert secret.encode() not in blob
    # the worker's commands pass the reference consumer's check with the real key
    gate = rc.CommandGate(KEYS["ATOGUARD_KEYS__COMMAND_HMAC"])
    assert {gate.check(m.value(), m.key()).reason for m in outputs[c.COMMANDS]} == {rc.ACCEPTED}


def test_worker_with_wrong_password_fails_in_one_line(secure, tmp_path):
    broker, admin = secure
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "run", "--bootstrap-servers", admin.bootstrap_servers,
         "--topic-prefix", PREFIX, "--data-dir", str(tmp_path / "w"), "--web-port", str(_free_port())],
        cwd=REPO, env=worker_env(admin, password="not-the-password"), capture_output=True, text=True, timeout=90)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("atoguard run: authentication to ") and "ATOGUARD_SASL_PASSWORD" in lines[0]
    assert "not-the-password" not in done.stderr + done.stdout


def test_acls_let_the_worker_do_its_job_only_and_refuse_others_the_command_topic(secure):
    from confluent_kafka import KafkaError

    broker, admin = secure
    worker = as_user(admin, WORKER, WORKER_PASSWORD)
    intruder = as_user(admin, INTRUDER, INTRUDER_PASSWORD)
    forged = (topic_name(c.COMMANDS, PREFIX), b"acct-1", b'{"command_id": "x", "action": "freeze"}')
    [err] = produce(intruder, [forged])
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # the worker's principal may write its outputs but not the input topics
    [ok] = produce(worker, [(topic_name(c.DEAD_LETTER, PREFIX), b"k", b"{}")])
    assert ok is None
    [err] = produce(worker, [(topic_name(c.DEVICE, PREFIX), b"acct-1", b"{}")])
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # nor read the outputs (another group, another topic)
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({**worker.librdkafka_options(), "group.id": "not-the-worker-group",
                         "auto.offset.reset": "earliest", "log_level": 0})
    try:
        consumer.assign([TopicPartition(topic_name(c.COMMANDS, PREFIX), 0, 0)])
        deadline, refused = time.monotonic() + 15, None
        while refused is None and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error():
                refused = m.error().code()
        assert refused in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    except KafkaException as exc:
        assert exc.args[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    finally:
        consumer.close()


def test_reference_consumer_refuses_forged_altered_and_replayed_commands(secure):
    broker, admin = secure
    # a topic of its own: the worker of an earlier test wrote its commands under ``sec.``
    admin = dataclasses.replace(admin, topic_prefix="ref.")
    create_topics(admin)
    key = KEYS["ATOGUARD_KEYS__COMMAND_HMAC"]
    prefix_topic = topic_name(c.COMMANDS, admin.topic_prefix)

    def command(cid: str, account: str, signing_key: str = key, **changes) -> dict:
        value = {"command_id": cid, "account_id": account, "action": "freeze", "reasons": ["NEW_DEVICE"],
                 "issued_at": 1767746171859, "dry_run": False, "methods": ["face"]}
        value["signature"] = sign(value, signing_key)
        value.update(changes)  # after signing: an alteration
        return value

    good = command("cmd-good", "acct-ref-1")
    sent = [
        ("good", good["account_id"], good),
        ("replayed", good["account_id"], good),
        ("forged", "acct-ref-2", command("cmd-forged", "acct-ref-2", signing_key="guessed-dev-key-123")),
        ("altered", "acct-ref-3", command("cmd-altered", "acct-ref-3", action="close")),
        ("moved", "acct-ref-4", command("cmd-moved", "acct-ref-3")),
        ("garbage", "acct-ref-5", None),
    ]
    lines = [(prefix_topic, account.encode(), orjson.dumps(v) if v is not None else b"\xffnot json")
             for _, account, v in sent]
    # one partition per account key; send all under one key so the order is the order sent
    from confluent_kafka import Producer

    producer = Producer({**admin.librdkafka_options(), "log_level": 0})
    for topic, k, v in lines:
        producer.produce(topic, key=k, value=v, partition=0)
    assert producer.flush(30) == 0

    applied, refused = [], []
    rc.consume(admin, key, applied.append, group_id="account-service-test", idle_s=4.0,
               on_refused=lambda d: refused.append(d.reason))
    assert [a["command_id"] for a in applied] == ["cmd-good"]
    assert refused == [rc.REPEAT, rc.BAD_SIGNATURE, rc.BAD_SIGNATURE, rc.KEY_MISMATCH, rc.NOT_A_COMMAND]


def test_built_in_development_keys_are_refused_unless_a_development_run(secure, tmp_path):
    broker, admin = secure
    env = {k: v for k, v in worker_env(admin).items() if not k.startswith("ATOGUARD_KEYS__")}
    args = [sys.executable, "-m", "streams.cli", "run", "--bootstrap-servers", admin.bootstrap_servers,
            "--topic-prefix", PREFIX, "--data-dir", str(tmp_path / "w"), "--web-port", str(_free_port())]
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "built-in development keys" in line and "ATOGUARD_KEYS__COMMAND_HMAC" in line and "--dev" in line
    # one real key is not enough: the others are named
    done = subprocess.run(args, cwd=REPO, env={**env, "ATOGUARD_KEYS__COMMAND_HMAC": "a-real-key-123456"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "ATOGUARD_KEYS__COMMAND_HMAC" not in done.stderr
    assert "ATOGUARD_KEYS__SNAPSHOT_HMAC" in done.stderr
    # a development run goes past the check (and here fails later, on a wrong password)
    bad = {**env, "ATOGUARD_DEV": "1", "ATOGUARD_SASL_PASSWORD": "wrong"}
    done = subprocess.run(args, cwd=REPO, env=bad, capture_output=True, text=True, timeout=90)
    assert "development keys" not in done.stderr and "authentication" in done.stderr
    done = subprocess.run([*args, "--dev"], cwd=REPO, env={**bad, "ATOGUARD_DEV": "0"},
                          capture_output=True, text=True, timeout=90)
    assert "development keys" not in done.stderr and "authentication" in done.stderr


def test_help_shows_no_secret_and_no_option_takes_one():
    env = {**os.environ, "ATOGUARD_SASL_PASSWORD": "help-secret-91", **KEYS}
    for command in (["--help"], ["run", "--help"], ["commands", "tail", "--help"], ["verdict", "--help"]):
        done = subprocess.run([sys.executable, "-m", "streams.cli", *command], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "help-secret-91" not in out and not any(v in out for v in KEYS.values())
        assert "--sasl-password" not in out and "--password" not in out and "--key " not in out
