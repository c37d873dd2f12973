"""Rules as tables: a short account history, one event, the reason codes it raises."""

from __future__ import annotations

from detectors.config import Config
from detectors.events import DeviceEvent, LocationEvent, TransactionEvent
from detectors.features import build_context, observe
from detectors.profile import Profile
from detectors.rules import RULES

CFG = Config()
T0 = 1_764_000_000_000
H = 3_600_000
D = 24 * H


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
        for ev in (DeviceEvent("n1", "a1", t, "login_success", device_id="new", ip="198.51.100.1"),
                   LocationEvent("n2", "a1", t + 1000, "gps_fix", lat=lat, lon=lon, accuracy_m=20, device_id="new")):
            observe(p, build_context(p, ev, CFG), CFG)
    pay = TransactionEvent("n3", "a1", t + H, "payment", amount=20.0, counterparty_id="shop",
                           device_id="new", balance_after=1900.0)
    score = {}
    for name, p in (("away", away), ("home", home)):
        f = RULES["new_device"](CFG).score(build_context(p, pay, CFG))
        score[name] = f.score if f else 0.0
    assert score["home"] < score["away"]


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
