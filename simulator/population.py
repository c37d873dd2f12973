"""Personas: who the account holders are and how they live.

Each account gets a home (city, flat, workplace), a home ISP with a stable address, a mobile
carrier whose addresses change from session to session, one to three devices with stable ids,
models and OS versions, a daily rhythm (chronotype, weekday/weekend activity), a spending level
(log-normal amounts, repeat payees and merchants) and, for credit users, a loan cycle.

Scenario assignment happens here too, before the personas are built, because some situations
shape the population: the two accounts of a ``shared_tablet`` live together, the accounts of a
``corporate_nat`` office live in the office's city, ``repay_redraw`` and ``repay_new_phone``
accounts are credit users with a loan outstanding.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from simulator.config import SCENARIOS, SimConfig
from simulator.geo import (
    CITIES,
    COUNTRIES,
    CURRENCY,
    HOME_COUNTRY_WEIGHT,
    MOBILE,
    RESIDENTIAL,
    VPN,
    cities_of,
)

# (model, os family, os versions, relative weight)
PHONES: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    ("iPhone 15", "iOS", ("17.2.1", "17.3", "17.4.1"), 5.0),
    ("iPhone 14", "iOS", ("16.7.5", "17.2.1", "17.3"), 6.0),
    ("iPhone 13", "iOS", ("16.6", "17.1.2", "17.3"), 6.0),
    ("iPhone 12", "iOS", ("15.7.9", "16.7.4", "17.2"), 4.0),
    ("iPhone SE (3rd generation)", "iOS", ("16.7.2", "17.2"), 2.0),
    ("Samsung SM-S921B", "Android", ("14",), 3.0),
    ("Samsung SM-S911B", "Android", ("13", "14"), 4.0),
    ("Samsung SM-A546B", "Android", ("13", "14"), 5.0),
    ("Samsung SM-A146P", "Android", ("13", "14"), 3.0),
    ("Google Pixel 8", "Android", ("14",), 2.0),
    ("Google Pixel 7a", "Android", ("13", "14"), 2.0),
    ("Xiaomi Redmi Note 12", "Android", ("12", "13"), 3.0),
    ("OnePlus 11", "Android", ("13", "14"), 1.0),
    ("Motorola moto g54", "Android", ("13",), 1.0),
)  # fmt: skip
TABLETS: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    ("iPad Air (5th generation)", "iPadOS", ("16.7", "17.2"), 3.0),
    ("iPad (9th generation)", "iPadOS", ("15.8", "16.7", "17.1"), 3.0),
    ("Samsung SM-X700", "Android", ("13", "14"), 2.0),
    ("Lenovo Tab M10", "Android", ("12", "13"), 1.0),
)  # fmt: skip
# (model, os, user agent)
DESKTOPS: tuple[tuple[str, str, str], ...] = (
    ("Windows PC", "Windows 11", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
    ("Windows PC", "Windows 10", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"),
    ("Mac", "macOS 14.2", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15"),
    ("Mac", "macOS 13.6", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
    ("Linux PC", "Linux", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
)  # fmt: skip
EMULATORS: tuple[tuple[str, str], ...] = (
    ("sdk_gphone64_x86_64", "Android 13"),
    ("Genymotion Google Pixel 3", "Android 11"),
    ("BlueStacks SM-G965N", "Android 9"),
    ("Android SDK built for x86", "Android 12"),
)

APP_VERSIONS = ("5.12.0", "5.13.1", "5.14.0", "5.14.2")
PHONE_W = np.array([p[3] for p in PHONES]) / sum(p[3] for p in PHONES)
TABLET_W = np.array([p[3] for p in TABLETS]) / sum(p[3] for p in TABLETS)

INF = 1 << 62


class Device:
    """One device as the app sees it. ``since``/``until`` bound when its owner uses it."""

    __slots__ = ("device_id", "model", "os", "user_agent", "kind", "weight", "since", "until", "emulator", "rooted", "fields")

    def __init__(self, device_id: str, model: str, os: str, user_agent: str, kind: str, weight: float,
                 since: int = 0, until: int = INF, emulator: bool = False, rooted: bool = False,
                 cache: dict | None = None) -> None:  # fmt: skip
        self.device_id = device_id
        self.model = model
        self.os = os
        self.user_agent = user_agent
        self.kind = kind  # phone | tablet | desktop
        self.weight = weight
        self.since = since
        self.until = until
        self.emulator = emulator
        self.rooted = rooted
        #: the device fields of a login event, built once (and shared through ``cache``: read-only)
        key = (model, os, user_agent, emulator, rooted)
        fields = cache.get(key) if cache is not None else None
        if fields is None:
            fields = {"device_model": model, "os": os, "user_agent": user_agent,
                      "is_emulator": emulator, "is_rooted": rooted}  # fmt: skip
            if cache is not None:
                cache[key] = fields
        self.fields = fields


def device_id_for(seed: int, owner: str, slot: str) -> str:
    """An opaque, stable device fingerprint."""
    return hashlib.blake2b(f"{seed}:{owner}:{slot}".encode(), digest_size=10).hexdigest()


def mobile_device(device_id: str, kind: str, model_index: int, version_u: float, app_u: float,
                  weight: float = 1.0, since: int = 0, cache: dict | None = None) -> Device:  # fmt: skip
    """A phone or tablet of model ``model_index``; the uniforms pick OS and app versions."""
    model, family, versions, _ = (PHONES if kind == "phone" else TABLETS)[model_index]
    os = f"{family} {versions[int(version_u * len(versions))]}"
    ua = f"AtoBank/{APP_VERSIONS[int(app_u * len(APP_VERSIONS))]} ({os}; {model})"
    return Device(device_id, model, os, ua, kind, weight, since=since, cache=cache)


def make_mobile_device(rng: np.random.Generator, device_id: str, kind: str = "phone", weight: float = 1.0,
                       since: int = 0, model_index: int | None = None) -> Device:  # fmt: skip
    w = PHONE_W if kind == "phone" else TABLET_W
    mi = int(rng.choice(len(w), p=w)) if model_index is None else model_index
    return mobile_device(device_id, kind, mi, float(rng.random()), float(rng.random()), weight, since)


def make_desktop(rng: np.random.Generator, device_id: str, weight: float = 1.0) -> Device:
    model, os, ua = DESKTOPS[int(rng.integers(len(DESKTOPS)))]
    return Device(device_id, model, os, ua, "desktop", weight)


class Persona:
    """Compact per-account state carried from day to day."""

    __slots__ = (
        "idx", "account_id", "city", "country", "currency", "tz_min", "lat", "lon", "wlat", "wlon",
        "isp", "home_k", "home_ip", "home_geo", "carrier", "devices", "vpn", "vpn_p", "gps_p",
        "spend_mu", "payees", "merchants", "credit_limit", "outstanding", "loan_day", "installment",
        "sessions", "n", "sess_n", "balance", "salary", "payday", "watch", "trip", "office",
        "scenario",
    )  # fmt: skip

    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.account_id = f"acct-{idx:06d}"
        self.n = 0  # event counter (event ids are derived from it, see World.emit)
        self.sess_n = 0
        self.sessions: dict[str, str] = {}  # device_id -> open session id
        self.watch = None  # (incident, from_ts, until_ts, match_field, match_value) for legit incidents
        self.trip = None  # (dep, arr, dep_back, arr_back, dest_city, ip, network, geo) while travelling
        self.office = None  # (since_ts, ip, network, geo)
        self.scenario = ""

    def new_session(self) -> str:
        self.sess_n += 1
        return f"s{(self.sess_n * 0x9E3779B1 + self.idx * 0xC2B2AE35) & 0xFFFFFFFF:08x}{self.idx:05x}"


class Population:
    """The personas plus the numpy arrays the day loop draws from."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.personas: list[Persona] = []
        #: scenario index per account: -1 none, else an index into SCENARIOS
        self.codes: np.ndarray
        self.lam: np.ndarray  # sessions per weekday
        self.weekend: np.ndarray  # weekend multiplier
        self.chrono: np.ndarray  # hours added to the population's rhythm
        self.tx_rate: np.ndarray  # transactions per session
        self.ping_rate: np.ndarray  # background gps fixes per day
        self.tz_min: np.ndarray
        self.credit: np.ndarray
        #: shared_tablet pairs (owner, sharer); corporate_nat offices (lists of account indices)
        self.pairs: list[tuple[int, int]] = []
        self.offices: list[list[int]] = []


