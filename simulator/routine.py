"""Normal life, one simulated day at a time, for every account at once.

Per day the counts and times are drawn for the whole population with numpy (sessions per
account from each persona's rate and the weekday, local hours from a diurnal profile shifted by
the persona's chronotype and converted to UTC with the home city's offset); a plain loop then
turns each session into events:

* a ``login_success`` when the device has no open session (or the token expired), rarely after
  a ``login_failure`` typo; otherwise the session resumes with its old ``session_id``;
* a ``gps_fix`` from phones with location permission, an ``ip_geo`` lookup of the session's
  address (always on login);
* payments to habitual merchants, transfers to repeat payees, cash withdrawals, now and then a
  new payee; a ``logout`` sometimes.

The address depends on where the person is: home broadband (stable), the mobile carrier (a new
address of the same ASN nearly every session, some IPv6), the office NAT on working hours for
``corporate_nat`` accounts, a VPN for VPN users, a hotel line or roaming while travelling.
Phones also report background GPS fixes that follow the day: home at night, work on weekday
office hours, around town otherwise. Credit users draw and repay loans on a schedule.
"""

from __future__ import annotations

import math

import numpy as np

from simulator.geo import CITIES
from simulator.population import Persona, Population
from simulator.timeline import DAY_MS, DEVICE, HOUR_MS, LOCATION, TRANSACTION, World

# relative activity by local hour
_WEEKDAY = np.array([0.3, 0.15, 0.1, 0.08, 0.08, 0.15, 0.6, 1.6, 2.2, 1.8, 1.6, 1.8,
                     2.4, 2.2, 1.7, 1.6, 1.8, 2.2, 2.6, 2.8, 2.7, 2.3, 1.5, 0.8])  # fmt: skip
_WEEKEND = np.array([0.6, 0.4, 0.25, 0.12, 0.08, 0.08, 0.2, 0.5, 1.0, 1.6, 2.1, 2.4,
                     2.5, 2.3, 2.1, 2.0, 2.0, 2.1, 2.3, 2.4, 2.3, 2.0, 1.5, 1.0])  # fmt: skip
WEEKDAY_P = _WEEKDAY / _WEEKDAY.sum()
WEEKEND_P = _WEEKEND / _WEEKEND.sum()

P_RELOGIN = 0.3  # an open session still needs a fresh login (token expired)
P_TYPO = 0.03
P_LOGOUT = 0.12
P_IPGEO = 0.2  # ip lookup on a resumed session
MISC_DAILY = 0.002  # benign credential housekeeping (and carrier SIM swaps) per account per day
INQUIRY_DAILY = 0.004  # credit users: another lender asks
N_U = 14  # uniforms per session


def km_offset(lat: float, lon: float, dist_km: float, angle: float) -> tuple[float, float]:
    return (lat + dist_km * math.cos(angle) / 111.32,
            lon + dist_km * math.sin(angle) / (111.32 * max(0.1, math.cos(math.radians(lat)))))  # fmt: skip


def gps_fields(lat: float, lon: float, u1: float, u2: float, u3: float) -> dict:
    """A GPS fix near (lat, lon): accuracy 4-80 m, error within the accuracy."""
    acc = 4.0 + 76.0 * u1 * u1
    la, lo = km_offset(lat, lon, acc * u2 / 1000.0, u3 * 6.283185307)
    return {"lat": round(la, 6), "lon": round(lo, 6), "accuracy_m": round(acc, 1)}


def net_geo(net, k: int) -> dict:
    """City-level geolocation of address k of a network (deterministic per address)."""
    c = CITIES[net.city]
    la, lo = km_offset(c.lat, c.lon, (k % 23) * 0.9, (k % 360) * 0.01745)
    acc = 20000.0 if net.ip_type == "residential" else (100000.0 if net.ip_type == "mobile" else 50000.0)
    return {"lat": round(la, 4), "lon": round(lo, 4), "accuracy_m": acc, "country": net.country,
            "city": c.name, "asn": net.asn, "ip_type": net.ip_type}  # fmt: skip


