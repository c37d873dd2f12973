"""Reason codes, defined once: the stable UPPER_SNAKE_CASE names that travel in commands and
alerts, with the plain-language phrase used to explain them to the account holder.

>>> REASONS["NEW_DEVICE_LOGIN"].phrase
'a sign-in from a device we have not seen on your account before'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REASONS", "Reason", "phrase"]


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    phrase: str
    #: Detector family: two strong findings count as independent only across families.
    family: str


_ROWS = [
    # device and sign-in
    ("NEW_DEVICE_LOGIN", "a sign-in from a device we have not seen on your account before", "device"),
    ("NO_DEVICE_FINGERPRINT", "a sign-in or payment from software that is not our app or website", "device"),
    ("RISKY_DEVICE", "a sign-in from an emulated or rooted device", "device"),
    ("NEW_COUNTRY", "activity from a country we have not seen on your account before", "location"),
    ("IMPOSSIBLE_TRAVEL", "activity in two places too far apart to travel between in the time", "location"),
    ("ANONYMOUS_NETWORK", "activity through an anonymising network (Tor, a hosting provider or a VPN) new to your account", "network"),
    ("SUSPECT_NETWORK", "activity from the network address behind an earlier suspicious sign-in", "network"),
    ("NEW_NETWORK", "activity from a network new to your account, by software that is not our app", "network"),
    ("SESSION_NETWORK_CHANGE", "your signed-in session suddenly continuing from a different network", "credential"),
    ("FAILED_LOGIN_BURST", "many failed sign-in attempts on your account", "credential"),
    ("CREDENTIAL_CHANGE", "a recent change to your password, phone number, e-mail or security settings", "credential"),
    ("SIM_SWAP", "your phone number recently moved to a new SIM card", "credential"),
    # money
    ("NEW_PAYEE_AFTER_CHANGE", "a new payee added shortly after a security change", "money"),
    ("MONEY_OUT_AFTER_CHANGE", "money leaving shortly after a security change", "money"),
    ("UNUSUAL_AMOUNT", "an amount much larger than you usually move", "money"),
    ("NEW_PAYEE_LARGE_AMOUNT", "a large payment to a payee you have never paid before", "money"),
    ("UNUSUAL_HOUR", "a payment at an hour you are rarely active", "money"),
    ("BALANCE_DRAIN", "a movement that empties most of your balance", "money"),
    ("CREDIT_LINE_DRAIN", "a draw of most of your credit line", "money"),
    # cross-account
    ("SHARED_IP_FAILURES", "a sign-in from a network address that failed on many other accounts", "crowd"),
    ("SHARED_DEVICE_MANY_ACCOUNTS", "a device that signs in to many different accounts", "crowd"),
    ("LOGIN_BURST", "a sudden burst of sign-ins from one source across many accounts", "crowd"),
    # models
    ("BEHAVIOUR_ANOMALY", "behaviour unlike your usual pattern", "model"),
    ("LEARNED_RISK", "a pattern our analysts confirmed as account theft before", "model"),
    # verdicts and lifecycle
    ("ANALYST_CONFIRMED_ATO", "our security team confirmed that someone else took over your account", "verdict"),
    ("USER_REPORTED_ATO", "you told us that this activity was not you", "verdict"),
    ("CONFIRMED_LEGITIMATE", "the activity was confirmed as yours", "verdict"),
    # challenge outcomes (contract v2)
    ("CHALLENGE_PASSED", "you confirmed it was you with the check we asked for", "challenge"),
    ("CHALLENGE_FAILED", "a failed identity check on your account", "challenge"),
    ("CHALLENGE_UNANSWERED", "an identity check on your account left unanswered", "challenge"),
    # partners' signals (contract v3): what another service told us about the same person
    ("PARTNER_EMAIL_PROVIDER", "a warning from your e-mail provider, who told us someone else may have got into your e-mail", "partner"),
    ("PARTNER_IDENTITY_PROVIDER", "a warning from the service you sign in with, who told us someone else may have your sign-in details", "partner"),
    ("PARTNER_CARRIER", "a warning from your mobile carrier, who told us your phone number recently moved to another SIM card or owner", "partner"),
    ("PARTNER_LENDER", "a warning from another lender, who told us they stopped someone else using your identity", "partner"),
    ("PARTNER_OTHER", "a warning from a partner service, who told us your account there may be in someone else's hands", "partner"),
    # decisions on payouts (contract v3)
    ("ACCOUNT_FROZEN", "payments and credit on your account paused for your protection", "restriction"),
    ("ACCOUNT_CLOSED", "your account closed to stop further loss", "restriction"),
]

REASONS: dict[str, Reason] = {code: Reason(code, text, family) for code, text, family in _ROWS}


def phrase(code: str) -> str:
    """The account-holder phrase of a reason code (the code itself if unknown)."""
    reason = REASONS.get(code)
    return reason.phrase if reason else code.replace("_", " ").lower()
