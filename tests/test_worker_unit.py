"""The workers' per-message code without a broker: for the Faust runtime, decoding to dead
letters, outputs, the table written after the outputs are acknowledged, a new task reading the
table, metrics; for the Quix runtime, the event-time buffer and the handler."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest

from detectors import contract as c
from detectors.config import Config
from detectors.events import DeviceEvent
from detectors.sharding import shard_of
from streams.runtimes.faust import OUTPUTS, PartitionMismatch, WorkerOptions, create_app
from streams.settings import Settings

SETTINGS = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="u.", partitions=3)
#: the partition of account a1 among 3
P1 = shard_of("a1", 3)


class FakeTopic:
    """Records what is sent; ``send`` resolves at once, like an acknowledged produce."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, *, key=None, value=None, headers=None):
        self.sent.append({"key": key, "value": value, "headers": headers})
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def make_app(tmp_path, **kw):
    options = WorkerOptions(store="memory", data_dir=tmp_path, web_enabled=False, snapshot_interval_s=0, **kw)
    app = create_app(SETTINGS, Config(shards=3), options)
    rt = app.atoguard
    rt.outputs = {t: FakeTopic() for t in OUTPUTS}
    return app, rt


def message(topic: str, value: bytes, key: bytes | None = b"a1", partition: int = P1, offset: int = 7):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, key=key, value=value, time_in=None)


def login(event_id: str, account: str = "a1", ts: int = 1764000000000, **extra) -> bytes:
    return orjson.dumps({"event_id": event_id, "account_id": account, "ts": ts, "kind": "login_success", **extra})


def test_create_app_refuses_shards_unlike_the_partitions(tmp_path):
    with pytest.raises(PartitionMismatch, match="cfg.shards=6 but the input topics have 3"):
        create_app(SETTINGS, Config(shards=6), WorkerOptions(store="memory", data_dir=tmp_path, web_enabled=False))


@pytest.mark.parametrize("value,key,partition,reason", [
    (b"\x00not json", b"a1", P1, c.NOT_JSON),
    (b"[1, 2]", b"a1", P1, c.NOT_OBJECT),
    (login("e1", account="a2"), b"a1", P1, c.KEY_MISMATCH),
    (orjson.dumps({"event_id": "e1", "account_id": "a1", "ts": 1, "kind": "teleport"}), b"a1", P1, c.UNKNOWN_KIND),
    (login("e1"), b"a1", (P1 + 1) % 3, c.WRONG_PARTITION),
])
def test_bad_input_becomes_a_dead_letter_with_topic_partition_offset(tmp_path, value, key, partition, reason):
    app, rt = make_app(tmp_path)
    rt.profiles = {}
    asyncio.run(rt.process(message("u.device", value, key, partition=partition)))
    (sent,) = rt.outputs[c.DEAD_LETTER].sent
    letter = orjson.loads(sent["value"])
    assert (letter["reason"], letter["topic"], letter["partition"], letter["offset"]) == (reason, "u.device", partition, 7)
    assert sent["key"] == key
    assert rt.metrics.dead_letters.value(topic="device", reason=reason) == 1
    assert rt.driver.counts.dead_letters == {reason: 1}
    assert rt.processed == {f"u.device:{partition}": 7}
    assert not rt.outputs[c.COMMANDS].sent


def test_accepted_events_update_the_table_once_and_feed_the_facts(tmp_path):
    app, rt = make_app(tmp_path)
    table: dict = {}
    rt.profiles = table
    ev = login("e1", device_id="d1", ip="192.0.2.1")
    asyncio.run(rt.process(message("u.device", ev)))
    asyncio.run(rt.process(message("u.device", ev, offset=8)))  # redelivered
    assert set(table) == {"p:a1", "d:a1", f"m:{P1}:time", f"m:{P1}:models"}
    assert rt.metrics.events.value(topic="device", kind="login_success") == 1
    assert rt.metrics.duplicates.value(topic="device") == 1
    assert (rt.driver.counts.events, rt.driver.counts.duplicates) == (1, 1)
    assert rt.health("u.worker")["events"]["events"] == 1
    later = DeviceEvent("e9", "a9", 1764000000000 + 3_600_000, "login_success", ip="192.0.2.1", device_id="d1")
    facts = rt.driver.facts.facts(later, rt.driver.facts_settings.bound(later.ts))
    assert (facts.ip.accounts, facts.device.accounts) == (1, 1)


