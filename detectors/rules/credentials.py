"""Credential rules: failed-login bursts, and a credential change followed by money leaving."""

from __future__ import annotations

from typing import TYPE_CHECKING

from detectors import contract as c
from detectors.base import Finding, Rule
from detectors.config import Config
from detectors.context import Context

if TYPE_CHECKING:  # pragma: no cover
    from detectors.examples import Example

__all__ = ["CredentialThenMoney", "FailedLogins"]


class FailedLogins(Rule):
    """Many failed sign-ins on the account, and above all a success right after them."""

    name = "failed_logins"
    family = "credential"
    topics = frozenset({"device"})

    def __init__(self, cfg: Config) -> None:
        self.burst = cfg.windows.failed_login_burst

    def score(self, x: Context) -> Finding | None:
        fails = x.fails_recent or 0
        if fails < self.burst:
            return None
        if x.kind == "login_success":
            return self.finding(0.35 + (0.25 if x.untrusted else 0.0), "FAILED_LOGIN_BURST")
        if x.kind == "login_failure":
            return self.finding(0.2, "FAILED_LOGIN_BURST")
        return None

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import DeviceEvent
        from detectors.examples import ACCOUNT, Example, at, settled

        t = at(7)
        fails = [DeviceEvent(f"f{k}", ACCOUNT, t - 600_000 + k, "login_failure", device_id="x", ip="203.0.113.66")
                 for k in range(5)]
        return Example(tuple(settled() + fails), DeviceEvent("in", ACCOUNT, t, "login_success", device_id="x",
                                                             ip="203.0.113.66"))


class CredentialThenMoney(Rule):
    """A password, phone, e-mail, MFA or SIM change, then a new payee or money leaving within
    ``credential_change_hours``: the classic takeover sequence.

    A change made from the account holder's own trusted device and network weighs little; a change
    from an untrusted origin, or a SIM swap (made at the carrier, invisible to the holder), weighs a
    lot. The change itself is scored too when it comes from an untrusted origin.
    """

    name = "credential_then_money"
    family = "credential"
    topics = frozenset({"device", "transaction"})

    def score(self, x: Context) -> Finding | None:
        kind = x.kind
        if kind in c.CREDENTIAL_KINDS:
            if kind == "sim_change":
                return self.finding(0.35, "SIM_SWAP")
            if x.untrusted:
                return self.finding(0.35, "CREDENTIAL_CHANGE")
            return None
        if x.cred_age_h is None or x.card_present:
            return None
        sim = "SIM_SWAP" if x.sim_age_h is not None else "CREDENTIAL_CHANGE"
        suspicious = x.cred_suspicious or x.untrusted
        if kind == "payee_added":
            return self.finding(0.55 if suspicious else 0.15, "NEW_PAYEE_AFTER_CHANGE", sim)
        if x.money_out:
            risky_money = bool(x.payee_new or (x.drain_ratio or 0) >= 0.5 or (x.credit_ratio or 0) >= 0.5
                               or (x.amount_z or 0) > 2)
            if suspicious:
                score = 0.75 if risky_money else 0.4
                if x.cred_chain >= 2:
                    # several credentials changed from untrusted places (SIM, then password, then
                    # MFA): the account has changed hands, whatever the amount
                    score = max(score, 0.8)
            else:
                score = 0.1
            if x.payee_new:
                score += 0.1
            if (x.drain_ratio or 0) >= 0.5 or (x.credit_ratio or 0) >= 0.5:
                score += 0.1
            if not suspicious:  # the holder's own change: a note, never corroboration
                score = min(score, 0.2)
            elif x.cred_own_device and x.cred_chain < 2 and not (x.untrusted and not x.device_young):
                # the change is suspect only because this same new device made it: that is the
                # device evidence again (NewDevice's), not a second line
                score = min(score, 0.2)
            return self.finding(score, "MONEY_OUT_AFTER_CHANGE", sim)
        if kind == "login_success" and x.sim_age_h is not None and x.device_young:
            return self.finding(0.45, "SIM_SWAP", "NEW_DEVICE_LOGIN")
        return None

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import DeviceEvent, TransactionEvent
        from detectors.examples import ACCOUNT, Example, at, settled

        t, dev, ip = at(7), "x", "203.0.113.66"
        day = [DeviceEvent("in", ACCOUNT, t - 1_800_000, "login_success", device_id=dev, ip=ip),
               DeviceEvent("pw", ACCOUNT, t - 1_200_000, "password_change", device_id=dev, ip=ip)]
        payee = TransactionEvent("payee", ACCOUNT, t, "payee_added", device_id=dev, ip=ip, counterparty_id="mule")
        return Example(tuple(settled() + day), payee)
