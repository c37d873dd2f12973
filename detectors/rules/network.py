"""Network rules: anonymising networks new to the account, and sessions that change network."""

from __future__ import annotations

from detectors import contract as c
from detectors.base import Finding, Rule
from detectors.context import Context

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
