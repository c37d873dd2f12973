"""Features of one event in the context of its account, computed once and shared by all
detectors (:func:`build_context`).

Reading and writing are kept apart on purpose: detectors score an event against the profile as it
was *before* the event, and only then does the profile learn from it (:mod:`detectors.update`).
"""

from __future__ import annotations

import math

from detectors import contract as c
from detectors.config import Config
from detectors.events import Event, LocationEvent, TransactionEvent
from detectors.facts import NO_FACTS, EventFacts
from detectors.geo import haversine_km
from detectors.profile import DAY_MS, FEATURE_NAMES, HOUR_MS, Address, CredentialChange, Profile, Seen

__all__ = ["Context", "build_context", "fix_error", "FEATURE_NAMES", "HOME_KM", "fix_error_km"]

#: GPS fixes are precise; IP geolocation is city-level at best.
IP_GEO_ERROR_KM = 250.0
MOBILE_GEO_ERROR_KM = 800.0
#: a GPS fix this close to the account's home centre puts a device "at home"
HOME_KM = 30.0


class Context:
    """One event and everything derived about it. Detectors read it and never change it."""

    __slots__ = (
        "event", "topic", "kind", "ts", "profile", "facts", "established", "restricted", "recent_alert",
        "device_suspect", "device_home", "device_home_net",
        "device_new", "device_young", "device_trusted", "young_device_h",
        "ip_new", "ip_suspect", "asn", "asn_new", "ip_type", "session_changed",
        "session_far", "net_fresh", "card_present", "cred_own_device",
        "country", "country_new", "distance_km", "speed_kmh", "travel_error_km",
        "untrusted", "origin_untrusted", "cred_age_h", "cred_kinds", "cred_suspicious", "cred_chain", "sim_age_h", "fails_recent",
        "money_out", "amount", "amount_z", "payee_new", "payee_added_h", "hour_share",
        "drain_ratio", "credit_ratio", "since_repay_h", "_features",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, None)

    @classmethod
    def _for_build(cls) -> "Context":
        """A context for :func:`build_context`, which sets every other slot on every path;
        cheaper than setting all of them to None first (this is the per-event hot path)."""
        x = cls.__new__(cls)
        x.country = x.country_new = x.distance_km = x.speed_kmh = None
        x.travel_error_km = x.since_repay_h = x.amount = x.amount_z = None
        x.payee_new = x.payee_added_h = x.drain_ratio = x.credit_ratio = None
        x._features = None
        return x

    def features(self) -> dict[str, float]:
        """Numeric features for the online models (missing ones are simply absent), computed
        once per event however many models ask. Callers must not modify the dict."""
        if self._features is None:
            self._features = self._compute_features()
        return self._features

    def _compute_features(self) -> dict[str, float]:
        x: dict[str, float] = {
            "device_new": float(bool(self.device_new)),
            "device_young": float(bool(self.device_young)),
            "ip_new": float(bool(self.ip_new)),
            "asn_new": float(bool(self.asn_new)),
            "country_new": float(bool(self.country_new)),
            "risky_network": float(self.ip_type in ("hosting", "tor", "vpn")),
            "fails": float(min(self.fails_recent or 0, 20)),
            "cred_recent": float(self.cred_age_h is not None and self.cred_age_h < 72),
            "money_out": float(bool(self.money_out)),
            "ip_accounts": float(min(self.facts.ip.accounts, 50)),
            "burst": self.facts.burst,
        }
        if self.amount is not None:
            x["log_amount"] = math.log1p(self.amount)
        if self.amount_z is not None:
            x["amount_z"] = max(-5.0, min(self.amount_z, 10.0))
        if self.hour_share is not None:
            x["hour_share"] = self.hour_share
        if self.speed_kmh is not None:
            x["log_speed"] = math.log1p(self.speed_kmh)
        if self.drain_ratio is not None:
            x["drain"] = self.drain_ratio
        if self.credit_ratio is not None:
            x["credit"] = self.credit_ratio
        return x


