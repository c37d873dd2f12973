"""The console's index: a SQLite file of its own, fed from the topics, read by the pages.

The worker's RocksDB is the worker's (locked while it runs), so the console keeps its own copy of
what it shows, built from what the worker and its neighbours publish:

| source | kept as |
|---|---|
| ``<prefix>commands`` | ``commands`` rows; the account's restriction and open step-up (``accounts``) |
| ``<prefix>alerts`` | ``alerts`` rows (severity, reasons, risk); the severity of the case |
| ``<prefix>decisions`` (v3) | ``decisions`` rows (allow / hold / deny, resolutions); shadow vs real |
| ``<prefix>signals`` (in) and ``<prefix>signals-out`` (v3) | ``signals`` rows, direction in/out |
| ``<prefix>verdicts`` | ``verdicts`` rows (label, source, actor, note) |
| ``<prefix>dead-letter`` | ``dead_letters`` rows (source topic, reason), for the health page |
| ``<prefix>device``, challenge answers only | ``answers`` rows: how each challenge ended |
| the worker's changelog | ``accounts``: the profile's restriction, open challenge, events seen |

Device ids, session ids and IP addresses never enter the index in clear: they are replaced by
:func:`detectors.outputs.pseudonym` (``keys.pseudonym_hmac``) as they are read, the same
pseudonyms as the alerts' evidence. Accounts are addressed in URLs by ``accounts.ref``, the
pseudonym of the account id, so the server's log carries no raw account id either.

:class:`Index` is the store (one writer, any number of readers, WAL); :class:`Feeder` is the
thread that reads the topics (``read_committed``, from the beginning, resuming at the offsets
stored in the index) and writes them in batches. Topics that do not exist yet (v3's decisions,
signals, signals-out while they are being rolled out) are looked for again every few seconds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from detectors import contract as c
from detectors.outputs import pseudonym

__all__ = ["FEED_TOPICS", "FeedStatus", "Feeder", "Index", "QUEUE_LIMIT", "account_ref", "feed_once", "profile_summary"]

#: the contract topics the console reads, by logical name
FEED_TOPICS = (c.COMMANDS, c.ALERTS, c.DECISIONS, c.SIGNALS, c.SIGNALS_OUT, c.VERDICTS, c.DEAD_LETTER, c.DEVICE)
#: the most rows the queue page shows
QUEUE_LIMIT = 200
RESTRICTIONS = (c.FREEZE, c.CLOSE)

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS accounts (
  account TEXT PRIMARY KEY, ref TEXT NOT NULL UNIQUE,
  restriction TEXT, restriction_id TEXT, restriction_ts INTEGER, restriction_until INTEGER,
  restriction_reasons TEXT, restriction_risk REAL, restriction_alert TEXT,
  step_up_id TEXT, step_up_ts INTEGER, step_up_until INTEGER, step_up_reasons TEXT, step_up_risk REAL,
  step_up_alert TEXT, answered TEXT, severity TEXT, severity_id INTEGER,
  profile TEXT, last_ts INTEGER, n_events INTEGER);
CREATE INDEX IF NOT EXISTS accounts_restriction ON accounts(restriction, restriction_ts);
CREATE INDEX IF NOT EXISTS accounts_step_up ON accounts(step_up_id, step_up_ts);
CREATE TABLE IF NOT EXISTS commands (command_id TEXT, account TEXT, action TEXT, ts INTEGER,
  expires_at INTEGER, risk REAL, reasons TEXT, message TEXT, methods TEXT, alert_id TEXT, dry_run INTEGER,
  trigger_event_id TEXT, policy_version TEXT, PRIMARY KEY (command_id, dry_run));
CREATE INDEX IF NOT EXISTS commands_account ON commands(account, ts);
CREATE INDEX IF NOT EXISTS commands_trigger ON commands(trigger_event_id, account);
CREATE INDEX IF NOT EXISTS commands_ts ON commands(ts);
CREATE TABLE IF NOT EXISTS alerts (alert_id TEXT PRIMARY KEY, account TEXT, ts INTEGER, title TEXT,
  severity TEXT, severity_id INTEGER, risk_score INTEGER, reasons TEXT, action TEXT);
CREATE INDEX IF NOT EXISTS alerts_account ON alerts(account, ts);
CREATE TABLE IF NOT EXISTS decisions (decision_id TEXT, account TEXT, event_id TEXT, ts INTEGER,
  decision TEXT, command_id TEXT, resolves TEXT, risk REAL, reasons TEXT, message TEXT, dry_run INTEGER,
  policy_version TEXT, PRIMARY KEY (decision_id, dry_run));
CREATE INDEX IF NOT EXISTS decisions_account ON decisions(account, ts);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions(ts);
CREATE INDEX IF NOT EXISTS decisions_event ON decisions(event_id, account);
CREATE TABLE IF NOT EXISTS signals (event_id TEXT PRIMARY KEY, direction TEXT, account TEXT, ts INTEGER,
  kind TEXT, issuer TEXT, partner_role TEXT, reason TEXT, command_id TEXT);
CREATE INDEX IF NOT EXISTS signals_account ON signals(account, ts);
CREATE TABLE IF NOT EXISTS verdicts (verdict_id TEXT PRIMARY KEY, account TEXT, ts INTEGER, label TEXT,
  source TEXT, actor TEXT, note TEXT, alert_id TEXT);
CREATE INDEX IF NOT EXISTS verdicts_account ON verdicts(account, ts);
CREATE TABLE IF NOT EXISTS answers (event_id TEXT PRIMARY KEY, account TEXT, ts INTEGER, kind TEXT,
  method TEXT, reason TEXT, command_id TEXT, device TEXT, ip TEXT);
CREATE INDEX IF NOT EXISTS answers_account ON answers(account, ts);
CREATE TABLE IF NOT EXISTS dead_letters (id TEXT PRIMARY KEY, source_topic TEXT, reason TEXT, seen_at REAL);
CREATE TABLE IF NOT EXISTS shadow_pairs (source TEXT, account TEXT, event TEXT, ts INTEGER, real TEXT, shadow TEXT,
  reasons TEXT, differs INTEGER, PRIMARY KEY (source, account, event));
CREATE INDEX IF NOT EXISTS shadow_pairs_differ ON shadow_pairs(differs, ts);
CREATE TABLE IF NOT EXISTS shadow_hourly (hour INTEGER, source TEXT, real TEXT, shadow TEXT, n INTEGER,
  PRIMARY KEY (hour, source, real, shadow));
CREATE TABLE IF NOT EXISTS offsets (topic TEXT, partition INTEGER, next INTEGER, PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER);
"""


