"""The SSF transmitter (``atoguard ssf transmit``): ``ato.signals-out`` in, signed SETs out.

Endpoints (SSF 1.0; every one but the first two needs the partner's bearer token):

| endpoint | what |
|---|---|
| ``GET /.well-known/ssf-configuration`` | the transmitter's metadata |
| ``GET /ssf/jwks.json`` | our public signing keys |
| ``POST/GET/PATCH/PUT/DELETE /ssf/stream`` | stream management (``?stream_id=`` for GET/DELETE) |
| ``GET/POST /ssf/status`` | a stream's status: ``enabled``, ``paused`` (held), ``disabled`` (dropped) |
| ``POST /ssf/subjects:add``, ``/ssf/subjects:remove`` | the subjects the partner wants events about |
| ``POST /ssf/verify`` | a verification event (its ``state`` echoed) on the stream |
| ``POST /ssf/poll/{stream_id}`` | RFC 8936 poll: ``{maxEvents, returnImmediately, ack, setErrs}`` |

What is sent: for each ``ato.signals-out`` message, for each stream whose partner added a
subject that the subject directory gives that partner for the account, one SET (RISC/CAEP event
of the message's kind, ``sub_id`` the subject, never the account id; ``jti`` a hash of stream,
event and subject, so a re-delivery is recognisably the same SET). Push streams (RFC 8935)
are delivered in order with retries and exponential back-off (``Retry-After`` honoured, up to
``max_backoff_s``); a 400 answer is final (logged and counted). Poll streams keep each SET until
the partner acknowledges it (or reports it in ``setErrs``).

At least once: the consumer (group ``atoguard-ssf-transmit``) commits an offset of
``signals-out`` only when every SET made from it and every earlier message was delivered or
finally refused, so after a restart what was not delivered is read and sent again, with the
same ``jti``. Streams and their subjects are kept in ``state_file``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from detectors import contract as c
from streams.metrics import Counter, Gauge, Registry
from streams.ssf.config import ReceiverPeer, TransmitterConfig
from streams.ssf.sets import EVENT_URIS, VERIFICATION, build_set, sign
from streams.ssf.subjects import Directory, SubjectError, subject_key

__all__ = ["Offsets", "Stream", "Transmitter", "TransmitterMetrics", "build_app", "load_signing_key", "set_events"]

log = logging.getLogger("atoguard.ssf")

PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
SUPPORTED = [EVENT_URIS[k] for k in c.SHARED_KINDS]


def load_signing_key(path: str):
    """The private RSA key (PEM) we sign with; :class:`ValueError` if under 2048 bits."""
    from joserfc.jwk import RSAKey

    key = RSAKey.import_key(Path(path).read_bytes())
    if not key.is_private or key.private_key.key_size < 2048:
        raise ValueError(f"{path}: the signing key must be a private RSA key of >= 2048 bits")
    return key


def set_events(message: dict) -> dict:
    """The SET ``events`` member of one ``ato.signals-out`` message.

    ``credential_compromise`` (RISC) requires a ``credential_type``: an ``ato`` verdict says
    the holder's sign-in was taken, so we name ``password``, the credential a sign-in needs.
    """
    kind, seconds = message["kind"], int(message["ts"]) // 1000
    payload: dict[str, Any] = {"event_timestamp": seconds}
    if kind == "account_disabled":
        payload["reason"] = message.get("reason") or c.HIJACKING
    elif kind == "credential_compromise":
        payload["credential_type"] = "password"
    elif kind == "session_revoked":
        payload["initiating_entity"] = "policy"
        payload["reason_admin"] = {"en": "account takeover suspected"}
    return {EVENT_URIS[kind]: payload}


class TransmitterMetrics(Registry):
    def __init__(self, outbox=lambda: ()) -> None:
        super().__init__()
        self.sets = self.add(Counter("atoguard_ssf_sent_total", "SETs delivered, by partner and outcome",
                                     ("receiver", "outcome")))
        self.retries = self.add(Counter("atoguard_ssf_push_retries_total", "push attempts retried", ("receiver",)))
        self.skipped = self.add(Counter("atoguard_ssf_not_shared_total",
                                        "signals-out messages with no stream to share them on, by why", ("why",)))
        self.outbox = self.add(Gauge("atoguard_ssf_outbox", "SETs waiting for delivery or acknowledgement",
                                     ("stream",), collect=outbox))


@dataclass
class Stream:
    """One stream's configuration (SSF 1.0 section 8.1.1) and its subjects."""

    stream_id: str
    receiver: str
    aud: str
    delivery: dict
    events_requested: list[str]
    description: str | None = None
    status: str = "enabled"
    reason: str | None = None
    subjects: dict[str, dict] = field(default_factory=dict)

    def events_delivered(self) -> list[str]:
        return [e for e in self.events_requested if e in SUPPORTED] if self.events_requested else list(SUPPORTED)

    def public(self, issuer: str) -> dict:
        out = {"stream_id": self.stream_id, "iss": issuer, "aud": self.aud, "delivery": dict(self.delivery),
               "events_supported": list(SUPPORTED), "events_requested": list(self.events_requested),
               "events_delivered": self.events_delivered(), "min_verification_interval": 0}
        out["delivery"].pop("authorization_header", None)  # a secret of the partner's: never echoed
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class _Item:
    jti: str
    token: str
    ref: tuple[int, int] | None   # (partition, offset) of signals-out, None for verification
    sent: bool = False


