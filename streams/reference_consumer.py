"""A reference consumer of ``<prefix>commands``: what an account service does before acting.

Every command is checked in this order, and the first failed check refuses it:

1. ``NOT_A_COMMAND``: the value is not a JSON object with a ``command_id`` and an ``account_id``;
2. ``BAD_SIGNATURE``: its ``signature`` is not the HMAC-SHA256 of its other fields under the
   shared command key (:func:`detectors.outputs.verify`): forged with another key, or altered;
3. ``KEY_MISMATCH``: the message key is not the command's ``account_id`` (a signed command moved
   onto another account's key);
4. ``REPEAT``: a command with this ``command_id`` was already accepted (commands are delivered at
   least once; a repeat, or a replayed old command, changes nothing).

Only then is it accepted and handed to the service's ``apply``. The gate is plain Python
(:class:`CommandGate`) so it can be tested without a broker; :func:`consume` runs it over the
topic with ``isolation.level=read_committed`` and commits each offset after the command is
handled. A real service keeps the accepted ids in its own database for at least the topic's
retention (7 days); :class:`CommandGate` keeps them in memory.

>>> from detectors.outputs import sign
>>> cmd = {"command_id": "c1", "account_id": "a1", "action": "freeze"}
>>> cmd["signature"] = sign(cmd, "k" * 16)
>>> gate = CommandGate("k" * 16)
>>> gate.check(orjson.dumps(cmd), b"a1").reason, gate.check(orjson.dumps(cmd), b"a1").reason
('ACCEPTED', 'REPEAT')
>>> gate.check(orjson.dumps({**cmd, "action": "close"}), b"a1").reason
'BAD_SIGNATURE'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from detectors import contract as c
from detectors.outputs import verify
from streams.settings import Settings
from streams.topics import topic_name

__all__ = ["ACCEPTED", "BAD_SIGNATURE", "CommandGate", "Decision", "KEY_MISMATCH", "NOT_A_COMMAND",
           "REPEAT", "consume"]

log = logging.getLogger("atoguard.account_service")

ACCEPTED, NOT_A_COMMAND, BAD_SIGNATURE, KEY_MISMATCH, REPEAT = (
    "ACCEPTED", "NOT_A_COMMAND", "BAD_SIGNATURE", "KEY_MISMATCH", "REPEAT")


@dataclass(frozen=True)
class Decision:
    """What the gate decided about one message: ``reason`` is ``ACCEPTED`` or why it was refused."""

    reason: str
    command: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        return self.reason == ACCEPTED


class CommandGate:
    """Verifies commands with the shared ``key`` and drops repeats by ``command_id``."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.done: set[str] = set()

    def check(self, value: bytes | None, key: bytes | None) -> Decision:
        """The decision for one message of the command topic (value and key as raw bytes)."""
        try:
            command = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            command = None
        if type(command) is not dict or type(command.get("command_id")) is not str \
                or type(command.get("account_id")) is not str:
            return Decision(NOT_A_COMMAND)
        if not verify(command, self.key):
            return Decision(BAD_SIGNATURE, command)
        if key is None or key.decode("utf-8", "replace") != command["account_id"]:
            return Decision(KEY_MISMATCH, command)
        if command["command_id"] in self.done:
            return Decision(REPEAT, command)
        self.done.add(command["command_id"])
        return Decision(ACCEPTED, command)


def consume(settings: Settings, key: str, apply: Callable[[dict[str, Any]], None], *,
            group_id: str = "account-service", idle_s: float | None = None,
            on_refused: Callable[[Decision], None] | None = None) -> CommandGate:
    """Read ``<prefix>commands`` (read_committed, from the earliest offset of a new group), pass
    each accepted command to ``apply`` and each refused one to ``on_refused`` (default: a warning
    in the log, without the command's content), commit after each. Runs until no message came
    for ``idle_s`` seconds (forever when ``None``); returns the gate (its accepted ids)."""
    from confluent_kafka import Consumer

    gate = CommandGate(key)
    consumer = Consumer({**settings.librdkafka_options(), "group.id": group_id,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic_name(c.COMMANDS, settings.topic_prefix)])
    quiet_since = time.monotonic()
    try:
        while idle_s is None or time.monotonic() - quiet_since < idle_s:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            quiet_since = time.monotonic()
            decision = gate.check(message.value(), message.key())
            if decision.accepted:
                apply(decision.command)
            elif on_refused is not None:
                on_refused(decision)
            else:
                log.warning("refused a command at %s[%d]@%d: %s", message.topic(), message.partition(),
                            message.offset(), decision.reason)
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    return gate
