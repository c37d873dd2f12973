"""Rules as tables: a short account history, one event, the reason codes it raises."""

from __future__ import annotations

from detectors.config import Config
from detectors.events import DeviceEvent, LocationEvent, TransactionEvent
from detectors.context import build_context
from detectors.update import observe
from detectors.policy import CORROBORATE_AT
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