def fix_error_km(event: LocationEvent) -> float | None:
    """How far from the person a fix may be, in km; None when it does not locate the person at
    all (IP geolocation of a VPN, hosting provider or Tor exit locates the proxy).

    GPS is as precise as its ``accuracy_m``; IP geolocation is city-level at best, and a mobile
    carrier's addresses geolocate to its national gateways."""
    if event.kind == "gps_fix":
        return max(0.05, (event.accuracy_m or 50.0) / 1000.0)
    if event.ip_type in ("vpn", "hosting", "tor"):
        return None
    err = max(IP_GEO_ERROR_KM, (event.accuracy_m or 0.0) / 1000.0)
    return max(err, MOBILE_GEO_ERROR_KM) if event.ip_type == "mobile" else err


#: a session that moves to a network operator first seen less than this long ago moved to a new
#: one (the location fix of an address usually arrives just before its first use)
FRESH_MS = HOUR_MS
#: an address (and operator) first used this recently is fresh to the account
NET_FRESH_MS = DAY_MS
#: an address the account has used this long and this often, and never under suspicion, is its
#: home (or office) network: a new device first seen there is the holder's
HOME_NETWORK_MS = 3 * DAY_MS
HOME_NETWORK_USES = 5


def _home_network(entry: Seen | None, ts: int) -> bool:
    """Whether an address (an ``ips`` record) or an operator (an ``asns`` one) is the account's
    own: used for days, and often; an address also never under suspicion and not an anonymiser."""
    if entry is None or ts - entry.first < HOME_NETWORK_MS or entry.n < HOME_NETWORK_USES:
        return False
    return type(entry) is not Address or (not entry.suspect and entry.ip_type not in ("hosting", "tor", "vpn"))


def fix_error(profile: Profile, event: LocationEvent) -> float | None:
    """:func:`fix_error_km`, except that a mobile operator the account uses does not locate it:
    its addresses geolocate to one of its gateways, anywhere in its country, and a roaming phone
    is routed home, so the gateway is in the home country while the phone is abroad. (An operator
    the account has never used still locates its country - from the account's second day: on
    the first day we watch an account, what it uses was there before we looked.)"""
    if event.kind == "ip_geo" and event.ip_type == "mobile" and event.asn is not None and (
            str(event.asn) in profile.asns or event.ts < profile.first_ts + DAY_MS or not profile.n_events):
        return None
    return fix_error_km(event)


def _bound_at_home(profile: Profile, cred: CredentialChange) -> bool:
    """Whether a device registration (a change naming its device) has since been seen at the
    holder's home, which clears it."""
    if cred.bound_device is None:
        return False
    d = profile.devices.get(cred.bound_device)
    return d is not None and d.home >= 1


def _hours(ms: int) -> float:
    """Milliseconds as hours."""
    return ms / HOUR_MS




def build_context(profile: Profile, event: Event, cfg: Config, facts: EventFacts = NO_FACTS) -> Context:
    """Derive the features of ``event`` against ``profile`` (not modified), part by part in this
    order (a part reads what the parts before it derived): the account's standing, the device,
    the network and session, the location, credentials and failed logins, and money."""
    w = cfg.windows
    ts = event.ts
    x = Context._for_build()
    x.event, x.topic, x.kind, x.ts, x.profile, x.facts = event, event.topic, event.kind, ts, profile, facts
    x.established = profile.n_events >= w.min_history_events
    r = profile.restriction
    x.restricted = "none" if r.state in ("step_up", "frozen") and r.until and ts >= r.until else r.state
    last_alert = profile.actions.get("alert")
    x.recent_alert = last_alert.risk if last_alert and 0 <= ts - last_alert.ts <= DAY_MS else 0.0
    # a device (or network) already there when we started watching the account, its first day,
    # is not new, however recent
    settled = profile.first_ts + DAY_MS
    _device(x, profile, event, ts, settled, w.new_device_days * DAY_MS)
    ip_entry = _network(x, profile, event, ts, settled, facts)
    _location(x, profile, event, ts, ip_entry)
    cred_ms = w.credential_change_hours * HOUR_MS
    _credentials(x, profile, event, ts, cred_ms, w.failed_login_minutes * 60_000)
    _money(x, profile, event, ts, cred_ms)
    return x


