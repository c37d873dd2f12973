"""``atoguard account`` against a live Quix worker: the account's state comes from the worker's
changelog topic, its decisions from the output topics (read_committed)."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from detectors import contract as c
from detectors.config import Config
from detectors.outputs import pseudonym

pytestmark = pytest.mark.kafka

T0 = 1_764_000_000_000
DAY, MIN = 86_400_000, 60_000
ACCOUNT = "acct-step"
NEW_DEVICE, NEW_IP = "dev-new-phone", "198.51.100.13"


def step_up_stream(account: str) -> list[dict]:
    """Six ordinary days (home phone in Paris, a small payment), then a new phone in New York
    that sends 900 EUR to a new payee: the engine asks for a step-up."""
    lines = []
    for d in range(6):
        t, ev = T0 + d * DAY, f"{account}-d{d}"
        common = {"device_id": "dev-home", "session_id": f"s-{ev}"}
        lines += [
            {"topic": c.DEVICE, "value": dict(event_id=f"{ev}-login", account_id=account, ts=t, kind="login_success",
                                              ip="10.1.1.10", **common)},
            {"topic": c.LOCATION, "value": dict(event_id=f"{ev}-gps", account_id=account, ts=t + 3 * MIN,
                                                kind="gps_fix", lat=48.85, lon=2.35, country="FR",
                                                device_id="dev-home", accuracy_m=20)},
            {"topic": c.TRANSACTION, "value": dict(event_id=f"{ev}-pay", account_id=account, ts=t + 5 * MIN,
                                                   kind="payment", amount=25.0, currency="EUR",
                                                   counterparty_id="shop-1", channel="app",
                                                   balance_after=5000.0 - d * 40, **common)},
        ]
    t, ev = T0 + 6 * DAY, f"{account}-d6"
    common = {"device_id": NEW_DEVICE, "session_id": f"s-{ev}"}
    lines += [
        {"topic": c.DEVICE, "value": dict(event_id=f"{ev}-login", account_id=account, ts=t, kind="login_success",
                                          ip=NEW_IP, **common)},
        {"topic": c.LOCATION, "value": dict(event_id=f"{ev}-gps", account_id=account, ts=t + 3 * MIN, kind="gps_fix",
                                            lat=40.71, lon=-74.0, country="US", device_id=NEW_DEVICE, accuracy_m=20)},
        {"topic": c.TRANSACTION, "value": dict(event_id=f"{ev}-pay", account_id=account, ts=t + 5 * MIN,
                                               kind="transfer_out", amount=900.0, currency="EUR",
                                               counterparty_id="p-new", channel="app", balance_after=4000.0,
                                               **common)},
    ]
    return lines


def atoguard_account(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "account", *args,
                           "--bootstrap-servers", settings.bootstrap_servers,
                           "--topic-prefix", settings.topic_prefix, "--timeout", "30"],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def stepped_up(fresh_topics, quix_worker, kit):
    """A Quix worker has processed the step-up stream and committed it; returns the settings and
    the commands it wrote."""
    settings = fresh_topics
    lines = step_up_stream(ACCOUNT)
    targets = kit.produce_lines(settings, lines)
    worker = quix_worker(settings, "w1", "--instance-id", "w1")
    deadline = time.monotonic() + 60
    while worker.handled() < len(lines):  # processed; then committed (the group's offsets)
        assert time.monotonic() < deadline, worker.log_text()[-3000:]
        time.sleep(0.2)
    kit.wait_committed(settings, f"{settings.topic_prefix}worker", targets, workers=(worker,))
    commands = [orjson.loads(m.value()) for m in kit.read_committed(settings, c.COMMANDS)]
    assert [cmd["action"] for cmd in commands] == [c.STEP_UP]  # the stream does what it is for
    return settings, commands


def test_account_shows_the_step_up_state_and_its_command(stepped_up):
    settings, commands = stepped_up
    step_up = commands[-1]
    done = atoguard_account(settings, ACCOUNT)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    restriction = next(line for line in out.splitlines() if line.strip().startswith("restriction"))
    assert "step_up" in restriction
    assert f"open challenge   step_up {step_up['command_id']}" in out
    assert ", ".join(step_up["methods"]) in out
    assert step_up["message"] in out
    assert all(code in out for code in step_up["reasons"])
    key = Config().keys.pseudonym_hmac
    assert pseudonym(NEW_DEVICE, key) in out  # the challenge's device, pseudonymised ...
    assert NEW_DEVICE not in out and NEW_IP not in out  # ... never in clear

    as_json = atoguard_account(settings, ACCOUNT, "--json")
    assert as_json.returncode == 0, as_json.stderr
    view = orjson.loads(as_json.stdout)
    assert view["profile"]["restriction"]["state"] == "step_up"
    assert view["profile"]["challenge"]["command_id"] == step_up["command_id"]
    assert view["profile"]["challenge"]["device"] == pseudonym(NEW_DEVICE, key)
    assert [cmd["command_id"] for cmd in view["commands"]] == [step_up["command_id"]]
    assert view["alerts"] and view["alerts"][-1]["alert_id"] == step_up["alert_id"]


def test_unknown_account_is_one_line_and_exit_1(stepped_up):
    settings, _ = stepped_up
    done = atoguard_account(settings, "nobody-here")
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "nobody-here" in done.stderr and "not found" in done.stderr
