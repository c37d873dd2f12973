"""Rules as tables: a short account history, one event, the reason codes it raises and the band its
score falls in - rows that must fire, and rows of the holder's own life that must not (or only
as a note, below a step-up).

The histories start from a settled account (:func:`detectors.examples.settled`: a week of
afternoon sign-ins from the holder's phone on their home broadband in Berlin, a GPS fix at home
and a small payment to the same shop), then add a few events of the day the row is about.
Below the tables, scenario tests pin down subtler behaviour one at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from detectors.config import Config
from detectors.events import DeviceEvent, Event, LocationEvent, TransactionEvent
from detectors.examples import (
    ACCOUNT as A, BALANCE, HOME, HOME_DEVICE, HOME_IP, SHOP, Example, Step, at, judge, settled,
)
from detectors.context import build_context
from detectors.facts import NO_FACTS, EventFacts, SourceFacts
from detectors.update import observe
from detectors.policy import CORROBORATE_AT
from detectors.profile import Profile
from detectors.reasons import REASONS
from detectors.registry import REGISTRY
from detectors.rules import RULES

CFG = Config()
T0 = 1_764_000_000_000
H = 3_600_000
D = 24 * H
MIN = 60_000

# -- the tables -----------------------------------------------------------------------------------

#: the day the rows happen on: the day after the settled week
DAY = 7
NOW = at(DAY)
FAR_IP, FAR_ASN = "203.0.113.66", 64500  # the attacker's address and operator
PARIS, SINGAPORE, MADRID = (48.86, 2.35), (1.35, 103.82), (40.42, -3.70)


class Row(NamedTuple):
    """One row: ``rule`` judges ``example.event`` after ``example.history``; it raises exactly
    ``reasons`` with a score within ``band`` (inclusive), or nothing when ``reasons`` is None."""

    id: str
    rule: str
    example: Example
    reasons: frozenset[str] | None
    band: tuple[float, float] = (0.0, 0.0)


def fires(id: str, rule: str, day: list, event: Event, reasons: set[str], band: tuple[float, float],
          facts: EventFacts = NO_FACTS, history: list | None = None) -> Row:
    """A row that must fire: the settled week (or ``history``), then ``day``, then ``event``."""
    return Row(id, rule, Example(tuple((settled() if history is None else history) + day), event, facts),
               frozenset(reasons), band)


def quiet(id: str, rule: str, day: list, event: Event, facts: EventFacts = NO_FACTS,
          history: list | None = None) -> Row:
    """A row that must not fire."""
    return Row(id, rule, Example(tuple((settled() if history is None else history) + day), event, facts), None)


def login(eid: str, t: int, device: str | None = HOME_DEVICE, ip: str | None = HOME_IP, **kw) -> DeviceEvent:
    return DeviceEvent(eid, A, t, "login_success", device_id=device, ip=ip, **kw)


def fail(eid: str, t: int, device: str | None = "x", ip: str | None = FAR_IP) -> DeviceEvent:
    return DeviceEvent(eid, A, t, "login_failure", device_id=device, ip=ip)


def change(eid: str, t: int, kind: str = "password_change", device: str | None = HOME_DEVICE,
           ip: str | None = HOME_IP) -> DeviceEvent:
    return DeviceEvent(eid, A, t, kind, device_id=device, ip=ip)


def gps(eid: str, t: int, where: tuple[float, float] = HOME, country: str = "DE",
        device: str = HOME_DEVICE) -> LocationEvent:
    return LocationEvent(eid, A, t, "gps_fix", where[0], where[1], device_id=device, accuracy_m=20.0,
                         country=country)


def ip_geo(eid: str, t: int, ip: str, where: tuple[float, float], country: str, asn: int,
           ip_type: str = "residential") -> LocationEvent:
    return LocationEvent(eid, A, t, "ip_geo", where[0], where[1], ip=ip, country=country, asn=asn,
                         ip_type=ip_type)


def pay(eid: str, t: int, amount: float, kind: str = "transfer_out", payee: str = "mule",
        device: str | None = HOME_DEVICE, ip: str | None = HOME_IP, channel: str = "app",
        balance_after: float | None = None, **kw) -> TransactionEvent:
    if balance_after is None:
        balance_after = max(0.0, BALANCE - amount)
    return TransactionEvent(eid, A, t, kind, device_id=device, ip=ip, amount=amount, counterparty_id=payee,
                            channel=channel, balance_after=balance_after, **kw)


def till(eid: str, t: int, amount: float, kind: str = "withdrawal") -> TransactionEvent:
    """The holder's card at a cash machine or a shop's terminal: no device, no address."""
    return TransactionEvent(eid, A, t, kind, amount=amount, counterparty_id="atm-1", channel="pos",
                            balance_after=BALANCE - amount)


#: the attacker signs in from their own device and address on an operator the account never used
#: (the address's operator is known across accounts: ``facts``)
INTRUDER = [Step(login("x-in", NOW - 30 * MIN, device="x", ip=FAR_IP), EventFacts(asn=FAR_ASN))]
#: ... and changes the password, then the second factor, from there
INTRUDER_CHANGE = INTRUDER + [change("x-pw", NOW - 20 * MIN, device="x", ip=FAR_IP),
                              change("x-mfa", NOW - 19 * MIN, "mfa_change", device="x", ip=FAR_IP)]
#: the holder's new phone, first used on the home broadband yesterday
NEW_PHONE_AT_HOME = [login("n-in", NOW - D, device="new-phone")]

LOCATION = [
    fires("teleport-to-singapore", "impossible_travel", [gps("h", NOW)],
          gps("sg", NOW + 10 * MIN, SINGAPORE, "SG"), {"IMPOSSIBLE_TRAVEL"}, (0.8, 0.8)),
    fires("madrid-an-hour-after-berlin", "impossible_travel", [gps("h", NOW)],
          gps("md", NOW + H, MADRID, "ES"), {"IMPOSSIBLE_TRAVEL"}, (0.5, 0.6)),
    quiet("a-flight-to-madrid", "impossible_travel", [gps("h", NOW)], gps("md", NOW + 3 * H, MADRID, "ES")),
    quiet("singapore-two-days-after-berlin", "impossible_travel", [gps("h", NOW - 2 * D)],
          gps("sg", NOW, SINGAPORE, "SG")),
    quiet("a-vpn-exit-far-away-locates-nobody", "impossible_travel", [gps("h", NOW)],
          ip_geo("v", NOW + 10 * MIN, "192.0.2.9", SINGAPORE, "SG", 9009, "vpn")),
    quiet("a-coarse-ip-fix-in-the-next-city", "impossible_travel", [gps("h", NOW)],
          ip_geo("c", NOW + MIN, "192.0.2.10", (53.55, 9.99), "DE", 6805)),
    fires("the-holder-on-holiday-a-note", "new_country", [], gps("p", NOW, PARIS, "FR"), {"NEW_COUNTRY"},
          (0.15, 0.15)),
    fires("a-new-device-in-a-new-country", "new_country", INTRUDER, gps("r", NOW, (55.75, 37.62), "RU", "x"),
          {"NEW_COUNTRY"}, (0.35, 0.35)),
    quiet("a-fix-at-home", "new_country", [], gps("h", NOW)),
    quiet("a-new-account-has-no-home-country", "new_country", [], gps("p", at(1), PARIS, "FR"),
          history=settled(days=1)),
]

DEVICE = [
    fires("a-sign-in-from-a-new-device", "new_device", [], login("n", NOW, device="x", ip=FAR_IP),
          {"NEW_DEVICE_LOGIN"}, (0.3, 0.3)),
    fires("a-sign-in-from-a-new-emulator", "new_device", [],
          login("n", NOW, device="x", ip=FAR_IP, is_emulator=True), {"NEW_DEVICE_LOGIN", "RISKY_DEVICE"},
          (0.55, 0.55)),
    fires("a-rooted-device-seen-yesterday", "new_device", [login("y", NOW - D, device="x", ip=FAR_IP)],
          login("n", NOW, device="x", ip=FAR_IP, is_rooted=True), {"RISKY_DEVICE"}, (0.3, 0.3)),
    fires("money-to-a-new-payee-from-a-young-device-away", "new_device", INTRUDER,
          pay("t", NOW, 100.0, device="x", ip=FAR_IP), {"NEW_DEVICE_LOGIN"}, (0.5, 0.5)),
    fires("the-new-phone-at-home-pays-the-shop-a-note", "new_device", NEW_PHONE_AT_HOME,
          pay("t", NOW, 20.0, "payment", SHOP, device="new-phone"), {"NEW_DEVICE_LOGIN"}, (0.1, 0.2)),
    fires("a-payee-added-from-a-young-device", "new_device", INTRUDER,
          TransactionEvent("p", A, NOW, "payee_added", device_id="x", ip=FAR_IP, counterparty_id="mule"),
          {"NEW_DEVICE_LOGIN"}, (0.25, 0.25)),
    fires("a-script-signs-in", "new_device", [], login("s", NOW, device=None, ip=FAR_IP),
          {"NO_DEVICE_FINGERPRINT"}, (0.5, 0.5)),
    fires("a-script-moves-money", "new_device", [], pay("s", NOW, 20.0, device=None, ip=FAR_IP),
          {"NO_DEVICE_FINGERPRINT"}, (0.7, 0.7)),
    quiet("the-holders-phone-signs-in", "new_device", [], login("l", NOW)),
    quiet("the-holders-own-rooted-phone", "new_device", [], login("l", NOW, is_rooted=True)),
    quiet("the-card-at-a-till", "new_device", [], till("c", NOW, 50.0, "payment")),
    quiet("a-new-account-knows-no-device", "new_device", [], login("n", at(1), device="x", ip=FAR_IP),
          history=settled(days=1)),
]

NETWORK = [
    fires("a-sign-in-through-tor", "risky_network", [], login("t", NOW, ip="192.0.2.77"),
          {"ANONYMOUS_NETWORK"}, (0.45, 0.45), EventFacts(ip_type="tor")),
    fires("a-sign-in-through-a-new-vpn-a-note", "risky_network", [], login("t", NOW, ip="192.0.2.78"),
          {"ANONYMOUS_NETWORK"}, (0.1, 0.1), EventFacts(ip_type="vpn")),
    fires("money-through-a-hosting-provider", "risky_network", [], pay("t", NOW, 100.0, ip="192.0.2.79"),
          {"ANONYMOUS_NETWORK"}, (0.35, 0.35), EventFacts(ip_type="hosting")),
    fires("a-script-on-a-new-network", "risky_network", [], login("s", NOW, device=None, ip=FAR_IP),
          {"NEW_NETWORK"}, (0.5, 0.5)),
    fires("money-through-the-address-of-an-earlier-suspect-sign-in", "risky_network",
          [Step(login("x-in", NOW - 30 * MIN, device="x", ip=FAR_IP), risk=0.8, evidence=frozenset({"location"}))],
          pay("t", NOW, 100.0, device="x", ip=FAR_IP), {"SUSPECT_NETWORK"}, (0.45, 0.45)),
    quiet("the-holders-phone-on-a-cafe-wifi", "risky_network", [], login("c", NOW, ip="192.0.2.80"),
          EventFacts(ip_type="residential", asn=6805)),
    quiet("the-holders-phone-at-home", "risky_network", [], login("l", NOW)),
    quiet("the-holders-trusted-phone-on-a-suspect-address", "risky_network",
          [Step(login("x-in", NOW - 30 * MIN, device="x", ip=FAR_IP), risk=0.8, evidence=frozenset({"location"}))],
          pay("t", NOW, 20.0, "payment", SHOP, ip=FAR_IP)),
    # a session that starts at home and continues elsewhere without a new sign-in
    fires("the-session-moves-to-a-local-mobile-operator", "session_hijack",
          [login("s", NOW, session_id="S"), ip_geo("g", NOW + 10 * MIN, "192.0.2.50", HOME, "DE", 6805, "mobile")],
          TransactionEvent("p", A, NOW + 11 * MIN, "payee_added", device_id=HOME_DEVICE, session_id="S",
                           ip="192.0.2.50", counterparty_id="mule"),
          {"SESSION_NETWORK_CHANGE"}, (0.45, 0.45)),
    fires("the-session-moves-abroad", "session_hijack",
          [login("s", NOW, session_id="S"), ip_geo("g", NOW + 10 * MIN, "192.0.2.60", (52.37, 4.9), "NL", 1136)],
          TransactionEvent("p", A, NOW + 11 * MIN, "payee_added", device_id=HOME_DEVICE, session_id="S",
                           ip="192.0.2.60", counterparty_id="mule"),
          {"SESSION_NETWORK_CHANGE"}, (0.8, 0.8)),
    quiet("the-session-gets-another-address-of-the-same-operator", "session_hijack",
          [login("s", NOW, session_id="S"), ip_geo("g", NOW + 10 * MIN, "198.51.100.99", HOME, "DE", 3320)],
          TransactionEvent("p", A, NOW + 11 * MIN, "payee_added", device_id=HOME_DEVICE, session_id="S",
                           ip="198.51.100.99", counterparty_id="mule")),
]

CREDENTIAL = [
    fires("a-sign-in-after-a-burst-of-failures", "failed_logins", [fail(f"f{k}", NOW - 10 * MIN + k) for k in range(5)],
          login("in", NOW, device="x", ip=FAR_IP), {"FAILED_LOGIN_BURST"}, (0.6, 0.6)),
    fires("the-burst-of-failures-itself", "failed_logins", [fail(f"f{k}", NOW - 10 * MIN + k) for k in range(5)],
          fail("f5", NOW), {"FAILED_LOGIN_BURST"}, (0.2, 0.2)),
    fires("the-holder-fumbles-the-password-then-gets-in-a-note", "failed_logins",
          [fail(f"f{k}", NOW - 10 * MIN + k, HOME_DEVICE, HOME_IP) for k in range(5)], login("in", NOW),
          {"FAILED_LOGIN_BURST"}, (0.35, 0.35)),
    quiet("a-few-failures", "failed_logins", [fail(f"f{k}", NOW - 10 * MIN + k) for k in range(3)],
          login("in", NOW, device="x", ip=FAR_IP)),
    quiet("failures-two-hours-ago", "failed_logins", [fail(f"f{k}", NOW - 2 * H + k) for k in range(5)],
          login("in", NOW)),
    fires("a-sim-swap", "credential_then_money", [], change("s", NOW, "sim_change", None, None), {"SIM_SWAP"},
          (0.35, 0.35)),
    fires("a-password-change-from-an-intruder", "credential_then_money", INTRUDER,
          Step(change("c", NOW, device="x", ip=FAR_IP)).event, {"CREDENTIAL_CHANGE"}, (0.35, 0.35),
          EventFacts(asn=FAR_ASN)),
    fires("a-new-payee-after-the-intruders-change", "credential_then_money", INTRUDER_CHANGE,
          TransactionEvent("p", A, NOW, "payee_added", device_id="x", ip=FAR_IP, counterparty_id="mule"),
          {"NEW_PAYEE_AFTER_CHANGE", "CREDENTIAL_CHANGE"}, (0.55, 0.55)),
    fires("the-balance-to-a-new-payee-after-the-intruders-change", "credential_then_money", INTRUDER_CHANGE,
          pay("t", NOW, 1900.0, device="x", ip=FAR_IP), {"MONEY_OUT_AFTER_CHANGE", "CREDENTIAL_CHANGE"},
          (0.9, 1.0)),
    fires("money-from-the-new-device-that-made-the-change-a-note", "credential_then_money",
          INTRUDER + [change("x-pw", NOW - 20 * MIN, device="x", ip=FAR_IP)],
          pay("t", NOW, 1900.0, device="x", ip=FAR_IP), {"MONEY_OUT_AFTER_CHANGE", "CREDENTIAL_CHANGE"},
          (0.2, 0.2)),
    fires("a-new-device-signs-in-after-a-sim-swap", "credential_then_money",
          [change("s", NOW - H, "sim_change", None, None)], login("in", NOW, device="x", ip=FAR_IP),
          {"SIM_SWAP", "NEW_DEVICE_LOGIN"}, (0.45, 0.45)),
    fires("the-holders-own-change-then-a-payment-a-note", "credential_then_money", [change("c", NOW - H)],
          pay("t", NOW, 20.0, "payment", SHOP), {"MONEY_OUT_AFTER_CHANGE", "CREDENTIAL_CHANGE"}, (0.1, 0.2)),
    quiet("the-holder-changes-the-password-at-home", "credential_then_money", [], change("c", NOW)),
    quiet("the-card-at-a-till-after-the-intruders-change", "credential_then_money", INTRUDER_CHANGE,
          till("c", NOW, 1900.0)),
    quiet("a-payment-with-no-change-behind-it", "credential_then_money", [], pay("t", NOW, 20.0, "payment", SHOP)),
]

MONEY = [
    fires("ten-times-the-usual-amount", "out_of_character", [], pay("t", NOW, 200.0, "payment", SHOP),
          {"UNUSUAL_AMOUNT"}, (0.2, 0.25)),
    fires("a-larger-sum-to-a-new-payee", "out_of_character", [], pay("t", NOW, 60.0),
          {"NEW_PAYEE_LARGE_AMOUNT"}, (0.2, 0.2)),
    fires("the-usual-payment-at-3am", "out_of_character", [], pay("t", at(DAY, 3), 20.0, "payment", SHOP),
          {"UNUSUAL_HOUR"}, (0.1, 0.1)),
    fires("a-fortune-to-a-new-payee-at-3am", "out_of_character", [], pay("t", at(DAY, 3), 1000.0),
          {"UNUSUAL_AMOUNT", "NEW_PAYEE_LARGE_AMOUNT", "UNUSUAL_HOUR"}, (0.6, 0.65)),
    quiet("the-usual-payment", "out_of_character", [], pay("t", NOW, 22.0, "payment", SHOP)),
    quiet("money-coming-in", "out_of_character", [], pay("t", at(DAY, 3), 1000.0, "loan_repayment")),
    quiet("a-new-account-has-no-usual-amount", "out_of_character", [], pay("t", at(1), 1000.0),
          history=settled(days=1)),
    fires("the-intruder-empties-the-balance", "drain", INTRUDER, pay("t", NOW, 1900.0, device="x", ip=FAR_IP),
          {"BALANCE_DRAIN"}, (0.45, 0.45)),
    fires("the-intruder-draws-the-credit-line", "drain", INTRUDER,
          pay("t", NOW, 4500.0, "loan_draw", device="x", ip=FAR_IP, credit_limit=5000.0, balance_after=None),
          {"CREDIT_LINE_DRAIN"}, (0.45, 0.45)),
    fires("the-holder-pays-the-rent-a-note", "drain", [], pay("t", NOW, 1900.0, payee="landlord"),
          {"BALANCE_DRAIN"}, (0.15, 0.15)),
    fires("the-holder-draws-the-credit-line-a-note", "drain", [],
          pay("t", NOW, 4500.0, "loan_draw", credit_limit=5000.0), {"CREDIT_LINE_DRAIN"}, (0.1, 0.1)),
    quiet("the-card-at-a-cash-machine", "drain", INTRUDER, till("c", NOW, 1900.0)),
    quiet("half-the-balance", "drain", INTRUDER, pay("t", NOW, 1000.0, device="x", ip=FAR_IP)),
]

STUFFED = SourceFacts(accounts=6, failures=20, logins=25)
FARM = SourceFacts(accounts=6, failures=0, logins=6)
OFFICE = SourceFacts(accounts=30, failures=2, logins=60)
CROWD = [
    fires("a-sign-in-from-an-address-failing-on-many-accounts", "cross_account", [],
          login("in", NOW, device="x", ip=FAR_IP), {"SHARED_IP_FAILURES"}, (0.65, 0.65), EventFacts(ip=STUFFED)),
    fires("a-failure-from-that-address", "cross_account", [], fail("f", NOW), {"SHARED_IP_FAILURES"},
          (0.3, 0.35), EventFacts(ip=STUFFED)),
    fires("a-sign-in-from-a-device-farm", "cross_account", [], login("in", NOW, device="x", ip=FAR_IP),
          {"SHARED_DEVICE_MANY_ACCOUNTS"}, (0.55, 0.6), EventFacts(device=FARM)),
    quiet("a-sign-in-behind-a-busy-office-nat", "cross_account", [], login("in", NOW, ip="192.0.2.1"),
          EventFacts(ip=OFFICE)),
    quiet("a-payment-from-the-stuffed-address", "cross_account", [], pay("t", NOW, 20.0, "payment", SHOP),
          EventFacts(ip=STUFFED)),
    fires("a-sign-in-within-a-burst", "login_burst", [], login("in", NOW, device="x", ip=FAR_IP),
          {"LOGIN_BURST"}, (0.4, 0.4), EventFacts(burst=0.8)),
    quiet("a-sign-in-on-a-busy-morning", "login_burst", [], login("in", NOW), EventFacts(burst=0.3)),
    quiet("a-payment-within-a-burst", "login_burst", [], pay("t", NOW, 20.0, "payment", SHOP),
          EventFacts(burst=1.0)),
]

TABLE = LOCATION + DEVICE + NETWORK + CREDENTIAL + MONEY + CROWD

#: codes only verdicts and the policy raise (the lifecycle of an alert), never a detector
#: the partners' finding (detectors.signals, tests/test_signals.py): one code per partner role
PARTNER_CODES = {"PARTNER_EMAIL_PROVIDER", "PARTNER_IDENTITY_PROVIDER", "PARTNER_CARRIER", "PARTNER_LENDER",
                 "PARTNER_OTHER"}
#: a decision's reason on a restricted account (detectors.decisions)
RESTRICTION_CODES = {"ACCOUNT_FROZEN", "ACCOUNT_CLOSED"}
NOT_FROM_DETECTORS = {
    "ANALYST_CONFIRMED_ATO", "USER_REPORTED_ATO", "CONFIRMED_LEGITIMATE",  # verdicts
    "CHALLENGE_PASSED", "CHALLENGE_FAILED", "CHALLENGE_UNANSWERED",  # outcomes of a challenge
    *PARTNER_CODES, *RESTRICTION_CODES,
}


def judged(row: Row):
    return judge(RULES[row.rule](CFG), row.example, CFG)[0]


@pytest.mark.parametrize("row", TABLE, ids=[r.id for r in TABLE])
def test_rule_table(row: Row):
    found = judged(row)
    if row.reasons is None:
        assert found is None, f"{row.rule} fired on {row.id}: {found}"
        return
    assert found is not None, f"{row.rule} did not fire on {row.id}"
    assert set(found.reasons) == row.reasons
    lo, hi = row.band
    assert lo - 1e-9 <= found.score <= hi + 1e-9, f"{row.rule} scored {found.score:.3f} on {row.id}, outside [{lo}, {hi}]"


def test_every_rule_has_rows_that_fire_and_rows_that_must_not():
    fire = {r.rule for r in TABLE if r.reasons is not None}
    still = {r.rule for r in TABLE if r.reasons is None}
    assert fire == still == set(RULES)


def test_every_reason_code_a_detector_can_raise_is_raised():
    """The codes the rows make the rules raise, and those the models raise on their declared
    examples, cover every reason code but the verdicts' and the challenges'."""
    raised = set()
    for row in TABLE:
        found = judged(row)
        if found is not None:
            raised.update(found.reasons)
    for name, entry in REGISTRY.items():
        if entry.kind == "model":
            found, _ = judge(entry(CFG, 0), entry.detector_class().example(), CFG)
            assert found is not None, name
            raised.update(found.reasons)
    assert NOT_FROM_DETECTORS <= set(REASONS)
    # the codes left to others are exactly theirs: the partners' by role, the decisions' restrictions
    from detectors.signals import REASON_OF_ROLE
    assert PARTNER_CODES == set(REASON_OF_ROLE.values()) == {r.code for r in REASONS.values() if r.family == "partner"}
    assert RESTRICTION_CODES == {r.code for r in REASONS.values() if r.family == "restriction"}
    missing = set(REASONS) - NOT_FROM_DETECTORS - raised
    assert not missing, f"no test raises {sorted(missing)}"


# -- scenarios --------------------------------------------------------------------------------------

def history(days: int = 5) -> Profile:
    """An account with one phone, at home in Berlin, paying one shop every day."""
    p = Profile()
    for d in range(days):
        t = T0 + d * D
        for ev in (DeviceEvent(f"l{d}", "a1", t, "login_success", device_id="d1", ip="198.51.100.1"),
                   LocationEvent(f"g{d}", "a1", t + 1000, "gps_fix", lat=52.52, lon=13.40, accuracy_m=20,
                                 country="DE", device_id="d1"),
                   TransactionEvent(f"p{d}", "a1", t + 2000, "payment", amount=20.0, counterparty_id="shop",
                                    balance_after=2000.0, device_id="d1", channel="app")):
            observe(p, build_context(p, ev, CFG), CFG)
    return p


def reasons(profile: Profile, event) -> set[str]:
    x = build_context(profile, event, CFG)
    found = set()
    for cls in RULES.values():
        f = cls(CFG).score(x)
        if f is not None:
            found.update(f.reasons)
    return found


def test_app_traffic_without_a_device_fingerprint():
    p = history()
    t = T0 + 6 * D
    assert "NO_DEVICE_FINGERPRINT" in reasons(p, DeviceEvent("x", "a1", t, "login_success", ip="203.0.113.5"))
    scripted = TransactionEvent("y", "a1", t, "transfer_out", amount=20.0, counterparty_id="shop", channel="app")
    assert "NO_DEVICE_FINGERPRINT" in reasons(p, scripted)
    # a card payment at a shop's terminal carries no device of the holder's, rightly
    card = TransactionEvent("z", "a1", t, "payment", amount=20.0, counterparty_id="shop", channel="pos")
    assert "NO_DEVICE_FINGERPRINT" not in reasons(p, card)


def test_a_new_phone_seen_at_home_weighs_less_than_one_never_seen_there():
    t = T0 + 6 * D
    away, home = history(), history()
    for p, (lat, lon) in ((away, (48.14, 11.58)), (home, (52.521, 13.401))):
        for ev in (DeviceEvent("n1", "a1", t, "login_success", device_id="new", ip="203.0.113.77"),
                   LocationEvent("n2", "a1", t + 1000, "gps_fix", lat=lat, lon=lon, accuracy_m=20, device_id="new")):
            observe(p, build_context(p, ev, CFG), CFG)
    pay = TransactionEvent("n3", "a1", t + H, "payment", amount=20.0, counterparty_id="shop",
                           device_id="new", balance_after=1900.0)
    score = {}
    for name, p in (("away", away), ("home", home)):
        f = RULES["new_device"](CFG).score(build_context(p, pay, CFG))
        score[name] = f.score if f else 0.0
    assert score["home"] < score["away"]


def test_a_new_phone_on_the_accounts_own_broadband_is_the_holders():
    """A young device first used from the address the account has used for days is "at home",
    like one whose GPS fix is at home; a fresh address, or a long-used one that fell under
    suspicion, does not vouch for it."""
    t = T0 + 6 * D
    login = DeviceEvent("n1", "a1", t, "login_success", device_id="new", ip="198.51.100.1")
    rule = RULES["new_device"](CFG)

    at_home = history()
    x = build_context(at_home, login, CFG)
    assert x.device_young and x.device_home and not x.untrusted
    observe(at_home, x, CFG)
    # and it stays at home for what follows, from anywhere
    elsewhere = TransactionEvent("n4", "a1", t + H, "transfer_out", amount=20.0, counterparty_id="shop",
                                 device_id="new", ip="203.0.113.8", balance_after=1900.0)
    assert build_context(at_home, elsewhere, CFG).device_home

    short = history(days=2)  # an address used for two days is not yet a home network
    x = build_context(short, DeviceEvent("n1", "a1", T0 + 2 * D, "login_success", device_id="new",
                                         ip="198.51.100.1"), CFG)
    assert x.device_young and not x.device_home

    suspect = history()
    suspect.ips["198.51.100.1"].suspect = True
    x = build_context(suspect, login, CFG)
    assert x.device_young and not x.device_home

    fresh = history()
    observe(fresh, build_context(fresh, DeviceEvent("n1", "a1", t, "login_success", device_id="new",
                                                    ip="203.0.113.8"), CFG), CFG)
    home_score = rule.score(build_context(at_home, elsewhere, CFG)).score
    fresh_score = rule.score(build_context(fresh, elsewhere, CFG)).score
    assert home_score < fresh_score
    # on its own broadband it is a note, never the corroboration a freeze needs
    assert home_score < CORROBORATE_AT <= fresh_score
    assert build_context(at_home, elsewhere, CFG).device_home_net
    # a GPS fix at home (which an emulator can fake) makes it "home" but not "home network"
    assert not build_context(fresh, elsewhere, CFG).device_home_net


def test_a_chain_of_credential_changes_weighs_on_even_a_tiny_payment():
    t = T0 + 6 * D
    chain, single = history(), history()
    for p, kinds in ((chain, ("sim_change", "password_reset", "mfa_change")), (single, ("password_reset",))):
        for i, kind in enumerate(kinds):
            ev = DeviceEvent(f"c{i}", "a1", t + i * 60_000, kind, device_id=None if kind == "sim_change" else "new",
                             ip="203.0.113.9")
            observe(p, build_context(p, ev, CFG), CFG)
    test_payment = TransactionEvent("tp", "a1", t + H, "payment", amount=2.0, counterparty_id="shop",
                                    device_id="new", balance_after=1998.0)
    rule = RULES["credential_then_money"](CFG)
    assert rule.score(build_context(chain, test_payment, CFG)).score >= 0.8
    assert rule.score(build_context(single, test_payment, CFG)).score < 0.8


def _session_moves(to_ip: str, country: str, asn: int, ip_type: str):
    """The holder signs in at home (the ip_geo of the address arrives just after), then the same
    session adds a payee from another address whose ip_geo was seen seconds before."""
    p = history()
    t = T0 + 6 * D
    for ev in (DeviceEvent("s1", "a1", t, "login_success", device_id="d1", session_id="S",
                           ip="198.51.100.1"),
               LocationEvent("s2", "a1", t + 1000, "ip_geo", lat=52.5, lon=13.4, country="DE",
                             asn=3320, ip_type="residential", ip="198.51.100.1"),
               LocationEvent("s3", "a1", t + 600_000, "ip_geo", lat=52.5, lon=13.4, country=country,
                             asn=asn, ip_type=ip_type, ip=to_ip)):
        observe(p, build_context(p, ev, CFG), CFG)
    payee = TransactionEvent("s4", "a1", t + 630_000, "payee_added", counterparty_id="mule",
                             device_id="d1", session_id="S", ip=to_ip)
    return RULES["session_hijack"](CFG).score(build_context(p, payee, CFG))


def test_a_session_moving_abroad_or_behind_an_anonymiser_weighs_more_than_a_local_move():
    local = _session_moves("192.0.2.50", "DE", 6805, "mobile")  # the phone leaves the Wi-Fi
    abroad = _session_moves("192.0.2.60", "NL", 1136, "residential")
    hosted = _session_moves("192.0.2.70", "DE", 16509, "hosting")
    assert local is not None and "SESSION_NETWORK_CHANGE" in local.reasons
    assert abroad.score > local.score and hosted.score > local.score
    assert local.score < CFG.policy.step_up_at <= abroad.score
    # the same operator is no change at all
    assert _session_moves("198.51.100.99", "DE", 3320, "residential") is None


def test_a_hosting_address_first_used_today_is_still_new_when_money_moves_hours_later():
    """The login made the address known and its ip_geo made the operator known, yet money
    leaving through it the same day is money leaving through an anonymiser new to the account;
    a VPN the account has used for days is not."""
    def pay_through(ip_first_seen_days_ago: float):
        p = history()
        t = T0 + 6 * D
        first = t - int(ip_first_seen_days_ago * D)
        for ev in (DeviceEvent("h1", "a1", first, "login_success", device_id="d1", ip="192.0.2.9"),
                   LocationEvent("h2", "a1", first + 800, "ip_geo", lat=52.4, lon=4.9, country="DE",
                                 asn=62240, ip_type="hosting", ip="192.0.2.9")):
            observe(p, build_context(p, ev, CFG), CFG)
        pay = TransactionEvent("h3", "a1", t + 7 * H, "payment", amount=150.0, counterparty_id="m-gift",
                               device_id="d1", ip="192.0.2.9", balance_after=1800.0)
        return RULES["risky_network"](CFG).score(build_context(p, pay, CFG))

    today = pay_through(0.0)
    assert today is not None and "ANONYMOUS_NETWORK" in today.reasons
    assert pay_through(4.0) is None


def test_a_new_sim_then_money_from_the_holders_own_settled_device_is_the_holders_sim():
    """A SIM change alone, followed by money leaving from the holder's long-used device on the
    home network, is a new SIM, not a swap; the same payment from a device first seen after the
    SIM change is the swapper's."""
    t = T0 + 6 * D

    def pay_after_sim(device: str):
        p = history()
        for ev in (DeviceEvent("s1", "a1", t, "sim_change"),
                   DeviceEvent("s2", "a1", t + H, "login_success", device_id=device, ip="198.51.100.1")):
            observe(p, build_context(p, ev, CFG), CFG)
        pay = TransactionEvent("s3", "a1", t + 2 * H, "transfer_out", amount=1900.0, counterparty_id="landlord",
                               device_id=device, ip="198.51.100.1", balance_after=100.0)
        x = build_context(p, pay, CFG)
        return x, RULES["credential_then_money"](CFG).score(x), RULES["drain"](CFG).score(x)

    x, cred, drain = pay_after_sim("d1")
    assert x.sim_age_h is not None and not x.cred_suspicious
    assert cred.score < 0.25 and drain.score < 0.25
    x, cred, drain = pay_after_sim("swapper")
    assert x.cred_suspicious and cred.score >= 0.75 and drain.score >= 0.45


