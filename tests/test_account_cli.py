"""``atoguard account`` without a broker: the changelog's name and keys as Quix makes them, and
what the command says about a profile built here."""

from __future__ import annotations

import socket

import orjson
import pytest

from detectors import contract as c
from detectors.outputs import pseudonym
from detectors.profile import (Challenge, Device, Evidence, Failure, Mark, Pass, Profile, Restriction, State,
                               encode)
from streams.cli import account as acc
from streams.cli import CliError, main

KEY = "a-test-pseudonym-key"
T = 1_764_000_000_000
MIN = 60_000
PHONE, LAPTOP, THIEF_IP, SESSION = "dev-phone-1", "dev-laptop-2", "203.0.113.66", "sess-9"


def frozen_profile() -> Profile:
    """An account frozen after a failed step-up, with a pass on its laptop and carried evidence."""
    p = Profile(first_ts=T - 7 * 86_400_000, last_ts=T + 10 * MIN, n_events=42)
    p.devices = {PHONE: Device(T - 7 * 86_400_000, T, 30, trust=1), "dev-evil": Device(T, T, 2, trust=-1)}
    p.restriction = Restriction(State.FROZEN, T + 10 * MIN, T + 7 * 86_400_000, "alert-77")
    p.challenge = Challenge("cmd-freeze-1", c.FREEZE, T + 10 * MIN, T + 7 * 86_400_000, ["face", "passkey"], 0.93,
                            device=PHONE, session=SESSION, ip=THIEF_IP)
    p.failures = [Failure(T + 5 * MIN, "sms_otp", "wrong_code", device="dev-evil", ip=THIEF_IP)]
    p.passes = {f"device:{LAPTOP}": Pass(T - 86_400_000, "passkey", True),
                f"session:{SESSION}": Pass(T - 3600_000, "totp", False)}
    p.evidence = {"money": Evidence(T + 9 * MIN, 0.8, ["BALANCE_DRAIN"])}
    p.actions = {"step_up": Mark(T, 0.7), "freeze": Mark(T + 10 * MIN, 0.93)}
    return p


def view_of(profile: Profile | None, commands=(), alerts=()) -> acc.AccountView:
    return acc.AccountView("acct-9", profile, list(commands), list(alerts), changelog="changelog__x")


FREEZE_CMD = {"command_id": "cmd-freeze-1", "account_id": "acct-9", "action": c.FREEZE,
              "reasons": ["BALANCE_DRAIN", "CHALLENGE_FAILED"], "message": "We froze your account ...",
              "risk": 0.93, "issued_at": T + 10 * MIN, "expires_at": T + 7 * 86_400_000,
              "methods": ["face", "passkey"], "alert_id": "alert-77", "dry_run": False}
ALERT = {"time": T + 10 * MIN, "risk_score": 93, "severity": "Critical",
         "finding_info": {"uid": "alert-77", "types": ["BALANCE_DRAIN"]}, "unmapped": {"action": c.FREEZE}}


# -- the changelog, as Quix names and keys it ------------------------------------------------------

def test_changelog_topic_is_named_as_quix_names_it():
    from quixstreams.models.topics.manager import TopicManager
    from quixstreams.utils.stream_id import stream_id_from_strings

    manager = object.__new__(TopicManager)
    manager._consumer_group = "p.worker"
    inputs = [f"p.{t}" for t in c.INPUT_TOPICS]
    assert acc.changelog_topic("p.worker", "p.") == manager._internal_name(
        "changelog", stream_id_from_strings(*inputs), "default")


def test_state_key_is_the_workers_profile_key_under_the_account():
    from quixstreams.state.metadata import SEPARATOR
    from streams.runtimes.quix import PROFILE_KEY

    assert acc.state_key("a|1") == "a|1".encode() + SEPARATOR + PROFILE_KEY


def test_profile_payload_strips_the_expiry_stamp_only_when_the_record_says_so():
    raw = encode(frozen_profile())
    stamp = (2**64 - 1).to_bytes(8, "big")
    assert acc.profile_payload(raw, {}) == raw
    assert acc.profile_payload(stamp + raw, {acc.STAMPED_HEADER: b"\x01"}) == raw
    assert acc.profile_payload(None, {}) is None  # a deletion


