"""The one place detectors are registered.

``REGISTRY`` maps a detector name (as used in ``Config.detectors``) to a factory
``factory(cfg, shard) -> Detector``. Rules ignore the shard; online models are built once per
shard with a seed derived from ``cfg.seed`` and the shard, so replay and the live stream train
identical models. Registering a detector here is all it takes for the contract suite
(``tests/test_detector_contract.py``) to cover it.
"""

from __future__ import annotations

from typing import Callable

from detectors.base import Detector
from detectors.config import Config

__all__ = ["REGISTRY", "build_detectors"]


def _rules(name: str) -> Callable[[Config, int], Detector]:
    def factory(cfg: Config, shard: int) -> Detector:
        from detectors import rules
        return rules.RULES[name](cfg)
    return factory


def _anomaly(cfg: Config, shard: int) -> Detector:
    from detectors.models.anomaly import BehaviourAnomaly
    return BehaviourAnomaly(seed=cfg.seed * 1009 + shard)


def _supervised(cfg: Config, shard: int) -> Detector:
    from detectors.models.supervised import VerdictModel
    return VerdictModel(seed=cfg.seed * 1009 + shard)


REGISTRY: dict[str, Callable[[Config, int], Detector]] = {
    "impossible_travel": _rules("impossible_travel"),
    "new_device": _rules("new_device"),
    "new_country": _rules("new_country"),
    "risky_network": _rules("risky_network"),
    "session_hijack": _rules("session_hijack"),
    "failed_logins": _rules("failed_logins"),
    "credential_then_money": _rules("credential_then_money"),
    "out_of_character": _rules("out_of_character"),
    "drain": _rules("drain"),
    "cross_account": _rules("cross_account"),
    "login_burst": _rules("login_burst"),
    "behaviour_anomaly": _anomaly,
    "supervised": _supervised,
}


def build_detectors(cfg: Config, shard: int) -> list[Detector]:
    """The enabled detectors, in registry order."""
    return [REGISTRY[name](cfg, shard) for name in REGISTRY if name in cfg.detectors]
