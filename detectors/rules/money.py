"""Money rules: movements out of character for the account, and draining it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from detectors.base import Finding, Rule
from detectors.context import Context

if TYPE_CHECKING:  # pragma: no cover
    from detectors.examples import Example

__all__ = ["Drain", "OutOfCharacter"]


class OutOfCharacter(Rule):
    """A money movement unlike the account's own baseline (River ``stats.Var`` of log-amounts
    and the hour-of-day histogram in the profile): a much larger amount, a large amount to a
    payee never paid before, or an hour the holder is rarely active."""

    name = "out_of_character"
    family = "money"
    topics = frozenset({"transaction"})

    def score(self, x: Context) -> Finding | None:
        if not x.money_out:
            return None
        reasons: list[str] = []
        score = 0.0
        z = x.amount_z
        if z is not None and z > 3.0:
            score += min(0.35, 0.15 + 0.05 * (z - 3.0))
            reasons.append("UNUSUAL_AMOUNT")
        if x.payee_new and z is not None and z > 1.5:
            score += 0.2
            reasons.append("NEW_PAYEE_LARGE_AMOUNT")
        if x.hour_share is not None and x.hour_share < 0.01:
            score += 0.1
            reasons.append("UNUSUAL_HOUR")
        return self.finding(score, *reasons) if reasons else None

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import TransactionEvent
        from detectors.examples import ACCOUNT, HOME_DEVICE, HOME_IP, Example, at, settled

        night = TransactionEvent("big", ACCOUNT, at(7, 3), "transfer_out", device_id=HOME_DEVICE, ip=HOME_IP,
                                 amount=1000.0, counterparty_id="mule", channel="app", balance_after=1000.0)
        return Example(tuple(settled()), night)


class Drain(Rule):
    """A movement that empties most of the balance or draws most of the credit line, weighted up
    when it comes right after a sign of takeover (young device, changed session, credential
    change). Repaying and then drawing again is ordinary and adds nothing by itself, and so is
    the holder's card at a till or cash machine."""

    name = "drain"
    family = "money"
    topics = frozenset({"transaction"})

    def score(self, x: Context) -> Finding | None:
        if not x.money_out or x.card_present:
            return None
        after_change = bool(x.untrusted or x.cred_suspicious)
        if (x.drain_ratio or 0.0) >= 0.8:
            return self.finding(0.45 if after_change else 0.15, "BALANCE_DRAIN")
        if (x.credit_ratio or 0.0) >= 0.8:
            return self.finding(0.45 if after_change else 0.1, "CREDIT_LINE_DRAIN")
        return None

    @classmethod
    def example(cls) -> "Example":
        """A settled account, then what this rule must fire on (the contract suite checks it)."""
        from detectors.events import DeviceEvent, TransactionEvent
        from detectors.examples import ACCOUNT, Example, at, settled

        t, dev, ip = at(7), "x", "203.0.113.66"
        day = [DeviceEvent("in", ACCOUNT, t - 1_800_000, "login_success", device_id=dev, ip=ip)]
        drain = TransactionEvent("all", ACCOUNT, t, "transfer_out", device_id=dev, ip=ip, amount=1900.0,
                                 counterparty_id="mule", channel="app", balance_after=100.0)
        return Example(tuple(settled() + day), drain)
