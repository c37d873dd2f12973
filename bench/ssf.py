"""SSF receiver benchmark: verified SETs per second on one core, and accept -> ``signals`` ack latency.

    python -m bench.ssf                       # 5,000 SETs, 32 connections, the broker of ATOGUARD_BOOTSTRAP_SERVERS
    python -m bench.ssf --sets 20000 --connections 64

What runs: a transmitter serving its metadata and JWKS (this process); the receiver (uvicorn +
httptools, Starlette, joserfc, kafka-python ``acks=all``) in a child process pinned to one core;
a load client of raw keep-alive HTTP/1.1 connections pinned to the other core, pushing SETs
signed beforehand (2048-bit RS256, unique ``jti``, a subject the directory maps). Every SET is
verified and written to a fresh ``<prefix>signals`` topic on the real broker before its 202.

Printed: a table with the SETs/s over the wall time of the run, the receiver's CPU seconds per
SET, the verification alone (parse, signature, claims, mapping; no HTTP, no Kafka) on one core,
and the accept -> Kafka-ack latency percentiles measured inside the receiver (from the first
byte of the request to the broker's acknowledgement). Targets (issue 19): >= 2,000 SETs/s on one
core, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

AUDIENCE = "https://bench.example/ssf"
TOKEN = "bench-push-token"


def _receiver_child(issuer: str, port_file: str, out_file: str, bootstrap: str, topic: str, core: int) -> None:
    """The receiver, pinned to ``core``; writes its port, then its latencies when told to stop."""
    import signal

    os.sched_setaffinity(0, {core})
    from streams.settings import Settings
    from streams.ssf.config import ReceiverConfig, TransmitterPeer
    from streams.ssf.receiver import KafkaWriter, Receiver
    from streams.ssf.serve import ServerThread, receiver_app
    from streams.ssf.subjects import Directory

    config = ReceiverConfig(audience=AUDIENCE, jti_memory=10_000_000,
                            transmitters=(TransmitterPeer("bench", issuer, "lender", push_token=TOKEN),))
    directory = Directory([{"account_id": f"acct-{i}", "subject": {"format": "email", "email": f"u{i}@example.com"}}
                           for i in range(1000)])
    if topic:
        writer = KafkaWriter(Settings(bootstrap_servers=bootstrap), topic, linger_ms=2)
    else:  # --no-kafka: the HTTP and verification cost alone
        from streams.ssf.receiver import MemoryWriter
        writer = MemoryWriter()
    receiver = Receiver(config, directory, writer)
    receiver.latencies = []
    server = ServerThread(receiver_app(receiver), http="httptools").start()
    cpu0 = time.process_time()  # start-up (imports, connections) is not the SETs' cost
    Path(port_file).write_text(str(server.port))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while not stopping:
        time.sleep(0.1)
    cpu = time.process_time() - cpu0
    Path(out_file).write_text(json.dumps({"latencies": receiver.latencies, "cpu_s": cpu}))
    server.stop()


async def _load(port: int, bodies: list[bytes], connections: int) -> tuple[float, dict[int, int]]:
    """Push every body over ``connections`` keep-alive connections; wall seconds and statuses."""
    queue = list(reversed(bodies))
    statuses: dict[int, int] = {}

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (f"POST /ssf/push HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/secevent+jwt\r\nContent-Length: ").encode()
        while queue:
            body = queue.pop()
            writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            status = int(status_line.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started, statuses


def _verify_only(tokens: list[bytes], key) -> float:
    """SETs/s of parse + signature + claims + mapping on this core (no HTTP, no Kafka)."""
    from streams.ssf.sets import check_claims, parse, signals_of, verify_signature
    from streams.ssf.subjects import Directory

    directory = Directory([{"account_id": f"acct-{i}", "subject": {"format": "email", "email": f"u{i}@example.com"}}
                           for i in range(1000)])
    started = time.process_time()
    for token in tokens:
        parsed = parse(token)
        verify_signature(parsed, key)
        check_claims(parsed.claims, AUDIENCE)
        signals_of(parsed.claims, partner="bench", role="lender", directory=directory, now_ms=0)
    return len(tokens) / (time.process_time() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ssf", description=__doc__.split("\n\n")[0],
                                     epilog="example: python -m bench.ssf --sets 5000 --connections 32")
    parser.add_argument("--sets", type=int, default=5000, help="SETs to push (default 5000)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    parser.add_argument("--no-kafka", action="store_true", help="write to memory: the cost of HTTP and verification alone")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("ATOGUARD_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    args = parser.parse_args(argv)

    from kafka import KafkaAdminClient
    from joserfc.jwk import RSAKey

    from streams.settings import Settings
    from streams.ssf.config import ReceiverPeer, TransmitterConfig
    from streams.ssf.serve import ServerThread, transmitter_app
    from streams.ssf.sets import EVENT_URIS, build_set, sign
    from streams.ssf.subjects import Directory
    from streams.ssf.transmitter import Transmitter

    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = cores[0], cores[-1]
    topic = f"bench{uuid.uuid4().hex[:8]}.signals"
    try:
        admin = KafkaAdminClient(**Settings(bootstrap_servers=args.bootstrap_servers).client_options(10.0))
        admin.create_topics({topic: {"num_partitions": 4, "replication_factor": 1, "configs": {}}})
        admin.close()
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        print(f"bench.ssf: Kafka at {args.bootstrap_servers}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    tmp = Path(tempfile.mkdtemp(prefix="bench-ssf-"))
    key = RSAKey.generate_key(2048)
    (tmp / "key.pem").write_bytes(key.as_pem(private=True))
    with socket_port() as port:
        pass
    issuer = f"http://127.0.0.1:{port}"
    tx = Transmitter(TransmitterConfig(issuer=issuer, signing_key=str(tmp / "key.pem"), kid="k1",
                                       receivers=(ReceiverPeer("r", "t", AUDIENCE),)), Directory())
    jwks_server = ServerThread(transmitter_app(tx), port=port).start()

    print(f"signing {args.sets} SETs ...", file=sys.stderr)
    events = {EVENT_URIS["credential_compromise"]: {"credential_type": "password"}}
    tokens = [sign(build_set(iss=issuer, aud=AUDIENCE, jti=f"b-{i}", iat=int(time.time()),
                             sub_id={"format": "email", "email": f"u{i % 1000}@example.com"}, events=events),
                   key, "k1").encode() for i in range(args.sets)]

    os.sched_setaffinity(0, {client_core})
    verify_rate = _verify_only(tokens[: min(2000, len(tokens))], RSAKey.import_key(key.as_dict(private=False)))

    ctx = multiprocessing.get_context("spawn")
    port_file, out_file = tmp / "port", tmp / "out.json"
    child = ctx.Process(target=_receiver_child, args=(issuer, str(port_file), str(out_file), args.bootstrap_servers,
                                                      "" if args.no_kafka else topic, server_core))
    child.start()
    while not port_file.exists():
        if not child.is_alive():
            print("bench.ssf: the receiver did not start", file=sys.stderr)
            return 1
        time.sleep(0.05)
    rport = int(port_file.read_text())
    asyncio.run(_load(rport, tokens[:50], 4))  # warm-up: connections, JWKS, producer metadata
    wall, statuses = asyncio.run(_load(rport, tokens[50:], args.connections))
    child.terminate()
    child.join(30)
    jwks_server.stop()
    result = json.loads(out_file.read_text())
    lat = sorted(result["latencies"][50:])
    pushed = len(tokens) - 50

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    rows = [
        ("SETs pushed (after 50 warm-up)", f"{pushed}", ""),
        ("answers", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())), "all 202"),
        ("verified + written SETs/s (wall, receiver on 1 core)", f"{pushed / wall:,.0f}", ">= 2,000"),
        ("receiver CPU per SET (after start-up)", f"{result['cpu_s'] / len(tokens) * 1e6:,.0f} µs", ""),
        ("SETs per receiver CPU-second", f"{len(tokens) / result['cpu_s']:,.0f}", ">= 2,000"),
        ("verification alone, SETs/s on 1 core", f"{verify_rate:,.0f}", ""),
        ("accept -> Kafka ack p50", f"{pct(0.50):.1f} ms", ""),
        ("accept -> Kafka ack p99", f"{pct(0.99):.1f} ms", "< 50 ms"),
        ("accept -> Kafka ack max", f"{(lat[-1] * 1000 if lat else float('nan')):.1f} ms", ""),
        ("accept -> Kafka ack mean", f"{statistics.mean(lat) * 1000:.1f} ms" if lat else "", ""),
    ]
    print(f"\nSSF receiver, {args.connections} connections, topic {topic} (4 partitions, acks=all)\n")
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value | target |\n|{'-' * (width + 2)}|---|---|")
    for name, value, target in rows:
        print(f"| {name:<{width}} | {value} | {target} |")
    return 0


class socket_port:
    """A free local port (closed again before use)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


if __name__ == "__main__":
    sys.exit(main())
