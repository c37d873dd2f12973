"""Partners who see part of each attack, and tell (``atoguard simulate --partners``).

Contract v3, "Partners' signals": a partner's security event reaches atoguard as an input line of
topic ``signals`` with the contract's fields (``event_id`` from a hash of the issuer and the SET's
``jti``; ``ts`` when the receiver accepted it, a few seconds to two minutes after the partner's
``event_ts``). Three honest partners, each imperfect:

* **an e-mail provider** (``https://mail.example``, subject format ``email``) sees phishing and
  stuffing: a phished mailbox as ``credential_compromise`` (35% of phishing takeovers, from half
  an hour before the thief reaches us to hours later; 15% get a ``sessions_revoked`` by the
  provider later that day), breached passwords of stuffing victims (20%) and of the accounts the
  botnet only tried (10%), 20% of slow takeovers. It also reports the holders themselves: breach
  notices of ordinary accounts (1% in 30 days), their own password changes (3%, and 30% of
  password resets: ``credential_change``, initiating entity ``user``) and their own sign-outs
  everywhere (2%, ``sessions_revoked``, ``user``);
* **a carrier** (``https://carrier.example``, ``phone_number``) sees SIM swaps: half of them as
  ``identifier_changed``, 1 to 90 minutes after the swap; and a quarter of the holders' own new
  SIMs in a new phone, the same way;
* **another lender** (``https://lender.example``, ``opaque``) sees the same thief draining it:
  ``account_disabled`` (``hijacking``) for 15% of attacks that move money, from two hours before
  our first loss to a day and a half after it: many after the loss.

``--false-partner`` adds a lender that sends only false signals (``https://false-lender.example``):
``account_disabled`` (``hijacking``) or ``credential_compromise`` on 3% of the ordinary accounts
(no labelled situation), at random times. It must freeze nobody.

The same seed gives the same signals; each draw comes from a generator seeded by the seed and a
purpose tag. Signals are not part of any incident's ``event_ids`` (they are a partner's word,
not the person's action).
"""

from __future__ import annotations

import hashlib
import heapq
import random
import re
from dataclasses import dataclass
from typing import Iterable

import orjson

from simulator.config import MONEY_KINDS
from simulator.timeline import DAY_MS, HOUR_MS, MINUTE_MS

__all__ = ["PartnerConfig", "Partners", "SIGNALS_TOPIC", "MAIL", "CARRIER", "LENDER", "FALSE_LENDER"]

SIGNALS_TOPIC = "signals"
_PREFIX = b'{"topic":"signals","value":'
_SUFFIX = b"}\n"
_TS = re.compile(rb'"ts":(\d+)')

#: issuer, partner role, subject format
MAIL = ("https://mail.example", "email_provider", "email")
CARRIER = ("https://carrier.example", "carrier", "phone_number")
LENDER = ("https://lender.example", "lender", "opaque")
FALSE_LENDER = ("https://false-lender.example", "lender", "opaque")


@dataclass(frozen=True)
class PartnerConfig:
    """Which partners report, and how often (shares of incidents or of accounts per 30 days)."""

    honest: bool = True
    false_partner: bool = False
    phishing_reported: float = 0.35
    phishing_revoked: float = 0.15
    stuffing_reported: float = 0.20
    stuffing_tried_reported: float = 0.10
    slow_reported: float = 0.20
    sim_swap_reported: float = 0.50
    lender_reported: float = 0.15
    holder_new_sim_reported: float = 0.25
    holder_reset_reported: float = 0.30
    breach_notice: float = 0.01
    own_password_change: float = 0.03
    own_sign_out: float = 0.02
    false_share: float = 0.03


