"""Behaviour anomaly: Half-Space Trees over the event features, calibrated to percentiles.

How it works
------------
Each event group it watches gets its own River pipeline
``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(...)`` and its own
:class:`~detectors.models.calibration.PercentileCalibrator`:

* ``"money_out"``: money leaving the account (``x.money_out``);
* ``"login"``: successful sign-ins (``x.kind == "login_success"``).

Other events are not looked at (``None``, at no cost). Groups are kept apart because their
features and their base rates differ: mixed together, every payment would look rare next to the
far more common logins. Each group reads a fixed list of features from ``x.features()``, with a
neutral default when one is absent (:data:`FEATURES`), so the trees always see the same
dimensions and a missing field is tolerated. The scaler starts from each feature's natural range
(a flag is 0 or 1), so a flag that never varied in training still reaches the trees. Features
that are constant within a group (say ``country_new`` on a transaction) are left out: they would
only waste tree levels.

Scoring and learning
--------------------
An event is scored *before* the model learns from it. The raw Half-Space Trees score is turned
into its percentile among the raw scores of the group's past events (at the resolution of a
200-bin histogram). The calibrator counts the raw score of every event of the group that the
engine did not judge risky, *including* the ones this detector flags: leaving those out too
would make every flag lower the next threshold, and the share of events flagged would creep up
instead of staying near ``1 - flag_at``. Leaving out the risky ones keeps a caught attack from
diluting its own percentile; a burst nobody catches does dilute it (Half-Space Trees are weak on
bursts anyway: that is the burst detector's job).

The trees and scaler do **not** learn from an event that

* the detector flags (calibrated percentile >= ``flag_at``, once warm), or
* the engine judged risky (the fused ``risk`` passed to :meth:`BehaviourAnomaly.learn` is
  >= :data:`RISK_NO_LEARN`),

so an attack cannot teach the model that attacks are normal (the idea of River's
``anomaly.ThresholdFilter``). A group stays cold, and scores ``None``, until it has learned from
``min_learned`` events.

From percentile to risk
-----------------------
This is a supporting signal: it must never freeze an account alone. The contribution is 0
(no finding) below the 95th percentile and grows with the *rarity* of the event, linearly in
``log(1 - p)``, up to :data:`MAX_SCORE` at the 99.9th percentile and above::

    s(p) = 0.25 * clip(log(0.05 / (1 - p)) / log(50), 0, 1)     (p >= 0.95)

    p      0.95   0.97   0.99   0.995  0.999+
    s(p)   0.0    0.03   0.10   0.15   0.25

Cost
----
Per watched event, with the defaults (10 trees of height 6): one walk down each tree to where
River's scoring walk stops (see :class:`_Forest`); learning keeps the scaled vector and counts
the paths of a whole window at once with numpy when the masses pivot. Nothing for the other
events. Cost is linear in ``n_trees``.

Examples
--------
>>> import random
>>> from detectors.context import Context
>>> from detectors.facts import NO_FACTS
>>> def login(fails=0, device_new=False, hour_share=0.08):
...     x = Context()
...     x.kind, x.money_out, x.facts = "login_success", False, NO_FACTS
...     x.fails_recent, x.device_new, x.device_young, x.hour_share = fails, device_new, device_new, hour_share
...     return x
>>> rng = random.Random(7)
>>> model = BehaviourAnomaly(seed=42, min_learned=300)
>>> for _ in range(1000):
...     x = login(fails=rng.choice((0, 0, 0, 1)), hour_share=rng.uniform(0.04, 0.12))
...     _ = model.score(x)
...     model.learn(x, risk=0.0)
>>> model.score(login()) is None  # ordinary: below the 95th percentile
True
>>> model.score(login(fails=12, device_new=True, hour_share=0.0))
Finding(detector='behaviour_anomaly', score=0.25, reasons=('BEHAVIOUR_ANOMALY',), family='model')
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from river import anomaly, compose, preprocessing

from detectors import native
from detectors.base import Finding
from detectors.models import _snapshot
from detectors.models.calibration import PercentileCalibrator

if TYPE_CHECKING:  # pragma: no cover
    from detectors.context import Context
    from detectors.examples import Example

__all__ = ["BehaviourAnomaly", "FEATURES", "GROUPS", "MAX_SCORE", "RISK_NO_LEARN", "contribution"]

_BIN = (0.0, 0.0, 1.0)
#: The event groups, each with the features it reads: ``(name, default when absent, low, high)``.
#: ``low``/``high`` is the feature's natural range, used to warm-start the ``MinMaxScaler`` so a
#: flag never seen in training (a new device, say) is still visible to the trees; ``None`` means
#: the range is learned from the data alone. The scaler widens the range when data exceed it.
FEATURES: dict[str, tuple[tuple[str, float, float | None, float | None], ...]] = {
    "money_out": (
        ("device_new", *_BIN), ("device_young", *_BIN), ("ip_new", *_BIN), ("asn_new", *_BIN),
        ("risky_network", *_BIN), ("fails", 0.0, 0.0, 10.0), ("cred_recent", *_BIN),
        ("ip_accounts", 0.0, 0.0, 10.0), ("log_amount", 0.0, None, None),
        ("amount_z", 0.0, -3.0, 6.0), ("hour_share", 1 / 24, 0.0, 0.25), ("drain", *_BIN),
        ("credit", *_BIN),
    ),
    "login": (
        ("device_new", *_BIN), ("device_young", *_BIN), ("ip_new", *_BIN), ("asn_new", *_BIN),
        ("risky_network", *_BIN), ("fails", 0.0, 0.0, 10.0), ("cred_recent", *_BIN),
        ("ip_accounts", 0.0, 0.0, 10.0), ("burst", *_BIN), ("hour_share", 1 / 24, 0.0, 0.25),
    ),
}
GROUPS = tuple(FEATURES)
_DEFAULTS = {group: tuple((k, d) for k, d, _lo, _hi in spec) for group, spec in FEATURES.items()}

#: Events whose fused risk reaches this are never learned from (the policy's ``step_up_at``).
RISK_NO_LEARN = 0.65
#: The largest contribution of this detector, at the 99.9th percentile and above.
MAX_SCORE = 0.25
_FLOOR, _TOP = 0.95, 0.999
_LOG_SPAN = math.log((1 - _FLOOR) / (1 - _TOP))

#: Histogram bins of the calibrator.
CALIBRATION_BINS = 200

_STATE_VERSION = 1


def contribution(p: float) -> float:
    """The risk contribution of a calibrated percentile ``p`` (see the module docstring).

    >>> [round(contribution(p), 2) for p in (0.5, 0.95, 0.99, 0.999, 1.0)]
    [0.0, 0.0, 0.1, 0.25, 0.25]
    """
    if p <= _FLOOR:
        return 0.0
    if p >= _TOP:
        return MAX_SCORE
    return MAX_SCORE * math.log((1 - _FLOOR) / (1 - p)) / _LOG_SPAN


class _Group:
    """The model of one event group: the River pipeline, its calibrator and counters.

    Scoring and learning take a fast path that gives exactly (bit for bit) what
    ``pipeline.score_one`` / ``pipeline.learn_one`` give, checked by ``tests/test_models.py``:

    * vectors are lists in the order of :data:`FEATURES`; the scaler's ranges are mirrored in
      ``lo`` / ``span``, so the scaled vector is computed once per event, and the scaler is only
      asked to learn when a value falls outside its range (otherwise learning would not change it);
    * the trees are walked from flat lists (:class:`_Forest`), not from River's node objects.
    """

    __slots__ = ("pipeline", "scaler", "hst", "calibrator", "n_learned", "n_skipped", "names", "lo", "hi",
                 "span", "forest", "native")

    def __init__(self, group: str, pipeline: compose.Pipeline, calibrator: PercentileCalibrator,
                 n_learned: int = 0, n_skipped: int = 0) -> None:
        self.pipeline = pipeline
        self.scaler, self.hst = pipeline.steps.values()
        self.calibrator = calibrator
        self.n_learned = n_learned
        self.n_skipped = n_skipped
        self.names = tuple(k for k, *_ in FEATURES[group])
        self._ranges()
        self.native = native.module()  # the Rust kernels (detectors.native), or None: Python
        self.forest = self._forest() if self.hst.trees else None

    def _forest(self) -> "_Forest":
        if self.native is None:
            return _Forest(self.hst, self.names)
        return _NativeForest(self.hst, self.names, self.native)

    def _ranges(self) -> None:
        mins, maxs = self.scaler.min, self.scaler.max  # (defaultdicts: read without inserting)
        self.lo = [mins[k].get() if k in mins else math.inf for k in self.names]
        self.hi = [maxs[k].get() if k in maxs else -math.inf for k in self.names]
        self.span = [h - a for a, h in zip(self.lo, self.hi)]

    def scale(self, v: list[float]) -> list[float]:
        """``scaler.transform_one(v)`` (same arithmetic, as a list), without touching the scaler."""
        if self.native is not None:
            return self.native.scale(v, self.lo, self.span)
        return [(xi - a) / d if d else 0.0 for xi, a, d in zip(v, self.lo, self.span)]

    def score(self, s: list[float]) -> float | None:
        """The raw HST score of the scaled vector ``s``; None until the first window is complete."""
        forest = self.forest
        if forest is None or forest.first_window:
            return None
        return forest.score(s)

    def learn(self, v: list[float], s: list[float]) -> None:
        """``pipeline.learn_one(v)``, given ``s = scale(v)``."""
        for xi, a, b in zip(v, self.lo, self.hi):
            if not a <= xi <= b:  # the scaler learns something: rescale
                self.scaler.learn_one(dict(zip(self.names, v)))
                self._ranges()
                s = self.scale(v)
                break
        if self.forest is None:  # River builds its trees on the first observation
            self.hst.learn_one(dict(zip(self.names, s)))
            self.forest = self._forest()
        else:
            self.forest.learn(s)

    def synced(self):
        """The River pipeline, its trees' masses and counter brought up to date (for snapshots
        and tests: the fast path keeps them in :class:`_Forest`)."""
        if self.forest is not None:
            self.forest.sync()
        return self.pipeline


class _Forest:
    """River's Half-Space Trees as flat lists, for a fast walk.

    Each tree is complete (``2 ** (height + 1) - 1`` nodes), numbered breadth-first from its
    root, the trees one after the other. Between two pivots of the masses the reference masses
    ``r_mass`` do not change, so neither does the score of a walk that ends at a given node:
    :meth:`_prepare` works out, per node, whether River's scoring walk stops there (its
    ``r_mass`` is under the size limit, or it is a leaf) and the tree's score if it does (the
    sum of ``r_mass * 2 ** depth`` along the path: integers, exact as floats). Scoring is then a
    walk down to the first stopping node, adding one number per tree, in tree order as River does.

    Learning only adds one to ``l_mass`` along each tree's path, and ``l_mass`` is read at the
    pivot alone: the scaled vectors learnt are kept (``pending``) and their paths counted, all at
    once with numpy, at the pivot or when the masses are asked for (:meth:`sync`).
    """

    __slots__ = ("hst", "nodes", "feature", "threshold", "left", "right", "depth", "r_mass", "l_mass",
                 "stop_feature", "stop_score", "roots", "pending", "counter", "first_window", "max_score",
                 "limit", "window")

    def __init__(self, hst: anomaly.HalfSpaceTrees, names: tuple[str, ...]) -> None:
        self.hst = hst
        index = {name: i for i, name in enumerate(names)}
        nodes, depth = [], []
        for root in hst.trees:
            level = [root]
            for d in range(hst.height + 1):
                nodes += level
                depth += [d] * len(level)
                level = [child for node in level for child in getattr(node, "children", ())]
        per_tree = 2 ** (hst.height + 1) - 1
        assert len(nodes) == per_tree * len(hst.trees), "Half-Space Trees are complete binary trees"
        self.nodes, self.depth = nodes, depth
        self.roots = [t * per_tree for t in range(len(hst.trees))]
        self.feature = [index[n.feature] if d < hst.height else -1 for n, d in zip(nodes, depth)]
        self.threshold = [n.threshold if d < hst.height else 0.0 for n, d in zip(nodes, depth)]
        self.left, self.right = [], []
        for j, d in enumerate(depth):
            i = (j - j // per_tree * per_tree)
            base = j - i
            self.left.append(base + 2 * i + 1 if d < hst.height else -1)
            self.right.append(base + 2 * i + 2 if d < hst.height else -1)
        self.r_mass = [n.r_mass for n in nodes]
        self.l_mass = [n.l_mass for n in nodes]
        self.pending: list[list[float]] = []
        self.counter = hst.counter
        self.first_window = hst._first_window
        self.window = hst.window_size
        self.limit = 0.1 * hst.window_size
        self.max_score = hst.n_trees * hst.window_size * (2 ** (hst.height + 1) - 1)
        self._prepare()

    def _prepare(self) -> None:
        """Where River's scoring walk stops, and the tree's score there, for every node."""
        limit, r_mass, depth, feature = self.limit, self.r_mass, self.depth, self.feature
        stop_feature = self.stop_feature = list(feature)
        stop_score = self.stop_score = [0.0] * len(r_mass)
        prefix = [0] * len(r_mass)  # the sum along the path, the node's parent included
        for j, (r, d) in enumerate(zip(r_mass, depth)):
            here = prefix[j] + r * (1 << d)
            if feature[j] < 0 or r < limit:
                stop_feature[j] = -1
                stop_score[j] = 0.0 + here  # (River: a float sum of int terms)
            else:
                prefix[self.left[j]] = prefix[self.right[j]] = here

    def score(self, s: list[float]) -> float:
        """River's ``HalfSpaceTrees.score_one`` on the scaled vector ``s`` (a list)."""
        stop_feature, threshold, left, right, stop_score = (
            self.stop_feature, self.threshold, self.left, self.right, self.stop_score)
        total = 0.0
        for j in self.roots:
            k = stop_feature[j]
            while k >= 0:
                j = left[j] if s[k] < threshold[j] else right[j]
                k = stop_feature[j]
            total += stop_score[j]
        return 1 - total / self.max_score

    def learn(self, s: list[float]) -> None:
        """River's ``HalfSpaceTrees.learn_one`` on ``s``; the masses are counted at the pivot."""
        self.pending.append(s)
        self.counter += 1
        if self.counter == self.window:  # as HalfSpaceTrees.learn_one: pivot after a window
            self._count()
            self.r_mass, self.l_mass = self.l_mass, [0] * len(self.l_mass)
            self.first_window = False
            self.counter = 0
            self._prepare()

    def _count(self) -> None:
        """Add the paths of the pending vectors to ``l_mass`` (River's ``_walk_learn``: the
        left child when ``s[feature] < threshold``, else the right, down to a leaf)."""
        if not self.pending:
            return
        s = np.array(self.pending, dtype=np.float64)
        self.pending = []
        feature, threshold = np.array(self.feature), np.array(self.threshold)
        left, right = np.array(self.left), np.array(self.right)
        rows = np.arange(s.shape[0])[:, None]
        at = np.broadcast_to(np.array(self.roots), (s.shape[0], len(self.roots)))
        visited = [at]
        for _ in range(self.hst.height):
            go_left = s[rows, feature[at]] < threshold[at]
            at = np.where(go_left, left[at], right[at])
            visited.append(at)
        counts = np.bincount(np.concatenate([v.ravel() for v in visited]), minlength=len(self.l_mass))
        self.l_mass = [m + int(c) for m, c in zip(self.l_mass, counts.tolist())]

    def sync(self) -> None:
        """Write the masses and counters into River's trees."""
        self._count()
        for node, r, m in zip(self.nodes, self.r_mass, self.l_mass):
            node.r_mass, node.l_mass = r, m
        self.hst.counter = self.counter
        self.hst._first_window = self.first_window


