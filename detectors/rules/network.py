"""Network rules: anonymising networks new to the account, and sessions that change network."""

from __future__ import annotations

from typing import TYPE_CHECKING

from detectors import contract as c
from detectors.base import Finding, Rule
from detectors.context import Context

if TYPE_CHECKING:  # pragma: no cover
    from detectors.examples import Example

__all__ = ["RiskyNetwork", "SessionHijack"]

_WEIGHT = {"tor": 0.45, "hosting": 0.35, "vpn": 0.1}


class RiskyNetwork(Rule):
    """Activity through Tor, a hosting provider or a VPN the account had not used before today, or
    money and credentials handled from an address that was behind a step-up-level event from an
    untrusted device (an impossible trip, say) - the attacker coming back through the same door."""

    name = "risky_network"
    family = "network"
    topics = frozenset({"device", "transaction"})

    def score(self, x: Context) -> Finding | None:
        sensitive = x.money_out or x.kind in ("payee_added", "login_success") or x.kind in c.CREDENTIAL_KINDS
        found: list[tuple[float, str]] = []
        if x.ip_suspect and sensitive and not x.device_trusted:
            found.append((0.45, "SUSPECT_NETWORK"))
        if x.net_fresh:
            if x.event.device_id is None and x.established and sensitive and not x.card_present:
                # a client without a device fingerprint (a script), on a network the account
                # first used today: where it comes from, apart from what it is
                found.append((0.5, "NEW_NETWORK"))
            weight = _WEIGHT.get(x.ip_type or "")
            if weight is not None and (x.kind in ("login_success", "login_failure") or x.money_out
                                       or x.kind == "payee_added"):
                found.append((weight, "ANONYMOUS_NETWORK"))
        # the strongest of what applies (the first of equals)
        return self.finding(*max(found, key=lambda f: f[0])) if found else None

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import DeviceEvent
        from detectors.examples import ACCOUNT, HOME_DEVICE, Example, at, settled
        from detectors.facts import EventFacts

        tor = DeviceEvent("tor", ACCOUNT, at(7), "login_success", device_id=HOME_DEVICE, ip="192.0.2.77")
        return Example(tuple(settled()), tor, EventFacts(ip_type="tor"))


class SessionHijack(Rule):
    """A signed-in session that continues from another network operator without a new login:
    weak when the new network is an ordinary one in the same country (a phone leaving the home
    Wi-Fi), strong when it is abroad or an anonymiser (a stolen token replayed elsewhere)."""

    name = "session_hijack"
    # a session token is a credential: one used from elsewhere is a stolen credential, evidence
    # apart from what kind of network it went to (which RiskyNetwork judges)
    family = "credential"

    def score(self, x: Context) -> Finding | None:
        if not x.session_changed or x.kind == "login_success":
            return None
        score = 0.7 if x.session_far else 0.35
        if x.money_out or x.kind == "payee_added":
            score += 0.1
        return self.finding(score, "SESSION_NETWORK_CHANGE")

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import DeviceEvent, LocationEvent, TransactionEvent
        from detectors.examples import ACCOUNT, HOME_DEVICE, HOME_IP, Example, at, settled

        t = at(7)
        day = [DeviceEvent("in", ACCOUNT, t, "login_success", device_id=HOME_DEVICE, session_id="S", ip=HOME_IP),
               LocationEvent("nl", ACCOUNT, t + 600_000, "ip_geo", 52.37, 4.9, ip="192.0.2.60", country="NL",
                             asn=1136, ip_type="residential")]
        payee = TransactionEvent("payee", ACCOUNT, t + 660_000, "payee_added", device_id=HOME_DEVICE, session_id="S",
                                 ip="192.0.2.60", counterparty_id="mule")
        return Example(tuple(settled() + day), payee)
