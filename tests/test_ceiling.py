"""``atoguard eval --ceiling``: the supervised ceiling over the engine's own features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors import engine as engine_mod
from detectors.profile import FEATURE_NAMES
from evaluation import ceiling
from evaluation.metrics import DAY_MS, Incident
from simulator import SimConfig, simulate
from streams.cli import main

H = 3_600_000


class F:
    def __init__(self, rows):
        self.ids = [r[0] for r in rows]
        self.accounts = [r[1] for r in rows]
        self.ts = [r[2] for r in rows]


def test_an_attack_counts_only_with_a_high_score_between_an_hour_before_it_and_its_loss():
    f = F([("a0", "A", 0), ("a1", "A", 5 * H), ("a2", "A", 7 * H),  # loss at 6 H; a2 comes after
           ("b0", "B", 0), ("l0", "L", 10 * DAY_MS)])
    incs = [Incident("A", "x", "ato", 2 * H, 8 * H, 6 * H, ("a1", "a2")),
            Incident("B", "y", "ato", 2 * H, 8 * H, 3 * H, ())]
    curve = ceiling.ceiling_curve(f, np.array([0.0, 0.3, 0.99, 0.99, 0.1]), incs, [0.2, 0.5])
    # A: a1 (0.3) is in the window, a2 (0.99) after the loss; B: b0 (0.99) is 2 h before its start
    assert curve["stopped_before_loss"] == [0.5, 0.0]
    assert curve["by_scenario"] == {"x": [1.0, 0.0], "y": [0.0, 0.0]}


def test_a_legitimate_account_counts_only_outside_its_situations():
    f = F([("l0", "L", DAY_MS), ("l1", "L", 3 * DAY_MS), ("m0", "M", 2 * DAY_MS), ("a0", "A", 0)])
    incs = [Incident("L", "travel", "legit", DAY_MS - H, DAY_MS, None, ("l0",)),
            Incident("A", "x", "ato", 0, H, 0, ("a0",))]
    curve = ceiling.ceiling_curve(f, np.array([0.95, 0.2, 0.6, 0.9]), incs, [0.5, 0.9])
    # L's 0.95 is inside travel (+24 h): not ordinary; its ordinary best is 0.2; M's is 0.6
    assert curve["challenged_on_ordinary_days_share"] == [0.5, 0.0]
    assert curve["legit_accounts"] == 2
    assert curve["challenged_on_ordinary_days_per_30d"][0] == pytest.approx(0.5 * 30 / 3)


def test_the_model_finds_a_planted_signal_and_not_noise():
    rng = np.random.default_rng(1)
    n = 4000
    X = np.full((n, len(ceiling.COLUMNS)), np.nan)
    y = (rng.random(n) < 0.05).astype(np.int8)
    X[:, 0] = y  # device_new: the signal
    X[:, 1] = rng.random(n)  # noise
    X[:, ceiling.COLUMNS.index("kind")] = rng.integers(0, len(ceiling.KINDS), n)
    model = ceiling.train(X, y)
    p = model.predict_proba(X)[:, 1]
    assert p[y == 1].min() > p[y == 0].max()
    shuffled = ceiling.train(X[:, [1, 1, *range(2, X.shape[1])]], y)  # without the signal column
    q = shuffled.predict_proba(X[:, [1, 1, *range(2, X.shape[1])]])[:, 1]
    assert not q[y == 1].min() > q[y == 0].max()


@pytest.fixture(scope="module")
def two_populations(tmp_path_factory):
    d = tmp_path_factory.mktemp("ceiling")
    mix = "warmed_device=0.03,mule_ring=0.03,phishing_takeover=0.03,new_phone=0.05"
    for seed in (1, 2):
        simulate(SimConfig(accounts=250, days=6, seed=seed).with_mix(mix), str(d / f"e{seed}.jsonl"),
                 str(d / f"l{seed}.jsonl"))
    return d


def test_features_are_the_engines_context_one_row_per_event(two_populations):
    d = two_populations
    before = engine_mod.build_context
    f = ceiling.event_features(d / "e1.jsonl")
    assert engine_mod.build_context is before  # the engine is left as it was
    n = sum(1 for _ in open(d / "e1.jsonl", "rb"))
    assert len(f.ids) == len(set(f.ids)) == n
    assert f.X.shape == (n, len(FEATURE_NAMES) + 1)
    assert np.nanmax(f.X[:, FEATURE_NAMES.index("device_new")]) == 1.0


def test_eval_ceiling_writes_the_curve_beside_the_policy(two_populations, tmp_path, capsys):
    d = two_populations
    out = tmp_path / "tr.jsonl"
    assert main(["replay", str(d / "e1.jsonl"), "--out", str(out), "--respond", str(d / "l1.jsonl")]) == 0
    capsys.readouterr()
    rc = main(["eval", "--events", str(d / "e1.jsonl"), "--labels", str(d / "l1.jsonl"), "--out", str(out),
               "--report", str(tmp_path / "r"), "--no-progress", "--ceiling", str(d / "e2.jsonl"), str(d / "l2.jsonl")])
    assert rc == 0
    c = json.loads((tmp_path / "r" / "ceiling.json").read_text())
    assert c["training"]["attacker_events"] > 0 and c["scored"]["attacker_events"] > 0
    assert len(c["threshold"]) == len(c["stopped_before_loss"]) == len(c["challenged_on_ordinary_days_per_30d"])
    assert c["stopped_before_loss"][0] == 1.0  # θ = 0 flags everything
    assert (tmp_path / "r" / "stopped_vs_friction.png").stat().st_size > 0
    assert "Ceiling" in capsys.readouterr().out


def test_eval_ceiling_refuses_an_unreadable_training_file_in_one_line(two_populations, tmp_path, capsys):
    d = two_populations
    out = tmp_path / "tr.jsonl"
    out.write_text("")
    rc = main(["eval", "--events", str(d / "e1.jsonl"), "--labels", str(d / "l1.jsonl"), "--out", str(out),
               "--report", str(tmp_path / "r"), "--no-progress", "--ceiling", str(d / "e2.jsonl"), str(d / "e2.jsonl")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("atoguard eval: --ceiling labels") and "Traceback" not in "".join(err)


def test_eval_help_teaches_the_ceiling(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--ceiling OTHER_EVENTS OTHER_LABELS" in out and "the policy wastes evidence" in out
