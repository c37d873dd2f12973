"""Event-time order for the Quix runtime: the next record is the one with the lowest ``ts``.

Quix Streams aligns the partitions of concatenated topics by the *Kafka record timestamp* (its
``PartitionBuffer`` reads ``message.timestamp()``); a topic's ``timestamp_extractor`` only sets the
row's timestamp after the record has been chosen. The contract says ``ts`` in the value is the
truth for ordering, and producers need not set the record time to it. So this module replaces
the consumer's buffer with one that orders by the value's ``ts``:

* every buffered partition's head record has a key, :func:`event_ts` of its value; a value that
  is not a JSON object with an integer ``ts`` (bad input, bound for the dead-letter topic) goes
  as soon as it is at the head of its partition, so it never holds back the good records behind
  it (with the Kafka timestamp as its key, a poison pill produced today would hold its partition
  back until every other partition had drained);
* :meth:`EventTimeBuffer.pop` takes the record with the lowest key across **all** assigned
  partitions of the input topics (Quix's own buffer does it per partition number only), so one
  worker reading a backlog decides in the order ``atoguard replay`` of the ts-sorted events does,
  cross-account facts included;
* like Quix (and Kafka Streams' ``max.task.idle.ms``), it waits while a partition's buffer is
  empty but the broker holds more of it (its high-water mark is beyond the position, or not yet
  known);
* a partition that is caught up and empty is waited for at most ``max_idle_ms`` (``[stream]``,
  100 ms by default) when it belongs to the next record's own partition number: an account's
  inputs are co-partitioned, and an input of the same account published a moment before on
  another topic (an answer just ahead of the holder's next event) must go first. The wait counts
  from the moment the record was fetched, so a backlog is not slowed (its records have waited
  while the ones before them were processed); live, a record waits at most ``max_idle_ms`` for a
  quiet topic. A caught-up empty partition of *another* partition number is not waited for.

Equal ``ts`` are ordered by id (``event_id``, or a verdict's ``verdict_id``), as replay orders
them; a record has one ``(ts, id)``, so only a re-sent copy ties, and the partition assigned first
(then offset order) takes it.
"""

from __future__ import annotations

from collections import deque
from operator import attrgetter
from time import monotonic
from typing import Any, Optional

import orjson
from quixstreams.internal_consumer import buffering as qb

from detectors import contract as c
from streams.driver import order_key

__all__ = ["EventTimeBuffer", "event_ts", "install", "EventTimePartitionBuffer"]

_INF = (float("inf"), b"")
_next = attrgetter("next_timestamp")


def event_ts(value: Any, default: int) -> int:
    """The ``ts`` of a raw contract value, or ``default`` when there is none to read.

    >>> event_ts(b'{"ts": 1764000000000, "kind": "x"}', 5), event_ts(b"not json", 5), event_ts(b'{"ts": "1"}', 5)
    (1764000000000, 5, 5)
    """
    if not value:
        return default
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return default
    ts = obj.get("ts") if type(obj) is dict else None
    return ts if type(ts) is int else default


_NOW = float("-inf")  # the key of a record with no ts: take it as soon as it is at the head


def _message_ts(message: Any) -> tuple:
    """The merge key of a buffered message: ``(ts, id)`` of its value (the driver's
    :func:`streams.driver.order_key`, the order replay takes); bad input first."""
    return order_key(message.value(), message.topic().endswith(c.VERDICTS))


class EventTimePartitionBuffer(qb.PartitionBuffer):
    """Quix's partition buffer with ``next_timestamp`` taken from the head record's ``(ts, id)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.next_timestamp = _INF
        self._fetched: deque[float] = deque()  # monotonic time each buffered message arrived

    def append(self, message: Any) -> None:
        offset = message.offset()
        if offset <= self._max_offset:
            raise ValueError(f"Invalid offset {offset} (max offset is {self._max_offset})")
        self._max_offset = offset
        if self.next_timestamp == _INF:
            self.next_timestamp = _message_ts(message)
        self._messages.append(message)
        self._fetched.append(monotonic())

    def head_fetched(self) -> float:
        """When the head message arrived (monotonic seconds)."""
        return self._fetched[0]

    def clear(self) -> None:
        super().clear()
        self._fetched.clear()
        self.next_timestamp = _INF

    def popleft(self) -> Optional[Any]:
        messages = self._messages
        if not messages:
            return None
        item = messages.popleft()
        self._fetched.popleft()
        if messages:
            self.next_timestamp = _message_ts(messages[0])
        else:
            self.next_timestamp = _INF
            self._high_watermark = -1001  # unknown until the next fetch (as Quix does)
        return item


class _Group(qb.PartitionBufferGroup):
    def assign_partition(self, topic: str) -> None:
        if topic not in self._partition_buffers:
            self._partition_buffers[topic] = EventTimePartitionBuffer(
                partition=self._partition, topic=topic, max_size=self._max_size)


class EventTimeBuffer(qb.InternalConsumerBuffer):
    """The consumer buffer of the Quix runtime: the lowest head ``ts`` of every assigned input
    partition goes first (see the module docstring); ``max_idle_ms``: the longest a record
    waits for a caught-up, empty partition of its own partition number."""

    def __init__(self, *args: Any, max_idle_ms: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_idle_s = max_idle_ms / 1000.0

    def assign_partitions(self, topic_partitions: list) -> None:
        for tp in sorted(topic_partitions, key=lambda t: t.partition):
            group = self._partition_groups.setdefault(
                tp.partition, _Group(partition=tp.partition, max_size=self._max_partition_buffer_size))
            group.assign_partition(topic=tp.topic)

    def pop(self) -> Optional[Any]:
        best = best_group = None
        best_ts = _INF
        for group in self._partition_groups.values():
            for buffer in group._partition_buffers_values:
                ts = buffer.next_timestamp
                if ts == _INF:  # empty: wait for it unless the broker has nothing more
                    if buffer.idleness() is not qb.Idleness.IDLE:
                        return None
                elif ts < best_ts:
                    best, best_ts, best_group = buffer, ts, group
        if best is None:
            return None
        if self.max_idle_s > 0 and monotonic() - best.head_fetched() < self.max_idle_s:
            for buffer in best_group._partition_buffers_values:
                if buffer.next_timestamp == _INF:  # a quiet topic of the same partition number
                    return None
        return best.popleft()


def install(app: Any, max_partition_buffer_size: int, max_idle_ms: int = 100) -> None:
    """Give ``app``'s consumer the event-time buffer (before ``app.run()``)."""
    consumer = app._consumer  # quixstreams 3.28: InternalConsumer, created in Application.__init__
    consumer._buffer = EventTimeBuffer(max_partition_buffer_size=max_partition_buffer_size, max_idle_ms=max_idle_ms)