class Partners:
    """The partners of one simulation: :meth:`merge` adds to each day's batch the signals
    received that day, in ``ts`` order."""

    def __init__(self, sim, config: PartnerConfig) -> None:
        self.sim = sim
        self.config = config
        self.seed = sim.seed
        self._pending: list[tuple[int, str, str, bytes]] = []  # (ts, event_id, account_id, line)
        self._n = 0
        self._floor = sim.world.start_ms  # no signal before the day being written (order)
        self._lender_seen: set[int] = set()
        self.sent = 0
        self._plan_accounts()

    # -- signals -------------------------------------------------------------------------------
    def _signal(self, partner: tuple[str, str, str], account_id: str, event_ts: int, kind: str,
                rnd: random.Random, **fields: str) -> None:
        issuer, role, fmt = partner
        self._n += 1
        jti = f"{self.seed}-{self._n}"
        event_id = "sig-" + hashlib.sha256(f"{issuer}\x1f{jti}".encode()).hexdigest()[:24]
        event_ts = max(self._floor, event_ts)
        ts = event_ts + int(rnd.uniform(1, 120) * 1000)
        if ts >= self.sim.world.end_ms:
            return
        value = {"event_id": event_id, "account_id": account_id, "ts": ts, "event_ts": event_ts, "kind": kind,
                 "issuer": issuer, "partner_role": role, "subject_format": fmt, **fields}
        heapq.heappush(self._pending, (ts, event_id, account_id, _PREFIX + orjson.dumps(value) + _SUFFIX))

    def _plan_accounts(self) -> None:
        """Signals about accounts outside every incident: the holders' own life, and the false
        partner's reports."""
        sim, cfg = self.sim, self.config
        in_incident = {inc.account for inc in sim.world.incidents}
        span = sim.world.end_ms - sim.world.start_ms
        per_30 = sim.config.days / 30.0
        for idx, p in enumerate(sim.pop.personas):
            if idx in in_incident:
                continue
            rnd = random.Random(f"{self.seed}/partners/holder/{idx}")
            at = lambda: sim.world.start_ms + int(rnd.random() * span)  # noqa: E731
            if cfg.honest:
                if rnd.random() < cfg.breach_notice * per_30:
                    self._signal(MAIL, p.account_id, at(), "credential_compromise", rnd)
                if rnd.random() < cfg.own_password_change * per_30:
                    self._signal(MAIL, p.account_id, at(), "credential_change", rnd, initiating_entity="user",
                                 change_type="update", credential_type="password")
                if rnd.random() < cfg.own_sign_out * per_30:
                    self._signal(MAIL, p.account_id, at(), "sessions_revoked", rnd, initiating_entity="user")
            if cfg.false_partner:
                frnd = random.Random(f"{self.seed}/partners/false/{idx}")
                if frnd.random() < cfg.false_share * per_30:
                    when = sim.world.start_ms + int(frnd.random() * span)
                    if frnd.random() < 0.5:
                        self._signal(FALSE_LENDER, p.account_id, when, "account_disabled", frnd, reason="hijacking")
                    else:
                        self._signal(FALSE_LENDER, p.account_id, when, "credential_compromise", frnd)

    def _incident_day(self, index: int, inc, day_start: int, day_end: int) -> None:
        """The partners' reports of what an incident did in ``[day_start, day_end)``."""
        cfg = self.config
        if not cfg.honest:
            return
        today = sorted(e for e in inc.events if day_start <= e[0] < day_end)
        if not today:
            return
        account_id = self.sim.pop.personas[inc.account].account_id
        rnd = random.Random(f"{self.seed}/partners/incident/{index}/{day_start}")
        first_ever = min(e[0] for e in inc.events)
        started_today = day_start <= first_ever < day_end
        scenario = inc.scenario
        if started_today:
            if scenario == "phishing_takeover":
                if rnd.random() < cfg.phishing_reported:
                    self._signal(MAIL, account_id, first_ever + int(rnd.uniform(-30, 180) * MINUTE_MS),
                                 "credential_compromise", rnd)
                if rnd.random() < cfg.phishing_revoked:
                    self._signal(MAIL, account_id, first_ever + int(rnd.uniform(1, 20) * HOUR_MS),
                                 "sessions_revoked", rnd, initiating_entity="policy")
            elif scenario == "credential_stuffing":
                if rnd.random() < cfg.stuffing_reported:
                    self._signal(MAIL, account_id, first_ever + int(rnd.uniform(-120, 720) * MINUTE_MS),
                                 "credential_compromise", rnd)
            elif scenario == "credential_stuffing_attempt":
                if rnd.random() < cfg.stuffing_tried_reported:
                    self._signal(MAIL, account_id, first_ever + int(rnd.uniform(-120, 720) * MINUTE_MS),
                                 "credential_compromise", rnd)
            elif scenario == "slow_takeover":
                if rnd.random() < cfg.slow_reported:
                    self._signal(MAIL, account_id, first_ever + int(rnd.uniform(0, 48) * HOUR_MS),
                                 "credential_compromise", rnd)
            elif scenario == "password_reset":
                reset = next((ts for ts, _, kind in today if kind == "password_reset"), None)
                if reset is not None and rnd.random() < cfg.holder_reset_reported:
                    self._signal(MAIL, account_id, reset + int(rnd.uniform(0, 10) * MINUTE_MS), "credential_change",
                                 rnd, initiating_entity="user", change_type="update", credential_type="password")
        for ts, _, kind in today:
            if kind == "sim_change":
                share = cfg.sim_swap_reported if inc.label == "ato" else cfg.holder_new_sim_reported
                if rnd.random() < share:
                    self._signal(CARRIER, account_id, ts + int(rnd.uniform(1, 90) * MINUTE_MS), "identifier_changed",
                                 rnd, reason="sim_swap" if inc.label == "ato" else "new_sim")
        if inc.label == "ato" and index not in self._lender_seen:
            loss = next((ts for ts, _, kind in today if kind in MONEY_KINDS), None)
            if loss is not None:
                self._lender_seen.add(index)
                if rnd.random() < cfg.lender_reported:
                    self._signal(LENDER, account_id, loss + int(rnd.uniform(-120, 36 * 60) * MINUTE_MS),
                                 "account_disabled", rnd, reason="hijacking")

    # -- the day loop's hook -------------------------------------------------------------------
    def merge(self, day: int, batch: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
        """``batch`` (the day's events, in ``ts`` order) with the signals received that day."""
        world = self.sim.world
        day_start = world.start_ms + day * DAY_MS
        day_end = day_start + DAY_MS
        self._floor = day_start
        for index, inc in enumerate(world.incidents):
            self._incident_day(index, inc, day_start, day_end)
        due: list[tuple[int, str, str, bytes]] = []
        while self._pending and self._pending[0][0] < day_end:
            due.append(heapq.heappop(self._pending))
        if not due:
            return batch
        self.sent += len(due)
        events = ((_ts(line), 0, i, (topic, account, line)) for i, (topic, account, line) in enumerate(batch))
        signals = ((ts, 1, i, (SIGNALS_TOPIC, account, line)) for i, (ts, _, account, line) in enumerate(due))
        return [item for _, _, _, item in heapq.merge(events, signals)]


def _ts(line: bytes) -> int:
    m = _TS.search(line)
    return int(m.group(1)) if m else 0


def signal_lines(lines: Iterable[bytes]) -> list[dict]:
    """The values of the ``signals`` lines among JSON Lines ``lines`` (for tests and reports)."""
    out = []
    for line in lines:
        if line.startswith(_PREFIX):
            out.append(orjson.loads(line)["value"])
    return out
