"""The command line's one style, without a broker: every expected failure is one clear line on
stderr and a non-zero exit, never a traceback; the same options everywhere; settings that set
nothing are refused. "No broker" is a closed port (127.0.0.1:1) with a short timeout."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.config import Config
from streams import cli
from streams.cli import alerts as alerts_cli, commands as commands_cli, verdict as verdict_cli
from streams.settings import ENVIRONMENT

NO_BROKER = ["--bootstrap-servers", "127.0.0.1:1", "--timeout", "1"]
ROOT = Path(__file__).resolve().parents[1]


def one_line_error(capsys, command: str) -> str:
    """The single stderr line of a failed command, checked to be the house style."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"atoguard {command}: ")
    return lines[0]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ATOGUARD_* variable of the caller's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("ATOGUARD_"):
            monkeypatch.delenv(name)


# -- no broker ---------------------------------------------------------------------------------
@pytest.mark.timeout(30)  # a guard against the old 30 s bootstrap wait, not a measurement
@pytest.mark.parametrize("argv", [
    ["alerts", "tail", *NO_BROKER],
    ["commands", "tail", *NO_BROKER],
    ["commands", "tail", "--frozen", *NO_BROKER],
    ["topics", "create", *NO_BROKER],
    ["verdict", "--account", "a1", "--label", "legit", "--source", "analyst", *NO_BROKER],
])
def test_no_broker_is_one_line_and_exit_1(argv, capsys):
    assert cli.main(argv) == 1
    line = one_line_error(capsys, argv[0])
    assert "no Kafka answers at 127.0.0.1:1 within 1 s" in line


def test_no_broker_through_the_installed_entry_point():
    done = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "tail", *NO_BROKER],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("ATOGUARD_")})
    assert done.returncode == 1
    assert done.stderr.strip().startswith("atoguard alerts: no Kafka answers")
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr


@pytest.mark.timeout(60)  # a guard against an unbounded bootstrap wait, not a measurement
@pytest.mark.parametrize("runtime", ["quix", "faust"])
def test_the_worker_with_no_broker_says_so_in_one_line(runtime, tmp_path):
    """The start-up checks keep the Kafka client's retries and ERROR lines off the terminal."""
    done = subprocess.run([sys.executable, "-m", "streams.cli", "run", "--dev", "--runtime", runtime,
                           "--bootstrap-servers", "127.0.0.1:1", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("ATOGUARD_")})
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("atoguard run: Kafka: ") and "127.0.0.1:1" in lines[0]