def test_registering_a_device_from_an_untrusted_origin_counts_as_a_credential_change():
    """A device registered from somewhere the holder has not been is a new way into the account:
    money leaving soon after weighs as money after a credential change. Once the device turns up
    at the holder's home (their new phone, first bound in the shop), the registration is cleared;
    and it never lengthens the chain of credential changes."""
    t = T0 + 6 * D

    def bound(where: str):
        p = history()
        for ev in (DeviceEvent("b1", "a1", t, "login_success", device_id="new", ip=where),
                   DeviceEvent("b2", "a1", t + 60_000, "device_bound", device_id="new", ip=where)):
            observe(p, build_context(p, ev, CFG), CFG)
        return p

    pay = TransactionEvent("b3", "a1", t + 3 * H, "transfer_out", amount=500.0, counterparty_id="mule",
                           device_id="new", ip="203.0.113.40", balance_after=1500.0)
    away = bound("203.0.113.40")
    x = build_context(away, pay, CFG)
    assert "device_bound" in x.cred_kinds and x.cred_suspicious and x.cred_chain == 0
    assert "MONEY_OUT_AFTER_CHANGE" in RULES["credential_then_money"](CFG).score(x).reasons

    # bound at home: the holder's phone; no credential change at all
    x = build_context(bound("198.51.100.1"), pay, CFG)
    assert not x.cred_suspicious

    # bound away, then seen on the home broadband: cleared
    observe(away, build_context(away, DeviceEvent("b4", "a1", t + H, "login_success", device_id="new",
                                                  ip="198.51.100.1"), CFG), CFG)
    x = build_context(away, pay, CFG)
    assert "device_bound" in x.cred_kinds and not x.cred_suspicious


