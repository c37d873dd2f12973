"""Run the detection engine of the stream worker over a JSON Lines file, in file order, with no
broker. The same file and configuration give byte-identical output.

Input lines are contract messages: {"topic": "device"|"location"|"transaction"|"verdicts",
"value": {...}} (or "raw": "<text>" for bytes that are not a JSON object). Output lines are
{"topic": "commands"|"alerts"|"dead-letter", "value": {...}}, alerts with their CloudEvents
"headers". A bad line becomes a dead-letter line; nothing stops.

With --respond LABELS.jsonl the replay is closed-loop (contract v2): it also plays the account
service and the people from the labels - each step_up is answered 30 s later and each freeze's
way back 10 min later by the person whose event triggered it (attacker or holder), with the
first listed method the account has enrolled, passed or failed as the labels say; an attacker
refused by a challenge they fail has their later events withheld. OUT is then the transcript:
every event fed (file lines and answers), the outputs, and one "withheld" line per withheld event.

example:
  atoguard replay events.jsonl --out decisions.jsonl
  atoguard replay events.jsonl --out shadow.jsonl --config policy.toml
  atoguard replay events.jsonl --out transcript.jsonl --respond labels.jsonl
"""

from __future__ import annotations

import argparse

from streams.cli import CliError, EXIT_USAGE, add_config_option, load_policy

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.jsonl", help="contract events, one message a line")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", help="where to write commands, alerts and dead letters")
    parser.add_argument("--respond", metavar="LABELS.jsonl", default=None,
                        help="closed loop: answer challenges as the labelled people would (contract v2)")
    parser.add_argument("--partitions", type=int, default=None, metavar="N",
                        help="the input topics' partition count of the deployment to mirror: a line is a "
                             "message on partition murmur2(account_id) mod N, and each partition has its own "
                             "online models (default: ATOGUARD_PARTITIONS, else 6)")
    add_config_option(parser)
    parser.add_argument("--engine", choices=("native", "python"), default=None,
                        help="the engine's kernels: native (Rust, built from native/; the default when built) or "
                             "python (the reference); both give the same output (default: ATOGUARD_ENGINE, else native "
                             "when built)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def run(args: argparse.Namespace) -> int:
    from streams.replay import replay_file
    from streams.settings import Settings
    cfg = load_policy(args)
    _choose_engine(args.engine)
    partitions = args.partitions or Settings.from_env().partitions
    if partitions < 1:
        raise CliError(f"--partitions must be at least 1, not {partitions}", EXIT_USAGE)
    try:
        summary = replay_file(args.input, args.out, cfg, progress=not args.quiet, respond=args.respond,
                              partitions=partitions)
    except FileNotFoundError as exc:
        raise CliError(f"{exc.filename}: no such file", EXIT_USAGE) from None
    if not args.quiet:
        print(f"replayed {args.input} -> {args.out} (policy {cfg.policy.version}"
              f"{', dry run' if cfg.policy.dry_run else ''})")
        print(summary.table())
    return 0


def _choose_engine(engine: str | None) -> None:
    """Set ATOGUARD_ENGINE for the models this run builds (detectors.native); a native engine
    asked for but not built, or a bad ATOGUARD_ENGINE, is a usage error."""
    import os

    from detectors import native
    if engine is not None:
        os.environ[native.ENV] = engine
    try:
        native.module()
    except (native.NativeUnavailable, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
