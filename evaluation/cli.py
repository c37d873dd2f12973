"""Score atoguard's outputs against ground-truth labels and write a report.

Reads three JSON Lines files, one line at a time (a 10M-event file needs no more memory than
the per-account summaries):

  --events  the input events (topics device, location, transaction; verdicts and "raw" lines
            are skipped, and so are events the engine would dead-letter)
  --labels  one incident a line: account_id, scenario, label (ato|legit), start_ts, end_ts,
            first_loss_ts, event_ids
  --out     atoguard's outputs: commands and alerts lines (dead letters are skipped), as written
            by `atoguard replay` or read from the output topics. If the file does not exist,
            the engine is replayed over --events to make it first.

Prints the tables and the headline figures, and writes DIR/report.md, DIR/metrics.json (every
figure, machine-readable) and PNG plots. Per attack scenario: detected, stopped before loss (a
freeze or close between start_ts and first_loss_ts), stepped up before loss, median time and
events to the first freeze, share of the attacker's money movements made before it. For
legitimate accounts (seen in --events, no ato incident): share ever frozen / closed / stepped up,
also per 30 days; per benign situation: share frozen / closed / stepped up within 24 h of its end;
freezes per account-day in the 24 h after a loan repayment vs otherwise. Precision of alerts and
of each command action, and a detection-vs-false-freeze curve over a risk threshold.
report.md spells out every definition.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

__all__ = ["configure", "run"]

EPILOG = """\
example:
  atoguard simulate --accounts 1000 --days 7 --seed 1 --out events.jsonl --labels labels.jsonl
  atoguard replay events.jsonl --out decisions.jsonl
  atoguard eval --events events.jsonl --labels labels.jsonl --out decisions.jsonl --report report/

exit status: 0, or 1 when --fail-under is given and attacks stopped before loss fall below it;
2 when an input file is missing or the replay is unavailable.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atoguard eval``."""
    parser.epilog = EPILOG
    parser.add_argument("--events", required=True, metavar="IN.jsonl",
                        help="input events, contract JSON Lines ({'topic': ..., 'value': {...}})")
    parser.add_argument("--labels", required=True, metavar="LABELS.jsonl",
                        help="ground-truth incidents, one a line (written by `atoguard simulate`)")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl",
                        help="atoguard's commands and alerts; replayed from --events if missing")
    parser.add_argument("--report", required=True, metavar="DIR",
                        help="folder for report.md, metrics.json and the PNG plots (created)")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="policy configuration, used only when --out must be replayed")
    parser.add_argument("--fail-under", type=float, metavar="FRACTION", default=None,
                        help="exit 1 when the share of attacks stopped before loss is below "
                             "FRACTION (0..1), e.g. 0.8 in CI")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars on stderr")


def _replay(args: argparse.Namespace) -> bool:
    try:
        from streams.replay import replay_file
    except ImportError as exc:
        print(f"atoguard eval: {args.out} does not exist and the replay engine is unavailable "
              f"({exc}); run `atoguard replay {args.events} --out {args.out}` first",
              file=sys.stderr)
        return False
    print(f"atoguard eval: {args.out} does not exist; replaying {args.events} into it",
          file=sys.stderr)
    replay_file(args.events, args.out, config_path=args.config)
    return True


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the tables and headline, write the report folder; return the exit code."""
    from . import io, metrics, report

    for name in ("events", "labels"):
        path = getattr(args, name)
        if not os.path.isfile(path):
            print(f"atoguard eval: --{name} {path}: no such file", file=sys.stderr)
            return 2
    if not os.path.exists(args.out) and not _replay(args):
        return 2
    progress = not args.no_progress
    stats = {"labels": Counter(), "outputs": Counter(), "events": Counter()}

    incidents = list(io.iter_incidents(args.labels, stats=stats["labels"], progress=progress))
    decisions = metrics.group_decisions(io.iter_decisions(args.out, stats=stats["outputs"],
                                                          progress=progress))
    summary = metrics.summarise_events(io.iter_events(args.events, stats=stats["events"],
                                                      progress=progress),
                                       incidents, metrics.freeze_times(incidents, decisions))
    m = metrics.evaluate(incidents, decisions, summary)
    m["inputs"] = {name: dict(sorted(c.items())) for name, c in stats.items()}

    out_dir = report.write_report(m, args.report)
    print(report.format_tables(m))
    print(f"\nreport: {out_dir / 'report.md'}\n")
    print(report.format_headline(m))

    stopped = m["headline"]["stopped_before_loss"]
    if args.fail_under is not None and (stopped or 0.0) < args.fail_under:
        print(f"atoguard eval: attacks stopped before loss {report.pct(stopped)} is below "
              f"--fail-under {report.pct(args.fail_under)}", file=sys.stderr)
        return 1
    return 0
