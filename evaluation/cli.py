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
freeze or close between start_ts and first_loss_ts; under v2 scoring, when the labels carry
attacker_passes/holder_passes/enrolled lines or the commands carry methods: from start_ts - 1 h,
a close, a freeze whose way back the attacker does not pass, or a step_up to the attacker with
a method they do not pass), stepped up before loss, median time and
events to the first freeze, share of the attacker's money movements made before it. For
legitimate accounts (seen in --events, no ato incident): share ever frozen / closed / stepped up,
challenged on ordinary days, hours frozen; lock-outs of holders; challenges per benign situation;
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

  # closed loop (contract v2): --out may be the transcript of `atoguard replay --respond`
  atoguard replay events.jsonl --out transcript.jsonl --respond labels.jsonl
  atoguard eval --events events.jsonl --labels labels.jsonl --out transcript.jsonl --report report/

  # attacks stopped against friction, one point per report folder (e.g. one per threshold)
  atoguard eval --curve t0.3=report-0.3/ t0.5=report-0.5/ t0.7=report-0.7/ --report curve/

--curve [LABEL=]DIR ... reads DIR/metrics.json of earlier runs and writes, into --report,
stopped_vs_friction.png (legitimate accounts challenged on ordinary days per 30 days on x, share
of attacks stopped before loss on y, points joined in the order given) and curve.json; LABEL
defaults to the folder's name. --events, --labels and --out are not needed then.

--ceiling OTHER_EVENTS OTHER_LABELS (with --events, --labels, --out): after the evaluation, runs
the engine over both event files (open loop) to get each event's features, trains scikit-learn's
HistGradientBoostingClassifier on the other population (positive: an attacker's event of an ato
incident), scores this one, and writes ceiling.json and stopped_vs_friction.png (the ceiling's
curve and the policy's point, plus the --curve folders' points when given). Where the ceiling is
far above the policy at the same friction the policy wastes evidence; where it is low too, the
evidence is not in the features. Takes a few minutes on 5,000 accounts x 30 days:
  atoguard eval --events ev31.jsonl --labels lab31.jsonl --out tr31.jsonl --report r31/ --ceiling ev32.jsonl lab32.jsonl

