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
| ``ATOGUARD_SECURITY_PROTOCOL`` | ``security_protocol`` | ``PLAINTEXT`` |
| ``ATOGUARD_SASL_MECHANISM`` | ``sasl_mechanism`` | empty (none) |
| ``ATOGUARD_SASL_USERNAME`` | ``sasl_username`` | empty |
| ``ATOGUARD_SASL_PASSWORD`` | ``sasl_password`` | empty |
| ``ATOGUARD_SASL_PASSWORD_FILE`` | ``sasl_password_file`` | empty (a file holding the password) |
| ``ATOGUARD_SSL_CAFILE`` | ``ssl_cafile`` | empty (the system's CAs) |

Secrets (the SASL password) come only from the environment or a file, never from an option, and
are never printed: ``repr(settings)`` leaves them out.

Every other ``ATOGUARD_*`` variable is listed in :data:`ENVIRONMENT` (what ``atoguard --help``
prints); :func:`check_environment` refuses a close misspelling of one of them, and a policy
override written with one underscore (``ATOGUARD_POLICY_DRY_RUN``).

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

__all__ = ["ENVIRONMENT", "ENV_PREFIX", "Settings", "check_environment"]

ENV_PREFIX = "ATOGUARD_"

_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5})$")
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
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
    security_protocol
        ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    sasl_mechanism, sasl_username, sasl_password
        SASL credentials (``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``), used by the
        worker and the command-line clients; the password is never printed.
    sasl_password_file
        A file holding the SASL password (first line), instead of ``sasl_password``.
    ssl_cafile
        PEM file of the CA that signed the brokers' certificates (``SSL`` / ``SASL_SSL``).
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "ato."
    partitions: int = 6
    replication_factor: int = 1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = dataclasses.field(default="", repr=False)
    sasl_password_file: str = dataclasses.field(default="", repr=False)
    ssl_cafile: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def secured(self) -> bool:
        """Whether clients authenticate or encrypt (anything but ``PLAINTEXT``)."""
        return self.security_protocol != "PLAINTEXT"

    def password(self) -> str:
        """The SASL password: ``sasl_password``, else the first line of ``sasl_password_file``."""
        if self.sasl_password or not self.sasl_password_file:
            return self.sasl_password
        try:
            text = open(self.sasl_password_file, encoding="utf-8").read()
        except OSError as exc:
            raise ValueError(f"cannot read the SASL password file {self.sasl_password_file}: "
                             f"{exc.strerror} (env {ENV_PREFIX}SASL_PASSWORD_FILE)") from None
        return text.splitlines()[0].strip() if text.strip() else ""

    def librdkafka_options(self) -> dict[str, str]:
        """The connection part of a confluent-kafka (librdkafka) client configuration:
        ``bootstrap.servers`` and, when configured, security protocol, SASL and CA file.

        >>> Settings().librdkafka_options()
        {'bootstrap.servers': '127.0.0.1:9092'}
        """
        options = {"bootstrap.servers": ",".join(self.servers())}
        if self.secured:
            options["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            options.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                            "sasl.password": self.password()})
        if self.ssl_cafile:
            options["ssl.ca.location"] = self.ssl_cafile
        return options

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``ATOGUARD_<FIELD>`` variables, then ``overrides`` (e.g. CLI options).

        ``None`` overrides are ignored, so unset command-line options can be passed as they are.

        >>> Settings.from_env({"ATOGUARD_PARTITIONS": "12"}, topic_prefix="t.", partitions=None)
        Settings(bootstrap_servers='127.0.0.1:9092', topic_prefix='t.', partitions=12, replication_factor=1, security_protocol='PLAINTEXT', sasl_mechanism='', sasl_username='', ssl_cafile='')
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

    def client_options(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Keyword arguments for any kafka-python client: servers, security and, with
        ``timeout_s``, a bound on connecting and on each request (the library's defaults wait
        30 s for an unreachable cluster).

        >>> Settings().client_options(5)["bootstrap_timeout_ms"]
        5000
        """
        options: dict[str, Any] = {"bootstrap_servers": self.servers(),
                                   "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.password())
        if self.ssl_cafile:
            options.update(ssl_cafile=self.ssl_cafile)
        if timeout_s is not None:
            ms = max(100, int(timeout_s * 1000))
            options.update(bootstrap_timeout_ms=ms, request_timeout_ms=max(ms, 1000))
        return options


#: Every plain ``ATOGUARD_*`` variable any part of atoguard reads, with what it sets. Policy
#: overrides (``ATOGUARD_<SECTION>__<KEY>``) are checked by :mod:`detectors.config` instead.
ENVIRONMENT: dict[str, str] = {
    **{ENV_PREFIX + f.name.upper(): f"Kafka settings: {f.name}" for f in dataclasses.fields(Settings)},
    "ATOGUARD_CONFIG": "policy/engine configuration file (TOML), like --config",
    "ATOGUARD_ENGINE": "engine kernels: auto (native when built, the default), native or python",
    "ATOGUARD_APP_ID": "atoguard run: consumer group and internal topic prefix",
    "ATOGUARD_INSTANCE_ID": "atoguard run: static group membership id",
    "ATOGUARD_STORE": "atoguard run: table store, rocksdb or memory",
    "ATOGUARD_DATA_DIR": "atoguard run: tables and model snapshots of this worker",
    "ATOGUARD_SNAPSHOT": "atoguard run: model snapshot file",
    "ATOGUARD_WEB_PORT": "atoguard run: port of /metrics and /healthz",
    "ATOGUARD_WEB_HOST": "atoguard run: bind address of the web port",
    "ATOGUARD_LOG_LEVEL": "atoguard run: log level",
    "ATOGUARD_DEV": "atoguard run: 1 for a development run, which may use the built-in development keys",
    "ATOGUARD_BROKER_SECURITY": "atoguard broker: plaintext (default) or sasl_ssl (SCRAM-SHA-512 over TLS, ACLs)",
    "ATOGUARD_ENGINE": "engine kernels: auto (native when built, the default), native or python",
    "ATOGUARD_BROKER_PORT": "atoguard broker: client port of the local broker",
    "ATOGUARD_BROKER_CONTROLLER_PORT": "atoguard broker: KRaft controller port",
    "ATOGUARD_BROKER_DATA_DIR": "atoguard broker: data dir of the local broker",
    "ATOGUARD_BROKER_HEAP": "atoguard broker: JVM maximum heap",
    "ATOGUARD_KAFKA_VERSION": "atoguard broker: Kafka release fetched from Maven Central",
    "ATOGUARD_KAFKA_LIB": "atoguard broker: Kafka jar cache folder",
    "ATOGUARD_TEST_BOOTSTRAP": "tests: use the Kafka at host:port instead of starting one",
    "ATOGUARD_CHAOS_EVENTS": "tests/chaos: input events per fault scenario (default 50000)",
    "ATOGUARD_CHAOS_REPORT": "tests/chaos: a file the scenarios append their CHAOS lines to",
    "ATOGUARD_DARPA_ZIP": "bench: path of the DARPA data set archive",
    "ATOGUARD_SILENCE": "tests: the detector tools/silence_plugin.py silences (mutation check)",
    "ATOGUARD_CONSOLE_PASSWORD": "atoguard console --add-user: the new user's password (else it asks)",
    "ATOGUARD_CONSOLE_OIDC_SECRET": "atoguard console: the OpenID Connect client secret",
    "ATOGUARD_SCREENSHOTS": "tests: 1 writes the console's screenshots to docs/console/",
}


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse ``ATOGUARD_*`` variables that look like a setting but set nothing.

    A policy override with one underscore after its section (``ATOGUARD_POLICY_DRY_RUN``) and a
    close misspelling of a known variable (``ATOGUARD_BOOTSTRAP_SERVER``) raise ``ValueError``
    saying what was meant; other variables of the prefix are left alone.

    >>> check_environment({"ATOGUARD_TOPIC_PREFIX": "x."})
    >>> check_environment({"ATOGUARD_TOPIC_PREFX": "x."})
    Traceback (most recent call last):
    ...
    ValueError: unknown variable ATOGUARD_TOPIC_PREFX; did you mean ATOGUARD_TOPIC_PREFIX? (atoguard --help lists them all)
    """
    import difflib

    from detectors.config import _apply_env

    env = os.environ if environ is None else environ
    # the form and section of policy overrides; their keys and values are checked when the
    # configuration is loaded (they may depend on the configuration file)
    _apply_env({}, env)
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or "__" in name or name in ENVIRONMENT:
            continue
        close = difflib.get_close_matches(name, ENVIRONMENT, n=1, cutoff=0.85)
        if close:
            raise ValueError(f"unknown variable {name}; did you mean {close[0]}? "
                             "(atoguard --help lists them all)")


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
    if s.security_protocol not in _SECURITY_PROTOCOLS:
        raise ValueError(f"security_protocol {s.security_protocol!r}: expected one of "
                         f"{', '.join(_SECURITY_PROTOCOLS)} (env {ENV_PREFIX}SECURITY_PROTOCOL)")
    if s.sasl_mechanism not in _SASL_MECHANISMS:
        raise ValueError(f"sasl_mechanism {s.sasl_mechanism!r}: expected one of "
                         f"{', '.join(m for m in _SASL_MECHANISMS if m)} (env {ENV_PREFIX}SASL_MECHANISM)")
    if s.sasl_mechanism and not s.security_protocol.startswith("SASL_"):
        raise ValueError(f"sasl_mechanism {s.sasl_mechanism} needs security_protocol SASL_SSL or "
                         f"SASL_PLAINTEXT, not {s.security_protocol} (env {ENV_PREFIX}SECURITY_PROTOCOL)")
    if s.security_protocol.startswith("SASL_") and not s.sasl_mechanism:
        raise ValueError(f"security_protocol {s.security_protocol} needs a sasl_mechanism, e.g. "
                         f"SCRAM-SHA-512 (env {ENV_PREFIX}SASL_MECHANISM)")
    if s.sasl_mechanism and not s.sasl_username:
        raise ValueError(f"sasl_mechanism {s.sasl_mechanism} needs a sasl_username (env {ENV_PREFIX}SASL_USERNAME)")
    for name in ("partitions", "replication_factor"):
        value = getattr(s, name)
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r} "
                             f"(env {ENV_PREFIX}{name.upper()})")
