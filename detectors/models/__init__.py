"""Online-learning detectors: models that keep their own state and learn from the stream.

Contract
--------
* Each model implements the :class:`~detectors.base.Detector` protocol: ``score(x)`` judges an
  event's :class:`~detectors.features.Context` *before* the model learns from it and never
  changes the context, the profile or the model; ``learn(x, risk)`` follows the decision;
  ``learn_verdict(features, is_ato)`` takes an analyst's or account holder's verdict.
* ``__init__`` only stores and checks its parameters (``ValueError``); the River pipelines are
  built on the first observation. A cold model (too little data or too few labels) returns
  ``None``.
* Findings are supporting signals of family ``"model"`` and are capped well below the freeze
  threshold (0.4 for :class:`BehaviourAnomaly`, 0.6 for :class:`VerdictModel`): a model never
  freezes an account alone.
* Models only look at the events where they help (money out, sign-ins, credential changes) and
  return ``None`` at once for the others: the per-event budget is shared by the whole engine.
* ``state()`` returns bytes and ``load_state()`` restores them exactly (a restored model scores
  like the original). River models are object graphs, so the model part is pickled; that is
  acceptable only because the stream worker signs snapshots with HMAC and refuses unsigned ones,
  and the unpickler here also refuses anything but River classes and plain containers.
* Everything is deterministic given the ``seed`` and the sequence of events and verdicts.

* :mod:`detectors.models.anomaly` - :class:`BehaviourAnomaly`, Half-Space Trees per event group;
* :mod:`detectors.models.supervised` - :class:`VerdictModel`, logistic regression on verdicts;
* :mod:`detectors.models.calibration` - :class:`PercentileCalibrator`, raw score to percentile.
"""

from detectors.models.anomaly import BehaviourAnomaly
from detectors.models.calibration import PercentileCalibrator
from detectors.models.supervised import VerdictModel

__all__ = ["BehaviourAnomaly", "PercentileCalibrator", "VerdictModel"]
