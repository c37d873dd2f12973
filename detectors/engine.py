"""The detection engine: one seam, ``process(record, state, facts) -> Result``.

The engine takes one decoded input record, the account's stored state (a
:class:`~detectors.profile.Profile`, or None for an account not seen before) and the
cross-account facts of the record as of its ``ts`` (:mod:`detectors.facts`), and returns a
:class:`Result`: the outputs (commands, alerts, decisions) and the account's new state. It never
calls back into its caller and reads no clock. Decoding, order, duplicates, the facts and the
stored state are the driver's (:mod:`streams.driver`), which replay, every stream runtime and the
benchmarks share.

Online models are the engine's own, one set per shard; the driver gives each partition of the
input topics its own shard, so a model learns from its partition's records in their order, in
replay and live alike, and moves with its partition.

>>> from detectors.events import DeviceEvent
>>> engine = Engine()
>>> r = engine.process(DeviceEvent("e1", "a1", 1764000000000, "login_success", device_id="d1"), None)
>>> r.outputs, r.state.n_events
((), 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from detectors import contract as c
from detectors import update
from detectors.base import Detector, Finding
from detectors.config import Config
from detectors.context import Context, build_context
from detectors.events import DeadLetter, Event, Signal, Verdict
from detectors.facts import NO_FACTS, EventFacts
from detectors.outputs import Output, alert_value, cloudevents_headers, command_value, deterministic_id, pseudonym
from detectors import challenge, decisions, signals
from detectors.policy import Actor, Decision, decide, decide_answer, decide_verdict, with_recent
from detectors.profile import DAY_MS, HOUR_MS, Profile
from detectors.registry import build_detectors
from detectors.sharding import shard_of

__all__ = ["Engine", "Result", "dead_letter_output"]


@dataclass(frozen=True, slots=True)
class Result:
    """What one input did.

    ``outputs``: the messages to write, in order (commands, alerts, decisions).
    ``state``: the account's new state (the profile passed in, updated, or a new one).
    ``record``: the input.
    """

    outputs: tuple[Output, ...]
    state: Profile
    record: Event | Verdict


class Engine:
    """Turns contract records into commands, alerts and dead letters.

    Parameters
    ----------
    cfg
        The configuration; the default policy when omitted.
    """

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg or Config()
        self._shards: dict[int, list[Detector]] = {}
        # per shard, the detectors that look at each topic (the per-event loop)
        self._by_topic: dict[int, dict[str, list[Detector]]] = {}
        self._cred_ms = int(self.cfg.windows.credential_change_hours * HOUR_MS)

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

    def shard_state(self, shard: int) -> dict[str, bytes]:
        """The models' state of one shard (rules have none): what the driver checkpoints."""
        dets = self._shards.get(shard)
        return {d.name: d.state() for d in dets} if dets is not None else {}

    def load_shard(self, shard: int, states: dict[str, bytes] | None) -> None:
        """Restore one shard's models (:meth:`shard_state`); None or {} makes them cold."""
        dets = self._shards[shard] = build_detectors(self.cfg, shard)
        self._by_topic.pop(shard, None)
        for d in dets:
            if states and d.name in states:
                d.load_state(states[d.name])

    def drop_shard(self, shard: int) -> None:
        """Forget one shard's models (its partition moved to another worker)."""
        self._shards.pop(shard, None)
        self._by_topic.pop(shard, None)

    def snapshot(self) -> dict[int, dict[str, bytes]]:
        """The models' state of every shard."""
        return {shard: self.shard_state(shard) for shard in sorted(self._shards)}

    def restore(self, snapshot: dict[int, dict[str, bytes]]) -> None:
        for shard, states in snapshot.items():
            self.load_shard(shard, states)

    # -- the seam -------------------------------------------------------------------------------
    def process(self, record: Event | Verdict, state: Profile | None, facts: EventFacts = NO_FACTS) -> Result:
        """Apply one decoded record to its account's ``state`` (None: an account not seen
        before), with the cross-account ``facts`` as of the record's ``ts``. The state object
        passed in is updated and returned as the new state."""
        if state is None:
            state = Profile()
        if type(record) is Verdict:
            outputs = self._verdict(record, state)
        else:
            outputs = self._event(record, state, facts)
        return Result(outputs, state, record)

    # -- events ---------------------------------------------------------------------------------
    def _event(self, event: Event, profile: Profile, facts: EventFacts) -> tuple[Output, ...]:
        if type(event) is Signal:
            return self._signal(event, profile)
        cfg = self.cfg
        if profile.challenge is not None or profile.holds or profile.others:
            update.expire_challenge(profile, event.ts)
        lifted = signals.shared_on_lapse(profile, event.account_id, event.event_id, event.ts, cfg.policy.dry_run) \
            if profile.shared is not None else []
        if event.kind in c.CHALLENGE_KINDS:
            # no open challenge: a late or repeated answer changes nothing
            out = self._answer(event, profile) if profile.challenge is not None else ()
            return (*lifted, *out) if lifted else out
        # contract v3: a decided event gets a decision; one of a device or session no open
        # challenge was put to gets a step_up of its own when risky
        decided = self._v3 and event.kind in c.DECIDED_KINDS
        own = decided and decisions.riding(profile, event.device_id, event.session_id) is None
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
        if profile.signals:  # the partners' word, beside the account's own evidence (never alone)
            findings = signals.with_partners(profile, findings, event.ts, self._cred_ms)
        actor = Actor(event.device_id, event.session_id, event.ip, bool(x.device_trusted), self._cred_ms)
        decision = decide(profile, event.account_id, event.ts, event.ip, event.device_id, findings, cfg, actor,
                          own_challenge=own)
        outputs, alert_id, command_id = self._emit(event.account_id, event.event_id, event.ts, decision, findings, x) \
            if decision.alert or decision.action else ((), None, None)
        update.apply_decision(profile, decision, event.ts, alert_id=alert_id, evidence=evidence,
                              alerted=update.alerted_situation(alert_id, x) if alert_id else None,
                              command_id=command_id, device=event.device_id, session=event.session_id,
                              ip=event.ip)
        if decision.action is not None:
            outputs = (*outputs, *signals.shared_on_decision(
                profile, event.account_id, event.event_id, event.ts, decision.action, decision.reasons, command_id,
                session=event.session_id, dry_run=cfg.policy.dry_run))
        if lifted:
            outputs = (*lifted, *outputs)
        if self._v3 and (decided or profile.holds):
            outputs = self._decisions(event, profile, decision, outputs, decided)
        learn_risk = signals.own_risk(findings, decision.risk) if profile.signals else decision.risk
        for d in dets:
            d.learn(x, learn_risk)
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
            if profile.signals:  # a partner's word corroborates a failed challenge
                recent = signals.with_partners(profile, recent, ts, self._cred_ms)
        decision = decide_answer(profile, passed, event.method, event.reason, action=open_challenge.action,
                                 issued_at=open_challenge.issued_at, ts=ts, actor=actor, recent=recent,
                                 cfg=self.cfg, listed=open_challenge.methods)
        outputs, alert_id, command_id = self._emit(event.account_id, event.event_id, ts, decision, recent, None) \
            if decision.alert or decision.action else ((), None, None)
        update.apply_decision(profile, decision, ts, alert_id=alert_id, evidence=evidence, command_id=command_id,
                              device=actor.device, session=actor.session, ip=actor.ip)
        if decision.action is not None:
            outputs = (*outputs, *signals.shared_on_decision(
                profile, event.account_id, event.event_id, ts, decision.action, decision.reasons, command_id,
                session=event.session_id, failed=not passed, dry_run=self.cfg.policy.dry_run))
        if self._v3 and profile.holds:
            if closed:  # the first trusted pass releases what waited on it; an abandoned one refuses it
                outputs += decisions.resolve(profile, self.cfg, event.account_id, event.event_id, ts,
                                             open_challenge.command_id, c.ALLOW if passed else c.DENY,
                                             decision.risk, ("CHALLENGE_PASSED",) if passed else ("CHALLENGE_UNANSWERED",))
            if decision.action in (c.FREEZE, c.CLOSE):
                outputs += decisions.deny_all(profile, self.cfg, event.account_id, event.event_id, ts,
                                              decision.risk, decision.reasons)
        return outputs

    def _signal(self, signal: Signal, profile: Profile) -> tuple[Output, ...]:
        """A partner's signal (contract v3): kept on the account as evidence of family
        ``partner`` (:mod:`detectors.signals`). It decides nothing by itself: no command, no
        alert, no decision; only a restriction shared earlier that has lapsed meanwhile is
        shared as lifted."""
        if profile.challenge is not None or profile.holds or profile.others:
            update.expire_challenge(profile, signal.ts)
        lifted = signals.shared_on_lapse(profile, signal.account_id, signal.event_id, signal.ts,
                                         self.cfg.policy.dry_run) if profile.shared is not None else []
        signals.remember(profile, signal, window_ms=self._cred_ms)
        return tuple(lifted)

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
        command_id = None
        if decision.action:
            cmd = command_value(account_id=account, action=decision.action, reasons=decision.reasons,
                                risk=decision.risk, issued_at=ts, expires_at=decision.expires_at,
                                trigger_event_id=trigger, alert_id=alert_id, policy_version=pol.version,
                                dry_run=pol.dry_run, key=cfg.keys.command_hmac, methods=decision.methods,
                                contract_version=cfg.outputs.contract_version)
            outputs.append(Output(c.COMMANDS, account, cmd))
            command_id = cmd["command_id"]
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
        is_ato = verdict.label == "ato"
        if profile.challenge is not None or profile.holds or profile.others:
            update.expire_challenge(profile, verdict.ts)
        lifted = signals.shared_on_lapse(profile, verdict.account_id, verdict.verdict_id, verdict.ts,
                                         self.cfg.policy.dry_run) if profile.shared is not None else []
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
        if lifted:
            outputs = (*lifted, *outputs)
        if decision.action is not None or is_ato:
            outputs = (*outputs, *signals.shared_on_decision(
                profile, verdict.account_id, verdict.verdict_id, verdict.ts, decision.action, decision.reasons,
                command_id, verdict=verdict.label, dry_run=self.cfg.policy.dry_run))
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