exit status: 0, or 1 when --fail-under is given and attacks stopped before loss fall below it;
2 when an input file is missing or is not the file it should be (a CSV, the events file given
as labels: more than half of its first 200 lines are not of its kind; said in one line), or the
replay is unavailable.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atoguard eval``."""
    parser.epilog = EPILOG
    parser.add_argument("--events", metavar="IN.jsonl",
                        help="input events, contract JSON Lines ({'topic': ..., 'value': {...}}); required "
                             "unless --curve")
    parser.add_argument("--labels", metavar="LABELS.jsonl",
                        help="ground-truth incidents, one a line, with the v2 fields and enrolment "
                             "lines when present (written by `atoguard simulate`); required unless --curve")
    parser.add_argument("--out", metavar="OUT.jsonl",
                        help="atoguard's commands and alerts, or a closed-loop transcript (input, "
                             "withheld lines are read as such); replayed from --events if missing; "
                             "required unless --curve")
    parser.add_argument("--curve", nargs="+", metavar="[LABEL=]DIR", default=None,
                        help="instead of scoring: plot attacks stopped against friction from the "
                             "metrics.json of several report folders (see below)")
    parser.add_argument("--ceiling", nargs=2, metavar=("OTHER_EVENTS", "OTHER_LABELS"), default=None,
                        help="also train a supervised model (gradient boosting) on another population's "
                             "events and labels over the engine's own features, score this population "
                             "with it and draw its curve beside the policy's point in "
                             "stopped_vs_friction.png (see below)")
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
    config = None
    if args.config:
        from streams.cli import load_policy
        config = load_policy(args)
    replay_file(args.events, args.out, config=config)
    return True


def _curve(args: argparse.Namespace) -> int:
    """``--curve``: one point per earlier report folder; plot, curve.json and a table."""
    import orjson

    from . import report

    points = []
    for item in args.curve:
        label, sep, folder = item.partition("=")
        if not sep:
            label, folder = os.path.basename(os.path.normpath(item)), item
        path = os.path.join(folder, "metrics.json")
        try:
            with open(path, "rb") as fh:
                points.append((label, orjson.loads(fh.read())))
        except (OSError, orjson.JSONDecodeError) as exc:
            print(f"atoguard eval: --curve {item}: cannot read {path} ({exc})", file=sys.stderr)
            return 2
        if "headline" not in points[-1][1]:
            print(f"atoguard eval: --curve {item}: {path} is not an `atoguard eval` metrics.json", file=sys.stderr)
            return 2
    os.makedirs(args.report, exist_ok=True)
    plot = os.path.join(args.report, report.CURVE_PLOT)
    pts = report.friction_curve(points, plot)
    with open(os.path.join(args.report, "curve.json"), "wb") as fh:
        fh.write(orjson.dumps(pts, option=orjson.OPT_INDENT_2))
    print(report.format_curve(pts))
    print(f"\nplot: {plot}")
    return 0


def _ceiling(args: argparse.Namespace, m: dict, incidents: list) -> int:
    """``--ceiling``: the supervised ceiling's curve beside the policy's point(s)."""
    import orjson

    from . import ceiling, report

    other_events, other_labels = args.ceiling
    config = None
    if args.config:
        from streams.cli import load_policy
        config = load_policy(args)
    print("\nceiling: running the engine over both event files for their features...", file=sys.stderr)
    curve = ceiling.run(other_events, other_labels, args.events, incidents, config=config)
    policy_x = m["headline"].get("challenged_on_ordinary_days_per_30d")
    curve["at_policy_friction"] = ceiling.at_friction(curve, policy_x)
    with open(os.path.join(args.report, "ceiling.json"), "wb") as fh:
        fh.write(orjson.dumps(curve, option=orjson.OPT_INDENT_2))
    points = [("policy", m)]
    for item in args.curve or ():
        label, sep, folder = item.partition("=")
        try:
            with open(os.path.join(folder if sep else item, "metrics.json"), "rb") as fh:
                points.append((label if sep else os.path.basename(os.path.normpath(item)), orjson.loads(fh.read())))
        except (OSError, orjson.JSONDecodeError):
            pass
    plot = os.path.join(args.report, report.CURVE_PLOT)
    report.friction_curve(points, plot, ceiling=curve)
    print(report.format_ceiling(curve, m))
    print(f"plot: {plot}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the tables and headline, write the report folder; return the exit code."""
    from . import io, metrics, report

    if args.curve and not args.ceiling:
        return _curve(args)
    for name in ("events", "labels", "out"):
        if not getattr(args, name):
            print(f"atoguard eval: --{name} is required (unless --curve)", file=sys.stderr)
            return 2
    for name in ("events", "labels"):
        path = getattr(args, name)
        if not os.path.isfile(path):
            print(f"atoguard eval: --{name} {path}: no such file", file=sys.stderr)
            return 2
    for name in ("events", "labels", "out"):
        path = getattr(args, name)
        why = io.unreadable(path, name) if os.path.isfile(path) else None
        if why is not None:
            print(f"atoguard eval: --{name} {path}: {why}", file=sys.stderr)
            return 2
    for flag, path, kind in zip(("events", "labels"), args.ceiling or (), ("events", "labels")):
        why = "no such file" if not os.path.isfile(path) else io.unreadable(path, kind)
        if why is not None:
            print(f"atoguard eval: --ceiling {flag} {path}: {why}", file=sys.stderr)
            return 2
    if not os.path.exists(args.out) and not _replay(args):
        return 2
    progress = not args.no_progress
    stats = {"labels": Counter(), "outputs": Counter(), "events": Counter()}

    enrolled: dict[str, frozenset[str]] = {}
    verdicts: list[metrics.Verdict] = []
    withheld: set[str] = set()
    holds: dict[str, list] = {}
    incidents = list(io.iter_incidents(args.labels, stats=stats["labels"], progress=progress,
                                       enrolled=enrolled))
    decisions = metrics.group_decisions(io.iter_decisions(args.out, stats=stats["outputs"],
                                                          progress=progress, verdicts=verdicts,
                                                          withheld=withheld, holds=holds))
    summary = metrics.summarise_events(io.iter_events(args.events, stats=stats["events"],
                                                      progress=progress, verdicts=verdicts),
                                       incidents, metrics.freeze_times(incidents, decisions))
    m = metrics.evaluate(incidents, decisions, summary, enrolled, verdicts, withheld, holds)
    m["inputs"] = {name: dict(sorted(c.items())) for name, c in stats.items()}

    out_dir = report.write_report(m, args.report)
    print(report.format_tables(m))
    print(f"\nreport: {out_dir / 'report.md'}\n")
    print(report.format_headline(m))
    if args.ceiling:
        rc = _ceiling(args, m, incidents)
        if rc:
            return rc

    stopped = m["headline"]["stopped_before_loss"]
    if args.fail_under is not None and (stopped or 0.0) < args.fail_under:
        print(f"atoguard eval: attacks stopped before loss {report.pct(stopped)} is below "
              f"--fail-under {report.pct(args.fail_under)}", file=sys.stderr)
        return 1
    return 0
