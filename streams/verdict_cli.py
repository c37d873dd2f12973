"""``atoguard verdict``: publish what really happened on an account to <prefix>verdicts.

An analyst (or the account holder, through the app) says an alert or a restriction was an
account takeover (``--label ato``) or legitimate (``--label legit``). The stream worker applies
it to the account: ``legit`` lifts a freeze or a close (an ``unfreeze`` command) and trusts the
device, country and payee of the judged alert for a while; ``ato`` from an analyst closes the
account, from the account holder freezes it until an analyst confirms. Models learn from it.

The verdict_id is deterministic: a hash of account, alert, label, source and ts, so sending the
same verdict twice (a retry) is applied once. ``--ts`` defaults to now; pass it to pin the id.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from detectors import contract as c
from detectors.events import BadInput, parse_value
from detectors.outputs import deterministic_id
from streams.settings import Settings
from streams.topics import topic_name

__all__ = ["verdict_value", "publish_verdict"]

EPILOG = """\
examples:
  atoguard verdict --account a07 --label legit --source user --note "it was me, new phone"
  atoguard verdict --account a13 --alert 3f2a... --label ato --source analyst --note "mule payee"
  ATOGUARD_BOOTSTRAP_SERVERS=kafka:9092 atoguard verdict --account a1 --label ato --source user

prints the verdict it published (JSON) on stdout.
"""


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

    producer = KafkaProducer(bootstrap_servers=settings.servers(), client_id="atoguard-verdict")
    try:
        future = producer.send(topic_name(c.VERDICTS, settings.topic_prefix),
                               key=value["account_id"].encode("utf-8"), value=orjson.dumps(value))
        return future.get(timeout=timeout_s)
    finally:
        producer.close(timeout=10)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--account", required=True, help="the account id")
    parser.add_argument("--alert", default=None, help="the alert judged (finding_info.uid / ce_id), optional")
    parser.add_argument("--label", required=True, choices=sorted(c.VERDICT_LABELS), help="ato or legit")
    parser.add_argument("--source", required=True, choices=sorted(c.VERDICT_SOURCES),
                        help="analyst or user (the account holder)")
    parser.add_argument("--note", default=None, help="free text kept with the verdict")
    parser.add_argument("--ts", type=int, default=None,
                        help="event time in ms since the epoch (default now); part of the verdict_id")
    parser.add_argument("--bootstrap-servers", help="host:port[,...] (env ATOGUARD_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic-prefix", help="topic prefix (env ATOGUARD_TOPIC_PREFIX, default 'ato.')")


def run(args: argparse.Namespace) -> int:
    ts = args.ts if args.ts is not None else int(time.time() * 1000)
    try:
        settings = Settings.from_env(bootstrap_servers=args.bootstrap_servers, topic_prefix=args.topic_prefix)
        value = verdict_value(account=args.account, label=args.label, source=args.source, ts=ts,
                              alert_id=args.alert, note=args.note)
    except (BadInput, ValueError) as exc:
        print(f"atoguard verdict: {exc}", file=sys.stderr)
        return 2
    try:
        meta = publish_verdict(settings, value)
    except Exception as exc:  # kafka errors: say it plainly
        print(f"atoguard verdict: could not publish to {settings.bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    print(f"published to {meta.topic} partition {meta.partition} offset {meta.offset}", file=sys.stderr)
    return 0
