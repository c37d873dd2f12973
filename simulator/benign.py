"""Benign situations that look risky (label ``legit``).

Each ``start_*`` function runs on the incident's first day, emits the situation's own events and
may change the persona from then on (a trip, a new phone, an office line). Where normal life
goes on inside the situation (days abroad, life on the new phone, the first days behind the
office NAT, the shared tablet), the persona gets a *watch* and the normal-life events that match
it are recorded into the incident too, so a label covers what a detector actually sees.

travel          flight abroad at airliner speed (GPS at the departure airport, the arrival
                airport hours later), roaming or local-SIM mobile addresses and a hotel line
                there, normal life abroad for 2-9 days, the flight back.
new_phone       a new device id with a new model (sometimes another platform), or a fresh
                install on the same model: sometimes a sim_change first (new SIM), a failed
                login or two, login, device_bound, sometimes MFA re-enrolment; the old phone
                is retired within days.
shared_tablet   two people living together use one family tablet (one device id on both
                accounts, same home line); both accounts are labelled.
repay_redraw    repays a loan then draws again within hours; or pays down and shops for credit
                elsewhere (credit_inquiry from other lenders), sometimes a limit change.
password_reset  forgot the password: 2-6 login failures from the usual device and address, a
                reset, a successful login (sometimes from the laptop or on mobile data).
corporate_nat   an office or campus: 5-40 accounts behind one NAT address on weekday working
                hours from some day on.

What the holder can still pass during a situation (the label's ``holder_passes``) follows from
parameters recorded here in ``inc.params`` (``sms_lost``, ``old_phone_kept``,
``mfa_reenrolled``, ``role``); the rules are in ``simulator.methods``.
"""

from __future__ import annotations

import math
import random

from simulator import methods
from simulator.actors import Actor
from simulator.geo import BUSINESS, CITIES, MOBILE, RESIDENTIAL, distance_km
from simulator.population import Device, make_desktop, make_mobile_device, PHONES, device_id_for
from simulator.routine import home_geo, km_offset, net_geo, place_at, primary_device
from simulator.timeline import DAY_MS, HOUR_MS, MINUTE_MS, Incident, local_ts

import numpy as np


def _home_actor(sim, p, ts: int, incident: Incident | None, device=None) -> Actor:
    dev = device or primary_device(p, ts)
    return Actor(sim.world, p, dev, p.home_ip, home_geo(p), incident, p.sessions.get(dev.device_id) if dev else None)


def _day_start(sim, day: int) -> int:
    return sim.world.start_ms + day * DAY_MS


def start_travel(sim, inc: Incident, rnd: random.Random) -> None:
    back = _play_trip(sim, sim.pop.personas[inc.account], inc, rnd, inc.day)
    if back is not None:
        _trip_back(*back, rnd)


