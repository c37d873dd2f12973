"""Where atoguard finds Kafka and how it lays out its topics: one frozen, typed object.

``Settings()`` gives the defaults (a local broker on ``127.0.0.1:9092``, topics prefixed
``ato.``); ``Settings.from_env()`` reads ``ATOGUARD_<FIELD>`` variables over them. Pointing
atoguard at an existing cluster takes one variable::

    ATOGUARD_BOOTSTRAP_SERVERS=kafka-1:9092,kafka-2:9092 atoguard topics create

| variable | field | default |
|---|---|---|
| ``ATOGUARD_BOOTSTRAP_SERVERS`` | ``bootstrap_servers`` | ``127.0.0.1:9092`` |
| ``ATOGUARD_TOPIC_PREFIX`` | ``topic_prefix`` | ``ato.`` |
| ``ATOGUARD_PARTITIONS`` | ``partitions`` | ``6`` |
| ``ATOGUARD_REPLICATION_FACTOR`` | ``replication_factor`` | ``1`` |

A bad value raises ``ValueError`` naming the field, the variable and what is expected.
Adding a setting is adding a typed field with a default (and a check in ``_validate`` when
some values make no sense): ``from_env`` reads every field by its name and type.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ENV_PREFIX", "Settings"]

ENV_PREFIX = "ATOGUARD_"

_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5})$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """How atoguard reaches Kafka and names and sizes its topics.

    Parameters
    ----------
    bootstrap_servers
        Comma-separated ``host:port`` list of the Kafka cluster.
    topic_prefix
        Put before every logical topic name (``device`` -> ``ato.device``); may be empty.
    partitions
        Partition count of the topics atoguard creates. The input topics share it, so that
        one account's events land on the same partition number everywhere (co-partitioning).
    replication_factor
        Replicas of each topic atoguard creates (1 on the local single-node broker).
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "ato."
    partitions: int = 6
    replication_factor: int = 1

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``ATOGUARD_<FIELD>`` variables, then ``overrides`` (e.g. CLI options).

        ``None`` overrides are ignored, so unset command-line options can be passed as they are.

        >>> Settings.from_env({"ATOGUARD_PARTITIONS": "12"}, topic_prefix="t.", partitions=None)
        Settings(bootstrap_servers='127.0.0.1:9092', topic_prefix='t.', partitions=12, replication_factor=1)
        """
        env = os.environ if environ is None else environ
        types = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            variable = ENV_PREFIX + field.name.upper()
            text = env.get(variable)
            if text is not None and text.strip() != "":
                values[field.name] = _parse(text.strip(), types[field.name], field.name, variable)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def servers(self) -> list[str]:
        """``bootstrap_servers`` as the list the Kafka clients take."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]


def _parse(text: str, kind: Any, name: str, variable: str) -> Any:
    """Convert one environment value to the field's type, or say clearly why not."""
    if kind is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"{variable}={text!r}: {name} must be true or false")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{variable}={text!r}: {name} must be {kind.__name__}") from None
    return text


def _validate(s: Settings) -> None:
    servers = s.servers()
    if not servers:
        raise ValueError("bootstrap_servers is empty; expected host:port[,host:port...] "
                         f"(env {ENV_PREFIX}BOOTSTRAP_SERVERS)")
    for server in servers:
        match = _HOST_PORT.match(server)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError(f"bootstrap_servers: {server!r} is not host:port with a port in "
                             f"1..65535 (env {ENV_PREFIX}BOOTSTRAP_SERVERS)")
    if not _TOPIC_CHARS.fullmatch(s.topic_prefix) or len(s.topic_prefix) > 200:
        raise ValueError(f"topic_prefix {s.topic_prefix!r} may only hold letters, digits, '.', "
                         f"'_' and '-' (env {ENV_PREFIX}TOPIC_PREFIX)")
    for name in ("partitions", "replication_factor"):
        value = getattr(s, name)
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r} "
                             f"(env {ENV_PREFIX}{name.upper()})")
