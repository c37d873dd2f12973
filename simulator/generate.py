"""The day loop: plan the incidents, then for each simulated day start that day's incidents,
generate normal life, sort the day's events by time and hand them to a sink; labels at the end.

Memory is bounded by one day of events plus the (few) events incidents have scheduled for later
days; nothing else is kept. Every random draw comes from generators seeded by the config's seed
and a fixed purpose tag, so the same config gives byte-identical files.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import sys
import time
from collections import Counter
from operator import itemgetter
from typing import Protocol

import orjson

from simulator import attacks, benign
from detectors.contract import ENROLLED
from simulator.methods import draw_enrolment
from simulator.config import ATTACK_SCENARIOS, SCENARIOS, STUFFING_ATTEMPT, SimConfig
from simulator.population import Population, build_population
from simulator.routine import Routine
from simulator.timeline import DAY_MS, TOPICS, TRANSACTION, Incident, World, line_of, value_of

TOPIC_INDEX = {t: i for i, t in enumerate(TOPICS)}

_OUT_KINDS = frozenset({"payment", "transfer_out", "withdrawal"})

STARTERS = {
    "travel": benign.start_travel,
    "new_phone": benign.start_new_phone,
    "repay_redraw": benign.start_repay_redraw,
    "password_reset": benign.start_password_reset,
    "phishing_takeover": attacks.start_phishing_takeover,
    "sim_swap_payout": attacks.start_sim_swap_payout,
    "session_hijack": attacks.start_session_hijack,
    "impossible_travel": attacks.start_impossible_travel,
    "slow_takeover": attacks.start_slow_takeover,
    "trip_new_phone": benign.start_trip_new_phone,
    "lost_phone_recovery": benign.start_lost_phone_recovery,
    "repay_new_phone": benign.start_repay_new_phone,
    "household_device": benign.start_household_device,
    "warmed_device": attacks.start_warmed_device,
    "remote_access_scam": attacks.start_remote_access_scam,
}

#: Scenarios that need days after their start: the latest start is ``days - LEAD[name]``.
LEAD = {"slow_takeover": 3, "warmed_device": 4, "trip_new_phone": 4, "repay_new_phone": 2}


class Sink(Protocol):
    """Receives each simulated day's events in order: ``write(batch)`` with
    ``[(topic, account_id, line), ...]`` (``line``: the event's JSON Lines line, see
    ``timeline.value_of``); ``close()`` at the end."""

    def write(self, batch: list[tuple[str, str, bytes]]) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """JSON Lines, one ``{"topic": ..., "value": {...}}`` a line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._tmp = f"{path}.tmp"
        self._f = open(self._tmp, "wb", buffering=1 << 20)
        self.bytes = 0

    def write(self, batch: list[tuple[str, str, bytes]]) -> None:
        data = b"".join([line for _, _, line in batch])
        self._f.write(data)
        self.bytes += len(data)

    def close(self) -> None:
        self._f.close()
        os.replace(self._tmp, self.path)


def topic_name(logical: str, prefix: str) -> str:
    """Full topic name; uses the project's topic registry when it is there."""
    try:
        from streams.topics import topic_name as registry_name
    except ImportError:
        return f"{prefix}{logical}"
    return registry_name(logical, prefix)


class KafkaSink:
    """Publishes each event to ``<prefix><topic>``, key = account id, value = the event's JSON,
    at ``rate`` events per second (0 = as fast as possible); flushes at the end.

    With ``service`` (a :class:`simulator.account_service.AccountService`, ``--respond``) every
    event goes through the live account service instead, which sends it, holds it back or
    withholds it, and answers the worker's commands meanwhile; ``close`` then waits until the
    last answers are sent and confirmed."""

    def __init__(self, bootstrap_servers: str, prefix: str = "ato.", rate: float = 0.0, producer=None,
                 service=None) -> None:
        self.service = service
        if service is not None:
            producer = _NoProducer()
        if producer is None:
            from kafka import KafkaProducer

            producer = KafkaProducer(bootstrap_servers=bootstrap_servers.split(","), linger_ms=20,
                                     batch_size=256 * 1024, acks=1)  # fmt: skip
        self.producer = producer
        self.topics = {t: topic_name(t, prefix) for t in TOPICS}
        self.rate = rate
        self.sent = 0
        self._began = time.monotonic()

    def write(self, batch: list[tuple[str, str, bytes]]) -> None:
        send, topics, service = self.producer.send, self.topics, self.service
        for topic, account_id, line in batch:
            if service is None:
                send(topics[topic], key=account_id.encode(), value=value_of(TOPIC_INDEX[topic], line))
            else:
                service.submit(topic, account_id, value_of(TOPIC_INDEX[topic], line))
            self.sent += 1
            if self.rate > 0:
                ahead = self.sent / self.rate - (time.monotonic() - self._began)
                while ahead > 0.005:
                    if service is None:
                        time.sleep(ahead)
                    else:
                        service.pump(ahead)
                    ahead = self.sent / self.rate - (time.monotonic() - self._began)

    def close(self) -> None:
        if self.service is not None:
            self.service.finish()
            return
        self.producer.flush()
        self.producer.close()


