"""The contract's Kafka topics: create them (idempotently) or list the registry.

Names are the deployment prefix (ATOGUARD_TOPIC_PREFIX, default "ato.") plus the logical
name; every topic gets ATOGUARD_PARTITIONS partitions (default 6) so inputs are
co-partitioned by account id. Creating topics that exist already leaves them as they are.
"""

from __future__ import annotations

import argparse

from streams.cli import CliError, add_config_option, add_kafka_options, kafka_settings, load_policy, \
    quiet_kafka_logs
from streams.settings import Settings
from streams.topics import TopicSpec, create_topics, registry

__all__ = ["configure", "format_table", "run"]

EPILOG = """\
examples:
  atoguard topics create                                   # on 127.0.0.1:9092, prefix ato.
  atoguard topics list                                     # the registry as a table
  atoguard topics create --bootstrap-servers kafka:9092 --partitions 12 --replication-factor 3
  ATOGUARD_TOPIC_PREFIX=staging.ato. atoguard topics create

environment (options win over it):
  ATOGUARD_BOOTSTRAP_SERVERS, ATOGUARD_TOPIC_PREFIX, ATOGUARD_PARTITIONS,
  ATOGUARD_REPLICATION_FACTOR
"""

_DAY_MS = 24 * 60 * 60 * 1000


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``create`` and ``list`` sub-commands."""
    parser.epilog = EPILOG
    common = argparse.ArgumentParser(add_help=False)
    add_kafka_options(common)
    common.add_argument("--prefix", dest="topic_prefix", help=argparse.SUPPRESS)  # old name
    common.add_argument("--partitions", type=int, help="partitions of every topic (default 6)")
    common.add_argument("--replication-factor", type=int, help="replicas of every topic (default 1)")
    common.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="bound on connecting and on creating (default 30)")
    add_config_option(common)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("create", parents=[common], help="create every topic of the registry")
    sub.add_parser("list", parents=[common], help="print the registry as a table (no broker)")


def run(args: argparse.Namespace) -> int:
    settings = kafka_settings(args, partitions=args.partitions,
                              replication_factor=args.replication_factor)
    load_policy(args)
    if args.action == "list":
        print(format_table(registry(settings), settings.topic_prefix))
        return 0
    return _create(settings, args.timeout)


def _create(settings: Settings, timeout_s: float) -> int:
    from kafka.errors import KafkaError

    from streams.tail import Unreachable, open_consumer

    quiet_kafka_logs()
    try:
        open_consumer(settings, timeout_s).close()  # says "no Kafka answers" within the timeout
        outcome = create_topics(settings, timeout_ms=int(timeout_s * 1000))
    except Unreachable as exc:
        raise CliError(str(exc)) from None
    except KafkaError as exc:
        raise CliError(f"{settings.bootstrap_servers}: {exc}; is the broker up? "
                       "(atoguard broker status)") from None
    width = max(map(len, outcome))
    for name, state in outcome.items():
        print(f"{name:<{width}}  {state}")
    return 0


def format_table(specs: list[TopicSpec], prefix: str) -> str:
    """The registry as an aligned text table."""
    header = ("topic", "partitions", "retention", "cleanup", "schema", "content")
    rows = [header] + [
        (s.name(prefix), str(s.partitions), _days(s.retention_ms),
         "compact" if s.compacted else "delete", s.value_schema, s.description)
        for s in specs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
             for row in rows]
    return "\n".join(lines)


def _days(retention_ms: int | None) -> str:
    if retention_ms is None:
        return "broker default"
    days = retention_ms / _DAY_MS
    return f"{days:g} days" if days >= 1 else f"{retention_ms} ms"
