"""How long each page of the analyst console takes with a large index.

Builds an index (``streams.console.index``) holding N accounts' state as the console would read
it from the topics: a worker profile per account (through the changelog path, so each one is
decoded and summarised), alerts and commands for a share of them (step-ups, freezes, lifted
freezes), challenge answers, a real and a shadow decision per account, partners' signals and dead
letters. Then serves the console with uvicorn on the loopback, signs in, and requests each page
``--repeat`` times over HTTP, printing a table of median / p95 / max milliseconds per page.

    python -m bench.console                       # 100,000 accounts
    python -m bench.console --accounts 20000 --repeat 10 --keep /tmp/console-index.sqlite

No worker or broker is needed; the health page is timed without worker metrics.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from detectors import contract as c

T0 = 1_764_000_000_000
HOUR = 3_600_000
PASSWORD = "bench password long enough"


def build(index, accounts: int, seed: int = 1) -> dict[str, int]:
    """Write ``accounts`` accounts' state and outputs into ``index``; returns counts."""
    from detectors.profile import Device, Profile, encode

    rnd = random.Random(seed)
    counts = {"profiles": 0, "commands": 0, "alerts": 0, "decisions": 0, "answers": 0}
    batch: list[tuple[str, bytes | None, bytes | None, list | None]] = []

    def flush() -> None:
        index.write(batch)
        batch.clear()

    for i in range(accounts):
        account = f"acct-{i:07d}"
        ts = T0 + rnd.randrange(30 * 24 * HOUR)
        p = Profile(first_ts=T0 - 90 * 24 * HOUR, last_ts=ts, n_events=rnd.randrange(20, 400),
                    devices={f"dev-{i}-{k}": Device(first=T0, last=ts) for k in range(rnd.randrange(1, 4))})
        batch.append(("changelog", f"{account}|p".encode(), encode(p), None))
        counts["profiles"] += 1
        for dry in (False, True):
            decision = "allow" if rnd.random() > 0.03 else "hold"
            batch.append((c.DECISIONS, None, orjson.dumps({
                "decision_id": f"d-{i}-{int(dry)}", "event_id": f"e-{i}", "account_id": account, "ts": ts,
                "decision": decision if not dry or rnd.random() > 0.1 else "hold", "command_id": None,
                "resolves": None, "risk": 0.1, "reasons": [], "message": None, "dry_run": dry,
                "policy_version": "bench"}), None))
            counts["decisions"] += 1
        roll = rnd.random()
        if roll < 0.30:
            alert_id = f"al-{i}"
            batch.append((c.ALERTS, account.encode(), orjson.dumps({
                "finding_info": {"uid": alert_id, "title": "Possible account takeover", "types": ["NEW_DEVICE_LOGIN"]},
                "time": ts, "severity": rnd.choice(["Medium", "High", "Critical"]), "severity_id": 4,
                "risk_score": 80, "unmapped": {"account_id": account, "action": "step_up"}}), None))
            counts["alerts"] += 1
            cid = f"c-{i}"
            batch.append((c.COMMANDS, None, orjson.dumps({
                "command_id": cid, "account_id": account, "action": c.STEP_UP, "reasons": ["NEW_DEVICE_LOGIN"],
                "message": "Please confirm it is you.", "risk": 0.7, "issued_at": ts, "expires_at": ts + 120_000,
                "trigger_event_id": f"e-{i}", "alert_id": alert_id, "policy_version": "bench", "dry_run": False,
                "methods": ["face", "id_check"]}), None))
            counts["commands"] += 1
            if rnd.random() < 0.5:
                batch.append((c.DEVICE, None, orjson.dumps({
                    "event_id": f"ch-{cid}", "account_id": account, "ts": ts + 30_000,
                    "kind": rnd.choice([c.CHALLENGE_PASSED, c.CHALLENGE_FAILED]), "method": "face",
                    "command_id": cid, "device_id": f"dev-{i}-0", "ip": "198.51.100.7"}), None))
                counts["answers"] += 1
            if roll < 0.02:
                fid = f"f-{i}"
                batch.append((c.COMMANDS, None, orjson.dumps({
                    "command_id": fid, "account_id": account, "action": c.FREEZE,
                    "reasons": ["CHALLENGE_FAILED", "NEW_DEVICE_LOGIN"], "message": "We paused payouts.",
                    "risk": 0.9, "issued_at": ts + 30_000, "expires_at": ts + 7 * 24 * HOUR,
                    "trigger_event_id": f"ch-{cid}", "alert_id": alert_id, "policy_version": "bench",
                    "dry_run": False, "methods": ["passkey", "id_check"]}), None))
                counts["commands"] += 1
                if roll < 0.005:
                    batch.append((c.COMMANDS, None, orjson.dumps({
                        "command_id": f"u-{i}", "account_id": account, "action": c.UNFREEZE, "reasons": ["CHALLENGE_PASSED"],
                        "message": "", "risk": 0.0, "issued_at": ts + HOUR, "expires_at": None,
                        "trigger_event_id": f"ch2-{i}", "alert_id": None, "policy_version": "bench",
                        "dry_run": False, "methods": None}), None))
                    counts["commands"] += 1
        if rnd.random() < 0.01:
            batch.append((c.DEAD_LETTER, None, orjson.dumps({"topic": "ato.device", "partition": 0, "offset": i,
                                                             "reason": rnd.choice(["NOT_JSON", "late"]),
                                                             "detail": "", "key_b64": None, "value_b64": ""}), None))
        if len(batch) >= 5000:
            flush()
    flush()
    return counts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20, help="requests per page (default 20)")
    parser.add_argument("--keep", type=Path, help="build the index here and keep it (default: a temporary file); "
                        "an index already there is reused as it is")
    args = parser.parse_args(argv)

    import httpx
    import uvicorn

    from streams.console import ConsoleConfig, Index, UserStore, create_app
    from streams.console.index import account_ref

    key = "bench-pseudonym-key"
    tmp = tempfile.TemporaryDirectory()
    path = args.keep or Path(tmp.name) / "index.sqlite"
    reuse = path.exists()
    index = Index(path, key)
    t = time.perf_counter()
    if reuse:
        print(f"index: reusing {path} ({path.stat().st_size / 1e6:.0f} MB): {index.counts()}")
    else:
        counts = build(index, args.accounts)
        print(f"index: {args.accounts:,} accounts, {counts} in {time.perf_counter() - t:.0f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")
    users = UserStore(Path(tmp.name) / "users.sqlite")
    users.add_user("bench", "admin", PASSWORD)
    port = _free_port()
    app = create_app(ConsoleConfig(key=key, secure_cookies=False), index, users)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    frozen = index.queue(limit=1)[0]["account"]
    pages = {"queue": "/", "queue, filtered": "/?reason=CHALLENGE_FAILED&answered=no&age=48",
             "account (frozen)": f"/account/{account_ref(frozen, key)}",
             "account (quiet)": f"/account/{account_ref('acct-0000000', key)}",
             "shadow, 24 h": "/shadow?hours=24", "shadow, 30 days": "/shadow?hours=720",
             "health": "/health", "audit": "/audit"}
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/login").text
        import re

        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        client.post("/login", data={"user": "bench", "password": PASSWORD, "csrf": csrf})
        print(f"\n{'page':<20} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'bytes':>8}")
        for name, url in pages.items():
            times, size = [], 0
            for _ in range(args.repeat):
                t = time.perf_counter()
                r = client.get(url)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (name, r.status_code)
                size = len(r.content)
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            print(f"{name:<20} {statistics.median(times):>10.1f} {p95:>8.1f} {times[-1]:>8.1f} {size:>8,}")
    server.should_exit = True
    thread.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