def _play_trip(sim, p, inc: Incident, rnd: random.Random, day: int):
    """A trip leaving on ``day``: the departure airport, arrival, the hotel. Returns what
    :func:`_trip_back` needs to play the way home (None when the holder has no device)."""
    home = CITIES[p.city]
    choices = [i for i, c in enumerate(CITIES) if c.country != p.country]
    weights = [CITIES[i].weight * (1.0 if distance_km(home.lat, home.lon, CITIES[i].lat, CITIES[i].lon) < 3000 else 0.35) for i in choices]
    dest = rnd.choices(choices, weights)[0]
    dc = CITIES[dest]
    km = distance_km(home.lat, home.lon, dc.lat, dc.lon)
    flight = int((km / rnd.uniform(650, 850) + rnd.uniform(0.4, 1.0)) * HOUR_MS)
    day_start = _day_start(sim, day)
    dep = local_ts(day_start, p.tz_min, rnd.uniform(6 * 60, 21 * 60))
    arr = dep + flight
    dep_back = arr + int(rnd.uniform(2, 9) * DAY_MS)
    arr_back = dep_back + flight + int(rnd.uniform(-0.2, 0.2) * HOUR_MS)
    hotel = rnd.choice(RESIDENTIAL[dc.country])
    hk = rnd.randrange(1 << 30)
    hotel_geo = net_geo(hotel, hk)
    local_sim = rnd.random() >= 0.5
    if not local_sim:
        roam = (p.carrier, rnd.randrange(1 << 20))  # roaming: the address still geolocates home
    else:
        roam = (rnd.choice(MOBILE[dc.country]), rnd.randrange(1 << 20))  # a local SIM / eSIM
    # does an SMS to the home number reach the traveller? drawn apart, so the events stay as they were
    u = random.Random(f"{sim.seed}/sms-abroad/{inc.account}").random()
    inc.params["sms_lost"] = u < (methods.LOCAL_SIM_NO_SMS if local_sim else methods.ROAMING_NO_SERVICE)
    p.trip = (dep, arr, dep_back, arr_back, dest, hotel.v4(hk), hotel_geo, roam)
    p.watch = (inc, dep - 3 * HOUR_MS, arr_back + 3 * HOUR_MS, None, None)

    me = _home_actor(sim, p, dep, inc)
    if me.device is None:
        return None
    # at the departure airport
    t = dep - int(rnd.uniform(40, 150) * MINUTE_MS)
    alat, alon = km_offset(home.lat, home.lon, rnd.uniform(12, 25), rnd.random() * 6.28)
    net, k = p.carrier, rnd.randrange(1 << 20)
    me.move(net.v4(k), net_geo(net, k))
    me.gps(t, alat, alon, rnd)
    if rnd.random() < 0.6:
        me.money(t + int(rnd.uniform(5, 30) * MINUTE_MS), "payment", round(math.exp(rnd.gauss(math.log(12), 0.5)), 2),
                 f"m-air-{p.city:03d}", channel="pos")  # fmt: skip
    # arrival: phone back on, GPS at the destination airport, a login through the roaming link
    t = arr + int(rnd.uniform(8, 45) * MINUTE_MS)
    blat, blon = km_offset(dc.lat, dc.lon, rnd.uniform(12, 30), rnd.random() * 6.28)
    rnet, rk = roam
    me.move(rnet.v4(rk), net_geo(rnet, rk))
    me.gps(t, blat, blon, rnd)
    t = me.login(t + int(rnd.uniform(1, 20) * MINUTE_MS))
    p.sessions[me.device.device_id] = me.sid
    me.ipgeo(t + 2000)
    t += int(rnd.uniform(20, 120) * MINUTE_MS)
    me.money(t, "payment", round(math.exp(rnd.gauss(math.log(35), 0.6)), 2), f"m-taxi-{dest:03d}", channel="app")
    # at the hotel
    t += int(rnd.uniform(30, 90) * MINUTE_MS)
    me.move(hotel.v4(hk), hotel_geo)
    me.ipgeo(t)
    return me, net, k, alat, alon, arr_back


def _trip_back(me: Actor, net, k: int, alat: float, alon: float, arr_back: int, rnd: random.Random) -> None:
    """Home again: GPS at the home airport on the mobile carrier, sometimes a login."""
    p = me.p
    t = arr_back + int(rnd.uniform(10, 50) * MINUTE_MS)
    me.move(net.v4(k + 7), net_geo(net, k + 7))
    me.gps(t, alat, alon, rnd)
    if rnd.random() < 0.5:
        me.login(t + int(rnd.uniform(2, 30) * MINUTE_MS))
        p.sessions[me.device.device_id] = me.sid


