"""The detector protocol: the one seam every detector implements.

A detector looks at an event in its account's context (:class:`~detectors.features.Context`)
and returns a :class:`Finding` (a score in [0, 1] with reason codes) or ``None``; it learns from
the event after the decision, and from verdicts. Rules have no state of their own (the account
profile is their memory); online models keep theirs and serialise it to bytes.

Contract, checked for every registered detector by ``tests/test_detector_contract.py``:

* ``score`` does not change the context or the profile, and is deterministic;
* cold start (an empty profile, an untrained model) gives ``None`` or a neutral score (< 0.5);
* missing optional fields are tolerated;
* ``state()`` / ``load_state()`` round-trip: a restored detector scores exactly like the original;
* the same seed gives the same output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from detectors.config import Config
    from detectors.context import Context

__all__ = ["Detector", "Finding", "Rule"]


@dataclass(frozen=True, slots=True)
class Finding:
    """What one detector says about one event."""

    detector: str
    score: float
    reasons: tuple[str, ...]
    family: str


@runtime_checkable
class Detector(Protocol):
    name: str
    family: str
    #: the topics whose events the detector scores and learns from; the engine calls it for
    #: no others (most rules look at one or two kinds of event)
    topics: frozenset[str]

    def score(self, x: "Context") -> Finding | None:
        """Judge the event; never mutate ``x``."""

    def learn(self, x: "Context", risk: float) -> None:
        """Learn from the event after the decision; ``risk`` is the fused risk, so a model can
        refuse to learn from events that were flagged."""

    def learn_verdict(self, features: dict[str, float], is_ato: bool) -> None:
        """Learn from an analyst's or account holder's verdict on an alerted situation."""

    def state(self) -> bytes:
        """The detector's own state (not the account profile), for snapshots."""

    def load_state(self, data: bytes) -> None:
        """Restore what :meth:`state` produced."""


class Rule:
    """Base of the explainable rules: stateless, they read the context only."""

    name = "rule"
    family = "rule"
    topics: frozenset[str] = frozenset({"device", "location", "transaction"})

    def __init__(self, cfg: "Config") -> None:
        self.cfg = cfg

    def score(self, x: "Context") -> Finding | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def finding(self, score: float, *reasons: str) -> Finding:
        return Finding(self.name, min(1.0, max(0.0, score)), reasons, self.family)

    def learn(self, x: "Context", risk: float) -> None:
        return None

    def learn_verdict(self, features: dict[str, float], is_ato: bool) -> None:
        return None

    def state(self) -> bytes:
        return b""

    def load_state(self, data: bytes) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
