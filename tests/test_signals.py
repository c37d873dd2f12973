"""Partners' signals (contract v3, "Partners' signals"): decoding and dead letters, the methods
each signal removes, never deciding alone, what is shared on ``ato.signals-out`` and what never
is (a re-share, anything in shadow mode), and the simulator's partners. Tables in, decisions out."""

from __future__ import annotations

import orjson
import pytest

from detectors import challenge, signals
from detectors import contract as c
from detectors.base import Finding
from detectors.config import Config
from detectors.engine import Engine
from detectors.events import DeviceEvent, Signal, Verdict, _decode_by_table, _fast_decode, decode_or_dead_letter
from detectors.policy import fuse
from detectors.profile import DAY_MS, HOUR_MS, Profile

T = 1_767_000_000_000
WINDOW = 72 * HOUR_MS
MAIL = ("https://mail.example", "email_provider", "email")
CARRIER = ("https://carrier.example", "carrier", "phone_number")
LENDER = ("https://lender.example", "lender", "opaque")
IDP = ("https://idp.example", "identity_provider", "iss_sub")
OTHER = ("https://other.example", "other", "opaque")


def sig(partner, kind, ts=T, n=1, account="a1", **extra) -> Signal:
    issuer, role, fmt = partner
    return Signal(f"s{n}-{kind}-{role}", account, ts, kind, issuer, role, fmt, **extra)


def feed(engine: Engine, records, state: Profile | None = None) -> tuple[list, Profile]:
    outputs = []
    for r in records:
        result = engine.process(r, state)
        state = result.state if result.state is not None else state
        outputs.extend(result.outputs)
    return outputs, state


def settled_account(engine: Engine) -> tuple[list, Profile]:
    """An account with two weeks of quiet sign-ins on its own phone and home network."""
    rows = [DeviceEvent(f"h{i}", "a1", T - (14 - i) * DAY_MS, "login_success", device_id="d-home",
                        session_id=f"s{i}", ip="198.51.100.7") for i in range(14)]
    return feed(engine, rows)


@pytest.fixture
def share(monkeypatch):
    """Sharing on, as the runtimes will have it once ``signals-out`` is one of their outputs."""
    monkeypatch.setattr(signals, "SHARE", True)


# -- decoding -------------------------------------------------------------------------------------

GOOD = {"event_id": "s1", "account_id": "a1", "ts": T, "kind": "credential_compromise",
        "issuer": "https://mail.example", "partner_role": "email_provider", "subject_format": "email"}


@pytest.mark.parametrize("change,key,reason", [
    ({}, b"a1", None),
    ({"unknown_extra": {"x": 1}, "event_ts": T - 5}, b"a1", None),           # extra fields ignored
    ({"reason": "hijacking", "kind": "account_disabled"}, b"a1", None),
    ({"initiating_entity": "user", "kind": "credential_change", "change_type": "update",
      "credential_type": "password"}, b"a1", None),
    ({"kind": "account_hacked"}, b"a1", c.UNKNOWN_KIND),                     # unknown kind
    ({}, b"a2", c.KEY_MISMATCH),                                             # key = account_id
    ({"issuer": None}, b"a1", c.WRONG_TYPE),
    ({"partner_role": "bank"}, b"a1", c.OUT_OF_RANGE),
    ({"subject_format": "fax"}, b"a1", c.OUT_OF_RANGE),
    ({"initiating_entity": "robot"}, b"a1", c.OUT_OF_RANGE),
    ({"event_ts": "yesterday"}, b"a1", c.WRONG_TYPE),
    ({"ts": -1}, b"a1", c.OUT_OF_RANGE),
    ({"event_id": ""}, b"a1", c.OUT_OF_RANGE),
])
def test_signal_decodes_or_is_dead_lettered_with_its_reason(change, key, reason):
    obj = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    if change.get("issuer", 0) is None:
        obj["issuer"] = None
    raw = orjson.dumps(obj)
    got = decode_or_dead_letter(c.SIGNALS, raw, key)
    if reason is None:
        assert type(got) is Signal and got.account_id == "a1"
        assert _decode_by_table(c.SIGNALS, raw, key) == got
        fast = _fast_decode(c.SIGNALS, raw, key)  # None: an unknown field sends it to the table
        assert fast == got if "unknown_extra" not in change else fast in (None, got)
    else:
        assert got.reason == reason and got.value == raw


