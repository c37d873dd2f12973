"""``atoguard verdict``: publish what really happened on an account to <prefix>verdicts.

An analyst (or the account holder, through the app) says an alert or a restriction was an
account takeover (``--label ato``) or legitimate (``--label legit``). The stream worker applies
it to the account: ``legit`` lifts a freeze or a close (an ``unfreeze`` command) and trusts the
device, country and payee of the judged alert for a while; ``ato`` from an analyst closes the
account, from the account holder freezes it until an analyst confirms. Models learn from it.

Before publishing, the command reads the account's alerts and commands (its partition of
<prefix>alerts and <prefix>commands, within --timeout) and says what the verdict will change,
warning when the account or the --alert id is not found there. After publishing it waits up to
--wait seconds for the worker's command answering the verdict and prints it.

The verdict_id is deterministic: a hash of account, alert, label, source and ts, so sending the
same verdict twice (a retry) is applied once. ``--ts`` is the verdict's event time and defaults
to now. The worker judges a freeze at that time, so on simulated (past) data pass the data's
time (the command prints the account's latest output time when it matters).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors import contract as c
from detectors.events import BadInput, parse_value
from detectors.outputs import deterministic_id
from streams.cli import CliError, EXIT_USAGE, add_config_option, add_kafka_options, kafka_settings, \
    load_policy, quiet_kafka_logs
from streams.settings import Settings
from streams.tail import MissingTopic, Unreachable, open_consumer, utc_text
from streams.topics import topic_name

__all__ = ["AccountHistory", "expected_change", "publish_verdict", "read_history", "verdict_value",
           "configure", "partition_of", "run", "wait_for_answer"]

EPILOG = """\
examples:
  atoguard verdict --account a07 --label legit --source user --note "it was me, new phone"
  atoguard verdict --account a13 --alert 3f2a... --label ato --source analyst --note "mule payee"
  atoguard verdict --account a07 --label legit --source analyst --ts 1764003600000   # simulated data
  ATOGUARD_BOOTSTRAP_SERVERS=kafka:9092 atoguard verdict --account a1 --label ato --source user

