"""The SSF receiver (``atoguard ssf receive``): partners' SETs in, ``ato.signals`` out.

Push (RFC 8935): ``POST /ssf/push`` with ``Content-Type: application/secevent+jwt`` and the
bearer token the partner was given. Poll (RFC 8936): one task per partner with a ``poll_url``.
Either way a SET goes through :meth:`Receiver.accept`:

1. the body: at most ``max_body_bytes`` (413), read within ``read_timeout_s`` (408);
2. the partner: a push's bearer token names it (401 ``authentication_failed``); ``iss`` must be
   that partner's (``invalid_issuer``);
3. :func:`streams.ssf.sets.parse`, the key from the partner's JWKS (fetched through its
   ``/.well-known/ssf-configuration``, cached, fetched again for an unknown ``kid`` at most
   every ``jwks_refresh_s``), the RS256 signature, the claims (``aud``, no ``sub``/``exp``);
4. ``jti``: a SET already acknowledged is refused (``invalid_request``, counted as
   ``replayed_jti``; a poll acknowledges it again); a SET whose earlier delivery we answered
   503 for is finished, not written twice (its first writes are awaited or redone);
5. one ``ato.signals`` message per forwarded event (:func:`streams.ssf.sets.signals_of`),
   keyed by account id, murmur2-partitioned (kafka-python's default partitioner), ``acks=all``;
6. 202 once Kafka acknowledged every message; 503 with ``Retry-After`` otherwise.

Unknown subjects and unknown event types are acknowledged and counted, never refused.

Why Starlette and uvicorn: the service is four routes and a Kafka producer; Starlette is the
thinnest ASGI toolkit on the package index that still gives routing, streaming bodies and a
lifespan, and uvicorn (with httptools) runs it in-process on one asyncio loop, so the producer's
acknowledgements, the pollers and the requests share the loop, and tests start a real server in
a thread (``uvicorn.Server``). granian is faster in its own benchmark but runs the app in worker
processes it owns, which would split the jti memory and the producer; the benchmark
(``python -m bench.ssf``) shows uvicorn clears the target on one core.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from streams.metrics import Counter, Histogram, Registry
from streams.ssf.config import ReceiverConfig, TransmitterPeer
from streams.ssf.sets import Parsed, Refusal, check_claims, parse, rsa_key_ok, signals_of, verify_signature
from streams.ssf.subjects import Directory

__all__ = ["JwksCache", "KafkaWriter", "MemoryWriter", "Receiver", "ReceiverMetrics", "Result", "Writer", "build_app", "poll_loop"]

log = logging.getLogger("atoguard.ssf")

SET_MEDIA_TYPE = "application/secevent+jwt"


class Writer(Protocol):
    """Where accepted signals go: one future per message, done when the broker acknowledged."""

    def send(self, key: str, value: dict) -> asyncio.Future: ...


class MemoryWriter:
    """A writer that keeps messages in a list (unit tests and the parser fuzz; no Kafka)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.fail = False

    def send(self, key: str, value: dict) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.fail:
            future.set_exception(ConnectionError("writer down"))
        else:
            self.messages.append((key, value))
            future.set_result(None)
        return future

    def close(self) -> None:
        pass


class KafkaWriter:
    """``ato.signals`` through kafka-python 3: ``acks=all``, idempotent, default (murmur2)
    partitioner; each send's delivery report resolves an asyncio future on the loop."""

    def __init__(self, settings, topic: str, *, linger_ms: int = 1) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self.producer = KafkaProducer(**settings.client_options(10.0), acks="all", linger_ms=linger_ms,
                                      max_block_ms=2000, client_id="atoguard-ssf-receiver")
        self.producer.partitions_for(topic)  # metadata now: a missing topic fails at start

    def send(self, key: str, value: dict) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(result=None, error=None):
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(result)

        try:
            report = self.producer.send(self.topic, key=key.encode("utf-8"), value=orjson.dumps(value))
        except Exception as exc:  # noqa: BLE001 - a producer that cannot take it is a 503, not a crash
            future.set_exception(exc)
            return future
        report.add_callback(lambda md: loop.call_soon_threadsafe(settle, md))
        report.add_errback(lambda exc: loop.call_soon_threadsafe(settle, None, exc))
        return future

    def close(self) -> None:
        self.producer.close(timeout=5)


