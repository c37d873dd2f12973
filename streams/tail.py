"""Reading an output topic from the command line: the loop under ``alerts tail`` and
``commands tail``, and the look-ups of ``verdict``.

:func:`follow` assigns every partition of one topic to a consumer without a group (nothing is
committed, nothing rebalances), starts at the end or the beginning, and yields the decoded JSON
objects of each poll batch in time order (``ts_field``), so that rows of several partitions come
out in order within a batch. Connecting is bounded by the timeout too: with no broker it raises
:class:`Unreachable` after ``timeout_s``, and a topic that does not exist is :class:`MissingTopic`.
:func:`write_lines` prints the rows of those batches (one line per message, flushed, up to a
limit), :func:`json_line` is a message as one JSON line and :func:`utc_text` a time as the rows
show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

from streams.settings import Settings

__all__ = ["Message", "MissingTopic", "Unreachable", "follow", "json_line", "open_consumer", "utc_text",
           "write_lines"]

#: seconds to wait for the cluster when the command itself has no timeout
CONNECT_TIMEOUT_S = 10.0


class Unreachable(RuntimeError):
    """No Kafka answered at the bootstrap servers within the timeout."""


class MissingTopic(RuntimeError):
    """The topic to read does not exist on the cluster."""


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message: its JSON object, where it came from and its headers."""

    value: dict[str, Any]
    partition: int
    offset: int
    headers: dict[str, str]


def open_consumer(settings: Settings, timeout_s: float | None):
    """A group-less kafka-python consumer of raw bytes; :class:`Unreachable` when no broker
    answers within ``timeout_s`` (default :data:`CONNECT_TIMEOUT_S`)."""
    from kafka import KafkaConsumer
    from kafka import errors

    unreachable = tuple(getattr(errors, name) for name in ("KafkaTimeoutError", "NoBrokersAvailable")
                        if hasattr(errors, name))
    seconds = timeout_s if timeout_s else CONNECT_TIMEOUT_S
    try:
        return KafkaConsumer(group_id=None, enable_auto_commit=False,
                             **settings.client_options(seconds))
    except unreachable:
        raise Unreachable(f"no Kafka answers at {settings.bootstrap_servers} within {seconds:g} s; "
                          "is the broker up? (atoguard broker status)") from None


def _assign(consumer, topic: str, from_beginning: bool) -> list:
    """Assign every partition of ``topic`` and seek; returns the partitions."""
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise MissingTopic(f"topic {topic} does not exist on the cluster; create the topics with "
                           "atoguard topics create (and check --topic-prefix)")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*assigned)
    return assigned


def follow(settings: Settings, topic: str, *, ts_field: str, from_beginning: bool = False,
           timeout_s: float | None = None, until_end: bool = False) -> Iterator[list[Message]]:
    """Yield the messages of ``topic`` one poll batch at a time, each batch sorted by the
    value's ``ts_field``; values that are not JSON objects are skipped.

    Stops after ``timeout_s`` without a message (never when ``None``), or, with ``until_end``,
    once every partition has been read up to where it ended when reading began. Connects and
    checks the topic at once, before the first batch is asked for.
    """
    consumer = open_consumer(settings, timeout_s)
    try:
        assigned = _assign(consumer, topic, from_beginning)
        ends = consumer.end_offsets(assigned) if until_end else {}
    except BaseException:
        consumer.close()
        raise
    return _batches(consumer, assigned, ends, ts_field, timeout_s, until_end)


def _batches(consumer, assigned: list, ends: dict, ts_field: str, timeout_s: float | None,
             until_end: bool) -> Iterator[list[Message]]:
    try:
        last = time.monotonic()
        while True:
            if until_end and all(consumer.position(tp) >= ends[tp] for tp in assigned):
                return
            batch = consumer.poll(timeout_ms=500)
            messages = [m for records in batch.values() for m in map(_decode, records) if m]
            if messages:
                last = time.monotonic()
                messages.sort(key=lambda m: (_ts(m.value, ts_field), m.partition, m.offset))
                yield messages
            elif timeout_s is not None and time.monotonic() - last >= timeout_s:
                return
    finally:
        consumer.close()


def _ts(value: dict[str, Any], field: str) -> int:
    ts = value.get(field)
    return ts if type(ts) is int else 0


def _decode(record) -> Message | None:
    try:
        value = orjson.loads(record.value)
    except (orjson.JSONDecodeError, TypeError):
        return None
    if type(value) is not dict:
        return None
    headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or [])}
    return Message(value, record.partition, record.offset, headers)


# -- printing the rows ---------------------------------------------------------------------------

def write_lines(batches: Iterator[list[Message]], out: TextIO, line: Callable[[Message], str | None],
                limit: int | None = None) -> int:
    """Write ``line(message)`` for every message of ``batches`` (those it maps to ``None`` are
    skipped), flushing each, and stop after ``limit`` lines. Closes ``batches`` (and so the
    consumer) in any case; returns how many lines were written."""
    shown = 0
    try:
        for batch in batches:
            for msg in batch:
                text = line(msg)
                if text is None:
                    continue
                out.write(text + "\n")
                out.flush()
                shown += 1
                if limit is not None and shown >= limit:
                    return shown
    finally:
        batches.close()
    return shown


def json_line(msg: Message, *, headers: bool = False) -> str:
    """``msg`` as one JSON object: its partition, offset, headers (if asked) and value."""
    record: dict[str, Any] = {"partition": msg.partition, "offset": msg.offset}
    if headers:
        record["headers"] = msg.headers
    record["value"] = msg.value
    return orjson.dumps(record).decode()


def utc_text(ms: Any) -> str:
    """Milliseconds since the epoch as ``YYYY-MM-DD HH:MM:SS`` (UTC); anything but an int is 0.

    >>> utc_text(1764000000000)
    '2025-11-24 16:00:00'
    """
    ms = ms if type(ms) is int else 0
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
