"""What the engine's features allow: a supervised ceiling beside the policy (issue 18 item 4).

``atoguard eval --ceiling OTHER_EVENTS OTHER_LABELS`` trains a gradient-boosted classifier
(scikit-learn's ``HistGradientBoostingClassifier``) on another population's events, labelled by
its labels, and scores this population's events with it. Both sides see exactly what the policy
sees: the engine is run over each file (open loop, the default configuration or ``--config``)
and, for every event, the context the engine builds (:func:`detectors.context.build_context`)
gives the numeric features of :data:`detectors.profile.FEATURE_NAMES`, plus the event's kind.
An event is positive when it is an attacker's event of an ``ato`` incident (its ``event_ids``).

The ceiling's curve is drawn on the same axes as the policy's stopped-against-friction points:
for a threshold θ on the model's score, an attack (with a loss) is *flagged before loss* when an
event of its account with ``start_ts - 1 h <= ts <= first_loss_ts`` scores ``>= θ``; a
legitimate account is *challenged on an ordinary day* when an event of it outside every labelled
situation window ``[start_ts, end_ts + 24 h]`` scores ``>= θ`` (per 30 days, as the policy's
figure). The ceiling counts a flag as a stop (it knows nothing of methods): it is an upper bound
on what a policy using these features could stop at that friction.

Reading it: where the ceiling's curve lies far above the policy's point at the same friction,
the evidence is there and the policy wastes it; where the ceiling itself stays low, the
evidence is not in the features, and no tuning of the policy will find it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from detectors import contract as c
from detectors.profile import FEATURE_NAMES

from .metrics import DAY_MS, REPAY_WINDOW_MS, Incident

__all__ = ["KINDS", "COLUMNS", "Features", "ceiling_curve", "event_features", "labels_of", "train", "run"]

HOUR_MS = 3_600_000
#: every event kind of the three event topics, in a fixed order (the ``kind`` column's codes)
KINDS: tuple[str, ...] = tuple(sorted(c.DEVICE_KINDS | c.LOCATION_KINDS | c.TRANSACTION_KINDS))
#: the model's columns: the engine's numeric features, then the kind (categorical)
COLUMNS: tuple[str, ...] = (*FEATURE_NAMES, "kind")
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}


class Features:
    """Per event of a file: ``ids``, ``accounts``, ``ts`` and the matrix ``X`` (NaN = absent)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.accounts: list[str] = []
        self.ts: list[int] = []
        self.rows: list[list[float]] = []

    def add(self, event: Any, features: Mapping[str, float]) -> None:
        self.ids.append(event.event_id)
        self.accounts.append(event.account_id)
        self.ts.append(event.ts)
        row = [float(features[name]) if name in features else np.nan for name in FEATURE_NAMES]
        row.append(float(_KIND_CODE.get(event.kind, -1)))
        self.rows.append(row)

    @property
    def X(self) -> np.ndarray:
        return np.asarray(self.rows, dtype=float).reshape(len(self.rows), len(COLUMNS))


def event_features(events_path: str | os.PathLike[str], config=None) -> Features:
    """Run the engine over ``events_path`` (open loop, through ``atoguard replay``'s driver) and
    keep the features of the context it builds for each event. The first context of an event
    delivered twice wins (the engine drops the duplicate before building one)."""
    from detectors import engine as engine_mod
    from streams.replay import replay_file

    out = Features()
    seen: set[str] = set()
    original = engine_mod.build_context

    def recording(profile, event, cfg, *rest):
        x = original(profile, event, cfg, *rest)
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.add(event, x.features())
        return x

    engine_mod.build_context = recording
    try:
        with tempfile.TemporaryDirectory() as d:
            replay_file(events_path, os.path.join(d, "out.jsonl"), config=config)
    finally:
        engine_mod.build_context = original
    return out


