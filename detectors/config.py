"""Engine configuration: one typed, frozen object with defaults.

Loaded from TOML text and environment variables (``ATOGUARD_<SECTION>__<KEY>``, e.g.
``ATOGUARD_POLICY__FREEZE_AT=0.9``). Reading files is the caller's business (``streams``), so this
module stays free of I/O. Bad values raise :class:`ConfigError` naming the setting.

>>> cfg = Config.from_toml('[policy]\\nfreeze_at = 0.9\\n')
>>> cfg.policy.freeze_at, cfg.policy.dry_run
(0.9, False)
>>> Config.from_toml('[policy]\\nfreeze_at = "high"\\n')
Traceback (most recent call last):
...
detectors.config.ConfigError: policy.freeze_at: expected a number, got 'high'
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from typing import Any, Mapping

from detectors.registry import REGISTRY as _REGISTRY

__all__ = ["AllowEntry", "Config", "ConfigError", "DEFAULT_DETECTORS", "Keys", "Outputs", "Policy", "Stream", "Windows"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type or range."""


#: every registered detector, in registry order (:data:`detectors.registry.REGISTRY` is the list)
DEFAULT_DETECTORS = tuple(_REGISTRY)


@dataclass(frozen=True)
class Policy:
    """The decision policy: thresholds on fused risk, the ladder's timing, shadow mode."""

    version: str = "2026.11.1"
    dry_run: bool = False
    alert_at: float = 0.45
    step_up_at: float = 0.65
    freeze_at: float = 0.85
    #: a detector scoring at least this is "strong"; two strong ones from different families
    #: may close an account where ``auto_close`` is on.
    strong_at: float = 0.9
    auto_close: bool = False
    freeze_ttl_hours: float = 24.0
    step_up_cooldown_minutes: float = 60.0
    alert_cooldown_minutes: float = 30.0
    #: within a cooldown, a new alert needs at least this much more risk
    min_escalation: float = 0.1
    #: a ``legit`` verdict, or a strong challenge pass, trusts the situation for this long
    known_good_days: float = 90.0
    #: a step-up left unanswered this long counts as failed (the contract asks for >= 2 minutes)
    challenge_expiry_minutes: float = 5.0

    def check(self) -> None:
        for name in ("alert_at", "step_up_at", "freeze_at", "strong_at", "min_escalation"):
            _unit(f"policy.{name}", getattr(self, name))
        if not self.alert_at <= self.step_up_at <= self.freeze_at:
            raise ConfigError("policy: thresholds must satisfy alert_at <= step_up_at <= freeze_at, got "
                              f"{self.alert_at} / {self.step_up_at} / {self.freeze_at}")
        if self.challenge_expiry_minutes < 2:
            raise ConfigError("policy.challenge_expiry_minutes: must be >= 2 (contract v2), got "
                              f"{self.challenge_expiry_minutes}")
        for name in ("freeze_ttl_hours", "step_up_cooldown_minutes", "alert_cooldown_minutes", "known_good_days"):
            if getattr(self, name) < 0:
                raise ConfigError(f"policy.{name}: must be >= 0, got {getattr(self, name)}")
        if not self.version:
            raise ConfigError("policy.version: must not be empty")


