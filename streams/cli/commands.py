"""``atoguard commands tail``: what went out on <prefix>commands, and who is frozen now.

Prints one line per command (time, account, action, risk, until, signature check, command id,
reasons) as they arrive, or one JSON object per line with --json. The signature is checked
with keys.command_hmac of the configuration (--config), as the account service does: ``ok`` or
``BAD``. An action marked ``*`` is a dry run (shadow mode): recorded, not acted on.

When it stops (--max, --timeout, Ctrl-C) it prints who is frozen: the accounts whose last
restriction among the commands read is a freeze still in force at --at (or a close). With
--frozen it reads the whole topic and prints only that summary. On simulated data pass
``--at latest`` (the newest command's time): a freeze of last year's data has lapsed by now.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from detectors import contract as c
from detectors.outputs import verify
from streams.cli import CliError, EXIT_USAGE, add_config_option, add_kafka_options, kafka_settings, \
    load_policy, quiet_kafka_logs
from streams.settings import Settings
from streams.tail import Message, MissingTopic, Unreachable, follow, json_line, utc_text, write_lines
from streams.topics import topic_name

__all__ = ["FrozenBook", "format_row", "tail", "configure", "run"]

EPILOG = """\
examples:
  atoguard commands tail                                  # live, from now on
  atoguard commands tail --from-beginning --action freeze --action close --timeout 5
  atoguard commands tail --frozen                         # who is frozen now, then exit
  atoguard commands tail --frozen --at latest             # on simulated (past) data
  atoguard commands tail --json --from-beginning --timeout 5 | jq .value.message
"""

HEADER = (f"{'time (UTC)':<19}  {'account':<16}  {'action':<9}  {'risk':>5}  {'until (UTC)':<19}  "
          f"{'sig':<3}  {'command id':<32}  reasons")

#: the actions that set an account's restriction (a step_up restricts nothing)
RESTRICTIONS = (c.FREEZE, c.UNFREEZE, c.CLOSE)


@dataclass
class FrozenBook:
    """The last restriction command of each account, to tell who is frozen at a time.

    >>> book = FrozenBook()
    >>> book.observe({"account_id": "a1", "action": "freeze", "issued_at": 10, "expires_at": 50})
    >>> book.observe({"account_id": "a2", "action": "freeze", "issued_at": 10, "expires_at": 50})
    >>> book.observe({"account_id": "a2", "action": "unfreeze", "issued_at": 20, "expires_at": None})
    >>> [cmd["account_id"] for cmd in book.in_force(40)], book.in_force(60)
    (['a1'], [])
    """

    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    newest_ts: int = 0
    shadow: int = 0

    def observe(self, command: dict[str, Any]) -> None:
        """Take one command into account (commands of one account arrive in order)."""
        issued = command.get("issued_at")
        if type(issued) is int:
            self.newest_ts = max(self.newest_ts, issued)
        if command.get("action") not in RESTRICTIONS:
            return
        if command.get("dry_run"):
            self.shadow += 1
            return
        account = command.get("account_id")
        previous = self.last.get(account)
        if previous is None or (issued or 0) >= (previous.get("issued_at") or 0):
            self.last[account] = command

    def in_force(self, at_ms: int) -> list[dict[str, Any]]:
        """The accounts' last restriction where it is a close, or a freeze not lapsed at ``at_ms``."""
        def holds(cmd: dict[str, Any]) -> bool:
            if cmd["action"] == c.CLOSE:
                return True
            expires = cmd.get("expires_at")
            return cmd["action"] == c.FREEZE and (expires is None or expires > at_ms)
        return sorted((cmd for cmd in self.last.values() if holds(cmd)),
                      key=lambda cmd: (cmd.get("issued_at") or 0, cmd.get("account_id")))

    def summary(self, at_ms: int) -> str:
        """The summary table printed when the tail stops."""
        rows = self.in_force(at_ms)
        lines = [f"frozen or closed at {utc_text(at_ms)} UTC, by the last restriction of each account "
                 f"read: {len(rows)}" + (f" ({self.shadow} dry-run restrictions not counted)"
                                         if self.shadow else "")]
        if rows:
            lines.append(f"  {'account':<16}  {'action':<8}  {'since (UTC)':<19}  {'until (UTC)':<19}  reasons")
        for cmd in rows:
            until = utc_text(cmd["expires_at"]) if cmd.get("expires_at") else "-"
            lines.append(f"  {str(cmd.get('account_id')):<16.16}  {cmd['action']:<8}  "
                         f"{utc_text(cmd.get('issued_at')):<19}  {until:<19}  {', '.join(cmd.get('reasons', []))}")
        return "\n".join(lines)


