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

Speed and exactness
-------------------
:meth:`MidasR.score_one` costs some tens of microseconds an edge (numpy on six cells).
:meth:`MidasR.score_many` works on blocks of edges: one stable (radix) sort of the cells gives
every edge its total count (prior total + occurrence rank of the cell) and its within-tick count
(occurrence rank within the tick); only the decayed base needs a loop over the ticks of the block,
which gathers and updates the few cells hit in each tick and multiplies the sketch once, the very
floating-point operations :meth:`MidasR.score_one` performs. Scores are therefore equal bit for
bit (``numpy.array_equal``), whatever the block size, and both paths end in the same state. Both
call numpy's ``log1p`` (``math.log1p`` can differ from it in the last bit). On the DARPA stream
(4.55M edges, 46,572 ticks) it scores about 2.5 CPU-seconds on one core
(``python -m bench.darpa_midas``).

Examples
--------
A steady edge once a tick, then a burst of the same edge at tick 5:

>>> m = MidasR(seed=42)
>>> [round(m.score_one(1, 2, t), 3) for t in (1, 2, 3, 4)]
[0.0, 0.405, 0.612, 0.704]
>>> [round(m.score_one(1, 2, 5), 3) for _ in range(4)]
[0.741, 1.422, 1.909, 2.272]

At tick 2, for instance, ``a = 0.5 + 1`` and ``s = 2``: ``X2 = ((1.5 - 1) * 2)**2 / 2 = 0.5``
and the score is ``log(1.5) = 0.405``.

The vectorised path gives the same numbers:

