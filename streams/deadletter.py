"""Bad input goes to the dead-letter topic, and the partition goes on.

The contract: a message that cannot be accepted (not JSON, not an object, a missing or mistyped
field, an unknown kind, a key that differs from ``account_id``, a value out of range) is written
to ``<prefix>dead-letter`` with its original bytes, topic, partition, offset and the reason,
keyed by the original key; the messages around it are processed as usual. Nothing crashes and
nothing blocks.

Two layers:

* :func:`route` is the decision for one message, pure: ``(record, None)`` or
  ``(None, dead_letter)``. It works on anything with ``topic``, ``partition``, ``offset``,
  ``key`` and ``value`` (a kafka-python ``ConsumerRecord``, a Faust message).
* :func:`pump` is a small consume-decode-produce loop over kafka-python clients that calls
  ``on_record`` for each accepted record and produces the dead letters. It commits the
  consumer's offsets only after the dead letters of a batch are acknowledged (at least once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import orjson

from detectors import contract as c
from detectors.events import DeadLetter, decode_or_dead_letter
from streams.topics import topic_name

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.producer.future import FutureRecordMetadata

    from detectors.events import DeviceEvent, LocationEvent, TransactionEvent, Verdict

    Record = DeviceEvent | LocationEvent | TransactionEvent | Verdict

__all__ = [
    "Message", "PumpStats", "dead_letter_value", "prime_metadata", "pump", "route", "send_dead_letter",
]


class Message(Protocol):
    """What :func:`route` reads from a consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class PumpStats:
    """What one :func:`pump` run did."""

    consumed: int = 0
    accepted: int = 0
    dead_lettered: int = 0


def route(message: Message, prefix: str = "ato.") -> tuple[Record | None, DeadLetter | None]:
    """Decode one consumed message: ``(record, None)`` if accepted, else ``(None, dead_letter)``.

    The schema is chosen by the topic's logical name (``prefix`` stripped); the dead letter
    records the real topic name. A topic outside the contract is dead-lettered as
    ``UNKNOWN_TOPIC``.
    """
    logical = message.topic[len(prefix):] if message.topic.startswith(prefix) else message.topic
    result = decode_or_dead_letter(message.topic, message.value, message.key,
                                   partition=message.partition, offset=message.offset,
                                   logical_topic=logical)
    if isinstance(result, DeadLetter):
        return None, result
    return result, None


def dead_letter_value(dead_letter: DeadLetter) -> bytes:
    """The dead-letter message value: ``schemas/v1/dead-letter.schema.json`` as JSON bytes."""
    return orjson.dumps(dead_letter.to_dict())


def send_dead_letter(producer: KafkaProducer, dead_letter: DeadLetter,
                     prefix: str = "ato.") -> FutureRecordMetadata:
    """Produce ``dead_letter`` to ``<prefix>dead-letter``, keyed by the original key.

    Returns kafka-python's future; flush the producer before committing the source offset.
    """
    return producer.send(topic_name(c.DEAD_LETTER, prefix), key=dead_letter.key,
                         value=dead_letter_value(dead_letter))


def pump(consumer: KafkaConsumer, producer: KafkaProducer, on_record: Callable[[Record], None],
         *, prefix: str = "ato.", max_messages: int | None = None, idle_timeout_s: float = 5.0,
         poll_timeout_ms: int = 200) -> PumpStats:
    """Consume, decode, hand accepted records to ``on_record``, dead-letter the rest.

    ``consumer`` must be subscribed (or assigned) already, with ``enable_auto_commit=False``
    and no value deserializer (raw bytes). Stops after ``max_messages`` messages, or when no
    message has arrived for ``idle_timeout_s``. An exception from ``on_record`` is a bug, not
    bad input: it propagates and the batch is not committed.
    """
    prime_metadata(consumer)
    stats = PumpStats()
    last_message = time.monotonic()
    while max_messages is None or stats.consumed < max_messages:
        remaining = None if max_messages is None else max_messages - stats.consumed
        batches = consumer.poll(timeout_ms=poll_timeout_ms, max_records=remaining)
        if not batches:
            if time.monotonic() - last_message > idle_timeout_s:
                break
            continue
        last_message = time.monotonic()
        for messages in batches.values():
            for message in messages:
                _handle(message, producer, on_record, prefix, stats)
        producer.flush()
        consumer.commit()
    return stats


def prime_metadata(consumer: KafkaConsumer) -> None:
    """Load the partitions of the subscribed topics before the consumer first joins its group.

    Works around a kafka-python 3.0.12 race: when the first JoinGroup beats the first metadata
    response, the group is assigned nothing, the metadata that follows triggers a second
    rebalance, and if a short ``poll`` times out during that rebalance's SyncGroup the
    assignment is dropped for good (the consumer then reads nothing). Knowing the partitions
    up front means the first rebalance is the only one.
    """
    for topic in sorted(consumer.subscription() or ()):
        consumer.partitions_for_topic(topic)


def _handle(message: Message, producer: KafkaProducer, on_record: Callable[[Record], None],
            prefix: str, stats: PumpStats) -> None:
    stats.consumed += 1
    record, dead_letter = route(message, prefix)
    if dead_letter is not None:
        send_dead_letter(producer, dead_letter, prefix)
        stats.dead_lettered += 1
    else:
        on_record(record)
        stats.accepted += 1