@dataclass(frozen=True)
class Windows:
    """Time windows and counts the rules use."""

    credential_change_hours: float = 72.0
    failed_login_minutes: float = 60.0
    failed_login_burst: int = 5
    new_device_days: float = 14.0
    travel_tolerance_kmh: float = 1000.0
    profile_retention_days: float = 120.0
    min_history_events: int = 5

    def check(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigError(f"windows.{f.name}: must be > 0, got {getattr(self, f.name)}")


@dataclass(frozen=True)
class Stream:
    """What makes live equal replay (``docs/determinism.md``): the same values in replay and in
    every runtime.

    ``max_lateness_ms``: an input below its partition's highest processed ``ts`` minus this is
    late (dead-lettered ``late``, changes nothing). ``max_idle_ms``: how long a caught-up worker
    waits for a quiet input partition before it takes the others' records (live only).
    ``dedup_hours``: how long (event time) an ``event_id`` is remembered to drop a re-sent event.
    ``facts_delay_ms``, ``facts_bucket_ms``, ``facts_window``: the cross-account facts of an event
    at ``ts`` are the records of all accounts below ``ts - facts_delay_ms`` (rounded down to a
    bucket of ``facts_bucket_ms``), ``facts_window`` buckets of them. ``facts_wait_ms``: how long
    a live worker (input caught up) waits for the facts' watermark before it decides without it.
    """

    max_lateness_ms: int = 86_400_000
    max_idle_ms: int = 100
    dedup_hours: float = 24.0
    facts_delay_ms: int = 60_000
    facts_bucket_ms: int = 60_000
    facts_window: int = 90
    facts_wait_ms: int = 2_000

    def check(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"stream.{f.name}: must be >= 0, got {getattr(self, f.name)}")
        if self.facts_bucket_ms <= 0 or self.facts_window <= 0:
            raise ConfigError("stream.facts_bucket_ms and stream.facts_window must be > 0")
        if self.dedup_hours * 3_600_000 < self.max_lateness_ms:
            raise ConfigError("stream.dedup_hours must cover max_lateness_ms: an event older than the "
                              "duplicate horizon must be late")

    @property
    def dedup_ms(self) -> int:
        return int(self.dedup_hours * 3_600_000)

    def facts(self):
        """The facts' settings (:class:`detectors.facts.FactsSettings`)."""
        from detectors.facts import FactsSettings
        return FactsSettings(self.facts_delay_ms, self.facts_bucket_ms, self.facts_window)


@dataclass(frozen=True)
class Keys:
    """HMAC keys. The defaults are for development only (they are in the source, so anyone can
    forge a command with them); ``atoguard run`` refuses them unless told it is a development
    run. Set real ones with ``ATOGUARD_KEYS__COMMAND_HMAC`` etc. or a ``[keys]`` table.

    >>> Keys().development()
    ('command_hmac', 'pseudonym_hmac', 'snapshot_hmac')
    >>> Keys(command_hmac="a-real-key-from-a-secret").development()
    ('pseudonym_hmac', 'snapshot_hmac')
    """

    command_hmac: str = "atoguard-dev-command-key"
    pseudonym_hmac: str = "atoguard-dev-pseudonym-key"
    snapshot_hmac: str = "atoguard-dev-snapshot-key"

    def check(self) -> None:
        for f in dataclasses.fields(self):
            if len(getattr(self, f.name)) < 8:
                raise ConfigError(f"keys.{f.name}: must be at least 8 characters")

    def development(self) -> tuple[str, ...]:
        """The names of the keys still at their built-in development value."""
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name) == f.default)


@dataclass(frozen=True)
class Outputs:
    """What the engine writes for the account service.

    ``contract_version``: 3 (default) writes v3 commands (``contract_version: 3``, methods may
    name ``id_check``) and a decision on ``ato.decisions`` for every decided event; 2 keeps an
    account service not yet upgraded working: v2 commands (``contract_version: 2``, no
    ``id_check`` in ``methods`` - a freeze whose only way back was ``id_check`` then has none
    but a call), and no decisions (a v2 service knows no such topic; it holds a payout while a
    step_up is open, as before).

    >>> Outputs(contract_version=2).contract_version
    2
    """

    contract_version: int = 3

    def check(self) -> None:
        if self.contract_version not in (2, 3):
            raise ConfigError(f"outputs.contract_version: must be 2 or 3, got {self.contract_version}")


@dataclass(frozen=True)
class AllowEntry:
    """An allow-list entry: an account, IP or device whose restrictions are capped at alerts."""

    kind: str
    value: str
    until: int
    note: str = ""

    def check(self) -> None:
        if self.kind not in ("account", "ip", "device"):
            raise ConfigError(f"allow.kind: must be account, ip or device, got {self.kind!r}")


