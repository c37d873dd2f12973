"""The closed loop (contract v2): which methods a challenge lists, what each answer does, and the
properties of the closed-loop replay.

Tables first (evidence -> methods; answer -> effect), then properties: a holder who passes every
challenge with a strong method is never frozen on behaviour alone, and the transcript of a
closed-loop replay, replayed without answering, gives the same commands.
"""

from __future__ import annotations

import io

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import challenge as ch
from detectors.config import Config
from detectors.engine import Engine
from detectors.events import DeviceEvent, LocationEvent, TransactionEvent, to_dict
from detectors.profile import DAY_MS, HOUR_MS, CredentialChange, Device, Failure, Pass, Profile
from simulator.people import People
from tests.loop import run_records, transcript_of
from tests.test_policy import RULES_ONLY, THIEF, takeover_stream

T0 = 1_764_000_000_000
MIN = 60_000
CRED_MS = 72 * HOUR_MS
NOW = T0 + 30 * DAY_MS


def profile_with(*, creds=(), failures=(), passes=None) -> Profile:
    p = Profile()
    for kind, age_h in creds:
        p.creds[kind] = CredentialChange(NOW - int(age_h * HOUR_MS), f"e-{kind}", True)
    p.failures.extend(Failure(NOW - 10 * MIN, method, reason, "dev") for method, reason in failures)
    p.passes.update(passes or {})
    return p


# -- which methods -------------------------------------------------------------------------------

ALL_FIRST = ["passkey", "face", "app_push", "payment_password", "totp", "email_otp", "sms_otp"]


@pytest.mark.parametrize("case,profile,trusted,weak,expected", [
    ("a trusted device, nothing compromised: remote-proof first, then by how few thieves hold each",
     profile_with(), True, frozenset(), ALL_FIRST),
    ("a new device: face first (it works on a new phone), no code a relay forwards, then id_check",
     profile_with(), False, frozenset(),
     ["face", "passkey", "id_check"]),
    ("a SIM change: the SMS may ring on the thief's phone",
     profile_with(creds=[("sim_change", 2)]), True, frozenset(), [m for m in ALL_FIRST if m != "sms_otp"]),
    ("a phone number change: the same",
     profile_with(creds=[("phone_change", 30)]), True, frozenset(), [m for m in ALL_FIRST if m != "sms_otp"]),
    ("an e-mail change: the code goes to the new mailbox",
     profile_with(creds=[("email_change", 1)]), True, frozenset(), [m for m in ALL_FIRST if m != "email_otp"]),
    ("an MFA change: the new authenticator or push device may be the thief's",
     profile_with(creds=[("mfa_change", 1)]), True, frozenset(),
     ["passkey", "face", "payment_password", "email_otp", "sms_otp"]),
    ("a change older than the credential window no longer counts",
     profile_with(creds=[("sim_change", 100)]), True, frozenset(), ALL_FIRST),
    ("pushes refused by the holder: push bombing, no push",
     profile_with(failures=[("app_push", "denied")]), True, frozenset(), [m for m in ALL_FIRST if m != "app_push"]),
    ("a method that just failed is not asked again",
     profile_with(failures=[("payment_password", "wrong_code")]), True, frozenset(),
     [m for m in ALL_FIRST if m != "payment_password"]),
    ("not enrolled says nothing about the method",
     profile_with(failures=[("face", "not_enrolled")]), True, frozenset(), ALL_FIRST),
    ("a second risky moment after a weak pass: only what a relay cannot pass",
     profile_with(), False, frozenset({"sms_otp"}), ["passkey", "face", "app_push", "id_check"]),
    ("... and never the method passed weakly (a push fatigue victim's push)",
     profile_with(), True, frozenset({"app_push"}), ["passkey", "face", "id_check"]),
])
def test_methods_follow_the_evidence(case, profile, trusted, weak, expected):
    assert ch.methods_for(profile, NOW, device_trusted=trusted, weak_passed=weak, cred_ms=CRED_MS) == expected, case


