"""The detection engine: one event in, zero or more outputs out.

The stream worker and ``atoguard replay`` call this same class. Per-account state lives in a
:class:`ProfileStore` that the caller provides (a dict in replay, a Faust table in the worker);
online models live in the engine, one set per shard, sharded with Kafka's default partitioner so
every model sees the same events in the same order whether fed from a file or from partitions.

>>> from detectors.events import DeviceEvent
>>> engine = Engine()
>>> store = DictStore()
>>> engine.handle(DeviceEvent("e1", "a1", 1764000000000, "login_success", device_id="d1"), store)
[]
>>> store.get("a1").n_events
1
"""

from __future__ import annotations

from typing import Any, Protocol

from detectors import contract as c
from detectors.base import Detector, Finding
from detectors.config import Config
from detectors.events import DeadLetter, Event, Verdict, decode_or_dead_letter
from detectors.facts import FactSource, LocalFacts
from detectors.features import Context, build_context, observe
from detectors.outputs import Output, alert_value, cloudevents_headers, command_value, deterministic_id, pseudonym
from detectors.policy import Decision, decide, decide_verdict, with_recent
from detectors.profile import DAY_MS, Profile
from detectors.registry import build_detectors
from detectors.sharding import shard_of

__all__ = ["DictStore", "Engine", "ProfileStore", "BytesStore"]


class ProfileStore(Protocol):
    def get(self, account_id: str) -> Profile | None: ...
    def put(self, account_id: str, profile: Profile) -> None: ...


class DictStore:
    """Profiles as live objects in a dict (replay, tests)."""

    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}

    def get(self, account_id: str) -> Profile | None:
        return self.profiles.get(account_id)

    def put(self, account_id: str, profile: Profile) -> None:
        self.profiles[account_id] = profile

    def __len__(self) -> int:
        return len(self.profiles)


class BytesStore:
    """Profiles serialised to bytes in any mutable mapping (a Faust table in the worker)."""

    def __init__(self, mapping: Any) -> None:
        self.mapping = mapping

    def get(self, account_id: str) -> Profile | None:
        data = self.mapping.get(account_id)
        return None if data is None else Profile.from_bytes(data)

    def put(self, account_id: str, profile: Profile) -> None:
        self.mapping[account_id] = profile.to_bytes()


def default_facts(cfg: Config) -> FactSource:
    """Cross-account facts computed locally, with a MIDAS-R burst scorer when enabled."""
    burst = None
    if "login_burst" in cfg.detectors:
        from detectors.burst_facts import BurstScorer
        burst = BurstScorer(seed=cfg.seed)
    return LocalFacts(burst=burst)


