"""A local single-node Apache Kafka 4 (KRaft) for development, tests and the demo.

A thin wrapper around the development tool :mod:`tools.kafka_broker`; not for production
(see deploy/ for a three-broker cluster).

The broker runs from jars fetched once from Maven Central with mvn (needs java 17+ and mvn),
listens on 127.0.0.1 only and keeps everything (config, data, logs, pid file) in one data dir.
To use a Kafka cluster you already have, skip this command and set
ATOGUARD_BOOTSTRAP_SERVERS=host:port instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.cli import add_config_option, load_policy
from tools.kafka_broker import Broker, BrokerConfig, BrokerError

__all__ = ["configure", "run"]

EPILOG = """\
examples:
  atoguard broker start                      # on 127.0.0.1:9092, data in ./.atoguard/kafka
  atoguard broker status                     # exit 0 when it answers, 3 when it does not
  atoguard broker stop
  atoguard broker start --port 19092 --data-dir /tmp/kafka-test
  ATOGUARD_BOOTSTRAP_SERVERS=127.0.0.1:19092 atoguard topics create
  atoguard broker fetch                      # only download the jars (e.g. to warm a cache)

environment (options win over it):
  ATOGUARD_BROKER_PORT, ATOGUARD_BROKER_CONTROLLER_PORT, ATOGUARD_BROKER_DATA_DIR,
  ATOGUARD_KAFKA_VERSION, ATOGUARD_KAFKA_LIB (jar cache folder), ATOGUARD_BROKER_HEAP

the broker's log: <data dir>/logs/server.log
"""

#: ``status`` exit code when nothing answers (as LSB init scripts do).
EXIT_DOWN = 3


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``start`` / ``stop`` / ``status`` / ``fetch`` sub-commands."""
    parser.epilog = EPILOG
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where the broker runs")
    where.add_argument("--port", type=int, help="client port (default 9092)")
    where.add_argument("--controller-port", type=int, help="KRaft controller port (default port+1)")
    where.add_argument("--data-dir", type=Path, help="config, data, logs and pid file "
                       "(default ./.atoguard/kafka)")
    where.add_argument("--kafka-version", dest="version", help="Kafka release from Maven Central")
    where.add_argument("--lib-dir", type=Path, help="jar cache folder "
                       "(default deploy/kafka/lib/<version>)")
    where.add_argument("--heap", help="JVM maximum heap, e.g. 768m (default) or 1g")
    add_config_option(common)

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = sub.add_parser("start", parents=[common], help="start the broker and wait until it answers")
    start.add_argument("--timeout", type=float, default=90.0,
                       help="seconds to wait for the broker to answer (default 90)")
    stop = sub.add_parser("stop", parents=[common], help="stop the broker (SIGTERM, then SIGKILL)")
    stop.add_argument("--grace", type=float, default=30.0,
                      help="seconds between SIGTERM and SIGKILL (default 30)")
    sub.add_parser("status", parents=[common], help="say whether the broker answers (exit 0 or 3)")
    sub.add_parser("fetch", parents=[common], help="fetch the Kafka jars into the cache, no more")


def run(args: argparse.Namespace) -> int:
    load_policy(args)  # accepted like everywhere; a broken file is said at once
    try:
        broker = Broker(BrokerConfig.from_env(
            port=args.port, controller_port=args.controller_port, data_dir=args.data_dir,
            version=args.version, lib_dir=args.lib_dir, heap=args.heap,
        ))
        return _ACTIONS[args.action](broker, args)
    except (BrokerError, ValueError) as exc:
        print(f"atoguard broker {args.action}: {exc}", file=sys.stderr)
        return 1


def _start(broker: Broker, args: argparse.Namespace) -> int:
    cfg = broker.config
    seconds = broker.start(timeout_s=args.timeout)
    if seconds == 0.0:
        print(f"already running: {broker.status().describe()}")
    else:
        print(f"Kafka {cfg.version} answers at {cfg.bootstrap} after {seconds:.1f} s "
              f"(pid {broker.pid()}, log {cfg.log_file})")
    if cfg.bootstrap != "127.0.0.1:9092":
        print(f"  point atoguard at it with: export ATOGUARD_BOOTSTRAP_SERVERS={cfg.bootstrap}")
    return 0


def _stop(broker: Broker, args: argparse.Namespace) -> int:
    if broker.stop(grace_s=args.grace):
        print(f"stopped the broker of {broker.config.data_dir}")
    else:
        print(f"no broker of {broker.config.data_dir} was running")
    return 0


def _status(broker: Broker, args: argparse.Namespace) -> int:
    status = broker.status()
    print(status.describe())
    return 0 if status.up else EXIT_DOWN


def _fetch(broker: Broker, args: argparse.Namespace) -> int:
    print(f"Kafka {broker.config.version} jars in {broker.fetch()}")
    return 0


_ACTIONS = {"start": _start, "stop": _stop, "status": _status, "fetch": _fetch}
