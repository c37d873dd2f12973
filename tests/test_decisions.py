"""Decisions on payouts (contract v3, "Decisions") as tables: events in, decisions out.

Every accepted decided event (payment, transfer_out, withdrawal, loan_draw, payee_added,
limit_change) gets exactly one decision - ``deny`` when frozen or closed, ``hold`` on a step_up
or an open challenge of the same device, ``allow`` otherwise - and every hold at most one
resolution. The account is the one of :func:`tests.test_policy.takeover_stream`: ten quiet days
on device ``d1``, then a thief on device ``evil`` (login, password change, new payee, drain).
"""

from __future__ import annotations

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import contract as c
from detectors.config import Config, Outputs, Policy
from detectors.engine import Engine
from detectors.events import DeviceEvent, TransactionEvent, Verdict
from detectors.outputs import verify
from detectors.profile import HOUR_MS
from simulator.people import People
from tests.loop import run_records, transcript_of
from tests.test_contract import validator
from tests.test_policy import MIN, RULES_ONLY, takeover_stream

CFG = Config(detectors=RULES_ONLY)
DECISION = validator("decision")
QUIET = takeover_stream()[:-4]  # ten quiet days
X1, X2, X3, X4 = takeover_stream()[-4:]  # evil: login, password change, payee_added, transfer_out


def decisions(outs) -> list[tuple[str, str, str | None]]:
    """(event_id, decision, resolves) of each decision, in order; every one checked against the
    schema and its signature."""
    rows = []
    for o in outs:
        if o.topic != c.DECISIONS:
            continue
        v = o.value
        assert not list(DECISION.iter_errors(v)), list(DECISION.iter_errors(v))
        assert verify(v, CFG.keys.command_hmac)
        rows.append((v["event_id"], v["decision"], v["resolves"]))
    return rows


def values(outs, topic=c.DECISIONS) -> list[dict]:
    return [o.value for o in outs if o.topic == topic]


def start(cfg: Config = CFG):
    """The quiet days, then the thief's login, password change and new payee (a step_up)."""
    engine, states = Engine(cfg), {}
    quiet = list(run_records(engine, QUIET, states))
    outs = list(run_records(engine, [X1, X2, X3], states))
    return engine, states, quiet, outs


def held():
    """... and the drain from the same device, which rides on the payee's challenge."""
    engine, states, _, outs = start()
    step_up = values(outs, c.COMMANDS)[0]
    outs4 = list(run_records(engine, [X4], states))
    return engine, states, step_up, values(outs, c.DECISIONS) + values(outs4)


def answer(cmd, kind, method, at_ms=90_000, **extra):
    return DeviceEvent(f"ch-{cmd['command_id']}-{method}-{kind}", "a1", cmd["issued_at"] + at_ms, kind,
                       method=method, device_id="evil", command_id=cmd["command_id"], **extra)


# -- the rules of one event ------------------------------------------------------------------------

def test_every_decided_event_gets_exactly_one_decision_and_a_quiet_payment_is_allowed():
    engine, states, quiet, _ = start()
    decided = [e.event_id for e in QUIET if e.kind in c.DECIDED_KINDS]
    assert decisions(quiet) == [(eid, "allow", None) for eid in decided]
    allow = values(quiet)[0]
    assert allow["command_id"] is allow["methods"] is allow["expires_at"] is allow["message"] is None
    assert allow["contract_version"] == 3 and allow["dry_run"] is False


def test_a_step_up_on_the_event_holds_it_with_the_challenge_it_waits_on():
    _, _, step_up, rows = held()
    hold = rows[0]
    assert (hold["event_id"], hold["decision"]) == ("a1-x3", "hold") and step_up["action"] == "step_up"
    assert (hold["command_id"], hold["methods"], hold["expires_at"]) == \
        (step_up["command_id"], step_up["methods"], step_up["expires_at"])
    assert hold["message"] and hold["resolves"] is None


def test_a_later_movement_of_the_same_device_rides_the_open_challenge_without_a_second_one():
    engine, states, _, _ = start()
    outs = list(run_records(engine, [X4], states))
    assert values(outs, c.COMMANDS) == []
    (ride,) = values(outs)
    assert ride["decision"] == "hold" and ride["command_id"] == states["a1"].challenge.command_id


def test_a_risky_movement_of_another_device_gets_a_step_up_of_its_own():
    engine, states, _, outs = start()
    first = values(outs, c.COMMANDS)[0]
    other = TransactionEvent("y1", "a1", X3.ts + MIN, "transfer_out", amount=1900.0, counterparty_id="mule2",
                             balance_after=100.0, device_id="evil2", ip="203.0.113.77")
    outs2 = list(run_records(engine, [other], states))
    (cmd,) = values(outs2, c.COMMANDS)
    (hold,) = values(outs2)
    assert cmd["action"] == "step_up" and cmd["command_id"] != first["command_id"]
    assert hold["decision"] == "hold" and hold["command_id"] == cmd["command_id"]
    assert [ch.command_id for ch in (*states["a1"].others, states["a1"].challenge)] == \
        [first["command_id"], cmd["command_id"]]