def _device(x: Context, profile: Profile, event: Event, ts: int, settled: int, new_device_ms: int) -> None:
    """The account's youngest device, and the event's device (or its session's): new, young,
    trusted, suspect, seen at home."""
    young_first = None
    newer_than = max(settled, ts - new_device_ms)  # first seen after both: young
    for dev_id, entry in profile.devices.items():
        first = entry.first
        if first > newer_than and entry.trust != 1 and (young_first is None or first > young_first) \
                and not profile.is_good("device:" + dev_id, ts):
            young_first = first
    x.young_device_h = None if young_first is None else _hours(max(0, ts - young_first))
    dev = event.device_id
    if dev is not None:
        entry = profile.devices.get(dev)
        trusted = profile.is_good("device:" + dev, ts)
        x.device_new = entry is None and bool(profile.devices) and not trusted and ts > settled
        x.device_young = x.device_new or (entry is not None and entry.trust != 1 and entry.first > settled
                                          and ts - entry.first < new_device_ms and not trusted)
        x.device_trusted = trusted or (entry is not None and not x.device_young)
    else:
        # no device on the event: judge the device its session runs on, if known
        session = profile.sessions.get(event.session_id) if event.session_id else None
        entry = profile.devices.get(session.device) if session is not None and session.device else None
        x.device_new = False
        x.device_young = entry is not None and entry.trust != 1 and entry.first > settled \
            and ts - entry.first < new_device_ms
        x.device_trusted = entry is not None and not x.device_young
    # (entry: the event's device, or its session's)
    x.device_suspect = entry is not None and entry.trust == -1
    home = entry.home if entry is not None else 0
    x.device_home, x.device_home_net = home >= 1, home == 2


def _network(x: Context, profile: Profile, event: Event, ts: int, settled: int, facts: EventFacts) -> Address | None:
    """The event's address and operator: new, fresh, suspect, their type; a young device on the
    holder's home network; then the session's move (:func:`_session_moved`). Returns the
    address's record (None: not known)."""
    ip = event.ip
    ip_entry = profile.ips.get(ip) if ip else None
    if x.device_young and not x.device_home_net and _home_network(ip_entry, ts):
        # a new device on the holder's own broadband: their new phone (a GPS fix at home can be
        # spoofed, the account's long-used address much less so)
        x.device_home = x.device_home_net = True
    x.ip_new = ip is not None and ip_entry is None and bool(profile.ips)
    x.ip_suspect = ip_entry is not None and ip_entry.suspect
    asn = getattr(event, "asn", None)
    ip_type = getattr(event, "ip_type", None)
    if ip_entry is not None:
        asn = asn if asn is not None else ip_entry.asn
        ip_type = ip_type or ip_entry.ip_type
    asn = asn if asn is not None else facts.asn
    ip_type = ip_type or facts.ip_type
    x.asn, x.ip_type = asn, ip_type
    asn_entry = profile.asns.get(str(asn)) if asn is not None else None
    x.asn_new = asn is not None and bool(profile.asns) and asn_entry is None
    # the address or its operator first used by the account within the last day (after its
    # first day): still "new" for what happens next, though its login already made it known
    x.net_fresh = x.ip_new or x.asn_new or (
        ip_entry is not None and settled < ip_entry.first and ts - ip_entry.first < NET_FRESH_MS
        and (asn_entry is None or (settled < asn_entry.first and ts - asn_entry.first < NET_FRESH_MS)))
    _session_moved(x, profile, event, ts, settled, ip_entry, asn_entry)
    return ip_entry