# -- broken pipe -------------------------------------------------------------------------------
def test_a_closed_stdout_ends_quietly_with_141():
    """`atoguard ... | head` where head has gone: no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "topics", "list"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before the command writes
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == cli.EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err


# -- settings that set nothing -----------------------------------------------------------------
def test_policy_variable_with_one_underscore_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("ATOGUARD_POLICY_DRY_RUN", "true")
    assert cli.main(["topics", "list"]) == 2
    line = one_line_error(capsys, "topics")
    assert "ATOGUARD_POLICY_DRY_RUN" in line and "ATOGUARD_POLICY__DRY_RUN" in line


def test_policy_variable_of_an_unknown_section_lists_the_sections(monkeypatch, capsys):
    monkeypatch.setenv("ATOGUARD_POLICCY__DRY_RUN", "true")
    assert cli.main(["topics", "list"]) == 2
    line = one_line_error(capsys, "topics")
    assert "'policcy'" in line and "policy, windows, keys" in line


def test_policy_variable_with_an_unknown_key_lists_the_keys(monkeypatch, capsys):
    monkeypatch.setenv("ATOGUARD_POLICY__DRY_RUNN", "true")
    assert cli.main(["topics", "list"]) == 2
    line = one_line_error(capsys, "topics")
    assert "dry_runn" in line and "'dry_run'" in line and "'freeze_at'" in line


def test_a_close_misspelling_of_a_variable_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("ATOGUARD_BOOTSTRAP_SERVER", "kafka:9092")
    assert cli.main(["topics", "list"]) == 2
    assert "did you mean ATOGUARD_BOOTSTRAP_SERVERS" in one_line_error(capsys, "topics")


def test_a_dry_run_override_with_two_underscores_is_applied(monkeypatch):
    monkeypatch.setenv("ATOGUARD_POLICY__DRY_RUN", "true")
    assert cli.load_policy(argparse.Namespace(config=None)).policy.dry_run is True


def test_an_unknown_setting_in_a_file_lists_the_known_ones(tmp_path, capsys):
    bad = tmp_path / "policy.toml"
    bad.write_text("[policy]\nfreez_at = 0.9\n")
    assert cli.main(["alerts", "tail", "--config", str(bad), *NO_BROKER]) == 2
    line = one_line_error(capsys, "alerts")
    assert "freez_at" in line and "'freeze_at'" in line


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    assert cli.main(["replay", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.jsonl"),
                     "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in one_line_error(capsys, "replay")


def test_a_missing_input_file_is_one_line(tmp_path, capsys):
    assert cli.main(["replay", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "in.jsonl: no such file" in one_line_error(capsys, "replay")


def test_a_bad_bootstrap_address_is_one_line(capsys):
    assert cli.main(["alerts", "tail", "--bootstrap-servers", "kafka"]) == 2
    assert "'kafka' is not host:port" in one_line_error(capsys, "alerts")


# -- the same options everywhere -----------------------------------------------------------------
def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["replay"], ["run"], ["broker", "start"], ["broker", "status"], ["topics", "create"],
    ["topics", "list"], ["alerts", "tail"], ["commands", "tail"], ["verdict"], ["demo"],
])
def test_every_command_with_a_policy_or_settings_takes_config(argv, capsys):
    assert "--config" in help_of(argv, capsys)


@pytest.mark.parametrize("argv", [
    ["run"], ["topics", "create"], ["alerts", "tail"], ["commands", "tail"], ["verdict"],
])
def test_kafka_commands_share_the_option_names(argv, capsys):
    text = help_of(argv, capsys)
    assert "--bootstrap-servers" in text and "--topic-prefix" in text


def test_help_lists_every_variable(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in [*ENVIRONMENT, "ATOGUARD_<SECTION>__<KEY>"]:
        assert name in text
    assert {"ATOGUARD_KAFKA_LIB", "ATOGUARD_TEST_BOOTSTRAP", "ATOGUARD_BOOTSTRAP_SERVERS"} <= set(ENVIRONMENT)


def test_every_variable_the_code_reads_is_listed():
    """A new ATOGUARD_* variable in the code must join streams.settings.ENVIRONMENT (and so
    --help and docs/operators.md)."""
    import re

    read = set()
    for folder in ("streams", "tools", "tests", "bench", ".ci", "deploy"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in ("", ".py", ".yaml", ".yml"):
                read |= set(re.findall(r"ATOGUARD_[A-Z0-9_]+", path.read_text(errors="ignore")))
    # policy overrides (two underscores), prefixes ("ATOGUARD_BROKER_") and this file's own
    # examples of wrong names are not variables
    read = {name for name in read if "__" not in name and not name.endswith(("_", "_SECTION", "_FIELD"))
            and name not in ("ATOGUARD_POLICY_DRY_RUN", "ATOGUARD_BOOTSTRAP_SERVER",
                             "ATOGUARD_TOPIC_PREFX", "ATOGUARD_WINDOWS_MIN_HISTORY_EVENTS")}
    assert read - set(ENVIRONMENT) == set()
    docs = (ROOT / "docs" / "operators.md").read_text()
    assert [name for name in ENVIRONMENT if name not in docs] == []


def test_unknown_command_is_usage_error(capsys):
    assert cli.main(["alert"]) == 2
    assert "unknown command 'alert'" in capsys.readouterr().err


# -- alerts tail -------------------------------------------------------------------------------
def tail_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    alerts_cli.configure(parser)
    return parser.parse_args(["tail", *argv])


def test_min_severity_takes_the_case_the_table_prints():
    assert tail_args("--min-severity", "High").min_severity == "high"


def test_reason_codes_are_case_insensitive():
    assert alerts_cli.check_reasons(["balance_drain", "Sim_Swap"]) == {"BALANCE_DRAIN", "SIM_SWAP"}


def test_an_unknown_reason_code_lists_the_codes(capsys):
    assert cli.main(["alerts", "tail", "--reason", "BALANCE_DRAINN", *NO_BROKER]) == 2
    line = one_line_error(capsys, "alerts")
    assert "BALANCE_DRAINN" in line and "BALANCE_DRAIN," in line and "SIM_SWAP" in line


def test_the_alert_row_shows_the_alert_id():
    row = alerts_cli.format_row({"time": 0, "finding_info": {"uid": "3f2a" * 8, "types": ["SIM_SWAP"]},
                                 "unmapped": {"account_id": "a1", "action": "freeze", "dry_run": True}})
    assert "3f2a" * 8 in row and "freeze*" in row and "SIM_SWAP" in row


# -- commands tail: who is frozen ----------------------------------------------------------------
def command(account, action, issued, expires=None, dry_run=False):
    return {"account_id": account, "action": action, "issued_at": issued, "expires_at": expires,
            "dry_run": dry_run, "reasons": ["SIM_SWAP"], "command_id": f"{account}-{issued}"}


@pytest.mark.parametrize("commands, at, frozen", [
    ([command("a1", "freeze", 10, 100)], 50, ["a1"]),
    ([command("a1", "freeze", 10, 100)], 100, []),  # lapsed at its expires_at
    ([command("a1", "freeze", 10, 100), command("a1", "unfreeze", 20)], 50, []),
    ([command("a1", "freeze", 10, 100), command("a1", "step_up", 20)], 50, ["a1"]),
    ([command("a1", "close", 10)], 10 ** 12, ["a1"]),
    ([command("a1", "freeze", 10, 100, dry_run=True)], 50, []),  # shadow mode froze nobody
    ([command("a1", "freeze", 10, 100), command("a2", "freeze", 5, 60)], 70, ["a1"]),
])
def test_frozen_book_keeps_the_last_restriction_in_force(commands, at, frozen):
    book = commands_cli.FrozenBook()
    for cmd in commands:
        book.observe(cmd)
    assert [cmd["account_id"] for cmd in book.in_force(at)] == frozen


def test_commands_tail_refuses_a_bad_at(capsys):
    assert cli.main(["commands", "tail", "--at", "yesterday", *NO_BROKER]) == 2
    assert "--at 'yesterday'" in one_line_error(capsys, "commands")


def test_the_command_row_checks_the_signature():
    from detectors.outputs import command_value

    key = Config().keys.command_hmac
    cmd = command_value(account_id="a1", action="freeze", reasons=("SIM_SWAP",), risk=0.9,
                        issued_at=10, expires_at=100, trigger_event_id="e1", alert_id=None,
                        policy_version="p", dry_run=False, key=key, methods=["face"])
    assert "  ok " in commands_cli.format_row(cmd, key)
    assert "  BAD " in commands_cli.format_row({**cmd, "action": "close"}, key)


# -- verdict -----------------------------------------------------------------------------------
def test_verdict_refuses_an_invalid_account_id(capsys):
    assert cli.main(["verdict", "--account", "x" * 300, "--label", "ato", "--source", "user", *NO_BROKER]) == 2
    assert "account_id" in one_line_error(capsys, "verdict")


@pytest.mark.parametrize("restriction, label, source, ts, expected", [
    (command("a1", "freeze", 10, 100), "legit", "user", 50, "lifts the freeze"),
    (command("a1", "freeze", 10, 100), "legit", "user", 150, "nothing to lift: the freeze"),
    (None, "legit", "analyst", 50, "nothing to lift (no freeze"),
    (command("a1", "close", 10), "legit", "analyst", 50, "lifts the close"),
    (None, "ato", "analyst", 50, "closes the account"),
    (command("a1", "close", 10), "ato", "analyst", 50, "closed already"),
    (None, "ato", "user", 50, "freezes the account"),
    (command("a1", "freeze", 10, 100), "ato", "user", 50, "frozen already"),
])
def test_verdict_says_what_it_changes(restriction, label, source, ts, expected):
    history = verdict_cli.AccountHistory(restriction=restriction, latest_ts=10)
    assert expected in verdict_cli.expected_change(history, label, source, ts)


def test_verdict_reads_the_partition_the_worker_writes_to():
    """The worker's producer (aiokafka, under Faust) partitions by murmur2 of the key."""
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(6))
    for account in ("a1", "a07", "acct-123456", "x"):
        key = account.encode()
        assert verdict_cli.partition_of(account, 6) == DefaultPartitioner()(key, partitions, partitions)