@dataclass(frozen=True)
class Config:
    """Everything the engine needs to decide, as one value."""

    policy: Policy = field(default_factory=Policy)
    windows: Windows = field(default_factory=Windows)
    keys: Keys = field(default_factory=Keys)
    stream: Stream = field(default_factory=Stream)
    outputs: Outputs = field(default_factory=Outputs)
    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    allow: tuple[AllowEntry, ...] = ()
    #: models are kept per shard, sharded like Kafka partitions, so replay and the live stream
    #: train each model on the same sequence of events
    shards: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        self.policy.check()
        self.windows.check()
        self.keys.check()
        self.stream.check()
        self.outputs.check()
        for entry in self.allow:
            entry.check()
        unknown = set(self.detectors) - set(DEFAULT_DETECTORS)
        if unknown:
            raise ConfigError(f"detectors: unknown {sorted(unknown)}; known: {', '.join(DEFAULT_DETECTORS)}")
        if self.shards < 1:
            raise ConfigError(f"shards: must be >= 1, got {self.shards}")

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Config":
        """Build from a parsed TOML/JSON mapping; unknown keys are errors."""
        return _build(cls, data, "")

    @classmethod
    def from_toml(cls, text: str, env: Mapping[str, str] | None = None) -> "Config":
        """Parse TOML text, then apply ``ATOGUARD_SECTION__KEY`` overrides from ``env``."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}") from None
        return cls.from_mapping(_apply_env(data, env or {}))

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


#: the configuration's tables, by type name
_TABLES = {"Policy": Policy, "Windows": Windows, "Keys": Keys, "Stream": Stream, "Outputs": Outputs}


def _unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}: must be within [0, 1], got {value}")


_ENV_PREFIX = "ATOGUARD_"


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with the ``ATOGUARD_<SECTION>__<KEY>`` overrides of ``env`` applied.

    A section that is not a table of the configuration, or a section written with one
    underscore (``ATOGUARD_POLICY_DRY_RUN``), is a :class:`ConfigError` naming the right form;
    an unknown key is refused later, with the known keys, by :meth:`Config.from_mapping`.

    >>> _apply_env({}, {"ATOGUARD_POLICY__DRY_RUN": "true", "ATOGUARD_TOPIC_PREFIX": "x."})
    {'policy': {'dry_run': True}}
    >>> _apply_env({}, {"ATOGUARD_POLICY_DRY_RUN": "true"})
    Traceback (most recent call last):
    ...
    detectors.config.ConfigError: ATOGUARD_POLICY_DRY_RUN sets nothing: a policy setting takes two underscores after the section, ATOGUARD_POLICY__DRY_RUN
    """
    sections = _env_sections()
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name, raw in env.items():
        if not name.startswith(_ENV_PREFIX):
            continue
        rest = name[len(_ENV_PREFIX):]
        if "__" not in rest:
            for section in sections:
                if rest.lower().startswith(section + "_") and len(rest) > len(section) + 1:
                    right = f"{_ENV_PREFIX}{section.upper()}__{rest[len(section) + 1:]}"
                    raise ConfigError(f"{name} sets nothing: a {section} setting takes two underscores "
                                      f"after the section, {right}")
            continue
        section, key = rest.lower().split("__", 1)
        if section not in sections:
            raise ConfigError(f"{name}: unknown section {section!r}; the sections are "
                              f"{', '.join(sections)} (ATOGUARD_<SECTION>__<KEY>)")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare string
        data.setdefault(section, {})[key] = value
    return data


def _env_sections() -> tuple[str, ...]:
    """The configuration's tables (``policy``, ``windows``, ``keys``, ``outputs``): what an
    ``ATOGUARD_<SECTION>__<KEY>`` variable can set."""
    return tuple(f.name for f in dataclasses.fields(Config)
                 if (f.type if isinstance(f.type, str) else f.type.__name__) in _TABLES)


def _build(cls: type, data: Mapping[str, Any], path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a table, got {data!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{path or 'config'}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(known[name], value, f"{path}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def _coerce(f: dataclasses.Field, value: Any, path: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind in _TABLES:
        return _build(_TABLES[kind], value, path + ".")
    if kind == "float":
        if type(value) not in (int, float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if kind == "int":
        if type(value) is not int:
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if kind == "bool":
        if type(value) is not bool:
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if type(value) is not str:
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if kind.startswith("tuple[str"):
        if not isinstance(value, list) or not all(type(v) is str for v in value):
            raise ConfigError(f"{path}: expected a list of strings, got {value!r}")
        return tuple(value)
    if kind.startswith("tuple[AllowEntry"):
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list of tables ([[allow]]), got {value!r}")
        return tuple(_build(AllowEntry, v, f"{path}[{i}].") for i, v in enumerate(value))
    raise ConfigError(f"{path}: unsupported setting type {kind}")  # pragma: no cover