class ReceiverMetrics(Registry):
    """``/metrics`` of the receiver (Prometheus text format)."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = self.add(Counter("atoguard_ssf_sets_total", "SETs received, by partner, delivery and outcome",
                                     ("transmitter", "delivery", "outcome")))
        self.refusals = self.add(Counter("atoguard_ssf_refusals_total", "SETs and requests refused, by RFC 8935 code and reason",
                                         ("transmitter", "code", "reason")))
        self.signals = self.add(Counter("atoguard_ssf_signals_total", "ato.signals messages written, by kind", ("kind",)))
        self.unknown_subjects = self.add(Counter("atoguard_ssf_unknown_subjects_total",
                                                 "events acknowledged and dropped: the subject maps to no account", ("transmitter",)))
        self.unknown_types = self.add(Counter("atoguard_ssf_unknown_event_types_total",
                                              "events acknowledged, not forwarded: a type the contract does not name",
                                              ("transmitter",)))
        self.verifications = self.add(Counter("atoguard_ssf_verifications_total", "verification events received", ("transmitter",)))
        self.unavailable = self.add(Counter("atoguard_ssf_unavailable_total", "SETs answered 503 (Kafka or JWKS not available)",
                                            ("transmitter", "why")))
        self.latency = self.add(Histogram("atoguard_ssf_accept_to_ack_seconds", "request received to Kafka acknowledgement"))


class JwksCache:
    """Each partner's signing keys: its SSF configuration, then its ``jwks_uri``, cached.

    A ``kid`` not in the cache fetches both again (at most every ``refresh_s`` per partner); a
    fetch replaces the partner's keys, so a key the partner took out of its JWKS (rotation,
    expiry) stops verifying at the next fetch.
    """

    def __init__(self, refresh_s: float = 30.0, client=None) -> None:
        import httpx

        self.refresh_s = refresh_s
        self.client = client or httpx.AsyncClient(timeout=5.0)
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def key(self, peer: TransmitterPeer, kid: str | None):
        keys = self._keys.get(peer.name)
        if keys is not None and kid in keys:
            return keys[kid]
        lock = self._locks.setdefault(peer.name, asyncio.Lock())
        async with lock:
            keys = self._keys.get(peer.name)
            if keys is not None and kid in keys:
                return keys[kid]
            if keys is None or time.monotonic() - self._fetched.get(peer.name, 0) >= self.refresh_s:
                await self.fetch(peer)
            return self._keys.get(peer.name, {}).get(kid)

    async def fetch(self, peer: TransmitterPeer) -> None:
        """Fetch the partner's configuration and JWKS; :class:`OSError` when unreachable."""
        import httpx
        from joserfc.errors import JoseError
        from joserfc.jwk import RSAKey

        try:
            meta = (await self.client.get(peer.config_url())).raise_for_status().json()
            if meta.get("issuer") not in (peer.issuer, peer.issuer.rstrip("/")):
                log.warning("%s: configuration issuer %r is not %r", peer.name, meta.get("issuer"), peer.issuer)
            jwks = (await self.client.get(meta["jwks_uri"])).raise_for_status().json()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise OSError(f"{peer.name}: configuration or JWKS not available: {exc}") from None
        keys: dict[str, Any] = {}
        for entry in jwks.get("keys", []) if isinstance(jwks, dict) else []:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
                continue
            try:
                with warnings.catch_warnings():  # a weak key is kept as "weak" and refused by name
                    warnings.simplefilter("ignore")
                    key = RSAKey.import_key(entry)
            except (JoseError, ValueError, TypeError):
                continue
            keys[entry.get("kid")] = key if rsa_key_ok(key) else "weak"
        self._keys[peer.name] = keys
        self._fetched[peer.name] = time.monotonic()


@dataclass
class Result:
    """What a SET delivery gets: HTTP status, JSON body (or None), and the metric reason."""

    status: int
    body: dict | None = None
    reason: str = "accepted"
    retry_after: int | None = None


@dataclass
class _Seen:
    messages: list[tuple[str, dict]]
    futures: list[asyncio.Future]
    acked: bool = False


