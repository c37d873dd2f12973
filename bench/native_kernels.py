"""The native kernels alone against their Python reference: CPU µs per call.

    python -m bench.native_kernels [--vectors N] [--edges N]

Half-Space Trees (10 trees of height 6, window 250, 13 features, as BehaviourAnomaly's money-out
group): the forest's score and learn (pivots and a final sync included) over random vectors;
MIDAS-R ``score_one`` over random edges, 50 to a tick. Needs the native module
(``pip install ./native``). Compare figures within one run; the machines are noisy.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--edges", type=int, default=200_000)
    args = ap.parse_args(argv)
    from river import anomaly as river_anomaly

    from detectors import native
    from detectors.burst.midas import MidasR
    from detectors.models.anomaly import _Forest, _NativeForest

    module = native.module({})
    if module is None:
        print("bench.native_kernels: the native module is not built (.venv/bin/pip install ./native)",
              file=sys.stderr)
        return 2
    dims = 13
    hst = river_anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=1)
    hst.learn_one({f"f{i}": 0.5 for i in range(dims)})
    names = tuple(f"f{i}" for i in range(dims))
    rng = random.Random(1)
    vectors = [[rng.random() for _ in range(dims)] for _ in range(args.vectors)]
    print(f"{'kernel':<44} {'python µs':>10} {'native µs':>10}")
    rows: dict[str, list[float]] = {"HST forest score": [], "HST forest learn (pivots, sync)": []}
    for kind in ("python", "native"):
        forest = (_Forest(copy.deepcopy(hst), names) if kind == "python"
                  else _NativeForest(copy.deepcopy(hst), names, module))
        for v in vectors[:600]:
            forest.learn(v)
        t = time.process_time()
        for v in vectors:
            forest.score(v)
        rows["HST forest score"].append((time.process_time() - t) / len(vectors) * 1e6)
        t = time.process_time()
        for v in vectors:
            forest.learn(v)
        forest.sync()
        rows["HST forest learn (pivots, sync)"].append((time.process_time() - t) / len(vectors) * 1e6)
    edges = [(rng.randrange(5000), rng.randrange(2000), 1 + i // 50) for i in range(args.edges)]
    rows["MIDAS-R score_one per edge"] = []
    before = os.environ.get(native.ENV)
    try:
        for kind in ("python", "native"):
            os.environ[native.ENV] = kind
            m = MidasR(seed=1)
            t = time.process_time()
            for s, d, k in edges:
                m.score_one(s, d, k)
            rows["MIDAS-R score_one per edge"].append((time.process_time() - t) / len(edges) * 1e6)
    finally:
        if before is None:
            os.environ.pop(native.ENV, None)
        else:
            os.environ[native.ENV] = before
    for name, (py, nat) in rows.items():
        print(f"{name:<44} {py:>10.2f} {nat:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
