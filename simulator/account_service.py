"""The live account service of the demo and of ``atoguard simulate --to-kafka --respond``.

It plays, against the real worker, what ``atoguard replay --respond`` plays offline (contract
v3, "Closed-loop replay"), by the very same rules, those of :mod:`simulator.people`:
:func:`~simulator.people.respond_to` decides, for each command, whether the attack of the person
acting is refused from now on and what that person answers (any listed enrolled method they
pass; ``id_check`` answers come 2 h later); :class:`~simulator.people.People` says who acts and
who passes what. Only the Kafka transport is this module's.

* It reads ``<prefix>commands`` with ``isolation.level=read_committed`` (only what the worker's
  transactions committed), checks each command's signature (:func:`detectors.outputs.verify`
  with ``keys.command_hmac``; a bad one is counted and ignored) and answers each ``step_up`` and
  each ``freeze`` with a way back (no ``dry_run``) on ``<prefix>device``, keyed by the account:
  event ``ch-<command_id>`` at ``issued_at`` + 30 s / + 10 min (+ 2 h with ``id_check``) of
  event time.
* The simulator's events go out through :meth:`AccountService.submit`, in ``ts`` order, so the
  service also withholds an attacker's later events once refused (the refused set is shared).

Order, as in the replay, per account: an answer is sent before the account's first event with a
larger ``ts`` and after those with the same ``ts``. Live, an answer exists only once the worker
has decided on its trigger, so the service holds an account's next event back (the other
accounts' events go on) while an earlier input of that account is not yet *confirmed*: the
worker's consumer group has committed past its offset (under exactly-once, together with the
commands it caused) and the service has read the command topic up to its last stable offset
after that. An attacker's event waits for every earlier input of its account (a refusal may be
on its way); any other event only for the inputs 30 s or more older (the earliest an answer can
be due). The world does not run ahead of an account held back for more than ``max_skew_ms`` of
event time (6 h by default, a quarter of ``[stream] max_lateness_ms``): no event is sent whose
``ts`` is that far beyond the oldest input not yet sent or not yet confirmed, so nothing the
service holds back arrives ``late`` at the worker, however slowly the worker confirms. Within the
skew, the models and the cross-account facts still see the accounts slightly out of ``ts``
order.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import IO, Callable

import orjson

from detectors import contract as c
from detectors.outputs import verify
from simulator.people import HOLDER, STEP_UP_ANSWER_MS, People, Respondent, respond_to
from streams.topics import topic_name

__all__ = ["AccountService", "ServiceError", "ServiceStats", "INPUT_TOPICS", "publish_file"]

#: the input topics the simulator publishes to (and the worker's progress is read on)
INPUT_TOPICS = (c.DEVICE, c.LOCATION, c.TRANSACTION)
#: how often, at most, the worker's committed offsets are read (seconds)
CONFIRM_EVERY_S = 0.02



#: how far (event time) the world may run ahead of the oldest input not yet sent or confirmed
MAX_SKEW_MS = 6 * 3_600_000

#: confirmed inputs whose device/ip/session are still kept for a late-read command they triggered
KEEP_TRIGGERS = 100_000

class ServiceError(RuntimeError):
    """The service cannot start (no broker, topics missing); the message says which."""


@dataclass
class ServiceStats:
    """What the service has done so far (read by the demo's live view)."""

    events_sent: int = 0
    withheld: int = 0
    commands: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)  # challenge_passed / challenge_failed
    bad_signatures: int = 0
    dry_run: int = 0
    refused_attacks: int = 0
    held_back: int = 0  # events that had to wait for the worker at least once


@dataclass(slots=True)
class _Input:
    """One input to send for an account: a simulated event or an answer."""

    ts: int
    topic: str  # logical
    value: bytes
    event_id: str
    attack: int | None  # the ato incident whose attacker acts (events only)
    answer: bool
    person: Respondent = HOLDER
    waited: bool = False


@dataclass(slots=True)
class _Sent:
    """An input sent and not yet confirmed: its ``ts`` and, once delivered, where it is."""

    ts: int
    event_id: str
    where: tuple[str, int] | None = None  # (full topic, partition)
    offset: int = -1