>>> import numpy as np
>>> m2 = MidasR(seed=42)
>>> s = m2.score_many(np.array([1, 1, 1, 1, 1, 1, 1, 1]), np.array([2, 2, 2, 2, 2, 2, 2, 2]),
...                   np.array([1, 2, 3, 4, 5, 5, 5, 5]))
>>> [round(float(v), 3) for v in s]
[0.0, 0.405, 0.612, 0.704, 0.741, 1.422, 1.909, 2.272]
"""

from __future__ import annotations

import math
import operator
import struct

import numpy as np

from detectors import native
from detectors.burst.sketch import (
    EDGE_MULTIPLIER,
    edge_buckets,
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
    a_min, s_min = a[:, :, 0].copy(), s[:, :, 0].copy()
    for r in range(1, a.shape[2]):
        np.minimum(a_min, a[:, :, r], out=a_min)
        np.minimum(s_min, s[:, :, r], out=s_min)
    s_min = s_min.astype(np.float64)
    t = t[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (a_min - s_min / t) * t
        x2 = d * d / (s_min * (t - 1.0))
    x2[(s_min == 0.0) | (t == 1.0)] = 0.0
    top = np.maximum(np.maximum(x2[:, 0], x2[:, 1]), x2[:, 2])
    return np.log1p(top)


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
    >>> round(m.score_one(1, 2, 3), 4)
    0.941
    >>> m.tick
    3
    >>> m.score_one(1, 2, 2)
    Traceback (most recent call last):
    ...
    ValueError: ticks must not go backwards: got 2 after 3
    >>> MidasR(factor=1.5)
    Traceback (most recent call last):
    ...
    ValueError: factor must be in [0, 1], got 1.5
    >>> m2 = MidasR.from_bytes(m.to_bytes())
    >>> m2.score_one(1, 2, 4) == m.score_one(1, 2, 4)
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
        self._plist: list | None = None  # hash parameters as Python ints, for score_one
        # The edge-at-a-time state (see _Cells), or None while the arrays hold the state.
        self._one: _Cells | None = None
        self._node_cells: tuple[dict, dict] = ({}, {})  # node -> its source / destination cells

    # -- public API ---------------------------------------------------------------------------

    @property
    def tick(self) -> int | None:
        """The tick of the last edge seen, or ``None`` before the first."""
        return self._tick

    def score_one(self, src: int, dst: int, tick: int) -> float:
        """Learn one edge and return its score (0.0 at the first tick).

        A scalar path (Python ints and floats) that performs the same floating-point operations,
        in the same order, as :func:`_score` does for a block, so the result is bit-identical to
        :meth:`score_many`. Its state is kept in Python lists with the decay applied lazily,
        cell by cell (:class:`_Cells`): a change of tick costs nothing, where decaying the
        arrays would touch every cell.
        """
        src, dst, tick = operator.index(src), operator.index(dst), operator.index(tick)
        self._check_first_tick(tick)
        one = self._one
        if one is None:
            self._ensure_state()
            module = native.module()
            one = self._one = (_Cells(self._base, self._hits, self._total, float(self.factor)) if module is None
                               else _NativeCells(module, self))
        if one.core is not None:  # the same steps in Rust (detectors.native)
            new_tick = self._tick is not None and tick != self._tick
            self._tick = tick
            return one.core.score_one(src & 0xFFFFFFFF, dst & 0xFFFFFFFF, tick, new_tick)
        if self._tick is not None and tick != self._tick:
            one.epoch += 1  # the decay of every cell, owed until the cell is next touched
        self._tick = tick
        base, hits, total, when, epoch = one.base, one.hits, one.total, one.when, one.epoch
        shift, exact = one.shift, one.exact
        t = float(tick)
        top = 0.0
        for k, cells in enumerate(self._cells_list(src, dst)):
            a_min = s_min = None
            for c in cells:
                if when[c] != epoch:  # the tick changed since the cell was last touched
                    v, n = base[c] + hits[c], epoch - when[c]
                    # (the common case inline: from >= 1, n halvings stay normal, hence exact)
                    base[c] = _ldexp(v, -shift * n) if v >= 1.0 and n <= exact else one.decay(v, n)
                    hits[c] = 0
                    when[c] = epoch
                h = hits[c] = hits[c] + 1
                s_ = total[c] = total[c] + 1
                a = base[c] + h
                if a_min is None or a < a_min:
                    a_min = a
                if s_min is None or s_ < s_min:
                    s_min = s_
            s_f = float(s_min)
            if s_f == 0.0 or t == 1.0:
                x2 = 0.0
            else:
                d = (a_min - s_f / t) * t
                x2 = d * d / (s_f * (t - 1.0))
            if k == 0 or x2 > top:
                top = x2
        return float(_log1p(top))

    def _cells_list(self, src: int, dst: int) -> tuple[list[int], list[int], list[int]]:
        """Flat cell indices per kind (edge, source, destination), as Python ints; a node's
        cells are remembered (up to :data:`_NODE_CACHE` nodes per side)."""
        b = self.buckets
        plist = self._plist
        if plist is None:
            plist = self._plist = [[(int(p1), int(p2)) for p1, p2 in kind] for kind in self._params]
        rows = self.rows
        # edge_buckets_one, inline: 32-bit wrap-around of the key and of each row's product
        key = ((src & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
        key += EDGE_MULTIPLIER * (((dst & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000)
        key = ((key & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
        edge = [r * b + ((((key * p1 + p2) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000) % b
                for r, (p1, p2) in enumerate(plist[0])]
        by_src, by_dst = self._node_cells
        source = by_src.get(src)
        if source is None:
            if len(by_src) >= _NODE_CACHE:
                by_src.clear()
            source = by_src[src] = [x + (rows + r) * b for r, x in enumerate(node_buckets_one(src, plist[1], b))]
        dest = by_dst.get(dst)
        if dest is None:
            if len(by_dst) >= _NODE_CACHE:
                by_dst.clear()
            dest = by_dst[dst] = [x + (2 * rows + r) * b for r, x in enumerate(node_buckets_one(dst, plist[2], b))]
        return edge, source, dest

    def score_many(self, src: np.ndarray, dst: np.ndarray, tick: np.ndarray,
                   chunk: int = 1 << 14) -> np.ndarray:
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
        self._sync_arrays()
        self._one = None  # the arrays hold the state while blocks are scored
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            out[lo:hi] = self._score_block(src[lo:hi], dst[lo:hi], tick[lo:hi])
        return out

    def to_bytes(self) -> bytes:
        """The parameters and state: a fixed header and raw little-endian arrays (no pickle)."""
        has_state = self._base is not None
        self._sync_arrays()
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

    def _sync_arrays(self) -> None:
        """Write the edge-at-a-time state (if any) into the arrays, every decay owed applied."""
        if self._one is not None:
            self._one.store(self._base, self._hits, self._total)

    def _advance(self) -> None:
        """The tick changed: fold this tick's hits into the base and decay it."""
        self._base += self._hits
        self._base *= float(self.factor)
        self._hits.fill(0)

    def _cells(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Flat cell index of every (edge, kind, row): ``int64`` array ``(n, 3 * rows)``."""
        b, p = self.buckets, self._params
        cells = np.concatenate([edge_buckets(src, dst, p[0], b), node_buckets(src, p[1], b),
                                node_buckets(dst, p[2], b)], axis=1)
        cells += np.arange(0, cells.shape[1] * b, b)
        return cells

    def _score_block(self, src: np.ndarray, dst: np.ndarray, tick: np.ndarray) -> np.ndarray:
        """Score a block of edges (validated, ticks non-decreasing, state built).

        The counts an edge sees come, for the whole block at once, from one stable sort of its
        cells (within a cell the elements keep stream order, so tick order): the total count is
        the prior total plus the occurrence rank of the cell so far, the current count is the
        base at the start of the tick plus the occurrence rank of the cell within the tick
        (a "run"). Only the base needs a pass over the ticks, because it decays; that pass reads
        and updates just the cells hit in each tick and multiplies the whole sketch once.
        """
        n, k = src.shape[0], _KINDS * self.rows
        cells = self._cells(src, dst).ravel()  # element e = edge e // k, column e % k
        nelem = cells.shape[0]

        new_tick = np.empty(n, dtype=bool)
        new_tick[0] = True
        np.not_equal(tick[1:], tick[:-1], out=new_tick[1:])
        group = np.cumsum(new_tick, dtype=np.int64) - 1  # tick group of each edge
        ngroup = int(group[-1]) + 1

        # One stable sort by cell (a radix sort when the cell ids fit in 16 bits).
        key = cells.astype(np.int16 if self._base.shape[0] < 2**15 else np.int32)
        order = np.argsort(key, kind="stable")
        del key
        cell_s = cells[order]
        group_s = np.repeat(group, k)[order]
        cell_break = np.empty(nelem, dtype=bool)
        cell_break[0] = True
        np.not_equal(cell_s[1:], cell_s[:-1], out=cell_break[1:])
        run_break = cell_break.copy()  # a run: the elements of one cell within one tick
        run_break[1:] |= group_s[1:] != group_s[:-1]
        pos = np.arange(nelem, dtype=np.int64)
        rank_total = pos - np.maximum.accumulate(np.where(cell_break, pos, 0)) + 1
        rank_tick = pos - np.maximum.accumulate(np.where(run_break, pos, 0)) + 1
        del cell_break, pos

        # The runs, in cell order, and a permutation putting them in tick order (any order of
        # the runs within a tick will do: they are distinct cells).
        run_pos = np.flatnonzero(run_break)
        run_of = np.cumsum(run_break, dtype=np.int64) - 1  # run of each sorted element
        del run_break
        nrun = run_pos.shape[0]
        run_cell = cell_s[run_pos]
        run_group = group_s[run_pos]
        run_count = np.diff(run_pos, append=nelem)
        del run_pos
        by_tick = np.argsort(run_group.astype(np.uint16 if ngroup < 2**16 else np.int64),
                             kind="stable")
        bounds = np.zeros(ngroup + 1, dtype=np.int64)
        np.cumsum(np.bincount(run_group, minlength=ngroup), out=bounds[1:])
        cell_t = run_cell[by_tick]
        count_t = run_count[by_tick]

        base, hits, factor = self._base, self._hits, float(self.factor)
        same_tick = self._tick is not None and int(tick[0]) == self._tick
        if same_tick:  # the block continues a tick: count the hits it already had
            first = group_s == 0
            rank_tick[first] += hits[cell_s[first]]
            del first
        elif self._tick is not None:
            self._advance()

        count_tf = count_t.astype(np.float64)
        base_t = np.empty(nrun, dtype=np.float64)
        take = base.take
        for g in range(ngroup - 1):
            lo, hi = bounds[g], bounds[g + 1]
            rc = cell_t[lo:hi]
            take(rc, out=base_t[lo:hi])
            if g == 0 and same_tick:
                hits[rc] += count_t[lo:hi]
                self._advance()
            else:  # the floats of _advance: an untouched cell has base + 0 == base
                base[rc] += count_tf[lo:hi]
                base *= factor
        lo, hi = bounds[ngroup - 1], bounds[ngroup]
        rc = cell_t[lo:hi]
        take(rc, out=base_t[lo:hi])
        hits[rc] += count_t[lo:hi]
        self._tick = int(tick[-1])

        base_run = np.empty(nrun, dtype=np.float64)
        base_run[by_tick] = base_t
        a = np.empty(nelem, dtype=np.float64)
        a[order] = base_run[run_of] + rank_tick
        s = np.empty(nelem, dtype=np.int64)
        s[order] = self._total[cell_s] + rank_total
        self._total += np.bincount(cells, minlength=self._total.shape[0])
        shape = (n, _KINDS, self.rows)
        return _score(a.reshape(shape), s.reshape(shape), tick.astype(np.float64))


#: Nodes whose cells :meth:`MidasR._cells_list` remembers, per side, before forgetting them all.
_NODE_CACHE = 1 << 16
_log1p = np.log1p
_ldexp = math.ldexp


class _Cells:
    """The sketches of :meth:`MidasR.score_one` as Python lists, decayed lazily.

    ``base``, ``hits`` and ``total`` are the arrays' cells; ``epoch`` counts the changes of tick
    so far and ``when[c]`` the changes already applied to cell ``c``. A cell touched after ``k``
    changes it has not seen is brought up to date with the very operations the arrays would
    have had: ``base <- (base + hits) * factor``, then ``base <- base * factor`` ``k - 1`` times
    more (``base + 0 == base``), ``hits <- 0`` (:meth:`decay`).
    """

    __slots__ = ("base", "hits", "total", "when", "epoch", "factor", "shift", "exact")
    core = None  # (see _NativeCells)

    def __init__(self, base: np.ndarray, hits: np.ndarray, total: np.ndarray, factor: float) -> None:
        self.base, self.hits, self.total = base.tolist(), hits.tolist(), total.tolist()
        self.when = [0] * len(self.base)
        self.epoch = 0
        self.factor = factor
        mantissa, exponent = math.frexp(factor)
        # factor == 2 ** -shift: k multiplications are one exact ldexp while the result stays
        # normal (None: another factor, multiplied k times)
        self.shift = 1 - exponent if mantissa == 0.5 and exponent <= 1 else None
        # decays that keep a count >= 1 a normal float (exact); -1: none known to
        self.exact = -1 if self.shift is None else 1022 // self.shift if self.shift else 1 << 62

    def decay(self, v: float, k: int) -> float:
        """``v`` multiplied ``k`` times by ``factor``, each product rounded as floats are."""
        factor, shift = self.factor, self.shift
        if shift is None or v == 0.0 or factor == 0.0:
            for _ in range(k):
                v *= factor
                if v == 0.0:
                    break
            return v
        if shift == 0:
            return v
        exponent = math.frexp(v)[1]  # v = m * 2**exponent, 0.5 <= m < 1
        exact = max(0, (exponent + 1021) // shift)  # products that stay normal (exact)
        if k <= exact:
            return math.ldexp(v, -shift * k)
        v = math.ldexp(v, -shift * exact)
        for _ in range(k - exact):  # subnormal: each product rounds, until nothing is left
            v *= factor
            if v == 0.0:
                break
        return v

    def store(self, base: np.ndarray, hits: np.ndarray, total: np.ndarray) -> None:
        """Bring every cell up to date and copy the lists into the arrays."""
        b, h, when, epoch, decay = self.base, self.hits, self.when, self.epoch, self.decay
        for c in range(len(b)):
            if when[c] != epoch:
                b[c] = decay(b[c] + h[c], epoch - when[c])
                h[c] = 0
                when[c] = epoch
        base[:] = b
        hits[:] = h
        total[:] = self.total


class _NativeCells:
    """The state of :meth:`MidasR.score_one` in Rust (``atoguard_native.MidasCells``, see
    :mod:`detectors.native`): the steps of :class:`_Cells` and of ``score_one``, bit for bit."""

    __slots__ = ("core",)

    def __init__(self, module, model: MidasR) -> None:
        self.core = module.MidasCells(model._params.ravel().tolist(), model.rows, model.buckets,
                                      float(model.factor), model._base.tolist(), model._hits.tolist(),
                                      model._total.tolist())

    def store(self, base: np.ndarray, hits: np.ndarray, total: np.ndarray) -> None:
        """Bring every cell up to date and copy them into the arrays."""
        b, h, s = self.core.store()
        base[:] = b
        hits[:] = h
        total[:] = s


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _int_array(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)