prints the verdict it published (JSON) on stdout, what it changes on stderr.
"""


@dataclass
class AccountHistory:
    """What the output topics say about one account: its alert ids and its last restriction."""

    alert_ids: set[str] = field(default_factory=set)
    restriction: dict[str, Any] | None = None  # the last freeze / unfreeze / close command
    latest_ts: int | None = None  # the newest alert time or command issued_at
    complete: bool = True  # False when the timeout cut the reading short

    @property
    def known(self) -> bool:
        return bool(self.alert_ids) or self.latest_ts is not None


def expected_change(history: AccountHistory, label: str, source: str, ts: int) -> str:
    """What the worker will do with this verdict, judged from the account's last restriction
    (the rule of ``detectors.policy.decide_verdict``).

    >>> h = AccountHistory(restriction={"action": "freeze", "issued_at": 10, "expires_at": 50}, latest_ts=10)
    >>> expected_change(h, "legit", "analyst", 20)
    'lifts the freeze of 1970-01-01 00:00:00 (the worker sends an unfreeze)'
    >>> expected_change(h, "legit", "analyst", 60).startswith("nothing to lift")
    True
    """
    cmd = history.restriction or {}
    action, expires = cmd.get("action"), cmd.get("expires_at")
    closed = action == c.CLOSE
    frozen = action == c.FREEZE and (expires is None or expires > ts)
    since = utc_text(cmd.get("issued_at")) if cmd else ""
    if label == "legit":
        if closed or frozen:
            return f"lifts the {action} of {since} (the worker sends an unfreeze)"
        if action == c.FREEZE:
            return (f"nothing to lift: the freeze of {since} lapsed at {utc_text(expires)}, before --ts "
                    f"{utc_text(ts)}; the situation is trusted from now on")
        return "nothing to lift (no freeze or close in force); the situation is trusted from now on"
    if source == "analyst":
        return "nothing more: the account is closed already" if closed else \
            "closes the account (the worker sends a close)"
    if closed or frozen:
        return f"nothing more: the account is {'closed' if closed else 'frozen'} already"
    return "freezes the account for 7 days until an analyst confirms (the worker sends a freeze)"
def verdict_value(*, account: str, label: str, source: str, ts: int, alert_id: str | None = None,
                  note: str | None = None) -> dict[str, Any]:
    """A contract verdict with a deterministic ``verdict_id``; raises ``BadInput`` if invalid.

    >>> v = verdict_value(account="a1", label="legit", source="user", ts=1764000000000)
    >>> v["verdict_id"] == verdict_value(account="a1", label="legit", source="user", ts=1764000000000)["verdict_id"]
    True
    """
    value: dict[str, Any] = {
        "verdict_id": "v-" + deterministic_id("verdict", account, alert_id or "", label, source, str(ts)),
        "account_id": account, "ts": ts, "label": label, "source": source,
    }
    if alert_id:
        value["alert_id"] = alert_id
    if note:
        value["note"] = note
    parse_value(c.VERDICTS, value)  # the contract's own validation
    return value


def publish_verdict(settings: Settings, value: dict[str, Any], timeout_s: float = 30.0) -> Any:
    """Send ``value`` to ``<prefix>verdicts`` keyed by the account; returns the record metadata."""
    from kafka import KafkaProducer

    producer = KafkaProducer(client_id="atoguard-verdict", max_block_ms=int(timeout_s * 1000),
                             **settings.client_options(timeout_s))
    try:
        future = producer.send(topic_name(c.VERDICTS, settings.topic_prefix),
                               key=value["account_id"].encode("utf-8"), value=orjson.dumps(value))
        return future.get(timeout=timeout_s)
    finally:
        producer.close(timeout=10)


def partition_of(account: str, partitions: int) -> int:
    """The partition of an account's messages: Kafka's default partitioner (murmur2 of the key),
    which the worker's producer uses too."""
    from kafka.partitioner.default import murmur2

    return (murmur2(account.encode("utf-8")) & 0x7FFFFFFF) % partitions


def read_history(settings: Settings, account: str, timeout_s: float) -> AccountHistory:
    """Read the account's partition of the alert and command topics up to their current end,
    within ``timeout_s`` in all; topics that do not exist count as empty."""
    from kafka import TopicPartition

    history = AccountHistory()
    consumer = open_consumer(settings, timeout_s)
    deadline = time.monotonic() + timeout_s
    try:
        verdicts = topic_name(c.VERDICTS, settings.topic_prefix)
        if not consumer.partitions_for_topic(verdicts):
            raise MissingTopic(f"topic {verdicts} does not exist on the cluster; create the topics "
                               "with atoguard topics create (and check --topic-prefix)")
        for logical, ts_field in ((c.ALERTS, "time"), (c.COMMANDS, "issued_at")):
            topic = topic_name(logical, settings.topic_prefix)
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                continue
            tp = TopicPartition(topic, partition_of(account, len(partitions)))
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    history.complete = False
                    return history
                for record in consumer.poll(timeout_ms=500).get(tp, []):
                    _note(history, logical, ts_field, record.value, account)
    finally:
        consumer.close()
    return history


def _note(history: AccountHistory, logical: str, ts_field: str, raw: bytes, account: str) -> None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if type(value) is not dict:
        return
    owner = value.get("account_id") or value.get("unmapped", {}).get("account_id")
    if owner != account:
        return
    ts = value.get(ts_field)
    if type(ts) is int:
        history.latest_ts = ts if history.latest_ts is None else max(history.latest_ts, ts)
    if logical == c.ALERTS:
        uid = value.get("finding_info", {}).get("uid")
        if uid:
            history.alert_ids.add(uid)
    elif value.get("action") in (c.FREEZE, c.UNFREEZE, c.CLOSE) and not value.get("dry_run"):
        history.restriction = value


