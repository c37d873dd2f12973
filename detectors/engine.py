"""The detection engine: one seam, ``process(input, state) -> Result``.

The engine takes one input - a decoded record, or a message's bytes with its topic, partition and
offset - and the account's stored state (a :class:`~detectors.profile.Profile`, or None for an
account not seen before), and returns a :class:`Result`: the outputs (commands, alerts, dead
letters), the account's new state (or None when unchanged), whether the input was a duplicate, and
the cross-account fact updates it carries. It never calls back into its caller. Replay, each stream
runtime and the benchmarks are small loops around it: fetch the state by the message key, call
:meth:`Engine.process_message`, write the outputs and the state.

Online models are the engine's own, one set per shard, sharded with Kafka's default partitioner so
every model sees the same events in the same order whether fed from a file or from partitions.

>>> from detectors.events import DeviceEvent
>>> engine = Engine()
>>> r = engine.process(DeviceEvent("e1", "a1", 1764000000000, "login_success", device_id="d1"), None)
>>> r.outputs, r.state.n_events, r.duplicate
((), 1, False)
>>> engine.process(DeviceEvent("e1", "a1", 1764000000000, "login_success", device_id="d1"), r.state).duplicate
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from detectors import contract as c
from detectors import update
from detectors.base import Detector, Finding
from detectors.config import Config
from detectors.context import Context, build_context
from detectors.events import DeadLetter, Event, Verdict, decode_or_dead_letter
from detectors.facts import FactSource, LocalFacts, SourceUpdate, source_updates
from detectors.outputs import Output, alert_value, cloudevents_headers, command_value, deterministic_id, pseudonym
from detectors import challenge, decisions
from detectors.policy import Actor, Decision, decide, decide_answer, decide_verdict, with_recent
from detectors.profile import DAY_MS, HOUR_MS, Profile
from detectors.registry import build_detectors
from detectors.sharding import shard_of

__all__ = ["Engine", "Result", "default_facts", "dead_letter_output"]


@dataclass(frozen=True, slots=True)
class Result:
    """What one input did.

    ``outputs``: the messages to write, in order (commands, alerts, or one dead letter).
    ``state``: the account's new state, or None when it is unchanged (a duplicate, a dead letter).
    ``duplicate``: the input's event id had already been applied to the account.
    ``record``: the decoded input (None for a dead letter).
    """

    outputs: tuple[Output, ...] = ()
    state: Profile | None = None
    duplicate: bool = False
    record: Event | Verdict | None = None

    @property
    def dead_letter(self) -> bool:
        return self.record is None

    @property
    def facts(self) -> tuple[SourceUpdate, ...]:
        """The cross-account fact updates of the input (login edges, what an IP is)."""
        return source_updates(self.record) if self.record is not None else ()


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
        self._cred_ms = int(self.cfg.windows.credential_change_hours * HOUR_MS)
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

    # -- the seam -------------------------------------------------------------------------------
    def process_message(self, topic: str, value: bytes | None, key: bytes | None, state: Profile | None, *,
                        partition: int | None = None, offset: int | None = None,
                        logical_topic: str | None = None) -> Result:
        """Decode one raw message and process it; bad input becomes one dead-letter output.
        ``state`` is the stored state of the account the message key names."""
        record = decode_or_dead_letter(topic, value, key, partition=partition, offset=offset,
                                       logical_topic=logical_topic)
        if type(record) is DeadLetter:
            self.counts["dead_letters"] += 1
            return Result((dead_letter_output(record, key),))
        return self.process(record, state)

    def process(self, record: Event | Verdict, state: Profile | None) -> Result:
        """Apply one decoded record to its account's ``state`` (None: an account not seen
        before). The state object passed in is updated and returned as the new state."""
        if state is None:
            state = Profile()
        elif state.has_seen(record.event_id):
            self.counts["duplicates"] += 1
            return Result((), None, True, record)
        if type(record) is Verdict:
            outputs = self._verdict(record, state)
        else:
            outputs = self._event(record, state)
        update.mark_seen(state, record.event_id)
        return Result(outputs, state, False, record)

    def run(self, records: Iterable[Event | Verdict], states: dict[str, Profile]) -> Iterator[Output]:
        """The simplest driver: ``records`` in order, the accounts' states in the dict
        ``states``; yields the outputs (replay, tests and benchmarks use it)."""
        for record in records:
            result = self.process(record, states.get(record.account_id))
            if result.state is not None:
                states[record.account_id] = result.state
            yield from result.outputs

    # -- events ---------------------------------------------------------------------------------
    def _event(self, event: Event, profile: Profile) -> tuple[Output, ...]:
        self.counts["events"] += 1
        cfg = self.cfg
        if profile.challenge is not None or profile.holds or profile.others:
            update.expire_challenge(profile, event.ts)
        if event.kind in c.CHALLENGE_KINDS:
            # no open challenge: a late or repeated answer changes nothing
            return self._answer(event, profile) if profile.challenge is not None else ()
        # contract v3: a decided event gets a decision; one of a device or session no open
        # challenge was put to gets a step_up of its own when risky
        decided = self._v3 and event.kind in c.DECIDED_KINDS
        own = decided and decisions.riding(profile, event.device_id, event.session_id) is None
        facts = self.facts.lookup(event)
        x = build_context(profile, event, cfg, facts)
        dets = self._detectors_for(event.account_id, event.topic)
        findings: list[Finding] = []
        for d in dets:
            f = d.score(x)
            if f is not None and f.score > 0.0:
                findings.append(f)
        if profile.failures:
            failure = challenge.failure_finding(profile, event.ts, event.device_id, event.session_id, event.ip)
            if failure is not None:
                findings.append(failure)
        evidence = None
        if not x.card_present:  # the card at a till is not part of an app sign-in
            findings, evidence = with_recent(profile.evidence, findings, event.ts)
        actor = Actor(event.device_id, event.session_id, event.ip, bool(x.device_trusted), self._cred_ms)
        decision = decide(profile, event.account_id, event.ts, event.ip, event.device_id, findings, cfg, actor,
                          own_challenge=own)
        outputs, alert_id, command_id = self._emit(event.account_id, event.event_id, event.ts, decision, findings, x) \
            if decision.alert or decision.action else ((), None, None)
        update.apply_decision(profile, decision, event.ts, alert_id=alert_id, evidence=evidence,
                              alerted=update.alerted_situation(alert_id, x) if alert_id else None,
                              command_id=command_id, device=event.device_id, session=event.session_id,
                              ip=event.ip)
        if self._v3 and (decided or profile.holds):
            outputs = self._decisions(event, profile, decision, outputs, decided)
        for d in dets:
            d.learn(x, decision.risk)
        strong = frozenset(f.family for f in findings if f.score >= 0.5) \
            if decision.risk >= cfg.policy.step_up_at else frozenset()
        update.observe(profile, x, cfg, decision.risk, strong)
        return outputs

    def _answer(self, event: Event, profile: Profile) -> tuple[Output, ...]:
        """An answer (``challenge_passed`` / ``challenge_failed``) to the account's open challenge:
        learnt by :func:`detectors.update.record_answer`, then judged by
        :func:`detectors.policy.decide_answer`. An answer naming another command changes nothing."""
        open_challenge = update.find_challenge(profile, event.command_id)
        if open_challenge is None:
            return ()  # closed, expired, or never issued
        ts = event.ts
        passed = event.kind == c.CHALLENGE_PASSED
        trusted = passed and challenge.trusted_pass(profile, open_challenge, event.method)
        strong = trusted and challenge.is_strong(profile, event.method, event.device_id, event.attestation, ts)
        closed = update.record_answer(profile, event, open_challenge, strong, self.cfg, trusted)
        actor = Actor(event.device_id or open_challenge.device, event.session_id or open_challenge.session,
                      event.ip or open_challenge.ip, False, self._cred_ms)
        recent: list[Finding] = []
        evidence = None
        if not passed:
            recent, evidence = with_recent(profile.evidence, [challenge.failure_of(event.reason or "wrong_code")], ts)
        decision = decide_answer(profile, passed, event.method, event.reason, action=open_challenge.action,
                                 issued_at=open_challenge.issued_at, ts=ts, actor=actor, recent=recent,
                                 cfg=self.cfg, listed=open_challenge.methods)
        outputs, alert_id, command_id = self._emit(event.account_id, event.event_id, ts, decision, recent, None) \
            if decision.alert or decision.action else ((), None, None)
        update.apply_decision(profile, decision, ts, alert_id=alert_id, evidence=evidence, command_id=command_id,
                              device=actor.device, session=actor.session, ip=actor.ip)
        if self._v3 and profile.holds:
            if closed:  # the first trusted pass releases what waited on it; an abandoned one refuses it
                outputs += decisions.resolve(profile, self.cfg, event.account_id, event.event_id, ts,
                                             open_challenge.command_id, c.ALLOW if passed else c.DENY,
                                             decision.risk, ("CHALLENGE_PASSED",) if passed else ("CHALLENGE_UNANSWERED",))
            if decision.action in (c.FREEZE, c.CLOSE):
                outputs += decisions.deny_all(profile, self.cfg, event.account_id, event.event_id, ts,
                                              decision.risk, decision.reasons)
        return outputs

    @property
    def _v3(self) -> bool:
        """Whether the engine writes contract v3 outputs (decisions; see :class:`detectors.config.Outputs`)."""
        return self.cfg.outputs.contract_version >= 3

    def _decisions(self, event: Event, profile: Profile, decision: Decision, outputs: tuple[Output, ...],
                   decided: bool) -> tuple[Output, ...]:
        """``outputs`` followed by the decisions of an event (contract v3): the resolutions of
        the holds a freeze or close on it ends, then its own decision when it is decided."""
        out = list(outputs)
        if decision.action in (c.FREEZE, c.CLOSE):
            out += decisions.deny_all(profile, self.cfg, event.account_id, event.event_id, event.ts,
                                      decision.risk, decision.reasons)
        if decided:
            step_up = next((o.value for o in outputs if o.topic == c.COMMANDS and o.value["action"] == c.STEP_UP),
                           None)
            out.append(decisions.decide_event(profile, self.cfg, event.account_id, event.event_id, event.ts,
                                              event.device_id, event.session_id, decision.risk, decision.reasons,
                                              step_up))
        return tuple(out)

    def _emit(self, account: str, trigger: str, ts: int, decision: Decision, findings: list[Finding],
              x: Context | None) -> tuple[tuple[Output, ...], str | None, str | None]:
        """The alert and the command of a decision; returns them, the alert's id and the
        command's id."""
        cfg = self.cfg
        pol = cfg.policy
        outputs: list[Output] = []
        alert_id = None
        if decision.alert:
            alert_id = deterministic_id("alert", pol.version, account, trigger)
            alert = alert_value(alert_id=alert_id, account_id=account, ts=ts, risk=decision.risk,
                                reasons=decision.reasons, action=decision.action,
                                scores={f.detector: round(f.score, 4) for f in findings},
                                evidence=self._evidence(x, trigger), policy_version=pol.version,
                                dry_run=pol.dry_run)
            outputs.append(Output(c.ALERTS, account, alert, cloudevents_headers(alert)))
            self.counts["alerts"] += 1
        command_id = None
        if decision.action:
            cmd = command_value(account_id=account, action=decision.action, reasons=decision.reasons,
                                risk=decision.risk, issued_at=ts, expires_at=decision.expires_at,
                                trigger_event_id=trigger, alert_id=alert_id, policy_version=pol.version,
                                dry_run=pol.dry_run, key=cfg.keys.command_hmac, methods=decision.methods,
                                contract_version=cfg.outputs.contract_version)
            outputs.append(Output(c.COMMANDS, account, cmd))
            command_id = cmd["command_id"]
            self.counts["commands"] += 1
        return tuple(outputs), alert_id, command_id

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
        related = [v.event_id for v in x.profile.creds.values()
                   if x.cred_age_h is not None and 0 <= x.ts - v.ts <= DAY_MS * 3]
        evidence = [{"name": "trigger", "data": data}]
        if related:
            evidence.append({"name": "credential_changes", "data": {"event_ids": sorted(related)}})
        return evidence

    # -- verdicts -------------------------------------------------------------------------------
    def _verdict(self, verdict: Verdict, profile: Profile) -> tuple[Output, ...]:
        self.counts["verdicts"] += 1
        is_ato = verdict.label == "ato"
        if profile.challenge is not None or profile.holds or profile.others:
            update.expire_challenge(profile, verdict.ts)
        alerted = profile.alerted
        features: dict[str, float] = {}
        if alerted is not None and verdict.alert_id in (None, alerted.alert_id):
            features = update.apply_verdict(profile, is_ato, verdict.ts, self.cfg)
        if features:
            for d in self.detectors(verdict.account_id):
                d.learn_verdict(features, is_ato)
        decision = decide_verdict(profile, verdict.label, verdict.source, verdict.ts, self.cfg)
        outputs, alert_id, command_id = ((), None, None)
        if decision.action is not None or decision.alert:
            outputs, alert_id, command_id = self._emit(verdict.account_id, verdict.verdict_id, verdict.ts,
                                                       decision, [], None)
        update.apply_decision(profile, decision, verdict.ts, alert_id=alert_id, command_id=command_id)
        if is_ato:
            # contract v3: an ato verdict closes every open step_up and refuses every held movement
            for ch in update.open_challenges(profile):
                if ch.action == c.STEP_UP:
                    update.close_challenge(profile, ch, verdict.ts)
            if self._v3 and profile.holds:
                outputs += decisions.deny_all(profile, self.cfg, verdict.account_id, verdict.verdict_id, verdict.ts,
                                              decision.risk, decision.reasons)
        return outputs



def dead_letter_output(record: DeadLetter, key: bytes | None) -> Output:
    """The dead-letter message of a rejected input, keyed like the input."""
    return Output(c.DEAD_LETTER, key.decode("utf-8", "replace") if key else "", record.to_dict())
