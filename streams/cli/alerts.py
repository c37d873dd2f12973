"""``atoguard alerts tail``: follow <prefix>alerts for the security team.

Prints one line per alert (time, account, risk, severity, action, alert id, reasons) as they
arrive, or one JSON object per line with --json (the alert and its CloudEvents headers) for
piping into jq or a SIEM. The alert id is what `atoguard verdict --alert` takes. Filters:
--min-severity (informational, low, medium, high, critical; any case) and --reason (repeatable,
any case; an alert matches if it carries any of them). Starts at the end of the topic unless
--from-beginning; stops after --max N alerts or --timeout seconds without a new message (which
also bounds connecting). Rows of one poll batch are printed in time order across partitions.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from detectors import contract as c
from detectors.reasons import REASONS
from streams.cli import CliError, EXIT_USAGE, add_config_option, add_kafka_options, kafka_settings, \
    load_policy, quiet_kafka_logs
from streams.settings import Settings
from streams.tail import Message, MissingTopic, Unreachable, follow, json_line, utc_text, write_lines
from streams.topics import topic_name

__all__ = ["SEVERITIES", "check_reasons", "format_row", "matches", "tail", "configure", "run"]

SEVERITIES = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}

EPILOG = """\
examples:
  atoguard alerts tail                                # live, from now on
  atoguard alerts tail --from-beginning --min-severity High
  atoguard alerts tail --reason balance_drain --reason CREDENTIAL_CHANGE
  atoguard alerts tail --json --from-beginning --timeout 5 | jq .value.finding_info.title
  kcat -C -b 127.0.0.1:9092 -t ato.alerts -e -J      # the same topic with any Kafka client

reason codes (docs/reasons.md says what each means):
  """ + "\n  ".join(", ".join(list(REASONS)[i:i + 5]) for i in range(0, len(REASONS), 5)) + "\n"

HEADER = (f"{'time (UTC)':<19}  {'account':<16}  {'risk':>4}  {'severity':<8}  {'action':<8}  "
          f"{'alert id':<32}  reasons")


def check_reasons(codes: list[str]) -> set[str]:
    """The reason codes of ``--reason``, upper-cased; an unknown one is a :class:`CliError`
    listing the known codes.

    >>> sorted(check_reasons(["balance_drain", "SIM_SWAP"]))
    ['BALANCE_DRAIN', 'SIM_SWAP']
    """
    wanted = {code.strip().upper() for code in codes}
    unknown = sorted(wanted - set(REASONS))
    if unknown:
        raise CliError(f"unknown reason code(s) {', '.join(unknown)}; the codes are "
                       f"{', '.join(REASONS)}", EXIT_USAGE)
    return wanted


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
    when = utc_text(alert.get("time", 0))
    unmapped = alert.get("unmapped", {})
    account = unmapped.get("account_id") or (alert.get("resources") or [{}])[0].get("uid", "?")
    action = unmapped.get("action") or "-"
    if unmapped.get("dry_run"):
        action += "*"
    info = alert.get("finding_info", {})
    reasons = ", ".join(info.get("types", []))
    return (f"{when:<19}  {account:<16.16}  {alert.get('risk_score', 0):>4}  {alert.get('severity', '?'):<8}  "
            f"{action:<8}  {info.get('uid', '?'):<32}  {reasons}")


def tail(settings: Settings, out: TextIO, *, from_beginning: bool = False, min_severity: int = 0,
         reasons: set[str] | None = None, as_json: bool = False, max_alerts: int | None = None,
         timeout_s: float | None = None) -> int:
    """Follow the alert topic; returns how many alerts were printed."""
    def line(msg: Message) -> str | None:
        if not matches(msg.value, min_severity, reasons):
            return None
        return json_line(msg, headers=True) if as_json else format_row(msg.value)

    batches = follow(settings, topic_name(c.ALERTS, settings.topic_prefix), ts_field="time",
                     from_beginning=from_beginning, timeout_s=timeout_s)
    if not as_json:
        print(HEADER, file=out, flush=True)
    return write_lines(batches, out, line, max_alerts)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("tail", help="follow the alert topic", description=__doc__,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--min-severity", type=str.lower, choices=list(SEVERITIES), default="informational",
                   help="show alerts of at least this severity, any case (default: all)")
    t.add_argument("--reason", action="append", default=[], metavar="CODE",
                   help="show only alerts carrying this reason code, any case (repeatable)")
    t.add_argument("--json", action="store_true", help="one JSON object per line (value and headers)")
    t.add_argument("--from-beginning", action="store_true", help="start at the oldest alert kept")
    t.add_argument("--max", type=int, default=None, metavar="N", help="stop after N alerts")
    t.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this long without a new message, and give up connecting after "
                        "it (default: follow forever; connecting waits 10 s)")
    add_kafka_options(t)
    add_config_option(t)


def run(args: argparse.Namespace) -> int:
    reasons = check_reasons(args.reason) or None
    settings = kafka_settings(args)
    load_policy(args)
    quiet_kafka_logs()
    try:
        tail(settings, sys.stdout, from_beginning=args.from_beginning,
             min_severity=SEVERITIES[args.min_severity], reasons=reasons, as_json=args.json,
             max_alerts=args.max, timeout_s=args.timeout)
    except (Unreachable, MissingTopic) as exc:
        raise CliError(str(exc)) from None
    return 0