def _session_moved(x: Context, profile: Profile, event: Event, ts: int, settled: int,
                   ip_entry: Address | None, asn_entry: Seen | None) -> None:
    """Whether the event's session moved to another network since it started
    (``session_changed``), and, worse, abroad or behind an anonymiser (``session_far``)."""
    ip, asn, ip_type = event.ip, x.asn, x.ip_type
    session = profile.sessions.get(event.session_id) if event.session_id else None
    session_asn = session_cc = None
    if session is not None and session.ip is not None:
        # the session's operator and country: known when it started, or learnt since from a
        # location fix of its first address (ip_geo usually arrives just after the login)
        first_ip = profile.ips.get(session.ip)
        if first_ip is not None:
            session_asn, session_cc = first_ip.asn, first_ip.country
        if session.asn is not None:
            session_asn = session.asn
    # a session that moves to a network operator the account has never used (not just another
    # IP of the same carrier, or the holder's home broadband switching IPv4/IPv6) or onto an
    # anonymising network
    x.session_changed = bool(
        session is not None and ip is not None and session.ip is not None and session.ip != ip
        and ((asn is not None and session_asn is not None and session_asn != asn
              and (x.asn_new or (ts - asn_entry.first < FRESH_MS and asn_entry.first > settled)))
             or (ip_type in ("hosting", "tor")
                 and (x.ip_new or (ip_entry is not None and ts - ip_entry.first < FRESH_MS)))))
    # ... and, worse, one that moved abroad or behind an anonymiser: a stolen token replayed
    # elsewhere, where a holder's phone leaving the home Wi-Fi stays with a local operator
    here = ip_entry.country if ip_entry is not None else None
    x.session_far = x.session_changed and (
        ip_type in ("hosting", "tor", "vpn")
        or (here is not None and session_cc is not None and here != session_cc))


def _location(x: Context, profile: Profile, event: Event, ts: int, ip_entry: Address | None) -> None:
    """The event's country and whether it is new; for a location fix, the distance from the
    last fix, its error and the speed needed to cover it."""
    if type(event) is LocationEvent:
        cc = event.country
        x.country = cc
        x.country_new = cc is not None and bool(profile.countries) and cc not in profile.countries \
            and not profile.is_good("country:" + cc, ts)
        err = fix_error(profile, event)
        last = profile.last_fix
        if last is not None and err is not None:
            dt_h = abs(ts - last.ts) / HOUR_MS
            if dt_h < 24:
                dist = haversine_km(last.lat, last.lon, event.lat, event.lon)
                x.distance_km = dist
                x.travel_error_km = err + last.err_km
                x.speed_kmh = max(0.0, dist - x.travel_error_km) / max(dt_h, 1 / 60)
    elif ip_entry is not None and ip_entry.country:
        x.country = ip_entry.country
        x.country_new = False