@pytest.mark.parametrize("remote,creds,failures,expected", [
    (True, (), (), ["passkey", "face", "app_push", "id_check"]),
    (True, (), [("face", "mismatch")], ["passkey", "app_push", "id_check"]),
    (False, [("sim_change", 1)], (), ["passkey", "face", "app_push", "totp", "payment_password", "email_otp", "id_check"]),
])
def test_a_freeze_names_a_way_back_the_thief_in_view_cannot_hold(remote, creds, failures, expected):
    p = profile_with(creds=creds, failures=failures)
    assert ch.way_back(p, NOW, remote_thief=remote, cred_ms=CRED_MS) == expected


@pytest.mark.parametrize("method,attestation,bound_days,trusted,strong", [
    ("face", None, 0, False, True),
    ("passkey", None, 0, False, True),
    ("sms_otp", None, 400, True, False),
    ("app_push", "strong", 45, True, True),   # a long-bound, attested, trusted device
    ("app_push", "strong", 10, True, False),  # bound too recently
    ("app_push", "device", 45, True, False),  # genuine but not hardware-backed
    ("totp", "strong", 45, False, False),     # never trusted
])
def test_a_pass_is_strong_for_face_passkey_or_a_long_bound_attested_device(method, attestation, bound_days, trusted,
                                                                           strong):
    p = Profile()
    p.devices["dev"] = Device(NOW - bound_days * DAY_MS, NOW, 10, 1 if trusted else 0)
    assert ch.is_strong(p, method, "dev", attestation, NOW) is strong


# -- what an answer does (through the engine) -------------------------------------------------

def stepped_up():
    """The engine after the takeover stream's step-up (the new payee), and that command."""
    engine, states = Engine(Config(detectors=RULES_ONLY)), {}
    outs = list(run_records(engine, takeover_stream()[:-1], states))
    cmd = next(o.value for o in outs if o.topic == "commands")
    assert cmd["action"] == "step_up"
    return engine, states, cmd


def answer(cmd, kind, method, delay_ms=30_000, **extra):
    return DeviceEvent("ch-" + cmd["command_id"], cmd["account_id"], cmd["issued_at"] + delay_ms, kind,
                       method=method, device_id="evil", command_id=extra.pop("command_id", cmd["command_id"]),
                       **extra)


def cmds_of(outs):
    return [(o.value["action"], tuple(o.value["reasons"][:1])) for o in outs if o.topic == "commands"]


def test_a_strong_pass_makes_the_device_known_good_and_later_behaviour_goes_unchallenged():
    engine, states, cmd = stepped_up()
    assert cmds_of(run_records(engine, [answer(cmd, "challenge_passed", "face")], states)) == []
    p = states["a1"]
    assert p.challenge is None and p.state == "none" and p.devices["evil"].trust == 1
    assert p.passes["device:evil"].strong and p.is_good("device:evil", cmd["issued_at"] + HOUR_MS)
    cash_out = takeover_stream()[-1]
    assert cmds_of(run_records(engine, [cash_out], states)) == []


def test_a_weak_pass_answers_only_the_novelty_and_a_second_risky_moment_is_remote_proof():
    engine, states, cmd = stepped_up()
    p = states["a1"]
    p.challenge.methods.insert(0, "payment_password")  # a challenge that listed a weak method
    assert cmds_of(run_records(engine, [answer(cmd, "challenge_passed", "payment_password")], states)) == []
    assert not p.passes["device:evil"].strong and not p.is_good("device:evil", cmd["issued_at"] + HOUR_MS)
    outs = list(run_records(engine, [takeover_stream()[-1]], states))  # the drain, from the same device
    (again,) = [o.value for o in outs if o.topic == "commands"]
    assert again["action"] == "step_up" and again["methods"] == ["passkey", "face", "app_push", "id_check"]


def test_a_sign_in_with_a_passkey_counts_as_a_strong_pass_for_its_device():
    engine, states = Engine(Config(detectors=RULES_ONLY)), {}
    stream = takeover_stream()
    x1 = stream[30]
    strong_login = DeviceEvent(x1.event_id, "a1", x1.ts, "login_success", device_id="evil", ip=x1.ip,
                               auth_method="passkey")
    outs = list(run_records(engine, [*stream[:30], strong_login, *stream[31:]], states))
    assert cmds_of(outs) == [] and states["a1"].passes["device:evil"].strong
    password_login = list(run_records(Engine(Config(detectors=RULES_ONLY)), stream, {}))
    assert cmds_of(password_login) != []