def test_missing_issuer_is_missing_field():
    raw = orjson.dumps({k: v for k, v in GOOD.items() if k != "issuer"})
    assert decode_or_dead_letter(c.SIGNALS, raw, b"a1").reason == c.MISSING_FIELD


def test_every_contract_kind_decodes():
    for kind in sorted(c.SIGNAL_KINDS):
        assert type(decode_or_dead_letter(c.SIGNALS, orjson.dumps({**GOOD, "kind": kind}), b"a1")) is Signal


# -- methods removed ------------------------------------------------------------------------------

@pytest.mark.parametrize("partner,kind,age_h,removed", [
    (MAIL, "credential_compromise", 1, {"email_otp"}),
    (MAIL, "sessions_revoked", 1, {"email_otp"}),
    (CARRIER, "identifier_changed", 1, {"sms_otp"}),
    (CARRIER, "identifier_changed", 71, {"sms_otp"}),
    (CARRIER, "identifier_changed", 73, set()),                 # older than the window
    (MAIL, "identifier_changed", 1, set()),                     # only the carrier's moves the number
    (CARRIER, "credential_compromise", 1, set()),
    (LENDER, "credential_compromise", 1, set()),                # only the e-mail provider's takes the mailbox
    (LENDER, "account_disabled", 1, set()),
    (IDP, "sessions_revoked", 1, set()),
    (MAIL, "credential_change", 1, set()),
])
def test_each_signal_removes_only_the_method_whose_channel_it_names(partner, kind, age_h, removed):
    p = Profile()
    signals.remember(p, sig(partner, kind), window_ms=WINDOW)
    at = T + age_h * HOUR_MS
    assert challenge.compromised(p, at, WINDOW) == removed
    listed = challenge.methods_for(p, at, device_trusted=True, weak_passed=frozenset(), cred_ms=WINDOW)
    assert not removed & set(listed)
    assert not removed & set(challenge.way_back(p, at, remote_thief=False, cred_ms=WINDOW))


# -- never alone ----------------------------------------------------------------------------------

ALL_SIGNALS = [sig(p, k, T + i * 60_000, n=i, reason="hijacking" if k == "account_disabled" else None)
               for i, (p, k) in enumerate((p, k) for p in (MAIL, CARRIER, LENDER, IDP, OTHER)
                                          for k in sorted(c.SIGNAL_KINDS))]


def test_signals_alone_write_nothing_and_change_no_trust():
    engine = Engine()
    _, state = settled_account(engine)
    before = (dict(state.good), dict(state.passes), {k: d.trust for k, d in state.devices.items()},
              state.restriction, state.challenge)
    outputs, state = feed(engine, ALL_SIGNALS, state)
    assert outputs == []
    assert (dict(state.good), dict(state.passes), {k: d.trust for k, d in state.devices.items()},
            state.restriction, state.challenge) == before


def test_a_quiet_event_after_every_kind_of_signal_gets_nothing():
    engine = Engine()
    _, state = settled_account(engine)
    _, state = feed(engine, ALL_SIGNALS, state)
    outputs, _ = feed(engine, [DeviceEvent("q1", "a1", T + DAY_MS // 2, "login_success", device_id="d-home",
                                           session_id="s-q", ip="198.51.100.7")], state)
    assert [o for o in outputs if o.topic in (c.COMMANDS, c.ALERTS)] == []


@pytest.mark.parametrize("own,expect_partner", [
    ([], False),                                                                   # nothing of its own
    ([Finding("new_device", 0.3, ("NEW_DEVICE_LOGIN",), "device")], True),
    ([Finding("failure", 0.6, ("CHALLENGE_FAILED",), "challenge")], True),
    ([Finding("x", 0.0, ("NEW_DEVICE_LOGIN",), "device")], False),                 # a zero says nothing
])
def test_partner_finding_joins_only_the_accounts_own_evidence(own, expect_partner):
    p = Profile()
    for s in (sig(MAIL, "credential_compromise"), sig(CARRIER, "identifier_changed", n=2),
              sig(LENDER, "account_disabled", n=3, reason="hijacking")):
        signals.remember(p, s, window_ms=WINDOW)
    out = signals.with_partners(p, own, T + HOUR_MS, WINDOW)
    partner = [f for f in out if f.family == signals.FAMILY]
    assert bool(partner) == expect_partner
    if partner:
        assert 0.25 <= partner[0].score <= signals.PARTNER_MAX < 0.5   # corroborates, never strong
        assert signals.own_risk(out, fuse(out)[0]) == pytest.approx(fuse(own)[0])