class Receiver:
    """Verification, the jti memory and the writes; the HTTP side is :func:`build_app`."""

    def __init__(self, config: ReceiverConfig, directory: Directory, writer: Writer, *,
                 jwks: JwksCache | None = None, metrics: ReceiverMetrics | None = None,
                 clock=time.time) -> None:
        self.config = config
        self.directory = directory
        self.writer = writer
        self.jwks = jwks or JwksCache(config.jwks_refresh_s)
        self.metrics = metrics or ReceiverMetrics()
        self.clock = clock
        self.by_issuer = config.by_issuer()
        self.by_token = {p.push_token: p for p in config.transmitters if p.push_token}
        self._seen: OrderedDict[tuple[str, str], _Seen] = OrderedDict()
        #: accept -> ack latencies in seconds, when a benchmark asks for them (a list)
        self.latencies: list[float] | None = None

    def peer_for_token(self, authorization: str | None) -> TransmitterPeer | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return self.by_token.get(authorization[7:].strip())

    def refuse(self, refusal: Refusal, peer_name: str, delivery: str) -> Result:
        self.metrics.refusals.inc(transmitter=peer_name, code=refusal.code, reason=refusal.reason)
        self.metrics.sets.inc(transmitter=peer_name, delivery=delivery, outcome="refused")
        return Result(refusal.status, refusal.body(), refusal.reason)

    def unavailable(self, peer: str, delivery: str, why: str, description: str) -> Result:
        self.metrics.unavailable.inc(transmitter=peer, why=why)
        self.metrics.sets.inc(transmitter=peer, delivery=delivery, outcome="unavailable")
        return Result(503, {"err": "temporarily_unavailable", "description": description}, "unavailable",
                      retry_after=self.config.retry_after_s)

    async def accept(self, token: bytes, peer: TransmitterPeer, delivery: str = "push",
                     started: float | None = None) -> Result:
        """One SET from ``peer`` (known from the bearer token or the poll it came from)."""
        started = time.perf_counter() if started is None else started
        try:
            parsed = parse(token)
            if parsed.iss != peer.issuer:
                raise Refusal("invalid_issuer", f"iss {parsed.iss[:200]!r} is not the issuer of this partner")
            try:
                key = await self.jwks.key(peer, parsed.kid)
            except OSError as exc:
                return self.unavailable(peer.name, delivery, "jwks", str(exc))
            if key == "weak":
                raise Refusal("invalid_key", f"key {parsed.kid!r} is under 2048 bits", reason="weak_key")
            verify_signature(parsed, key)
            check_claims(parsed.claims, self.config.audience)
            return await self._write(parsed, peer, delivery, started)
        except Refusal as refusal:
            return self.refuse(refusal, peer.name, delivery)

    async def _write(self, parsed: Parsed, peer: TransmitterPeer, delivery: str, started: float) -> Result:
        claims = parsed.claims
        key = (claims["iss"], claims["jti"])
        seen = self._seen.get(key)
        if seen is not None and seen.acked:
            raise Refusal("invalid_request", f"jti {claims['jti'][:200]!r} was already received", reason="replayed_jti")
        if seen is None:
            outcome = signals_of(claims, partner=peer.name, role=peer.role, directory=self.directory,
                                 now_ms=int(self.clock() * 1000))
            if outcome.unknown_subjects:
                self.metrics.unknown_subjects.inc(outcome.unknown_subjects, transmitter=peer.name)
            if outcome.unknown_types:
                self.metrics.unknown_types.inc(len(outcome.unknown_types), transmitter=peer.name)
            if outcome.verifications:
                self.metrics.verifications.inc(len(outcome.verifications), transmitter=peer.name)
            seen = _Seen(outcome.messages, [self.writer.send(k, v) for k, v in outcome.messages])
            self._seen[key] = seen
            while len(self._seen) > self.config.jti_memory:
                self._seen.popitem(last=False)
        else:  # an earlier delivery was answered 503: finish it, never write a message twice
            for i, future in enumerate(seen.futures):
                if future.done() and (future.cancelled() or future.exception() is not None):
                    seen.futures[i] = self.writer.send(*seen.messages[i])
        if seen.futures:
            pending = [asyncio.shield(f) for f in seen.futures]
            done, _ = await asyncio.wait(pending, timeout=self.config.ack_timeout_s)
            if len(done) < len(pending) or any(f.exception() is not None for f in done):
                for f in pending:
                    if f.done() and not f.cancelled():
                        f.exception()  # retrieved: no "never retrieved" warnings
                return self.unavailable(peer.name, delivery, "kafka", "the signal could not be stored; retry later")
        seen.acked = True
        for _, message in seen.messages:
            self.metrics.signals.inc(kind=message["kind"])
        elapsed = time.perf_counter() - started
        self.metrics.latency.observe(elapsed)
        if self.latencies is not None:
            self.latencies.append(elapsed)
        self.metrics.sets.inc(transmitter=peer.name, delivery=delivery, outcome="accepted")
        return Result(202)


# -- HTTP --------------------------------------------------------------------------------------

