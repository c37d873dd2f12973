"""``atoguard eval``: hand-worked tables of events, labels and outputs, and the figures they give.

The main example (times relative to T, M = minute, H = hour, D = day; the file spans 60 days):

* A1, attack ``sim_swap_payout``, [T+1D, T+1D+60M], first loss at +30M. Frozen at +20M (before
  the loss): stopped; 3 of its events from start to the freeze; 0 of its 2 money movements
  (100 + 300) before the freeze. A payment of the owner (not in the incident) is ignored.
* A2, attack ``credential_stuffing``, [T+2D, T+2D+2H], first loss at +30M. Stepped up at +10M,
  frozen at +60M (after the loss): not stopped; 3 events to freeze (one delivered twice);
  1 of 3 money movements, 50 of 400, before the freeze.
* L1, L2, L3 legitimate. L1 falsely frozen at T+3D; L2 stepped up at T+4D; L3 repays at T+5D and
  T+5D+12H (exposure 1.5 account-days) and is frozen at T+5D+2H.
* Benign situations: ``travel`` on L1 (frozen within end + 24 h) and on L2 (stepped up);
  ``repay_then_borrow`` on L3 (frozen).
* Alerts: on A1 and A2 during the attacks, on L1 and on an account U seen nowhere else.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest

from evaluation import io as eval_io
from evaluation import metrics
from evaluation.io import alert_account_id
from evaluation.metrics import Decision, Incident
from streams.cli import main

T = 1_764_000_000_000
M = 60_000
H = 60 * M
D = 24 * H


def dev(eid, acc, ts, kind="login_success"):
    return {"topic": "device", "value": {"event_id": eid, "account_id": acc, "ts": ts, "kind": kind}}


def tx(eid, acc, ts, kind, amount):
    return {"topic": "transaction",
            "value": {"event_id": eid, "account_id": acc, "ts": ts, "kind": kind, "amount": amount}}


def cmd(acc, action, ts, risk):
    return {"topic": "commands", "value": {
        "command_id": f"c-{acc}-{action}-{ts}", "account_id": acc, "action": action,
        "reasons": ["TEST"], "message": "", "risk": risk, "issued_at": ts,
        "expires_at": ts + D if action == "freeze" else None, "trigger_event_id": "x",
        "alert_id": None, "policy_version": "test", "dry_run": False, "signature": "00"}}


def alert(ts, score, **account):
    value = {"class_uid": 2004, "finding_info": {"uid": f"al-{ts}", "title": "t", "types": ["TEST"]},
             "time": ts, "severity_id": 3, "risk_score": score, **account}
    return {"topic": "alerts", "value": value, "headers": {"ce_specversion": "1.0"}}


EVENTS = [
    dev("l1-end", "L1", T + 60 * D, "logout"),  # out of order on purpose: the span's end
    dev("a1-0", "A1", T), dev("a2-0", "A2", T + 12 * H),
    dev("l1-0", "L1", T), dev("l2-0", "L2", T), dev("l3-0", "L3", T),
    # A1: the attack
    dev("a1-sim", "A1", T + D, "sim_change"),
    dev("a1-pw", "A1", T + D + 10 * M, "password_change"),
    dev("a1-login", "A1", T + D + 20 * M),
    tx("a1-pay1", "A1", T + D + 30 * M, "payment", 100),
    tx("a1-pay2", "A1", T + D + 40 * M, "transfer_out", 300),
    tx("a1-own", "A1", T + D + 50 * M, "payment", 999),  # the owner's, not in the incident
    # A2: the attack
    dev("a2-login", "A2", T + 2 * D),
    tx("a2-w1", "A2", T + 2 * D + 30 * M, "withdrawal", 50),
    tx("a2-w1", "A2", T + 2 * D + 30 * M, "withdrawal", 50),  # a second delivery
    tx("a2-w2", "A2", T + 2 * D + 60 * M, "withdrawal", 150),
    tx("a2-w3", "A2", T + 2 * D + 90 * M, "payment", 200),
    tx("a2-rep", "A2", T + 3 * D, "loan_repayment", 10),  # an attacked account: not in the cohort
    # legitimate accounts
    dev("l1-f", "L1", T + 3 * D),
    {"topic": "location", "value": {"event_id": "l2-gps", "account_id": "L2", "ts": T + 4 * D - H,
                                    "kind": "gps_fix", "lat": 48.1, "lon": 11.6}},
    dev("l2-s", "L2", T + 4 * D),
    tx("l3-rep1", "L3", T + 5 * D, "loan_repayment", 500),
    tx("l3-draw", "L3", T + 5 * D + 2 * H, "loan_draw", 1000),
    tx("l3-rep2", "L3", T + 5 * D + 12 * H, "loan_repayment", 100),
    # lines to skip
    {"topic": "device", "raw": "not json at all"},
    {"topic": "verdicts", "value": {"verdict_id": "v1", "account_id": "L1", "ts": T + 3 * D + H,
                                    "label": "legit", "source": "user"}},
    dev("bad1", "X9", T - 10 * D, "teleport"),  # unknown kind: dead-lettered, not an account
    {"topic": "transaction", "value": {"event_id": "bad2", "account_id": "X9", "ts": T,
                                       "kind": "payment"}},  # amount missing
]

LABELS = [
    {"account_id": "A1", "scenario": "sim_swap_payout", "label": "ato", "start_ts": T + D,
     "end_ts": T + D + 60 * M, "first_loss_ts": T + D + 30 * M,
     "event_ids": ["a1-sim", "a1-pw", "a1-login", "a1-pay1", "a1-pay2"]},
    {"account_id": "A2", "scenario": "credential_stuffing", "label": "ato", "start_ts": T + 2 * D,
     "end_ts": T + 2 * D + 2 * H, "first_loss_ts": T + 2 * D + 30 * M,
     "event_ids": ["a2-login", "a2-w1", "a2-w2", "a2-w3"]},
    {"account_id": "L1", "scenario": "travel", "label": "legit", "start_ts": T + D + 12 * H,
     "end_ts": T + 2 * D + H, "first_loss_ts": None, "event_ids": []},
    {"account_id": "L2", "scenario": "travel", "label": "legit", "start_ts": T + 4 * D - H,
     "end_ts": T + 4 * D - 30 * M, "first_loss_ts": None, "event_ids": ["l2-gps"]},
    {"account_id": "L3", "scenario": "repay_then_borrow", "label": "legit", "start_ts": T + 5 * D,
     "end_ts": T + 5 * D + 2 * H, "first_loss_ts": None, "event_ids": ["l3-rep1", "l3-draw"]},
    {"account_id": "L3", "scenario": "broken", "label": "maybe", "start_ts": T, "end_ts": T},
]

OUTPUTS = [
    alert(T + D + 20 * M, 90, resources=[{"uid": "A1", "type": "account"}]),
    cmd("A1", "freeze", T + D + 20 * M, 0.9),
    cmd("A1", "unfreeze", T + D + 5 * H, 0.1),
    alert(T + 2 * D + 10 * M, 50, resources=[{"uid": "A2"}], unmapped={"account_id": "A2"}),
    cmd("A2", "step_up", T + 2 * D + 10 * M, 0.5),
    cmd("A2", "freeze", T + 2 * D + 60 * M, 0.8),
    alert(T + 3 * D, 70, unmapped={"account_id": "L1"}),
    cmd("L1", "freeze", T + 3 * D, 0.7),
    cmd("L2", "step_up", T + 4 * D, 0.4),
    cmd("L3", "freeze", T + 5 * D + 2 * H, 0.6),
    alert(T + 7 * D, 30, account_id="U"),  # an account seen nowhere else
    {"topic": "dead-letter", "value": {"topic": "device", "reason": "NOT_JSON", "value_b64": "eA=="}},
    {"topic": "commands", "raw": "garbage"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_eval(tmp_path: Path, events=EVENTS, labels=LABELS, outputs=OUTPUTS, extra=()) -> tuple[int, dict]:
    ev = write_jsonl(tmp_path / "events.jsonl", list(events))
    lb = write_jsonl(tmp_path / "labels.jsonl", list(labels))
    out = write_jsonl(tmp_path / "out.jsonl", list(outputs))
    rc = main(["eval", "--events", str(ev), "--labels", str(lb), "--out", str(out),
               "--report", str(tmp_path / "report"), "--no-progress", *extra])
    m = json.loads((tmp_path / "report" / "metrics.json").read_text()) if rc in (0, 1) else {}
    return rc, m


@pytest.fixture
def evaluated(tmp_path):
    rc, m = run_eval(tmp_path)
    assert rc == 0
    return m


def test_attack_scenarios_scored_by_hand(evaluated):
    s = evaluated["attacks"]["scenarios"]
    a1, a2, both = s["sim_swap_payout"], s["credential_stuffing"], evaluated["attacks"]["all"]
    assert (a1["incidents"], a1["detected"], a1["stopped_before_loss"], a1["stepped_up_before_loss"]) == (1, 1, 1, 0)
    assert a1["median_time_to_freeze_s"] == 20 * 60
    assert a1["median_events_to_freeze"] == 3
    assert a1["money_movements"] == 2 and a1["money_amount"] == 400
    assert a1["money_movements_before_freeze_share"] == 0 and a1["money_amount_before_freeze_share"] == 0

    assert (a2["incidents"], a2["detected"], a2["stopped_before_loss"], a2["stepped_up_before_loss"]) == (1, 1, 0, 1)
    assert a2["median_time_to_freeze_s"] == 60 * 60
    assert a2["median_events_to_freeze"] == 3  # the repeated a2-w1 counts once
    assert a2["money_movements"] == 3
    assert a2["money_movements_before_freeze_share"] == pytest.approx(1 / 3)
    assert a2["money_amount_before_freeze_share"] == pytest.approx(50 / 400)

    assert both["incidents"] == 2 and both["detected_share"] == 1.0
    assert both["stopped_before_loss_share"] == 0.5 and both["stepped_up_before_loss_share"] == 0.5
    assert both["median_time_to_freeze_s"] == 2400
    assert both["money_movements_before_freeze_share"] == pytest.approx(1 / 5)
    assert both["money_amount_before_freeze_share"] == pytest.approx(50 / 800)


def test_legit_accounts_rates_per_30_days(evaluated):
    r = evaluated["legit_accounts"]
    assert r["accounts"] == 3  # L1, L2, L3: not A1/A2 (attacked), X9 (only bad events), U (outputs only)
    assert r["observed_days"] == 60
    assert (r["frozen"], r["closed"], r["stepped_up"]) == (2, 0, 1)
    assert r["frozen_share"] == pytest.approx(2 / 3)
    assert r["frozen_per_30d"] == pytest.approx(2 / 3 * 30 / 60)
    assert r["stepped_up_per_30d"] == pytest.approx(1 / 3 * 30 / 60)
    assert r["closed_per_30d"] == 0


def test_benign_situations_within_a_day_of_their_end(evaluated):
    b = evaluated["benign_situations"]
    assert set(b) == {"travel", "repay_then_borrow"}  # the malformed label line is skipped
    assert b["travel"]["incidents"] == 2
    assert b["travel"]["frozen_share"] == 0.5  # L1's freeze at T+3D is within end + 24 h
    assert b["travel"]["stepped_up_share"] == 0.5
    assert b["repay_then_borrow"]["frozen_share"] == 1.0


def test_repay_cohort_rates_per_account_day(evaluated):
    r = evaluated["repay_cohort"]
    assert r["cohort_accounts"] == 1  # L3; A2's repayment does not count (attacked account)
    assert r["freezes_after_repayment"] == 1 and r["freezes_otherwise"] == 1
    assert r["exposure_days_after_repayment"] == pytest.approx(1.5)  # [5D, 5D+24H) U [5D+12H, 6D+12H)
    assert r["exposure_days_otherwise"] == pytest.approx(3 * 60 - 1.5)
    assert r["rate_after_repayment"] == pytest.approx(1 / 1.5)
    assert r["rate_otherwise"] == pytest.approx(1 / 178.5)
    assert r["rate_ratio"] == pytest.approx(178.5 / 1.5)


def test_alert_and_command_precision(evaluated):
    p = evaluated["precision"]
    assert (p["alert"]["total"], p["alert"]["during_attack"]) == (4, 2)
    assert p["alert"]["precision"] == 0.5
    assert p["freeze"]["precision"] == 0.5  # A1, A2 of A1, A2, L1, L3
    assert p["step_up"]["precision"] == 0.5
    assert p["unfreeze"]["precision"] == 0.0
    assert p["close"] == {"total": 0, "during_attack": 0, "precision": None}


def test_threshold_curve_and_operating_point(evaluated):
    c = evaluated["threshold_curve"]
    at = {round(t, 2): (x, y) for t, x, y in zip(c["threshold"], c["legit_flagged"], c["catch_rate"])}
    assert at[0.0] == (1.0, 1.0)
    assert at[0.5] == pytest.approx((2 / 3, 1.0))  # A2's freeze (0.8) came after the loss
    assert at[0.8] == (0.0, 0.5)
    assert at[0.95] == (0.0, 0.0)
    assert c["operating_point"]["catch_rate"] == 0.5
    assert c["operating_point"]["legit_flagged"] == pytest.approx(2 / 3)


def test_headline_report_folder_and_stdout(tmp_path, capsys):
    rc, m = run_eval(tmp_path)
    assert rc == 0
    h = m["headline"]
    assert h["stopped_before_loss"] == 0.5
    assert (h["worst_scenario"], h["worst_scenario_stopped_before_loss"]) == ("credential_stuffing", 0.0)
    assert h["legit_frozen_per_30d"] == pytest.approx(1 / 3) and h["legit_closed_per_30d"] == 0
    assert (h["worst_benign_situation"], h["worst_benign_situation_frozen"]) == ("repay_then_borrow", 1.0)
    assert h["alert_precision"] == 0.5
    folder = tmp_path / "report"
    for name in ("report.md", "metrics.json", "detection_vs_false_freeze.png", "time_to_freeze.png",
                 "stopped_before_loss.png"):
        assert (folder / name).stat().st_size > 0, name
    md = (folder / "report.md").read_text()
    assert "credential_stuffing" in md and "## Definitions" in md
    out = capsys.readouterr().out
    assert "ALL ATTACKS" in out and "attacks stopped before loss" in out and "50.0%" in out


def test_skipped_lines_are_counted(evaluated):
    i = evaluated["inputs"]
    assert i["events"]["raw"] == 1 and i["events"]["verdict"] == 1 and i["events"]["invalid_event"] == 2
    assert i["outputs"]["dead_letter"] == 1 and i["outputs"]["raw"] == 1
    assert i["labels"]["invalid_label"] == 1
    assert evaluated["events"]["count"] == len(EVENTS) - 4


def test_empty_outputs_give_zeros(tmp_path):
    rc, m = run_eval(tmp_path, outputs=[])
    assert rc == 0
    a = m["attacks"]["all"]
    assert (a["detected"], a["stopped_before_loss"], a["frozen"]) == (0, 0, 0)
    assert a["median_time_to_freeze_s"] is None
    assert a["money_movements_before_freeze_share"] == 1.0  # never frozen: all before
    assert m["legit_accounts"]["frozen_per_30d"] == 0
    assert m["headline"]["alert_precision"] is None
    assert (tmp_path / "report" / "time_to_freeze.png").exists()


def test_all_files_empty_does_not_crash(tmp_path):
    rc, m = run_eval(tmp_path, events=[], labels=[], outputs=[])
    assert rc == 0
    assert m["events"]["observed_days"] == 0
    assert m["headline"]["stopped_before_loss"] is None
    assert m["legit_accounts"]["frozen_per_30d"] is None


def test_fail_under(tmp_path):
    assert run_eval(tmp_path, extra=["--fail-under", "0.9"])[0] == 1
    assert run_eval(tmp_path, extra=["--fail-under", "0.5"])[0] == 0


def test_missing_outputs_without_replay_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "streams.replay", None)  # import fails
    ev = write_jsonl(tmp_path / "events.jsonl", EVENTS)
    lb = write_jsonl(tmp_path / "labels.jsonl", LABELS)
    rc = main(["eval", "--events", str(ev), "--labels", str(lb), "--out", str(tmp_path / "none.jsonl"),
               "--report", str(tmp_path / "r"), "--no-progress"])
    assert rc == 2
    assert "atoguard replay" in capsys.readouterr().err


def test_readers_stream(tmp_path):
    for fn in (eval_io.iter_messages, eval_io.iter_events, eval_io.iter_incidents, eval_io.iter_decisions):
        assert inspect.isgeneratorfunction(fn), fn.__name__
    path = write_jsonl(tmp_path / "events.jsonl", EVENTS)
    it = eval_io.iter_events(path)
    assert next(it).event_id == "l1-end"  # one line read, the rest untouched


def test_alert_account_id_accepts_resource_top_level_and_unmapped():
    assert alert_account_id({"resources": [{"uid": "a"}], "account_id": "b"}) == "a"
    assert alert_account_id({"account_id": "b", "unmapped": {"account_id": "c"}}) == "b"
    assert alert_account_id({"resources": [], "unmapped": {"account_id": "c"}}) == "c"
    assert alert_account_id({"resources": [{"type": "account"}]}) is None


def test_incident_without_loss_is_stopped_by_a_freeze_in_its_window():
    inc = Incident("a", "probe", "ato", 1000, 5000, None, ())
    s = metrics.summarise_events([], [inc], [4000])
    assert metrics.incident_outcome(inc, [Decision(4000, "freeze", 0.9)], s, 0)["stopped_before_loss"]
    assert not metrics.incident_outcome(inc, [Decision(5001, "freeze", 0.9)], s, 0)["stopped_before_loss"]
    assert not metrics.incident_outcome(inc, [Decision(999, "close", 0.9)], s, 0)["stopped_before_loss"]


def test_stopped_share_is_over_incidents_with_a_loss():
    lossy = Incident("a", "stuffing", "ato", 1000, 5000, 3000, ())
    attempt = Incident("b", "stuffing", "ato", 1000, 5000, None, ())
    s = metrics.summarise_events([], [lossy, attempt], [4000, 4000])
    rows = [metrics.incident_outcome(lossy, [Decision(2000, "freeze", 0.9)], s, 0),
            metrics.incident_outcome(attempt, [], s, 1)]
    row = metrics._attack_row(rows)
    assert (row["incidents"], row["with_loss"], row["stopped_before_loss"]) == (2, 1, 1)
    assert row["stopped_before_loss_share"] == 1.0
    assert metrics._attack_row(rows[1:])["stopped_before_loss_share"] is None


def test_incident_without_event_ids_uses_the_accounts_money_in_its_window():
    inc = Incident("a", "x", "ato", 100, 200, 150, ())
    evs = [metrics.Event("e1", "a", 150, "payment", 10.0), metrics.Event("e2", "a", 250, "payment", 5.0),
           metrics.Event("e3", "b", 150, "payment", 7.0)]
    s = metrics.summarise_events(evs, [inc], [None])
    assert s.incident_money[0] == {"e1": (150, 10.0)}


def test_package_all_is_complete():
    import evaluation
    import evaluation.cli
    assert evaluation.__doc__ and all(hasattr(evaluation, name) for name in evaluation.__all__)
    for mod in (eval_io, metrics, evaluation.cli):
        assert all(hasattr(mod, name) for name in mod.__all__), mod.__name__
    assert callable(evaluation.cli.configure) and callable(evaluation.cli.run)


def test_threshold_curve_counts_the_incidents_with_a_loss_like_the_stopped_share(tmp_path):
    # an attempt on a third account, without loss and without any output: not a miss of the curve
    attempt = {"account_id": "A3", "scenario": "credential_stuffing_attempt", "label": "ato",
               "start_ts": T + 6 * D, "end_ts": T + 6 * D + H, "first_loss_ts": None, "event_ids": []}
    rc, m = run_eval(tmp_path, events=EVENTS + [dev("a3-fail", "A3", T + 6 * D, "login_failure")],
                     labels=LABELS + [attempt])
    c = m["threshold_curve"]
    assert rc == 0 and c["catch_rate"][0] == 1.0
    assert c["operating_point"]["catch_rate"] == 0.5


# -- the rough edges (issue 21 item 5) ----------------------------------------------------------

def _eval_files(tmp_path, events_path, labels_path):
    out = write_jsonl(tmp_path / "out.jsonl", OUTPUTS)
    return main(["eval", "--events", str(events_path), "--labels", str(labels_path), "--out", str(out),
                 "--report", str(tmp_path / "report"), "--no-progress"])


def test_a_csv_labels_file_fails_with_one_line(tmp_path, capsys):
    ev = write_jsonl(tmp_path / "events.jsonl", EVENTS)
    csv = tmp_path / "labels.csv"
    csv.write_text("account_id,scenario,label,start_ts,end_ts\nA1,sim_swap_payout,ato,1,2\n")
    assert _eval_files(tmp_path, ev, csv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--labels" in err and "not labels" in err and "not JSON" in err
    assert not (tmp_path / "report" / "metrics.json").exists()


def test_the_events_file_given_as_labels_fails_with_one_line(tmp_path, capsys):
    ev = write_jsonl(tmp_path / "events.jsonl", EVENTS)
    assert _eval_files(tmp_path, ev, ev) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lines of the events file" in err


def test_the_labels_file_given_as_events_fails_with_one_line(tmp_path, capsys):
    lb = write_jsonl(tmp_path / "labels.jsonl", LABELS)
    assert _eval_files(tmp_path, lb, lb) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--events" in err and "lines of the labels file" in err


def test_a_few_bad_lines_among_good_ones_are_still_read(tmp_path):
    rc, m = run_eval(tmp_path, labels=LABELS + [{"nonsense": 1}])
    assert rc == 0 and m["inputs"]["labels"]["invalid_label"] == 2


def _headline(**over):
    from evaluation.report import _headline_items

    h = {"stopped_before_loss": 0.995, "worst_scenario": "a", "worst_scenario_stopped_before_loss": 0.99,
         "stopped_before_loss_by_scenario": {"a": 0.99, "b": 1.0}, "legit_frozen_per_30d": 0.0,
         "legit_closed_per_30d": 0.0, "worst_benign_situation": "travel", "worst_benign_situation_frozen": 0.0,
         "alert_precision": 0.5, "scoring": "v3", "challenged_on_ordinary_days_per_30d": 0.004,
         "challenges_per_lookalike_situation": 0.5, "locked_out_accounts": 0, "locked_out_share": 0.0,
         "legit_frozen_hours": 0.0, "slow_checks_per_30d": 0.001, "legit_hours_held": 1.0, "hours_held": 2.0,
         "closed_without_analyst_verdict": 0, "repay_freeze_rate_ratio": 0.5, "repay_challenge_rate_ratio": 0.9}
    h.update(over)
    m = {"headline": h, "benign_situations": {"travel": {"frozen_share": 0.0}, "new_phone": {"frozen_share": 0.0}}}
    return dict(_headline_items(m))


def test_no_figure_is_flagged_when_every_target_is_met_and_no_worst_is_named_when_nothing_is_frozen():
    items = _headline()
    assert not any("<<" in v for v in items.values()), items
    assert items["worst look-alike situation, frozen"] == "none frozen (0.0%)"
    assert "worst benign situation, frozen" not in items  # one name for the figure


def test_every_figure_that_misses_its_target_is_flagged():
    items = _headline(stopped_before_loss=0.9, legit_frozen_per_30d=0.001, challenged_on_ordinary_days_per_30d=0.02,
                      challenges_per_lookalike_situation=1.5, locked_out_share=0.001, slow_checks_per_30d=0.02,
                      closed_without_analyst_verdict=1, repay_challenge_rate_ratio=8.5,
                      worst_benign_situation="travel", worst_benign_situation_frozen=0.05)
    for key in ("attacks stopped before loss (v3 scoring)", "legitimate accounts frozen per 30 days",
                "legitimate accounts challenged on ordinary days per 30 days", "challenges per look-alike situation",
                "holders locked out (accounts, share of all)", "slow checks (id_check) per 30 days",
                "closed without analyst verdict", "repaid-in-24h rate ratio, freezes / challenges",
                "worst look-alike situation, frozen"):
        assert "<<" in items[key], key
    assert "no higher" in items["repaid-in-24h rate ratio, freezes / challenges"]


def test_a_worst_scenario_is_named_only_when_it_is_worse_than_another():
    assert _headline(stopped_before_loss_by_scenario={"a": 0.0, "b": 0.0}, worst_scenario_stopped_before_loss=0.0)[
        "worst scenario, stopped before loss"].startswith("all 0.0%")
    assert "(a)" in _headline(stopped_before_loss_by_scenario={"a": 0.2, "b": 0.9},
                              worst_scenario_stopped_before_loss=0.2)["worst scenario, stopped before loss"]


def test_one_challenge_rate_in_the_printed_tables(evaluated):
    from evaluation.report import format_tables

    text = format_tables(evaluated)
    assert "challenged on ordinary days, per 30 days" in text
    assert "ever stepped up" not in text  # the other rate is named for what it counts
    assert "challenged at any time (look-alike situations included)" in text
    flat = " ".join(text.split())
    assert "detected: any alert or command" in flat and "stopped: before the first loss" in flat


def test_the_threshold_plot_x_axis_fits_its_points(tmp_path):
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as real

    from evaluation import report

    seen = {}

    class Plt:
        def subplots(self, **kw):
            fig, ax = real.subplots(**kw)
            seen["ax"] = ax
            return fig, ax

        def close(self, fig):
            seen["xlim"] = seen["ax"].get_xlim()
            real.close(fig)

    curve = {"threshold": [0.0, 0.5, 1.0], "catch_rate": [1.0, 0.5, 0.0], "legit_flagged": [0.0005, 0.0002, 0.0],
             "legit_frozen": [0.0005, 0.0002, 0.0], "operating_point": {"catch_rate": 0.4, "legit_flagged": 0.0001}}
    report._threshold_plot(Plt(), {"threshold_curve": curve}, tmp_path / "t.png")
    lo, hi = seen["xlim"]
    assert 0.0005 < hi < 0.001 and -0.0001 < lo < 0
