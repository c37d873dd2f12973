"""``atoguard demo --short`` against the real broker: about three minutes, every step done, the
console's address and sign-in printed and the console fed with the demo's traffic, a live view a
person can follow (status lines and a short log in simulated-time order), the clients closed
before the broker stops (no connection errors), the report written from the output topics, and
the live loop's commands those of the closed-loop replay of the same events."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.kafka


def test_the_short_demo_streams_answers_and_reports(kafka, tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--short", "--dir", str(out),
                           "--bootstrap-servers", kafka.bootstrap_servers],
                          cwd=REPO, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    for step in range(1, 8):
        assert f"== {step}/7" in text
    summary = json.loads((out / "summary.json").read_text())
    # the new families (issue 18) are not yet given a loss in the short demo: the classic six must have one
    assert sum(n > 0 for n in summary["attacks_with_loss"].values()) >= 5
    # the live view: says what it shows, status lines, a short log with the holder's message and
    # failed challenges; step-ups beyond the first few are counted, not listed
    assert "the live view:" in text and "events/s" in text and "lag " in text
    assert "STEP_UP" in text and "holder sees:" in text and "account service:" in text
    streaming = text[text.index("== 5/7"):text.index("== 6/7")]
    assert streaming.count("STEP_UP") <= 3
    assert len(streaming.splitlines()) < 150, f"{len(streaming.splitlines())} lines of live view"
    # the console: its address and sign-in, and its index holds the demo's commands
    console = re.search(r"console: (http://127\.0\.0\.1:\d+/)  sign in as demo / (\S+)", text)
    assert console, text[:3000]
    index = next((out / "console").glob("index-*.sqlite"))
    with sqlite3.connect(index) as db:
        indexed = db.execute("SELECT count(*) FROM commands").fetchone()[0]
    assert indexed == summary["commands_live"] > 0
    # clients are closed before the broker stops: no librdkafka complaints
    assert "Connection refused" not in done.stdout + done.stderr
    assert text.index("closing the demo's Kafka clients") < text.index("== 6/7")
    assert sum(summary["answers"].values()) > 0 and summary["bad_signatures"] == 0
    # the report, from the transcript of what was sent and read back
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["headline"]["stopped_before_loss"] is not None and (out / "report" / "report.md").exists()
    # the commands read back are (nearly all) those of `atoguard replay --respond` of the same events
    live, replay, both = summary["commands_live"], summary["commands_replay"], summary["commands_both"]
    # (this session: 37 / 37 / 37 twice, and 38 / 37 / 36 in CI, where an answer fetched more
    # than max_idle_ms after the holder's next event went second: docs/determinism.md)
    assert live > 0 and both >= 0.9 * max(live, replay)