def wait_for_answer(settings: Settings, value: dict[str, Any], start_offsets: dict, wait_s: float):
    """The command the worker issued for this verdict (``trigger_event_id`` is its
    ``verdict_id``), read from the account's partition of the command topic, or ``None``."""
    consumer = open_consumer(settings, wait_s)
    deadline = time.monotonic() + wait_s
    try:
        tps = list(start_offsets)
        if not tps:
            return None
        consumer.assign(tps)
        for tp, offset in start_offsets.items():
            consumer.seek(tp, offset)
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    try:
                        cmd = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    if type(cmd) is dict and cmd.get("trigger_event_id") == value["verdict_id"]:
                        return cmd
        return None
    finally:
        consumer.close()


def _command_end(settings: Settings, account: str, timeout_s: float) -> dict:
    """The current end offset of the account's partition of the command topic ({} if none)."""
    from kafka import TopicPartition

    consumer = open_consumer(settings, timeout_s)
    try:
        topic = topic_name(c.COMMANDS, settings.topic_prefix)
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return {}
        tp = TopicPartition(topic, partition_of(account, len(partitions)))
        return consumer.end_offsets([tp])
    finally:
        consumer.close()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--account", required=True, help="the account id")
    parser.add_argument("--alert", default=None, help="the alert judged (the alert id of alerts tail), optional")
    parser.add_argument("--label", required=True, type=str.lower, choices=sorted(c.VERDICT_LABELS),
                        help="ato or legit")
    parser.add_argument("--source", required=True, type=str.lower, choices=sorted(c.VERDICT_SOURCES),
                        help="analyst or user (the account holder)")
    parser.add_argument("--note", default=None, help="free text kept with the verdict")
    parser.add_argument("--ts", type=int, default=None,
                        help="event time in ms since the epoch (default now; on simulated data, the "
                             "data's time); part of the verdict_id")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="bound on connecting, reading the account's history and publishing (default 10)")
    parser.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for the worker's answering command (default 10; 0: do not wait)")
    add_kafka_options(parser)
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    ts = args.ts if args.ts is not None else int(time.time() * 1000)
    settings = kafka_settings(args)
    load_policy(args)
    try:
        value = verdict_value(account=args.account, label=args.label, source=args.source, ts=ts,
                              alert_id=args.alert, note=args.note)
    except (BadInput, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    quiet_kafka_logs()
    try:
        history = read_history(settings, args.account, args.timeout)
        for warning in _warnings(history, args, ts):
            print(f"atoguard verdict: warning: {warning}", file=sys.stderr)
        print(f"this verdict {expected_change(history, args.label, args.source, ts)}", file=sys.stderr)
        start = _command_end(settings, args.account, args.timeout) if args.wait > 0 else {}
        meta = publish_verdict(settings, value, timeout_s=args.timeout)
    except (Unreachable, MissingTopic) as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()
    print(f"published to {meta.topic} partition {meta.partition} offset {meta.offset}", file=sys.stderr)
    if args.wait > 0:
        answer = wait_for_answer(settings, value, start, args.wait)
        if answer is not None:
            print(f"the worker answered with {answer['action']} {answer['command_id']} "
                  f"({', '.join(answer.get('reasons', []))})", file=sys.stderr)
        else:
            print(f"no command from the worker within {args.wait:g} s (none is sent when nothing "
                  "changes; is atoguard run up?)", file=sys.stderr)
    return 0


def _warnings(history: AccountHistory, args: argparse.Namespace, ts: int) -> list[str]:
    """What looks wrong about this verdict, judged from the account's history."""
    out = []
    if not history.complete:
        out.append(f"could not read the account's history within {args.timeout:g} s; "
                   "what it changes is a guess")
    if not history.known:
        out.append(f"account {args.account!r} has no alert or command on the output topics "
                   "(unknown id, or older than their retention)")
    if args.alert and args.alert not in history.alert_ids:
        out.append(f"alert {args.alert!r} is not among account {args.account!r}'s alerts; the "
                   "worker applies the verdict to the account but learns from it only for its "
                   "latest alert")
    if args.ts is None and history.latest_ts is not None and ts - history.latest_ts > 30 * 86_400_000:
        out.append(f"--ts defaults to now, but the account's latest output is of "
                   f"{utc_text(history.latest_ts)}; on simulated data pass --ts {history.latest_ts + 1}")
    return out
