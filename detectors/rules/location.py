"""Location rules: impossible travel between consecutive fixes, and countries new to the account."""

from __future__ import annotations

from typing import TYPE_CHECKING

from detectors.base import Finding, Rule
from detectors.config import Config
from detectors.context import Context

if TYPE_CHECKING:  # pragma: no cover
    from detectors.examples import Example

__all__ = ["ImpossibleTravel", "NewCountry"]


class ImpossibleTravel(Rule):
    """Two located events further apart than any traveller could cover in the time between.

    Speed is measured after subtracting both fixes' position error (GPS accuracy, or the
    configured error of IP geolocation), so a coarse IP fix never makes a trip look impossible
    on its own. Airliners cruise below ``travel_tolerance_kmh`` (default 1,000 km/h).
    """

    name = "impossible_travel"
    family = "location"
    topics = frozenset({"location"})

    def __init__(self, cfg: Config) -> None:
        self.tolerance = cfg.windows.travel_tolerance_kmh

    def score(self, x: Context) -> Finding | None:
        speed = x.speed_kmh
        if speed is None or speed <= self.tolerance or x.distance_km < 500:
            return None
        excess = min(1.0, (speed - self.tolerance) / (4 * self.tolerance))
        return self.finding(0.5 + 0.3 * excess, "IMPOSSIBLE_TRAVEL")

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import LocationEvent
        from detectors.examples import ACCOUNT, HOME, HOME_DEVICE, Example, at, settled

        home = LocationEvent("home", ACCOUNT, at(7), "gps_fix", *HOME, device_id=HOME_DEVICE, accuracy_m=20.0)
        singapore = LocationEvent("sg", ACCOUNT, at(7) + 600_000, "gps_fix", 1.35, 103.82, device_id=HOME_DEVICE,
                                  accuracy_m=20.0, country="SG")
        return Example(tuple(settled() + [home]), singapore)


class NewCountry(Rule):
    """A location fix in a country the account has not been seen in (travel does this too)."""

    name = "new_country"
    family = "location"
    topics = frozenset({"location"})

    def score(self, x: Context) -> Finding | None:
        if not x.country_new or not x.established:
            return None
        return self.finding(0.35 if x.device_young else 0.15, "NEW_COUNTRY")

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import LocationEvent
        from detectors.examples import ACCOUNT, HOME_DEVICE, Example, at, settled

        return Example(tuple(settled()), LocationEvent("fr", ACCOUNT, at(7), "gps_fix", 48.86, 2.35,
                                                       device_id=HOME_DEVICE, accuracy_m=20.0, country="FR"))
