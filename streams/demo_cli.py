"""Broker, topics, worker and simulated traffic in one go, ending with the report.

Steps (each prints what it does):
  1. start the local Kafka broker (or use the one at --bootstrap-servers if it answers);
  2. create the contract topics under a fresh prefix (demo<N>.), so runs never mix;
  3. simulate a small population with ground truth (events file + labels);
  4. start the stream worker (`atoguard run`) on those topics;
  5. publish the simulated events to the input topics (as the upstream services would);
  6. collect the worker's commands and alerts from the output topics until they go quiet;
  7. score them against the labels (`atoguard eval`) and write the report;
  8. replay the same file offline and compare the command ids with the live run.

The orchestration is the development tool tools/demo.py; this module only parses options.

example:
  atoguard demo                       # about 2-4 minutes on a laptop
  atoguard demo --accounts 300 --days 5 --dir demo-out
  atoguard demo --config examples/policy.toml
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from streams.cli import add_config_option, load_policy

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=500, help="simulated accounts (default 500)")
    parser.add_argument("--days", type=int, default=7, help="simulated days (default 7)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=Path("demo-out"), help="where files and the report go")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("ATOGUARD_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                        help="the Kafka to use; a local one is started there when none answers "
                             "(env ATOGUARD_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)")
    parser.add_argument("--quiet-seconds", type=float, default=20.0,
                        help="stop collecting outputs after this long without a new one (default 20)")
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running at the end")
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    from tools import demo

    load_policy(args)
    return demo.run(args)
