"""The one place detectors are registered.

``REGISTRY`` maps a detector name (as used in ``Config.detectors``) to its :class:`Entry`, a
factory ``entry(cfg, shard) -> Detector``. Rules ignore the shard; online models are built once per
shard with a seed derived from ``cfg.seed`` and the shard, so replay and the live stream train
identical models. Everything else that lists detectors is derived from here:
``config.DEFAULT_DETECTORS`` (every registered name, in order) and ``rules.RULES`` (the rules'
classes). Registering a detector here is all it takes for the contract suite
(``tests/test_detector_contract.py``) to cover it.

This module imports no detector (nor the configuration) when it is loaded: an entry names where
its class lives and imports it when first asked, so :mod:`detectors.config` can derive its
defaults from the registry.

>>> list(REGISTRY)[:3]
['impossible_travel', 'new_device', 'new_country']
>>> REGISTRY["new_country"].detector_class().__name__
'NewCountry'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from detectors.base import Detector
    from detectors.config import Config

__all__ = ["Entry", "REGISTRY", "build_detectors"]


class Entry:
    """One registered detector: its ``name``, where its class lives (``"module:Class"``) and its
    ``kind``: ``"rule"`` (built from the configuration) or ``"model"`` (built with a seed per
    shard)."""

    __slots__ = ("name", "where", "kind")

    def __init__(self, name: str, where: str, kind: str = "rule") -> None:
        if kind not in ("rule", "model"):
            raise ValueError(f"kind must be 'rule' or 'model', got {kind!r}")
        self.name, self.where, self.kind = name, where, kind

    def detector_class(self) -> type:
        """The detector's class (imported on first use)."""
        module, cls = self.where.split(":")
        return getattr(importlib.import_module(module), cls)

    def __call__(self, cfg: "Config", shard: int) -> "Detector":
        cls = self.detector_class()
        if self.kind == "model":
            return cls(seed=cfg.seed * 1009 + shard)
        return cls(cfg)

    def __repr__(self) -> str:
        return f"Entry({self.name!r}, {self.where!r}, {self.kind!r})"


REGISTRY: dict[str, Entry] = {e.name: e for e in (
    Entry("impossible_travel", "detectors.rules.location:ImpossibleTravel"),
    Entry("new_device", "detectors.rules.device:NewDevice"),
    Entry("new_country", "detectors.rules.location:NewCountry"),
    Entry("risky_network", "detectors.rules.network:RiskyNetwork"),
    Entry("session_hijack", "detectors.rules.network:SessionHijack"),
    Entry("failed_logins", "detectors.rules.credentials:FailedLogins"),
    Entry("credential_then_money", "detectors.rules.credentials:CredentialThenMoney"),
    Entry("out_of_character", "detectors.rules.money:OutOfCharacter"),
    Entry("drain", "detectors.rules.money:Drain"),
    Entry("cross_account", "detectors.rules.crowd:CrossAccount"),
    Entry("login_burst", "detectors.rules.crowd:LoginBurst"),
    Entry("behaviour_anomaly", "detectors.models.anomaly:BehaviourAnomaly", "model"),
    Entry("supervised", "detectors.models.supervised:VerdictModel", "model"),
)}


def build_detectors(cfg: "Config", shard: int) -> list["Detector"]:
    """The enabled detectors, in registry order."""
    return [REGISTRY[name](cfg, shard) for name in REGISTRY if name in cfg.detectors]
