"""``atoguard eval`` under contract v3 (v2's scoring with any listed method; ``id_check`` always
enrolled and always passed by a holder): persons, listed enrolled methods, who passes what,
friction (slow checks, hours held).

Small tables of incidents and commands, each scored by hand. Times relative to T (M = minute,
H = hour, D = day).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation import challenges as ch
from evaluation import io as eval_io
from evaluation import metrics
from evaluation.challenges import NONE, Scoring
from evaluation.metrics import Decision, Incident
from streams.cli import main

T = 1_764_000_000_000
M = 60_000
H = 60 * M
D = 24 * H

SIM = Incident("A", "sim_swap_payout", "ato", T, T + H, T + 30 * M, ("a-sim", "a-login", "a-pay"), ("sms_otp",))
NEW_PHONE = Incident("L", "new_phone", "legit", T, T + H, None, ("l-login",), None,
                     ("sms_otp", "email_otp", "payment_password", "face"))


def step_up(ts, cid, trigger, methods, action="step_up", expires=None):
    return Decision(ts, action, 0.5, cid, trigger, None if methods is None else tuple(methods), expires, 2)


def scoring(decisions=None, enrolled=None, incidents=(SIM, NEW_PHONE)):
    return Scoring(list(incidents), decisions or {}, enrolled or {})


# -- the person of a command ------------------------------------------------------------------

@pytest.mark.parametrize("trigger, chain, person", [
    ("a-login", {}, 0),  # an attacker's event: the attacker of incident 0
    ("own-login", {}, None),  # any other event: the holder
    ("ch-c1", {"c1": "a-login"}, 0),  # an answer to a command to the attacker
    ("ch-c2", {"c2": "ch-c1", "c1": "a-login"}, 0),  # followed through two answers
    ("ch-c2", {"c2": "ch-c1", "c1": "own-login"}, None),  # ... to the holder
    ("ch-unknown", {}, None),  # an answer to a command not in the outputs: nobody known
    ("ch-c1", {"c1": "ch-c1"}, None),  # a loop ends
])
def test_the_person_of_a_command_follows_the_answer_chain(trigger, chain, person):
    cmds = [step_up(T + i, cid, trig, ["face"]) for i, (cid, trig) in enumerate(chain.items())]
    sc = scoring({"A": cmds})
    assert sc.person(step_up(T + 9, "x", trigger, ["face"])) == person


# -- stopped before loss ----------------------------------------------------------------------

@pytest.mark.parametrize("d, enrolled, stopped", [
    # a step_up to the attacker: stopped when they pass none of the listed enrolled methods
    (step_up(T + 10 * M, "c", "a-login", ["sms_otp", "face"]), None, False),  # sms_otp listed: passes
    (step_up(T + 10 * M, "c", "a-login", ["face", "sms_otp"]), None, False),  # any listed method will do
    (step_up(T + 10 * M, "c", "a-login", ["face", "id_check"]), None, True),  # nothing he passes
    (step_up(T + 10 * M, "c", "a-login", ["face", "sms_otp"]), {"sms_otp"}, False),  # face not enrolled
    (step_up(T + 10 * M, "c", "a-login", ["face", "passkey"]), {"sms_otp"}, True),  # none enrolled
    (step_up(T + 10 * M, "c", "own-login", ["face"]), None, False),  # to the holder: no stop
    (step_up(T + 10 * M, "c", "a-login", None), None, False),  # a v1 step_up: no stop
    # a freeze: its way back
    (step_up(T + 10 * M, "c", "own-login", ["sms_otp"], "freeze"), None, False),  # the thief passes it
    (step_up(T + 10 * M, "c", "own-login", ["face", "sms_otp"], "freeze"), None, False),
    (step_up(T + 10 * M, "c", "own-login", ["face", "id_check"], "freeze"), None, True),
    (step_up(T + 10 * M, "c", "own-login", ["face", "sms_otp"], "freeze"), {"face"}, True),
    (step_up(T + 10 * M, "c", "own-login", [], "freeze"), None, True),  # no way back at all
    (step_up(T + 10 * M, "c", "own-login", None, "freeze"), None, True),  # a v1 freeze counts
    (step_up(T + 10 * M, "c", "own-login", None, "close"), None, True),
    # the window: [start - 1 h, first loss]
    (step_up(T - 59 * M, "c", "own-login", None, "close"), None, True),
    (step_up(T - 61 * M, "c", "own-login", None, "close"), None, False),
    (step_up(T + 30 * M, "c", "a-login", ["face"]), None, True),  # at the loss: held until decided
    (step_up(T + 31 * M, "c", "a-login", ["face"]), None, False),
])
def test_stopped_before_loss_under_v3(d, enrolled, stopped):
    sc = scoring({"A": [d]}, None if enrolled is None else {"A": frozenset(enrolled)})
    assert sc.stopped_before_loss(SIM, [d]) is stopped


def test_the_offered_method_is_the_first_listed_one_enrolled():
    sc = scoring(enrolled={"A": frozenset({"sms_otp", "face"})})
    assert sc.offered("A", step_up(T, "c", "x", ["passkey", "face", "sms_otp"])) == "face"
    assert sc.offered("A", step_up(T, "c", "x", ["passkey", "totp"])) == NONE
    assert sc.offered("B", step_up(T, "c", "x", ["passkey", "totp"])) == "passkey"  # no line: all
    assert sc.offered("A", step_up(T, "c", "x", None)) is None


# -- friction ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ts, methods, enrolled, locked", [
    (T + 10 * M, ["app_push", "passkey"], None, True),  # new phone: neither on the old phone
    (T + 10 * M, ["app_push", "sms_otp"], None, False),  # another listed method will do
    (T + 10 * M, ["app_push", "id_check"], None, False),  # id_check: every holder passes it
    (T + H + 23 * H, ["app_push"], None, True),  # 24 h after the situation's end still counts
    (T + H + 25 * H, ["app_push"], None, False),  # after it: enrolled methods only
    (T + 10 * M, ["face"], {"sms_otp"}, True),  # nothing listed is enrolled
    (T + 10 * M, ["face"], {"face"}, False),
    (T + 10 * M, None, None, False),  # v1: no method, not counted
])
def test_lockouts_of_the_holder(ts, methods, enrolled, locked):
    d = step_up(ts, "c", "l-login", methods)
    sc = scoring({"L": [d]}, None if enrolled is None else {"L": frozenset(enrolled)})
    out = ch.lockouts({"L": [d]}, sc, n_accounts=4)
    assert (out["challenges"], out["accounts"]) == ((1, 1) if locked else (0, 0))
    assert out["share"] == (0.25 if locked else 0.0)


def test_a_holder_is_locked_out_also_while_an_attack_is_going_on():
    # the holder of A, during the SIM swap, is offered sms_otp -- the SIM is the thief's, but
    # the holder still passes enrolled methods (contract): not a lock-out; face not enrolled: is
    ds = [step_up(T + 5 * M, "c1", "own-login", ["sms_otp"]), step_up(T + 6 * M, "c2", "own-login", ["face"])]
    sc = scoring({"A": ds}, {"A": frozenset({"sms_otp"})})
    assert ch.lockouts({"A": ds}, sc, 1)["challenges"] == 1


def test_challenges_on_ordinary_days_leave_out_the_situations():
    ds = {"L": [step_up(T + 10 * M, "c1", "l-login", ["sms_otp"]),  # inside new_phone
                step_up(T + 3 * D, "c2", "x", ["sms_otp"]),  # an ordinary day
                step_up(T + 4 * D, "c3", "x", ["sms_otp"], "freeze")],  # a freeze is no challenge
          "Q": [], "R": [step_up(T + 5 * D, "c4", "y", ["sms_otp"]), step_up(T + 6 * D, "c5", "y", ["sms_otp"])]}
    sc = scoring(ds)
    out = ch.ordinary_challenges(["L", "Q", "R"], ds, sc, days=60)
    assert (out["accounts"], out["challenges"]) == (2, 3)
    assert out["share"] == pytest.approx(2 / 3)
    assert out["per_30d"] == pytest.approx(2 / 3 * 30 / 60)
    assert out["challenges_per_account_per_30d"] == pytest.approx(1 * 30 / 60)
    per = ch.situation_challenges([SIM, NEW_PHONE], ds, sc)
    assert per["scenarios"]["new_phone"] == {"situations": 1, "challenges": 1, "challenges_per_situation": 1.0}
    assert per["challenges_per_situation"] == 1.0


@pytest.mark.parametrize("ds, hours", [
    # lifted by an unfreeze after 2 h
    ([step_up(T + 2 * D, "f", "x", None, "freeze", T + 3 * D), Decision(T + 2 * D + 2 * H, "unfreeze", 0.1)], 2.0),
    # no unfreeze: until expires_at
    ([step_up(T + 2 * D, "f", "x", None, "freeze", T + 2 * D + 5 * H)], 5.0),
    # a way back the holder passes: the 10 minutes of the closed-loop answer
    ([step_up(T + 2 * D, "f", "x", ["sms_otp"], "freeze", T + 3 * D)], 10 / 60),
    # a way back the holder cannot pass (new phone, app_push) in the situation: until expiry
    ([step_up(T + 10 * M, "f", "l-login", ["app_push"], "freeze", T + 10 * M + 4 * H)], 4.0),
    # no expiry, no unfreeze: until the end of the data (T + 10 D)
    ([step_up(T + 9 * D, "f", "x", [], "freeze")], 24.0),
    # two overlapping freezes count once
    ([step_up(T + 2 * D, "f1", "x", None, "freeze", T + 2 * D + 3 * H),
      step_up(T + 2 * D + H, "f2", "x", None, "freeze", T + 2 * D + 4 * H)], 4.0),
])
def test_hours_frozen_end_at_the_way_back_an_unfreeze_expiry_or_the_end(ds, hours):
    sc = scoring({"L": ds})
    out = ch.frozen_hours(["L"], {"L": ds}, sc, t1=T + 10 * D, days=10)
    assert out["hours"] == pytest.approx(hours)


def test_closes_without_an_analyst_verdict():
    ds = {"A": [Decision(T + 2 * H, "close", 0.9)], "L": [Decision(T + 2 * H, "close", 0.9)],
          "B": [Decision(T + 2 * H, "close", 0.9)]}
    verdicts = [metrics.Verdict("A", T + H, "ato", "analyst"), metrics.Verdict("B", T + H, "ato", "user"),
                metrics.Verdict("L", T + 3 * H, "ato", "analyst")]  # after the close: does not count
    out = ch.closes_without_verdict(ds, verdicts, legit=["L"])
    assert out == {"closes": 3, "without_analyst_verdict": 2, "without_analyst_verdict_on_legit_accounts": 1}


# -- end to end, from a transcript ------------------------------------------------------------

def _line(topic, value):
    return {"topic": topic, "value": value}


def _cmd(cid, acc, action, ts, trigger, methods=None, expires=None):
    v = {"command_id": cid, "account_id": acc, "action": action, "reasons": ["TEST"], "message": "",
         "risk": 0.6, "issued_at": ts, "expires_at": expires, "trigger_event_id": trigger, "alert_id": None,
         "policy_version": "t", "dry_run": False, "signature": "00", "contract_version": 2}
    if methods is not None:
        v["methods"] = methods
    return _line("commands", v)


def _ev(eid, acc, ts, kind="login_success", **extra):
    return _line("device", {"event_id": eid, "account_id": acc, "ts": ts, "kind": kind, **extra})


EVENTS = [_ev("a-0", "A", T - D), _ev("a-sim", "A", T, "sim_change"), _ev("a-login", "A", T + 5 * M),
          _line("transaction", {"event_id": "a-pay", "account_id": "A", "ts": T + 30 * M, "kind": "transfer_out", "amount": 100}),
          _ev("l-0", "L", T - D), _ev("l-login", "L", T + 2 * M), _ev("l-end", "L", T + 9 * D),
          _line("verdicts", {"verdict_id": "v1", "account_id": "A", "ts": T + 40 * M, "label": "ato", "source": "analyst"})]

LABELS = [
    {"account_id": "A", "scenario": "sim_swap_payout", "label": "ato", "start_ts": T, "end_ts": T + 30 * M,
     "first_loss_ts": T + 30 * M, "event_ids": ["a-sim", "a-login", "a-pay"], "attacker_passes": ["sms_otp"]},
    {"account_id": "L", "scenario": "new_phone", "label": "legit", "start_ts": T + 2 * M, "end_ts": T + 2 * M,
     "first_loss_ts": None, "event_ids": ["l-login"], "holder_passes": ["sms_otp", "email_otp", "face"]},
    {"account_id": "A", "label": "enrolled", "methods": ["sms_otp", "face"]},
    {"account_id": "L", "label": "enrolled", "methods": ["sms_otp", "app_push"]},
]

TRANSCRIPT = [
    *EVENTS[:3],
    # the attacker is stepped up with sms_otp (passes), answers, then is frozen with face first
    _cmd("c1", "A", "step_up", T + 5 * M, "a-login", ["sms_otp", "face"], T + 7 * M),
    _ev("ch-c1", "A", T + 5 * M + 30_000, "challenge_passed", method="sms_otp", command_id="c1"),
    _cmd("c2", "A", "freeze", T + 5 * M + 30_000, "ch-c1", ["face"], T + D),
    _line("withheld", {"event_id": "a-pay"}),
    # the holder on a new phone: a push they cannot approve, and a passkey they never enrolled
    _cmd("c3", "L", "step_up", T + 2 * M, "l-login", ["app_push", "passkey"], T + 4 * M),
    _line("verdicts", {"verdict_id": "v2", "account_id": "L", "ts": T + 3 * M, "label": "legit", "source": "user"}),
    _line("dead-letter", {"topic": "device", "reason": "NOT_JSON", "value_b64": "eA=="}),
]


def run_eval(tmp_path: Path, transcript=TRANSCRIPT, labels=LABELS) -> dict:
    def write(name, rows):
        p = tmp_path / name
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(p)

    rc = main(["eval", "--events", write("e.jsonl", EVENTS), "--labels", write("l.jsonl", labels),
               "--out", write("o.jsonl", transcript), "--report", str(tmp_path / "r"), "--no-progress"])
    assert rc == 0
    return json.loads((tmp_path / "r" / "metrics.json").read_text())


def test_a_transcript_is_scored_its_input_and_withheld_lines_skipped(tmp_path):
    m = run_eval(tmp_path)
    assert m["headline"]["scoring"] == "v3"
    i = m["inputs"]["outputs"]
    assert i["transcript_input"] == 5 and i["withheld"] == 1 and i["dead_letter"] == 1
    assert i["command_step_up"] == 2 and i["command_freeze"] == 1 and "invalid_output" not in i
    assert m["inputs"]["labels"]["enrolment"] == 2
    # stopped: the freeze after the passed answer offers face, which the SIM thief lacks
    assert m["attacks"]["scenarios"]["sim_swap_payout"]["stopped_before_loss"] == 1
    assert m["attacks"]["all"]["events_withheld"] == 1
    # the new phone's holder passes none of app_push and passkey: a lock-out on 1 of the 2 accounts
    f = m["friction"]
    assert (f["lockouts"]["challenges"], f["lockouts"]["accounts"], f["lockouts"]["share"]) == (1, 1, 0.5)
    assert f["situations"]["challenges_per_situation"] == 1.0
    assert f["ordinary_days"]["accounts"] == 0
    assert m["headline"]["locked_out_accounts"] == 1


def test_without_the_freeze_the_passed_step_up_does_not_stop_the_thief(tmp_path):
    m = run_eval(tmp_path, transcript=[r for r in TRANSCRIPT if r["value"].get("command_id") != "c2"])
    assert m["attacks"]["scenarios"]["sim_swap_payout"]["stopped_before_loss"] == 0


def test_with_face_not_enrolled_the_freeze_offers_nothing_and_still_stops(tmp_path):
    labels = [dict(r, methods=["sms_otp"]) if r.get("label") == "enrolled" and r["account_id"] == "A" else r
              for r in LABELS]
    m = run_eval(tmp_path, labels=labels)
    assert m["attacks"]["scenarios"]["sim_swap_payout"]["stopped_before_loss"] == 1


def test_the_freeze_way_back_the_thief_passes_is_no_stop(tmp_path):
    transcript = [_cmd("c2", "A", "freeze", T + 5 * M + 30_000, "ch-c1", ["sms_otp", "face"], T + D)
                  if r["value"].get("command_id") == "c2" else r for r in TRANSCRIPT]
    m = run_eval(tmp_path, transcript=transcript)
    assert m["attacks"]["scenarios"]["sim_swap_payout"]["stopped_before_loss"] == 0


def test_labels_reader_keeps_v2_fields_and_rejects_unknown_methods(tmp_path):
    p = tmp_path / "l.jsonl"
    bad = dict(LABELS[0], attacker_passes=["telepathy"])
    p.write_text("".join(json.dumps(r) + "\n" for r in [*LABELS, bad]))
    enrolled: dict = {}
    stats: dict = __import__("collections").Counter()
    incs = list(eval_io.iter_incidents(p, enrolled=enrolled, stats=stats))
    assert [i.attacker_passes for i in incs] == [("sms_otp",), None]
    assert incs[1].holder_passes == ("sms_otp", "email_otp", "face")
    assert enrolled == {"A": frozenset({"sms_otp", "face"}), "L": frozenset({"sms_otp", "app_push"})}
    assert stats["invalid_label"] == 1


def test_repaid_cohort_counts_challenges_too():
    ds = {"L": [Decision(T + H, "step_up", 0.5), Decision(T + 3 * D, "step_up", 0.5)]}
    out = ch.repay_challenges(["L"], ds, {"L": [T]}, after_days=1.0, other_days=9.0)
    assert (out["challenges_after_repayment"], out["challenges_otherwise"]) == (1, 1)
    assert out["challenge_rate_ratio"] == pytest.approx(9.0)


def test_curve_cli_plots_several_runs(tmp_path, capsys):
    for name, (x, y) in {"lo": (0.01, 0.4), "hi": (0.05, 0.8)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"headline": {
            "challenged_on_ordinary_days_share": x, "stopped_before_loss": y}}))
    rc = main(["eval", "--curve", f"t1={tmp_path / 'lo'}", str(tmp_path / "hi"), "--report", str(tmp_path / "c")])
    assert rc == 0
    pts = json.loads((tmp_path / "c" / "curve.json").read_text())
    assert [(p["label"], p["stopped_before_loss"]) for p in pts] == [("t1", 0.4), ("hi", 0.8)]
    assert (tmp_path / "c" / "stopped_vs_friction.png").stat().st_size > 0
    assert main(["eval", "--curve", str(tmp_path / "nowhere"), "--report", str(tmp_path / "c")]) == 2
    assert "cannot read" in capsys.readouterr().err


# -- v3: slow checks, hours held ------------------------------------------------------------------

def test_a_holder_who_answers_with_id_check_is_a_slow_check_and_their_freeze_lasts_two_hours():
    ds = [step_up(T + 10 * M, "c1", "l-login", ["passkey", "app_push", "id_check"]),
          step_up(T + 3 * D, "c2", "l-login", ["face", "id_check"]),
          step_up(T + 4 * D, "c3", "l-login", ["id_check"], "freeze")]
    sc = scoring({"L": ds})
    out = ch.slow_checks(["L"], {"L": ds}, sc, days=30)
    assert (out["checks"], out["accounts"], out["per_30d"]) == (2, 1, 1.0)  # c1 (new phone) and c3
    frozen = ch.frozen_hours(["L"], {"L": ds}, sc, T + 10 * D, days=30)
    assert frozen["hours"] == 2.0 and frozen["lifted_by_way_back"] == 1


def test_hours_held_run_to_the_resolution_or_the_expiry():
    holds = {"h1": ["L", T, T + 3 * H, T + 30 * M], "h2": ["A", T, T + 3 * H, None], "h3": ["L", T, None, None]}
    out = ch.held_hours(holds, ["L"], T + H, days=30)
    assert out["holds"] == 3 and out["legit_holds"] == 2
    assert out["legit_hours"] == 0.5 + 1.0 and out["hours"] == 0.5 + 1.0 + 1.0  # h2 and h3 end with the data
