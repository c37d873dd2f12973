"""The product working, live: broker, topics, worker, the simulated traffic streamed through the
live account service at a steady rate with a live view, then the report from the output topics.

Steps (each prints what it does):
  1. start the local Kafka broker (or use the one at --bootstrap-servers if it answers);
  2. create the contract topics under a fresh prefix (demo<N>.), so runs never mix;
  3. simulate a population in which every attack scenario has attacks with a loss;
  4. start the stream worker (`atoguard run`) on those topics, and the analyst console
     (`atoguard console`): the demo prints its address and a sign-in (user demo, a fresh
     password), and the console shows the traffic live while it streams;
  5. stream the events at a steady rate for --minutes through the live account service, which
     answers the worker's step-ups and freezes and refuses the attackers it stopped; the live
     view is a status line (events/s, the worker's lag, commands, answers) and a short log of
     freezes, closes, unfreezes, failed challenges and the first step-ups, with the holder's
     message, in simulated-time order (the rest is counted; the console shows everything);
  6. close the clients, stop the console, the worker and the broker; score what was read back
     from the output topics (`atoguard eval`) and write the report;
  7. compare with the closed-loop replay (`atoguard replay --respond`) of the same events.

Ctrl-C stops everything the demo started. The orchestration is the development tool
tools/demo.py; this module only parses options.

example:
  atoguard demo                       # 6-7 minutes: the account service waits for the worker
  atoguard demo --short               # about three minutes in all
  atoguard demo --accounts 3000 --days 14 --minutes 4 --dir demo-out
  atoguard demo --config examples/policy.toml
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from streams.cli import add_config_option, load_policy

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--short", action="store_true",
                        help="a short demo: 400 accounts, 5 days, offered in 30 s (the account service "
                             "waits for the worker: about three minutes in all)")
    parser.add_argument("--accounts", type=int, default=None, help="simulated accounts (default 1200; --short 400)")
    parser.add_argument("--days", type=int, default=None, help="simulated days (default 10; --short 5)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="the events are offered at a steady rate over this many minutes (default 2; "
                             "--short 0.5); the account service holds some back until the worker "
                             "has committed what came before, so streaming takes longer")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=Path("demo-out"), help="where files and the report go")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("ATOGUARD_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                        help="the Kafka to use; a local one is started there when none answers "
                             "(env ATOGUARD_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)")
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running at the end")
    parser.add_argument("--console-port", type=int, default=None,
                        help="the analyst console's port (default 8080 when free, else any free port)")
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    from tools import demo

    load_policy(args)
    if args.console_port is None:
        args.console_port = demo.port_if_free(8080)
    return demo.run(args)