# -- what it says ----------------------------------------------------------------------------------

def test_describe_says_where_the_account_stands():
    text = acc.describe(view_of(frozen_profile(), [FREEZE_CMD], [ALERT]), KEY, now_ms=T + 20 * MIN)
    restriction = next(line for line in text.splitlines() if line.strip().startswith("restriction"))
    assert "frozen" in restriction
    assert "open challenge   freeze cmd-freeze-1" in text
    assert "face, passkey" in text
    assert "sms_otp: wrong_code" in text
    assert f"device {pseudonym(LAPTOP, KEY)}: passkey, strong" in text
    assert f"session {pseudonym(SESSION, KEY)}: totp, weak" in text
    assert "money: score 0.80" in text and "BALANCE_DRAIN" in text
    assert "freeze    " in text and "risk 0.93" in text
    assert "We froze your account" in text and "command cmd-freeze-1" in text
    assert "alert alert-77, risk 93/100" in text


def test_newest_commands_come_last():
    older = dict(FREEZE_CMD, command_id="cmd-step-0", action=c.STEP_UP, issued_at=T)
    text = acc.describe(view_of(frozen_profile(), [older, FREEZE_CMD]), KEY, now_ms=T)
    assert text.index("cmd-step-0") < text.index("command cmd-freeze-1")


@pytest.mark.parametrize("as_json", [False, True])
def test_device_ids_and_addresses_are_never_in_clear(as_json):
    view = view_of(frozen_profile(), [FREEZE_CMD], [ALERT])
    text = orjson.dumps(acc.to_json(view, KEY)).decode() if as_json else acc.describe(view, KEY, now_ms=T)
    for secret in (PHONE, LAPTOP, THIEF_IP, SESSION, "dev-evil"):
        assert secret not in text
        assert pseudonym(secret, KEY) in text


def test_lapsed_restriction_and_unanswered_challenge_are_said_so():
    p = frozen_profile()
    p.restriction = Restriction(State.STEPPED_UP, T, T + 60 * MIN, "alert-1")
    p.challenge = Challenge("cmd-step-1", c.STEP_UP, T, T + 5 * MIN, ["face"], 0.7)
    before = acc.describe(view_of(p), KEY, now_ms=T + MIN)
    after = acc.describe(view_of(p), KEY, now_ms=T + 2 * 60 * MIN)
    assert "over by now" not in before
    assert after.count("over by now") == 2


def test_an_account_with_no_restriction_says_so():
    text = acc.describe(view_of(Profile(first_ts=T, last_ts=T, n_events=1)), KEY, now_ms=T)
    assert "restriction      none: not restricted" in text
    assert "open challenge   none" in text


def test_json_carries_the_state_and_the_decisions():
    out = acc.to_json(view_of(frozen_profile(), [FREEZE_CMD], [ALERT]), KEY)
    assert out["profile"]["restriction"] == {"state": State.FROZEN, "since": T + 10 * MIN,
                                             "until": T + 7 * 86_400_000, "alert_id": "alert-77"}
    assert out["profile"]["challenge"]["methods"] == ["face", "passkey"]
    assert [cmd["command_id"] for cmd in out["commands"]] == ["cmd-freeze-1"]
    assert out["alerts"][0]["reasons"] == ["BALANCE_DRAIN"]
    assert out == orjson.loads(orjson.dumps(out))  # plain JSON


# -- the command's failures ------------------------------------------------------------------------

def test_unknown_account_is_a_failure_with_exit_1(monkeypatch):
    monkeypatch.setattr(acc, "read_account", lambda *a, **k: view_of(None))
    with pytest.raises(CliError) as raised:
        acc.run(acc_args("nobody"))
    assert raised.value.code == 1 and "nobody" in str(raised.value)


def acc_args(account: str, *more: str):
    import argparse

    parser = argparse.ArgumentParser()
    acc.configure(parser)
    return parser.parse_args([account, *more])


def test_no_broker_is_one_line_and_a_non_zero_exit(capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["account", "a1", "--bootstrap-servers", f"127.0.0.1:{port}", "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("atoguard account: ")


@pytest.mark.parametrize("option", [["--limit", "0"], ["--timeout", "0"]])
def test_bad_options_are_usage_errors(option, capsys):
    assert main(["account", "a1", *option]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