def test_the_holders_card_at_a_till_is_not_money_leaving_after_a_change():
    """After a credential change from an untrusted origin, money leaving through the app weighs
    as money after a change; the holder's card at a cash machine (no app session) does not."""
    t = T0 + 6 * D
    p = history()
    observe(p, build_context(p, DeviceEvent("c1", "a1", t, "password_change", device_id="new",
                                            ip="203.0.113.40"), CFG), CFG)
    app = TransactionEvent("c2", "a1", t + H, "withdrawal", amount=1900.0, counterparty_id="atm-1",
                           device_id="new", ip="203.0.113.40", channel="app", balance_after=100.0)
    card = TransactionEvent("c3", "a1", t + H, "withdrawal", amount=1900.0, counterparty_id="atm-1",
                            channel="pos", balance_after=100.0)
    cred, drain = RULES["credential_then_money"](CFG), RULES["drain"](CFG)
    assert cred.score(build_context(p, app, CFG)) is not None and drain.score(build_context(p, app, CFG))
    assert cred.score(build_context(p, card, CFG)) is None and drain.score(build_context(p, card, CFG)) is None


def test_a_change_suspect_only_because_its_new_device_made_it_is_not_a_second_line():
    """A credential change made by a new device, from nowhere else suspicious, then money from that
    same device: the change adds nothing the new device does not already say (capped under the
    corroboration level). From another device, or from a hosting network, it is independent."""
    t = T0 + 6 * D

    def money_after_change(change_ip: str, change_dev: str, pay_dev: str):
        p = history()
        for ev in (DeviceEvent("m1", "a1", t, "login_success", device_id=change_dev, ip=change_ip),
                   LocationEvent("m2", "a1", t + 500, "ip_geo", lat=52.5, lon=13.4, country="DE", asn=3320,
                                 ip_type="hosting" if change_ip == "192.0.2.200" else "residential", ip=change_ip),
                   DeviceEvent("m3", "a1", t + 60_000, "mfa_change", device_id=change_dev, ip=change_ip)):
            observe(p, build_context(p, ev, CFG), CFG)
        pay = TransactionEvent("m4", "a1", t + H, "transfer_out", amount=900.0, counterparty_id="mule",
                               device_id=pay_dev, ip=change_ip, balance_after=1100.0)
        return RULES["credential_then_money"](CFG).score(build_context(p, pay, CFG)).score

    same = money_after_change("203.0.113.60", "new", "new")
    other = money_after_change("203.0.113.60", "new", "other")
    hosted = money_after_change("192.0.2.200", "new", "new")
    assert same < CORROBORATE_AT <= min(other, hosted)


