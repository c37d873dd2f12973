"""One contract suite for every registered detector (the idea of River's ``checks``).

Each name in :data:`detectors.registry.REGISTRY` is built with ``REGISTRY[name](Config(), 0)``
and run over the same realistic stream, in event-time order, the way the engine runs it: build
the context against the profile as it was, score, learn, then let the profile learn
(``observe``). The stream is:

* *background*: a few hundred sessions of ordinary life on 16 accounts (sign-ins from one device
  and IP, GPS fixes near home, payments to a few payees), enough for the online models to warm up;
* *the warm account*: about 50 ordinary events;
* *verdicts*: two dozen analyst labels (for the verdict model);
* *the tail*: the warm account taken over (failed logins, a new device and network, a password
  change, a new payee, a large transfer that empties the balance, a far-away location fix ten
  minutes after a home fix) and a credential-stuffing burst across the background accounts.

Checked for every detector: scoring changes neither the context nor the profile and is
repeatable; cold start is neutral; events with only their required fields are tolerated;
``state()``/``load_state()`` round-trips; the same seed gives the same output; findings are well
formed; and the detector fires on the example it declares (``example()``, see
:mod:`detectors.examples`). Last, the registry is checked to be the one list of detectors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pytest

from detectors.base import Detector, Finding
from detectors.config import Config
from detectors.events import DeviceEvent, Event, LocationEvent, TransactionEvent
from detectors.facts import NO_FACTS, EventFacts, FactsTable, source_updates
from detectors.context import Context, build_context
from detectors.update import observe
from detectors.profile import Profile
from detectors.reasons import REASONS
from detectors.registry import REGISTRY
from detectors.examples import judge

CFG = Config()
NAMES = sorted(REGISTRY)
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
HOME = (52.52, 13.405)  # Berlin
FAR = (1.3521, 103.8198)  # Singapore
WARM = "acct-warm"


def build(name: str) -> Detector:
    return REGISTRY[name](CFG, 0)


# -- the stream -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerdictStep:
    account_id: str
    features: dict
    is_ato: bool


Step = Any  # an Event or a VerdictStep


def ordinary_sessions(account: str, n_sessions: int, rng: random.Random, days: int = 20) -> list[Event]:
    """Sign-ins from one device and IP, GPS fixes near home, payments to a few payees."""
    i = int(account.rsplit("-", 1)[-1]) if account[-1].isdigit() else 99
    dev, ip, asn = f"dev-{account}", f"198.51.{i}.{10 + i}", 3320
    lat, lon = HOME[0] + rng.uniform(-0.1, 0.1), HOME[1] + rng.uniform(-0.1, 0.1)
    payees = [f"payee-{account}-{k}" for k in range(3)]
    hours = [rng.randint(7, 21) for _ in range(3)]
    balance = rng.uniform(2_000, 6_000)
    out: list[Event] = []
    for k in range(n_sessions):
        ts = T0 + rng.randrange(days) * DAY + rng.choice(hours) * HOUR + rng.randrange(60) * MINUTE
        sid = f"s-{account}-{k}"
        e = f"{account}-{k}"
        if rng.random() < 0.04:
            out.append(DeviceEvent(e + "-f", account, ts - MINUTE, "login_failure", device_id=dev, ip=ip))
        out.append(DeviceEvent(e + "-l", account, ts, "login_success", device_id=dev, session_id=sid, ip=ip,
                               device_model="Pixel 8", os="Android 15"))
        out.append(LocationEvent(e + "-g", account, ts + MINUTE, "gps_fix", lat + rng.gauss(0, 0.01),
                                 lon + rng.gauss(0, 0.01), device_id=dev, session_id=sid, ip=ip,
                                 accuracy_m=15.0, country="DE", city="Berlin", asn=asn, ip_type="residential"))
        if rng.random() < 0.8:
            amount = round(rng.lognormvariate(3.6, 0.6), 2)
            balance = max(50.0, balance - amount + rng.uniform(0, 1.2 * amount))
            out.append(TransactionEvent(e + "-p", account, ts + 2 * MINUTE, "payment", device_id=dev, session_id=sid,
                                        ip=ip, amount=amount, currency="EUR", counterparty_id=rng.choice(payees),
                                        channel="app", balance_after=round(balance, 2)))
    return out


def takeover(account: str, t: int) -> list[Event]:
    """The warm account taken over, step by step."""
    dev, ip, sid = f"dev-{account}", "198.51.99.109", "s-warm-home"
    bad_dev, bad_ip, bad_sid = "dev-attacker", "203.0.113.66", "s-attacker"
    return [
        LocationEvent("t-home", account, t, "gps_fix", *HOME, device_id=dev, session_id=sid, ip=ip,
                      accuracy_m=10.0, country="DE", asn=3320, ip_type="residential"),
        LocationEvent("t-far", account, t + 10 * MINUTE, "gps_fix", *FAR, device_id=dev, session_id=sid, ip=ip,
                      accuracy_m=10.0, country="SG", asn=3320, ip_type="residential"),
        *[DeviceEvent(f"t-fail-{k}", account, t + 20 * MINUTE + k * 1000, "login_failure", device_id=bad_dev,
                      ip=bad_ip) for k in range(6)],
        LocationEvent("t-geo", account, t + 21 * MINUTE, "ip_geo", 55.75, 37.62, device_id=bad_dev, ip=bad_ip,
                      country="RU", asn=64500, ip_type="hosting"),
        DeviceEvent("t-login", account, t + 22 * MINUTE, "login_success", device_id=bad_dev, session_id=bad_sid,
                    ip=bad_ip, device_model="Generic", os="Android 9", is_emulator=True),
        DeviceEvent("t-pw", account, t + 24 * MINUTE, "password_change", device_id=bad_dev, session_id=bad_sid,
                    ip=bad_ip),
        DeviceEvent("t-sess", account, t + 25 * MINUTE, "logout", device_id=dev, session_id=sid, ip=bad_ip),
        TransactionEvent("t-payee", account, t + 26 * MINUTE, "payee_added", device_id=bad_dev, session_id=bad_sid,
                         ip=bad_ip, counterparty_id="mule-1"),
        TransactionEvent("t-drain", account, t + 28 * MINUTE, "transfer_out", device_id=bad_dev, session_id=bad_sid,
                         ip=bad_ip, amount=9_500.0, currency="EUR", counterparty_id="mule-1", channel="web",
                         balance_after=12.0),
        TransactionEvent("t-loan", account, t + 30 * MINUTE, "loan_draw", device_id=bad_dev, session_id=bad_sid,
                         ip=bad_ip, amount=5_000.0, currency="EUR", counterparty_id="mule-1", credit_limit=5_000.0,
                         lender_id="bank"),
    ]


def stuffing(accounts: list[str], t: int) -> list[Event]:
    """One IP failing on many accounts within a minute, then getting in on one."""
    ip, dev = "192.0.2.200", "dev-bot"
    out: list[Event] = [DeviceEvent(f"cs-{k}", a, t + k * 500, "login_failure", device_id=dev, ip=ip)
                        for k, a in enumerate(accounts * 2)]
    out.append(DeviceEvent("cs-in", accounts[0], t + len(out) * 500, "login_success", device_id=dev, ip=ip,
                           session_id="s-bot"))
    return out


ATO_FEATURES = {"device_new": 1.0, "device_young": 1.0, "ip_new": 1.0, "asn_new": 1.0, "risky_network": 1.0,
                "fails": 6.0, "cred_recent": 1.0, "money_out": 1.0, "drain": 0.97, "amount_z": 4.5, "hour_share": 0.0}
LEGIT_FEATURES = {"device_new": 1.0, "device_young": 1.0, "ip_new": 0.0, "asn_new": 0.0, "risky_network": 0.0,
                  "fails": 0.0, "cred_recent": 0.0, "money_out": 1.0, "drain": 0.1, "amount_z": 0.2,
                  "hour_share": 0.08}


@lru_cache(maxsize=1)
def stream() -> tuple[tuple[list[Step], list[EventFacts | None]], int]:
    """The steps in order, the cross-account facts of each (computed once, in order), and the
    index where the tail starts."""
    rng = random.Random(2024)
    background = [f"acct-{k}" for k in range(16)]
    events: list[Event] = []
    for account in background:
        events += ordinary_sessions(account, 45, rng)
    events += ordinary_sessions(WARM, 20, rng)  # ~50 events
    events.sort(key=lambda e: e.ts)
    rng2 = random.Random(7)
    verdicts = [VerdictStep(WARM, {k: v + rng2.uniform(-0.05, 0.05) for k, v in (ATO_FEATURES if i % 3 == 0
                                                                           else LEGIT_FEATURES).items()},
                            i % 3 == 0) for i in range(24)]
    t = T0 + 21 * DAY + 3 * HOUR  # 03:00, an hour the accounts are never active
    tail = takeover(WARM, t) + stuffing(background[:10], t + 2 * HOUR)
    steps: list[Step] = [*events, *verdicts, *tail]
    # the driver's facts: every account's records below each event's bound (ts - facts_delay_ms)
    settings = CFG.stream.facts()
    table = FactsTable(settings)
    for s in steps:
        if not isinstance(s, VerdictStep):
            for u in source_updates(s):
                table.add(u)
    facts = [None if isinstance(s, VerdictStep) else table.facts(s, settings.bound(s.ts)) for s in steps]
    return (steps, facts), len(events) + len(verdicts)


def run(detector: Detector, steps: list[Step], facts: list, profiles: dict[str, Profile], check=None,
        risk: float = 0.0) -> list[Finding | None]:
    """Drive ``detector`` over ``steps`` as the engine does; ``check(x)`` scores (default
    ``detector.score``). Returns what each event scored."""
    results = []
    for step, f in zip(steps, facts):
        if isinstance(step, VerdictStep):
            detector.learn_verdict(step.features, step.is_ato)
            continue
        profile = profiles.setdefault(step.account_id, Profile())
        x = build_context(profile, step, CFG, f)
        results.append(check(x) if check else detector.score(x))
        detector.learn(x, risk)
        observe(profile, x, CFG)
    return results


def warm(name: str) -> tuple[Detector, dict[str, Profile]]:
    """A detector and the profiles after the stream up to the tail."""
    (steps, facts), tail = stream()
    d, profiles = build(name), {}
    run(d, steps[:tail], facts[:tail], profiles)
    return d, profiles


def copy_profiles(profiles: dict[str, Profile]) -> dict[str, Profile]:
    return {k: Profile.from_bytes(p.to_bytes()) for k, p in profiles.items()}


def assert_well_formed(d: Detector, f: Finding | None) -> None:
    if f is None:
        return
    assert isinstance(f, Finding)
    assert f.detector == d.name
    assert f.family == d.family
    assert 0.0 <= f.score <= 1.0
    assert f.reasons and all(code in REASONS for code in f.reasons), f.reasons


def snapshot(x: Context) -> tuple:
    # ``_features`` is the memo of ``features()``, compared by value below, not an input slot
    public = [s for s in Context.__slots__ if not s.startswith("_")]
    return tuple(getattr(x, s) for s in public), x.profile.to_bytes(), dict(x.features())


# -- minimal events: required fields only ------------------------------------------------------------

def minimal_events(account: str, t: int) -> list[Event]:
    out: list[Event] = []
    for k, kind in enumerate(("login_success", "login_failure", "logout", "device_bound", "password_change",
                              "sim_change", "mfa_change")):
        out.append(DeviceEvent(f"m-d{k}", account, t + k, kind))
    for k, kind in enumerate(("gps_fix", "ip_geo")):
        out.append(LocationEvent(f"m-l{k}", account, t + 100 + k, kind, *FAR))
    for k, kind in enumerate(("payment", "transfer_out", "withdrawal", "loan_draw", "loan_repayment")):
        out.append(TransactionEvent(f"m-t{k}", account, t + 200 + k, kind, amount=120.0))
    for k, kind in enumerate(("payee_added", "credit_inquiry", "limit_change")):
        out.append(TransactionEvent(f"m-x{k}", account, t + 300 + k, kind))
    return out


# -- the contract ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_registered_detector_follows_the_protocol(name):
    d = build(name)
    assert isinstance(d, Detector)
    assert d.name == name
    assert isinstance(d.family, str) and d.family
    assert isinstance(d.state(), bytes)


@pytest.mark.parametrize("name", NAMES)
def test_scoring_mutates_nothing_and_is_repeatable(name):
    (steps, facts), _ = stream()

    def check(x: Context) -> Finding | None:
        before = snapshot(x)
        first = d.score(x)
        assert snapshot(x) == before, "score() changed the context or the profile"
        assert d.score(x) == first, "score() is not repeatable"
        return first

    d = build(name)
    run(d, steps, facts, {}, check)


@pytest.mark.parametrize("name", NAMES)
def test_cold_start_is_neutral(name):
    """A fresh detector on an empty profile, with no cross-account facts either: nothing, or
    less than 0.5, for any single event (the takeover's and the stuffing's included).

    (Cross-account facts are knowledge about *other* accounts: with them a first sign-in from an
    IP failing on ten accounts may rightly score high, so they are left out here.)
    """
    (steps, _facts), tail = stream()
    first_events = [s for s in steps[tail:] if not isinstance(s, VerdictStep)]
    first_events += minimal_events("acct-new", T0) + ordinary_sessions("acct-new-1", 3, random.Random(1))
    for ev in first_events:
        d = build(name)
        finding = d.score(build_context(Profile(), ev, CFG, NO_FACTS))
        assert finding is None or finding.score < 0.5, (ev.event_id, ev.kind, finding)


@pytest.mark.parametrize("name", NAMES)
def test_missing_optional_fields_are_tolerated(name):
    d, profiles = warm(name)
    for profile in (Profile(), profiles[WARM]):
        for ev in minimal_events(WARM, T0 + 22 * DAY):
            x = build_context(profile, ev, CFG)
            assert_well_formed(d, d.score(x))
            d.learn(x, 0.0)
            d.learn(x, 0.9)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_scores_the_same_afterwards(name):
    (steps, facts), tail = stream()
    original, profiles = warm(name)
    data = original.state()
    assert isinstance(data, bytes)
    restored = build(name)
    restored.load_state(data)
    after_a = run(original, steps[tail:], facts[tail:], copy_profiles(profiles))
    after_b = run(restored, steps[tail:], facts[tail:], copy_profiles(profiles))
    assert after_b == after_a
    # and again from the restored one, after it has learned more
    again = build(name)
    again.load_state(restored.state())
    ordinary = ordinary_sessions(WARM, 10, random.Random(5), days=1)
    ordinary = [TransactionEvent(e.event_id, e.account_id, e.ts + 23 * DAY, e.kind, amount=e.amount)
                if isinstance(e, TransactionEvent) else e for e in ordinary]
    ordinary.sort(key=lambda e: e.ts)
    no_facts = [NO_FACTS] * len(ordinary)
    assert run(again, ordinary, no_facts, copy_profiles(profiles)) == \
        run(restored, ordinary, no_facts, copy_profiles(profiles))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(name):
    (steps, facts), _ = stream()
    a = run(build(name), steps, facts, {})
    b = run(build(name), steps, facts, {})
    assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_findings_are_well_formed(name):
    (steps, facts), _ = stream()
    d = build(name)
    for f in run(d, steps, facts, {}):
        assert_well_formed(d, f)
    # the same on the risky tail when every event is judged risky (models then refuse to learn)
    d = build(name)
    for f in run(d, steps, facts, {}, risk=0.9):
        assert_well_formed(d, f)


@pytest.mark.parametrize("name", NAMES)
def test_findings_come_only_from_declared_topics(name):
    """The engine calls a detector only for its ``topics``; a finding on another topic would be
    silently lost there, so none may exist."""
    (steps, facts), _ = stream()
    d = build(name)
    assert d.topics and d.topics <= {"device", "location", "transaction"}
    events = [s for s in steps if not isinstance(s, VerdictStep)]
    found = run(d, steps, facts, {})
    stray = {e.topic for e, f in zip(events, found) if f is not None and e.topic not in d.topics}
    assert not stray, f"{name} scored events of undeclared topics {stray}"


# -- declared examples ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_registered_detector_fires_on_the_example_it_declares(name):
    """Every detector class declares ``example()``: a history and an event it must fire on. A
    model also declares an ordinary event, which must score lower than the outlier once the model
    has warmed on the history."""
    d = build(name)
    example = type(d).example()
    found, ordinary = judge(d, example, CFG)
    assert found is not None and found.score > 0.0, f"{name} does not fire on its own example"
    assert_well_formed(d, found)
    if REGISTRY[name].kind == "model":
        assert example.ordinary is not None, f"{name} declares no ordinary event to compare with"
    if example.ordinary is not None:
        assert (ordinary.score if ordinary else 0.0) < found.score


# -- one registry -------------------------------------------------------------------------------------

def _detector_classes() -> set[type]:
    """Every class defined in detectors/rules and detectors/models that looks like a detector."""
    import importlib
    import pkgutil

    import detectors.models
    import detectors.rules

    found = set()
    for package in (detectors.rules, detectors.models):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if isinstance(obj, type) and obj.__module__ == module.__name__ \
                        and all(hasattr(obj, a) for a in ("name", "family", "topics", "score", "learn_verdict")):
                    found.add(obj)
    return found


def test_the_registry_is_the_one_list_of_detectors():
    from detectors.config import DEFAULT_DETECTORS
    from detectors.rules import RULES

    assert DEFAULT_DETECTORS == tuple(REGISTRY)
    assert RULES == {n: e.detector_class() for n, e in REGISTRY.items() if e.kind == "rule"}
    classes = {e.detector_class() for e in REGISTRY.values()}
    assert len(classes) == len(REGISTRY), "a class registered twice"
    for name, entry in REGISTRY.items():
        assert entry.name == name == entry.detector_class().name
    unregistered = {c.__qualname__ for c in _detector_classes() - classes}
    assert not unregistered, f"detector classes not in the registry: {sorted(unregistered)}"
