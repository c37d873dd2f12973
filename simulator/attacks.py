"""Account takeover attacks (label ``ato``).

Every attack draws its own kit, so no single rule catches a scenario: the infrastructure
(hosting, residential proxies in the victim's country or abroad, same-country mobile, VPN, Tor;
addresses fixed or rotating per step), the device (a new phone, an emulator, a rooted phone, a
clone of the victim's model, a desktop browser), whether GPS is reported (sometimes spoofed to
the victim's town), the gaps between steps (log-normal: seconds to hours, sometimes days), the
credential changes (none, or one to three of password/email/phone/MFA), a small test payment
first or not, and the cash-out (drain by one to four transfers to a new or unannounced mule
payee, cardless withdrawals, gift-card payments, or the whole credit line drawn and sent out).

credential_stuffing   a botnet (30-300 hosting / residential-proxy addresses, bot or spoofed
                      user agents, often no device id) tries many accounts 1-3 times each in a
                      20 min - 6 h window; on the few that succeed the takeover follows seconds to
                      days later. Each taken-over account is an incident ``credential_stuffing``;
                      each account only tried is an incident ``credential_stuffing_attempt``
                      (label ato, no loss) unless disabled.
phishing_takeover     login from a new device and place (after a failure or not), often
                      device_bound and credential changes, then the cash-out. The kit is a
                      real-time relay of the one-time codes, or (a share) push fatigue; it is
                      recorded in the label's ``attacker_passes`` only (see ``methods``).
sim_swap_payout       the carrier reports a ``sim_change``; minutes to hours later a password
                      reset and login on a new device, usually on same-country mobile
                      addresses, then the payout.
session_hijack        the victim logs in as usual; later a stolen token (the victim's
                      ``session_id`` and ``device_id``) is replayed from another address/ASN
                      with no login, then money out.
impossible_travel     the victim is active at home while the attacker logs in >1,000 km away
                      within minutes (before or after).
slow_takeover         a new device logs in quietly and comes back every day or two for 2-10
                      days (sometimes small purchases, sometimes a payee added early) before
                      cashing out.
warmed_device         a thief binds a device and warms it for 3-8 days at night (holder's clock)
                      from an address the holder never used, then changes e-mail / phone (what
                      would warn the holder) and drains; a share holds the holder's documents.
mule_ring             a ring takes over 3-20 accounts in one evening from a small farm of devices
                      and proxies and pays all of them out to one new mule payee.
remote_access_scam    the holder's own phone, line and session, driven by a caller through a
                      screen-sharing app: a new "safe account" payee and the balance sent to it.
"""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np

from simulator.actors import Actor
from simulator.geo import CITIES, COUNTRIES, HOSTING, HOME_COUNTRY_WEIGHT, MOBILE, RESIDENTIAL, TOR, VPN, distance_km
from simulator.population import EMULATORS, APP_VERSIONS, Device, device_id_for, make_desktop, make_mobile_device
from simulator.routine import home_geo, net_geo, place_at, primary_device
from simulator.timeline import DAY_MS, HOUR_MS, MINUTE_MS, Incident, local_ts

INFRA = ("hosting", "resproxy_home", "resproxy_foreign", "mobile_home", "vpn", "tor")
BOT_AGENTS = ("python-requests/2.31.0", "okhttp/4.9.3", "Go-http-client/2.0", "curl/8.4.0",
              "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36")  # fmt: skip


def gap(rnd: random.Random, median_s: float, sigma: float, floor_s: float = 1.0) -> int:
    """A log-normal pause in milliseconds."""
    return int(max(floor_s, math.exp(rnd.gauss(math.log(median_s), sigma))) * 1000)


def _day_start(sim, day: int) -> int:
    return sim.world.start_ms + day * DAY_MS


def _mule(p, rnd: random.Random) -> str:
    return "payee-" + hashlib.blake2b(f"mule:{p.idx}:{rnd.random()}".encode(), digest_size=5).hexdigest()


