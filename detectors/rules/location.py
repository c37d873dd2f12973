"""Location rules: impossible travel between consecutive fixes, and countries new to the account."""

from __future__ import annotations

from detectors.base import Finding, Rule
from detectors.config import Config
from detectors.context import Context


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


class NewCountry(Rule):
    """A location fix in a country the account has not been seen in (travel does this too)."""

    name = "new_country"
    family = "location"
    topics = frozenset({"location"})

    def score(self, x: Context) -> Finding | None:
        if not x.country_new or not x.established:
            return None
        return self.finding(0.35 if x.device_young else 0.15, "NEW_COUNTRY")