def start_new_phone(sim, inc: Incident, rnd: random.Random) -> None:
    p = sim.pop.personas[inc.account]
    day_start = _day_start(sim, inc.day)
    t = local_ts(day_start, p.tz_min, rnd.uniform(8 * 60, 22 * 60))
    old = primary_device(p, t)
    nrng = np.random.default_rng([sim.seed, 0x9E0, inc.account])
    new_id = device_id_for(sim.seed, p.account_id, f"newphone{inc.day}")
    if old is not None and old.kind == "phone" and rnd.random() < 0.4:
        # fresh install on the same model (reinstall, reset): new fingerprint, maybe a newer OS
        mi = next((i for i, ph in enumerate(PHONES) if ph[0] == old.model), None)
        dev = make_mobile_device(nrng, new_id, "phone", 1.0, since=t, model_index=mi)
    else:
        dev = make_mobile_device(nrng, new_id, "phone", 1.0, since=t)
    inc.params["old_phone_kept"] = False  # lost, broken or traded in: gone at once
    if old is not None and old.kind == "phone":
        kept_days = rnd.choice([0, 0, 0.5, 1, 3])
        old.until = t + int(kept_days * DAY_MS)
        inc.params["old_phone_kept"] = kept_days > 0
    p.devices.insert(0, dev)
    if rnd.random() < 0.2:  # a new SIM came with the new phone: the carrier reports it first
        Actor(sim.world, p, None, None, None, inc).device_event(t - int(rnd.uniform(5, 240) * MINUTE_MS), "sim_change")
    me = _home_actor(sim, p, t, inc, device=dev)
    if rnd.random() < 0.35:  # on mobile data in the shop
        net, k = p.carrier, rnd.randrange(1 << 20)
        me.move(net.v4(k), net_geo(net, k))
    for _ in range(rnd.choice([0, 0, 0, 1, 2])):
        t = me.fail(t) + int(rnd.uniform(10, 90) * 1000)
    t = me.login(t)
    p.sessions[dev.device_id] = me.sid
    me.ipgeo(t + 1500)
    t = me.device_event(t + int(rnd.uniform(5, 60) * 1000), "device_bound", with_fields=True)
    inc.params["mfa_reenrolled"] = rnd.random() < 0.4
    if inc.params["mfa_reenrolled"]:
        t = me.device_event(t + int(rnd.uniform(30, 400) * 1000), "mfa_change")
    here = place_at(p, t + 20_000)
    if p.gps_p > 0 and here is not None:
        me.gps(t + 20_000, here[0], here[1], rnd)
    if rnd.random() < 0.5:
        me.money(t + int(rnd.uniform(2, 180) * MINUTE_MS), "payment", round(math.exp(rnd.gauss(p.spend_mu, 0.8)), 2),
                 rnd.choice(p.merchants))  # fmt: skip
    p.watch = (inc, t, t + DAY_MS, "device_id", dev.device_id)


def start_shared_tablet(sim, owner_inc: Incident, sharer_inc: Incident, rnd: random.Random) -> None:
    """The owner's tablet becomes the family tablet: the sharer binds it and both use it."""
    pa = sim.pop.personas[owner_inc.account]
    pb = sim.pop.personas[sharer_inc.account]
    owner_inc.params["role"], sharer_inc.params["role"] = "owner", "sharer"
    tablet = next((d for d in pa.devices if d.kind == "tablet"), None)
    if tablet is None:
        tablet = make_mobile_device(np.random.default_rng([sim.seed, 0x7AB, pa.idx]),
                                    device_id_for(sim.seed, pa.account_id, "family-tablet"), "tablet", 0.3)  # fmt: skip
        pa.devices.append(tablet)
    day_start = _day_start(sim, sharer_inc.day)
    t = local_ts(day_start, pb.tz_min, rnd.uniform(17 * 60, 22 * 60))
    shared = Device(tablet.device_id, tablet.model, tablet.os, tablet.user_agent, "tablet", 0.3, since=t)
    pb.devices.append(shared)
    tablet.weight = max(tablet.weight, 0.3)
    b = _home_actor(sim, pb, t, sharer_inc, device=shared)
    if rnd.random() < 0.3:
        t = b.fail(t) + int(rnd.uniform(10, 60) * 1000)
    t = b.login(t)
    pb.sessions[shared.device_id] = b.sid
    b.ipgeo(t + 1200)
    t = b.device_event(t + int(rnd.uniform(10, 120) * 1000), "device_bound", with_fields=True)
    if rnd.random() < 0.6:
        b.money(t + int(rnd.uniform(1, 20) * MINUTE_MS), "payment", round(math.exp(rnd.gauss(pb.spend_mu, 0.8)), 2),
                rnd.choice(pb.merchants))  # fmt: skip
    # the owner picks the tablet up the same evening and logs back in
    a = _home_actor(sim, pa, t, owner_inc, device=tablet)
    ta = t + int(rnd.uniform(10, 180) * MINUTE_MS)
    ta = a.login(ta)
    pa.sessions[tablet.device_id] = a.sid
    a.ipgeo(ta + 1000)
    for p, inc in ((pa, owner_inc), (pb, sharer_inc)):
        p.watch = (inc, t, t + 3 * DAY_MS, "device_id", tablet.device_id)


