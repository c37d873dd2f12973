"""Ranking metrics over per-item scores, in numpy (no scikit-learn).

Both treat a higher score as more anomalous and handle tied scores the way scikit-learn's
``roc_auc_score`` and ``average_precision_score`` do.

>>> y = [1, 0, 1, 0, 1]
>>> s = [0.9, 0.8, 0.7, 0.7, 0.1]
>>> roc_auc(y, s)  # 2.5 of the 6 (positive, negative) pairs are ordered right
0.4166666666666667
>>> round(average_precision(y, s), 12)  # 1/3 * 1 + 1/3 * 1/2 + 1/3 * 3/5
0.7
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "average_precision"]


def _check(y_true: object, y_score: object) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"y_true and y_score must be 1-d of one length, got {y.shape}, {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0/1 (or booleans)")
    if np.isnan(s).any():
        raise ValueError("y_score holds NaN")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("y_true needs both positives and negatives")
    return y, s


def roc_auc(y_true: object, y_score: object) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative,
    ties counting one half (Mann-Whitney U over tie-averaged ranks)."""
    y, s = _check(y_true, y_score)
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    n = s.shape[0]
    # Tie-averaged 1-based ranks: a group of equal scores at sorted positions [lo, hi) gets
    # rank (lo + 1 + hi) / 2.
    brk = np.empty(n, dtype=bool)
    brk[0] = True
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=brk[1:])
    starts = np.flatnonzero(brk)
    ends = np.append(starts[1:], n)
    group_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    n_pos = int(y.sum())
    n_neg = n - n_pos
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(y_true: object, y_score: object) -> float:
    """Average precision: sum over score thresholds of (gain in recall) x precision, one
    threshold per distinct score (scikit-learn's definition, no interpolation)."""
    y, s = _check(y_true, y_score)
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    n = s.shape[0]
    last = np.empty(n, dtype=bool)  # last item of each group of equal scores
    last[-1] = True
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=last[:-1])
    idx = np.flatnonzero(last)
    tp = np.cumsum(y_sorted, dtype=np.int64)[idx]
    fp = idx + 1 - tp
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    gain = np.diff(recall, prepend=0.0)
    return float(np.sum(gain * precision))