@pytest.mark.parametrize("partner,kind,extra,sign", [
    (CARRIER, "identifier_changed", {}, +1),
    (MAIL, "credential_compromise", {}, +1),
    (LENDER, "account_disabled", {"reason": "hijacking"}, +1),
    (MAIL, "credential_change", {"initiating_entity": "user"}, +1),
    (IDP, "risk_level_change", {"current_level": "high"}, +1),
    (IDP, "risk_level_change", {"current_level": "low"}, -1),
    (IDP, "assurance_level_change", {"previous_level": "nist-aal1", "current_level": "nist-aal2"}, -1),
    (LENDER, "account_enabled", {}, -1),
])
def test_signals_raise_or_lower_by_kind_and_role(partner, kind, extra, sign):
    assert signals.weight_of(sig(partner, kind, **extra)) * sign > 0


def test_weights_by_role_the_carrier_on_a_number_the_mailbox_on_a_password():
    w = lambda p, k: signals.weight_of(sig(p, k))  # noqa: E731
    assert w(CARRIER, "identifier_changed") > w(MAIL, "identifier_changed") > w(OTHER, "identifier_changed")
    assert w(MAIL, "credential_compromise") > w(OTHER, "credential_compromise")
    assert w(MAIL, "credential_change") > signals.weight_of(sig(MAIL, "credential_change", initiating_entity="user"))


def test_account_enabled_takes_back_the_same_partners_account_disabled():
    p = Profile()
    signals.remember(p, sig(LENDER, "account_disabled", reason="hijacking"), window_ms=WINDOW)
    assert signals.finding(p, T + 1, WINDOW)[0] is not None
    signals.remember(p, sig(LENDER, "account_enabled", T + 1_000, n=2), window_ms=WINDOW)
    assert signals.finding(p, T + 2_000, WINDOW)[0] is None


def test_a_lowering_signal_damps_a_devices_novelty_only():
    p = Profile()
    signals.remember(p, sig(IDP, "risk_level_change", current_level="low"), window_ms=WINDOW)
    own = [Finding("new_device", 0.5, ("NEW_DEVICE_LOGIN",), "device"),
           Finding("travel", 0.5, ("IMPOSSIBLE_TRAVEL",), "location")]
    out = {f.family: f.score for f in signals.with_partners(p, own, T + 1, WINDOW)}
    assert out["location"] == 0.5 and signals.MIN_DAMPING * 0.5 <= out["device"] < 0.5


# -- what is shared -------------------------------------------------------------------------------

def kinds(outputs) -> list[tuple[str, str | None]]:
    return [(o.value["kind"], o.value["reason"]) for o in outputs if o.topic == c.SIGNALS_OUT]


def verdict(label, source, ts, n=1) -> Verdict:
    return Verdict(f"v{n}", "a1", ts, label, source)


def test_an_analysts_ato_verdict_shares_a_hijacking_and_a_compromise(share):
    engine = Engine()
    _, state = settled_account(engine)
    outputs, state = feed(engine, [verdict("ato", "analyst", T)], state)
    assert kinds(outputs) == [("account_disabled", "hijacking"), ("credential_compromise", None)]
    close = next(o.value for o in outputs if o.topic == c.COMMANDS)
    assert {o.value["command_id"] for o in outputs if o.topic == c.SIGNALS_OUT} == {close["command_id"]}
    for o in outputs:
        if o.topic == c.SIGNALS_OUT:
            assert o.key == "a1" and o.value["contract_version"] == 3 and o.value["ts"] == T
            assert set(o.value) == {"event_id", "account_id", "ts", "kind", "reason", "command_id", "contract_version"}
    # a second ato verdict on the closed account: no second account_disabled
    outputs, state = feed(engine, [verdict("ato", "analyst", T + 60_000, n=2)], state)
    assert kinds(outputs) == [("credential_compromise", None)]
    # an analyst's legit verdict lifts the close: account_enabled
    outputs, state = feed(engine, [verdict("legit", "analyst", T + 120_000, n=3)], state)
    assert kinds(outputs) == [("account_enabled", None)]