def start_repay_redraw(sim, inc: Incident, rnd: random.Random) -> None:
    p = sim.pop.personas[inc.account]
    day_start = _day_start(sim, inc.day)
    t = local_ts(day_start, p.tz_min, rnd.uniform(8 * 60, 21 * 60))
    me = _home_actor(sim, p, t, inc)
    if me.sid is None:
        t = me.login(t)
        p.sessions[me.device.device_id] = me.sid
        me.ipgeo(t + 1000)
        t += 30_000
    owed = p.outstanding if p.outstanding > 0 else round(p.credit_limit * rnd.uniform(0.3, 0.8), -1)
    variant = rnd.random()
    if variant < 0.55:  # repay in full, draw again within hours
        me.money(t, "loan_repayment", owed, credit_limit=p.credit_limit)
        t += int(math.exp(rnd.gauss(math.log(90), 1.0)) * MINUTE_MS)
        amt = round(p.credit_limit * rnd.uniform(0.5, 1.0), -1)
        me.money(t, "loan_draw", amt, credit_limit=p.credit_limit)
        p.outstanding = amt
    elif variant < 0.8:  # pay down and shop for credit elsewhere
        part = owed if rnd.random() < 0.5 else round(owed * rnd.uniform(0.3, 0.7), 2)
        me.money(t, "loan_repayment", part, credit_limit=p.credit_limit)
        p.outstanding = round(max(0.0, p.outstanding - part), 2)
        for _ in range(rnd.choice([1, 1, 2])):
            t += int(rnd.uniform(10, 300) * MINUTE_MS)
            me.money(t, "credit_inquiry", None, channel="api", lender_id=f"lender-{rnd.randrange(23):02d}")
        if rnd.random() < 0.3:
            p.credit_limit = float(p.credit_limit * 1.5)
            me.money(t + HOUR_MS, "limit_change", None, channel="api", credit_limit=p.credit_limit)
    else:  # repay, redraw, and ask around too
        me.money(t, "loan_repayment", owed, credit_limit=p.credit_limit)
        t += int(rnd.uniform(15, 360) * MINUTE_MS)
        amt = round(p.credit_limit * rnd.uniform(0.4, 1.0), -1)
        me.money(t, "loan_draw", amt, credit_limit=p.credit_limit)
        p.outstanding = amt
        t += int(rnd.uniform(30, 600) * MINUTE_MS)
        me.money(t, "credit_inquiry", None, channel="api", lender_id=f"lender-{rnd.randrange(23):02d}")
    p.installment = round(max(p.outstanding, 1.0) / rnd.randint(2, 6), 2)
    p.loan_day = inc.day + rnd.choice([7, 14])


def start_password_reset(sim, inc: Incident, rnd: random.Random) -> None:
    p = sim.pop.personas[inc.account]
    day_start = _day_start(sim, inc.day)
    t = local_ts(day_start, p.tz_min, rnd.uniform(7 * 60, 23 * 60))
    dev = primary_device(p, t)
    desktops = [d for d in p.devices if d.kind == "desktop" and d.since <= t < d.until]
    if desktops and rnd.random() < 0.3:
        dev = desktops[0]
    me = _home_actor(sim, p, t, inc, device=dev)
    if dev is not None and dev.kind == "phone" and rnd.random() < 0.25:
        net, k = p.carrier, rnd.randrange(1 << 20)
        me.move(net.v4(k), net_geo(net, k))
    for _ in range(rnd.randint(2, 6)):
        t = me.fail(t) + int(rnd.uniform(4, 60) * 1000)
    t += int(rnd.uniform(0.5, 10) * MINUTE_MS)
    me.device_event(t, "password_reset")
    if rnd.random() < 0.15:
        t = me.fail(t + int(rnd.uniform(20, 120) * 1000))
    t = me.login(t + int(rnd.uniform(1, 5) * MINUTE_MS))
    if dev is not None:
        p.sessions[dev.device_id] = me.sid
    me.ipgeo(t + 1500)


def start_corporate_nat(sim, incs: list[Incident], rnd: random.Random) -> None:
    """One office: every member's weekday working-hours sessions go through one NAT address."""
    first = sim.pop.personas[incs[0].account]
    net = BUSINESS.get(first.country) or RESIDENTIAL[first.country][0]
    k = rnd.randrange(1 << 30)
    ip = net.v4(k)
    c = CITIES[first.city]
    geo = {"lat": round(c.lat + rnd.uniform(-0.05, 0.05), 4), "lon": round(c.lon + rnd.uniform(-0.05, 0.05), 4),
           "accuracy_m": 10000.0, "country": c.country, "city": c.name, "asn": net.asn,
           "ip_type": "residential" if rnd.random() < 0.8 else "unknown"}  # fmt: skip
    day_start = _day_start(sim, incs[0].day)
    for inc in incs:
        p = sim.pop.personas[inc.account]
        since = local_ts(day_start, p.tz_min, 8 * 60)
        p.office = (since, ip, geo)
        p.watch = (inc, since, sim.world.end_ms, "ip", ip)
        t = local_ts(day_start, p.tz_min, rnd.uniform(9 * 60, 11 * 60))
        dev = next((d for d in p.devices if d.kind == "desktop"), None) or primary_device(p, t)
        me = Actor(sim.world, p, dev, ip, geo, inc)
        t = me.login(t)
        if dev is not None:
            p.sessions[dev.device_id] = me.sid
        me.ipgeo(t + 1000)
        here = place_at(p, t + 3000)
        if dev is not None and dev.kind == "phone" and p.gps_p > 0 and here is not None:
            me.gps(t + 3000, here[0], here[1], rnd)


