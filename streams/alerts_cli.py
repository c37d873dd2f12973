"""``atoguard alerts tail``: follow <prefix>alerts for the security team.

Prints one line per alert (time, account, risk, severity, action, reasons) as they arrive,
or one JSON object per line with --json (the alert and its CloudEvents headers) for piping into
jq or a SIEM. Filters: --min-severity (low, medium, high, critical) and --reason (repeatable;
an alert matches if it carries any of them). Starts at the end of the topic unless
--from-beginning; stops after --max N alerts or --timeout seconds without a new message.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

from detectors import contract as c
from streams.settings import Settings
from streams.topics import topic_name

__all__ = ["SEVERITIES", "format_row", "matches", "tail"]

SEVERITIES = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}

EPILOG = """\
examples:
  atoguard alerts tail                                # live, from now on
  atoguard alerts tail --from-beginning --min-severity high
  atoguard alerts tail --reason BALANCE_DRAIN --reason CREDENTIAL_CHANGE
  atoguard alerts tail --json --from-beginning --timeout 5 | jq .value.finding_info.title
"""

HEADER = f"{'time (UTC)':<19}  {'account':<16}  {'risk':>4}  {'severity':<8}  {'action':<8}  reasons"


def matches(alert: dict[str, Any], min_severity: int = 0, reasons: set[str] | None = None) -> bool:
    """Whether ``alert`` passes the filters.

    >>> matches({"severity_id": 4, "finding_info": {"types": ["X"]}}, 3, {"X", "Y"})
    True
    >>> matches({"severity_id": 2, "finding_info": {"types": ["X"]}}, 3)
    False
    """
    if alert.get("severity_id", 0) < min_severity:
        return False
    if reasons and not reasons.intersection(alert.get("finding_info", {}).get("types", ())):
        return False
    return True


def format_row(alert: dict[str, Any]) -> str:
    """One readable line for an OCSF alert."""
    when = datetime.fromtimestamp(alert.get("time", 0) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    unmapped = alert.get("unmapped", {})
    account = unmapped.get("account_id") or (alert.get("resources") or [{}])[0].get("uid", "?")
    action = unmapped.get("action") or "-"
    if unmapped.get("dry_run"):
        action += "*"
    reasons = ", ".join(alert.get("finding_info", {}).get("types", []))
    return (f"{when:<19}  {account:<16.16}  {alert.get('risk_score', 0):>4}  {alert.get('severity', '?'):<8}  "
            f"{action:<8}  {reasons}")


def tail(settings: Settings, out: TextIO, *, from_beginning: bool = False, min_severity: int = 0,
         reasons: set[str] | None = None, as_json: bool = False, max_alerts: int | None = None,
         timeout_s: float | None = None) -> int:
    """Follow the alert topic; returns how many alerts were printed."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic_name(c.ALERTS, settings.topic_prefix), bootstrap_servers=settings.servers(),
        group_id=f"atoguard-alerts-tail-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        consumer_timeout_ms=int(timeout_s * 1000) if timeout_s else float("inf"),
    )
    shown = 0
    try:
        if not as_json:
            print(HEADER, file=out, flush=True)
        for msg in consumer:
            try:
                alert = orjson.loads(msg.value)
            except orjson.JSONDecodeError:
                continue
            if type(alert) is not dict or not matches(alert, min_severity, reasons):
                continue
            if as_json:
                headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers or [])}
                out.write(orjson.dumps({"partition": msg.partition, "offset": msg.offset,
                                        "headers": headers, "value": alert}).decode() + "\n")
            else:
                out.write(format_row(alert) + "\n")
            out.flush()
            shown += 1
            if max_alerts is not None and shown >= max_alerts:
                break
    finally:
        consumer.close()
    return shown


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("tail", help="follow the alert topic", description=__doc__,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--min-severity", choices=list(SEVERITIES), default="informational",
                   help="show alerts of at least this severity (default: all)")
    t.add_argument("--reason", action="append", default=[], metavar="CODE",
                   help="show only alerts carrying this reason code (repeatable)")
    t.add_argument("--json", action="store_true", help="one JSON object per line (value and headers)")
    t.add_argument("--from-beginning", action="store_true", help="start at the oldest alert kept")
    t.add_argument("--max", type=int, default=None, metavar="N", help="stop after N alerts")
    t.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this long without a new message (default: follow forever)")
    t.add_argument("--bootstrap-servers", help="host:port[,...] (env ATOGUARD_BOOTSTRAP_SERVERS)")
    t.add_argument("--topic-prefix", help="topic prefix (env ATOGUARD_TOPIC_PREFIX, default 'ato.')")


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(bootstrap_servers=args.bootstrap_servers, topic_prefix=args.topic_prefix)
    except ValueError as exc:
        print(f"atoguard alerts: {exc}", file=sys.stderr)
        return 2
    tail(settings, sys.stdout, from_beginning=args.from_beginning, min_severity=SEVERITIES[args.min_severity],
         reasons=set(args.reason) or None, as_json=args.json, max_alerts=args.max, timeout_s=args.timeout)
    return 0
