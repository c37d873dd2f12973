"""Verdict model: an online logistic regression that learns what confirmed takeovers look like.

It learns only from verdicts: when an analyst or the account holder labels an alerted situation,
the engine passes the feature dict stored at alert time (``x.features()``) and the label to
:meth:`VerdictModel.learn_verdict`. The model is River's
``preprocessing.StandardScaler() | linear_model.LogisticRegression(optim.SGD(0.1))``; the
larger-than-default learning rates let it say something useful after a few dozen labels.

It stays silent (``None``) until it has seen ``min_labels`` labels with at least
``min_per_class`` of each class. Then, on the events where a takeover shows (money out, a
successful sign-in, a credential change), it predicts ``p = P(ato)`` and contributes
``Finding("supervised", 0.6 * p, ("LEARNED_RISK",), "model")`` when ``p > 0.5``: at most 0.6, a
supporting signal that cannot freeze an account on its own. ``learn(x, risk)`` does nothing.

Features are the numeric ones of :data:`detectors.features.FEATURE_NAMES`; anything else in a
stored dict (or a non-numeric value) is ignored, and a feature the model has never seen is left
out when scoring, so scoring never changes the model.

Examples
--------
>>> model = VerdictModel(seed=0, min_labels=20)
>>> ato = {"device_new": 1.0, "cred_recent": 1.0, "fails": 6.0, "drain": 0.95, "money_out": 1.0}
>>> legit = {"device_new": 0.0, "cred_recent": 0.0, "fails": 0.0, "drain": 0.1, "money_out": 1.0}
>>> for i in range(12):
...     model.learn_verdict(ato, True)
...     model.learn_verdict(legit, False)
>>> model.n_labels, model.ready
(24, True)
>>> round(model.predict_proba(ato), 2), round(model.predict_proba(legit), 2)
(0.9, 0.11)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from river import linear_model, optim, preprocessing

from detectors import contract as c
from detectors.base import Finding
from detectors.context import FEATURE_NAMES
from detectors.models import _snapshot

if TYPE_CHECKING:  # pragma: no cover
    from detectors.context import Context
    from detectors.examples import Example

__all__ = ["VerdictModel", "MAX_SCORE"]

#: The contribution at P(ato) = 1.
MAX_SCORE = 0.6
#: Device kinds worth scoring besides ``login_success``.
_SCORED_DEVICE_KINDS = frozenset({"login_success"}) | c.CREDENTIAL_KINDS
_KNOWN = frozenset(FEATURE_NAMES)
_STATE_VERSION = 1


def _clean(features: dict) -> dict[str, float]:
    """The numeric, finite, known features of a stored dict."""
    out = {}
    for k, v in features.items():
        if k in _KNOWN and type(v) in (int, float, bool):
            v = float(v)
            if math.isfinite(v):
                out[k] = v
    return out


class VerdictModel:
    """Online logistic regression on analysts' and account holders' verdicts.

    Parameters
    ----------
    seed
        Kept for the registry's uniform construction; the model itself is deterministic
        (zero-initialised weights, plain SGD), so equal label sequences give equal models.
    min_labels
        Labels to see before scoring.
    min_per_class
        Labels of each class (ato and legit) to see before scoring.

    Examples
    --------
    >>> VerdictModel(min_labels=0)
    Traceback (most recent call last):
    ...
    ValueError: min_labels must be an integer >= 1, got 0
    """

    name = "supervised"
    family = "model"
    topics = frozenset({"device", "transaction"})  # logins, credential changes, money movements

    def __init__(self, seed: int = 0, min_labels: int = 20, min_per_class: int = 3) -> None:
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not isinstance(min_labels, int) or min_labels < 1:
            raise ValueError(f"min_labels must be an integer >= 1, got {min_labels!r}")
        if not isinstance(min_per_class, int) or min_per_class < 1:
            raise ValueError(f"min_per_class must be an integer >= 1, got {min_per_class!r}")
        if 2 * min_per_class > min_labels:
            raise ValueError(f"min_labels ({min_labels}) must be at least 2 * min_per_class ({min_per_class})")
        self.seed = seed
        self.min_labels = min_labels
        self.min_per_class = min_per_class
        self._model = None  # built on the first verdict
        self._n = [0, 0]  # legit, ato
        self._norm: dict[str, tuple[float, float]] = {}  # feature -> (mean, std), see _refresh

    # -- inspection ----------------------------------------------------------------------------------
    @property
    def n_labels(self) -> int:
        return self._n[0] + self._n[1]

    @property
    def ready(self) -> bool:
        """Whether enough labels have been seen to score."""
        return self.n_labels >= self.min_labels and min(self._n) >= self.min_per_class

    def predict_proba(self, features: dict) -> float:
        """P(ato) for a feature dict (0.5 before the first verdict).

        Equal to ``pipeline.predict_proba_one`` on the features the model knows, with the
        scaler's arithmetic done here from the cached means and deviations (the scaler only
        changes on a verdict): faster, and it never inserts a feature into the scaler.
        """
        return self._proba(_clean(features))

    def _proba(self, f: dict[str, float]) -> float:
        if self._model is None:
            return 0.5
        norm = self._norm
        x = {}
        for k, v in f.items():
            ms = norm.get(k)
            if ms is not None:
                x[k] = (v - ms[0]) / ms[1] if ms[1] else 0.0
        return self._model["LogisticRegression"].predict_proba_one(x)[True]

    def _refresh(self) -> None:
        """Cache the scaler's means and deviations, as its ``transform_one`` computes them."""
        scaler = self._model["StandardScaler"] if self._model is not None else None
        self._norm = {} if scaler is None else {
            k: (scaler.means[k], scaler.vars[k] ** 0.5 if scaler.vars[k] else 0.0) for k in scaler.counts}

    # -- the detector protocol -----------------------------------------------------------------
    def score(self, x: "Context") -> Finding | None:
        """``0.6 * P(ato)`` when the model is ready, the event matters and ``P(ato) > 0.5``."""
        if not self.ready:
            return None
        if not (x.money_out or x.kind in _SCORED_DEVICE_KINDS):
            return None
        p = self._proba(x.features())  # already clean: floats of FEATURE_NAMES
        if not p > 0.5:
            return None
        return Finding(self.name, MAX_SCORE * p, ("LEARNED_RISK",), self.family)

    def learn(self, x: "Context", risk: float) -> None:
        """Events carry no label: nothing to learn."""
        return None

    def learn_verdict(self, features: dict[str, float], is_ato: bool) -> None:
        """Learn one labelled situation (the features stored when it was alerted)."""
        x = _clean(features)
        if not x:
            return
        if self._model is None:
            self._model = preprocessing.StandardScaler() | linear_model.LogisticRegression(
                optimizer=optim.SGD(0.1), intercept_lr=0.1, l2=1e-4)
        y = bool(is_ato)
        self._model.learn_one(x, y)
        self._n[y] += 1
        self._refresh()

    @classmethod
    def example(cls) -> "Example":
        """A dozen verdicts of each kind (takeovers: a new device and network after failures,
        money soon after a credential change; the holder: a new phone, nothing else), a settled
        account, then a sign-in from a new device and address after six failures: it must score,
        and the holder's usual sign-in must not score as high (the contract suite checks both)."""
        from detectors.events import DeviceEvent
        from detectors.examples import ACCOUNT, HOME_DEVICE, HOME_IP, Example, at, settled

        ato = {"device_new": 1.0, "device_young": 1.0, "ip_new": 1.0, "asn_new": 1.0, "fails": 6.0,
               "cred_recent": 1.0, "money_out": 1.0, "drain": 0.9}
        legit = {"device_new": 1.0, "device_young": 1.0, "ip_new": 0.0, "asn_new": 0.0, "fails": 0.0,
                 "cred_recent": 0.0, "money_out": 1.0, "drain": 0.1}
        verdicts = tuple(v for _ in range(12) for v in ((ato, True), (legit, False)))
        t, dev, ip = at(7), "x", "203.0.113.66"
        fails = [DeviceEvent(f"f{k}", ACCOUNT, t - 60_000 + k, "login_failure", device_id=dev, ip=ip) for k in range(6)]
        odd = DeviceEvent("odd", ACCOUNT, t, "login_success", device_id=dev, ip=ip)
        usual = DeviceEvent("usual", ACCOUNT, t, "login_success", device_id=HOME_DEVICE, ip=HOME_IP)
        return Example(tuple(settled() + fails), odd, verdicts=verdicts, ordinary=usual)

    # -- state -------------------------------------------------------------------------------------
    def _params(self) -> dict:
        return {"seed": self.seed, "min_labels": self.min_labels, "min_per_class": self.min_per_class}

    def state(self) -> bytes:
        """The pipeline (pickled: snapshots are HMAC-signed by the stream worker) and counts."""
        return _snapshot.dumps({"version": _STATE_VERSION, "params": self._params(),
                                "model": self._model, "n": list(self._n)})

    def load_state(self, data: bytes) -> None:
        """Restore :meth:`state`; empty bytes reset the model to cold."""
        if not data:
            self._model, self._n = None, [0, 0]
            self._refresh()
            return
        obj = _snapshot.load_versioned(data, _STATE_VERSION, self._params(), "supervised model")
        self._model, self._n = obj["model"], [int(v) for v in obj["n"]]
        self._refresh()

    def __repr__(self) -> str:
        return f"VerdictModel(seed={self.seed}, min_labels={self.min_labels}, min_per_class={self.min_per_class})"
