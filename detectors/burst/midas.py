"""MIDAS-R: a streaming detector of bursts of edges (microclusters) in a graph of events.

Bhatia, Hooi, Yoon, Shin and Faloutsos, "MIDAS: Microcluster-Based Detector of Anomalies in Edge
Streams", AAAI 2020. The method is the paper's; the code is ours. The details the paper leaves
open were checked against the authors' reference implementation (Stream-AD/MIDAS:
``src/RelationalCore.hpp`` and ``src/CountMinSketch.hpp``; the paper-era ``anom.cpp``) and follow
it unless listed under *Deviations* below.

How it scores
-------------
Three kinds of key are counted: the edge ``(src, dst)``, the source node and the destination
node. For each there is a count-min sketch of ``rows`` rows by ``buckets`` buckets holding the
*current* count (every cell multiplied by ``factor`` whenever the tick changes) and one holding
the *total* count (never decayed). An edge arriving at tick ``t`` is first inserted (one added to
its cells in all six sketches), then scored. With ``a`` the current count and ``s`` the total
count (each the minimum over the rows), the chi-squared statistic of one key is::

    X2(a, s, t) = (a - s / t)**2 * t**2 / (s * (t - 1)),  or 0 when t == 1 or s == 0

and the score of the edge is ``log(1 + max(X2_edge, X2_source, X2_destination))``.

As in the reference:

* the decay happens once per *change* of tick, however many ticks were skipped;
* an edge is inserted before it is scored, so it counts towards its own score;
* the buckets of a row are ``((a + 104729 * b) * p1 + p2) mod buckets`` in 32-bit wrap-around
  arithmetic (see :mod:`detectors.burst.sketch`), one ``(p1, p2)`` per row and kind of key,
  shared by its current and total sketch;
* ``t`` in the statistic is the tick value itself, so ticks should count from 1 (the reference
  data preparation numbers the distinct timestamps 1, 2, 3, ...).

Deviations from the reference
-----------------------------
* Counts are ``float64`` (the newer reference uses ``float32``; the paper-era code ``double``).
* The current count of a cell is kept as ``base + hits``: ``base`` the decayed count at the start
  of the current tick and ``hits`` the integer count within it; on a tick change
  ``base <- (base + hits) * factor``. This is the reference's value exactly in real arithmetic
  and it differs from adding 1.0 edge by edge only in the last bits; it is what lets
  :meth:`MidasR.score_many` reproduce :meth:`MidasR.score_one` bit for bit.
* The score is ``log(1 + max(...))`` as in the paper-era ``midasR`` (the newer reference returns
  the bare maximum; the log does not change any ranking). The statistic is two-sided, as in the
  paper and the newer reference (the paper-era code scored only ``a > s / t``).
* Hash parameters come from ``numpy.random.default_rng(seed)``, not C ``rand()``, and node ids are
  folded to their low 32 bits (the reference's ids are C ``int``).
* Ticks that go backwards raise :class:`ValueError`, as do ticks below 1 (the reference silently
  stops decaying and divides by zero, respectively).

Examples
--------
A steady edge once a tick, then a burst of the same edge at tick 5:

>>> m = MidasR(seed=42)
>>> [round(m.score_one(1, 2, t), 3) for t in (1, 2, 3, 4)]
[0.0, 0.811, 0.811, 0.811]
>>> [round(m.score_one(1, 2, 5), 3) for _ in range(4)][-1]
2.626

The vectorised path gives the same numbers:

>>> import numpy as np
>>> m2 = MidasR(seed=42)
>>> s = m2.score_many(np.array([1, 1, 1, 1, 1, 1, 1, 1]), np.array([2, 2, 2, 2, 2, 2, 2, 2]),
...                   np.array([1, 2, 3, 4, 5, 5, 5, 5]))
>>> [round(float(v), 3) for v in s]
[0.0, 0.811, 0.811, 0.811, 0.811, 1.386, 1.952, 2.626]
"""

from __future__ import annotations

import operator
import struct

import numpy as np

from detectors.burst.sketch import (
    edge_buckets,
    edge_buckets_one,
    make_hash_params,
    node_buckets,
    node_buckets_one,
)

__all__ = ["MidasR"]

_MAGIC = b"ATGMIDR\x00"
_VERSION = 1
# magic, version, rows, buckets, factor, seed, tick (0: none yet), has_state
_HEADER = struct.Struct("<8sIIId q q ?")
_KINDS = 3  # edge, source, destination