# -- look-alikes of takeovers, played from how holders' changes really happen ------------------


def _replace_phone(sim, p, inc: Incident, t: int, rnd: random.Random, tag: str, kept_days=(0,)) -> Device:
    """The holder's next phone from ``t``: a restore from backup onto the same model half the
    time (new fingerprint), otherwise another model; the old phone is gone after ``kept_days``
    (drawn). Records ``old_phone_kept`` and ``mfa_reenrolled`` is left to the caller."""
    old = primary_device(p, t)
    nrng = np.random.default_rng([sim.seed, 0x9E1, inc.account, inc.day])
    new_id = device_id_for(sim.seed, p.account_id, f"{tag}{inc.day}")
    mi = None
    if old is not None and old.kind == "phone" and rnd.random() < 0.5:
        mi = next((i for i, ph in enumerate(PHONES) if ph[0] == old.model), None)
    dev = make_mobile_device(nrng, new_id, "phone", 1.0, since=t, model_index=mi)
    kept = rnd.choice(kept_days)
    inc.params["old_phone_kept"] = bool(kept > 0 and old is not None and old.kind == "phone")
    if old is not None and old.kind == "phone":
        old.until = min(old.until, t + int(kept * DAY_MS))
    p.devices.insert(0, dev)
    return dev


def _set_up(me: Actor, inc: Incident, t: int, rnd: random.Random, failures=(0, 0, 0, 1), reenrol: float = 0.35) -> int:
    """Sign in on a new phone: a failure or two, login, ip lookup, device_bound, sometimes MFA
    re-enrolment (``mfa_reenrolled``). Returns the time of the last step."""
    for _ in range(rnd.choice(failures)):
        t = me.fail(t) + int(rnd.uniform(10, 90) * 1000)
    t = me.login(t)
    me.p.sessions[me.device.device_id] = me.sid
    me.ipgeo(t + 1500)
    t = me.device_event(t + int(rnd.uniform(5, 60) * 1000), "device_bound", with_fields=True)
    inc.params["mfa_reenrolled"] = rnd.random() < reenrol
    if inc.params["mfa_reenrolled"]:
        t = me.device_event(t + int(rnd.uniform(30, 400) * 1000), "mfa_change")
    return t


