"""MIDAS-R as a source of cross-account facts: login edges (IP -> account, device -> account)
scored for microcluster bursts, and the raw score calibrated to [0, 1]."""

from __future__ import annotations

import math
from functools import lru_cache

from detectors.burst.midas import MidasR
from detectors.burst.sketch import key_hash

__all__ = ["BurstScorer"]

MINUTE_MS = 60_000
#: the node id of a source or account: key_hash, remembered for the sources and accounts seen last
_node = lru_cache(maxsize=1 << 18)(key_hash)


class BurstScorer:
    """Scores login edges with MIDAS-R, one tick per minute of event time.

    ``score(src, dst, ts, weight)`` inserts the edge ``weight`` times (a failed login weighs
    double) and returns a burst value in [0, 1]. Login edges are sparse: an edge seen once in a
    tick already scores ``log(1 + t)`` in MIDAS-R (its chi-squared statistic is about ``t`` for
    a = s = 1), and ``k`` edges from one source in a tick score about ``log(k t)``. So the
    *excess* over a lone edge, ``s - log(1 + t)``, is about ``log k``: the burst value rises from
    0 at ``floor`` edges in a minute to 1 at ``floor * scale``. Event times that go backwards
    (late events) are scored in the current tick, since MIDAS-R needs non-decreasing ticks.
    """

    def __init__(self, seed: int = 0, floor: float = 4.0, scale: float = 10.0) -> None:
        self.seed = seed
        self.floor = floor
        self.scale = scale
        self._midas = MidasR(seed=seed)
        self._first_minute: int | None = None
        self._tick = 1

    def score(self, src: str, dst: str, ts: int, weight: int = 1) -> float:
        # MIDAS-R's tick is a count from the start of the stream (its chi-squared test uses the
        # tick value itself), so minutes are counted from the first edge seen, starting at 1.
        minute = ts // MINUTE_MS
        if self._first_minute is None:
            self._first_minute = minute
        tick = max(self._tick, minute - self._first_minute + 1)
        self._tick = tick
        s, d = _node(src), _node(dst)
        raw = 0.0
        for _ in range(weight):
            raw = self._midas.score_one(s, d, tick)
        excess = raw - math.log1p(tick)
        return min(1.0, max(0.0, (excess - math.log(self.floor)) / math.log(self.scale)))
