"""``python -m bench --quick`` runs end to end on a tiny input against the test broker (no
figure is asserted: the machine is shared and noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_quick_prints_the_table_and_writes_json(kafka, tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--bootstrap-servers", kafka.bootstrap_servers,
                           "--partitions", "2", "--latency-seconds", "1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["throughput"]) == {"ceiling", "client + engine", "quix worker", "faust worker", "engine alone"}
    assert [r["rate"] for r in results["latency"]] == sorted(r["rate"] for r in results["latency"])
    assert len(results["latency"]) == 3
    for name in results["throughput"]:
        assert name in done.stdout
    assert "p99 ms" in done.stdout
