"""OpenID Shared Signals (SSF 1.0, CAEP 1.0, RISC 1.0): partners' security events in and out.

Contract v3, "Partners' signals": the receiver turns partners' Security Event Tokens into
``ato.signals`` messages; the transmitter turns ``ato.signals-out`` into SETs for partners.
The engine never sees HTTP, SETs or subjects, only the contract's messages. How a partner
connects: ``docs/partners.md``.

| module | what |
|---|---|
| :mod:`~streams.ssf.subjects` | RFC 9493 subject identifiers, their canonical keys, the subject directory (file or compacted topic) |
| :mod:`~streams.ssf.sets` | SETs (RFC 8417): parse, verify (RS256 via joserfc, keys >= 2048 bits), refusals with RFC 8935 codes, event kinds, ``ato.signals`` messages, building and signing |
| :mod:`~streams.ssf.config` | the TOML configuration of both sides (``[receiver]``, ``[transmitter]``) |
| :mod:`~streams.ssf.receiver` | ``atoguard ssf receive``: push endpoint (RFC 8935), pollers (RFC 8936), JWKS cache, jti memory, the Kafka writer, metrics |
| :mod:`~streams.ssf.transmitter` | ``atoguard ssf transmit``: configuration metadata, JWKS, stream management, subjects, verification, push with back-off, poll, the ``signals-out`` consumer |
| :mod:`~streams.ssf.serve` | running either app under uvicorn, in the foreground or in a thread (tests, benchmark) |
"""

from streams.ssf.config import ReceiverConfig, SSFConfigError, TransmitterConfig, load_receiver, load_transmitter
from streams.ssf.sets import Refusal
from streams.ssf.subjects import Directory, SubjectError, load_directory_file, subject_key

__all__ = ["Directory", "ReceiverConfig", "Refusal", "SSFConfigError", "SubjectError", "TransmitterConfig",
           "load_directory_file", "load_receiver", "load_transmitter", "subject_key"]
