"""The contract's Kafka topics: create them (idempotently) or list the registry.

Names are the deployment prefix (ATOGUARD_TOPIC_PREFIX, default "ato.") plus the logical
name; every topic gets ATOGUARD_PARTITIONS partitions (default 6) so inputs are
co-partitioned by account id. Creating topics that exist already leaves them as they are.
"""

from __future__ import annotations

import argparse
import sys

from streams.settings import Settings
from streams.topics import TopicSpec, create_topics, registry

EPILOG = """\
examples:
  atoguard topics create                                   # on 127.0.0.1:9092, prefix ato.
  atoguard topics list                                     # the registry as a table
  atoguard topics create --bootstrap-servers kafka:9092 --partitions 12
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
    common.add_argument("--bootstrap-servers", help="host:port[,host:port] (default 127.0.0.1:9092)")
    common.add_argument("--prefix", dest="topic_prefix", help="topic name prefix (default ato.)")
    common.add_argument("--partitions", type=int, help="partitions of every topic (default 6)")
    common.add_argument("--replication-factor", type=int, help="replicas of every topic (default 1)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("create", parents=[common], help="create every topic of the registry")
    sub.add_parser("list", parents=[common], help="print the registry as a table (no broker)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            bootstrap_servers=args.bootstrap_servers, topic_prefix=args.topic_prefix,
            partitions=args.partitions, replication_factor=args.replication_factor,
        )
    except ValueError as exc:
        print(f"atoguard topics {args.action}: {exc}", file=sys.stderr)
        return 2
    if args.action == "list":
        print(format_table(registry(settings), settings.topic_prefix))
        return 0
    return _create(settings)


def _create(settings: Settings) -> int:
    from kafka.errors import KafkaError

    try:
        outcome = create_topics(settings)
    except KafkaError as exc:
        print(f"atoguard topics create: {settings.bootstrap_servers}: {exc}\n"
              "  is the broker up? (atoguard broker status)", file=sys.stderr)
        return 1
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
