"""The people and the account service of the closed loop (contract v3, "Closed-loop replay"),
as tables: a command and a person in, the refusal and the answer out (simulator/people.py, used
by replay and by the live account service alike)."""

from __future__ import annotations

import pytest

from simulator.people import (
    FREEZE_ANSWER_MS, HOLDER, ID_CHECK_ANSWER_MS, STEP_UP_ANSWER_MS, People, Respondent, payout_outcome, respond_to,
)
from streams import respond

T = 1_764_000_000_000


def cmd(action="step_up", methods=("face", "sms_otp", "id_check"), dry_run=False):
    value = {"command_id": "c1", "account_id": "a1", "action": action, "dry_run": dry_run, "issued_at": T}
    if methods is not None:
        value["methods"] = list(methods)
    return value


def people(passes=(), enrolled=None, situation=None):
    p = People()
    thief = Respondent(p.add_attack(["x1"], passes))
    if enrolled is not None:
        p.enrolled["a1"] = frozenset(enrolled)
    if situation is not None:
        p.add_situation("a1", T - 1, T + 3 * 3_600_000, situation)
    return p, thief


@pytest.mark.parametrize("case,action,methods,passes,enrolled,who,expected", [
    ("the holder uses the first listed enrolled method they pass",
     "step_up", ("face", "sms_otp", "id_check"), (), {"sms_otp"}, "holder", (False, "challenge_passed", "sms_otp", STEP_UP_ANSWER_MS)),
    ("a holder with no quick method listed answers with id_check, two hours later",
     "step_up", ("face", "passkey", "id_check"), (), {"sms_otp"}, "holder", (False, "challenge_passed", "id_check", ID_CHECK_ANSWER_MS)),
    ("a freeze's way back: ten minutes",
     "freeze", ("passkey", "face", "id_check"), (), None, "holder", (False, "challenge_passed", "passkey", FREEZE_ANSWER_MS)),
    ("a thief passes any listed method he holds, and is not refused",
     "step_up", ("face", "sms_otp", "id_check"), ("sms_otp",), None, "thief", (False, "challenge_passed", "sms_otp", STEP_UP_ANSWER_MS)),
    ("a thief who passes nothing listed fails the first listed enrolled method and is refused",
     "step_up", ("face", "passkey", "id_check"), ("sms_otp",), {"sms_otp"}, "thief", (True, "challenge_failed", "id_check", ID_CHECK_ANSWER_MS)),
    ("v2 commands without id_check: nothing listed enrolled is not_enrolled",
     "step_up", ("face",), (), {"sms_otp"}, "holder", (False, "challenge_failed", "face", STEP_UP_ANSWER_MS)),
    ("a label may say the thief passes id_check",
     "freeze", ("passkey", "id_check"), ("id_check",), {"sms_otp"}, "thief", (False, "challenge_passed", "id_check", ID_CHECK_ANSWER_MS)),
])
def test_the_answer_and_the_refusal(case, action, methods, passes, enrolled, who, expected):
    p, thief = people(passes, enrolled)
    refuse, answer = respond_to(cmd(action, methods), thief if who == "thief" else HOLDER, {"device_id": "d"}, p)
    assert (refuse, answer["kind"], answer["method"], answer["ts"] - T) == expected, case
    assert answer["event_id"] == "ch-c1" and answer["command_id"] == "c1" and answer["device_id"] == "d"
    if answer["kind"] == "challenge_failed":
        assert answer["reason"] == ("not_enrolled" if case.startswith("v2") else "wrong_code")


def test_a_holder_inside_a_situation_passes_only_what_it_leaves_them_and_always_id_check():
    p, _ = people(situation=("sms_otp", "face"))
    _, answer = respond_to(cmd(methods=("passkey", "app_push", "id_check")), HOLDER, {}, p)
    assert answer["method"] == "id_check" and answer["kind"] == "challenge_passed"


@pytest.mark.parametrize("command,refused", [
    (cmd("close", None), True), (cmd("freeze", ()), True), (cmd("unfreeze", None), False),
    (cmd(dry_run=True, methods=("face",)), False),
])
def test_closes_and_freezes_without_a_way_back_refuse_the_thief_and_shadow_commands_nothing(command, refused):
    p, thief = people()
    assert respond_to(command, thief, {}, p) == (refused, None)


def test_a_held_payout_goes_on_its_resolution_and_is_refused_at_its_expiry():
    hold = {"decision": "hold", "dry_run": False, "expires_at": T + 100}
    assert [payout_outcome(hold, None, T), payout_outcome(hold, None, T + 100),
            payout_outcome(hold, {"decision": "deny"}, T + 1), payout_outcome({**hold, "dry_run": True}, None, T)] == \
        ["held", "refused", "refused", "go"]


def test_streams_respond_keeps_its_names():
    assert respond.respond_to is respond_to and respond.People is People and respond.HOLDER is HOLDER
