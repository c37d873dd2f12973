"""Explainable rules: each reads the event's :class:`~detectors.features.Context` and returns a
:class:`~detectors.base.Finding` with reason codes, or ``None``. Rules keep no state of their own;
the account profile is their memory. Scores are contributions to a noisy-OR fusion
(:mod:`detectors.policy`), calibrated so that one rule alone reaches at most a step-up and it takes
independent evidence (a takeover sign *and* money at risk) to freeze.
"""

from detectors.rules.credentials import CredentialThenMoney, FailedLogins
from detectors.rules.crowd import CrossAccount, LoginBurst
from detectors.rules.device import NewDevice
from detectors.rules.location import ImpossibleTravel, NewCountry
from detectors.rules.money import Drain, OutOfCharacter
from detectors.rules.network import RiskyNetwork, SessionHijack

from detectors.registry import REGISTRY as _REGISTRY

#: name -> class of every registered rule, in registry order (derived from the registry)
RULES = {name: entry.detector_class() for name, entry in _REGISTRY.items() if entry.kind == "rule"}

__all__ = [
    "CredentialThenMoney", "CrossAccount", "Drain", "FailedLogins", "ImpossibleTravel", "LoginBurst",
    "NewCountry", "NewDevice", "OutOfCharacter", "RULES", "RiskyNetwork", "SessionHijack",
]
