"""The ``atoguard`` command line.

Each subcommand lives in its own module, imported only when it is used, so ``atoguard --help``
stays fast and a broken optional part cannot take the whole tool down. A subcommand module
provides two functions::

    def configure(parser: argparse.ArgumentParser) -> None   # add its options
    def run(args: argparse.Namespace) -> int                # do the work, return an exit code

Nested groups (``broker start``, ``topics create``, ``alerts tail``) are subcommands whose
``configure`` adds its own sub-parsers.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: name -> (module, one-line help). The order is the order of ``atoguard --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("streams.replay_cli", "run the detection engine over a JSON Lines file, no broker"),
    "eval": ("evaluation.cli", "score engine outputs against ground-truth labels, write a report"),
    "simulate": ("simulator.cli", "generate synthetic account traffic with ground-truth labels"),
    "run": ("streams.worker_cli", "the stream worker (Faust app over Kafka)"),
    "broker": ("streams.broker_cli", "a local single-node Apache Kafka (start / stop / status)"),
    "topics": ("streams.topics_cli", "create the contract's topics, idempotently"),
    "alerts": ("streams.alerts_cli", "follow the alert topic for the security team"),
    "verdict": ("streams.verdict_cli", "publish an analyst's or account holder's verdict"),
    "demo": ("streams.demo_cli", "broker, topics, worker and simulated traffic in one go, then the report"),
}

EPILOG = """\
typical session:
  atoguard simulate --accounts 1000 --days 7 --seed 1 --out events.jsonl --labels labels.jsonl
  atoguard replay events.jsonl --out decisions.jsonl
  atoguard eval --events events.jsonl --labels labels.jsonl --out decisions.jsonl --report report/

live:
  atoguard broker start && atoguard topics create && atoguard run

Every command reads the default policy unless --config FILE names another one.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atoguard",
        description="Streaming account-takeover detection: behavioural profiles, online models "
        "and explainable rules over Kafka, with reversible, explained decisions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"atoguard: unknown command {argv[0]!r}; see atoguard --help", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub_parser = argparse.ArgumentParser(
        prog=f"atoguard {name}",
        description=(module.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.configure(sub_parser)
    args = sub_parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
