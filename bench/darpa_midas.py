"""MIDAS-R on the DARPA edge stream, held to the figures published in the MIDAS paper.

Streams ``darpa_original.csv`` out of its zip (never unpacked), scores every edge with
:class:`detectors.burst.MidasR` and prints ROC-AUC, average precision and timings beside the
paper's numbers::

    python -m bench.darpa_midas [--zip PATH] [--limit N] [--seed S] [--repeat R]

What it measures here (2 CPUs, Python 3.11): with the paper's settings (2 rows, 2,719 buckets,
factor 0.5) ROC-AUC 0.9441 and AP 0.9652, the same to within 0.0002 over ten hash seeds, against
the paper's 0.95 and 0.97. The gap is the method's at these settings, not this code's: the
paper-era hash functions (``edgehash.cpp``/``nodehash.cpp``, tried in a throw-away script) give
0.9443; exact counting (100,000 buckets, hardly any collision) gives 0.938; and with 1,024 buckets,
the setting of the authors' own 21-run log (``doc/Experiment/MIDAS/Relational/Time,AUC/DARPA.csv``
in their repository: ROC-AUC 0.9506-0.9545, mean 0.952), 21 seeds here give 0.9486-0.9525, mean
0.9500, AP 0.9688. Sharing buckets helps on this stream; 2,719 buckets share fewer.

``--repeat R`` scores the stream with R hash seeds (S, S+1, ...) and adds the spread of the
figures over them: the hash functions decide which keys share a bucket, and on this stream
those collisions move ROC-AUC by a few thousandths (the MIDAS authors report their own runs the
same way, 21 seeds per setting, in ``doc/Experiment`` of their repository).

The zip path defaults to ``$ATOGUARD_DARPA_ZIP``, else the shared copy.

Rows are ``src_ip,dst_ip,MM/DD/YYYY-hh:mm,label``. They are turned into numbers the way the
MIDAS reference prepares them (Stream-AD/MIDAS, ``util/PreprocessData.py``, which uses pandas
category codes): a node id is the rank of its IP string among all distinct IPs (sources and
destinations together, sorted); a tick is 1 + the rank of its timestamp string among the
distinct timestamps (sorted as strings; the file is in time order, so this is the order of first
appearance); the label is 1 unless it is ``-``. So a tick is the n-th distinct minute that has
traffic, not minutes elapsed: quiet gaps do not count (and some dates in the file, such as
``07/32/1998``, are not calendar dates, so elapsed minutes are not even defined).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metrics import average_precision, roc_auc  # noqa: E402
from detectors.burst import MidasR  # noqa: E402

__all__ = ["DarpaEdges", "default_zip", "parse_rows", "load_darpa", "evaluate", "format_table",
           "main"]

DEFAULT_ZIP = "/work/shared/data/midas_darpa/darpa_original.zip"
ENV_ZIP = "ATOGUARD_DARPA_ZIP"

#: Published on this stream (Bhatia et al., AAAI 2020): ROC-AUC, average precision, seconds
#: (C++ on a 2.4 GHz i9).
PAPER = {"MIDAS": (0.91, 0.95, 0.13), "MIDAS-R": (0.95, 0.97, 0.39)}


class DarpaEdges(NamedTuple):
    """The parsed stream: one entry per row, in file order."""

    src: np.ndarray  # int64 node id
    dst: np.ndarray  # int64 node id
    tick: np.ndarray  # int64, from 1, non-decreasing
    label: np.ndarray  # bool, True for an attack


def default_zip() -> str:
    """``$ATOGUARD_DARPA_ZIP`` if set, else the shared copy of the DARPA zip."""
    return os.environ.get(ENV_ZIP) or DEFAULT_ZIP


def parse_rows(data: bytes) -> DarpaEdges:
    """Parse the CSV text (``src,dst,MM/DD/YYYY-hh:mm,label`` rows, no header).

    >>> e = parse_rows(b"b,a,06/01/1998-08:00,-\\nb,c,06/01/1998-08:00,smurf\\n"
    ...                b"a,b,06/01/1998-08:05,-\\n")
    >>> e.src.tolist(), e.dst.tolist(), e.tick.tolist(), e.label.tolist()
    ([1, 1, 0], [0, 2, 1], [1, 1, 2], [False, True, False])
    """
    data = data.replace(b"\r", b"").strip(b"\n")
    if not data:
        empty = np.empty(0, dtype=np.int64)
        return DarpaEdges(empty, empty, empty, np.empty(0, dtype=bool))
    n = data.count(b"\n") + 1
    fields = data.replace(b"\n", b",").split(b",")
    if len(fields) != 4 * n:
        for i, line in enumerate(data.split(b"\n")):
            if line.count(b",") != 3:
                raise ValueError(f"row {i + 1}: expected 4 comma-separated fields, got {line!r}")
    src, dst, ts, label = fields[0::4], fields[1::4], fields[2::4], fields[3::4]
    del fields
    node = {ip: i for i, ip in enumerate(sorted(set(src).union(dst)))}
    moment = {t: i + 1 for i, t in enumerate(sorted(set(ts)))}
    src_id = np.fromiter(map(node.__getitem__, src), dtype=np.int64, count=n)
    dst_id = np.fromiter(map(node.__getitem__, dst), dtype=np.int64, count=n)
    tick = np.fromiter(map(moment.__getitem__, ts), dtype=np.int64, count=n)
    attack = np.fromiter((lab != b"-" for lab in label), dtype=bool, count=n)
    back = np.flatnonzero(tick[1:] < tick[:-1])
    if back.size:
        i = int(back[0]) + 1
        raise ValueError(f"row {i + 1}: timestamp {ts[i]!r} is earlier than {ts[i - 1]!r}")
    return DarpaEdges(src_id, dst_id, tick, attack)


def load_darpa(path: str | os.PathLike[str], limit: int | None = None) -> DarpaEdges:
    """Read the CSV inside the zip at ``path`` (its only ``.csv`` member), the first ``limit``
    rows or all of them, and :func:`parse_rows` it."""
    with zipfile.ZipFile(path) as zf:
        members = [name for name in zf.namelist() if name.endswith(".csv")]
        if len(members) != 1:
            raise ValueError(f"{path}: expected one .csv member, found {members}")
        with zf.open(members[0]) as f:
            data = f.read() if limit is None else b"".join(islice(f, limit))
    return parse_rows(data)


def evaluate(edges: DarpaEdges, *, rows: int = 2, buckets: int = 2719, factor: float = 0.5,
             seed: int = 0) -> dict[str, Any]:
    """Score every edge with a fresh :class:`MidasR`; return the figures and the scores.

    ``score_seconds`` is wall-clock time, ``score_cpu_seconds`` the CPU time of this process
    (the two differ when the machine is busy).
    """
    model = MidasR(rows=rows, buckets=buckets, factor=factor, seed=seed)
    c0, t0 = time.process_time(), time.perf_counter()
    scores = model.score_many(edges.src, edges.dst, edges.tick)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    n = edges.src.shape[0]
    return {
        "edges": n,
        "attacks": int(edges.label.sum()),
        "ticks": int(edges.tick[-1]) if n else 0,
        "roc_auc": roc_auc(edges.label, scores),
        "average_precision": average_precision(edges.label, scores),
        "score_seconds": seconds,
        "score_cpu_seconds": cpu_seconds,
        "edges_per_second": n / seconds if seconds > 0 else float("inf"),
        "scores": scores,
    }


def format_table(result: dict[str, Any], parse_seconds: float) -> str:
    """The results table, our row under the paper's."""
    head = (f"{'detector':<24} {'ROC-AUC':>8} {'AP':>8} {'parse s':>8} {'score s':>8} "
            f"{'cpu s':>7} {'edges/s':>12}")
    lines = [head, "-" * len(head)]
    for name, (auc, ap, secs) in PAPER.items():
        rate = 4_554_344 / secs
        lines.append(f"{'paper ' + name + ' (C++)':<24} {auc:>8.2f} {ap:>8.2f} {'':>8} "
                     f"{secs:>8.2f} {'':>7} {rate:>12,.0f}")
    lines.append(f"{'atoguard MidasR':<24} {result['roc_auc']:>8.4f} "
                 f"{result['average_precision']:>8.4f} {parse_seconds:>8.2f} "
                 f"{result['score_seconds']:>8.2f} {result['score_cpu_seconds']:>7.2f} "
                 f"{result['edges_per_second']:>12,.0f}")
    lines.append(f"({result['edges']:,} edges, {result['attacks']:,} attacks, "
                 f"{result['ticks']:,} ticks; score s is wall-clock, cpu s this process's CPU "
                 f"time; edges/s from wall-clock; paper edges/s are for the whole stream)")
    return "\n".join(lines)


