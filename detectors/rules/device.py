"""Signs that the account is used from a device it has not been seen with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from detectors import contract as c
from detectors.base import Finding, Rule
from detectors.context import Context

if TYPE_CHECKING:  # pragma: no cover
    from detectors.examples import Example

__all__ = ["NewDevice"]

SIGN_IN = frozenset({"login_success", "device_bound"})


class NewDevice(Rule):
    """A sign-in from a device new to an established account, or money moved from a young one.

    A new device alone is ordinary (people change phones); it weighs more when the device is an
    emulator or rooted, and when money moves from it before it has earned trust.
    """

    name = "new_device"
    family = "device"
    topics = frozenset({"device", "transaction"})

    def score(self, x: Context) -> Finding | None:
        ev = x.event
        risky = getattr(ev, "is_emulator", None) or getattr(ev, "is_rooted", None)
        if x.kind in SIGN_IN and x.device_new and x.established:
            if risky:
                return self.finding(0.55, "NEW_DEVICE_LOGIN", "RISKY_DEVICE")
            return self.finding(0.3, "NEW_DEVICE_LOGIN")
        if (x.money_out or x.kind == "payee_added") and x.device_young and x.established:
            # money leaving from a device younger than the trust window; more so from a device
            # that already raised an alert, while a step-up is pending, or to a new payee
            if x.kind == "payee_added":
                return self.finding(0.45 if x.device_suspect else 0.25, "NEW_DEVICE_LOGIN")
            if x.device_suspect or x.restricted == "step_up":
                score = 0.6
            else:
                score = 0.15 if x.device_home else 0.35
            if x.payee_new:
                score += 0.15
            if (x.drain_ratio or 0.0) >= 0.5 or (x.credit_ratio or 0.0) >= 0.5:
                score += 0.15
            if x.device_home_net:  # the holder's new phone on their own broadband: a note only
                score = min(score, 0.2)
            return self.finding(min(score, 0.75), "NEW_DEVICE_LOGIN")  # alone: a step-up at most
        if risky and x.kind in SIGN_IN and not x.device_trusted:  # the holder's own rooted phone is their setup
            return self.finding(0.3, "RISKY_DEVICE")
        if ev.device_id is None and x.established and (
                x.kind == "login_success" or getattr(ev, "channel", None) in ("app", "web")):
            # the app and the web client always send a device fingerprint; a script does not,
            # and a script moving money is worse than one signing in
            moving = x.money_out or x.kind == "payee_added" or x.kind in c.CREDENTIAL_KINDS
            return self.finding(0.7 if moving else 0.5, "NO_DEVICE_FINGERPRINT")
        return None

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import DeviceEvent
        from detectors.examples import ACCOUNT, Example, at, settled

        return Example(tuple(settled()), DeviceEvent("new", ACCOUNT, at(7), "login_success", device_id="x",
                                                     ip="203.0.113.66", is_emulator=True))
