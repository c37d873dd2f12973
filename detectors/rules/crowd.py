"""Cross-account rules: sources that touch many accounts, and bursts of login edges (MIDAS-R)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from detectors.base import Finding, Rule
from detectors.context import Context

if TYPE_CHECKING:  # pragma: no cover
    from detectors.examples import Example

__all__ = ["CrossAccount", "LoginBurst"]

_LOGINS = ("login_success", "login_failure")


class CrossAccount(Rule):
    """A sign-in from an IP that failed on many accounts recently (credential stuffing), or from a
    device that signs in to many accounts (a device farm). A busy office NAT touches many accounts
    too, but with few failures, so failures are what counts for IPs."""

    name = "cross_account"
    family = "crowd"
    topics = frozenset({"device"})

    def score(self, x: Context) -> Finding | None:
        if x.kind not in _LOGINS:
            return None
        ip, dev = x.facts.ip, x.facts.device
        reasons: list[str] = []
        score = 0.0
        if ip.accounts >= 4 and ip.failures >= 8 and ip.failures >= 0.5 * ip.logins:
            score = 0.45 + min(0.35, 0.01 * ip.failures)
            reasons.append("SHARED_IP_FAILURES")
        if dev.accounts >= 4:
            score = max(score, 0.4 + min(0.3, 0.03 * dev.accounts))
            reasons.append("SHARED_DEVICE_MANY_ACCOUNTS")
        if not reasons:
            return None
        if x.kind == "login_failure":
            score *= 0.5
        return self.finding(score, *reasons)

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import DeviceEvent
        from detectors.examples import ACCOUNT, Example, at, settled
        from detectors.facts import EventFacts, SourceFacts

        login = DeviceEvent("in", ACCOUNT, at(7), "login_success", device_id="x", ip="203.0.113.66")
        return Example(tuple(settled()), login, EventFacts(ip=SourceFacts(accounts=6, failures=20, logins=25)))


class LoginBurst(Rule):
    """A microcluster burst of login edges from one source (MIDAS-R score, calibrated to [0, 1]
    by the fact source)."""

    name = "login_burst"
    family = "crowd"
    topics = frozenset({"device"})

    def score(self, x: Context) -> Finding | None:
        burst = x.facts.burst
        if burst < 0.5 or x.kind not in _LOGINS:
            return None
        return self.finding(0.5 * burst, "LOGIN_BURST")

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import DeviceEvent
        from detectors.examples import ACCOUNT, Example, at, settled
        from detectors.facts import EventFacts

        login = DeviceEvent("in", ACCOUNT, at(7), "login_success", device_id="x", ip="203.0.113.66")
        return Example(tuple(settled()), login, EventFacts(burst=0.8))