def format_spread(results: list[dict[str, Any]]) -> str:
    """One line per seed, then mean, min and max of ROC-AUC and AP over the seeds."""
    lines = [f"{'seed':>6} {'ROC-AUC':>8} {'AP':>8} {'cpu s':>7}"]
    for r in results:
        lines.append(f"{r['seed']:>6} {r['roc_auc']:>8.4f} {r['average_precision']:>8.4f} "
                     f"{r['score_cpu_seconds']:>7.2f}")
    for name, fn in (("mean", np.mean), ("min", np.min), ("max", np.max)):
        auc = float(fn([r["roc_auc"] for r in results]))
        ap = float(fn([r["average_precision"] for r in results]))
        lines.append(f"{name:>6} {auc:>8.4f} {ap:>8.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", default=None,
                        help=f"the DARPA zip (default: ${ENV_ZIP} or {DEFAULT_ZIP})")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--buckets", type=int, default=2719)
    parser.add_argument("--factor", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the hash functions")
    parser.add_argument("--repeat", type=int, default=1,
                        help="score with this many seeds (seed, seed+1, ...) and print the "
                             "spread of the figures")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    path = args.zip or default_zip()
    if not Path(path).is_file():
        parser.error(f"no such file: {path} (set --zip or ${ENV_ZIP})")
    t0 = time.perf_counter()
    edges = load_darpa(path, args.limit)
    parse_seconds = time.perf_counter() - t0
    result = evaluate(edges, rows=args.rows, buckets=args.buckets, factor=args.factor,
                      seed=args.seed)
    print(f"MIDAS-R on {path} (rows={args.rows}, buckets={args.buckets}, "
          f"factor={args.factor}, seed={args.seed})")
    print(format_table(result, parse_seconds))
    if args.repeat > 1:
        results = [dict(result, seed=args.seed)]
        for seed in range(args.seed + 1, args.seed + args.repeat):
            r = evaluate(edges, rows=args.rows, buckets=args.buckets, factor=args.factor,
                         seed=seed)
            results.append(dict(r, seed=seed))
            print(f"  seed {seed}: ROC-AUC {r['roc_auc']:.4f}  AP {r['average_precision']:.4f}",
                  file=sys.stderr, flush=True)
        print(f"\nOver {args.repeat} hash seeds:")
        print(format_spread(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