class Kit:
    """An attacker's infrastructure for one incident."""

    def __init__(self, p, rnd: random.Random, weights: tuple[float, ...], country: str | None = None) -> None:
        self.rnd = rnd
        self.infra = rnd.choices(INFRA, weights)[0]
        foreign = [c for c in COUNTRIES if c != p.country]
        if self.infra == "hosting":
            self.net = rnd.choice(HOSTING)
        elif self.infra == "resproxy_home":
            self.net = rnd.choice(RESIDENTIAL[p.country])
        elif self.infra == "resproxy_foreign":
            self.net = rnd.choice(RESIDENTIAL[country or rnd.choice(foreign)])
        elif self.infra == "mobile_home":
            self.net = rnd.choice(MOBILE[country or p.country])
        elif self.infra == "vpn":
            self.net = rnd.choice(VPN)
        else:
            self.net = rnd.choice(TOR)
        self.rotating = self.infra in ("resproxy_home", "resproxy_foreign", "mobile_home", "tor") and rnd.random() < 0.6
        self.k = rnd.randrange(1 << 30)
        self.v6 = self.infra == "mobile_home" and rnd.random() < 0.3

    def address(self) -> tuple[str, dict]:
        if self.rotating and self.rnd.random() < 0.5:
            self.k = self.rnd.randrange(1 << 30)
        ip = self.net.v6(self.k) if self.v6 else self.net.v4(self.k)
        return ip, net_geo(self.net, self.k)


def attacker_device(sim, p, rnd: random.Random, tag: str,
                    weights: tuple[float, ...] = (0.45, 0.15, 0.12, 0.15, 0.13)) -> Device:  # fmt: skip
    kind = rnd.choices(("phone", "emulator", "rooted", "clone", "desktop"), weights)[0]
    did = device_id_for(sim.seed, f"x/{p.account_id}/{tag}", kind)
    nrng = np.random.default_rng(rnd.randrange(1 << 62))
    if kind == "emulator":
        model, os = rnd.choice(EMULATORS)
        return Device(did, model, os, f"AtoBank/{rnd.choice(APP_VERSIONS)} ({os}; {model})", "phone", 1.0,
                      emulator=True, rooted=rnd.random() < 0.5)  # fmt: skip
    if kind == "desktop":
        return make_desktop(nrng, did)
    if kind == "clone":
        victim = primary_device(p, 0) or p.devices[0]
        if victim.kind == "phone":
            return Device(did, victim.model, victim.os, victim.user_agent, "phone", 1.0)
    d = make_mobile_device(nrng, did, "phone")
    if kind == "rooted":
        d = Device(d.device_id, d.model, d.os, d.user_agent, "phone", 1.0, rooted=True)
    return d


def _attacker(sim, p, inc: Incident, kit: Kit, device: Device | None) -> Actor:
    ip, geo = kit.address()
    return Actor(sim.world, p, device, ip, geo, inc)


def _step(att: Actor, kit: Kit) -> None:
    """Rotating proxies change address between steps."""
    if kit.rotating:
        att.move(*kit.address())


def _locate(att: Actor, kit: Kit, p, t: int, rnd: random.Random, p_ipgeo: float = 0.85) -> None:
    if rnd.random() < p_ipgeo:
        att.ipgeo(t + 800)
    if att.device is not None and att.device.kind == "phone" and rnd.random() < 0.3:
        if att.device.emulator and rnd.random() < 0.5:  # spoofed to the victim's town
            c = CITIES[p.city]
        else:
            c = CITIES[kit.net.city]
        att.gps(t + 2500, c.lat + rnd.uniform(-0.05, 0.05), c.lon + rnd.uniform(-0.05, 0.05), rnd)


def _credentials(att: Actor, kit: Kit, t: int, rnd: random.Random, weights=(0.3, 0.35, 0.2, 0.15)) -> int:
    n = rnd.choices((0, 1, 2, 3), weights)[0]
    for kind in rnd.sample(["password_change", "email_change", "phone_change", "mfa_change"], n):
        t += gap(rnd, 45, 1.3)
        _step(att, kit)
        att.device_event(t, kind)
    return t


