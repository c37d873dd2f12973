"""The look-alike and attack families of issue 18 item 3, each played by its mechanism: a trip
with a new phone, a lost phone recovered, repay then a new phone then borrow, a housemate's
device; a warmed device, a mule ring, a remote-access scam."""

from __future__ import annotations

from collections import defaultdict

import orjson
import pytest

from simulator import SimConfig, simulate
from simulator.config import ATTACK_SCENARIOS, BENIGN_SCENARIOS, parse_mix

NEW_LEGIT = ("trip_new_phone", "lost_phone_recovery", "repay_new_phone", "household_device")
NEW_ATTACKS = ("warmed_device", "mule_ring", "remote_access_scam")
MIX = ",".join(f"{name}=0.03" for name in NEW_LEGIT + NEW_ATTACKS)


def read_jsonl(path) -> list[dict]:
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("families")
    config = SimConfig(accounts=1500, days=12, seed=5).with_mix(MIX)
    simulate(config, str(d / "e.jsonl"), str(d / "l.jsonl"))
    events = [r["value"] for r in read_jsonl(d / "e.jsonl")]
    by_id = {e["event_id"]: e for e in events}
    by_account = defaultdict(list)
    for e in events:
        by_account[e["account_id"]].append(e)
    labels = [r for r in read_jsonl(d / "l.jsonl") if r["label"] != "enrolled"]
    return config, by_id, by_account, labels


def of(labels, scenario):
    out = [r for r in labels if r["scenario"] == scenario]
    assert out, f"no {scenario} incident"
    return out


def test_the_families_are_named_in_config_and_mix():
    assert set(NEW_LEGIT) <= set(BENIGN_SCENARIOS)
    assert set(NEW_ATTACKS) <= set(ATTACK_SCENARIOS)
    rates = SimConfig().rates()
    assert parse_mix(MIX, rates) == {name: 0.03 for name in NEW_LEGIT + NEW_ATTACKS}


def test_each_family_appears_with_its_own_scenario_and_label(run):
    _, _, _, labels = run
    for name in NEW_LEGIT:
        assert {r["label"] for r in of(labels, name)} == {"legit"}
    for name in NEW_ATTACKS:
        assert {r["label"] for r in of(labels, name)} == {"ato"}
        assert any(r["first_loss_ts"] is not None for r in of(labels, name)), name


def test_trip_new_phone_books_flies_and_binds_a_new_phone_abroad(run):
    config, by_id, by_account, labels = run
    country = {p.account_id: p.country for p in _population(config).personas}
    seen = 0
    for r in of(labels, "trip_new_phone"):
        evs = [by_id[e] for e in r["event_ids"]]
        booking = next((e for e in evs if e.get("counterparty_id", "").startswith("m-travel-")), None)
        bound = [e for e in evs if e["kind"] == "device_bound"]
        if booking is None or not bound:
            continue  # the trip ran past the end of the data
        seen += 1
        assert booking["ts"] < bound[0]["ts"]
        abroad = [e for e in evs if e["kind"] == "ip_geo" and e["country"] != country[r["account_id"]]]
        assert abroad, "no address abroad in the trip"
        earlier = {e.get("device_id") for e in by_account[r["account_id"]] if e["ts"] < booking["ts"]}
        assert bound[0]["device_id"] not in earlier  # a new phone
        assert "app_push" not in r["holder_passes"] and "passkey" not in r["holder_passes"]
    assert seen >= 5


def test_lost_phone_recovery_resets_from_home_and_pays_the_same_payees(run):
    config, by_id, by_account, labels = run
    pop = _population(config).personas
    home_ip = {p.account_id: p.home_ip for p in pop}
    own_payees = {p.account_id: set(p.payees) for p in pop}
    checked = 0
    for r in of(labels, "lost_phone_recovery"):
        evs = [by_id[e] for e in r["event_ids"]]
        reset = next((e for e in evs if e["kind"] == "password_reset"), None)
        if reset is None:
            continue
        checked += 1
        before = [e for e in by_account[r["account_id"]] if e["ts"] < r["start_ts"]]
        assert reset["ip"] == home_ip[r["account_id"]]  # the holder's own home line
        sent = [e["counterparty_id"] for e in evs if e["kind"] == "transfer_out"]
        # the holder's payees: those they started with and those they added themselves
        added = {e["counterparty_id"] for e in by_account[r["account_id"]] if e["kind"] == "payee_added"}
        assert sent and set(sent) <= own_payees[r["account_id"]] | added
        assert reset["device_id"] not in {e.get("device_id") for e in before}
        assert "app_push" not in r["holder_passes"]
    assert checked >= 5


