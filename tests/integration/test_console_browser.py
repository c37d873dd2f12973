"""The analyst console in a real browser (Playwright driving Debian's headless chromium) against
the real broker, a real worker (``atoguard run``) and ``atoguard console`` in a subprocess.

A simulated trip: ten quiet days at home, then the holder signs in abroad on a new phone, changes
the password, adds a payee and sends money. The worker steps the account up; the holder, abroad,
fails the challenge (the account service's answer is produced here), so the worker freezes it.
In the browser an analyst signs in, finds the frozen account in the queue, reads why, marks it
``legit``; the worker's ``unfreeze`` arrives on the commands topic and the queue no longer lists
the account. A viewer gets no verdict form and is refused when posting one; a forged form (no
CSRF token, from another page) is refused. Screenshots of each page go to docs/console/ when
ATOGUARD_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from detectors import contract as c
from detectors.config import Config
from detectors.events import to_dict
from streams.console.index import account_ref
from tests.test_policy import takeover_stream

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "a long test password"
ACCOUNT = "traveller-7"
SHOTS = REPO / "docs" / "console"
WORKER = [sys.executable, "-m", "streams.cli", "run"]


def _rules() -> tuple[str, ...]:
    """The per-account rules only (as tests/integration/test_live_loop.py): deterministic live."""
    from detectors.base import Rule
    from detectors.registry import build_detectors

    dets = build_detectors(Config(shards=1), 0)
    return tuple(d.name for d in dets if isinstance(d, Rule) and d.name not in ("cross_account", "login_burst"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(kit, settings, predicate, timeout_s=90.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [v for v in (orjson.loads(m.value()) for m in kit.read_committed(settings, c.COMMANDS, idle_s=1.0))
                 if predicate(v)]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError("the awaited command did not arrive")


class _Worker:
    """``atoguard run`` (Quix) in a subprocess, ready once it serves /metrics."""

    def __init__(self, settings, workdir: Path, *args: str) -> None:
        self.port = _free_port()
        self.log_path = workdir / "worker.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*WORKER, "--dev", "--bootstrap-servers", settings.bootstrap_servers,
             "--topic-prefix", settings.topic_prefix, "--data-dir", str(workdir / "w1"), "--web-port", str(self.port),
             "--session-timeout", "10", *args], cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the worker did not serve /metrics: " + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def worker(tmp_path):
    made = []

    def start(settings, *args):
        made.append(_Worker(settings, tmp_path, *args))
        return made[-1]
    yield start
    for w in made:
        w.stop()


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def console_process(tmp_path):
    procs = []

    def start(settings, worker_port):
        users, index = tmp_path / "users.sqlite", tmp_path / "index.sqlite"
        base = [sys.executable, "-m", "streams.cli", "console", "--users", str(users)]
        for name, role in (("ana", "analyst"), ("vera", "viewer"), ("root", "admin")):
            subprocess.run([*base, "--add-user", name, "--role", role], check=True, cwd=REPO, capture_output=True,
                           env=dict(os.environ, ATOGUARD_CONSOLE_PASSWORD=PASSWORD))
        port = _free_port()
        log = open(tmp_path / "console.log", "wb")
        proc = subprocess.Popen([*base, "--index", str(index), "--port", str(port), "--refresh", "2",
                                 "--bootstrap-servers", settings.bootstrap_servers,
                                 "--topic-prefix", settings.topic_prefix,
                                 "--worker-metrics", f"127.0.0.1:{worker_port}"],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/login", timeout=2)
                return url, tmp_path / "console.log"
            except OSError:
                assert proc.poll() is None, (tmp_path / "console.log").read_text()
                time.sleep(0.2)
        raise AssertionError("the console did not answer")

    yield start
    for proc, log in procs:
        proc.terminate()
        proc.wait(20)
        log.close()


def _sign_in(page, url, user):
    page.goto(url + "/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("text=Sign in >> nth=-1")
    page.wait_for_url(url + "/")


def _shot(page, name):
    if os.environ.get("ATOGUARD_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_an_analyst_finds_the_frozen_traveller_reads_why_and_lifts_the_freeze(
        fresh_topics, worker, kit, browser, console_process, tmp_path):
    settings = fresh_topics
    policy = tmp_path / "policy.toml"
    policy.write_text("detectors = [" + ", ".join(f'"{d}"' for d in _rules()) + "]\n"
                      "[stream]\nmax_lateness_ms = 86400000\n")
    w = worker(settings, "--config", str(policy), "--commit-interval", "0.5")

    # the trip: the worker steps the account up, the holder abroad fails the challenge -> freeze.
    # The world answers in time: the failed answer (30 s after the step_up) goes in before the
    # transfer that follows it (3 min after the sign-in), as the account service does live;
    # published after it, the answer would be taken out of order and only alert (live is replay)
    trip = [{"topic": e.topic, "value": to_dict(e)} for e in takeover_stream(ACCOUNT)]
    kit.produce_lines(settings, trip[:-1])
    step_up = _wait_for(kit, settings, lambda v: v["account_id"] == ACCOUNT and v["action"] == c.STEP_UP)
    answer = {"event_id": "ch-" + step_up["command_id"], "account_id": ACCOUNT, "ts": step_up["issued_at"] + 30_000,
              "kind": c.CHALLENGE_FAILED, "method": step_up["methods"][0], "reason": "wrong_code",
              "command_id": step_up["command_id"], "device_id": "evil", "ip": "203.0.113.9"}
    assert answer["ts"] < trip[-1]["value"]["ts"]
    kit.produce_lines(settings, [{"topic": c.DEVICE, "value": answer}])
    freeze = _wait_for(kit, settings, lambda v: v["account_id"] == ACCOUNT and v["action"] == c.FREEZE)
    kit.produce_lines(settings, trip[-1:])  # the thief's transfer, now against a frozen account

    url, console_log = console_process(settings, w.port)
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(url + "/")
    assert page.url == url + "/login"  # sign-in required
    _shot(page, "login")
    _sign_in(page, url, "ana")

    # the queue lists the frozen account first (the page refreshes itself every 2 s)
    row = page.locator("#queue tr.case", has_text=ACCOUNT)
    row.first.wait_for(timeout=60_000)
    assert "freeze" in page.locator("#queue tr.case").first.inner_text()
    _shot(page, "queue")
    row.first.locator("a").click()

    # why: the freeze's reasons in words and the message the holder saw; no raw device or address
    why = page.locator("#why").inner_text()
    assert freeze["reasons"][0] in why and freeze["message"][:40] in why
    html = page.content()
    assert "evil" not in html and "203.0.113.9" not in html and "198.51.100.1" not in html
    assert "lifts the freeze" in page.locator("#verdict").inner_text()
    _shot(page, "account")

    # a forged form from another page (no token; the browser's own cookie) is refused
    forged = ctx.new_page()
    forged.set_content(f'<form method="post" action="{url}/account/{account_ref(ACCOUNT, Config().keys.pseudonym_hmac)}'
                       f'/verdict"><input name="label" value="ato"><button id="go">go</button></form>')
    with forged.expect_navigation():
        forged.click("#go")
    assert "Refused" in forged.content()
    forged.close()

    # the verdict: legit, with a note; the worker's unfreeze arrives on the commands topic
    page.check("input[value=legit]")
    page.fill("textarea[name=note]", "holder on a trip, confirmed by phone")
    page.click("text=Publish verdict")
    assert "Verdict published" in page.content()
    unfreeze = _wait_for(kit, settings, lambda v: v["account_id"] == ACCOUNT and v["action"] == c.UNFREEZE)
    verdict = next(orjson.loads(m.value()) for m in kit.read_committed(settings, c.VERDICTS, idle_s=1.0))
    assert unfreeze["trigger_event_id"] == verdict["verdict_id"] and verdict["actor"].startswith("analyst:")
    assert verdict["label"] == "legit" and verdict["note"] == "holder on a trip, confirmed by phone"

    # the account page shows the unfreeze and the audit entry; the queue no longer lists the account
    deadline = time.monotonic() + 30
    while "unfreeze" not in page.locator("#timeline").inner_text() and time.monotonic() < deadline:
        time.sleep(1)
        page.reload()
    assert "unfreeze" in page.locator("#timeline").inner_text()
    assert "ana (analyst)" in page.locator("#audit").inner_text()
    _shot(page, "account-after-verdict")
    page.goto(url + "/")
    assert page.locator("#queue tr.case", has_text=ACCOUNT).count() == 0

    for name in ("shadow", "health"):
        page.goto(f"{url}/{name}")
        assert page.locator("h1").count() == 1
        _shot(page, name)
    assert "consumer lag" in page.content()  # the worker's metrics on the health page

    # a viewer reads but cannot give a verdict, not even by posting the form by hand
    viewer = browser.new_context().new_page()
    _sign_in(viewer, url, "vera")
    ref = account_ref(ACCOUNT, Config().keys.pseudonym_hmac)
    viewer.goto(f"{url}/account/{ref}")
    assert viewer.locator("#verdict").count() == 0 and "may read but not give verdicts" in viewer.content()
    csrf = re.search(r'name="csrf" value="([^"]+)"', viewer.content()).group(1)
    refused = viewer.request.post(f"{url}/account/{ref}/verdict", form={"label": "ato", "csrf": csrf})
    assert refused.status == 403
    viewer.goto(url + "/audit")
    assert viewer.locator("h1").inner_text() == "Refused"

    # an admin reads the audit log: the verdict and the refusals, who and when
    admin = browser.new_context().new_page()
    _sign_in(admin, url, "root")
    admin.goto(url + "/audit")
    text = admin.locator("#audit").inner_text()
    assert "verdict" in text and "ana" in text and "refused" in text
    _shot(admin, "audit")

    # no raw account id, device id or address in the console's log
    log = console_log.read_text()
    assert ACCOUNT not in log and "203.0.113.9" not in log