class _NoProducer:
    """The producer of a KafkaSink whose events go through the account service."""

    send = None


class Stats:
    def __init__(self) -> None:
        self.events = 0
        self.by_topic: Counter[str] = Counter()
        self.seconds = 0.0


def label_of(scenario: str) -> str:
    return "ato" if scenario in ATTACK_SCENARIOS or scenario == STUFFING_ATTEMPT else "legit"


class Simulation:
    """One run: ``Simulation(config).run(sink, labels_path)``."""

    def __init__(self, config: SimConfig, label_stuffing_attempts: bool = True, partners=None) -> None:
        self.config = config
        self.seed = config.seed
        self.label_stuffing_attempts = label_stuffing_attempts
        self.pop: Population = build_population(config)
        self.world = World(config.start_ms, config.days, config.late_location_share, config.late_location_max_s, config.seed)
        self.routine = Routine(self.world, self.pop, config.seed, config.ipv6_share)
        self.jobs: dict[int, list] = {}
        self._plan()
        # partners' signals (``--partners``, a simulator.partners.PartnerConfig), or None
        self.partners = None
        if partners is not None:
            from simulator.partners import Partners
            self.partners = Partners(self, partners)

    # -- planning ---------------------------------------------------------------------------

    def _add(self, day: int, fn, *incidents_or_lists, tag: str) -> None:
        rnd = random.Random(f"{self.seed}/{tag}")
        self.jobs.setdefault(day, []).append((fn, incidents_or_lists, rnd))

    def _incident(self, account: int, scenario: str, day: int) -> Incident:
        inc = Incident(account, scenario, label_of(scenario), day)
        self.world.incidents.append(inc)
        return inc

    def _plan(self) -> None:
        cfg, pop = self.config, self.pop
        rnd = random.Random(f"{self.seed}/plan")
        days = cfg.days
        codes = pop.codes.tolist()
        for a, code in enumerate(codes):
            if code < 0:
                continue
            name = SCENARIOS[code]
            if name not in STARTERS:
                continue  # grouped scenarios below
            if name in LEAD:
                day = rnd.randrange(max(1, days - LEAD[name]))
            else:
                day = rnd.randrange(days)
            self._add(day, STARTERS[name], self._incident(a, name, day), tag=f"{name}/{a}")
        for owner, sharer in pop.pairs:
            day = rnd.randrange(days)
            self._add(day, benign.start_shared_tablet, self._incident(owner, "shared_tablet", day),
                      self._incident(sharer, "shared_tablet", day), tag=f"shared_tablet/{owner}")  # fmt: skip
        start_weekday = (cfg.start_ms // DAY_MS + 3) % 7
        weekdays = [d for d in range(days) if (start_weekday + d) % 7 < 5] or list(range(days))
        for office in pop.offices:
            day = rnd.choice(weekdays)
            incs = [self._incident(a, "corporate_nat", day) for a in office]
            self._add(day, benign.start_corporate_nat, incs, tag=f"corporate_nat/{office[0]}")
        # credential stuffing campaigns: victims drawn at the configured rate, plus the accounts the
        # same botnet tried in vain, taken from accounts without a scenario
        victims = [a for a, c in enumerate(codes) if c >= 0 and SCENARIOS[c] == "credential_stuffing"]
        rnd.shuffle(victims)
        pool = [a for a, c in enumerate(codes) if c < 0]
        rnd.shuffle(pool)
        pos = 0
        while victims:
            size = rnd.randint(1, 8)
            group, victims = victims[:size], victims[size:]
            success = rnd.uniform(0.03, 0.2)
            n_tried = min(len(pool) - pos, round(len(group) * (1 / success - 1)))
            tried = pool[pos : pos + n_tried]
            pos += n_tried
            day = rnd.randrange(days)
            v_incs = [self._incident(a, "credential_stuffing", day) for a in group]
            if self.label_stuffing_attempts:
                t_incs = [self._incident(a, STUFFING_ATTEMPT, day) for a in tried]
            else:
                t_incs = [Incident(a, STUFFING_ATTEMPT, "ato", day) for a in tried]
            self._add(day, attacks.start_credential_stuffing, v_incs, t_incs, tag=f"stuffing/{group[0]}")
        # mule rings: the ring's accounts taken over on one day, all paying one mule
        ring = [a for a, c in enumerate(codes) if c >= 0 and SCENARIOS[c] == "mule_ring"]
        rnd.shuffle(ring)
        while ring:
            size = rnd.randint(3, 20)
            group, ring = ring[:size], ring[size:]
            day = rnd.randrange(days)
            incs = [self._incident(a, "mule_ring", day) for a in group]
            self._add(day, attacks.start_mule_ring, incs, tag=f"mule_ring/{group[0]}")

    # -- running ----------------------------------------------------------------------------

    def _payday(self, day: int) -> None:
        dom = _dt.datetime.fromtimestamp((self.world.start_ms + day * DAY_MS) / 1000, _dt.timezone.utc).day
        for p in self.pop.personas:
            if p.payday == dom:
                p.balance += p.salary

    def _serialise(self, entries: list) -> list[tuple[str, str, bytes]]:
        """Sort by time, settle balances in that order, serialise the money events."""
        entries.sort(key=itemgetter(0))
        out = []
        topics = TOPICS
        for _, topic, payload, p in entries:
            if topic == TRANSACTION:
                v = payload
                kind = v["kind"]
                if kind in _OUT_KINDS:
                    bal = p.balance
                    share = v.pop("_drain", None)
                    if share is not None:
                        amt = round(bal * share, 2) if bal > 2 else round(1.0 + (p.idx % 50), 2)
                        v["amount"] = amt
                    else:
                        amt = v["amount"]
                    if amt > bal:
                        bal += max(p.salary, amt)  # income we do not see (no inbound kind in v1)
                    bal -= amt
                    p.balance = bal
                    v["balance_after"] = round(bal, 2)
                elif kind == "loan_draw":
                    p.balance += v["amount"]
                    v["balance_after"] = round(p.balance, 2)
                elif kind == "loan_repayment":
                    if v["amount"] > p.balance:
                        p.balance += max(p.salary, v["amount"])
                    p.balance -= v["amount"]
                    v["balance_after"] = round(p.balance, 2)
                payload = line_of(TRANSACTION, v)
            out.append((topics[topic], p.account_id, payload))
        return out

    def run(self, sink: Sink, labels_path: str | None = None, progress: bool = True) -> Stats:
        from tqdm import tqdm

        cfg, world = self.config, self.world
        stats = Stats()
        began = time.perf_counter()
        bar = tqdm(total=cfg.days, unit="day", desc="simulate", file=sys.stderr, disable=not progress, dynamic_ncols=True)
        try:
            for day in range(cfg.days):
                world.floor_ms = world.start_ms + day * DAY_MS
                for fn, args, rnd in self.jobs.pop(day, []):
                    fn(self, *args, rnd)
                self.routine.run_day(day)
                self._payday(day)
                batch = self._serialise(world.buckets.pop(day, []))
                if day == cfg.days - 1:  # late location fixes pushed past the end still belong
                    tail = [e for d in sorted(world.buckets) for e in world.buckets[d]
                            if e[1] != TRANSACTION and _ts_of(e) < world.end_ms]
                    batch.extend(self._serialise(tail))
                if self.partners is not None:
                    batch = self.partners.merge(day, batch)
                sink.write(batch)
                stats.events += len(batch)
                for t, _, _ in batch:
                    stats.by_topic[t] += 1
                bar.update(1)
                bar.set_postfix(events=stats.events, refresh=False)
        finally:
            bar.close()
            sink.close()
        stats.seconds = time.perf_counter() - began
        if labels_path is not None:
            self.write_labels(labels_path)
        return stats

    def labels(self) -> list[dict]:
        personas = self.pop.personas
        out = []
        for inc in self.world.incidents:
            label = inc.to_label(self.world.end_ms, personas[inc.account].account_id)
            if label is not None:
                out.append(label)
        out.sort(key=lambda r: (r["start_ts"], r["account_id"], r["scenario"]))
        return out

    def enrolments(self) -> list[dict]:
        """One ``enrolled`` line per account (contract v2 labels), in account order."""
        drawn = draw_enrolment(len(self.pop.personas), self.config.enrolment_shares(), self.seed)
        return [{"account_id": p.account_id, "label": ENROLLED, "methods": m}
                for p, m in zip(self.pop.personas, drawn)]

    def write_labels(self, path: str) -> None:
        """The labels file: the incidents by start time, then every account's enrolment."""
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            for label in self.labels():
                f.write(orjson.dumps(label) + b"\n")
            for line in self.enrolments():
                f.write(orjson.dumps(line) + b"\n")
        os.replace(tmp, path)


def _ts_of(entry) -> int:
    """Event time of a serialised non-money entry (its sort key may be later: delivered late)."""
    return orjson.loads(value_of(entry[1], entry[2]))["ts"]


def simulate(config: SimConfig, out: str, labels: str, progress: bool = False, label_stuffing_attempts: bool = True,
             partners=None) -> Stats:
    """Write ``out`` (events, JSON Lines) and ``labels`` (incidents, JSON Lines) for ``config``;
    with ``partners`` (a :class:`simulator.partners.PartnerConfig`) the partners' signals too."""
    sim = Simulation(config, label_stuffing_attempts, partners)
    return sim.run(FileSink(out), labels, progress)


__all__ = ["Simulation", "FileSink", "KafkaSink", "topic_name", "Sink", "Stats", "simulate", "label_of"]