def labels_of(f: Features, incidents: Iterable[Incident]) -> np.ndarray:
    """1 for an attacker's event (in an ``ato`` incident's ``event_ids``), else 0."""
    attacker = {e for inc in incidents if inc.is_attack for e in inc.event_ids}
    return np.fromiter((e in attacker for e in f.ids), dtype=np.int8, count=len(f.ids))


def train(X: np.ndarray, y: np.ndarray, seed: int = 0):
    """A ``HistGradientBoostingClassifier`` fitted on ``X, y`` (the kind column categorical,
    classes weighted so the rare attacker events count as much as the rest)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    pos = max(int(y.sum()), 1)
    neg = max(len(y) - pos, 1)
    weight = np.where(y == 1, 0.5 * len(y) / pos, 0.5 * len(y) / neg)
    categorical = np.zeros(X.shape[1], dtype=bool)
    categorical[COLUMNS.index("kind")] = True
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                           categorical_features=categorical, random_state=seed)
    X = X.copy()
    k = COLUMNS.index("kind")
    X[:, k] = np.where(X[:, k] < 0, np.nan, X[:, k])
    empty = np.isnan(X).all(axis=0)  # a feature never present in the training file: a constant
    X[:, empty] = 0.0
    model.fit(X, y, sample_weight=weight)
    return model


def _windows(incidents: Sequence[Incident]) -> tuple[list[Incident], dict[str, list[tuple[int, int]]], set[str]]:
    lossy = [inc for inc in incidents if inc.is_attack and inc.first_loss_ts is not None]
    situations: dict[str, list[tuple[int, int]]] = {}
    for inc in incidents:
        if not inc.is_attack:
            situations.setdefault(inc.account_id, []).append((inc.start_ts, inc.end_ts + REPAY_WINDOW_MS))
    attacked = {inc.account_id for inc in incidents if inc.is_attack}
    return lossy, situations, attacked


def ceiling_curve(f: Features, scores: np.ndarray, incidents: Sequence[Incident],
                  thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """Stopped-before-loss against challenged-on-ordinary-days, per threshold θ on ``scores``.

    Returns ``{"threshold": [...], "stopped_before_loss": [...], "challenged_on_ordinary_days_per_30d":
    [...], "challenged_on_ordinary_days_share": [...], "by_scenario": {name: [...]}, "attacks": n,
    "legit_accounts": n, "days": d}``.

    >>> class F: pass
    >>> f = F(); f.ids = ["a", "b", "h"]; f.accounts = ["A", "A", "L"]; f.ts = [0, 10, 5 * DAY_MS]
    >>> inc = Incident("A", "x", "ato", 0, 20, 10, ("a", "b"))
    >>> r = ceiling_curve(f, np.array([0.2, 0.9, 0.5]), [inc], [0.1, 0.6, 0.95])
    >>> r["stopped_before_loss"], r["challenged_on_ordinary_days_share"]
    ([1.0, 1.0, 0.0], [1.0, 0.0, 0.0])
    """
    lossy, situations, attacked = _windows(incidents)
    accounts = np.asarray(f.accounts)
    ts = np.asarray(f.ts, dtype=np.int64)
    scores = np.asarray(scores, dtype=float)
    by_account: dict[str, np.ndarray] = {}
    order = np.argsort(accounts, kind="stable")
    acc_sorted = accounts[order]
    uniq, starts = np.unique(acc_sorted, return_index=True)
    bounds = list(starts) + [len(order)]
    for i, a in enumerate(uniq.tolist()):
        by_account[a] = order[bounds[i]:bounds[i + 1]]
    days = float(ts.max() - ts.min()) / DAY_MS if len(ts) > 1 else 0.0
    # attacks: the best score before the loss
    best_attack, scenario = [], []
    for inc in lossy:
        idx = by_account.get(inc.account_id, np.empty(0, dtype=int))
        sel = idx[(ts[idx] >= inc.start_ts - HOUR_MS) & (ts[idx] <= inc.first_loss_ts)]
        best_attack.append(scores[sel].max() if len(sel) else -1.0)
        scenario.append(inc.scenario)
    best_attack_a = np.asarray(best_attack)
    # legitimate accounts: the best score on an ordinary day
    best_legit = []
    for a, idx in by_account.items():
        if a in attacked:
            continue
        w = situations.get(a, ())
        sel = idx
        for lo, hi in w:
            sel = sel[(ts[sel] < lo) | (ts[sel] > hi)]
        best_legit.append(scores[sel].max() if len(sel) else -1.0)
    best_legit_a = np.asarray(best_legit)
    if thresholds is None:  # every step of the curve: each attack's best score, and 200 quantiles of the rest
        qs = np.quantile(best_legit_a, np.linspace(0, 1, 201)) if len(best_legit_a) else np.empty(0)
        thresholds = sorted({0.0, 1.0 + 1e-9, *best_attack_a[best_attack_a >= 0].tolist(), *qs.tolist()})
    th = np.asarray(thresholds, dtype=float)

    def share(best: np.ndarray) -> list[float | None]:
        if len(best) == 0:
            return [None] * len(th)
        return [float((best >= t).mean()) for t in th]

    legit_share = share(best_legit_a)
    names = sorted(set(scenario))
    sc = np.asarray(scenario)
    return {
        "threshold": [float(t) for t in th],
        "stopped_before_loss": share(best_attack_a),
        "challenged_on_ordinary_days_share": legit_share,
        "challenged_on_ordinary_days_per_30d": [None if v is None or days <= 0 else v * 30 / days for v in legit_share],
        "by_scenario": {n: share(best_attack_a[sc == n]) for n in names},
        "attacks": len(lossy),
        "legit_accounts": len(best_legit),
        "days": days,
    }


def at_friction(curve: Mapping[str, Any], friction: float | None) -> dict[str, Any] | None:
    """The ceiling's point at the largest friction not above ``friction`` (the policy's): its θ,
    friction, stopped share and the stopped share per scenario; None without such a point."""
    if friction is None:
        return None
    best = None
    for i, x in enumerate(curve["challenged_on_ordinary_days_per_30d"]):
        if x is not None and x <= friction and (best is None or x > curve["challenged_on_ordinary_days_per_30d"][best]
                                                 or (x == curve["challenged_on_ordinary_days_per_30d"][best]
                                                     and curve["stopped_before_loss"][i] > curve["stopped_before_loss"][best])):
            best = i
    if best is None:
        return None
    return {"threshold": curve["threshold"][best],
            "challenged_on_ordinary_days_per_30d": curve["challenged_on_ordinary_days_per_30d"][best],
            "stopped_before_loss": curve["stopped_before_loss"][best],
            "by_scenario": {n: v[best] for n, v in curve["by_scenario"].items()}}


def run(train_events: str, train_labels: str, events: str, incidents: Sequence[Incident], config=None,
        progress: bool = False) -> dict[str, Any]:
    """Train on ``train_events``/``train_labels``, score ``events`` (whose incidents are given);
    the curve plus the training figures (events, positives, the model's ROC-AUC on its own
    training data and on this population)."""
    from sklearn.metrics import roc_auc_score

    from . import io

    train_incidents = list(io.iter_incidents(train_labels))
    ftrain = event_features(train_events, config)
    ytrain = labels_of(ftrain, train_incidents)
    model = train(ftrain.X, ytrain)
    ftest = event_features(events, config)
    ytest = labels_of(ftest, incidents)
    scores = model.predict_proba(ftest.X)[:, 1]
    curve = ceiling_curve(ftest, scores, incidents)

    def auc(y, p):
        return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None

    curve["training"] = {"events": len(ytrain), "attacker_events": int(ytrain.sum()),
                         "auc_train": auc(ytrain, model.predict_proba(ftrain.X)[:, 1])}
    curve["scored"] = {"events": len(ytest), "attacker_events": int(ytest.sum()), "auc": auc(ytest, scores)}
    curve["columns"] = list(COLUMNS)
    return curve