class AccountService:
    """The account service and the people, live. ``submit`` the simulated events in ``ts``
    order, ``pump`` while idle, ``finish`` at the end; ``close`` always.

    ``worker_group`` is the worker's consumer group (``atoguard run``'s app id, by default
    ``<prefix>worker``). ``transcript``, when given, receives every input sent as a contract
    line and one ``withheld`` line per withheld event, in the order they happened.
    ``on_command(cmd, answer)`` and ``on_answer(answer)`` are called for the live view.
    """

    def __init__(self, people: People, bootstrap_servers: str, prefix: str, key: str, *,
                 worker_group: str | None = None, transcript: IO[bytes] | None = None,
                 on_command: Callable[[dict, dict | None], None] | None = None,
                 client_options: dict | None = None, max_skew_ms: int = MAX_SKEW_MS) -> None:
        from confluent_kafka import Consumer, Producer, TopicPartition

        self.people, self.key, self.prefix = people, key, prefix
        self.max_skew_ms = max_skew_ms
        self.transcript, self.on_command = transcript, on_command
        self.stats = ServiceStats()
        base = {"bootstrap.servers": bootstrap_servers, **(client_options or {})}
        self._producer = Producer({**base, "linger.ms": 2, "enable.idempotence": True,
                                   "partitioner": "murmur2_random"})  # contract v3: murmur2 of the key
        self._commands = Consumer({**base, "group.id": f"{prefix}account-service", "enable.auto.commit": False,
                                   "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
        # never fetches (a fetch waiting on the broker would hold these look-ups back): reads the
        # worker group's committed offsets and the command topic's last stable offsets
        self._watch = Consumer({**base, "group.id": worker_group or f"{prefix}worker",
                                "enable.auto.commit": False, "isolation.level": "read_committed"})
        self._full = {t: topic_name(t, prefix) for t in INPUT_TOPICS}
        commands_topic = topic_name(c.COMMANDS, prefix)
        try:
            meta = self._commands.list_topics(timeout=10).topics
        except Exception as exc:  # confluent's KafkaException: no broker answered
            raise ServiceError(f"no Kafka answers at {bootstrap_servers}: {exc}") from None
        missing = [t for t in (commands_topic, *self._full.values()) if t not in meta]
        if missing:
            raise ServiceError(f"topics missing: {', '.join(missing)}; create them with atoguard topics create "
                               f"--topic-prefix {prefix}")
        self._command_tps = [TopicPartition(commands_topic, p) for p in sorted(meta[commands_topic].partitions)]
        self._commands.assign([TopicPartition(commands_topic, p, 0) for p in sorted(meta[commands_topic].partitions)])
        self._input_tps = [TopicPartition(t, p) for t in self._full.values() for p in sorted(meta[t].partitions)]
        self.now = -1                 # ts of the newest submitted event: answers before it are due
        self.refused: set[int] = set()
        self._person_of: dict[str, Respondent] = {}         # answer id -> who gave it
        self._trigger: dict[str, dict] = {}                 # input id -> device/ip/session
        # ids of confirmed inputs, oldest first: their trigger fields are kept a while longer, for
        # a command the worker committed with them but we had not read yet when confirming
        self._retired: deque[str] = deque()
        self._queue: dict[str, deque[_Input]] = {}          # account -> events waiting to be sent
        self._answers: dict[str, list] = {}                 # account -> heap of (ts, seq, _Input)
        self._sent: dict[str, list[_Sent]] = {}             # account -> inputs not yet confirmed
        self._read_to: dict[int, int] = {}                  # commands partition -> next offset read
        self._seq = 0
        self._last_confirm = 0.0

    # -- the simulator's side ----------------------------------------------------------------
    def submit(self, topic: str, account: str, value: bytes) -> None:
        """One simulated event (logical ``topic``, raw JSON ``value``), in ``ts`` order."""
        v = orjson.loads(value)
        ts, eid = v["ts"], v["event_id"]
        self.now = max(self.now, ts)
        self._trigger[eid] = {k: v[k] for k in ("device_id", "ip", "session_id") if v.get(k) is not None}
        item = _Input(ts, topic, value, eid, self.people.attacker_of.get(eid), False)
        self._queue.setdefault(account, deque()).append(item)
        self.pump()

    def pump(self, timeout: float = 0.0) -> None:
        """Read the commands that arrived, learn what the worker has committed, send what may go."""
        self._producer.poll(0)
        self._read_commands(timeout)
        if time.monotonic() - self._last_confirm >= CONFIRM_EVERY_S:
            self._confirm()
        self._drain()

    def pending(self) -> int:
        """Inputs not yet sent or not yet confirmed (0: the loop is at rest)."""
        return (sum(map(len, self._queue.values())) + sum(map(len, self._answers.values()))
                + sum(map(len, self._sent.values())))

    def finish(self, timeout_s: float = 120.0) -> bool:
        """After the last event: send the remaining answers (in ``ts`` order, as the worker's
        new commands come) until every input is confirmed; False when ``timeout_s`` ran out."""
        self.now = float("inf")
        deadline = time.monotonic() + timeout_s
        while self.pending():
            if time.monotonic() > deadline:
                return False
            self.pump(0.05)
        self._producer.flush(10)
        return True

    def close(self) -> None:
        self._producer.flush(10)
        self._commands.close()
        self._watch.close()

    # -- commands ----------------------------------------------------------------------------
    def _read_commands(self, timeout: float) -> None:
        for msg in self._commands.consume(500, timeout):
            if msg.error():
                continue
            self._read_to[msg.partition()] = msg.offset() + 1
            try:
                cmd = orjson.loads(msg.value())
            except orjson.JSONDecodeError:
                continue
            self._command(cmd)

    def _command(self, cmd: dict) -> None:
        """Act on one command, as the account service: verify, then refuse and answer."""
        if not verify(cmd, self.key):
            self.stats.bad_signatures += 1
            return
        self.stats.commands[cmd["action"]] += 1
        if cmd.get("dry_run"):
            self.stats.dry_run += 1
        trigger_id = cmd["trigger_event_id"]
        person = self._person_of.get(trigger_id) or Respondent(self.people.attacker_of.get(trigger_id))
        refuse, answer = respond_to(cmd, person, self._trigger.get(trigger_id, {}), self.people)
        if refuse and person.incident not in self.refused:
            self.refused.add(person.incident)
            self.stats.refused_attacks += 1
        if self.on_command is not None:
            self.on_command(cmd, answer)
        if answer is None:
            return
        eid = answer["event_id"]
        self._person_of[eid] = person
        self._trigger[eid] = {k: answer[k] for k in ("device_id", "ip", "session_id") if k in answer}
        self._seq += 1
        item = _Input(answer["ts"], c.DEVICE, orjson.dumps(answer), eid, None, True, person)
        heapq.heappush(self._answers.setdefault(answer["account_id"], []), (answer["ts"], self._seq, item))

    # -- what the worker has done --------------------------------------------------------------
    def _confirm(self) -> None:
        """Mark confirmed every sent input the worker has committed past, once the commands of
        those commits are read (up to the command topic's last stable offset)."""
        from confluent_kafka import TopicPartition

        self._last_confirm = time.monotonic()
        if not self._sent:
            return
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in self._watch.committed(self._input_tps, timeout=10) if tp.offset >= 0}

        def done(s: _Sent) -> bool:
            return s.where is not None and s.offset < committed.get(s.where, 0)

        if not any(done(s) for sent in self._sent.values() for s in sent):
            return
        for tp in self._command_tps:
            _, stable = self._watch.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), 10, False)
            deadline = time.monotonic() + 5
            while self._caught_up(tp.partition) < stable and time.monotonic() < deadline:
                self._read_commands(0.05)
        for account in list(self._sent):
            left = []
            for s in self._sent[account]:
                if done(s):
                    self._retire(s.event_id)
                else:
                    left.append(s)
            if left:
                self._sent[account] = left
            else:
                del self._sent[account]

    def _caught_up(self, partition: int) -> int:
        """The next offset of a command partition the service will read (control records of
        committed transactions included: the consumer's position)."""
        from confluent_kafka import TopicPartition

        pos = self._commands.position([TopicPartition(self._command_tps[0].topic, partition)])[0].offset
        return max(pos, self._read_to.get(partition, 0))

    # -- sending, in order -------------------------------------------------------------------
    def _next(self, account: str) -> _Input | None:
        """The account's next input: its earliest due answer when that is earlier than its
        next event's ``ts`` (strictly), else the event."""
        queue, answers = self._queue.get(account), self._answers.get(account)
        event = queue[0] if queue else None
        if answers:
            ts = answers[0][0]
            if ts < self.now and (event is None or ts < event.ts):
                return answers[0][2]
        return event

    def _blocked(self, account: str, item: _Input) -> bool:
        """Whether an earlier input of the account may still cause something ``item`` must
        come after (a refusal for an attacker's event; an answer due before ``item.ts``)."""
        for s in self._sent.get(account, ()):
            if item.attack is not None or s.ts + STEP_UP_ANSWER_MS < item.ts:
                return True
        return False

    def _floor(self) -> float:
        """The oldest ``ts`` of an input waiting to be sent or not yet confirmed."""
        heads = [q[0].ts for q in self._queue.values() if q]
        heads += [s[0].ts for s in self._sent.values() if s]
        return min(heads, default=float("inf"))

    def _drain(self) -> None:
        horizon = self._floor() + self.max_skew_ms
        for account in [a for a in self._queue] + [a for a in self._answers if a not in self._queue]:
            while True:
                item = self._next(account)
                if item is None:
                    break
                if (not item.answer and item.ts > horizon) or self._blocked(account, item):
                    if not item.answer and not item.waited:
                        item.waited = True
                        self.stats.held_back += 1
                    break
                self._take(account, item)
                self._send(account, item)
            if not self._queue.get(account, True):
                del self._queue[account]
            if not self._answers.get(account, True):
                del self._answers[account]

    def _retire(self, event_id: str) -> None:
        """Forget a confirmed input's trigger fields, but only :data:`KEEP_TRIGGERS` inputs later."""
        self._retired.append(event_id)
        while len(self._retired) > KEEP_TRIGGERS:
            self._trigger.pop(self._retired.popleft(), None)

    def _take(self, account: str, item: _Input) -> None:
        if item.answer:
            heapq.heappop(self._answers[account])
        else:
            self._queue[account].popleft()

    def _send(self, account: str, item: _Input) -> None:
        if item.attack is not None and item.attack in self.refused:
            self.stats.withheld += 1
            self._trigger.pop(item.event_id, None)
            if self.transcript is not None:
                self.transcript.write(orjson.dumps({"topic": "withheld", "value": {"event_id": item.event_id}}) + b"\n")
            return
        sent = _Sent(item.ts, item.event_id)
        self._sent.setdefault(account, []).append(sent)

        def delivered(err, msg, sent=sent) -> None:
            if err is None:
                sent.where, sent.offset = (msg.topic(), msg.partition()), msg.offset()

        self._producer.produce(self._full[item.topic], key=account.encode(), value=item.value, on_delivery=delivered)
        if item.answer:
            self.stats.answers[orjson.loads(item.value)["kind"]] += 1
        else:
            self.stats.events_sent += 1
        if self.transcript is not None:
            self.transcript.write(b'{"topic":"' + item.topic.encode() + b'","value":' + item.value + b"}\n")


def publish_file(path, sink, batch_size: int = 1000) -> int:
    """Write the input lines of a contract JSON Lines file (in file order, which the simulator
    writes in ``ts`` order) into a simulator sink, in batches; returns how many were written."""
    from simulator.timeline import TOPICS, line_of

    index = {t: i for i, t in enumerate(TOPICS)}
    batch: list[tuple[str, str, bytes]] = []
    n = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            rec = orjson.loads(raw)
            topic = rec.get("topic")
            if topic not in index or type(rec.get("value")) is not dict:
                continue
            batch.append((topic, rec["value"]["account_id"], line_of(index[topic], rec["value"])))
            if len(batch) >= batch_size:
                sink.write(batch)
                n += len(batch)
                batch = []
    if batch:
        sink.write(batch)
        n += len(batch)
    return n