def test_repay_new_phone_repays_then_binds_a_new_phone_then_borrows_from_it(run):
    _, by_id, _, labels = run
    checked = 0
    for r in of(labels, "repay_new_phone"):
        evs = [by_id[e] for e in r["event_ids"]]
        kinds = [e["kind"] for e in evs]
        if "loan_draw" not in kinds:
            continue
        checked += 1
        assert kinds.index("loan_repayment") < kinds.index("device_bound") < kinds.index("loan_draw")
        bound = evs[kinds.index("device_bound")]
        assert evs[kinds.index("loan_draw")]["device_id"] == bound["device_id"]
    assert checked >= 5


def test_household_device_is_new_to_the_account_and_on_its_home_line(run):
    config, by_id, by_account, labels = run
    home_ip = {p.account_id: p.home_ip for p in _population(config).personas}
    for r in of(labels, "household_device"):
        evs = [by_id[e] for e in r["event_ids"]]
        login = next(e for e in evs if e["kind"] == "login_success")
        before = [e for e in by_account[r["account_id"]] if e["ts"] < r["start_ts"]]
        assert login["device_id"] not in {e.get("device_id") for e in before}
        assert login["ip"] == home_ip[r["account_id"]]
        assert "passkey" not in r["holder_passes"]


def _population(config):
    from simulator.population import build_population

    return build_population(config)


def _tz(config):
    return {p.account_id: p.tz_min for p in _population(config).personas}


def test_warmed_device_comes_back_at_night_from_new_addresses_and_warns_nobody_before_draining(run):
    config, by_id, by_account, labels = run
    tz = _tz(config)
    drained = 0
    for r in of(labels, "warmed_device"):
        evs = [by_id[e] for e in r["event_ids"]]
        logins = [e for e in evs if e["kind"] == "login_success"]
        for e in logins:  # hours the holder never uses: 01:00-06:00 on their clock
            assert 60 <= ((e["ts"] // 60_000 + tz[r["account_id"]]) % 1440) < 6 * 60, e
        holder_ips = {e.get("ip") for e in by_account[r["account_id"]] if e["event_id"] not in set(r["event_ids"])}
        assert not {e["ip"] for e in logins} & holder_ips
        assert any(e["kind"] == "device_bound" for e in evs)
        transfers = [e for e in evs if e["kind"] in ("transfer_out", "withdrawal", "loan_draw")]
        changes = [e for e in evs if e["kind"] in ("email_change", "phone_change")]
        if transfers and changes:
            drained += 1
            assert max(c["ts"] for c in changes) < transfers[0]["ts"]
            assert transfers[0]["ts"] - evs[0]["ts"] >= 2 * 86_400_000  # warmed for days
        assert r["attacker_passes"][-1:] in (["id_check"], ["app_push"], ["sms_otp"], ["email_otp"], ["totp"])
    assert drained >= 5


def test_mule_ring_accounts_pay_one_new_payee_from_shared_devices(run):
    _, by_id, by_account, labels = run
    payees = defaultdict(set)
    devices = defaultdict(set)
    for r in of(labels, "mule_ring"):
        for e in (by_id[x] for x in r["event_ids"]):
            if e["kind"] == "transfer_out":
                payees[e["counterparty_id"]].add(r["account_id"])
            if e.get("device_id"):
                devices[e["device_id"]].add(r["account_id"])
    assert max(len(a) for a in payees.values()) >= 3
    assert max(len(a) for a in devices.values()) >= 2  # a farm's device on several accounts
    ring_ids = {x for r in of(labels, "mule_ring") for x in r["event_ids"]}
    for mule in payees:
        added_by = {e["event_id"] for evs in by_account.values() for e in evs
                    if e["kind"] == "payee_added" and e.get("counterparty_id") == mule}
        assert added_by <= ring_ids  # the mule is a payee no holder ever added


def test_remote_access_scam_uses_the_holders_own_device_and_passes_what_the_holder_passes(run):
    _, by_id, by_account, labels = run
    for r in of(labels, "remote_access_scam"):
        mine = set(r["event_ids"])
        evs = [by_id[e] for e in r["event_ids"]]
        holder_devices = {e.get("device_id") for e in by_account[r["account_id"]] if e["event_id"] not in mine}
        assert {e["device_id"] for e in evs if e.get("device_id")} <= holder_devices
        assert any(e["kind"] == "payee_added" for e in evs)
        assert "face" in r["attacker_passes"] and "id_check" not in r["attacker_passes"]