def test_facts_can_be_switched_off(tmp_path):
    app, rt = make_app(tmp_path, follow_facts=False)
    rt.profiles = {}
    asyncio.run(rt.process(message("u.device", login("e1", ip="192.0.2.1"))))
    assert rt.facts_applied == 0 and rt.driver.counts.events == 1


def test_a_new_task_takes_its_state_from_the_table(tmp_path):
    """After a rebalance (the task dropped) or a restart (a new app): the seen ids, the stream
    time and the models come back from the table."""
    app, rt = make_app(tmp_path)
    table: dict = {}
    rt.profiles = table
    asyncio.run(rt.process(message("u.device", login("e1", device_id="d1"))))
    rt.revoked([SimpleNamespace(topic="u.device", partition=P1)])
    assert P1 not in rt.driver.tasks
    app2, rt2 = make_app(tmp_path)
    rt2.profiles = table
    asyncio.run(rt2.process(message("u.device", login("e1", device_id="d1"), offset=9)))  # redelivered
    assert rt2.driver.counts.duplicates == 1
    assert rt2.driver.tasks[P1].stream_time == 1764000000000
    # late: more than max_lateness below the restored stream time
    lateness = rt2.cfg.stream.max_lateness_ms
    asyncio.run(rt2.process(message("u.device", login("e0", ts=1764000000000 - lateness - 1), offset=10)))
    (letter,) = rt2.outputs[c.DEAD_LETTER].sent
    assert orjson.loads(letter["value"])["reason"] == c.LATE and rt2.driver.counts.late == 1


def test_outputs_are_acknowledged_before_the_table_is_written(tmp_path):
    """The write that marks the event as seen must come after its outputs are safely in Kafka."""
    app, rt = make_app(tmp_path)
    order: list[str] = []

    class Table(dict):
        def __setitem__(self, k, v):
            order.append("table")
            super().__setitem__(k, v)

    class SlowTopic(FakeTopic):
        """Kafka acknowledges a send only a little later, as a real broker does."""

        async def send(self, **kw):
            self.sent.append(kw)
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            order.append("sent")

            def ack():
                order.append("acked")
                fut.set_result(None)

            loop.call_later(0.01, ack)
            return fut

    for t in OUTPUTS:
        rt.outputs[t] = SlowTopic()
    rt.profiles = Table()
    verdict = orjson.dumps({"verdict_id": "v1", "account_id": "a1", "ts": 1764000000000, "label": "ato",
                            "source": "analyst"})
    asyncio.run(rt.process(message("u.verdicts", verdict)))
    # every output sent and acknowledged, and only then the table
    n = sum(len(t.sent) for t in rt.outputs.values())
    assert n >= 2 and order[:2 * n] == ["sent"] * n + ["acked"] * n
    assert order[2 * n:] and set(order[2 * n:]) == {"table"}
    (cmd,) = rt.outputs[c.COMMANDS].sent
    assert orjson.loads(cmd["value"])["action"] == "close" and cmd["key"] == b"a1"
    (alert,) = rt.outputs[c.ALERTS].sent
    assert dict(alert["headers"])["ce_specversion"] == b"1.0"
    assert rt.metrics.commands.value(action="close") == 1


# -- the Quix runtime, without a broker ---------------------------------------------------------------