@pytest.mark.parametrize("reason,expected", [
    ("wrong_code", [("freeze", ("CHALLENGE_FAILED",))]),
    ("mismatch", [("freeze", ("CHALLENGE_FAILED",))]),
    ("not_enrolled", []),  # no method to check with is no evidence against the person
])
def test_a_failed_challenge_is_evidence_weighed_with_the_sign_in(reason, expected):
    engine, states, cmd = stepped_up()
    outs = list(run_records(engine, [answer(cmd, "challenge_failed", "face", reason=reason)], states))
    assert cmds_of(outs) == expected
    assert any(o.topic == "alerts" for o in outs)  # the security team hears of it either way
    assert states["a1"].failures[-1].reason == reason


@pytest.mark.parametrize("case,make", [
    ("another command's id", lambda cmd: answer(cmd, "challenge_failed", "face", reason="wrong_code",
                                                 command_id="someone-else")),
    ("after expires_at", lambda cmd: answer(cmd, "challenge_failed", "face", reason="wrong_code",
                                            delay_ms=cmd["expires_at"] - cmd["issued_at"] + 1)),
])
def test_an_answer_that_is_not_to_the_open_challenge_changes_nothing(case, make):
    engine, states, cmd = stepped_up()
    before = states["a1"].failures[:]
    assert cmds_of(run_records(engine, [make(cmd)], states)) == [], case
    if case == "another command's id":
        assert states["a1"].challenge is not None and states["a1"].failures == before


def test_a_second_answer_to_the_same_command_changes_nothing():
    engine, states, cmd = stepped_up()
    list(run_records(engine, [answer(cmd, "challenge_passed", "face")], states))
    again = DeviceEvent("ch-again", "a1", cmd["issued_at"] + 40_000, "challenge_failed", method="face",
                        reason="wrong_code", device_id="evil", command_id=cmd["command_id"])
    assert cmds_of(run_records(engine, [again], states)) == [] and not states["a1"].failures


def test_an_unanswered_step_up_counts_as_failed_for_the_next_event_of_that_device():
    engine, states, cmd = stepped_up()
    late = TransactionEvent("late", "a1", cmd["expires_at"] + MIN, "transfer_out", amount=1900.0,
                            counterparty_id="mule", balance_after=100.0, device_id="evil")
    (freeze,) = [o.value for o in run_records(engine, [late], states) if o.topic == "commands"]
    assert freeze["action"] == "freeze" and "CHALLENGE_UNANSWERED" in freeze["reasons"]
    assert states["a1"].failures[-1].reason == "timeout"
    # the same drain while the step-up is still open waits for its answer
    engine, states, cmd = stepped_up()
    early = TransactionEvent("early", "a1", cmd["issued_at"] + MIN, "transfer_out", amount=1900.0,
                             counterparty_id="mule", balance_after=100.0, device_id="evil")
    assert cmds_of(run_records(engine, [early], states)) == []


def frozen():
    engine, states, cmd = stepped_up()
    outs = list(run_records(engine, [answer(cmd, "challenge_failed", "face", reason="wrong_code")], states))
    freeze = next(o.value for o in outs if o.topic == "commands")
    return engine, states, freeze


def test_passing_a_freezes_way_back_lifts_it():
    engine, states, freeze = frozen()
    way_back = answer(freeze, "challenge_passed", freeze["methods"][0], delay_ms=10 * MIN)
    outs = list(run_records(engine, [way_back], states))
    assert cmds_of(outs) == [("unfreeze", ("CHALLENGE_PASSED",))] and states["a1"].state == "none"


def test_a_way_back_whose_channel_changed_hands_since_does_not_lift_the_freeze():
    engine, states, freeze = frozen()
    t = freeze["issued_at"]
    engine.process(DeviceEvent("sim", "a1", t + MIN, "sim_change"), states["a1"])
    passed_by_sms = DeviceEvent("ch-x", "a1", t + 10 * MIN, "challenge_passed", method="sms_otp",
                                command_id=freeze["command_id"])
    outs = list(run_records(engine, [passed_by_sms], states))
    assert cmds_of(outs) == [] and states["a1"].state == "frozen"


# -- properties of the closed loop ---------------------------------------------------------------

def transcript(records, people: People, cfg=Config(detectors=RULES_ONLY)) -> list[dict]:
    return transcript_of(records, people, cfg)