def home_geo(p: Persona) -> dict:
    lat, lon, acc, city = p.home_geo
    return {"lat": lat, "lon": lon, "accuracy_m": acc, "country": p.country, "city": city,
            "asn": p.isp.asn, "ip_type": "residential"}  # fmt: skip


def mobile_address(net, k: int, v6: bool) -> str:
    return net.v6(k) if v6 else net.v4(k)


def _anchor(p: Persona, hidx: int, abroad_city: int) -> tuple[float, float]:
    """Where the person is at the start of UTC hour ``hidx`` (deterministic)."""
    k = (p.idx * 2654435761 + hidx * 40503) & 0xFFFFFFFF
    if abroad_city >= 0:
        c = CITIES[abroad_city]
        return km_offset(c.lat, c.lon, 4.0 * (k % 997) / 997, (k >> 11) % 628 / 100)
    local_min = hidx * 60 + p.tz_min
    h = (local_min // 60) % 24
    weekday = ((local_min // 1440) + 3) % 7
    if h >= 22 or h < 7:
        return p.lat, p.lon
    if weekday < 5 and 9 <= h < 17:
        return p.wlat, p.wlon
    if k % 3 == 0:
        return p.lat, p.lon
    c = CITIES[p.city]
    return km_offset(c.lat, c.lon, 8.0 * (k % 997) / 997, (k >> 11) % 628 / 100)


def place_at(p: Persona, ts: int) -> tuple[float, float, str] | None:
    """The person's position at ts: home at night, work on weekday office hours, around town
    otherwise, moving continuously (interpolated between hourly anchors); the destination city
    while abroad; None in the air."""
    trip = p.trip
    abroad = -1
    if trip is not None and trip[0] <= ts < trip[3]:
        if ts < trip[1] or ts >= trip[2]:
            return None
        abroad = trip[4]
    hidx, frac = divmod(ts, HOUR_MS)
    la0, lo0 = _anchor(p, hidx, abroad)
    la1, lo1 = _anchor(p, hidx + 1, abroad)
    f = frac / HOUR_MS
    la, lo = la0 + (la1 - la0) * f, lo0 + (lo1 - lo0) * f
    if abroad >= 0:
        mode = "abroad"
    elif la0 == la1 == p.lat and lo0 == lo1 == p.lon:
        mode = "home"
    elif la0 == la1 == p.wlat and lo0 == lo1 == p.wlon:
        mode = "work"
    else:
        mode = "around"
    return la, lo, mode


def primary_device(p: Persona, ts: int):
    """The phone the person carries at ts (falls back to any device in use)."""
    best = None
    for d in p.devices:
        if d.since <= ts < d.until:
            if d.kind == "phone":
                return d
            best = best or d
    return best


class Routine:
    """Generates the normal-life events of one day for the whole population."""

    def __init__(self, world: World, pop: Population, seed: int, ipv6_share: float) -> None:
        self.world = world
        self.pop = pop
        self.seed = seed
        self.ipv6_share = ipv6_share

    def run_day(self, day: int) -> None:
        world, pop = self.world, self.pop
        rng = np.random.default_rng([self.seed, 0xDA7, day])
        personas = pop.personas
        n = len(personas)
        day_start = world.start_ms + day * DAY_MS
        weekday = (day_start // DAY_MS + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
        weekend = weekday >= 5

        rate = pop.lam * (pop.weekend if weekend else 1.0)
        ns = rng.poisson(rate)
        acc = np.repeat(np.arange(n), ns)
        s = len(acc)
        hour = (rng.choice(24, size=s, p=WEEKEND_P if weekend else WEEKDAY_P) + pop.chrono[acc]) % 24
        minute_of_day = (hour * 60 - pop.tz_min[acc]) % 1440
        ts0 = day_start + minute_of_day * 60_000 + rng.integers(0, HOUR_MS, s)
        order = np.lexsort((ts0, acc))
        acc, hour, ts0 = acc[order], hour[order], ts0[order]
        ntx = rng.poisson(pop.tx_rate[acc])
        u = rng.random((s, N_U))
        t = int(ntx.sum())
        txu = rng.random((t, 6))
        txz = rng.standard_normal(t)

        acc_l, hour_l, ts_l, ntx_l = acc.tolist(), hour.tolist(), ts0.tolist(), ntx.tolist()
        u_l, txu_l, txz_l = u.tolist(), txu.tolist(), txz.tolist()
        session = self._session
        k = 0
        for i in range(s):
            m = ntx_l[i]
            session(personas[acc_l[i]], ts_l[i], hour_l[i], weekend, u_l[i], txu_l[k : k + m], txz_l[k : k + m])
            k += m

        self._pings(rng, day_start, weekend)
        self._loans(day, day_start, rng)
        self._misc(day_start, rng)

    # -- one session -------------------------------------------------------------------------

    def _where(self, p: Persona, dev, ts: int, hour: int, weekend: bool, u: list):
        """(ip, ip_geo fields, gps lat, gps lon) for a session, or None while in the air."""
        place = place_at(p, ts)
        if place is None:
            return None  # flying
        la, lo, mode = place
        if mode == "abroad":
            trip = p.trip
            if dev.kind == "phone" and u[1] < 0.6:
                net, kk = trip[7]
                kk += int(u[9] * 5000)
                return net.v4(kk), net_geo(net, kk), la, lo
            return trip[5], trip[6], la, lo
        office = p.office
        if (office is not None and mode == "work" and ts >= office[0]
                and (dev.kind == "desktop" or u[1] < 0.75)):  # fmt: skip
            return office[1], office[2], la, lo
        if p.vpn is not None and u[2] < p.vpn_p:
            net = p.vpn
            kk = int(u[9] * 4000)
            return net.v4(kk), net_geo(net, kk), la, lo
        if dev.kind == "phone" and (mode != "home" or u[1] < 0.12):
            net = p.carrier
            kk = int(u[9] * 60000)
            ip = net.v6(kk) if u[3] < self.ipv6_share * 1.5 else net.v4(kk)
            return ip, net_geo(net, kk), la, lo
        return p.home_ip, home_geo(p), la, lo

    def _session(self, p: Persona, ts: int, hour: int, weekend: bool, u: list, txu: list, txz: list) -> None:
        devs = [d for d in p.devices if d.since <= ts < d.until]
        if not devs:
            return
        if len(devs) == 1:
            dev = devs[0]
        else:
            total = sum(d.weight for d in devs)
            x = u[0] * total
            dev = devs[-1]
            for d in devs:
                x -= d.weight
                if x < 0:
                    dev = d
                    break
        where = self._where(p, dev, ts, hour, weekend, u)
        if where is None:
            return
        ip, geo, la, lo = where
        emit = self.world.emit
        did = dev.device_id
        rec = [] if p.watch is not None else None
        sid = p.sessions.get(did)
        if sid is None or u[4] < P_RELOGIN:
            if u[5] < P_TYPO:
                eid = emit(p, DEVICE, ts, "login_failure", {"device_id": did, "ip": ip, **dev.fields})
                if rec is not None:
                    rec.append((ts, eid, "login_failure", did, ip))
                ts += 4000 + int(u[5] * 400_000)
            sid = p.new_session()
            p.sessions[did] = sid
            eid = emit(p, DEVICE, ts, "login_success", {"device_id": did, "session_id": sid, "ip": ip, **dev.fields})
            if rec is not None:
                rec.append((ts, eid, "login_success", did, ip))
            login = True
        else:
            login = False
        if dev.kind != "desktop" and u[6] < p.gps_p:
            ts += 1000 + int(u[12] * 4000)
            f = gps_fields(la, lo, u[7], u[8], u[13])
            f["device_id"] = did
            eid = emit(p, LOCATION, ts, "gps_fix", f)
            if rec is not None:
                rec.append((ts, eid, "gps_fix", did, ip))
        if login or u[7] < P_IPGEO:
            ts += 300 + int(u[8] * 1500)
            f = dict(geo)
            f["ip"] = ip
            eid = emit(p, LOCATION, ts, "ip_geo", f)
            if rec is not None:
                rec.append((ts, eid, "ip_geo", did, ip))
        channel = "web" if dev.kind == "desktop" else "app"
        cur = p.currency
        for j in range(len(txu)):
            v = txu[j]
            ts += 15_000 + int(v[4] * v[4] * 600_000)
            kind_u = v[0]
            if kind_u < 0.68:
                # payment: habitual merchant mostly; some are card-present (no device, no ip)
                mer = p.merchants[int(v[1] * len(p.merchants))] if v[2] < 0.75 else f"m-{int(v[1] * 40000):05d}"
                amt = round(math.exp(p.spend_mu + 0.9 * txz[j]), 2)
                if v[3] < 0.3:
                    f = {"amount": amt, "currency": cur, "counterparty_id": mer, "channel": "pos"}
                else:
                    f = {"device_id": did, "session_id": sid, "ip": ip, "amount": amt, "currency": cur,
                         "counterparty_id": mer, "channel": channel}  # fmt: skip
                kind = "payment"
            elif kind_u < 0.86:
                payee = p.payees[int(v[1] * v[1] * len(p.payees))]
                amt = round(math.exp(p.spend_mu + 1.5 + 0.8 * txz[j]), 2)
                f = {"device_id": did, "session_id": sid, "ip": ip, "amount": amt, "currency": cur,
                     "counterparty_id": payee, "channel": channel}  # fmt: skip
                kind = "transfer_out"
            elif kind_u < 0.95:
                amt = float(20 * max(1, round(math.exp(p.spend_mu + 1.0 + 0.6 * txz[j]) / 20)))
                f = {"amount": amt, "currency": cur, "counterparty_id": f"atm-{p.city:03d}-{int(v[1] * 400):03d}", "channel": "pos"}
                kind = "withdrawal"
            else:
                payee = f"payee-{p.idx:x}{p.n:x}"
                eid = emit(p, TRANSACTION, ts, "payee_added",
                           {"device_id": did, "session_id": sid, "ip": ip, "counterparty_id": payee, "channel": channel})  # fmt: skip
                if rec is not None:
                    rec.append((ts, eid, "payee_added", did, ip))
                if len(p.payees) < 12:
                    p.payees.append(payee)
                ts += 20_000 + int(v[5] * 300_000)
                amt = round(math.exp(p.spend_mu + 1.2 + 0.8 * txz[j]), 2)
                f = {"device_id": did, "session_id": sid, "ip": ip, "amount": amt, "currency": cur,
                     "counterparty_id": payee, "channel": channel}  # fmt: skip
                kind = "transfer_out"
            eid = emit(p, TRANSACTION, ts, kind, f)
            if rec is not None:
                rec.append((ts, eid, kind, f.get("device_id"), f.get("ip")))
        if u[11] < P_LOGOUT:
            ts += 5000 + int(u[12] * 120_000)
            eid = emit(p, DEVICE, ts, "logout", {"device_id": did, "session_id": sid, "ip": ip})
            p.sessions.pop(did, None)
            if rec is not None:
                rec.append((ts, eid, "logout", did, ip))
        if rec:
            watch_record(p, rec)

    # -- background location, loans, housekeeping ---------------------------------------------

    def _pings(self, rng: np.random.Generator, day_start: int, weekend: bool) -> None:
        pop = self.pop
        counts = rng.poisson(pop.ping_rate)
        acc = np.repeat(np.arange(len(counts)), counts)
        m = len(acc)
        hour = rng.integers(0, 24, m)
        ts = day_start + ((hour * 60 - pop.tz_min[acc]) % 1440) * 60_000 + rng.integers(0, 3_600_000, m)
        u = rng.random((m, 5)).tolist()
        emit = self.world.emit
        personas = pop.personas
        for i, (a, h, t) in enumerate(zip(acc.tolist(), hour.tolist(), ts.tolist())):
            p = personas[a]
            dev = primary_device(p, t)
            if dev is None or dev.kind == "desktop":
                continue
            v = u[i]
            place = place_at(p, t)
            if place is None:
                continue
            la, lo = place[0], place[1]
            f = gps_fields(la, lo, v[0], v[1], v[2])
            f["device_id"] = dev.device_id
            eid = emit(p, LOCATION, t, "gps_fix", f)
            if p.watch is not None:
                watch_record(p, [(t, eid, "gps_fix", dev.device_id, None)])

    def _loans(self, day: int, day_start: int, rng: np.random.Generator) -> None:
        emit = self.world.emit
        due = [p for p in self.pop.personas if p.loan_day == day] if self.pop.credit.any() else []
        for p in due:
            t = day_start + int(((9 * 60 - p.tz_min) % 1440) * 60_000) + int(rng.integers(0, 10 * HOUR_MS))
            if p.outstanding <= 0:
                amt = float(round(p.credit_limit * rng.uniform(0.3, 1.0), -1))
                dev = primary_device(p, t)
                if dev is None:
                    p.loan_day = day + 3
                    continue
                sid = p.sessions.get(dev.device_id) or p.new_session()
                p.sessions[dev.device_id] = sid
                emit(p, TRANSACTION, t, "loan_draw",
                     {"device_id": dev.device_id, "session_id": sid, "ip": p.home_ip, "amount": amt,
                      "currency": p.currency, "channel": "app", "credit_limit": p.credit_limit})  # fmt: skip
                p.outstanding = amt
                p.installment = float(round(amt / int(rng.integers(2, 7)), 2))
                p.loan_day = day + int(rng.choice([7, 14, 14, 30]))
            else:
                amt = float(min(p.installment, p.outstanding)) or p.outstanding
                emit(p, TRANSACTION, t, "loan_repayment",
                     {"amount": round(amt, 2), "currency": p.currency, "channel": "api", "credit_limit": p.credit_limit})  # fmt: skip
                p.outstanding = round(p.outstanding - amt, 2)
                p.loan_day = day + (int(rng.integers(2, 21)) if p.outstanding <= 0 else int(rng.choice([7, 14, 30])))

    def _misc(self, day_start: int, rng: np.random.Generator) -> None:
        """Rare, benign credential housekeeping and credit checks, so no single kind is a tell."""
        pop = self.pop
        n = len(pop.personas)
        emit = self.world.emit
        hits = np.flatnonzero(rng.random(n) < MISC_DAILY).tolist()
        inq = np.flatnonzero((rng.random(n) < INQUIRY_DAILY) & pop.credit).tolist()
        offs = rng.integers(8 * HOUR_MS, 22 * HOUR_MS, len(hits) + len(inq)).tolist()
        kinds = rng.choice(["password_change", "mfa_change", "email_change", "device_bound", "phone_change", "sim_change"],
                           size=len(hits), p=[0.35, 0.2, 0.12, 0.1, 0.08, 0.15]).tolist()  # fmt: skip
        for j, a in enumerate(hits):
            p = pop.personas[a]
            t = day_start + (offs[j] - p.tz_min * 60_000) % DAY_MS
            dev = primary_device(p, t)
            if dev is None:
                continue
            if kinds[j] == "sim_change":  # reported by the carrier: no device, no address
                emit(p, DEVICE, t, "sim_change")
                continue
            f = {"device_id": dev.device_id, "ip": p.home_ip}
            sid = p.sessions.get(dev.device_id)
            if sid:
                f["session_id"] = sid
            if kinds[j] == "device_bound":
                f.update(dev.fields)
            emit(p, DEVICE, t, kinds[j], f)
        for j, a in enumerate(inq, start=len(hits)):
            p = pop.personas[a]
            t = day_start + (offs[j] - p.tz_min * 60_000) % DAY_MS
            emit(p, TRANSACTION, t, "credit_inquiry", {"lender_id": f"lender-{(a * 7 + j) % 23:02d}", "channel": "api"})


def watch_record(p: Persona, rec: list) -> None:
    """Add a session's events to the legit incident watching this account, if they match."""
    incident, since, until, field, value = p.watch
    for ts, eid, kind, did, ip in rec:
        if since <= ts < until and (field is None or (field == "device_id" and did == value) or (field == "ip" and ip == value)):
            incident.record(ts, eid, kind)


__all__ = ["place_at", "Routine", "gps_fields", "net_geo", "home_geo", "primary_device", "km_offset", "watch_record"]