class FakeKafkaMessage:
    """What the Quix consumer buffer reads of a confluent-kafka message."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None, kafka_ts: int = 0) -> None:
        self._t, self._p, self._o, self._v, self._ts = topic, partition, offset, value, kafka_ts

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def timestamp(self):
        return (1, self._ts)


def _buffer_with(batches: dict[tuple[str, int], list[bytes | None]], kafka_ts: int = 0, max_idle_ms: int = 0):
    from confluent_kafka import TopicPartition
    from streams.runtimes.eventtime import EventTimeBuffer

    buf = EventTimeBuffer(max_partition_buffer_size=100, max_idle_ms=max_idle_ms)
    buf.assign_partitions([TopicPartition(t, p) for t, p in batches])
    msgs = [FakeKafkaMessage(t, p, i, v, kafka_ts) for (t, p), vs in batches.items() for i, v in enumerate(vs)]
    ends = {tp: len(vs) for tp, vs in batches.items()}
    buf.feed(msgs, high_watermarks=ends, positions=ends)
    buf.ends = ends
    return buf


def _drain(buf) -> list:
    """Pop until empty; when a partition runs dry, feed nothing but the watermarks (as the
    consumer does on its next poll: the partition is then known to be caught up)."""
    out = []
    while True:
        m = buf.pop()
        if m is None:
            buf.feed([], high_watermarks=buf.ends, positions=buf.ends)
            m = buf.pop()
            if m is None:
                return out
        out.append((m.topic(), m.partition(), m.offset()))


def _ts(t: int) -> bytes:
    return orjson.dumps({"event_id": f"e{t}", "account_id": "a", "ts": t, "kind": "login_success"})


def test_event_time_buffer_takes_the_lowest_ts_across_topics_and_partitions():
    buf = _buffer_with({("dev", 0): [_ts(10), _ts(40)], ("loc", 0): [_ts(20)], ("dev", 1): [_ts(5), _ts(30)]},
                       kafka_ts=999)
    assert _drain(buf) == [("dev", 1, 0), ("dev", 0, 0), ("loc", 0, 0), ("dev", 1, 1), ("dev", 0, 1)]


def test_a_record_without_ts_goes_at_once_and_holds_nothing_back():
    # a poison pill with a Kafka timestamp later than every event must not wait behind them
    buf = _buffer_with({("dev", 0): [_ts(10), b"\x00not json", _ts(50)], ("loc", 0): [_ts(20), _ts(30), _ts(40)]},
                       kafka_ts=10**13)
    assert _drain(buf) == [("dev", 0, 0), ("dev", 0, 1), ("loc", 0, 0), ("loc", 0, 1), ("loc", 0, 2), ("dev", 0, 2)]


def test_event_time_buffer_waits_for_an_empty_partition_the_broker_still_has_data_for():
    from confluent_kafka import TopicPartition
    from streams.runtimes.eventtime import EventTimeBuffer

    buf = EventTimeBuffer(max_partition_buffer_size=100, max_idle_ms=0)
    buf.assign_partitions([TopicPartition("dev", 0), TopicPartition("loc", 0)])
    buf.feed([FakeKafkaMessage("dev", 0, 0, _ts(10))], high_watermarks={("dev", 0): 1, ("loc", 0): 3},
             positions={("dev", 0): 1, ("loc", 0): 0})
    assert buf.pop() is None  # loc:0 holds 3 records not fetched yet: one of them may be earlier
    buf.feed([FakeKafkaMessage("loc", 0, i, _ts(5 + 10 * i)) for i in range(3)],
             high_watermarks={("dev", 0): 1, ("loc", 0): 3}, positions={("dev", 0): 1, ("loc", 0): 3})
    buf.ends = {("dev", 0): 1, ("loc", 0): 3}
    assert _drain(buf) == [("loc", 0, 0), ("dev", 0, 0), ("loc", 0, 1), ("loc", 0, 2)]


def test_a_record_waits_max_idle_ms_for_a_quiet_topic_of_its_partition_and_no_other(monkeypatch):
    """Live, an answer published a moment before the holder's next event (another topic, same
    partition number) may arrive a fetch later: the event waits for it, at most max_idle_ms."""
    from streams.runtimes import eventtime

    clock = [100.0]
    monkeypatch.setattr(eventtime, "monotonic", lambda: clock[0])
    buf = _buffer_with({("txn", 0): [_ts(20)], ("dev", 0): [], ("dev", 1): []}, max_idle_ms=100)
    assert buf.pop() is None                       # dev:0 is caught up and empty: wait a little
    clock[0] += 0.05
    buf.feed([FakeKafkaMessage("dev", 0, 0, _ts(10))], high_watermarks={("dev", 0): 1}, positions={("dev", 0): 1})
    assert buf.pop().topic() == "dev"              # the answer came in time: it goes first
    assert buf.pop() is None                       # dev:0 is empty again: txn waits out its 100 ms
    buf.feed([], high_watermarks={("dev", 0): 1}, positions={("dev", 0): 1})  # the next poll: caught up
    assert buf.pop() is None
    clock[0] += 0.06
    assert buf.pop().topic() == "txn"
    buf.feed([FakeKafkaMessage("txn", 0, 1, _ts(30))], high_watermarks={("txn", 0): 2}, positions={("txn", 0): 2})
    assert buf.pop() is None
    clock[0] += 0.15                                 # nothing came for 100 ms: go on
    assert buf.pop().offset() == 1
    # a backlog record fetched long ago goes at once; dev:1 (another partition number) never holds txn:0
    buf.feed([FakeKafkaMessage("txn", 0, 2, _ts(40)), FakeKafkaMessage("dev", 0, 1, _ts(50))],
             high_watermarks={("txn", 0): 3, ("dev", 0): 2}, positions={("txn", 0): 3, ("dev", 0): 2})
    assert buf.pop().offset() == 2


class FakeState:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get_bytes(self, key, default=None):
        return self.data.get(key, default)

    def set_bytes(self, key, value):
        self.data[key] = value


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def produce(self, **kw):
        self.sent.append(kw)


def quix_worker(tmp_path):
    from streams.runtimes.quix import QuixOptions, QuixWorker

    from streams.driver import MemoryStore

    w = QuixWorker(SETTINGS, Config(shards=3), QuixOptions(data_dir=tmp_path, web_enabled=False))
    w._producer = FakeProducer()
    for p in range(SETTINGS.partitions):  # the partitions' stores, as the checkpoint gives them
        w.driver.task(p, MemoryStore())
    return w


def _in_context(topic: str, partition: int, offset: int, fn):
    from contextvars import copy_context
    from quixstreams.context import set_message_context
    from quixstreams.models.messagecontext import MessageContext

    ctx = copy_context()
    ctx.run(set_message_context, MessageContext(topic, partition, offset, 0))
    return ctx.run(fn)


def test_quix_handle_dead_letters_bad_input_and_keeps_the_state(tmp_path):
    w = quix_worker(tmp_path)
    state = FakeState()
    _in_context("u.device", 2, 41, lambda: w.handle(b"\x00nope", b"a1", 0, None, state))
    w.driver.checkpoint()
    assert w.driver.tasks[2].store.accounts == {}
    (sent,) = w._producer.sent
    value = orjson.loads(sent["value"])
    assert sent["topic"] == "u.dead-letter" and sent["key"] == b"a1"
    assert (value["reason"], value["topic"], value["partition"], value["offset"]) == (c.NOT_JSON, "u.device", 2, 41)


def test_quix_handle_stores_the_profile_and_ignores_a_repeat(tmp_path):
    from detectors.profile import decode

    from streams.driver import PROFILE

    w = quix_worker(tmp_path)
    state = FakeState()
    p = w.driver.partition_of("a1")
    _in_context("u.device", p, 1, lambda: w.handle(login("e1", device_id="d1"), b"a1", 0, None, state))
    w.driver.checkpoint()
    store = w.driver.tasks[p].store
    stored = store.get("a1", PROFILE)
    assert decode(stored).n_events == 1
    _in_context("u.device", p, 2, lambda: w.handle(login("e1", device_id="d1"), b"a1", 0, None, state))
    w.driver.checkpoint()
    assert store.get("a1", PROFILE) == stored  # a redelivered event changes nothing
    assert w.metrics.duplicates.value(topic="device") == 1.0


def test_the_checkpoint_hook_writes_the_state_whenever_quix_commits(tmp_path):
    """Quix (3.28.1) tests ``checkpoint.expired()`` itself; a checkpoint that expires between the
    hook's test and Quix's must still carry the tasks' state (at the last checkpoint of a run it
    was lost for good: the chaos suite's kill -9 scenario found it)."""
    from types import SimpleNamespace

    from quixstreams.processing.context import ProcessingContext

    class Checkpoint:
        def __init__(self, answers):
            self.answers, self.committed = list(answers), 0

        def expired(self):  # the hook asks first, then Quix
            return self.answers.pop(0) if self.answers else True

        def empty(self):
            return False

        def commit(self, revoking=False):
            self.committed += 1

    w = quix_worker(tmp_path)
    calls = []
    w.driver.checkpoint = lambda: calls.append("state")
    for answers, want in (([False, True], 0), ([True], 1)):
        calls.clear()
        checkpoint = Checkpoint(answers)
        context = SimpleNamespace(checkpoint=checkpoint, init_checkpoint=lambda: None)
        context.commit_checkpoint = lambda force=False, revoking=False, _c=context: \
            ProcessingContext.commit_checkpoint(_c, force, revoking)
        w._hook(SimpleNamespace(_processing_context=context, _on_revoke=lambda *a: None, _on_lost=lambda *a: None))
        context.commit_checkpoint()
        assert checkpoint.committed == want and calls == ["state"] * want