class _NativeForest(_Forest):
    """:class:`_Forest` with its walks in Rust (``atoguard_native.HalfSpaceForest``, see
    :mod:`detectors.native`): the same floating-point operations in the same order, so the same
    scores to the bit; the masses are counted along each path as the vector is learnt (no
    ``pending``). The Python lists are brought up to date by :meth:`sync` only."""

    __slots__ = ("core",)

    def __init__(self, hst: anomaly.HalfSpaceTrees, names: tuple[str, ...], module) -> None:
        super().__init__(hst, names)
        self.core = module.HalfSpaceForest(
            self.feature, self.threshold, self.left, self.right, self.depth, self.roots, self.r_mass,
            self.l_mass, self.counter, self.first_window, self.window, self.limit, float(self.max_score),
            hst.height)

    def score(self, s: list[float]) -> float:
        return self.core.score(s)

    def learn(self, s: list[float]) -> None:
        if self.core.learn(s):  # the masses pivoted: the first window is complete
            self.first_window = False

    def sync(self) -> None:
        core = self.core
        self.r_mass, self.l_mass = core.masses()
        self.counter, self.first_window = core.counter, core.first_window
        self.pending = []
        super().sync()


class BehaviourAnomaly:
    """Streaming anomaly detector of money-out and login behaviour (Half-Space Trees).

    Parameters
    ----------
    seed
        Seed of the trees' random splits; the same seed and the same events give the same scores.
    n_trees
        Half-Space Trees per group.
    height
        Height of each tree (a tree has ``2 ** (height + 1) - 1`` nodes).
    window_size
        Observations per HST window: the reference mass is that of the previous window.
    flag_at
        Calibrated percentile at or above which an event is flagged, and not learned from.
    min_learned
        Events a group must have learned from before it scores (cold start: ``None``).
    events
        The groups to watch, among :data:`GROUPS`.

    Examples
    --------
    >>> BehaviourAnomaly(flag_at=1.5)
    Traceback (most recent call last):
    ...
    ValueError: flag_at must be within (0, 1), got 1.5
    >>> BehaviourAnomaly(events=("payments",))
    Traceback (most recent call last):
    ...
    ValueError: events: unknown group(s) ['payments']; known: money_out, login
    """

    name = "behaviour_anomaly"
    family = "model"
    topics = frozenset({"device", "transaction"})  # logins and money movements

    def __init__(self, seed: int = 0, n_trees: int = 10, height: int = 6, window_size: int = 250,
                 flag_at: float = 0.99, min_learned: int = 500,
                 events: tuple[str, ...] = ("money_out", "login")) -> None:
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        for pname, value, low in (("n_trees", n_trees, 1), ("height", height, 1),
                                  ("window_size", window_size, 2), ("min_learned", min_learned, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{pname} must be an integer >= {low}, got {value!r}")
        if not 0.0 < flag_at < 1.0:
            raise ValueError(f"flag_at must be within (0, 1), got {flag_at!r}")
        unknown = sorted(set(events) - set(GROUPS))
        if isinstance(events, str) or unknown or not events:
            raise ValueError(f"events: unknown group(s) {unknown or [events]}; known: {', '.join(GROUPS)}")
        self.seed = seed
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.flag_at = flag_at
        self.min_learned = min_learned
        self.events = tuple(events)
        self._groups: dict[str, _Group] = {}  # built lazily, on a group's first event
        self._money = "money_out" in self.events
        self._login = "login" in self.events
        # (context, assessment) of the last score(), reused by learn() on the same context
        self._cache: tuple[object, tuple] | None = None

    # -- helpers -----------------------------------------------------------------------------------
    def _group_of(self, x: "Context") -> str | None:
        if x.money_out:
            return "money_out" if self._money else None
        if x.kind == "login_success":
            return "login" if self._login else None
        return None

    @staticmethod
    def _vector(x: "Context", group: str) -> list[float]:
        """The group's features of ``x``, in the order of :data:`FEATURES` (absent: the default)."""
        get = x.features().get
        return [get(k, d) for k, d in _DEFAULTS[group]]

    @classmethod
    def _assess(cls, x: "Context", group: str, g: _Group) -> tuple:
        """``(vector, scaled vector, raw score or None)`` of ``x``."""
        v = cls._vector(x, group)
        s = g.scale(v)
        return v, s, g.score(s)

    def _new_group(self, group: str) -> _Group:
        hst = anomaly.HalfSpaceTrees(n_trees=self.n_trees, height=self.height,
                                     window_size=self.window_size,
                                     seed=self.seed * len(GROUPS) + GROUPS.index(group))
        scaler = preprocessing.MinMaxScaler()
        scaler.learn_one({k: lo for k, _d, lo, _hi in FEATURES[group] if lo is not None})
        scaler.learn_one({k: hi for k, _d, _lo, hi in FEATURES[group] if hi is not None})
        return _Group(group, scaler | hst, PercentileCalibrator(CALIBRATION_BINS))

    # -- the detector protocol -----------------------------------------------------------------
    def score(self, x: "Context") -> Finding | None:
        """Judge the event against the group's model; ``None`` when cold, unwatched or ordinary."""
        self._cache = None
        group = self._group_of(x)
        if group is None:
            return None
        g = self._groups.get(group)
        if g is None or g.n_learned < self.min_learned:
            return None
        a = self._assess(x, group, g)
        self._cache = (x, a)
        raw = a[2]
        if raw is None:  # pragma: no cover - min_learned < window_size
            return None
        s = contribution(g.calibrator.percentile(raw))
        if s <= 0.0:
            return None
        return Finding(self.name, s, ("BEHAVIOUR_ANOMALY",), self.family)

    def percentile(self, x: "Context") -> float | None:
        """The calibrated percentile of ``x`` in its group (``None`` if unwatched or untrained)."""
        group = self._group_of(x)
        g = self._groups.get(group) if group else None
        if g is None:
            return None
        raw = self._assess(x, group, g)[2]
        return None if raw is None else g.calibrator.percentile(raw)

    def learn(self, x: "Context", risk: float) -> None:
        """Count the event's raw score, then learn it unless flagged or ``risk`` is high."""
        cache, self._cache = self._cache, None
        group = self._group_of(x)
        if group is None:
            return
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = self._new_group(group)
        v, s, raw = cache[1] if cache is not None and cache[0] is x else self._assess(x, group, g)
        risky = risk >= RISK_NO_LEARN
        flagged = False
        if raw is not None:
            if g.n_learned >= self.min_learned:
                flagged = g.calibrator.percentile(raw) >= self.flag_at
            if not risky:
                g.calibrator.update(raw)
        if flagged or risky:
            g.n_skipped += 1
            return
        g.learn(v, s)
        g.n_learned += 1

    def learn_verdict(self, features: dict[str, float], is_ato: bool) -> None:
        """Unsupervised: verdicts are not used."""
        return None

    @classmethod
    def example(cls) -> "Example":
        """Seventy days of the holder's sign-ins (700, enough to warm the login group), then one at
        03:00 from a new device and address after six failures: it must score, and the holder's
        usual sign-in must not score as high (the contract suite checks both)."""
        from detectors.events import DeviceEvent
        from detectors.examples import ACCOUNT, HOME_DEVICE, HOME_IP, Example, at, busy

        t, dev, ip = at(70, 3), "x", "203.0.113.66"
        fails = [DeviceEvent(f"odd-f{k}", ACCOUNT, t - 60_000 + k, "login_failure", device_id=dev, ip=ip)
                 for k in range(6)]
        odd = DeviceEvent("odd", ACCOUNT, t, "login_success", device_id=dev, ip=ip)
        usual = DeviceEvent("usual", ACCOUNT, at(70, 15), "login_success", device_id=HOME_DEVICE, ip=HOME_IP)
        return Example(tuple(busy(700) + fails), odd, ordinary=usual)

    # -- inspection ----------------------------------------------------------------------------------
    def n_learned(self, group: str) -> int:
        """Events the group's model has learned from."""
        g = self._groups.get(group)
        return 0 if g is None else g.n_learned

    def n_skipped(self, group: str) -> int:
        """Events of the group not learned from (flagged, or high fused risk)."""
        g = self._groups.get(group)
        return 0 if g is None else g.n_skipped

    # -- state -------------------------------------------------------------------------------------
    def _params(self) -> dict:
        return {"seed": self.seed, "n_trees": self.n_trees, "height": self.height,
                "window_size": self.window_size, "flag_at": self.flag_at,
                "min_learned": self.min_learned, "events": list(self.events)}

    def state(self) -> bytes:
        """The pipelines (pickled: River models are object graphs; snapshots are HMAC-signed by
        the stream worker) with the calibrators and counters."""
        groups = {name: (g.synced(), g.calibrator.to_state(), g.n_learned, g.n_skipped)
                  for name, g in self._groups.items()}
        return _snapshot.dumps({"version": _STATE_VERSION, "params": self._params(), "groups": groups})

    def load_state(self, data: bytes) -> None:
        """Restore :meth:`state`; empty bytes reset the detector to cold."""
        self._cache = None
        if not data:
            self._groups = {}
            return
        obj = _snapshot.load_versioned(data, _STATE_VERSION, self._params(), "behaviour_anomaly")
        self._groups = {name: _Group(name, p, PercentileCalibrator.from_state(cal), n, k)
                        for name, (p, cal, n, k) in obj["groups"].items()}

    def __repr__(self) -> str:
        return (f"BehaviourAnomaly(seed={self.seed}, n_trees={self.n_trees}, height={self.height}, "
                f"window_size={self.window_size}, flag_at={self.flag_at}, "
                f"min_learned={self.min_learned}, events={self.events!r})")
