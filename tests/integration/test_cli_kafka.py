"""The command line against the real broker: alerts tail, commands tail and verdict read and
write the contract topics, say what is missing, and print what an operator needs."""

from __future__ import annotations

import orjson

from detectors.config import Config
from detectors.outputs import alert_value, cloudevents_headers, command_value
from streams import cli

KEY = Config().keys.command_hmac


def alert(account: str, ts: int, reasons: tuple[str, ...], risk: float) -> dict:
    return alert_value(alert_id=f"al-{account}-{ts}", account_id=account, ts=ts, risk=risk,
                       reasons=reasons, action="freeze", scores={}, evidence=[],
                       policy_version="test", dry_run=False)


def command(account: str, action: str, ts: int, expires_at: int | None = None) -> dict:
    return command_value(account_id=account, action=action, reasons=("SIM_SWAP",), risk=0.9,
                         issued_at=ts, expires_at=expires_at, trigger_event_id=f"e-{account}-{ts}",
                         alert_id=None, policy_version="test", dry_run=False, key=KEY,
                         methods=["face"] if action == "freeze" else None)


def kafka_args(settings) -> list[str]:
    return ["--bootstrap-servers", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix]


def test_alerts_tail_prints_ids_in_time_order_across_partitions(fresh_topics, producer, capsys):
    topic = f"{fresh_topics.topic_prefix}alerts"
    for partition, ts in ((2, 1_764_000_003_000), (1, 1_764_000_002_000), (0, 1_764_000_001_000)):
        value = alert(f"a{partition}", ts, ("SIM_SWAP",), 0.9)
        producer.send(topic, key=f"a{partition}".encode(), value=orjson.dumps(value),
                      partition=partition, headers=list(cloudevents_headers(value)))
    producer.flush()

    assert cli.main(["alerts", "tail", "--from-beginning", "--timeout", "3", *kafka_args(fresh_topics)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["a0", "a1", "a2"]
    assert all(f"al-a{i}-" in row for i, row in enumerate(rows))


def test_alerts_tail_filters_by_reason_in_any_case_and_printed_severity(fresh_topics, producer, capsys):
    topic = f"{fresh_topics.topic_prefix}alerts"
    for account, reasons, risk in (("a1", ("SIM_SWAP",), 0.9), ("a2", ("BALANCE_DRAIN",), 0.9),
                                   ("a3", ("SIM_SWAP",), 0.5)):
        producer.send(topic, key=account.encode(), value=orjson.dumps(alert(account, 1_764_000_000_000, reasons, risk)))
    producer.flush()

    assert cli.main(["alerts", "tail", "--from-beginning", "--timeout", "3", "--reason", "sim_swap",
                     "--min-severity", "High", *kafka_args(fresh_topics)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["a1"]


def test_alerts_tail_says_when_the_topic_is_missing(kafka_settings, capsys):
    assert cli.main(["alerts", "tail", "--timeout", "5", *kafka_args(kafka_settings)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"atoguard alerts: topic {kafka_settings.topic_prefix}alerts does not exist")
    assert "Traceback" not in err


def test_commands_tail_frozen_lists_freezes_in_force(fresh_topics, producer, capsys):
    topic = f"{fresh_topics.topic_prefix}commands"
    t = 1_764_000_000_000
    for value in (command("a1", "freeze", t, t + 86_400_000), command("a2", "freeze", t, t + 86_400_000),
                  command("a2", "unfreeze", t + 1000), command("a3", "close", t + 2000),
                  command("a4", "step_up", t + 3000)):
        producer.send(topic, key=value["account_id"].encode(), value=orjson.dumps(value))
    producer.flush()

    assert cli.main(["commands", "tail", "--frozen", "--at", "latest", *kafka_args(fresh_topics)]) == 0
    out = capsys.readouterr().out
    assert ": 2" in out.splitlines()[0]
    listed = [line.split()[0] for line in out.splitlines()[2:]]
    assert listed == ["a1", "a3"]


def test_commands_tail_prints_rows_with_checked_signatures(fresh_topics, producer, capsys):
    topic = f"{fresh_topics.topic_prefix}commands"
    good = command("a1", "freeze", 1_764_000_000_000, 1_764_086_400_000)
    forged = {**command("a2", "unfreeze", 1_764_000_001_000), "account_id": "a9"}
    for value in (good, forged):
        producer.send(topic, key=value["account_id"].encode(), value=orjson.dumps(value))
    producer.flush()

    assert cli.main(["commands", "tail", "--from-beginning", "--timeout", "3", *kafka_args(fresh_topics)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:3]
    assert rows[0].split()[2:4] == ["a1", "freeze"] and " ok " in rows[0]
    assert rows[1].split()[2:4] == ["a9", "unfreeze"] and " BAD " in rows[1]


def test_verdict_says_it_lifts_a_freeze_in_force_and_publishes(fresh_topics, producer, consumer_factory, capsys):
    t = 1_764_000_000_000
    freeze = command("a1", "freeze", t, t + 86_400_000)
    producer.send(f"{fresh_topics.topic_prefix}commands", key=b"a1", value=orjson.dumps(freeze))
    value = alert("a1", t, ("SIM_SWAP",), 0.9)
    producer.send(f"{fresh_topics.topic_prefix}alerts", key=b"a1", value=orjson.dumps(value))
    producer.flush()

    assert cli.main(["verdict", "--account", "a1", "--alert", value["finding_info"]["uid"], "--label", "legit",
                     "--source", "analyst", "--ts", str(t + 60_000), "--wait", "0",
                     *kafka_args(fresh_topics)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert "this verdict lifts the freeze" in captured.err
    published = orjson.loads(captured.out)
    consumer = consumer_factory(f"{fresh_topics.topic_prefix}verdicts")
    assert [orjson.loads(m.value) for m in consumer] == [published]


def test_verdict_warns_about_an_unknown_account_and_alert(fresh_topics, capsys):
    assert cli.main(["verdict", "--account", "nobody", "--alert", "no-such-alert", "--label", "legit",
                     "--source", "analyst", "--wait", "0", *kafka_args(fresh_topics)]) == 0
    err = capsys.readouterr().err
    assert "warning: account 'nobody' has no alert or command" in err
    assert "warning: alert 'no-such-alert' is not among" in err


def test_verdict_says_when_the_topics_are_missing(kafka_settings, capsys):
    assert cli.main(["verdict", "--account", "a1", "--label", "legit", "--source", "user",
                     *kafka_args(kafka_settings)]) == 1
    assert "verdicts does not exist" in capsys.readouterr().err