def cash_out(att: Actor, kit: Kit, p, t: int, rnd: random.Random, allow_loan: bool = True) -> int:
    """Money out, in one of several styles; returns the time of the last step."""
    available = p.credit_limit - p.outstanding
    styles = ["transfer", "withdrawal", "cards"]
    weights = [0.55, 0.15, 0.15]
    if allow_loan and available >= 200:
        styles.append("loan")
        weights.append(0.45)
    style = rnd.choices(styles, weights)[0]
    mule = _mule(p, rnd)
    mule_added = False
    if rnd.random() < 0.3:  # a small test first
        if rnd.random() < 0.5:
            att.money(t, "payment", round(rnd.uniform(0.5, 5.0), 2), f"m-{rnd.randrange(40000):05d}")
        else:
            att.money(t, "payee_added", None, mule)
            mule_added = True
            t += gap(rnd, 40, 1.0)
            att.money(t, "transfer_out", round(rnd.uniform(1.0, 5.0), 2), mule)
        t += gap(rnd, 240, 1.6)
        _step(att, kit)
    if style == "loan":
        amount = float(round(available, -1) if available >= 100 else round(available, 2))
        att.money(t, "loan_draw", amount, credit_limit=p.credit_limit)
        p.outstanding += amount
        p.loan_day = min(p.loan_day, int((t - att.world.start_ms) // DAY_MS) + 14)
        t += gap(rnd, 60, 1.2)
        style = "transfer"
    if style == "transfer":
        if not mule_added and rnd.random() < 0.85:
            att.money(t, "payee_added", None, mule)
            t += gap(rnd, 60, 1.4)
        mules = [mule] + [_mule(p, rnd) for _ in range(rnd.choice((0, 0, 0, 1, 2)))]
        n = rnd.choice((1, 1, 1, 2, 2, 3, 4))
        for i in range(n):
            last = i == n - 1
            att.money(t, "transfer_out", None, mules[i % len(mules)], drain=rnd.uniform(0.85, 0.99) if last else rnd.uniform(0.25, 0.6))
            if not last:
                t += gap(rnd, 90, 1.3)
                _step(att, kit)
    elif style == "withdrawal":
        for i in range(rnd.choice((1, 1, 2))):
            att.money(t, "withdrawal", None, f"atm-{rnd.randrange(1000):03d}-{rnd.randrange(400):03d}", drain=rnd.uniform(0.4, 0.9))
            t += gap(rnd, 300, 1.0)
    else:  # gift cards, crypto vouchers: several payments to merchants the victim never used
        for _ in range(rnd.randint(2, 6)):
            att.money(t, "payment", float(round(math.exp(rnd.gauss(math.log(150), 0.6)), -1) or 20), f"m-gift-{rnd.randrange(60):02d}")
            t += gap(rnd, 60, 1.5)
    return t


def _attack_time(sim, p, day: int, rnd: random.Random) -> int:
    day_start = _day_start(sim, day)
    if rnd.random() < 0.5:  # the victim's waking hours, to blend in
        return local_ts(day_start, p.tz_min, rnd.uniform(8 * 60, 23 * 60))
    return day_start + rnd.randrange(DAY_MS - 2 * HOUR_MS)


# -- scenarios -------------------------------------------------------------------------------


def start_phishing_takeover(sim, inc: Incident, rnd: random.Random) -> None:
    p = sim.pop.personas[inc.account]
    # the phishing kit is drawn apart, so the events do not depend on the share
    fatigue = random.Random(f"{sim.seed}/phish-kit/{inc.account}").random() < sim.config.phishing_push_fatigue_share
    inc.params["kit"] = "push_fatigue" if fatigue else "relay"
    t = _attack_time(sim, p, inc.day, rnd)
    kit = Kit(p, rnd, (0.25, 0.25, 0.15, 0.1, 0.15, 0.1))
    att = _attacker(sim, p, inc, kit, attacker_device(sim, p, rnd, "phish"))
    for _ in range(rnd.choices((0, 1, 2), (0.7, 0.2, 0.1))[0]):
        t = att.fail(t) + gap(rnd, 20, 1.0)
    t = att.login(t)
    _locate(att, kit, p, t, rnd)
    if rnd.random() < 0.55:
        t = att.device_event(t + gap(rnd, 20, 1.0), "device_bound", with_fields=True)
    t = _credentials(att, kit, t, rnd)
    t += gap(rnd, 600, 1.8)
    if rnd.random() < 0.1:  # comes back another day
        t += int(rnd.uniform(1, 3) * DAY_MS)
        _step(att, kit)
        t = att.login(t)
        _locate(att, kit, p, t, rnd, 0.6)
        t += gap(rnd, 60, 1.0)
    t = cash_out(att, kit, p, t, rnd)
    if rnd.random() < 0.3:
        att.device_event(t + gap(rnd, 30, 1.0), "logout")


def start_sim_swap_payout(sim, inc: Incident, rnd: random.Random) -> None:
    p = sim.pop.personas[inc.account]
    t = _attack_time(sim, p, inc.day, rnd)
    carrier = Actor(sim.world, p, None, None, None, inc)
    t = carrier.device_event(t, "sim_change")
    t += gap(rnd, 1200, 1.2, floor_s=60)
    kit = Kit(p, rnd, (0.1, 0.25, 0.05, 0.6, 0.0, 0.0))
    att = _attacker(sim, p, inc, kit, attacker_device(sim, p, rnd, "sim", (0.6, 0.05, 0.1, 0.2, 0.05)))
    order = rnd.choices(("reset_login", "fail_reset_login", "login_change"), (0.7, 0.2, 0.1))[0]
    if order == "fail_reset_login":
        t = att.fail(t) + gap(rnd, 30, 0.8)
    if order in ("reset_login", "fail_reset_login"):
        att.device_event(t, "password_reset")
        t = att.login(t + gap(rnd, 60, 1.0))
    else:
        t = att.login(t)
        t = att.device_event(t + gap(rnd, 60, 1.0), "password_change")
    _locate(att, kit, p, t, rnd, 0.8)
    if rnd.random() < 0.4:
        t = att.device_event(t + gap(rnd, 40, 1.0), "mfa_change")
    if rnd.random() < 0.3:
        t = att.device_event(t + gap(rnd, 40, 1.0), "email_change")
    t += gap(rnd, 300, 1.5)
    cash_out(att, kit, p, t, rnd)


def start_session_hijack(sim, inc: Incident, rnd: random.Random) -> None:
    p = sim.pop.personas[inc.account]
    day_start = _day_start(sim, inc.day)
    t = local_ts(day_start, p.tz_min, rnd.uniform(7 * 60, 21 * 60))
    dev = primary_device(p, t)
    if dev is None:
        return
    victim = Actor(sim.world, p, dev, p.home_ip, home_geo(p), None)  # the holder: not recorded
    t = victim.login(t)
    p.sessions[dev.device_id] = victim.sid
    victim.ipgeo(t + 1000)
    if rnd.random() < 0.6:
        victim.money(t + gap(rnd, 90, 0.8), "payment", round(math.exp(rnd.gauss(p.spend_mu, 0.8)), 2), rnd.choice(p.merchants))
    t += gap(rnd, 900, 1.5, floor_s=30)
    kit = Kit(p, rnd, (0.35, 0.15, 0.2, 0.1, 0.2, 0.0))
    # the stolen token carries the victim's session and device fingerprint; no login
    att = Actor(sim.world, p, dev, *kit.address(), inc, session_id=victim.sid)
    if rnd.random() < 0.75:
        att.ipgeo(t)
        t += gap(rnd, 5, 0.8)
    if rnd.random() < 0.25:
        t = att.device_event(t + gap(rnd, 20, 1.0), rnd.choice(("email_change", "phone_change")))
    t += gap(rnd, 30, 1.2)
    cash_out(att, kit, p, t, rnd, allow_loan=rnd.random() < 0.5)


def start_impossible_travel(sim, inc: Incident, rnd: random.Random) -> None:
    p = sim.pop.personas[inc.account]
    home = CITIES[p.city]
    day_start = _day_start(sim, inc.day)
    t0 = max(day_start + HOUR_MS, local_ts(day_start, p.tz_min, rnd.uniform(8 * 60, 22 * 60)))
    dev = primary_device(p, t0)
    if dev is None:
        return
    far = [c for c in COUNTRIES if c != p.country and distance_km(home.lat, home.lon, CITIES[RESIDENTIAL[c][0].city].lat,
                                                                   CITIES[RESIDENTIAL[c][0].city].lon) > 1000]  # fmt: skip
    country = rnd.choice(far)
    kit = Kit(p, rnd, (0.0, 0.0, 0.5, 0.4, 0.0, 0.0), country=country)
    if kit.infra == "mobile_home":  # here: a mobile carrier of the far country
        kit.net = rnd.choice(MOBILE[country])
    kit.rotating = False
    victim = Actor(sim.world, p, dev, p.home_ip, home_geo(p), None, p.sessions.get(dev.device_id))
    delta = int(rnd.uniform(2, 45) * MINUTE_MS)
    attacker_first = rnd.random() < 0.3
    tv, ta = (t0 + delta, t0) if attacker_first else (t0, t0 + delta)
    if victim.sid is None or rnd.random() < 0.4:
        victim.login(tv)
        p.sessions[dev.device_id] = victim.sid
    here = place_at(p, tv + 2000)
    if here is not None:
        victim.gps(tv + 2000, here[0], here[1], rnd)
    victim.ipgeo(tv + 3000)
    att = _attacker(sim, p, inc, kit, attacker_device(sim, p, rnd, "far"))
    ta = att.login(ta)
    att.ipgeo(ta + 900)
    if rnd.random() < 0.5:
        c = CITIES[kit.net.city]
        att.gps(ta + 2500, c.lat + rnd.uniform(-0.05, 0.05), c.lon + rnd.uniform(-0.05, 0.05), rnd)
    if rnd.random() < 0.5 and victim.sid:
        victim.money(max(tv, ta) + gap(rnd, 300, 0.8), "payment", round(math.exp(rnd.gauss(p.spend_mu, 0.8)), 2), rnd.choice(p.merchants))
    t = _credentials(att, kit, ta, rnd, (0.6, 0.3, 0.1, 0.0))
    t += gap(rnd, 400, 1.5)
    cash_out(att, kit, p, t, rnd)


def start_slow_takeover(sim, inc: Incident, rnd: random.Random) -> None:
    p = sim.pop.personas[inc.account]
    t = _attack_time(sim, p, inc.day, rnd)
    kit = Kit(p, rnd, (0.1, 0.35, 0.1, 0.35, 0.1, 0.0))
    att = _attacker(sim, p, inc, kit, attacker_device(sim, p, rnd, "slow", (0.6, 0.1, 0.1, 0.15, 0.05)))
    t = att.login(t)
    _locate(att, kit, p, t, rnd, 0.75)
    if rnd.random() < 0.7:
        t = att.device_event(t + gap(rnd, 30, 1.0), "device_bound", with_fields=True)
    mule = None
    if rnd.random() < 0.4:
        mule = _mule(p, rnd)
        t = att.money(t + gap(rnd, 120, 1.0), "payee_added", None, mule)
    quiet_days = min(rnd.randint(2, 10), max(1, sim.config.days - 1 - inc.day))
    shops = rnd.random() < 0.5
    end_quiet = t + quiet_days * DAY_MS
    while True:
        t += int(rnd.uniform(0.6, 2.2) * DAY_MS)
        if t >= end_quiet:
            break
        _step(att, kit)
        if rnd.random() < 0.4:
            t = att.login(t)
        _locate(att, kit, p, t, rnd, 0.7)
        if shops and rnd.random() < 0.7:
            t = att.money(t + gap(rnd, 120, 1.0), "payment", round(rnd.uniform(3, 25), 2), rnd.choice(p.merchants + [f"m-{rnd.randrange(40000):05d}"]))
    t = end_quiet + int(rnd.uniform(0, 0.5) * DAY_MS)
    _step(att, kit)
    t = att.login(t) if rnd.random() < 0.6 else t
    t = _credentials(att, kit, t, rnd, (0.6, 0.25, 0.15, 0.0))
    if mule is not None and rnd.random() < 0.8:
        n = rnd.choice((1, 2))
        for i in range(n):
            t += gap(rnd, 120, 1.2)
            att.money(t, "transfer_out", None, mule, drain=rnd.uniform(0.85, 0.99) if i == n - 1 else rnd.uniform(0.3, 0.6))
    else:
        cash_out(att, kit, p, t + gap(rnd, 120, 1.2), rnd)


def start_credential_stuffing(sim, victims: list[Incident], attempts: list[Incident], rnd: random.Random) -> None:
    """One campaign: a botnet sprays ``victims + attempts``; the victims' passwords work."""
    personas = sim.pop.personas
    day = (victims or attempts)[0].day
    day_start = _day_start(sim, day)
    home_countries = list(HOME_COUNTRY_WEIGHT)
    mix = rnd.choice(("hosting", "resproxy", "mixed"))
    bots = []
    for _ in range(rnd.randint(30, 300)):
        r = rnd.random()
        if mix == "hosting" and r < 0.85 or mix == "mixed" and r < 0.45:
            net = rnd.choice(HOSTING)
        elif mix == "mixed" and r > 0.95:
            net = rnd.choice(TOR + VPN)
        else:
            net = rnd.choice(RESIDENTIAL[rnd.choice(home_countries) if rnd.random() < 0.6 else rnd.choice(COUNTRIES)])
        bots.append((net, rnd.randrange(1 << 30)))
    window = int(rnd.uniform(20, 360) * MINUTE_MS)
    t_start = day_start + rnd.randrange(DAY_MS - window - HOUR_MS)
    with_device = rnd.random() < 0.5  # fresh fingerprints per attempt, or a bare API client
    agent = rnd.choice(BOT_AGENTS)
    p_geo = rnd.choice((0.0, 0.3, 0.8))

    def bot_actor(p, inc: Incident, n: int) -> Actor:
        net, k = rnd.choice(bots)
        device = None
        if with_device:
            model, os = ("Windows PC", "Windows 10") if "Windows" in agent else ("unknown", "unknown")
            device = Device(device_id_for(sim.seed, f"bot/{p.account_id}", str(n)), model, os, agent, "desktop", 1.0)
        return Actor(sim.world, p, device, net.v4(k), net_geo(net, k), inc)

    for inc in attempts:
        p = personas[inc.account]
        for n in range(rnd.choices((1, 2, 3), (0.6, 0.3, 0.1))[0]):
            bot = bot_actor(p, inc, n)
            t = t_start + rnd.randrange(window)
            bot.fail(t, **({} if with_device else {"user_agent": agent}))
            if rnd.random() < p_geo:
                bot.ipgeo(t + 500)
    for inc in victims:
        p = personas[inc.account]
        t = t_start + rnd.randrange(window)
        for n in range(rnd.choices((0, 1, 2), (0.6, 0.3, 0.1))[0]):
            bot = bot_actor(p, inc, n)
            bot.fail(t, **({} if with_device else {"user_agent": agent}))
            t += gap(rnd, 60, 1.5)
        bot = bot_actor(p, inc, 9)
        t = bot.login(t)
        if rnd.random() < max(p_geo, 0.5):
            bot.ipgeo(t + 500)
        if rnd.random() < 0.3:  # the bot itself goes on
            att, kit = bot, Kit(p, rnd, (1, 0, 0, 0, 0, 0))
            kit.rotating = False
            t += gap(rnd, 20, 1.0)
        else:  # the list is sold or worked through later, by hand
            t += min(gap(rnd, 3 * 3600, 1.5, floor_s=60), 5 * DAY_MS)
            kit = Kit(p, rnd, (0.25, 0.3, 0.15, 0.1, 0.15, 0.05))
            att = _attacker(sim, p, inc, kit, attacker_device(sim, p, rnd, "stuff"))
            t = att.login(t)
            _locate(att, kit, p, t, rnd)
        t = _credentials(att, kit, t, rnd, (0.5, 0.3, 0.15, 0.05))
        if rnd.random() < 0.9:
            cash_out(att, kit, p, t + gap(rnd, 300, 1.5), rnd)


# -- attacks played from how they work (issue 18 item 3) ------------------------------------


def _never_used(p, kit: Kit, rnd: random.Random) -> None:
    """Make the kit's network one the holder never used (not their ISP nor their carrier)."""
    if kit.net is p.carrier:
        kit.net = next((n for n in MOBILE[p.country] if n is not p.carrier), rnd.choice(HOSTING))
    if kit.net is p.isp:
        kit.net = next((n for n in RESIDENTIAL[p.country] if n is not p.isp), rnd.choice(HOSTING))


def start_warmed_device(sim, inc: Incident, rnd: random.Random) -> None:
    """A thief with the password (an infostealer's log) binds a device of his own and warms it:
    he comes back every day or two for days, quietly, so it looks settled, but at night by the
    holder's clock and from an address the holder never used; then he first changes what would
    warn the holder (e-mail, phone number, sometimes MFA) and drains. A share holds the holder's
    identity documents as well ("fullz", ``kit`` documents: may pass ``id_check``)."""
    p = sim.pop.personas[inc.account]
    docs = random.Random(f"{sim.seed}/fullz/{inc.account}").random() < sim.config.warmed_documents_share
    inc.params["kit"] = "documents" if docs else "password"

    def night(day: int) -> int:
        return local_ts(_day_start(sim, day), p.tz_min, rnd.uniform(60, 5 * 60))

    kit = Kit(p, rnd, (0.15, 0.45, 0.1, 0.3, 0.0, 0.0))
    _never_used(p, kit, rnd)
    kit.rotating = kit.rotating and rnd.random() < 0.3  # a settled look wants a steady address
    att = _attacker(sim, p, inc, kit, attacker_device(sim, p, rnd, "warm", (0.6, 0.05, 0.05, 0.3, 0.0)))
    t = att.login(night(inc.day))
    _locate(att, kit, p, t, rnd, 0.8)
    t = att.device_event(t + gap(rnd, 30, 1.0), "device_bound", with_fields=True)
    warm_days = min(rnd.randint(3, 8), max(1, sim.config.days - 1 - inc.day))
    day = inc.day
    while True:
        day += rnd.choice((1, 1, 2))
        if day >= inc.day + warm_days:
            break
        _step(att, kit)
        t = night(day)
        if att.sid is None or rnd.random() < 0.5:
            t = att.login(t)
        _locate(att, kit, p, t, rnd, 0.7)
        if rnd.random() < 0.35:  # a small purchase at one of the holder's shops
            att.money(t + gap(rnd, 120, 1.0), "payment", round(rnd.uniform(3, 20), 2), rnd.choice(p.merchants))
    t = night(inc.day + warm_days)
    _step(att, kit)
    t = att.login(t)
    _locate(att, kit, p, t, rnd, 0.6)
    changes = ["email_change", "phone_change"] if rnd.random() < 0.75 else [rnd.choice(("email_change", "phone_change"))]
    rnd.shuffle(changes)
    if rnd.random() < 0.3:
        changes.append("mfa_change")
    for kind in changes:
        t = att.device_event(t + gap(rnd, 50, 1.0), kind)
    cash_out(att, kit, p, t + gap(rnd, 180, 1.3), rnd)


def start_mule_ring(sim, incs: list[Incident], rnd: random.Random) -> None:
    """A ring works through a list of stolen passwords in one evening: a small farm of devices
    and proxies shared across the accounts; on each, a login (sometimes after a miss), one and
    the same new payee (the ring's mule) and the balance sent to it, sometimes a loan drawn
    first. Many accounts paying one new payee within hours is the ring's trace."""
    personas = sim.pop.personas
    p0 = personas[incs[0].account]
    mule = "payee-" + hashlib.blake2b(f"ring:{sim.seed}:{p0.idx}".encode(), digest_size=5).hexdigest()
    farm = [attacker_device(sim, p0, rnd, f"ring{j}", (0.3, 0.4, 0.2, 0.0, 0.1)) for j in range(rnd.randint(1, 4))]
    kits = [Kit(p0, rnd, (0.3, 0.5, 0.1, 0.0, 0.1, 0.0)) for _ in range(rnd.randint(1, 3))]
    day_start = _day_start(sim, incs[0].day)
    window = int(rnd.uniform(1, 8) * HOUR_MS)
    t0 = day_start + rnd.randrange(max(1, DAY_MS - window - HOUR_MS))
    for inc in incs:
        p = personas[inc.account]
        kit = rnd.choice(kits)
        att = _attacker(sim, p, inc, kit, rnd.choice(farm))
        t = t0 + rnd.randrange(window)
        if rnd.random() < 0.2:
            t = att.fail(t) + gap(rnd, 20, 1.0)
        t = att.login(t)
        _locate(att, kit, p, t, rnd, 0.7)
        available = p.credit_limit - p.outstanding
        if available >= 200 and rnd.random() < 0.4:
            amount = float(round(available, -1))
            t = att.money(t + gap(rnd, 60, 1.0), "loan_draw", amount, credit_limit=p.credit_limit)
            p.outstanding += amount
        t = att.money(t + gap(rnd, 40, 1.0), "payee_added", None, mule)
        n = rnd.choice((1, 1, 2))
        for i in range(n):
            t += gap(rnd, 45, 1.0)
            att.money(t, "transfer_out", None, mule, drain=rnd.uniform(0.85, 0.99) if i == n - 1 else rnd.uniform(0.3, 0.6))


def start_remote_access_scam(sim, inc: Incident, rnd: random.Random) -> None:
    """A caller posing as the bank's fraud team has the holder install a screen-sharing app and
    drives the holder's own phone, on the holder's own line, at an ordinary hour: a login (or
    the open session), sometimes a loan drawn, a new payee (the "safe account") and transfers to
    it. Every event comes from the holder's device, address and session; the holder, coached,
    passes any quick check the app asks for."""
    p = sim.pop.personas[inc.account]
    day_start = _day_start(sim, inc.day)
    t = local_ts(day_start, p.tz_min, rnd.uniform(9 * 60, 20 * 60))
    dev = primary_device(p, t)
    if dev is None:
        return
    if rnd.random() < 0.7:
        ip, geo = p.home_ip, home_geo(p)
    else:
        net, k = p.carrier, rnd.randrange(1 << 20)
        ip, geo = net.v4(k), net_geo(net, k)
    att = Actor(sim.world, p, dev, ip, geo, inc, p.sessions.get(dev.device_id))
    if att.sid is None or rnd.random() < 0.6:
        t = att.login(t + gap(rnd, 300, 0.8))
        p.sessions[dev.device_id] = att.sid
    att.ipgeo(t + 1500)
    t += gap(rnd, 600, 0.7)  # the "security check": the screen-sharing app is installed
    available = p.credit_limit - p.outstanding
    if available >= 200 and rnd.random() < 0.5:
        amount = float(round(available, -1))
        t = att.money(t, "loan_draw", amount, credit_limit=p.credit_limit)
        p.outstanding += amount
        t += gap(rnd, 120, 0.8)
    safe = _mule(p, rnd)
    t = att.money(t, "payee_added", None, safe)
    n = rnd.choice((1, 2, 2, 3))
    for i in range(n):
        t += gap(rnd, 150, 0.9)
        att.money(t, "transfer_out", None, safe, drain=rnd.uniform(0.85, 0.99) if i == n - 1 else rnd.uniform(0.3, 0.6))


__all__ = [
    "Kit", "cash_out", "start_credential_stuffing", "start_phishing_takeover", "start_sim_swap_payout",
    "start_session_hijack", "start_impossible_travel", "start_slow_takeover", "start_warmed_device",
    "start_mule_ring", "start_remote_access_scam",
]  # fmt: skip