def _credentials(x: Context, profile: Profile, event: Event, ts: int, cred_ms: int, fail_ms: int) -> None:
    """Whether the event's origin is untrusted; the credential changes within ``cred_ms`` (their
    kinds, age, suspicion, chain, the SIM change's age); the failed logins within ``fail_ms``."""
    # the event comes from somewhere the account holder has not been seen using
    # (a young device seen at the holder's home is their new phone until shown otherwise)
    # (origin_untrusted: for a reason other than a young device)
    x.origin_untrusted = bool(
        x.session_changed or x.ip_type in ("hosting", "tor") or (not x.device_trusted and x.ip_new and x.asn_new))
    x.untrusted = (x.device_young and not x.device_home) or x.origin_untrusted
    creds = profile.creds
    recent = [(k, v.ts, v.suspicious and not _bound_at_home(profile, v)) for k, v in creds.items()
              if 0 <= ts - v.ts <= cred_ms] if creds else ()
    x.cred_own_device = False
    if recent:
        dev_id = event.device_id
        x.cred_own_device = dev_id is not None and all(
            creds[k].novel_device == dev_id for k, _, flag in recent if flag)
        x.cred_kinds = tuple(sorted(k for k, _, _ in recent))
        x.cred_age_h = _hours(ts - max(t for _, t, _ in recent))
        x.cred_suspicious = any(flag for _, _, flag in recent)
        # distinct suspicious changes of what the holder knows or owns (registering the device
        # itself is the first step of any new phone, so it does not lengthen the chain)
        x.cred_chain = sum(1 for k, _, flag in recent if flag and k != "device_bound")
        sim = creds.get("sim_change")
        x.sim_age_h = _hours(ts - sim.ts) if sim and 0 <= ts - sim.ts <= cred_ms else None
    else:  # the common case, kept cheap
        x.cred_kinds, x.cred_age_h, x.cred_suspicious, x.cred_chain, x.sim_age_h = (), None, False, 0, None
    if (x.cred_chain == 1 and x.sim_age_h is not None and x.device_trusted and not x.device_young
            and not x.device_suspect and not x.untrusted and not x.net_fresh
            and (x.young_device_h is None or x.young_device_h > x.sim_age_h)):
        # a SIM change alone, and since then only the holder's own settled device on a network
        # the account knows: the holder's new SIM (a swapper needs a device of their own)
        x.cred_suspicious, x.cred_chain = False, 0
    fails = profile.fails
    x.fails_recent = sum(1 for t in fails if 0 <= ts - t <= fail_ms) if fails else 0


def _money(x: Context, profile: Profile, event: Event, ts: int, cred_ms: int) -> None:
    """The share of the account's activity in the event's hour, the time since the last
    repayment; for a transaction: money out, card present, the amount's z-score, a new payee,
    the share of the balance or credit line it takes."""
    hour = (ts // HOUR_MS) % 24
    total = sum(profile.hours)
    x.hour_share = profile.hours[hour] / total if total >= 20 else None
    if profile.loan.last_repay:
        x.since_repay_h = _hours(ts - profile.loan.last_repay)
    x.card_present = False
    if type(event) is not TransactionEvent:
        x.money_out = False
        return
    x.money_out = event.kind in c.MONEY_OUT_KINDS
    # the holder's card at a till or cash machine: no app session, nothing a remote taker of
    # the account can do
    x.card_present = event.channel == "pos" and event.device_id is None and event.ip is None
    x.amount = event.amount
    n, mean, var = profile.amount.n, profile.amount.mean, profile.amount.var
    if x.money_out and event.amount is not None and n >= 3:
        x.amount_z = (math.log1p(event.amount) - mean) / math.sqrt(var + 0.25)
    payee = event.counterparty_id
    # a new shop is everyday life, a large sum at one (gift cards) is not; a new recipient of
    # a transfer is what a thief needs
    if payee is not None and (event.kind != "payment" or (x.amount_z is not None and x.amount_z > 1.5)):
        p_entry = profile.payees.get(payee)
        x.payee_new = p_entry is None and not profile.is_good("payee:" + payee, ts)
        # a payee added recently but not yet paid counts as new
        if p_entry is not None and not p_entry.paid and ts - p_entry.first < cred_ms:
            x.payee_new = not profile.is_good("payee:" + payee, ts)
            x.payee_added_h = _hours(ts - p_entry.first)
    if x.money_out and event.amount is not None:
        if event.kind == "loan_draw":
            limit = event.credit_limit or profile.credit_limit
            if limit:
                x.credit_ratio = min(1.0, event.amount / limit)
        elif event.balance_after is not None and event.amount > 0:
            before = event.balance_after + event.amount
            if before > 0:
                x.drain_ratio = min(1.0, event.amount / before)
        elif profile.balance is not None and profile.balance > 0:
            x.drain_ratio = min(1.0, event.amount / profile.balance)