# -- resolutions -----------------------------------------------------------------------------------

def test_the_first_trusted_pass_releases_every_hold_on_its_challenge_once():
    engine, states, step_up, rows = held()
    outs = list(run_records(engine, [answer(step_up, "challenge_passed", step_up["methods"][0])], states))
    assert decisions(outs) == [(f"ch-{step_up['command_id']}-{step_up['methods'][0]}-challenge_passed", "allow",
                                rows[0]["decision_id"]),
                               (f"ch-{step_up['command_id']}-{step_up['methods'][0]}-challenge_passed", "allow",
                                rows[1]["decision_id"])]
    assert states["a1"].holds == [] and states["a1"].challenge is None
    again = answer(step_up, "challenge_passed", step_up["methods"][-1], at_ms=40_000)
    assert values(run_records(engine, [again], states)) == []  # a closed challenge: nothing


def test_a_pass_with_a_method_the_challenge_did_not_list_releases_nothing():
    engine, states, step_up, _ = held()
    assert "sms_otp" not in step_up["methods"]
    outs = list(run_records(engine, [answer(step_up, "challenge_passed", "sms_otp")], states))
    assert values(outs) == [] and len(states["a1"].holds) == 2


def test_a_failed_attempt_keeps_the_challenge_open_and_another_listed_method_still_releases():
    engine, states, step_up, rows = held()
    tried = answer(step_up, "challenge_failed", step_up["methods"][0], reason="not_enrolled")
    outs = list(run_records(engine, [tried], states))
    assert values(outs) == [] and states["a1"].challenge is not None
    passed = answer(step_up, "challenge_passed", "id_check", at_ms=2 * HOUR_MS)
    outs = list(run_records(engine, [passed], states))
    assert [(d, r) for _, d, r in decisions(outs)] == [("allow", rows[0]["decision_id"]), ("allow", rows[1]["decision_id"])]


def test_an_abandoned_challenge_refuses_what_waited_on_it():
    engine, states, step_up, rows = held()
    outs = list(run_records(engine, [answer(step_up, "challenge_failed", step_up["methods"][0],
                                            reason="abandoned")], states))
    assert [(d, r) for _, d, r in decisions(outs)] == [("deny", rows[0]["decision_id"]), ("deny", rows[1]["decision_id"])]
    p = states["a1"]
    assert p.holds == [] and all(ch.action != "step_up" for ch in (*p.others, p.challenge) if ch is not None)


def test_a_freeze_refuses_every_hold_and_every_later_movement_names_it():
    engine, states, step_up, rows = held()
    outs = list(run_records(engine, [answer(step_up, "challenge_failed", step_up["methods"][0],
                                            reason="wrong_code")], states))
    (freeze,) = values(outs, c.COMMANDS)
    assert freeze["action"] == "freeze"
    assert [(d, r) for _, d, r in decisions(outs)] == [("deny", rows[0]["decision_id"]), ("deny", rows[1]["decision_id"])]
    later = TransactionEvent("y2", "a1", freeze["issued_at"] + MIN, "payment", amount=5.0, counterparty_id="shop1",
                             device_id="d1", balance_after=90.0)
    (deny,) = values(run_records(engine, [later], states))
    assert deny["decision"] == "deny" and deny["command_id"] == freeze["command_id"] and deny["message"]


def test_an_ato_verdict_refuses_every_hold_and_closes_every_step_up():
    engine, states, step_up, rows = held()
    outs = list(run_records(engine, [Verdict("v1", "a1", X4.ts + MIN, "ato", "analyst")], states))
    assert [a["action"] for a in values(outs, c.COMMANDS)] == ["close"]
    assert [(e, d, r) for e, d, r in decisions(outs)] == [("v1", "deny", rows[0]["decision_id"]),
                                                          ("v1", "deny", rows[1]["decision_id"])]
    assert states["a1"].challenge is None and states["a1"].others == []


def test_expiry_lapses_the_hold_in_event_time_and_writes_nothing():
    engine, states, step_up, _ = held()
    after = TransactionEvent("y3", "a1", step_up["expires_at"], "payment", amount=5.0, counterparty_id="shop1",
                             device_id="d1", balance_after=90.0)
    outs = list(run_records(engine, [after], states))
    assert [(e, d, r) for e, d, r in decisions(outs)] == [("y3", "allow", None)]
    assert states["a1"].holds == []
    late_pass = answer(step_up, "challenge_passed", step_up["methods"][0], at_ms=step_up["expires_at"] - step_up["issued_at"] + 1)
    assert values(run_records(engine, [late_pass], states)) == []


# -- settings ------------------------------------------------------------------------------------

def test_shadow_mode_decides_as_the_policy_would_and_marks_every_decision_dry_run():
    shadow = Config(detectors=RULES_ONLY, policy=Policy(dry_run=True))
    engine, states, _, outs = start(shadow)
    step_up = values(outs, c.COMMANDS)[0]
    outs += list(run_records(engine, [X4, answer(step_up, "challenge_failed", step_up["methods"][0],
                                                 reason="wrong_code")], states))
    later = TransactionEvent("y4", "a1", X4.ts + 10 * MIN, "payment", amount=5.0, counterparty_id="shop1",
                             device_id="d1", balance_after=90.0)
    outs += list(run_records(engine, [later], states))
    rows = values(outs)
    assert all(d["dry_run"] for d in rows)
    assert [d["decision"] for d in rows] == ["hold", "hold", "deny", "deny", "deny"]  # the shadow freeze denies


