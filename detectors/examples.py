"""Small account histories to show what a detector fires on: every registered detector declares
an :class:`Example` (its ``example()`` class method), and the contract suite checks that it fires
on it (``tests/test_detector_contract.py``). The rule tables of ``tests/test_rules.py`` build their
histories from the same helpers.

A *settled* account (:func:`settled`) is a week of one person's ordinary life: every afternoon a
sign-in from their phone on their home broadband in Berlin, a GPS fix at home, the ip_geo of the
home address and a small payment to the same shop.

>>> events = settled(days=2)
>>> [e.kind for e in events[:4]]
['login_success', 'ip_geo', 'gps_fix', 'payment']
>>> at(8, 3) - at(8)  # 03:00 on day 8 is 13 hours before its 16:00
-46800000
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, NamedTuple

from detectors.base import Finding
from detectors.config import Config
from detectors.context import build_context
from detectors.events import DeviceEvent, Event, LocationEvent, TransactionEvent
from detectors.facts import NO_FACTS, EventFacts
from detectors.profile import Profile
from detectors.update import observe

if TYPE_CHECKING:  # pragma: no cover
    from detectors.base import Detector

__all__ = ["ACCOUNT", "BALANCE", "Example", "HOME", "HOME_ASN", "HOME_DEVICE", "HOME_IP", "SHOP", "Step", "T0", "at",
           "busy", "judge", "settled"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: day 0 of every example, 16:00 UTC
T0 = 1_764_000_000_000
ACCOUNT = "a1"
HOME = (52.52, 13.40)  # Berlin
HOME_IP, HOME_ASN, HOME_DEVICE = "198.51.100.1", 3320, "d1"
#: the shop the holder pays every day, and how much is left after
SHOP, BALANCE = "shop", 2000.0


class Example(NamedTuple):
    """What a detector must fire on: the account's ``history`` (observed in order, and learned
    by the detector), then ``event`` with its cross-account ``facts``. A model also learns the
    ``verdicts`` (``(features, is_ato)``) before ``event``, and ``ordinary`` is an event like the
    history's that must score lower than ``event``."""

    history: tuple[Event, ...]
    event: Event
    facts: EventFacts = NO_FACTS
    verdicts: tuple[tuple[dict[str, float], bool], ...] = ()
    ordinary: Event | None = None


def at(day: float, hour: float = 16.0) -> int:
    """The time of ``hour`` o'clock (UTC) on ``day`` of the examples."""
    return T0 + int(day * DAY_MS) + int((hour - 16.0) * HOUR_MS)


def settled(days: int = 7, account: str = ACCOUNT, amount: float = 20.0) -> list[Event]:
    """``days`` of one holder's ordinary afternoons (see the module docstring)."""
    out: list[Event] = []
    for d in range(days):
        t = at(d)
        sid = f"home-{d}"
        out += [
            DeviceEvent(f"l{d}", account, t, "login_success", device_id=HOME_DEVICE, session_id=sid, ip=HOME_IP),
            LocationEvent(f"i{d}", account, t + 500, "ip_geo", HOME[0], HOME[1], ip=HOME_IP, country="DE",
                          asn=HOME_ASN, ip_type="residential"),
            LocationEvent(f"g{d}", account, t + 1000, "gps_fix", HOME[0], HOME[1], device_id=HOME_DEVICE,
                          session_id=sid, ip=HOME_IP, accuracy_m=20.0, country="DE"),
            TransactionEvent(f"p{d}", account, t + 2000, "payment", device_id=HOME_DEVICE, session_id=sid,
                             ip=HOME_IP, amount=amount, counterparty_id=SHOP, channel="app",
                             balance_after=BALANCE),
        ]
    return out


def busy(n: int, account: str = ACCOUNT, seed: int = 7) -> list[Event]:
    """``n`` sign-ins of the holder, about ten a day at the usual hours (08:00 to 20:00), from
    their phone on the home broadband, a few after a mistyped password; seeded."""
    rng = random.Random(seed)
    out: list[Event] = []
    for k in range(n):
        t = at(k // 10, 16) - 8 * HOUR_MS + rng.randrange(12 * 60) * 60_000
        if rng.random() < 0.1:
            out.append(DeviceEvent(f"b{k}f", account, t - 30_000, "login_failure", device_id=HOME_DEVICE,
                                   ip=HOME_IP))
        out.append(DeviceEvent(f"b{k}", account, t, "login_success", device_id=HOME_DEVICE, ip=HOME_IP))
    out.sort(key=lambda e: e.ts)
    return out


class Step(NamedTuple):
    """A history event with what the engine knew and decided about it: its cross-account
    ``facts``, the fused ``risk`` and the families of its strong findings (``evidence``), which
    the profile learns with it (a risky event leaves its device and address suspect)."""

    event: Event
    facts: EventFacts = NO_FACTS
    risk: float = 0.0
    evidence: frozenset[str] = frozenset()


def judge(detector: "Detector", example: Example, cfg: Config | None = None) -> tuple[Finding | None, Finding | None]:
    """Drive ``detector`` over ``example`` as the engine does (score, learn, then the profile
    learns), and return its findings on ``example.event`` and on ``example.ordinary`` (None
    when the example has none), both judged against the profile after the history."""
    cfg = cfg or Config()
    profile = Profile()
    for features, is_ato in example.verdicts:
        detector.learn_verdict(features, is_ato)
    for item in example.history:
        step = item if isinstance(item, Step) else Step(item)
        x = build_context(profile, step.event, cfg, step.facts)
        detector.score(x)
        detector.learn(x, step.risk)
        observe(profile, x, cfg, step.risk, step.evidence)
    found = detector.score(build_context(profile, example.event, cfg, example.facts))
    ordinary = None
    if example.ordinary is not None:
        ordinary = detector.score(build_context(profile, example.ordinary, cfg))
    return found, ordinary