def assign_scenarios(config: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """At most one scenario per account: a categorical draw with the configured rates."""
    rates = np.array(list(config.rates().values()), dtype=float)
    p = np.concatenate([[max(0.0, 1.0 - rates.sum())], rates])
    p = p / p.sum()
    return rng.choice(len(p), size=config.accounts, p=p).astype(np.int64) - 1


def build_population(config: SimConfig) -> Population:
    seed = config.seed
    rng = np.random.default_rng([seed, 0xB0B])
    n = config.accounts
    pop = Population(config)
    codes = assign_scenarios(config, rng)

    # homes: country by market share, city by size within the country
    countries = list(HOME_COUNTRY_WEIGHT)
    cw = np.array(list(HOME_COUNTRY_WEIGHT.values()))
    country_of = rng.choice(len(countries), size=n, p=cw / cw.sum())
    city = np.empty(n, dtype=np.int64)
    for ci, cc in enumerate(countries):
        members = np.flatnonzero(country_of == ci)
        idx = cities_of(cc)
        w = np.array([CITIES[i].weight for i in idx])
        city[members] = np.array(idx)[rng.choice(len(idx), size=len(members), p=w / w.sum())]

    # shared_tablet: pairs of drawn accounts; the sharer moves in with the owner
    st = SCENARIOS.index("shared_tablet")
    members = rng.permutation(np.flatnonzero(codes == st))
    if len(members) % 2:
        codes[members[-1]] = -1
        members = members[:-1]
    pop.pairs = [(int(a), int(b)) for a, b in zip(members[0::2], members[1::2])]
    for a, b in pop.pairs:
        city[b] = city[a]

    # corporate_nat: offices of 5-40 accounts of one country, all living in the office's city
    cn = SCENARIOS.index("corporate_nat")
    members = np.flatnonzero(codes == cn)
    final: list[list[int]] = []
    for ci in range(len(countries)):
        group_members = [int(x) for x in members[country_of[members] == ci]]
        chunks: list[list[int]] = []
        pos = 0
        while pos < len(group_members):
            size = int(rng.integers(5, 41))
            chunk = group_members[pos : pos + size]
            pos += size
            if chunks and len(chunk) < 3:
                chunks[-1].extend(chunk)
            else:
                chunks.append(chunk)
        final.extend(chunks)
    for group in final:  # everyone lives in the city where most of the office already lives
        city[group] = int(np.bincount(city[group]).argmax())
    pop.offices = final

    credit = rng.random(n) < config.credit_share
    credit[codes == SCENARIOS.index("repay_redraw")] = True
    credit[codes == SCENARIOS.index("repay_new_phone")] = True

    # activity: dormant / regular / active people
    kind = rng.choice(3, size=n, p=[0.15, 0.6, 0.25])
    lam = np.choose(kind, [0.15, 1.0, 2.3]) * rng.lognormal(0.0, 0.25, n)
    pop.lam = lam
    pop.weekend = rng.uniform(0.6, 1.4, n)
    pop.chrono = rng.choice(np.arange(-2, 4), size=n, p=[0.08, 0.2, 0.35, 0.2, 0.1, 0.07])
    pop.tx_rate = rng.uniform(0.5, 1.4, n)
    gps_p = rng.choice([0.0, 0.5, 0.85], size=n, p=[0.25, 0.35, 0.4])  # location permission habits
    pop.ping_rate = np.where(gps_p > 0, rng.uniform(0.2, 1.2, n), 0.0)
    pop.credit = credit
    pop.codes = codes
    tz = np.array([c.utc_offset_min for c in CITIES])
    pop.tz_min = tz[city]

    ndev_extra = rng.choice(3, size=n, p=[0.45, 0.4, 0.15]).tolist()
    vpn_user = (rng.random(n) < config.vpn_share).tolist()
    v6_home = (rng.random(n) < config.ipv6_share * 0.6).tolist()
    spend_mu = rng.normal(math.log(22.0), 0.5, n).tolist()
    balance = np.round(rng.lognormal(math.log(1800.0), 0.9, n), 2).tolist()
    salary = np.round(rng.lognormal(math.log(2400.0), 0.45, n), 0).tolist()
    payday = rng.choice([1, 15, 25, 28], size=n).tolist()
    limits = rng.choice([500, 1000, 2000, 3000, 5000, 8000, 12000, 20000], size=n).tolist()
    # places: flat and workplace within the city, the home line's geolocation near the centre
    base_lat = np.array([CITIES[c].lat for c in range(len(CITIES))])[city]
    base_lon = np.array([CITIES[c].lon for c in range(len(CITIES))])[city]
    places = []
    for km in (9.0, 7.0, 4.0):
        r = km * np.sqrt(rng.random(n))
        a = rng.random(n) * 2 * math.pi
        lat = base_lat + r * np.cos(a) / 111.32
        lon = base_lon + r * np.sin(a) / (111.32 * np.cos(np.radians(base_lat)))
        places.append((lat.tolist(), lon.tolist()))
    (hlat, hlon), (wlat, wlon), (glat, glon) = places
    geo_acc = rng.choice([5000.0, 10000.0, 20000.0], size=n).tolist()
    isp_i = rng.integers(0, 2, n).tolist()
    carrier_i = rng.integers(0, 2, n).tolist()
    home_k = rng.integers(0, 1 << 30, n).tolist()
    # devices: a phone each, then tablets / desktops; ids are opaque random hex
    ids = rng.integers(0, 1 << 63, (n, 3)).tolist()
    phone_m = rng.choice(len(PHONES), size=n, p=PHONE_W).tolist()
    tablet_m = rng.choice(len(TABLETS), size=(n, 2), p=TABLET_W).tolist()
    dev_u = rng.random((n, 6)).tolist()
    vpn_i = rng.integers(0, len(VPN), n).tolist()
    vpn_p = rng.uniform(0.2, 0.9, n).tolist()
    payee_ids = rng.integers(0, 1 << 40, (n, 7)).tolist()
    npay = rng.integers(2, 8, n).tolist()
    merch = (rng.zipf(1.3, size=(n, 11)) % 40000).tolist()
    nmerch = rng.integers(4, 12, n).tolist()
    loan_u = rng.random((n, 3)).tolist()
    loan_n = rng.integers(2, 7, n).tolist()
    loan_day0 = rng.integers(0, 14, n).tolist()
    mod_u = rng.random(n).tolist()  # a few enthusiasts: rooted phones, an Android emulator on the PC
    merchant_names: dict[int, str] = {}
    cache: dict = {}
    rr = SCENARIOS.index("repay_redraw")
    rn = SCENARIOS.index("repay_new_phone")
    codes_l = codes.tolist()
    credit_l = credit.tolist()
    gps_l = gps_p.tolist()
    city_l = city.tolist()

    personas = pop.personas
    for i in range(n):
        p = Persona(i)
        c = city_l[i]
        home = CITIES[c]
        p.city = c
        p.country = home.country
        p.currency = CURRENCY.get(home.country, "EUR")
        p.tz_min = home.utc_offset_min
        p.lat, p.lon = hlat[i], hlon[i]
        p.wlat, p.wlon = wlat[i], wlon[i]
        p.isp = RESIDENTIAL[home.country][isp_i[i]]
        p.home_k = home_k[i]
        p.home_ip = p.isp.v6(p.home_k) if v6_home[i] else p.isp.v4(p.home_k)
        p.home_geo = (round(glat[i], 4), round(glon[i], 4), geo_acc[i], home.name)
        p.carrier = MOBILE[home.country][carrier_i[i]]
        u = dev_u[i]
        phone = mobile_device(f"{ids[i][0]:016x}{i & 0xFFFF:04x}", "phone", phone_m[i], u[0], u[1], 1.0, cache=cache)
        if mod_u[i] < 0.02 and "Android" in phone.os:
            phone = Device(phone.device_id, phone.model, phone.os, phone.user_agent, "phone", 1.0, rooted=True, cache=cache)
        devices = [phone]
        if 0.02 <= mod_u[i] < 0.023:
            model, os = EMULATORS[int(u[5] * len(EMULATORS))]
            devices.append(Device(f"{ids[i][2]:016x}{(i * 13) & 0xFFFF:04x}", model, os, f"AtoBank/5.14.0 ({os}; {model})",
                                  "desktop", 0.3, emulator=True, cache=cache))  # fmt: skip
        for k in range(ndev_extra[i]):
            did = f"{ids[i][k + 1]:016x}{(i * 7 + k) & 0xFFFF:04x}"
            if u[2 + k] < 0.5:
                devices.append(mobile_device(did, "tablet", tablet_m[i][k], u[4], u[5], 0.15, cache=cache))
            else:
                model, os, ua = DESKTOPS[int(u[4 + k] * len(DESKTOPS))]
                devices.append(Device(did, model, os, ua, "desktop", 0.2, cache=cache))
        p.devices = devices
        if vpn_user[i]:
            p.vpn = VPN[vpn_i[i]]
            p.vpn_p = vpn_p[i]
        else:
            p.vpn = None
            p.vpn_p = 0.0
        p.gps_p = gps_l[i]
        p.spend_mu = spend_mu[i]
        p.payees = [f"payee-{x:010x}" for x in payee_ids[i][: npay[i]]]
        ms = []
        for x in merch[i][: nmerch[i]]:
            name = merchant_names.get(x)
            if name is None:
                name = merchant_names[x] = f"m-{x:05d}"
            ms.append(name)
        p.merchants = ms
        p.balance = balance[i]
        p.salary = salary[i]
        p.payday = payday[i]
        if credit_l[i]:
            lu = loan_u[i]
            p.credit_limit = float(limits[i])
            if lu[0] < 0.5 or codes_l[i] in (rr, rn):
                p.outstanding = float(round(p.credit_limit * (0.3 + 0.6 * lu[1]), -1))
                p.installment = float(round(p.outstanding / loan_n[i], 2))
            else:
                p.outstanding = 0.0
                p.installment = 0.0
            p.loan_day = loan_day0[i]
        else:
            p.credit_limit = 0.0
            p.outstanding = 0.0
            p.installment = 0.0
            p.loan_day = 1 << 30
        p.scenario = SCENARIOS[codes_l[i]] if codes_l[i] >= 0 else ""
        personas.append(p)

    # shared homes: same flat, same home line
    for a, b in pop.pairs:
        pa, pb = personas[a], personas[b]
        pb.lat, pb.lon = pa.lat, pa.lon
        pb.isp, pb.home_k, pb.home_ip, pb.home_geo = pa.isp, pa.home_k, pa.home_ip, pa.home_geo
        pb.carrier = pa.carrier if rng.random() < 0.6 else pb.carrier
    return pop


__all__ = ["Device", "Persona", "Population", "assign_scenarios", "build_population", "COUNTRIES"]