def test_a_user_reported_freeze_shared_then_lifted_when_it_lapses(share):
    engine = Engine()
    _, state = settled_account(engine)
    outputs, state = feed(engine, [verdict("ato", "user", T)], state)
    assert kinds(outputs) == [("account_disabled", "hijacking"), ("credential_compromise", None)]
    freeze = next(o.value for o in outputs if o.topic == c.COMMANDS)
    later = DeviceEvent("after", "a1", freeze["expires_at"] + 1, "logout", device_id="d-home", ip="198.51.100.7")
    outputs, state = feed(engine, [later], state)
    assert kinds(outputs) == [("account_enabled", None)]
    assert next(o.value for o in outputs if o.topic == c.SIGNALS_OUT)["command_id"] == freeze["command_id"]
    outputs, _ = feed(engine, [DeviceEvent("after2", "a1", freeze["expires_at"] + 2, "logout", device_id="d-home")],
                      state)
    assert kinds(outputs) == []  # lifted once


@pytest.mark.parametrize("action,reasons,session,failed,expect", [
    (c.FREEZE, ("CHALLENGE_FAILED", "NEW_DEVICE_LOGIN"), "s9", False,
     [("account_disabled", "hijacking"), ("session_revoked", None)]),
    (c.FREEZE, ("CHALLENGE_UNANSWERED",), None, False, [("account_disabled", "hijacking")]),
    (c.FREEZE, ("NEW_DEVICE_LOGIN",), "s9", True, [("account_disabled", "hijacking"), ("session_revoked", None)]),
    (c.FREEZE, ("NEW_DEVICE_LOGIN",), "s9", False, []),          # no failed challenge: not shared
    (c.CLOSE, ("NEW_DEVICE_LOGIN",), "s9", False, [("account_disabled", "hijacking")]),
    (c.STEP_UP, ("CHALLENGE_FAILED",), "s9", True, []),
    (c.UNFREEZE, ("CHALLENGE_PASSED",), "s9", False, []),       # nothing was shared
    (None, (), "s9", True, []),
])
def test_signals_out_rules_of_a_decision(share, action, reasons, session, failed, expect):
    p = Profile()
    out = signals.shared_on_decision(p, "a1", "e1", T, action, reasons, "cmd-1", session=session, failed=failed)
    assert kinds(out) == expect
    assert (p.shared is not None) == bool(expect)


def test_signals_out_ids_are_deterministic_and_distinct(share):
    def once():
        return signals.shared_on_decision(Profile(), "a1", "e1", T, c.FREEZE, ("CHALLENGE_FAILED",), "cmd-1",
                                          session="s9")
    a, b = once(), once()
    assert [o.value for o in a] == [o.value for o in b]
    assert len({o.value["event_id"] for o in a}) == 2


def test_an_unfreeze_after_a_shared_freeze_shares_account_enabled_once(share):
    p = Profile()
    signals.shared_on_decision(p, "a1", "e1", T, c.FREEZE, ("CHALLENGE_FAILED",), "cmd-1")
    again = signals.shared_on_decision(p, "a1", "e2", T + 1, c.FREEZE, ("CHALLENGE_FAILED",), "cmd-2")
    assert kinds(again) == []
    lifted = signals.shared_on_decision(p, "a1", "e3", T + 2, c.UNFREEZE, ("CHALLENGE_PASSED",), "cmd-3")
    assert kinds(lifted) == [("account_enabled", None)]
    assert kinds(signals.shared_on_decision(p, "a1", "e4", T + 3, c.UNFREEZE, (), "cmd-4")) == []


def test_a_received_signal_is_never_shared_again(share):
    engine = Engine()
    _, state = settled_account(engine)
    outputs, _ = feed(engine, ALL_SIGNALS, state)
    assert [o for o in outputs if o.topic == c.SIGNALS_OUT] == []