class Engine:
    """Turns contract records into commands, alerts and dead letters.

    Parameters
    ----------
    cfg
        The configuration; the default policy when omitted.
    facts
        Where cross-account facts come from; computed locally (:class:`LocalFacts`) when omitted.
    """

    def __init__(self, cfg: Config | None = None, facts: FactSource | None = None) -> None:
        self.cfg = cfg or Config()
        self.facts = facts if facts is not None else default_facts(self.cfg)
        self._shards: dict[int, list[Detector]] = {}
        # per shard, the detectors that look at each topic (the per-event loop)
        self._by_topic: dict[int, dict[str, list[Detector]]] = {}
        self.counts = {"events": 0, "duplicates": 0, "verdicts": 0, "dead_letters": 0,
                       "commands": 0, "alerts": 0}

    # -- models per shard ----------------------------------------------------------------------
    def detectors(self, account_id: str) -> list[Detector]:
        shard = shard_of(account_id, self.cfg.shards)
        dets = self._shards.get(shard)
        if dets is None:
            dets = self._shards[shard] = build_detectors(self.cfg, shard)
        return dets

    def _detectors_for(self, account_id: str, topic: str) -> list[Detector]:
        shard = shard_of(account_id, self.cfg.shards)
        by_topic = self._by_topic.get(shard)
        if by_topic is None:
            dets = self.detectors(account_id)
            by_topic = self._by_topic[shard] = {
                t: [d for d in dets if t in d.topics] for t in (c.DEVICE, c.LOCATION, c.TRANSACTION)}
        return by_topic[topic]

    def snapshot(self) -> dict[int, dict[str, bytes]]:
        """The models' state per shard (rules have none), for the worker's signed snapshots."""
        return {shard: {d.name: d.state() for d in dets} for shard, dets in sorted(self._shards.items())}

    def restore(self, snapshot: dict[int, dict[str, bytes]]) -> None:
        for shard, states in snapshot.items():
            dets = self._shards.get(shard)
            if dets is None:
                dets = self._shards[shard] = build_detectors(self.cfg, shard)
            for d in dets:
                if d.name in states:
                    d.load_state(states[d.name])

    # -- entry points ---------------------------------------------------------------------------
    def handle_bytes(self, topic: str, value: bytes | None, key: bytes | None, store: ProfileStore, *,
                     partition: int | None = None, offset: int | None = None,
                     logical_topic: str | None = None) -> list[Output]:
        """Decode one raw message and handle it; bad input becomes a dead-letter output."""
        record = decode_or_dead_letter(topic, value, key, partition=partition, offset=offset,
                                       logical_topic=logical_topic)
        if type(record) is DeadLetter:
            self.counts["dead_letters"] += 1
            return [Output(c.DEAD_LETTER, key.decode("utf-8", "replace") if key else "", record.to_dict())]
        return self.handle(record, store)

    def handle(self, record: Event | Verdict, store: ProfileStore) -> list[Output]:
        """Apply one decoded record to its account; returns the outputs it causes."""
        account = record.account_id
        profile = store.get(account)
        if profile is None:
            profile = Profile()
        elif profile.has_seen(record.event_id):
            self.counts["duplicates"] += 1
            return []
        if type(record) is Verdict:
            outputs = self._verdict(record, profile)
        else:
            outputs = self._event(record, profile)
        profile.mark_seen(record.event_id)
        store.put(account, profile)
        return outputs

    # -- events ---------------------------------------------------------------------------------
    def _event(self, event: Event, profile: Profile) -> list[Output]:
        self.counts["events"] += 1
        cfg = self.cfg
        facts = self.facts.lookup(event)
        x = build_context(profile, event, cfg, facts)
        dets = self._detectors_for(event.account_id, event.topic)
        findings: list[Finding] = []
        for d in dets:
            f = d.score(x)
            if f is not None and f.score > 0.0:
                findings.append(f)
        if not x.card_present:  # the card at a till is not part of an app sign-in
            findings = with_recent(profile, findings, event.ts)
        decision = decide(profile, event.account_id, event.ts, event.ip, event.device_id, findings, cfg)
        outputs = self._emit(event.account_id, event.event_id, event.ts, decision, findings, x, profile) \
            if decision.alert or decision.action else []
        for d in dets:
            d.learn(x, decision.risk)
        evidence = frozenset(f.family for f in findings if f.score >= 0.5) if decision.risk >= cfg.policy.step_up_at \
            else frozenset()
        observe(profile, x, cfg, decision.risk, evidence)
        return outputs

    def _emit(self, account: str, trigger: str, ts: int, decision: Decision, findings: list[Finding],
              x: Context | None, profile: Profile) -> list[Output]:
        cfg = self.cfg
        pol = cfg.policy
        outputs: list[Output] = []
        alert_id = None
        if decision.alert:
            alert_id = deterministic_id("alert", pol.version, account, trigger)
            evidence = self._evidence(x, trigger)
            alert = alert_value(alert_id=alert_id, account_id=account, ts=ts, risk=decision.risk,
                                reasons=decision.reasons, action=decision.action,
                                scores={f.detector: round(f.score, 4) for f in findings},
                                evidence=evidence, policy_version=pol.version, dry_run=pol.dry_run)
            outputs.append(Output(c.ALERTS, account, alert, cloudevents_headers(alert)))
            self.counts["alerts"] += 1
            if x is not None:
                profile.alert_x = [alert_id, dict(x.features()), x.event.device_id, x.country,
                                   getattr(x.event, "counterparty_id", None)]
            if profile.restriction[0] != "none" and decision.action:
                profile.restriction[3] = alert_id
        if decision.action:
            cmd = command_value(account_id=account, action=decision.action, reasons=decision.reasons,
                                risk=decision.risk, issued_at=ts, expires_at=decision.expires_at,
                                trigger_event_id=trigger, alert_id=alert_id, policy_version=pol.version,
                                dry_run=pol.dry_run, key=cfg.keys.command_hmac)
            outputs.append(Output(c.COMMANDS, account, cmd))
            self.counts["commands"] += 1
        return outputs

    def _evidence(self, x: Context | None, trigger: str) -> list[dict[str, Any]]:
        if x is None:
            return [{"data": {"event_id": trigger}}]
        key = self.cfg.keys.pseudonym_hmac
        ev = x.event
        data: dict[str, Any] = {"event_id": ev.event_id, "topic": ev.topic, "kind": ev.kind, "ts": ev.ts}
        if ev.ip:
            data["ip_pseudonym"] = pseudonym(ev.ip, key)
        if ev.device_id:
            data["device_pseudonym"] = pseudonym(ev.device_id, key)
        if x.country:
            data["country"] = x.country
        related = [v[1] for v in x.profile.creds.values() if x.cred_age_h is not None and 0 <= x.ts - v[0] <= DAY_MS * 3]
        evidence = [{"name": "trigger", "data": data}]
        if related:
            evidence.append({"name": "credential_changes", "data": {"event_ids": sorted(related)}})
        return evidence

    # -- verdicts -------------------------------------------------------------------------------
    def _verdict(self, verdict: Verdict, profile: Profile) -> list[Output]:
        self.counts["verdicts"] += 1
        is_ato = verdict.label == "ato"
        features: dict[str, float] = {}
        if profile.alert_x and (verdict.alert_id is None or verdict.alert_id == profile.alert_x[0]):
            _alert_id, features, device, country, payee = profile.alert_x
            if not is_ato:
                until = verdict.ts + int(self.cfg.policy.known_good_days * DAY_MS)
                for kind, value in (("device", device), ("country", country), ("payee", payee)):
                    if value:
                        profile.good[f"{kind}:{value}"] = until
                if device and device in profile.devices:
                    profile.devices[device][3] = 1
                for change in profile.creds.values():
                    change[2] = 0  # the holder made these changes
        if features:
            for d in self.detectors(verdict.account_id):
                d.learn_verdict(features, is_ato)
        decision = decide_verdict(profile, verdict.label, verdict.source, verdict.ts, self.cfg)
        if decision.action is None and not decision.alert:
            return []
        return self._emit(verdict.account_id, verdict.verdict_id, verdict.ts, decision, [], None, profile)