def account_ref(account: str, key: str) -> str:
    """The account's name in URLs and logs: its keyed pseudonym.

    >>> account_ref("a1", "k") == account_ref("a1", "k") != account_ref("a2", "k")
    True
    """
    return pseudonym("account:" + account, key)


def _j(value: Any) -> str:
    return orjson.dumps(value).decode()


class Index:
    """The SQLite index at ``path``; ``key`` pseudonymises devices, addresses and accounts.

    One connection per thread (:meth:`db`); the feeder is the only writer.
    """

    def __init__(self, path: str | Path, key: str) -> None:
        self.path, self.key = str(path), key
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "db", None)
        if conn is None:
            conn = self._local.db = self._connect()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "db", None)
        if conn is not None:
            conn.close()
            self._local.db = None

    # -- writing ---------------------------------------------------------------------------------
    def write(self, records: Iterable[tuple[str, bytes | None, bytes | None, list | None]],
              offsets: dict[tuple[str, int], int] | None = None) -> int:
        """Apply ``(logical topic, key, value, headers)`` records in one transaction, with the
        offsets reached; returns how many were kept."""
        db = self.db()
        kept = 0
        db.execute("BEGIN")
        try:
            for logical, key, value, headers in records:
                kept += self._apply(db, logical, key, value, headers)
            for (topic, partition), nxt in (offsets or {}).items():
                db.execute("INSERT INTO offsets VALUES (?,?,?) ON CONFLICT(topic, partition) "
                           "DO UPDATE SET next=excluded.next", (topic, partition, nxt))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return kept

    def offsets(self) -> dict[tuple[str, int], int]:
        return {(r["topic"], r["partition"]): r["next"] for r in self.db().execute("SELECT * FROM offsets")}

    def _account(self, db: sqlite3.Connection, account: str) -> None:
        db.execute("INSERT OR IGNORE INTO accounts(account, ref) VALUES (?, ?)",
                   (account, account_ref(account, self.key)))

    def _clock(self, db: sqlite3.Connection, ts: Any) -> None:
        if type(ts) is int:
            db.execute("INSERT INTO meta VALUES ('stream_now', ?) ON CONFLICT(name) "
                       "DO UPDATE SET value=max(value, excluded.value)", (ts,))

    def _apply(self, db, logical: str, key: bytes | None, value: bytes | None, headers) -> int:
        if logical == "changelog":
            return self._profile(db, key, value, headers)
        if logical == c.DEAD_LETTER:
            return self._dead_letter(db, value)
        try:
            v = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            return 0
        if type(v) is not dict:
            return 0
        if logical == c.ALERTS:
            account = (v.get("unmapped") or {}).get("account_id") or (key or b"").decode("utf-8", "replace")
        else:
            account = v.get("account_id")
        if type(account) is not str or not account:
            return 0
        handler = {c.COMMANDS: self._command, c.ALERTS: self._alert, c.DECISIONS: self._decision,
                   c.SIGNALS: self._signal_in, c.SIGNALS_OUT: self._signal_out, c.VERDICTS: self._verdict,
                   c.DEVICE: self._answer}[logical]
        return handler(db, account, v)

    def _command(self, db, account: str, v: dict) -> int:
        action, cid, ts = v.get("action"), v.get("command_id"), v.get("issued_at")
        if not cid or action not in c.ACTIONS:
            return 0
        self._account(db, account)
        self._clock(db, ts)
        db.execute("INSERT OR IGNORE INTO commands VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (cid, account, action, ts, v.get("expires_at"), v.get("risk"), _j(v.get("reasons") or []),
                    v.get("message"), _j(v.get("methods")), v.get("alert_id"), int(bool(v.get("dry_run"))),
                    v.get("trigger_event_id"), v.get("policy_version")))
        self._pair(db, "command", account, v.get("trigger_event_id"), ts, action, bool(v.get("dry_run")),
                   v.get("reasons"))
        if v.get("dry_run"):
            return 1  # a shadow's command changes nothing for the queue
        sev = db.execute("SELECT severity, severity_id FROM alerts WHERE alert_id=?", (v.get("alert_id"),)).fetchone()
        sev = (sev["severity"], sev["severity_id"]) if sev else (None, None)
        reasons = _j(v.get("reasons") or [])
        if action in RESTRICTIONS:
            db.execute("UPDATE accounts SET restriction=?, restriction_id=?, restriction_ts=?, restriction_until=?, "
                       "restriction_reasons=?, restriction_risk=?, restriction_alert=?, step_up_id=NULL, "
                       "answered=(SELECT kind FROM answers WHERE command_id=? ORDER BY ts DESC LIMIT 1), "
                       "severity=coalesce(?, severity), severity_id=coalesce(?, severity_id) WHERE account=?",
                       (action, cid, ts, v.get("expires_at"), reasons, v.get("risk"), v.get("alert_id"), cid,
                        *sev, account))
        elif action == c.UNFREEZE:
            db.execute("UPDATE accounts SET restriction=NULL, restriction_id=NULL, step_up_id=NULL, answered=NULL "
                       "WHERE account=?", (account,))
        elif action == c.STEP_UP:
            db.execute("UPDATE accounts SET step_up_id=?, step_up_ts=?, step_up_until=?, step_up_reasons=?, "
                       "step_up_risk=?, step_up_alert=?, "
                       "answered=coalesce((SELECT kind FROM answers WHERE command_id=? ORDER BY ts DESC LIMIT 1), "
                       "CASE WHEN restriction IS NULL THEN NULL ELSE answered END), "
                       "severity=coalesce(?, severity), severity_id=coalesce(?, severity_id) WHERE account=?",
                       (cid, ts, v.get("expires_at"), reasons, v.get("risk"), v.get("alert_id"), cid, *sev, account))
        return 1

    def _alert(self, db, account: str, v: dict) -> int:
        info = v.get("finding_info") or {}
        uid = info.get("uid")
        if not uid:
            return 0
        self._account(db, account)
        self._clock(db, v.get("time"))
        db.execute("INSERT OR IGNORE INTO alerts VALUES (?,?,?,?,?,?,?,?,?)",
                   (uid, account, v.get("time"), info.get("title"), v.get("severity"), v.get("severity_id"),
                    v.get("risk_score"), _j(info.get("types") or []), (v.get("unmapped") or {}).get("action")))
        db.execute("UPDATE accounts SET severity=?, severity_id=? WHERE account=? AND "
                   "(restriction_alert=? OR step_up_alert=?)", (v.get("severity"), v.get("severity_id"), account,
                                                               uid, uid))
        return 1

    def _decision(self, db, account: str, v: dict) -> int:
        if not v.get("decision_id"):
            return 0
        self._account(db, account)
        self._clock(db, v.get("ts"))
        db.execute("INSERT OR IGNORE INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (v["decision_id"], account, v.get("event_id"), v.get("ts"), v.get("decision"), v.get("command_id"),
                    v.get("resolves"), v.get("risk"), _j(v.get("reasons") or []), v.get("message"),
                    int(bool(v.get("dry_run"))), v.get("policy_version")))
        if v.get("resolves") is None:
            self._pair(db, "decision", account, v.get("event_id"), v.get("ts"), v.get("decision"),
                       bool(v.get("dry_run")), v.get("reasons"))
        return 1

    def _pair(self, db, source: str, account: str, event, ts, value, shadow: bool, reasons) -> None:
        """Keep what the real and the shadow worker decided on one event side by side, and the
        hourly counts of each (real, shadow) pair, so the shadow page reads aggregates."""
        if not event or type(ts) is not int:
            return
        old = db.execute("SELECT real, shadow, ts FROM shadow_pairs WHERE source=? AND account=? AND event=?",
                         (source, account, event)).fetchone()
        real_v, shadow_v = (old["real"], old["shadow"]) if old else (None, None)
        if shadow:
            if shadow_v is not None:
                return  # the first of the event's outputs stands for it
            shadow_v = value
        else:
            if real_v is not None:
                return
            real_v = value
        hour = (old["ts"] if old else ts) // 3_600_000
        # '-' for a side that wrote nothing (NULLs never meet in a primary key)
        if old:
            db.execute("UPDATE shadow_hourly SET n=n-1 WHERE hour=? AND source=? AND real=? AND shadow=?",
                       (hour, source, old["real"] or "-", old["shadow"] or "-"))
        db.execute("INSERT INTO shadow_hourly VALUES (?,?,?,?,1) ON CONFLICT(hour, source, real, shadow) "
                   "DO UPDATE SET n=n+1", (hour, source, real_v or "-", shadow_v or "-"))
        db.execute("INSERT INTO shadow_pairs VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(source, account, event) DO UPDATE "
                   "SET real=excluded.real, shadow=excluded.shadow, differs=excluded.differs, "
                   "reasons=coalesce(shadow_pairs.reasons, excluded.reasons)",
                   (source, account, event, ts, real_v, shadow_v, _j(reasons or []), int(real_v != shadow_v)))

    def _signal(self, db, account: str, v: dict, direction: str) -> int:
        if not v.get("event_id"):
            return 0
        self._account(db, account)
        db.execute("INSERT OR IGNORE INTO signals VALUES (?,?,?,?,?,?,?,?,?)",
                   (v["event_id"], direction, account, v.get("ts"), v.get("kind"), v.get("issuer"),
                    v.get("partner_role"), v.get("reason"), v.get("command_id")))
        return 1

    def _signal_in(self, db, account: str, v: dict) -> int:
        return self._signal(db, account, v, "in")

    def _signal_out(self, db, account: str, v: dict) -> int:
        return self._signal(db, account, v, "out")

    def _verdict(self, db, account: str, v: dict) -> int:
        if not v.get("verdict_id"):
            return 0
        self._account(db, account)
        db.execute("INSERT OR IGNORE INTO verdicts VALUES (?,?,?,?,?,?,?,?)",
                   (v["verdict_id"], account, v.get("ts"), v.get("label"), v.get("source"), v.get("actor"),
                    v.get("note"), v.get("alert_id")))
        return 1

    def _answer(self, db, account: str, v: dict) -> int:
        kind = v.get("kind")
        if kind not in c.CHALLENGE_KINDS or not v.get("event_id"):
            return 0
        self._account(db, account)
        cid = v.get("command_id")
        key = self.key
        db.execute("INSERT OR IGNORE INTO answers VALUES (?,?,?,?,?,?,?,?,?)",
                   (v["event_id"], account, v.get("ts"), kind, v.get("method"), v.get("reason"), cid,
                    v.get("device_id") and pseudonym(str(v["device_id"]), key),
                    v.get("ip") and pseudonym(str(v["ip"]), key)))
        # the open step-up or restriction this answers (an answer without command_id: the latest)
        db.execute("UPDATE accounts SET answered=? WHERE account=? AND (? IS NULL OR step_up_id=? OR restriction_id=?)",
                   (kind, account, cid, cid, cid))
        return 1

    def _dead_letter(self, db, value: bytes | None) -> int:
        try:
            v = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return 0
        if type(v) is not dict:
            return 0
        ident = f"{v.get('topic')}/{v.get('partition')}/{v.get('offset')}/{v.get('reason')}"
        db.execute("INSERT OR IGNORE INTO dead_letters VALUES (?,?,?,?)",
                   (ident, v.get("topic"), v.get("reason"), time.time()))
        return 1

    def _profile(self, db, key: bytes | None, value: bytes | None, headers) -> int:
        from detectors.profile import decode as decode_profile
        from streams.cli.account import CF_HEADER, SEPARATOR, PROFILE_KEY, STORE, profile_payload

        if not key or not key.endswith(SEPARATOR + PROFILE_KEY):
            return 0
        hdrs = {k: v for k, v in (headers or [])}
        if hdrs.get(CF_HEADER, STORE.encode()) != STORE.encode():
            return 0
        raw = profile_payload(value, hdrs)
        if raw is None:
            return 0
        account = key[: -len(SEPARATOR + PROFILE_KEY)].decode("utf-8", "replace")
        try:
            p = decode_profile(raw)
        except Exception:  # a profile of another format: shown as unknown, never fatal
            return 0
        self._account(db, account)
        self._clock(db, p.last_ts)
        db.execute("UPDATE accounts SET profile=?, last_ts=?, n_events=? WHERE account=?",
                   (_j(profile_summary(p, self.key)), p.last_ts, p.n_events, account))
        return 1

    # -- reading ---------------------------------------------------------------------------------
    def stream_now(self) -> int | None:
        """The newest event time the index has seen: the stream's "now" (simulated data lives in
        its own time)."""
        row = self.db().execute("SELECT value FROM meta WHERE name='stream_now'").fetchone()
        return row[0] if row else None

    def queue(self, *, reason: str | None = None, severity: str | None = None, max_age_h: float | None = None,
              answered: str | None = None, limit: int = QUEUE_LIMIT) -> list[dict]:
        """Open freezes and closes first (newest first), then step-ups not answered (or answered,
        on request); filtered by a reason code, a severity, an age in hours of stream time, and
        whether the holder answered (``yes`` / ``no``)."""
        now = self.stream_now() or 0
        rows: list[dict] = []
        db = self.db()
        clauses, params = [], []
        if severity:
            clauses.append("severity=?")
            params.append(severity)
        extra = "".join(" AND " + x for x in clauses)
        for kind, sql in (
            ("restriction", "SELECT account, ref, restriction AS action, restriction_id AS command_id, "
                            "restriction_ts AS ts, restriction_until AS until, restriction_reasons AS reasons, "
                            "restriction_risk AS risk, severity, answered FROM accounts WHERE restriction IS NOT NULL"
                            f"{extra} AND (restriction='close' OR restriction_until IS NULL OR restriction_until > ?) "
                            "AND restriction_ts >= ? ORDER BY restriction_ts DESC LIMIT ?"),
            ("step_up", "SELECT account, ref, 'step_up' AS action, step_up_id AS command_id, step_up_ts AS ts, "
                        "step_up_until AS until, step_up_reasons AS reasons, step_up_risk AS risk, severity, answered "
                        f"FROM accounts WHERE step_up_id IS NOT NULL AND restriction IS NULL{extra} "
                        "AND step_up_ts >= ? ORDER BY step_up_ts DESC LIMIT ?"),
        ):
            since = now - int(max_age_h * 3_600_000) if max_age_h is not None else -1
            args = [*params, now, since, limit * 4] if kind == "restriction" else [*params, since, limit * 4]
            for r in db.execute(sql, args):
                d = dict(r)
                d["reasons"] = orjson.loads(d["reasons"] or "[]")
                d["answered"] = d["answered"]
                if reason and reason not in d["reasons"]:
                    continue
                if answered == "yes" and not d["answered"]:
                    continue
                if answered == "no" and d["answered"]:
                    continue
                if kind == "step_up" and answered is None and d["answered"] == c.CHALLENGE_PASSED:
                    continue  # a passed step-up is no longer a case
                d["kind"] = kind
                d["age_h"] = (now - d["ts"]) / 3_600_000 if d["ts"] is not None else None
                rows.append(d)
                if len(rows) >= limit:
                    return rows
        return rows

    def account(self, ref: str) -> dict | None:
        row = self.db().execute("SELECT * FROM accounts WHERE ref=?", (ref,)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["profile"] = orjson.loads(d["profile"]) if d["profile"] else None
        return d

    def timeline(self, account: str) -> list[dict]:
        """Everything the index holds about one account, oldest first: commands, alerts,
        decisions, challenge answers, partners' signals (in and out), verdicts."""
        db = self.db()
        out: list[dict] = []
        for r in db.execute("SELECT * FROM commands WHERE account=?", (account,)):
            d = dict(r)
            d.update(what="command", reasons=orjson.loads(d["reasons"]), methods=orjson.loads(d["methods"]))
            out.append(d)
        for r in db.execute("SELECT * FROM alerts WHERE account=?", (account,)):
            d = dict(r)
            d.update(what="alert", reasons=orjson.loads(d["reasons"]))
            out.append(d)
        for r in db.execute("SELECT * FROM decisions WHERE account=?", (account,)):
            d = dict(r)
            d.update(what="decision", reasons=orjson.loads(d["reasons"]))
            out.append(d)
        for r in db.execute("SELECT * FROM answers WHERE account=?", (account,)):
            out.append(dict(dict(r), what="answer"))
        for r in db.execute("SELECT * FROM signals WHERE account=?", (account,)):
            out.append(dict(dict(r), what="signal"))
        for r in db.execute("SELECT * FROM verdicts WHERE account=?", (account,)):
            out.append(dict(dict(r), what="verdict"))
        order = {"answer": 0, "verdict": 0, "signal": 0, "decision": 1, "alert": 2, "command": 3}
        out.sort(key=lambda d: (d.get("ts") or 0, order[d["what"]]))
        return out

    def shadow_diff(self, hours: float) -> dict:
        """The shadow (``dry_run``) worker's decisions against the real one's over the last
        ``hours`` of stream time, per decided event (``decisions``) and per trigger event
        (``commands``): counts by (real, shadow) pair, the differing rows (200 newest), and
        counts per hour of agreeing and differing ones; read from the aggregates kept at ingest."""
        db = self.db()
        now = self.stream_now() or 0
        since = now - int(hours * 3_600_000)
        pairs: dict[tuple[str, str], int] = {}
        hourly: dict[int, list[int]] = {}
        for hour, source, real, shadow, n in db.execute(
                "SELECT hour, source, real, shadow, n FROM shadow_hourly WHERE hour >= ? AND n > 0",
                (since // 3_600_000,)):
            real, shadow = real or "-", shadow or "-"
            pairs[(f"{source}: {real}", shadow)] = pairs.get((f"{source}: {real}", shadow), 0) + n
            hourly.setdefault(hour, [0, 0])[0 if real == shadow else 1] += n
        rows = [{"source": r["source"], "account": r["account"], "ts": r["ts"], "real": r["real"] or "-",
                 "shadow": r["shadow"] or "-", "ref": account_ref(r["account"], self.key),
                 "reasons": orjson.loads(r["reasons"] or "[]")}
                for r in db.execute("SELECT * FROM shadow_pairs WHERE differs=1 AND ts>=? ORDER BY ts DESC LIMIT 200",
                                    (since,))]
        shadow_seen = db.execute("SELECT coalesce(sum(n), 0) FROM shadow_hourly WHERE shadow != '-'").fetchone()[0]
        return {"since": since, "now": now, "pairs": sorted(pairs.items()), "rows": rows,
                "hourly": sorted(hourly.items()), "shadow_seen": shadow_seen}

    def dead_letters_by_reason(self) -> list[tuple[str, str, int]]:
        return [(r[0], r[1], r[2]) for r in self.db().execute(
            "SELECT source_topic, reason, count(*) FROM dead_letters GROUP BY 1, 2 ORDER BY 3 DESC")]

    def counts(self) -> dict[str, int]:
        db = self.db()
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 (fixed names)
                for t in ("accounts", "commands", "alerts", "decisions", "signals", "verdicts", "answers",
                          "dead_letters")}


def profile_summary(p, key: str) -> dict:
    """What the account page shows of the worker's profile, pseudonymised."""
    r, ch = p.restriction, p.challenge

    def ps(x):
        return x and pseudonym(x, key)
    return {
        "first_ts": p.first_ts, "last_ts": p.last_ts, "n_events": p.n_events,
        "restriction": {"state": r.state, "since": r.since or None, "until": r.until or None},
        "challenge": None if ch is None else {
            "command_id": ch.command_id, "action": ch.action, "issued_at": ch.issued_at,
            "expires_at": ch.expires_at, "methods": list(ch.methods), "device": ps(ch.device), "ip": ps(ch.ip)},
        "failures": [{"ts": f.ts, "method": f.method, "reason": f.reason, "device": ps(f.device), "ip": ps(f.ip)}
                     for f in p.failures],
        "passes": [{"on": name.partition(":")[0], "id": pseudonym(name.partition(":")[2], key), "ts": x.ts,
                    "method": x.method, "strong": x.strong} for name, x in sorted(p.passes.items(),
                                                                                key=lambda kv: kv[1].ts)],
        "devices": [{"id": pseudonym(d, key), "trust": getattr(dev, "trust", 0)} for d, dev in p.devices.items()],
        "ips": len(p.ips), "countries": sorted(p.countries), "payees": len(p.payees),
        "evidence": {fam: {"ts": ev.ts, "score": ev.score, "reasons": list(ev.reasons)}
                     for fam, ev in p.evidence.items()},
    }


# -- the feeder ------------------------------------------------------------------------------------

@dataclass
class FeedStatus:
    topics: tuple[str, ...] = ()
    records: int = 0
    batches: int = 0
    last_error: str | None = None
    caught_up: bool = False


class Feeder:
    """Reads the console's topics into the index from a thread. ``changelog`` is the worker's
    changelog topic (``streams.cli.account.changelog_topic``) or ``None``."""

    def __init__(self, index: Index, bootstrap: str, prefix: str, changelog: str | None,
                 client_options: dict | None = None, rescan_s: float = 5.0) -> None:
        self.index, self.bootstrap, self.prefix, self.changelog = index, bootstrap, prefix, changelog
        self.options = dict(client_options or {})
        self.rescan_s = rescan_s
        self.status = FeedStatus()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-feeder", daemon=True)
        self._logical: dict[str, str] = {f"{prefix}{t}": t for t in FEED_TOPICS}
        if changelog:
            self._logical[changelog] = "changelog"

    def start(self) -> "Feeder":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.prefix}console",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest", **self.options})
        assigned: set[tuple[str, int]] = set()
        last_scan = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() - last_scan >= self.rescan_s:
                    last_scan = time.monotonic()
                    try:
                        meta = consumer.list_topics(timeout=5).topics
                    except Exception as exc:  # the broker is away: try again later
                        self.status.last_error = str(exc)
                        self._stop.wait(1)
                        continue
                    stored = self.index.offsets()
                    new = [(t, p) for t in self._logical if t in meta and not meta[t].error
                           for p in meta[t].partitions if (t, p) not in assigned]
                    if new:
                        assigned.update(new)
                        consumer.assign([TopicPartition(t, p, stored.get((t, p), 0))
                                         for t, p in sorted(assigned)])
                        self.status.topics = tuple(sorted({t for t, _ in assigned}))
                if not assigned:
                    self._stop.wait(0.5)
                    continue
                msgs = consumer.consume(2000, 0.3)
                batch, offsets = [], {}
                for m in msgs:
                    if m.error():
                        continue
                    batch.append((self._logical[m.topic()], m.key(), m.value(), m.headers()))
                    offsets[(m.topic(), m.partition())] = m.offset() + 1
                if batch:
                    self.status.records += self.index.write(batch, offsets)
                    self.status.batches += 1
                self.status.caught_up = not msgs
        except Exception as exc:  # reported on the health page
            self.status.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            consumer.close()
            self.index.close()


def feed_once(index: Index, records: list[tuple[str, dict | bytes]], on: Callable | None = None) -> int:
    """Write contract lines ``(logical topic, value)`` straight to the index (tests, the bench)."""
    batch = []
    for logical, value in records:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        batch.append((logical, None, raw, None))
    return index.write(batch)