def test_a_v2_account_service_gets_v2_commands_and_no_decisions():
    v2 = Config(detectors=RULES_ONLY, outputs=Outputs(contract_version=2))
    engine, states, quiet, outs = start(v2)
    assert values(quiet) == [] and values(outs) == []
    (cmd,) = values(outs, c.COMMANDS)
    assert cmd["contract_version"] == 2 and c.ID_CHECK not in cmd["methods"]
    jsonschema.Draft202012Validator(validator("command", "v2").schema).validate(cmd)


# -- id_check, any method, verdicts -----------------------------------------------------------------

def test_a_thief_in_view_gets_only_methods_he_cannot_pass_then_id_check_and_three_hours():
    _, _, step_up, _ = held()
    assert step_up["methods"][-1] == c.ID_CHECK
    assert not set(step_up["methods"]) & {"sms_otp", "email_otp", "totp", "payment_password", "app_push"}
    assert step_up["expires_at"] - step_up["issued_at"] >= 3 * HOUR_MS


def test_every_freeze_with_a_way_back_ends_with_id_check():
    engine, states, step_up, _ = held()
    outs = list(run_records(engine, [answer(step_up, "challenge_failed", step_up["methods"][0],
                                            reason="wrong_code")], states))
    (freeze,) = values(outs, c.COMMANDS)
    assert freeze["methods"] and freeze["methods"][-1] == c.ID_CHECK
    way_back = answer(freeze, "challenge_passed", c.ID_CHECK, at_ms=2 * HOUR_MS)
    assert [v["action"] for v in values(run_records(engine, [way_back], states), c.COMMANDS)] == ["unfreeze"]


def test_a_holders_legit_verdict_lifts_nothing_and_an_analysts_lifts_the_freeze():
    engine, states, step_up, _ = held()
    outs = list(run_records(engine, [answer(step_up, "challenge_failed", step_up["methods"][0],
                                            reason="wrong_code")], states))
    t = values(outs, c.COMMANDS)[0]["issued_at"]
    user = list(run_records(engine, [Verdict("v1", "a1", t + MIN, "legit", "user")], states))
    assert values(user, c.COMMANDS) == [] and states["a1"].state == "frozen"
    analyst = list(run_records(engine, [Verdict("v2", "a1", t + 2 * MIN, "legit", "analyst")], states))
    assert [v["action"] for v in values(analyst, c.COMMANDS)] == ["unfreeze"] and states["a1"].state == "none"


# -- the closed loop: a property of the transcript ---------------------------------------------------

moves = st.lists(st.tuples(st.integers(1, 240), st.sampled_from(["d1", "evil", "evil2"]),
                           st.sampled_from(["payment", "transfer_out", "payee_added", "login"]),
                           st.floats(5, 3000)), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves, st.sampled_from([(), ("sms_otp",), ("id_check",)]),
       st.sampled_from([["sms_otp"], ["face", "sms_otp"], ["passkey", "app_push"]]))
def test_the_transcript_has_one_decision_per_decided_event_and_at_most_one_resolution_per_hold(steps, passes, enrolled):
    t = QUIET[-1].ts + 24 * HOUR_MS
    events, thief = list(QUIET), set()
    for i, (gap, device, kind, amount) in enumerate(steps):
        t += gap * MIN
        eid = f"m{i}"
        if device != "d1":
            thief.add(eid)
        if kind == "login":
            events.append(DeviceEvent(eid, "a1", t, "login_success", device_id=device, ip="203.0.113.9"))
        else:
            events.append(TransactionEvent(eid, "a1", t, kind, amount=None if kind == "payee_added" else amount,
                                           counterparty_id=f"p{i % 2}", device_id=device, ip="203.0.113.9",
                                           balance_after=100.0))
    people = People()
    people.add_attack(thief, passes)
    people.enrolled["a1"] = frozenset(enrolled)
    lines = transcript_of(events, people, CFG)
    fed = [m["value"] for m in lines if m["topic"] == c.TRANSACTION and m["value"]["kind"] in c.DECIDED_KINDS]
    rows = [m["value"] for m in lines if m["topic"] == c.DECISIONS]
    own = [d for d in rows if d["resolves"] is None]
    assert sorted(d["event_id"] for d in own) == sorted(e["event_id"] for e in fed)  # one each, none for withheld
    holds = {d["decision_id"] for d in own if d["decision"] == "hold"}
    resolved = [d["resolves"] for d in rows if d["resolves"] is not None]
    assert len(resolved) == len(set(resolved)) and set(resolved) <= holds
    assert len({d["decision_id"] for d in rows}) == len(rows)
    assert all(not list(DECISION.iter_errors(d)) for d in rows)
