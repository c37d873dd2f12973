"""The simulator's contract-v2 labels: attacker_passes from the attack's mechanism, holder_passes
where a situation narrows them, an enrolment line for every account, and the scenario mix."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from detectors.contract import METHODS
from simulator import SCENARIOS, SimConfig, simulate
from simulator.config import parse_mix
from simulator.methods import ATTACKER_KIT, HOLDER_DRIVEN, TAKEN_OVER_BY, attacker_passes, holder_passes
from streams.cli import main

RATES = {f"rate_{name}": 0.03 for name in SCENARIOS}


def read_jsonl(path) -> list[dict]:
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim2")
    config = SimConfig(accounts=1500, days=5, seed=21, **RATES)
    simulate(config, str(d / "e.jsonl"), str(d / "l.jsonl"))
    events = {r["value"]["event_id"]: r["value"] for r in read_jsonl(d / "e.jsonl")}
    return config, events, read_jsonl(d / "l.jsonl")


@pytest.mark.parametrize("scenario, params, kinds, expected", [
    ("sim_swap_payout", {}, ["sim_change", "password_reset", "login_success"], ["sms_otp"]),
    ("sim_swap_payout", {}, ["sim_change", "password_reset", "email_change"], ["sms_otp", "email_otp"]),
    ("phishing_takeover", {"kit": "relay"}, ["login_success"], ["sms_otp", "email_otp", "totp", "payment_password"]),
    ("phishing_takeover", {"kit": "push_fatigue"}, ["login_success"], ["app_push"]),
    ("credential_stuffing", {}, ["login_failure", "login_success", "transfer_out"], []),
    ("session_hijack", {}, ["transfer_out"], []),
    ("session_hijack", {}, ["phone_change", "transfer_out"], ["sms_otp"]),
    ("slow_takeover", {}, ["mfa_change"], ["totp"]),
])
def test_attacker_passes_follow_the_table(scenario, params, kinds, expected):
    assert attacker_passes(scenario, params, kinds) == expected


@pytest.mark.parametrize("scenario, params, lost", [
    ("new_phone", {"old_phone_kept": False, "mfa_reenrolled": False}, {"app_push", "passkey", "totp"}),
    ("new_phone", {"old_phone_kept": False, "mfa_reenrolled": True}, {"app_push", "passkey"}),
    ("new_phone", {"old_phone_kept": True}, set()),
    ("travel", {"sms_lost": True}, {"sms_otp"}),
    ("travel", {"sms_lost": False}, set()),
    ("shared_tablet", {"role": "sharer"}, {"app_push", "passkey"}),
    ("shared_tablet", {"role": "owner"}, set()),
    ("password_reset", {}, set()),
])
def test_holder_passes_follow_the_situation(scenario, params, lost):
    got = holder_passes(scenario, params)
    assert (got is None) == (not lost)
    if got is not None:
        assert set(METHODS) - set(got) == lost


def test_nobody_remote_passes_face_or_passkey():
    for key, kit in ATTACKER_KIT.items():
        if key.split("/")[0] in HOLDER_DRIVEN:  # the holder's own phone and face, driven by a caller
            continue
        assert not kit & {"face", "passkey"}, key
    assert not set(TAKEN_OVER_BY.values()) & {"face", "passkey"}


def test_every_attack_label_carries_attacker_passes_derived_from_its_events(run):
    _, events, labels = run
    attacks = [r for r in labels if r["label"] == "ato"]
    assert attacks
    kits = Counter()
    for r in attacks:
        kinds = [events[e]["kind"] for e in r["event_ids"]]
        base = ATTACKER_KIT.get(r["scenario"])
        if r["scenario"] == "phishing_takeover":  # one of the two kits
            relay = attacker_passes(r["scenario"], {"kit": "relay"}, kinds)
            fatigue = attacker_passes(r["scenario"], {"kit": "push_fatigue"}, kinds)
            assert r["attacker_passes"] in (relay, fatigue), r
            kits[r["attacker_passes"] == fatigue] += 1
        elif r["scenario"] == "warmed_device":  # with the holder's documents or without
            password = attacker_passes(r["scenario"], {"kit": "password"}, kinds)
            documents = attacker_passes(r["scenario"], {"kit": "documents"}, kinds)
            assert r["attacker_passes"] in (password, documents), r
            kits["documents" if r["attacker_passes"] == documents else "password"] += 1
        else:
            assert r["attacker_passes"] == attacker_passes(r["scenario"], {}, kinds), r
    assert kits[True] and kits[False]  # both kinds of phishing appear
    assert kits["documents"] and kits["password"]  # thieves with and without the documents
    legit = [r for r in labels if r["label"] == "legit"]
    assert not any("attacker_passes" in r for r in legit)
    narrowed = Counter(r["scenario"] for r in legit if "holder_passes" in r)
    assert narrowed["new_phone"] and narrowed["travel"] and narrowed["shared_tablet"]
    assert not narrowed["password_reset"] and not narrowed["repay_redraw"]


def test_an_enrolment_line_for_every_account(run):
    config, events, labels = run
    lines = [r for r in labels if r["label"] == "enrolled"]
    assert len(lines) == config.accounts == len({r["account_id"] for r in lines})
    assert {r["account_id"] for r in labels} <= {r["account_id"] for r in lines}
    assert {v["account_id"] for v in events.values()} <= {r["account_id"] for r in lines}
    share = Counter(m for r in lines for m in r["methods"])
    for m, p in config.enrolment_shares().items():
        assert abs(share[m] / len(lines) - p) <= 4 * (p * (1 - p) / len(lines)) ** 0.5 + 1e-9, m
    assert share["passkey"] < share["face"] < len(lines)  # not everyone has a passkey or face
    assert all(r["methods"] == [m for m in METHODS if m in r["methods"]] for r in lines)


def test_same_seed_gives_byte_identical_labels_and_enrolment_another_seed_does_not(tmp_path):
    def labels(seed, name):
        simulate(SimConfig(accounts=200, days=2, seed=seed, **RATES), str(tmp_path / f"{name}.e"), str(tmp_path / f"{name}.l"))
        return (tmp_path / f"{name}.l").read_bytes()

    assert labels(3, "a") == labels(3, "b") != labels(4, "c")


def test_the_mix_changes_the_scenario_counts(tmp_path):
    def counts(*extra):
        assert main(["simulate", "--accounts", "3000", "--days", "2", "--seed", "5", "--quiet",
                     "--out", str(tmp_path / "e.jsonl"), "--labels", str(tmp_path / "l.jsonl"),
                     "--rate-phishing-takeover", "0.01", "--rate-credential-stuffing", "0.01", *extra]) == 0
        return Counter(r.get("scenario") for r in read_jsonl(tmp_path / "l.jsonl"))

    base = counts()
    mixed = counts("--mix", "phishing_takeover=3x,credential_stuffing=0.2x,travel=0")
    assert mixed["phishing_takeover"] > 2 * base["phishing_takeover"]
    assert mixed["credential_stuffing"] < base["credential_stuffing"] / 2
    assert base["travel"] and not mixed["travel"]


@pytest.mark.parametrize("text, error", [("nope=2x", "NAME one of"), ("travel=lots", "not a share"), ("travel", "NAME=")])
def test_a_bad_mix_is_one_clear_error(text, error, tmp_path, capsys):
    with pytest.raises(ValueError, match=error):
        parse_mix(text, SimConfig().rates())
    assert main(["simulate", "--accounts", "10", "--days", "1", "--mix", text, "--quiet",
                 "--out", str(tmp_path / "e"), "--labels", str(tmp_path / "l")]) == 2
    assert "--mix" in capsys.readouterr().err


def test_help_explains_the_mix_with_an_example():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--mix" in out and "phishing_takeover=2x" in out and "attacker_passes" in out