def test_nothing_is_shared_in_shadow_mode(share):
    engine = Engine(Config.from_toml("[policy]\ndry_run = true\n"))
    _, state = settled_account(engine)
    outputs, state = feed(engine, [verdict("ato", "user", T), verdict("ato", "analyst", T + 1, n=2)], state)
    assert any(o.topic == c.COMMANDS and o.value["dry_run"] for o in outputs)
    assert kinds(outputs) == []
    assert signals.shared_on_decision(Profile(), "a1", "e1", T, c.CLOSE, (), "c1", dry_run=True) == []


def test_without_the_runtimes_routing_it_nothing_is_shared():
    # until signals-out is one of the runtimes' outputs, the engine writes none (a worker would
    # have nowhere to send it)
    if c.SIGNALS_OUT in c.OUTPUT_TOPICS:
        pytest.skip("signals-out is routed")
    engine = Engine()
    _, state = settled_account(engine)
    outputs, _ = feed(engine, [verdict("ato", "analyst", T)], state)
    assert kinds(outputs) == []


# -- the simulator's partners ---------------------------------------------------------------------

def _sim(tmp_path, name, partners):
    from simulator.config import SimConfig
    from simulator.generate import simulate

    out, lab = tmp_path / f"{name}.jsonl", tmp_path / f"{name}-labels.jsonl"
    cfg = SimConfig(accounts=600, days=10, seed=5, rate_phishing_takeover=0.05, rate_sim_swap_payout=0.05)
    simulate(cfg, str(out), str(lab), partners=partners)
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    labels = [orjson.loads(x) for x in lab.read_bytes().splitlines()]
    return lines, labels


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from simulator.partners import PartnerConfig

    tmp = tmp_path_factory.mktemp("partners")
    return {
        "none": _sim(tmp, "none", None),
        "honest": _sim(tmp, "honest", PartnerConfig()),
        "honest2": _sim(tmp, "honest2", PartnerConfig()),
        "false": _sim(tmp, "false", PartnerConfig(honest=False, false_partner=True)),
    }


def test_partners_add_only_signals_lines_valid_by_the_contract_in_order(simulated):
    base, _ = simulated["none"]
    lines, _ = simulated["honest"]
    assert [x for x in lines if x["topic"] != c.SIGNALS] == base
    sigs = [x["value"] for x in lines if x["topic"] == c.SIGNALS]
    assert sigs, "partners reported nothing"
    for v in sigs:
        assert type(decode_or_dead_letter(c.SIGNALS, orjson.dumps(v), v["account_id"].encode())) is Signal
        assert v["ts"] >= v["event_ts"]
    highest = 0
    for x in lines:  # signals never arrive behind what was already written (no late input)
        if x["topic"] == c.SIGNALS:
            assert x["value"]["ts"] >= highest - 30_000
        highest = max(highest, x["value"]["ts"])
    assert lines == simulated["honest2"][0]  # the same seed, the same signals


def test_honest_partners_see_part_of_the_attacks_and_some_holders(simulated):
    lines, labels = simulated["honest"]
    attacked = {lab["account_id"] for lab in labels if lab.get("label") == "ato"}
    attacks = {lab["account_id"] for lab in labels if lab.get("label") == "ato" and lab["scenario"] != "credential_stuffing_attempt"}
    reported = {x["value"]["account_id"] for x in lines if x["topic"] == c.SIGNALS}
    assert 0 < len(reported & attacks) < len(attacks)          # imperfect: many attacks unreported
    assert reported - attacked                                 # real holders reported too
    roles = {x["value"]["partner_role"] for x in lines if x["topic"] == c.SIGNALS}
    assert {"email_provider", "carrier"} <= roles


def test_the_false_partner_reports_only_ordinary_accounts(simulated):
    lines, labels = simulated["false"]
    sigs = [x["value"] for x in lines if x["topic"] == c.SIGNALS]
    assert sigs and {v["issuer"] for v in sigs} == {"https://false-lender.example"}
    labelled = {lab["account_id"] for lab in labels if lab.get("label") in ("ato", "legit")}
    assert not {v["account_id"] for v in sigs} & labelled
