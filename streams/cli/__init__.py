"""The ``atoguard`` command line.

Each subcommand lives in its own module, imported only when it is used, so ``atoguard --help``
stays fast and a broken optional part cannot take the whole tool down. A subcommand module
provides two functions::

    def configure(parser: argparse.ArgumentParser) -> None   # add its options
    def run(args: argparse.Namespace) -> int                # do the work, return an exit code

Nested groups (``broker start``, ``topics create``, ``alerts tail``) are subcommands whose
``configure`` adds its own sub-parsers.

One style for every command: an expected failure is one line on stderr, ``atoguard
<command>: <what went wrong>``, and a non-zero exit, never a traceback. A command raises
:class:`CliError` (or lets a ``ConfigError`` or a Kafka client error through) and :func:`main`
prints it. Exit codes: 0 success, 1 a failure at run time (Kafka, files), 2 a usage or
configuration error, 130 interrupted, 141 the reader of stdout went away (``... | head``).
The shared options are added by :func:`add_kafka_options` (``--bootstrap-servers``,
``--topic-prefix``) and :func:`add_config_option` (``--config``).

The subcommands are the modules of this package (the ``COMMANDS`` table maps names to modules):
``worker`` (``atoguard run``), ``replay``, ``broker``, ``topics``, ``alerts``, ``commands``,
``account``, ``verdict``, ``console`` and ``demo``; ``simulate`` and ``eval`` live in ``simulator.cli`` and
``evaluation.cli``. ``python -m streams.cli`` is ``atoguard`` (``__main__.py``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from streams.config import add_config_option

__all__ = ["COMMANDS", "CliError", "add_config_option", "add_kafka_options", "build_parser",
           "kafka_settings", "main", "load_policy", "quiet_kafka_logs"]

#: name -> (module, one-line help). The order is the order of ``atoguard --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("streams.cli.replay", "run the detection engine over a JSON Lines file, no broker"),
    "eval": ("evaluation.cli", "score engine outputs against ground-truth labels, write a report"),
    "simulate": ("simulator.cli", "generate synthetic account traffic with ground-truth labels"),
    "run": ("streams.cli.worker", "the stream worker (Quix Streams by default, or Faust)"),
    "broker": ("streams.cli.broker", "a local single-node Apache Kafka (start / stop / status)"),
    "topics": ("streams.cli.topics", "create the contract's topics, idempotently"),
    "alerts": ("streams.cli.alerts", "follow the alert topic for the security team"),
    "commands": ("streams.cli.commands", "follow the command topic; who is frozen now"),
    "account": ("streams.cli.account", "one account: its restriction, open challenge and recent decisions"),
    "verdict": ("streams.cli.verdict", "publish an analyst's or account holder's verdict"),
    "console": ("streams.cli.console", "the analyst console: queue, accounts, verdicts, shadow policy, health (web)"),
    "ssf": ("streams.cli.ssf", "OpenID Shared Signals with partners: receive / transmit / keygen"),
    "demo": ("streams.cli.demo", "broker, topics, worker and simulated traffic in one go, then the report"),
}

#: Exit codes (see the module docstring).
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 2, 130, 141

EPILOG = """\
typical session:
  atoguard simulate --accounts 1000 --days 7 --seed 1 --out events.jsonl --labels labels.jsonl
  atoguard replay events.jsonl --out decisions.jsonl
  atoguard eval --events events.jsonl --labels labels.jsonl --out decisions.jsonl --report report/

live (--dev: the built-in development keys; in production set ATOGUARD_KEYS__COMMAND_HMAC,
ATOGUARD_KEYS__PSEUDONYM_HMAC and ATOGUARD_KEYS__SNAPSHOT_HMAC instead, see docs/security.md):
  atoguard broker start && atoguard topics create && atoguard run --dev
  atoguard alerts tail            # in another terminal; atoguard commands tail for the commands
  atoguard console --add-user ana --role analyst && atoguard console   # http://127.0.0.1:8080/

Every command reads the default policy unless --config FILE (or ATOGUARD_CONFIG) names another
one; the Kafka commands take --bootstrap-servers and --topic-prefix. Options win over variables.