def start_trip_new_phone(sim, inc: Incident, rnd: random.Random) -> None:
    """Booked at home, then a trip (roaming or a local SIM, the airports, the hotel line); abroad
    the phone is lost, stolen or broken and the holder moves to a new one, restored from backup
    with the same SIM and number (an eSIM transfer makes the carrier report a ``sim_change``);
    life goes on abroad on the new phone and it comes home with them."""
    p = sim.pop.personas[inc.account]
    day_start = _day_start(sim, inc.day)
    t = local_ts(day_start, p.tz_min, rnd.uniform(18 * 60, 22 * 60))
    me = _home_actor(sim, p, t, inc)
    if me.device is None:
        return
    if me.sid is None:
        t = me.login(t)
        p.sessions[me.device.device_id] = me.sid
        me.ipgeo(t + 1000)
    me.money(t + int(rnd.uniform(1, 15) * MINUTE_MS), "payment", round(math.exp(rnd.gauss(math.log(420), 0.5)), 2),
             f"m-travel-{rnd.randrange(12):02d}")  # the booking  # fmt: skip
    dep_day = min(inc.day + rnd.randint(1, 6), max(inc.day + 1, sim.config.days - 3))
    back = _play_trip(sim, p, inc, rnd, dep_day)
    if back is None:
        return
    me, net, k, alat, alon, arr_back = back
    dep, arr, dep_back = p.trip[0], p.trip[1], p.trip[2]
    t = arr + int(rnd.uniform(0.1, 0.6) * (dep_back - arr))
    dev = _replace_phone(sim, p, inc, t, rnd, "tripphone")
    if rnd.random() < 0.25:  # an eSIM moved to the new phone: the carrier reports it
        Actor(sim.world, p, None, None, None, inc).device_event(t - int(rnd.uniform(5, 90) * MINUTE_MS), "sim_change")
    me = Actor(sim.world, p, dev, me.ip, me.geo, inc)
    if rnd.random() < 0.4:  # on the roaming link rather than the hotel's line
        rnet, rk = p.trip[7]
        me.move(rnet.v4(rk + 3), net_geo(rnet, rk + 3))
    t = _set_up(me, inc, t, rnd, failures=(0, 0, 1), reenrol=0.3)
    here = place_at(p, t + 20_000)
    if p.gps_p > 0 and here is not None:
        me.gps(t + 20_000, here[0], here[1], rnd)
    if rnd.random() < 0.7:
        me.money(t + int(rnd.uniform(10, 240) * MINUTE_MS), "payment", round(math.exp(rnd.gauss(math.log(30), 0.6)), 2),
                 f"m-{rnd.randrange(40000):05d}")  # a shop abroad  # fmt: skip
    _trip_back(me, net, k, alat, alon, arr_back, rnd)


def start_lost_phone_recovery(sim, inc: Incident, rnd: random.Random) -> None:
    """The phone is lost; usually the carrier gives a replacement SIM with the same number
    (``sim_change``) within a day or two; on a new phone at home the holder has forgotten the
    password the old phone remembered: failures, a ``password_reset`` from the home line, login,
    ``device_bound``, then the same payees and merchants as ever."""
    p = sim.pop.personas[inc.account]
    day_start = _day_start(sim, inc.day)
    t_lost = local_ts(day_start, p.tz_min, rnd.uniform(9 * 60, 22 * 60))
    replaced = rnd.random() < 0.7
    t = t_lost + int(rnd.uniform(3, 40) * HOUR_MS)
    if replaced:
        t_sim = t_lost + int(rnd.uniform(2, 30) * HOUR_MS)
        Actor(sim.world, p, None, None, None, inc).device_event(t_sim, "sim_change")
        t = max(t, t_sim + int(rnd.uniform(10, 180) * MINUTE_MS))
    inc.params["sms_lost"] = not replaced
    old = primary_device(p, t_lost)
    dev = _replace_phone(sim, p, inc, t, rnd, "recovered")
    if old is not None and old.kind == "phone":
        old.until = min(old.until, t_lost)  # lost: nothing from it after the loss
    me = Actor(sim.world, p, dev, p.home_ip, home_geo(p), inc)
    for _ in range(rnd.choice((0, 1, 2, 2, 3, 4))):
        t = me.fail(t) + int(rnd.uniform(8, 60) * 1000)
    t += int(rnd.uniform(0.5, 8) * MINUTE_MS)
    me.device_event(t, "password_reset")
    t = _set_up(me, inc, t + int(rnd.uniform(1, 5) * MINUTE_MS), rnd, failures=(0,), reenrol=0.45)
    here = place_at(p, t + 20_000)
    if p.gps_p > 0 and here is not None:
        me.gps(t + 20_000, here[0], here[1], rnd)
    for _ in range(rnd.choice((1, 1, 2))):  # the same payees as ever
        t += int(rnd.uniform(5, 300) * MINUTE_MS)
        me.money(t, "transfer_out", round(math.exp(rnd.gauss(p.spend_mu + 1.5, 0.8)), 2), rnd.choice(p.payees))
    if rnd.random() < 0.6:
        me.money(t + int(rnd.uniform(5, 120) * MINUTE_MS), "payment", round(math.exp(rnd.gauss(p.spend_mu, 0.8)), 2),
                 rnd.choice(p.merchants))  # fmt: skip
    p.watch = (inc, t_lost, t + DAY_MS, "device_id", dev.device_id)


