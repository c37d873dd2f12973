"""Signs that the account is used from a device it has not been seen with."""

from __future__ import annotations

from detectors.base import Finding, Rule
from detectors.config import Config
from detectors.features import Context

SIGN_IN = frozenset({"login_success", "device_bound"})


class NewDevice(Rule):
    """A sign-in from a device new to an established account, or money moved from a young one.

    A new device alone is ordinary (people change phones); it weighs more when the device is an
    emulator or rooted, and when money moves from it before it has earned trust.
    """

    name = "new_device"
    family = "device"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def score(self, x: Context) -> Finding | None:
        ev = x.event
        risky = getattr(ev, "is_emulator", None) or getattr(ev, "is_rooted", None)
        if x.kind in SIGN_IN and x.device_new and x.established:
            if risky:
                return self.finding(0.55, "NEW_DEVICE_LOGIN", "RISKY_DEVICE")
            return self.finding(0.3, "NEW_DEVICE_LOGIN")
        if x.money_out and x.device_young and x.established:
            # money leaving from a device younger than the trust window
            return self.finding(0.4, "NEW_DEVICE_LOGIN")
        if risky and x.kind in SIGN_IN:
            return self.finding(0.3, "RISKY_DEVICE")
        return None
