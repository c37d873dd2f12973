"""Configuration of the SSF receiver and transmitter: one TOML file, small frozen values.

Receiver (``atoguard ssf receive --config ssf.toml``)::

    [receiver]
    audience = "https://bank.example/ssf"   # what partners put in a SET's aud
    # max_body_bytes = 65536, read_timeout_s = 5, ack_timeout_s = 5, retry_after_s = 5,
    # jti_memory = 200000, jwks_refresh_s = 30

    [[receiver.transmitters]]                 # one table per partner
    name = "mailco"                            # the partner's name in the subject directory
    issuer = "https://ssf.mailco.example"      # the iss of its SETs
    role = "email_provider"                    # partner_role of its signals
    push_token = "..."                         # the bearer it pushes with (or push_token_env = "VAR")
    # configuration_url = issuer + "/.well-known/ssf-configuration" (default)
    # poll_url = "https://ssf.mailco.example/ssf/poll/STREAM", poll_token = "...", poll_interval_s = 1

Transmitter (``atoguard ssf transmit --config ssf.toml``)::

    [transmitter]
    issuer = "https://bank.example"            # our iss, and the base of every endpoint URL
    signing_key = "ssf-key.pem"                # RSA private key, PEM, >= 2048 bits
    kid = "2026-01"
    state_file = "ssf-streams.json"            # streams and their subjects
    # max_backoff_s = 60, push_timeout_s = 10, max_events = 100

    [[transmitter.receivers]]                  # one table per partner that may open streams
    name = "mailco"                            # its name in the subject directory
    token = "..."                              # its bearer for stream management and poll (or token_env)
    audience = "https://partner.example/ssf"   # the aud its receiver expects (default: name)

Both may be in one file. A missing or misspelt key is a :class:`SSFConfigError` naming it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from detectors import contract as c

__all__ = ["ReceiverConfig", "SSFConfigError", "TransmitterConfig", "TransmitterPeer", "ReceiverPeer",
           "load_receiver", "load_transmitter"]


class SSFConfigError(ValueError):
    """A configuration that cannot work; the message names the key."""


@dataclass(frozen=True)
class TransmitterPeer:
    """A partner that sends us SETs."""

    name: str
    issuer: str
    role: str
    push_token: str | None = None
    configuration_url: str | None = None
    poll_url: str | None = None
    poll_token: str | None = None
    poll_interval_s: float = 1.0
    max_events: int = 100

    def config_url(self) -> str:
        return self.configuration_url or self.issuer.rstrip("/") + "/.well-known/ssf-configuration"


@dataclass(frozen=True)
class ReceiverConfig:
    audience: str
    transmitters: tuple[TransmitterPeer, ...]
    max_body_bytes: int = 65536
    read_timeout_s: float = 5.0
    ack_timeout_s: float = 5.0
    retry_after_s: int = 5
    jti_memory: int = 200_000
    jwks_refresh_s: float = 30.0

    def by_issuer(self) -> dict[str, TransmitterPeer]:
        return {t.issuer: t for t in self.transmitters}


@dataclass(frozen=True)
class ReceiverPeer:
    """A partner that opens streams with us."""

    name: str
    token: str
    audience: str = ""   # the aud of its SETs: its receiver's audience (default: its name)


@dataclass(frozen=True)
class TransmitterConfig:
    issuer: str
    signing_key: str
    kid: str
    receivers: tuple[ReceiverPeer, ...]
    state_file: str | None = None
    max_backoff_s: float = 60.0
    push_timeout_s: float = 10.0
    max_events: int = 100
    extra_public_keys: tuple[str, ...] = field(default=())

    def base(self) -> str:
        return self.issuer.rstrip("/")


def _secret(table: dict, name: str, where: str) -> str | None:
    if name in table:
        return str(table[name])
    var = table.get(name + "_env")
    if var is not None:
        value = os.environ.get(var)
        if not value:
            raise SSFConfigError(f"{where}: {name}_env names {var}, which is not set")
        return value
    return None


def _take(cls, table: dict, where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    known = {f.name for f in fields(cls)} - set(skip)
    secrets = {n + "_env" for n in known}
    unknown = sorted(set(table) - known - secrets - set(skip))
    if unknown:
        raise SSFConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return {k: v for k, v in table.items() if k in known}


def _read(path: str | Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SSFConfigError(f"{path}: {exc}") from None


def load_receiver(path: str | Path) -> ReceiverConfig:
    data = _read(path)
    if "receiver" not in data:
        raise SSFConfigError(f"{path}: no [receiver] table (see atoguard ssf receive --help)")
    peers = []
    for i, table in enumerate(data["receiver"].get("transmitters", [])):
        where = f"{path}: [[receiver.transmitters]] #{i + 1}"
        values = _take(TransmitterPeer, table, where)
        for need in ("name", "issuer", "role"):
            if need not in values:
                raise SSFConfigError(f"{where}: {need} is required")
        if values["role"] not in c.PARTNER_ROLES:
            raise SSFConfigError(f"{where}: role {values['role']!r} is not one of {list(c.PARTNER_ROLES)}")
        values["push_token"] = _secret(table, "push_token", where)
        values["poll_token"] = _secret(table, "poll_token", where)
        if not values["push_token"] and not values.get("poll_url"):
            raise SSFConfigError(f"{where}: give push_token (push) or poll_url (poll), or both")
        peers.append(TransmitterPeer(**values))
    if len({p.issuer for p in peers}) != len(peers) or len({p.name for p in peers}) != len(peers):
        raise SSFConfigError(f"{path}: two [[receiver.transmitters]] tables share an issuer or a name")
    values = _take(ReceiverConfig, data["receiver"], f"{path}: [receiver]", skip=("transmitters",))
    if "audience" not in values:
        raise SSFConfigError(f"{path}: [receiver] audience is required")
    return ReceiverConfig(transmitters=tuple(peers), **values)


def load_transmitter(path: str | Path) -> TransmitterConfig:
    data = _read(path)
    if "transmitter" not in data:
        raise SSFConfigError(f"{path}: no [transmitter] table (see atoguard ssf transmit --help)")
    peers = []
    for i, table in enumerate(data["transmitter"].get("receivers", [])):
        where = f"{path}: [[transmitter.receivers]] #{i + 1}"
        _take(ReceiverPeer, table, where)
        token = _secret(table, "token", where)
        if "name" not in table or not token:
            raise SSFConfigError(f"{where}: name and token are required")
        peers.append(ReceiverPeer(name=table["name"], token=token, audience=table.get("audience") or table["name"]))
    values = _take(TransmitterConfig, data["transmitter"], f"{path}: [transmitter]", skip=("receivers",))
    for need in ("issuer", "signing_key", "kid"):
        if need not in values:
            raise SSFConfigError(f"{path}: [transmitter] {need} is required")
    base = Path(path).parent
    values["signing_key"] = str(base / values["signing_key"])
    if values.get("state_file"):
        values["state_file"] = str(base / values["state_file"])
    values["extra_public_keys"] = tuple(str(base / p) for p in values.get("extra_public_keys", ()))
    return TransmitterConfig(receivers=tuple(peers), **values)