behaviour = st.lists(st.tuples(
    st.integers(1, 90),                                         # minutes since the last event
    st.sampled_from(["login", "payment", "transfer", "fix", "payee", "password", "email"]),
    st.sampled_from(["d1", "d1", "new1", "new2", None]),        # device
    st.sampled_from(["198.51.100.1", "203.0.113.9", "192.0.2.80"]),  # home, elsewhere
    st.sampled_from([(52.52, 13.40, "DE"), (40.71, -74.0, "US"), (-33.9, 151.2, "AU")]),
    st.floats(1, 5000),
), min_size=1, max_size=25)


def _events(steps) -> list:
    quiet = takeover_stream()[:30]
    t = quiet[-1].ts + DAY_MS
    out = []
    for i, (gap, kind, device, ip, (lat, lon, cc), amount) in enumerate(steps):
        t += gap * MIN
        eid = f"b{i}"
        if kind == "login":
            out.append(DeviceEvent(eid, "a1", t, "login_success", device_id=device, ip=ip, session_id="S"))
        elif kind in ("password", "email"):
            out.append(DeviceEvent(eid, "a1", t, f"{kind}_change", device_id=device, ip=ip))
        elif kind == "fix":
            out.append(LocationEvent(eid, "a1", t, "ip_geo", lat=lat, lon=lon, country=cc, ip=ip,
                                     ip_type="residential"))
        elif kind == "payee":
            out.append(TransactionEvent(eid, "a1", t, "payee_added", counterparty_id=f"p{i}", device_id=device, ip=ip))
        else:
            out.append(TransactionEvent(eid, "a1", t, "payment" if kind == "payment" else "transfer_out",
                                        amount=amount, counterparty_id=f"p{i % 3}", device_id=device, ip=ip,
                                        balance_after=max(0.0, 3000 - amount)))
    return quiet + out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(behaviour, st.sampled_from([["face"], ["passkey", "sms_otp"], ["face", "passkey", "sms_otp"]]))
def test_a_holder_who_passes_every_challenge_strongly_is_never_frozen_on_behaviour_alone(steps, enrolled):
    people = People()
    people.enrolled["a1"] = frozenset(enrolled)
    lines = transcript(_events(steps), people)
    actions = [m["value"]["action"] for m in lines if m["topic"] == "commands"]
    answers = [m["value"] for m in lines if m["topic"] == "device" and m["value"]["event_id"].startswith("ch-")]
    if all(a["kind"] == "challenge_passed" and a["method"] in ch.STRONG_METHODS for a in answers):
        assert "freeze" not in actions and "close" not in actions


def test_the_transcript_replays_to_the_same_commands(tmp_path):
    """The input lines of a closed-loop transcript, replayed plainly, give the same commands and
    decisions."""
    from streams.replay import replay_file

    people = People()
    people.add_attack(THIEF, ["sms_otp"])
    people.enrolled["a1"] = frozenset({"sms_otp", "payment_password"})
    lines = transcript(takeover_stream() + takeover_stream("a2"), people)
    outputs = [m["value"] for m in lines if m["topic"] in ("commands", "decisions")]
    assert any(m["topic"] == "device" and m["value"]["event_id"].startswith("ch-") for m in lines)  # answers fed
    inputs = [r for r in lines if r["topic"] in ("device", "location", "transaction", "verdicts")]
    (tmp_path / "in.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in inputs))
    replay_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", Config(detectors=RULES_ONLY))
    again = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [m["value"] for m in again if m["topic"] in ("commands", "decisions")] == outputs


def test_in_shadow_mode_nobody_is_challenged_or_refused():
    """dry_run commands are recorded by the account service and not acted on: no answer is
    injected and the thief's events are not withheld."""
    from detectors.config import Policy

    people = People()
    people.add_attack(THIEF, ())
    shadow = Config(detectors=RULES_ONLY, policy=Policy(dry_run=True))
    lines = transcript(takeover_stream(), people, shadow)
    assert [m for m in lines if m["topic"] == "withheld"] == []
    assert not any(m["value"].get("event_id", "").startswith("ch-") for m in lines if m["topic"] == "device")
    assert all(m["value"]["dry_run"] for m in lines if m["topic"] == "commands")