def _score(a: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Scores from current counts ``a`` (float64) and totals ``s`` (int64), both of shape
    ``(n, 3, rows)``, at ticks ``t`` (float64, shape ``(n,)``).

    The single function both paths call, so their floating-point operations are the same.
    """
    a = a.min(axis=2)
    s = s.min(axis=2).astype(np.float64)
    t = t[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (a - s / t) * t
        x2 = d * d / (s * (t - 1.0))
    x2 = np.where((s == 0.0) | (t == 1.0), 0.0, x2)
    return np.log1p(x2.max(axis=1))


class MidasR:
    """MIDAS-R: score each edge ``(src, dst, tick)`` of a stream by how bursty it is.

    Each call both learns the edge and scores it (insert, then score, as the reference does).
    Node ids are integers; use :func:`detectors.burst.key_hash` for string ids.

    Parameters
    ----------
    rows
        Hash functions (rows) per count-min sketch.
    buckets
        Buckets per row.
    factor
        What the current counts are multiplied by when the tick changes, in ``[0, 1]``
        (0 forgets everything at each tick, as plain MIDAS does; 1 never forgets).
    seed
        Seed of the hash parameters; the same seed gives the same scores.

    Examples
    --------
    >>> m = MidasR()
    >>> m.score_one(1, 2, 1)
    0.0
    >>> m.tick
    1
    >>> m.score_one(1, 2, 0)
    Traceback (most recent call last):
    ...
    ValueError: ticks must not go backwards: got 0 after 1
    >>> MidasR(factor=1.5)
    Traceback (most recent call last):
    ...
    ValueError: factor must be in [0, 1], got 1.5
    >>> m2 = MidasR.from_bytes(m.to_bytes())
    >>> m2.score_one(1, 2, 2) == m.score_one(1, 2, 2)
    True
    """

    def __init__(self, rows: int = 2, buckets: int = 2719, factor: float = 0.5, seed: int = 0):
        if not _is_int(rows) or rows < 1:
            raise ValueError(f"rows must be an integer >= 1, got {rows!r}")
        if not _is_int(buckets) or not 1 <= buckets < 2**31:
            raise ValueError(f"buckets must be an integer in [1, 2**31), got {buckets!r}")
        if (isinstance(factor, bool) or not isinstance(factor, (int, float))
                or not 0.0 <= factor <= 1.0):
            raise ValueError(f"factor must be in [0, 1], got {factor!r}")
        if not _is_int(seed) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        self.rows = rows
        self.buckets = buckets
        self.factor = factor
        self.seed = seed
        # State, built on the first edge.
        self._params: np.ndarray | None = None  # (3, rows, 2) int64 hash parameters
        self._base: np.ndarray | None = None  # (3 * rows * buckets,) float64
        self._hits: np.ndarray | None = None  # (3 * rows * buckets,) int64
        self._total: np.ndarray | None = None  # (3 * rows * buckets,) int64
        self._tick: int | None = None

    # -- public API ---------------------------------------------------------------------------

    @property
    def tick(self) -> int | None:
        """The tick of the last edge seen, or ``None`` before the first."""
        return self._tick

    def score_one(self, src: int, dst: int, tick: int) -> float:
        """Learn one edge and return its score (0.0 at the first tick)."""
        src, dst, tick = operator.index(src), operator.index(dst), operator.index(tick)
        self._check_first_tick(tick)
        self._ensure_state()
        if self._tick is not None and tick != self._tick:
            self._advance()
        self._tick = tick
        cells = self._cells_one(src, dst)
        self._hits[cells] += 1
        self._total[cells] += 1
        a = self._base[cells] + self._hits[cells]
        s = self._total[cells]
        shape = (1, _KINDS, self.rows)
        t = np.array([tick], dtype=np.float64)
        return float(_score(a.reshape(shape), s.reshape(shape), t)[0])

    def score_many(self, src: np.ndarray, dst: np.ndarray, tick: np.ndarray,
                   chunk: int = 1 << 17) -> np.ndarray:
        """Learn and score many edges in order; the same floats as :meth:`score_one` per edge.

        Parameters
        ----------
        src, dst, tick
            1-d integer arrays of equal length; ``tick`` non-decreasing and not below the tick
            of the last edge already seen.
        chunk
            Edges processed per block (memory bound only; the result does not depend on it).

        Returns
        -------
        numpy.ndarray
            ``float64`` scores, one per edge.
        """
        src, dst, tick = (_int_array(x, name) for x, name in
                          ((src, "src"), (dst, "dst"), (tick, "tick")))
        n = src.shape[0]
        if dst.shape[0] != n or tick.shape[0] != n:
            raise ValueError(f"src, dst and tick differ in length: {n}, {dst.shape[0]}, "
                             f"{tick.shape[0]}")
        if not _is_int(chunk) or chunk < 1:
            raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        back = np.flatnonzero(tick[1:] < tick[:-1])
        if back.size:
            i = int(back[0]) + 1
            raise ValueError(f"ticks must not go backwards: got {int(tick[i])} after "
                             f"{int(tick[i - 1])} (edge {i})")
        self._check_first_tick(int(tick[0]))
        self._ensure_state()
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            out[lo:hi] = self._score_block(src[lo:hi], dst[lo:hi], tick[lo:hi])
        return out

    def to_bytes(self) -> bytes:
        """The parameters and state: a fixed header and raw little-endian arrays (no pickle)."""
        has_state = self._base is not None
        header = _HEADER.pack(_MAGIC, _VERSION, self.rows, self.buckets, float(self.factor),
                              self.seed, self._tick or 0, has_state)
        if not has_state:
            return header
        return b"".join([header, self._params.astype("<i8").tobytes(),
                         self._base.astype("<f8").tobytes(), self._hits.astype("<i8").tobytes(),
                         self._total.astype("<i8").tobytes()])

    @classmethod
    def from_bytes(cls, data: bytes) -> MidasR:
        """Rebuild a detector from :meth:`to_bytes`; raises ValueError on anything malformed."""
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise ValueError("not a MidasR state: too short")
        magic, version, rows, buckets, factor, seed, tick, has_state = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a MidasR state: bad magic")
        if version != _VERSION:
            raise ValueError(f"unsupported MidasR state version {version}")
        model = cls(rows=rows, buckets=buckets, factor=factor, seed=seed)
        if not has_state:
            if len(data) != _HEADER.size:
                raise ValueError("MidasR state: trailing bytes after a cold header")
            return model
        if tick < 1:
            raise ValueError(f"MidasR state: bad tick {tick}")
        ncell = _KINDS * rows * buckets
        nparam = _KINDS * rows * 2
        if len(data) != _HEADER.size + 8 * (nparam + 3 * ncell):
            raise ValueError("MidasR state: wrong length for its header")
        off = _HEADER.size

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal off
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=off)
            off += 8 * count
            return arr.astype(dtype[1:])  # native byte order, writable copy

        model._params = take("<i8", nparam).reshape(_KINDS, rows, 2)
        model._base = take("<f8", ncell)
        model._hits = take("<i8", ncell)
        model._total = take("<i8", ncell)
        model._tick = tick
        return model

    # -- internals -------------------------------------------------------------------------------

    def _check_first_tick(self, tick: int) -> None:
        if tick < 1:
            raise ValueError(f"ticks start at 1, got {tick}")
        if self._tick is not None and tick < self._tick:
            raise ValueError(f"ticks must not go backwards: got {tick} after {self._tick}")

    def _ensure_state(self) -> None:
        if self._base is None:
            ncell = _KINDS * self.rows * self.buckets
            self._params = make_hash_params(self.seed, self.rows)
            self._base = np.zeros(ncell, dtype=np.float64)
            self._hits = np.zeros(ncell, dtype=np.int64)
            self._total = np.zeros(ncell, dtype=np.int64)

    def _advance(self) -> None:
        """The tick changed: fold this tick's hits into the base and decay it."""
        self._base += self._hits
        self._base *= float(self.factor)
        self._hits.fill(0)

    def _cells_one(self, src: int, dst: int) -> np.ndarray:
        b, p = self.buckets, self._params
        buckets = (edge_buckets_one(src, dst, p[0], b) + node_buckets_one(src, p[1], b)
                   + node_buckets_one(dst, p[2], b))
        return np.array(buckets, dtype=np.int64) + np.arange(0, len(buckets) * b, b)

    def _cells(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Flat cell index of every (edge, kind, row): ``int64`` array ``(n, 3 * rows)``."""
        b, p = self.buckets, self._params
        cells = np.concatenate([edge_buckets(src, dst, p[0], b), node_buckets(src, p[1], b),
                                node_buckets(dst, p[2], b)], axis=1)
        cells += np.arange(0, cells.shape[1] * b, b)
        return cells

    def _score_block(self, src: np.ndarray, dst: np.ndarray, tick: np.ndarray) -> np.ndarray:
        """Score a block of edges (validated, ticks non-decreasing, state built).

        The counts an edge sees are computed for the whole block at once from one stable sort
        of its cells: the total count is the prior total plus the occurrence rank of the cell so
        far; the current count is the base at the start of the tick plus the occurrence rank of
        the cell within the tick. Only the base needs a pass over the ticks (it decays), and that
        pass touches just the cells hit in each tick plus one multiply of the whole sketch.
        """
        n, k = src.shape[0], _KINDS * self.rows
        cells = self._cells(src, dst).ravel()  # element e = edge e // k, column e % k
        nelem = cells.shape[0]

        new_tick = np.empty(n, dtype=bool)
        new_tick[0] = True
        np.not_equal(tick[1:], tick[:-1], out=new_tick[1:])
        tick_start = np.flatnonzero(new_tick)  # first edge of each tick group
        group = np.cumsum(new_tick) - 1  # tick group of each edge
        ngroup = tick_start.shape[0]

        # One stable sort by cell; within a cell the elements stay in stream (tick) order.
        key = cells.astype(np.int16 if self._base.shape[0] < 2**15 else np.int32)
        order = np.argsort(key, kind="stable")
        del key
        sorted_cells = cells[order]
        sorted_group = group[order // k]
        cell_break = np.empty(nelem, dtype=bool)
        cell_break[0] = True
        np.not_equal(sorted_cells[1:], sorted_cells[:-1], out=cell_break[1:])
        run_break = cell_break.copy()  # a run: one cell within one tick
        run_break[1:] |= sorted_group[1:] != sorted_group[:-1]
        del sorted_cells, sorted_group
        pos = np.arange(nelem)
        cell_start = np.maximum.accumulate(np.where(cell_break, pos, 0))
        run_start = np.maximum.accumulate(np.where(run_break, pos, 0))

        rank_total = np.empty(nelem, dtype=np.int64)  # occurrences of the cell in the block
        rank_total[order] = pos - cell_start + 1
        rank_tick = np.empty(nelem, dtype=np.int64)  # occurrences of the cell in the tick
        rank_tick[order] = pos - run_start + 1
        run_first = np.empty(nelem, dtype=np.int64)  # stream position of the run's first element
        run_first[order] = order[run_start]
        del cell_start, run_start

        starts_sorted = np.flatnonzero(run_break)
        first_pos = order[starts_sorted]
        run_len = np.diff(starts_sorted, append=nelem)
        del order, starts_sorted, pos, cell_break, run_break
        is_first = np.zeros(nelem, dtype=bool)
        is_first[first_pos] = True
        firsts = np.flatnonzero(is_first)  # run starts in stream order: grouped by tick
        del is_first
        len_at = np.zeros(nelem, dtype=np.int64)
        len_at[first_pos] = run_len
        run_count = len_at[firsts]
        del len_at, first_pos, run_len
        run_cell = cells[firsts]
        run_index = np.zeros(nelem, dtype=np.int64)
        run_index[firsts] = np.arange(firsts.shape[0])
        elem_run = run_index[run_first]
        del run_index, run_first
        bounds = np.append(np.searchsorted(firsts, tick_start * k), firsts.shape[0])

        base, hits, factor = self._base, self._hits, float(self.factor)
        same_tick = self._tick is not None and int(tick[0]) == self._tick
        if same_tick:  # the block continues a tick: add the hits it already had
            end0 = (int(tick_start[1]) if ngroup > 1 else n) * k
            rank_tick[:end0] += hits[cells[:end0]]
        elif self._tick is not None:
            self._advance()

        run_count_f = run_count.astype(np.float64)
        base_at_run = np.empty(firsts.shape[0], dtype=np.float64)
        for g in range(ngroup):
            lo, hi = bounds[g], bounds[g + 1]
            rc = run_cell[lo:hi]
            np.take(base, rc, out=base_at_run[lo:hi])
            if g == ngroup - 1:
                hits[rc] += run_count[lo:hi]
            elif g == 0 and same_tick:
                hits[rc] += run_count[lo:hi]
                self._advance()
            else:  # same floats as _advance: untouched cells have base + 0 == base
                base[rc] += run_count_f[lo:hi]
                base *= factor
        self._tick = int(tick[-1])

        a = base_at_run[elem_run] + rank_tick
        s = self._total[cells] + rank_total
        self._total += np.bincount(cells, minlength=self._total.shape[0])
        shape = (n, _KINDS, self.rows)
        return _score(a.reshape(shape), s.reshape(shape), tick.astype(np.float64))


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _int_array(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)