async def _read_body(request, limit: int, timeout_s: float) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise Refusal("invalid_request", f"the body is over {limit} bytes", 413, reason="oversized")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refusal("invalid_request", f"the body is over {limit} bytes", 413, reason="oversized")
                chunks.append(chunk)
    except TimeoutError:
        raise Refusal("invalid_request", f"the body was not received within {timeout_s:g} s", 408,
                      reason="slow_client") from None
    return b"".join(chunks)


def _response(result: Result):
    from starlette.responses import Response

    headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
    if result.body is None:
        return Response(status_code=result.status, headers=headers)
    return Response(orjson.dumps(result.body), status_code=result.status, headers=headers,
                    media_type="application/json")


def build_app(receiver: Receiver, *, on_startup=(), on_shutdown=()):
    """The receiver's ASGI app: ``POST /ssf/push``, ``GET /metrics``, ``GET /healthz``."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    config = receiver.config

    async def push(request):
        started = time.perf_counter()
        peer = receiver.peer_for_token(request.headers.get("authorization"))
        name = peer.name if peer else "unknown"
        try:
            if peer is None:
                raise Refusal("authentication_failed", "a bearer token this receiver gave a partner is required")
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media != SET_MEDIA_TYPE:
                raise Refusal("invalid_request", f"Content-Type must be {SET_MEDIA_TYPE}", reason="media_type")
            body = await _read_body(request, config.max_body_bytes, config.read_timeout_s)
        except Refusal as refusal:
            response = _response(receiver.refuse(refusal, name, "push"))
            if refusal.status in (408, 413):
                response.headers["Connection"] = "close"
            return response
        return _response(await receiver.accept(body, peer, "push", started))

    async def metrics(request):
        return Response(receiver.metrics.render(), media_type="text/plain; version=0.0.4")

    async def healthz(request):
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(app):
        for hook in on_startup:
            await hook()
        try:
            yield
        finally:
            for hook in on_shutdown:
                await hook()

    return Starlette(routes=[Route("/ssf/push", push, methods=["POST"]), Route("/metrics", metrics),
                             Route("/healthz", healthz)], lifespan=lifespan)


async def poll_loop(receiver: Receiver, peer: TransmitterPeer, stop: asyncio.Event, client=None) -> None:
    """RFC 8936 polling of one partner until ``stop``: each response's SETs go through
    :meth:`Receiver.accept`; the next request acknowledges what was written (and what was
    already written: a replay) and reports refusals in ``setErrs``; a SET that could not be
    stored is neither, so the partner keeps it and sends it again."""
    import httpx

    client = client or httpx.AsyncClient(timeout=30.0)
    headers = {"Authorization": f"Bearer {peer.poll_token}"} if peer.poll_token else {}
    ack: list[str] = []
    errs: dict[str, dict] = {}
    backoff = peer.poll_interval_s
    while not stop.is_set():
        request = {"maxEvents": peer.max_events, "returnImmediately": True, "ack": ack, "setErrs": errs}
        try:
            response = await client.post(peer.poll_url, json=request, headers=headers)
            response.raise_for_status()
            answer = response.json()
            sets = answer.get("sets", {}) if isinstance(answer, dict) else {}
            if not isinstance(sets, dict):
                raise ValueError("sets is not an object")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("poll %s: %s", peer.name, exc)
            receiver.metrics.unavailable.inc(transmitter=peer.name, why="poll")
            await _sleep(stop, backoff)
            backoff = min(backoff * 2, 60.0)
            continue
        backoff = peer.poll_interval_s
        ack, errs = [], {}
        stalled = False
        for jti, token in sets.items():
            if not isinstance(token, str):
                errs[str(jti)] = {"err": "invalid_request", "description": "a SET is a string"}
                continue
            result = await receiver.accept(token.encode("utf-8", "surrogatepass"), peer, "poll")
            if result.status == 202 or result.reason == "replayed_jti":
                ack.append(jti)
            elif result.status == 503:
                stalled = True
            else:
                errs[jti] = result.body or {"err": "invalid_request", "description": "refused"}
        if stalled:
            await _sleep(stop, receiver.config.retry_after_s)
        elif not sets or not answer.get("moreAvailable"):
            if not ack and not errs:
                await _sleep(stop, peer.poll_interval_s)
    if ack or errs:  # a last request so the partner is not left waiting for our acknowledgements
        try:
            await client.post(peer.poll_url, json={"maxEvents": 0, "returnImmediately": True, "ack": ack,
                                                    "setErrs": errs}, headers=headers)
        except httpx.HTTPError:
            pass


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