environment:
{variables}
  ATOGUARD_<SECTION>__<KEY>         a policy override, e.g. ATOGUARD_POLICY__DRY_RUN=true
                                    (two underscores; sections: policy, windows, keys)

docs: docs/operators.md, docs/security-team.md, docs/account-service.md, docs/reasons.md
"""


class CliError(Exception):
    """An expected failure: :func:`main` prints ``atoguard <command>: <message>`` and exits
    with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap-servers`` and ``--topic-prefix``, the same on every Kafka command."""
    group = parser.add_argument_group("Kafka")
    group.add_argument("--bootstrap-servers", metavar="HOST:PORT[,...]",
                       help="the Kafka cluster (env ATOGUARD_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)")
    group.add_argument("--topic-prefix", metavar="PREFIX",
                       help="prefix of the contract topics (env ATOGUARD_TOPIC_PREFIX, default 'ato.')")


def kafka_settings(args: argparse.Namespace, **more):
    """The :class:`~streams.settings.Settings` of a command: variables, then its options.
    A bad value is a :class:`CliError` with exit code 2."""
    from streams.settings import Settings

    try:
        return Settings.from_env(bootstrap_servers=getattr(args, "bootstrap_servers", None),
                                 topic_prefix=getattr(args, "topic_prefix", None), **more)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def load_policy(args: argparse.Namespace):
    """The configuration named by ``--config`` (or ``ATOGUARD_CONFIG``) with its overrides; a
    command that does not decide anything still loads it, so a broken file is said at once."""
    from detectors.config import ConfigError
    from streams.config import load_config

    try:
        return load_config(getattr(args, "config", None))
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def quiet_kafka_logs() -> None:
    """Keep the Kafka client's connection retries off the terminal; failures are reported once."""
    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def build_parser() -> argparse.ArgumentParser:
    from streams.settings import ENVIRONMENT

    width = max(map(len, ENVIRONMENT)) + 2
    variables = "\n".join(f"  {name:<{width}}{text}" for name, text in ENVIRONMENT.items())
    parser = argparse.ArgumentParser(
        prog="atoguard",
        description="Streaming account-takeover detection: behavioural profiles, online models "
        "and explainable rules over Kafka, with reversible, explained decisions.",
        epilog=EPILOG.format(variables=variables),
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
            return EXIT_USAGE
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    try:
        return _run(name, rest)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except CliError as exc:
        return _fail(name, str(exc), exc.code)
    except Exception as exc:
        message = _expected_failure(exc)
        if message is None:
            raise
        return _fail(name, message, EXIT_USAGE if _is_config_error(exc) else EXIT_FAILURE)


def _run(name: str, rest: list[str]) -> int:
    """Check the environment, parse the command's options and run it."""
    from streams.settings import check_environment

    module_name, help_text = COMMANDS[name]
    try:
        check_environment()
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    module = importlib.import_module(module_name)
    sub_parser = argparse.ArgumentParser(
        prog=f"atoguard {name}",
        description=(module.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.configure(sub_parser)
    args = sub_parser.parse_args(rest)
    code = int(module.run(args) or 0)
    sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
    return code


def _fail(name: str, message: str, code: int) -> int:
    print(f"atoguard {name}: {message}", file=sys.stderr)
    return code


def _is_config_error(exc: BaseException) -> bool:
    from detectors.config import ConfigError

    return isinstance(exc, ConfigError)


def _expected_failure(exc: BaseException) -> str | None:
    """The one-line message for a failure the user can act on, ``None`` for a bug."""
    if _is_config_error(exc):
        return str(exc)
    module = type(exc).__module__ or ""
    if module.startswith(("kafka.", "aiokafka.")):
        servers = os.environ.get("ATOGUARD_BOOTSTRAP_SERVERS", "").strip()
        where = f" (ATOGUARD_BOOTSTRAP_SERVERS={servers})" if servers else ""
        return (f"Kafka: {type(exc).__name__}: {exc}{where}; is the broker up and the address "
                "right? (atoguard broker status)")
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: no such file"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    return None


def _detach_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that Python's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass

