"""A streaming percentile calibrator: turns raw anomaly scores into calibrated values in [0, 1].

Raw Half-Space Trees scores live in [0, 1] but their scale depends on the data, the window and
the trees; a fixed threshold on them means nothing. The calibrated value of a raw score is its
percentile among the raw scores seen so far: the share of past scores *strictly below* it, at
the resolution of a fixed histogram (``bins`` equal bins over [0, 1]; scores in the same bin as
the one asked about do not count as below it, scores outside [0, 1] go to the end bins).

Counts sit in a Fenwick (binary indexed) tree, so an update and a query each cost O(log bins):
no sorting, no per-event allocation. When the total reaches ``max_count`` every count is halved
(exactly: counts are floats and halving a float is exact), so old scores fade with a half-life of
about ``max_count / 2`` observations and the calibration follows a drifting model.

The state is a short list of numbers (:meth:`to_state` / :meth:`from_state`), JSON-friendly.

Examples
--------
>>> cal = PercentileCalibrator(bins=10)
>>> for raw in (0.15, 0.25, 0.35, 0.45):
...     cal.update(raw)
>>> cal.percentile(0.41), cal.percentile(0.15), cal.percentile(0.05), cal.percentile(1.0)
(0.75, 0.0, 0.0, 1.0)
>>> PercentileCalibrator.from_state(cal.to_state()).percentile(0.41)
0.75
"""

from __future__ import annotations

__all__ = ["PercentileCalibrator"]


class PercentileCalibrator:
    """Percentile of a raw score in [0, 1] among past raw scores, from a fixed histogram.

    Parameters
    ----------
    bins
        Number of equal-width bins over [0, 1]; the resolution of the calibration.
    max_count
        When this many (weighted) scores have been counted, all counts are halved.

    Examples
    --------
    >>> cal = PercentileCalibrator(bins=200)
    >>> cal.percentile(0.7)  # nothing seen yet
    0.0
    >>> for i in range(1000):
    ...     cal.update(i / 1000)
    >>> cal.percentile(0.5), cal.percentile(0.999)
    (0.5, 0.995)
    """

    __slots__ = ("bins", "max_count", "n", "_tree")

    def __init__(self, bins: int = 200, max_count: float = 50_000.0) -> None:
        if not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        if not max_count >= 2:
            raise ValueError(f"max_count must be >= 2, got {max_count!r}")
        self.bins = bins
        self.max_count = float(max_count)
        self.n = 0.0
        self._tree = [0.0] * (bins + 1)  # Fenwick tree, 1-based

    def _bin(self, raw: float) -> int:
        """0-based bin of ``raw`` (clamped to the end bins; NaN goes to the first)."""
        b = int(raw * self.bins) if raw > 0.0 else 0
        return b if b < self.bins else self.bins - 1

    def update(self, raw: float) -> None:
        """Count one raw score."""
        tree, size = self._tree, self.bins
        i = self._bin(raw) + 1
        while i <= size:
            tree[i] += 1.0
            i += i & -i
        self.n += 1.0
        if self.n >= self.max_count:
            self._halve()

    def below(self, raw: float) -> float:
        """The (weighted) count of past scores in bins strictly below the bin of ``raw``."""
        tree = self._tree
        i = self._bin(raw)  # prefix over bins 1..i (1-based) = 0-based bins < bin(raw)
        total = 0.0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def percentile(self, raw: float) -> float:
        """Share of past scores strictly below ``raw`` (at bin resolution); 0.0 when empty."""
        if self.n <= 0.0:
            return 0.0
        p = self.below(raw) / self.n
        return 1.0 if p > 1.0 else p

    def counts(self) -> list[float]:
        """The histogram, bin by bin (O(bins log bins); for inspection and state)."""
        out = []
        for b in range(self.bins):
            # count of bin b = prefix(b+1) - prefix(b)
            hi, lo, i, j = 0.0, 0.0, b + 1, b
            while i > 0:
                hi += self._tree[i]
                i -= i & -i
            while j > 0:
                lo += self._tree[j]
                j -= j & -j
            out.append(hi - lo)
        return out

    def _halve(self) -> None:
        # Halving every Fenwick node halves every prefix sum: exact in binary floating point.
        self._tree = [v * 0.5 for v in self._tree]
        self.n *= 0.5

    # -- state ---------------------------------------------------------------------------------
    def to_state(self) -> list:
        """``[bins, max_count, n, fenwick...]``: plain numbers, JSON-serialisable."""
        return [self.bins, self.max_count, self.n, *self._tree[1:]]

    @classmethod
    def from_state(cls, state: list) -> "PercentileCalibrator":
        bins, max_count, n, *tree = state
        cal = cls(int(bins), max_count)
        if len(tree) != cal.bins:
            raise ValueError(f"calibrator state has {len(tree)} bins, expected {cal.bins}")
        cal.n = float(n)
        cal._tree = [0.0, *map(float, tree)]
        return cal

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PercentileCalibrator) and self.to_state() == other.to_state()

    def __repr__(self) -> str:
        return f"PercentileCalibrator(bins={self.bins}, max_count={self.max_count:g}, n={self.n:g})"
