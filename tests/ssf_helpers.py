"""Two SSF parties over real HTTP on localhost, without Kafka: A's transmitter and B's
receiver (its writer a :class:`~streams.ssf.receiver.MemoryWriter` or a Kafka writer)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import orjson
from joserfc.jwk import RSAKey

from streams.ssf.config import ReceiverConfig, ReceiverPeer, TransmitterConfig, TransmitterPeer
from streams.ssf.receiver import MemoryWriter, Receiver
from streams.ssf.serve import ServerThread, receiver_app, transmitter_app
from streams.ssf.sets import EVENT_URIS, build_set, sign
from streams.ssf.subjects import Directory
from streams.ssf.transmitter import POLL, PUSH, Transmitter

AUDIENCE = "https://b.example/ssf"
PUSH_TOKEN = "push-token-for-a"
B_TOKEN = "b-manages-its-streams-at-a"
ANA = {"format": "email", "email": "ana@example.com"}

_KEYS: dict[int, RSAKey] = {}


def rsa(bits: int = 2048, n: int = 0) -> RSAKey:
    if (bits, n) not in _KEYS:
        _KEYS[(bits, n)] = RSAKey.generate_key(bits)
    return _KEYS[(bits, n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met in {timeout_s} s")


class PartyA:
    """A's transmitter on a real port; its directory knows acct-A1 as Ana for partner b."""

    def __init__(self, tmp: Path, settings=None, topic=None, max_backoff_s: float = 0.5) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        key_path = tmp / "a-key.pem"
        key_path.write_bytes(rsa().as_pem(private=True))
        self.config = TransmitterConfig(issuer=self.url, signing_key=str(key_path), kid="a-1",
                                        receivers=(ReceiverPeer("b", B_TOKEN, AUDIENCE),),
                                        state_file=str(tmp / "a-streams.json"), max_backoff_s=max_backoff_s)
        self.directory = Directory([{"account_id": "acct-A1", "subject": ANA, "partners": ["b"]},
                                    {"account_id": "acct-A2", "subject": {"format": "email", "email": "bo@example.com"}}])
        self.tx = Transmitter(self.config, self.directory)
        self.server = ServerThread(transmitter_app(self.tx, settings, topic), port=self.port)

    def start(self) -> "PartyA":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def api(self, method: str, path: str, token: str = B_TOKEN, **kw) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10, **kw)

    def open_stream(self, method: str, receiver_url: str | None = None, subject: dict = ANA) -> str:
        delivery = {"method": method}
        if method == PUSH:
            delivery.update(endpoint_url=receiver_url + "/ssf/push", authorization_header=f"Bearer {PUSH_TOKEN}")
        answer = self.api("POST", "/ssf/stream", json={"delivery": delivery, "events_requested": list(EVENT_URIS.values())})
        assert answer.status_code == 201, answer.text
        stream_id = answer.json()["stream_id"]
        assert self.api("POST", "/ssf/subjects:add", json={"stream_id": stream_id, "subject": subject}).status_code == 200
        return stream_id

    def share(self, offset: int, kind: str = "account_disabled", account: str = "acct-A1", partition: int = 0) -> int:
        message = {"event_id": f"out-{offset}", "account_id": account, "ts": 1_760_000_000_000 + offset, "kind": kind,
                   "reason": "hijacking" if kind == "account_disabled" else None, "command_id": None,
                   "contract_version": 3}
        return self.tx.submit(partition, offset, orjson.dumps(message))

    def token(self, claims: dict | None = None, key: RSAKey | None = None, kid: str = "a-1", **over) -> bytes:
        """A SET as A would sign it (or with another key/kid), claims overridable."""
        base = build_set(iss=self.url, aud=AUDIENCE, jti=over.pop("jti", f"jti-{time.monotonic_ns()}"), iat=int(time.time()),
                         sub_id=ANA, events={EVENT_URIS["credential_compromise"]: {"credential_type": "password"}})
        base.update(claims or {})
        for name in [n for n, v in over.items() if v is None]:
            base.pop(name, None)
        base.update({n: v for n, v in over.items() if v is not None})
        return sign(base, key or rsa(), kid).encode()


class PartyB:
    """B's receiver on a real port; its directory knows Ana as acct-B9."""

    def __init__(self, a: PartyA, writer=None, poll_url: str | None = None, **receiver_options) -> None:
        peer = TransmitterPeer(name="a", issuer=a.url, role="lender", push_token=PUSH_TOKEN,
                               poll_url=poll_url, poll_token=B_TOKEN if poll_url else None, poll_interval_s=0.1)
        options = {"read_timeout_s": 1.0, "ack_timeout_s": 1.0, "retry_after_s": 1, "jwks_refresh_s": 0.0, **receiver_options}
        self.config = ReceiverConfig(audience=AUDIENCE, transmitters=(peer,), **options)
        self.directory = Directory([{"account_id": "acct-B9", "subject": ANA}])
        self.writer = writer if writer is not None else MemoryWriter()
        self.receiver = Receiver(self.config, self.directory, self.writer)
        self.server = ServerThread(receiver_app(self.receiver))

    def start(self) -> "PartyB":
        self.server.start()
        self.url = self.server.url
        return self

    def stop(self) -> None:
        self.server.stop()

    def push(self, body: bytes, token: str | None = PUSH_TOKEN, content_type: str = "application/secevent+jwt") -> httpx.Response:
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.post(self.url + "/ssf/push", content=body, headers=headers, timeout=10)

    def counter(self, metric, **labels) -> float:
        return metric.value(**labels)