def start_repay_new_phone(sim, inc: Incident, rnd: random.Random) -> None:
    """The seed's case: the loan is repaid in full, within days the holder moves to a new phone
    (at home, sometimes with a new SIM), and borrows again from the new phone."""
    p = sim.pop.personas[inc.account]
    day_start = _day_start(sim, inc.day)
    t = local_ts(day_start, p.tz_min, rnd.uniform(8 * 60, 21 * 60))
    owed = p.outstanding if p.outstanding > 0 else round(p.credit_limit * rnd.uniform(0.3, 0.8), -1)
    Actor(sim.world, p, None, None, None, inc).money(t, "loan_repayment", owed, channel="api", credit_limit=p.credit_limit)
    p.outstanding = 0.0
    t += int(rnd.uniform(0.1, 4) * DAY_MS)
    dev = _replace_phone(sim, p, inc, t, rnd, "repayphone", kept_days=(0, 0, 1, 3))
    if rnd.random() < 0.2:
        Actor(sim.world, p, None, None, None, inc).device_event(t - int(rnd.uniform(5, 240) * MINUTE_MS), "sim_change")
    me = Actor(sim.world, p, dev, p.home_ip, home_geo(p), inc)
    if rnd.random() < 0.3:  # set up in the shop, on mobile data
        net, k = p.carrier, rnd.randrange(1 << 20)
        me.move(net.v4(k), net_geo(net, k))
    t = _set_up(me, inc, t, rnd)
    here = place_at(p, t + 20_000)
    if p.gps_p > 0 and here is not None:
        me.gps(t + 20_000, here[0], here[1], rnd)
    t += int(math.exp(rnd.gauss(math.log(180), 1.2)) * MINUTE_MS)
    amt = round(p.credit_limit * rnd.uniform(0.4, 1.0), -1)
    me.money(t, "loan_draw", amt, credit_limit=p.credit_limit)
    p.outstanding = amt
    p.installment = round(max(amt, 1.0) / rnd.randint(2, 6), 2)
    p.loan_day = int((t - sim.world.start_ms) // DAY_MS) + rnd.choice([7, 14])
    p.watch = (inc, t - DAY_MS, t + DAY_MS, "device_id", dev.device_id)


def start_household_device(sim, inc: Incident, rnd: random.Random) -> None:
    """The holder signs in on a housemate's laptop or phone at home (their own phone is flat or
    in another room) for a few evenings: a device new to the account, on the account's own home
    line, a payment or a transfer to a usual payee; rarely bound, often signed out after."""
    p = sim.pop.personas[inc.account]
    inc.params["role"] = "sharer"
    day_start = _day_start(sim, inc.day)
    t = local_ts(day_start, p.tz_min, rnd.uniform(17 * 60, 23 * 60))
    nrng = np.random.default_rng([sim.seed, 0x40E, inc.account])
    did = device_id_for(sim.seed, f"housemate/{p.account_id}", str(inc.day))
    days = rnd.choice((1, 2, 3, 4))
    if rnd.random() < 0.5:
        dev = make_desktop(nrng, did, 0.25)
    else:
        dev = make_mobile_device(nrng, did, "tablet", 0.25)  # a housemate's phone or tablet, used at home
    dev.since, dev.until = t, t + days * DAY_MS
    p.devices.append(dev)
    me = Actor(sim.world, p, dev, p.home_ip, home_geo(p), inc)
    if rnd.random() < 0.35:
        t = me.fail(t) + int(rnd.uniform(10, 60) * 1000)
    t = me.login(t)
    p.sessions[did] = me.sid
    me.ipgeo(t + 1200)
    if rnd.random() < 0.15:
        t = me.device_event(t + int(rnd.uniform(10, 120) * 1000), "device_bound", with_fields=True)
    t += int(rnd.uniform(1, 20) * MINUTE_MS)
    if rnd.random() < 0.5:
        me.money(t, "transfer_out", round(math.exp(rnd.gauss(p.spend_mu + 1.5, 0.8)), 2), rnd.choice(p.payees))
    else:
        me.money(t, "payment", round(math.exp(rnd.gauss(p.spend_mu, 0.8)), 2), rnd.choice(p.merchants))
    if rnd.random() < 0.7:
        me.device_event(t + int(rnd.uniform(1, 10) * MINUTE_MS), "logout")
        p.sessions.pop(did, None)
    p.watch = (inc, t, dev.until, "device_id", did)


__all__ = [
    "start_travel", "start_new_phone", "start_shared_tablet", "start_repay_redraw",
    "start_password_reset", "start_corporate_nat", "start_trip_new_phone", "start_lost_phone_recovery",
    "start_repay_new_phone", "start_household_device",
]  # fmt: skip