def test_a_roaming_phone_on_its_own_operator_is_not_an_impossible_trip():
    """A phone abroad (GPS in Cardiff) on the account's long-used home mobile operator, whose
    address geolocates to the gateway in Berlin: roaming, not a teleport. The same ip_geo from an
    operator the account has never used is judged as a location."""
    def fix_then_ipgeo(asn: int):
        p = history()
        t = T0 + 6 * D
        for d in range(5):  # the holder's phone has used its operator all along
            ev = LocationEvent(f"o{d}", "a1", T0 + d * D + 5000, "ip_geo", lat=52.5, lon=13.4, country="DE",
                               asn=20173, ip_type="mobile", ip=f"203.0.113.{d}")
            observe(p, build_context(p, ev, CFG), CFG)
        gps = LocationEvent("c1", "a1", t, "gps_fix", lat=51.48, lon=-3.18, accuracy_m=6, device_id="d1")
        observe(p, build_context(p, gps, CFG), CFG)
        geo = LocationEvent("c2", "a1", t + 30_000, "ip_geo", lat=52.5, lon=13.3, country="DE", asn=asn,
                            ip_type="mobile", ip="203.0.113.99", accuracy_m=100_000)
        return RULES["impossible_travel"](CFG).score(build_context(p, geo, CFG))

    assert fix_then_ipgeo(20173) is None
    stranger = fix_then_ipgeo(64500)
    assert stranger is not None and "IMPOSSIBLE_TRAVEL" in stranger.reasons


def test_the_holders_own_rooted_phone_is_not_a_risky_device_at_every_sign_in():
    p = history()
    t = T0 + 6 * D
    rooted = {"device_model": "Pixel", "is_rooted": True}
    own = DeviceEvent("r1", "a1", t, "login_success", device_id="d1", ip="198.51.100.1", **rooted)
    assert "RISKY_DEVICE" not in reasons(p, own)
    other = DeviceEvent("r2", "a1", t, "login_success", device_id="new", ip="198.51.100.1", **rooted)
    assert "RISKY_DEVICE" in reasons(p, other)