def format_row(command: dict[str, Any], key: str | None = None) -> str:
    """One readable line for a command; ``sig`` is ``ok``/``BAD`` when ``key`` is given."""
    action = str(command.get("action", "?")) + ("*" if command.get("dry_run") else "")
    until = utc_text(command["expires_at"]) if command.get("expires_at") else "-"
    sig = "-" if key is None else ("ok" if verify(command, key) else "BAD")
    risk = command.get("risk", 0)
    return (f"{utc_text(command.get('issued_at')):<19}  {str(command.get('account_id', '?')):<16.16}  "
            f"{action:<9}  {risk:>5.2f}  {until:<19}  {sig:<3}  {str(command.get('command_id', '?')):<32}  "
            f"{', '.join(command.get('reasons', []))}")


def tail(settings: Settings, out: TextIO, book: FrozenBook, *, key: str | None = None,
         from_beginning: bool = False, accounts: set[str] | None = None,
         actions: set[str] | None = None, as_json: bool = False, max_commands: int | None = None,
         timeout_s: float | None = None, until_end: bool = False, rows: bool = True) -> int:
    """Follow the command topic, printing the commands that pass the filters (unless not
    ``rows``) and noting every command in ``book``; returns how many were printed."""
    def line(msg: Message) -> str | None:
        cmd = msg.value
        if accounts and cmd.get("account_id") not in accounts:
            return None
        book.observe(cmd)
        if not rows or (actions and cmd.get("action") not in actions):
            return None
        return json_line(msg) if as_json else format_row(cmd, key)

    batches = follow(settings, topic_name(c.COMMANDS, settings.topic_prefix), ts_field="issued_at",
                     from_beginning=from_beginning, timeout_s=timeout_s, until_end=until_end)
    if rows and not as_json:
        print(HEADER, file=out, flush=True)
    return write_lines(batches, out, line, max_commands)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("tail", help="follow the command topic; who is frozen now", description=__doc__,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--account", action="append", default=[], metavar="ID",
                   help="only this account (repeatable)")
    t.add_argument("--action", dest="actions", action="append", default=[], type=str.lower,
                   choices=list(c.ACTIONS), help="only commands of this action (repeatable)")
    t.add_argument("--json", action="store_true", help="one JSON object per line")
    t.add_argument("--from-beginning", action="store_true", help="start at the oldest command kept")
    t.add_argument("--frozen", action="store_true",
                   help="read the whole topic and print only who is frozen or closed")
    t.add_argument("--at", default="now", metavar="now|latest|MS",
                   help="the time 'frozen now' refers to: now (default), latest (the newest "
                        "command read; for simulated data) or ms since the epoch")
    t.add_argument("--max", type=int, default=None, metavar="N", help="stop after N commands")
    t.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this long without a new message, and give up connecting after "
                        "it (default: follow forever; connecting waits 10 s)")
    add_kafka_options(t)
    add_config_option(t)


def _at(text: str, book: FrozenBook) -> int:
    if text == "now":
        return int(time.time() * 1000)
    if text == "latest":
        return book.newest_ts
    try:
        return int(text)
    except ValueError:
        raise CliError(f"--at {text!r}: expected now, latest or milliseconds since the epoch",
                       EXIT_USAGE) from None


def run(args: argparse.Namespace) -> int:
    book = FrozenBook()
    _at(args.at, book)  # a bad --at is said before reading
    settings = kafka_settings(args)
    cfg = load_policy(args)
    quiet_kafka_logs()
    stopped = False
    try:
        tail(settings, sys.stdout, book, key=cfg.keys.command_hmac,
             from_beginning=args.from_beginning or args.frozen, accounts=set(args.account) or None,
             actions=set(args.actions) or None, as_json=args.json, max_commands=args.max,
             timeout_s=args.timeout, until_end=args.frozen, rows=not args.frozen)
    except (Unreachable, MissingTopic) as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        stopped = True
    if not args.json or args.frozen:
        print(("\n" if not args.frozen else "") + book.summary(_at(args.at, book)), flush=True)
    return 130 if stopped else 0