class Offsets:
    """Per partition, the offsets read and how many SETs of each are still undelivered; the
    committable offset is the first one not finished (or one past the last read).

    >>> o = Offsets(); o.add(0, 5, 2); o.add(0, 6, 0); o.committable()
    {0: 5}
    >>> o.done(0, 5); o.committable()  # one of offset 5's two SETs still out: nothing moves
    {}
    >>> o.done(0, 5); o.committable()
    {0: 7}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, dict[int, int]] = {}
        self._next: dict[int, int] = {}
        self._committed: dict[int, int] = {}

    def add(self, partition: int, offset: int, count: int) -> None:
        with self._lock:
            self._open.setdefault(partition, {})[offset] = count
            self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, partition: int, offset: int) -> None:
        with self._lock:
            table = self._open.get(partition, {})
            if offset in table:
                table[offset] -= 1

    def committable(self) -> dict[int, int]:
        """Partitions whose committable offset moved since the last call."""
        out = {}
        with self._lock:
            for partition, table in self._open.items():
                for offset in sorted(table):
                    if table[offset] > 0:
                        break
                    del table[offset]
                point = min(table) if table else self._next[partition]
                if point != self._committed.get(partition):
                    out[partition] = point
                    self._committed[partition] = point
        return out

    def pending(self) -> int:
        with self._lock:
            return sum(1 for t in self._open.values() for n in t.values() if n > 0)


class Transmitter:
    """Streams, outboxes and delivery; the HTTP side is :func:`build_app`."""

    def __init__(self, config: TransmitterConfig, directory: Directory, *, client=None, clock=time.time) -> None:
        self.config = config
        self.directory = directory
        self.key = load_signing_key(config.signing_key)
        self.kid = config.kid
        self.loop: asyncio.AbstractEventLoop | None = None
        self.peers: dict[str, ReceiverPeer] = {p.token: p for p in config.receivers}
        self.streams: dict[str, Stream] = {}
        self.outbox: dict[str, deque[_Item]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self.offsets = Offsets()
        self.client = client
        self.clock = clock
        self.metrics = TransmitterMetrics(lambda: [((sid,), len(q)) for sid, q in self.outbox.items()])
        self._load()

    # -- state -------------------------------------------------------------------------------
    def _load(self) -> None:
        path = self.config.state_file
        if path and os.path.exists(path):
            for raw in json.loads(Path(path).read_text()).get("streams", []):
                stream = Stream(**raw)
                self.streams[stream.stream_id] = stream
                self.outbox[stream.stream_id] = deque()

    def _save(self) -> None:
        path = self.config.state_file
        if not path:
            return
        tmp = f"{path}.tmp"
        Path(tmp).write_text(json.dumps({"streams": [asdict(s) for s in self.streams.values()]}, indent=1))
        os.replace(tmp, path)

    def jwks(self) -> dict:
        public = self.key.as_dict(private=False)
        keys = [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]
        from joserfc.jwk import RSAKey

        for i, path in enumerate(self.config.extra_public_keys):
            extra = RSAKey.import_key(Path(path).read_bytes()).as_dict(private=False)
            keys.append({**extra, "kid": extra.get("kid") or f"{self.config.kid}-extra{i + 1}", "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def metadata(self) -> dict:
        base = self.config.base()
        return {
            "spec_version": "1_0", "issuer": self.config.issuer, "jwks_uri": f"{base}/ssf/jwks.json",
            "delivery_methods_supported": [PUSH, POLL],
            "configuration_endpoint": f"{base}/ssf/stream", "status_endpoint": f"{base}/ssf/status",
            "add_subject_endpoint": f"{base}/ssf/subjects:add", "remove_subject_endpoint": f"{base}/ssf/subjects:remove",
            "verification_endpoint": f"{base}/ssf/verify",
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6750"}], "default_subjects": "NONE",
        }

    # -- streams -----------------------------------------------------------------------------
    def create(self, peer: ReceiverPeer, body: dict) -> Stream:
        delivery = self._delivery(body.get("delivery"), None)
        requested = body.get("events_requested") or []
        if not isinstance(requested, list) or not all(isinstance(e, str) for e in requested):
            raise ValueError("events_requested is a list of event type URIs")
        stream = Stream(stream_id=secrets.token_urlsafe(12), receiver=peer.name, aud=peer.audience,
                        delivery=delivery, events_requested=requested, description=body.get("description"))
        if stream.delivery["method"] == POLL:
            stream.delivery["endpoint_url"] = f"{self.config.base()}/ssf/poll/{stream.stream_id}"
        self.streams[stream.stream_id] = stream
        self.outbox[stream.stream_id] = deque()
        self._save()
        self.start_worker(stream)
        return stream

    def _delivery(self, delivery: Any, old: dict | None) -> dict:
        if delivery is None and old is not None:
            return old
        if not isinstance(delivery, dict) or delivery.get("method") not in (PUSH, POLL):
            raise ValueError(f"delivery.method must be {PUSH} (push) or {POLL} (poll)")
        if delivery["method"] == PUSH and not isinstance(delivery.get("endpoint_url"), str):
            raise ValueError("a push stream needs delivery.endpoint_url")
        out = {"method": delivery["method"]}
        if delivery["method"] == PUSH:
            out["endpoint_url"] = delivery["endpoint_url"]
            if isinstance(delivery.get("authorization_header"), str):
                out["authorization_header"] = delivery["authorization_header"]
        return out

    def update(self, stream: Stream, body: dict, replace: bool) -> Stream:
        if replace or "delivery" in body:
            stream.delivery = self._delivery(body.get("delivery"), None if replace else stream.delivery)
            if stream.delivery["method"] == POLL:
                stream.delivery["endpoint_url"] = f"{self.config.base()}/ssf/poll/{stream.stream_id}"
        if replace or "events_requested" in body:
            stream.events_requested = list(body.get("events_requested") or [])
        if replace or "description" in body:
            stream.description = body.get("description")
        self._save()
        self.start_worker(stream)
        return stream

    def delete(self, stream: Stream) -> None:
        self.streams.pop(stream.stream_id, None)
        for item in self.outbox.pop(stream.stream_id, ()):
            self._finish(item)
        worker = self._workers.pop(stream.stream_id, None)
        if worker:
            worker.cancel()
        self._save()

    def set_status(self, stream: Stream, status: str, reason: str | None) -> None:
        if status not in ("enabled", "paused", "disabled"):
            raise ValueError("status is enabled, paused or disabled")
        stream.status, stream.reason = status, reason
        if status == "disabled":
            queue = self.outbox[stream.stream_id]
            while queue:
                self._finish(queue.popleft())
        self._save()
        self._wake_up(stream.stream_id)

    def add_subject(self, stream: Stream, subject: dict) -> None:
        stream.subjects[subject_key(subject)] = subject
        self._save()

    def remove_subject(self, stream: Stream, subject: dict) -> None:
        stream.subjects.pop(subject_key(subject), None)
        self._save()

    # -- what is sent --------------------------------------------------------------------------
    def _jti(self, stream_id: str, event_id: str, key: str) -> str:
        return hashlib.sha256("\x00".join((stream_id, event_id, key)).encode()).hexdigest()[:32]

    def _sign(self, stream: Stream, jti: str, sub_id: dict, events: dict) -> str:
        claims = build_set(iss=self.config.issuer, aud=stream.aud, jti=jti, iat=int(self.clock()),
                           sub_id=sub_id, events=events)
        return sign(claims, self.key, self.kid)

    def rotate(self, key, kid: str) -> None:
        """Sign with ``key`` under ``kid`` from now on; the old key leaves the JWKS."""
        self.key, self.kid = key, kid

    def submit(self, partition: int, offset: int, value: bytes) -> int:
        """:meth:`dispatch` from any thread, on the app's loop (tests and tools)."""
        return asyncio.run_coroutine_threadsafe(self._dispatch(partition, offset, value), self.loop).result(10)

    def verify(self, stream: Stream, state: str | None) -> None:
        payload = {"state": state} if state is not None else {}
        token = self._sign(stream, secrets.token_hex(16), {"format": "opaque", "id": stream.stream_id},
                           {VERIFICATION: payload})
        self._enqueue(stream, _Item(token=token, jti="", ref=None))

    def dispatch(self, partition: int, offset: int, value: bytes | None) -> int:
        """Turn one ``signals-out`` record into SETs on every stream that may hear of it; the
        number of SETs queued (the offset is finished when they all are)."""
        items: list[tuple[Stream, _Item]] = []
        try:
            message = orjson.loads(value or b"null")
            kind, account, event = message["kind"], message["account_id"], message["event_id"]
            if kind not in c.SHARED_KINDS or not isinstance(account, str) or not isinstance(event, str):
                raise ValueError(f"kind {kind!r} is not shared")
            events = set_events(message)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("signals-out %d@%d not shared: %s", partition, offset, exc)
            self.metrics.skipped.inc(why="malformed")
            self.offsets.add(partition, offset, 0)
            return 0
        uri = next(iter(events))
        for stream in list(self.streams.values()):
            if stream.status == "disabled" or uri not in stream.events_delivered():
                continue
            wanted = self.directory.keys_of(account, stream.receiver)
            for key in sorted(set(wanted) & set(stream.subjects)):
                jti = self._jti(stream.stream_id, event, key)
                items.append((stream, _Item(jti, self._sign(stream, jti, wanted[key], events), (partition, offset))))
        if not items:
            self.metrics.skipped.inc(why="no_stream_or_subject")
        self.offsets.add(partition, offset, len(items))
        for stream, item in items:
            self._enqueue(stream, item)
        return len(items)

    def _enqueue(self, stream: Stream, item: _Item) -> None:
        self.outbox[stream.stream_id].append(item)
        self._wake_up(stream.stream_id)

    def _wake_up(self, stream_id: str) -> None:
        event = self._wake.get(stream_id)
        if event is not None:
            event.set()

    def _finish(self, item: _Item) -> None:
        if item.ref is not None:
            self.offsets.done(*item.ref)

    # -- push ----------------------------------------------------------------------------------
    def start_workers(self) -> None:
        for stream in self.streams.values():
            self.start_worker(stream)

    def start_worker(self, stream: Stream) -> None:
        self._wake.setdefault(stream.stream_id, asyncio.Event())
        if stream.delivery["method"] != PUSH:
            return
        old = self._workers.get(stream.stream_id)
        if old is None or old.done():
            self._workers[stream.stream_id] = asyncio.get_running_loop().create_task(self._push_worker(stream.stream_id))

    async def _push_worker(self, stream_id: str) -> None:
        import httpx

        client = self.client or httpx.AsyncClient(timeout=self.config.push_timeout_s)
        wake = self._wake[stream_id]
        backoff = 0.5
        while stream_id in self.streams:
            stream, queue = self.streams[stream_id], self.outbox[stream_id]
            if not queue or stream.status != "enabled":
                wake.clear()
                await wake.wait()
                continue
            item = queue[0]
            headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
            if stream.delivery.get("authorization_header"):
                headers["Authorization"] = stream.delivery["authorization_header"]
            retry_after = None
            try:
                response = await client.post(stream.delivery["endpoint_url"], content=item.token, headers=headers)
                status = response.status_code
                retry_after = response.headers.get("retry-after")
            except httpx.HTTPError as exc:
                status, detail = None, str(exc) or type(exc).__name__
            if status in (200, 202) or status == 400:
                if status == 400:
                    log.warning("stream %s: SET %s refused: %s", stream_id, item.jti, response.text[:300])
                self.metrics.sets.inc(receiver=stream.receiver, outcome="accepted" if status != 400 else "refused")
                if queue and queue[0] is item:
                    queue.popleft()
                self._finish(item)
                backoff = 0.5
                continue
            self.metrics.retries.inc(receiver=stream.receiver)
            delay = backoff
            if retry_after and retry_after.isdigit():
                delay = max(delay, float(retry_after))
            log.info("stream %s: push answered %s, again in %.1f s", stream_id,
                     status if status is not None else detail, delay)
            await asyncio.sleep(min(delay, self.config.max_backoff_s))
            backoff = min(backoff * 2, self.config.max_backoff_s)

    # -- poll ----------------------------------------------------------------------------------
    async def poll(self, stream: Stream, body: dict) -> dict:
        acks = body.get("ack") or []
        errs = body.get("setErrs") or {}
        if not isinstance(acks, list) or not isinstance(errs, dict):
            raise ValueError("ack is a list of jti and setErrs an object")
        done = set(map(str, acks)) | set(map(str, errs))
        queue = self.outbox[stream.stream_id]
        if done:
            keep = deque()
            for item in queue:
                if item.sent and item.jti in done:
                    outcome = "accepted" if item.jti in acks else "refused"
                    if outcome == "refused":
                        log.warning("stream %s: SET %s refused: %s", stream.stream_id, item.jti, errs[item.jti])
                    self.metrics.sets.inc(receiver=stream.receiver, outcome=outcome)
                    self._finish(item)
                else:
                    keep.append(item)
            queue.clear()
            queue.extend(keep)
        limit = body.get("maxEvents", self.config.max_events)
        limit = self.config.max_events if not isinstance(limit, int) or limit < 0 else min(limit, self.config.max_events)
        if limit and not queue and body.get("returnImmediately") is False:
            wake = self._wake.setdefault(stream.stream_id, asyncio.Event())
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), timeout=10)
            except TimeoutError:
                pass
        if stream.status != "enabled":
            return {"sets": {}, "moreAvailable": False}
        sets = {}
        for item in list(queue)[:limit]:
            if not item.jti:  # verification events carry a random jti of their own
                item.jti = secrets.token_hex(16)
            item.sent = True
            sets[item.jti] = item.token
        return {"sets": sets, "moreAvailable": len(queue) > len(sets)}

    # -- the source ----------------------------------------------------------------------------
    def consume(self, settings, topic: str, loop: asyncio.AbstractEventLoop, stop: threading.Event,
                group_id: str = "atoguard-ssf-transmit") -> None:
        """Read ``topic`` (a thread): records are dispatched on ``loop``; offsets are committed as
        :class:`Offsets` allows."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        consumer = KafkaConsumer(topic, **settings.client_options(10.0), group_id=group_id,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 client_id="atoguard-ssf-transmit")
        try:
            while not stop.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for record in records:
                        asyncio.run_coroutine_threadsafe(self._dispatch(tp.partition, record.offset, record.value),
                                                         loop).result()
                commit = self.offsets.committable()
                if commit:
                    consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in commit.items()})
        finally:
            consumer.close()

    async def _dispatch(self, partition: int, offset: int, value: bytes | None) -> int:
        return self.dispatch(partition, offset, value)


# -- HTTP --------------------------------------------------------------------------------------

def build_app(tx: Transmitter, *, on_startup=(), on_shutdown=()):
    """The transmitter's ASGI app (the table in the module docstring)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def error(status: int, code: str, text: str):
        return JSONResponse({"err": code, "description": text}, status_code=status)

    def peer_of(request) -> ReceiverPeer | None:
        auth = request.headers.get("authorization", "")
        return tx.peers.get(auth[7:].strip()) if auth.startswith("Bearer ") else None

    async def body_of(request) -> dict:
        raw = await request.body()
        if len(raw) > 65536:
            raise ValueError("the body is over 65536 bytes")
        body = orjson.loads(raw or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body is a JSON object")
        return body

    def guarded(handler):
        async def endpoint(request):
            peer = peer_of(request)
            if peer is None:
                return error(401, "authentication_failed", "a bearer token of a configured partner is required")
            try:
                body = await body_of(request) if request.method in ("POST", "PATCH", "PUT") else {}
                stream_id = body.get("stream_id") or request.query_params.get("stream_id") \
                    or request.path_params.get("stream_id")
                stream = tx.streams.get(stream_id) if stream_id else None
                if stream is not None and stream.receiver != peer.name:
                    stream = None
                if stream_id and stream is None:
                    return error(404, "not_found", "no such stream")
                return await handler(request, peer, stream, body)
            except (ValueError, SubjectError, orjson.JSONDecodeError) as exc:
                return error(400, "invalid_request", str(exc))
        return endpoint

    async def configuration(request):
        return JSONResponse(tx.metadata())

    async def jwks(request):
        return JSONResponse(tx.jwks())

    @guarded
    async def stream_endpoint(request, peer, stream, body):
        if request.method == "POST":
            return JSONResponse(tx.create(peer, body).public(tx.config.issuer), status_code=201)
        if request.method == "GET":
            if stream is None:
                return JSONResponse([s.public(tx.config.issuer) for s in tx.streams.values() if s.receiver == peer.name])
            return JSONResponse(stream.public(tx.config.issuer))
        if stream is None:
            raise ValueError("stream_id is required")
        if request.method == "DELETE":
            tx.delete(stream)
            return Response(status_code=204)
        return JSONResponse(tx.update(stream, body, replace=request.method == "PUT").public(tx.config.issuer))

    @guarded
    async def status_endpoint(request, peer, stream, body):
        if stream is None:
            raise ValueError("stream_id is required")
        if request.method == "POST":
            tx.set_status(stream, body.get("status"), body.get("reason"))
        out = {"stream_id": stream.stream_id, "status": stream.status}
        if stream.reason:
            out["reason"] = stream.reason
        return JSONResponse(out)

    def subjects(add: bool):
        @guarded
        async def endpoint(request, peer, stream, body):
            if stream is None:
                raise ValueError("stream_id is required")
            subject = body.get("subject")
            subject_key(subject)  # a malformed subject is a 400; an unknown one is quietly kept
            (tx.add_subject if add else tx.remove_subject)(stream, subject)
            return Response(status_code=200 if add else 204)
        return endpoint

    @guarded
    async def verify(request, peer, stream, body):
        if stream is None:
            raise ValueError("stream_id is required")
        state = body.get("state")
        tx.verify(stream, state if isinstance(state, str) else None)
        return Response(status_code=204)

    @guarded
    async def poll(request, peer, stream, body):
        if stream is None or stream.delivery["method"] != POLL:
            return error(404, "not_found", "no such poll stream")
        return JSONResponse(await tx.poll(stream, body))

    async def metrics(request):
        return Response(tx.metrics.render(), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app):
        tx.loop = asyncio.get_running_loop()
        tx.start_workers()
        for hook in on_startup:
            await hook()
        try:
            yield
        finally:
            for hook in on_shutdown:
                await hook()
            for worker in tx._workers.values():
                worker.cancel()

    return Starlette(routes=[
        Route("/.well-known/ssf-configuration", configuration), Route("/ssf/jwks.json", jwks),
        Route("/ssf/stream", stream_endpoint, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        Route("/ssf/status", status_endpoint, methods=["GET", "POST"]),
        Route("/ssf/subjects:add", subjects(True), methods=["POST"]),
        Route("/ssf/subjects:remove", subjects(False), methods=["POST"]),
        Route("/ssf/verify", verify, methods=["POST"]),
        Route("/ssf/poll/{stream_id}", poll, methods=["POST"]),
        Route("/metrics", metrics),
    ], lifespan=lifespan)
