"""``atoguard account ACCOUNT``: where one account stands, and what was decided about it.

Reads the account's profile as the stream worker holds it (the latest value of its state in the
worker's changelog topic) and prints, in plain words: its restriction (state, since, until), the
open challenge and the methods it offers, recent failed challenges, the challenges passed per
device or session, the evidence carried from the last sign-in, and the last actions with their
risk. Then the account's recent commands (action, reasons, the holder's message) and alerts
(alert id, reasons, risk) from <prefix>commands and <prefix>alerts, newest last.

Device ids, session ids and IP addresses are never printed in clear: they appear as keyed hashes
(keys.pseudonym_hmac of --config), the same pseudonyms as in the alerts' evidence. Everything is
read with isolation.level=read_committed, so only what the worker committed is shown.

The state is that of the Quix runtime (``atoguard run``, the default): the changelog topic
``changelog__<app id>--<the input topics, sorted, joined by -->--default``, where the app id is
--app-id (env ATOGUARD_APP_ID, default '<prefix>worker'), as for ``atoguard run``. An account
with neither a profile nor commands nor alerts is an error (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from detectors import contract as c
from detectors.outputs import pseudonym
from detectors.profile import Profile, State, decode as decode_profile
from detectors.reasons import phrase
from streams.cli import CliError, add_config_option, add_kafka_options, kafka_settings, load_policy, \
    quiet_kafka_logs
from streams.settings import Settings
from streams.tail import CONNECT_TIMEOUT_S, Unreachable, utc_text
from streams.topics import topic_name

__all__ = ["AccountView", "changelog_topic", "configure", "describe", "profile_payload", "read_account",
           "run", "state_key", "to_json"]

EPILOG = """\
examples:
  atoguard account a07                        # where a07 stands, its last 10 commands and alerts
  atoguard account a07 --limit 3 --timeout 20
  atoguard account a07 --json | jq .profile.restriction
  atoguard account a07 --app-id ato.worker-blue --topic-prefix ato.   # a worker with its own app id

exit codes: 0 shown, 1 unknown account or Kafka failure, 2 usage or configuration error.
"""

#: Quix's separator between a state key's prefix (the message key) and the key itself
#: (``quixstreams.state.metadata.SEPARATOR``), and the worker's key of the profile
#: (``streams.runtimes.quix.PROFILE_KEY``); the unit tests check both against their sources.
SEPARATOR = b"|"
PROFILE_KEY = b"p"
#: Quix changelog headers: the column family of a record, and whether its value carries an
#: 8-byte expiry stamp before the stored bytes (``quixstreams.state.metadata``)
CF_HEADER = "__column_family__"
STAMPED_HEADER = "__ttl_stamped__"
STAMP_BYTES = 8
#: the store of a stateful ``sdf.update``
STORE = "default"

STATE_WORDS = {
    State.NONE: "not restricted",
    State.STEPPED_UP: "stepped up: the holder is asked to confirm it is them",
    State.FROZEN: "frozen: money cannot leave the account",
    State.CLOSED: "closed",
}


def changelog_topic(app_id: str, prefix: str) -> str:
    """The changelog topic of the Quix worker's account state, named as Quix names it: the
    consumer group, the stream id of the merged input topics (their names sorted, joined by
    ``--``) and the store name.

    >>> changelog_topic("ato.worker", "ato.")
    'changelog__ato.worker--ato.device--ato.location--ato.transaction--ato.verdicts--default'
    """
    stream_id = "--".join(sorted({topic_name(t, prefix) for t in c.INPUT_TOPICS}))
    return f"changelog__{app_id}--{stream_id}--{STORE}"


def state_key(account: str) -> bytes:
    """The changelog key of the account's profile: the message key, the separator, the key.

    >>> state_key("a1")
    b'a1|p'
    """
    return account.encode("utf-8") + SEPARATOR + PROFILE_KEY


def profile_payload(value: bytes | None, headers: dict[str, bytes]) -> bytes | None:
    """The stored profile bytes of one changelog record of the default store: ``None`` for a
    deletion, the value without its expiry stamp when the record says it is stamped."""
    if value is None:
        return None
    if headers.get(STAMPED_HEADER) == b"\x01":
        return value[STAMP_BYTES:]
    return value


@dataclass
class AccountView:
    """What the worker's state and the output topics say about one account."""

    account: str
    profile: Profile | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)  # newest last
    alerts: list[dict[str, Any]] = field(default_factory=list)  # newest last
    changelog: str = ""
    complete: bool = True  # False when --timeout cut the reading short

    @property
    def known(self) -> bool:
        return self.profile is not None or bool(self.commands) or bool(self.alerts)


# -- reading ---------------------------------------------------------------------------------------

def _consumer(settings: Settings, timeout_s: float):
    """A group-less, read_committed kafka-python consumer; :class:`Unreachable` without a broker."""
    from kafka import KafkaConsumer
    from kafka import errors

    unreachable = tuple(getattr(errors, name) for name in ("KafkaTimeoutError", "NoBrokersAvailable")
                        if hasattr(errors, name))
    try:
        return KafkaConsumer(group_id=None, enable_auto_commit=False, isolation_level="read_committed",
                             **settings.client_options(timeout_s))
    except unreachable:
        raise Unreachable(f"no Kafka answers at {settings.bootstrap_servers} within {timeout_s:g} s; "
                          "is the broker up? (atoguard broker status)") from None


def _read_to_end(consumer, tps: list, deadline: float, on_record: Callable[[Any], None]) -> bool:
    """Read ``tps`` from their beginning up to their (committed) end as it was when reading began,
    passing every record to ``on_record``; ``False`` if the deadline came first."""
    if not tps:
        return True
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        if time.monotonic() > deadline:
            return False
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                on_record(record)
    return True


def _partitions(consumer, topic: str) -> list:
    from kafka import TopicPartition

    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def _read_profile(consumer, topic: str, account: str, deadline: float) -> tuple[Profile | None, bool]:
    """The account's latest profile in the changelog (every partition: the one holding the key
    depends on how the input was partitioned), and whether the reading completed."""
    wanted = state_key(account)
    latest: dict[int, bytes | None] = {}

    def note(record) -> None:
        if record.key != wanted:
            return
        headers = dict(record.headers or [])
        if headers.get(CF_HEADER, STORE.encode()) != STORE.encode():
            return
        latest[record.partition] = profile_payload(record.value, headers)

    complete = _read_to_end(consumer, _partitions(consumer, topic), deadline, note)
    profiles = [decode_profile(raw) for raw in latest.values() if raw is not None]
    # one partition holds the key unless partitions were added; then the newest profile wins
    return max(profiles, key=lambda p: p.last_ts, default=None), complete


def _read_outputs(consumer, settings: Settings, account: str, limit: int, deadline: float,
                  view: AccountView) -> None:
    """The account's last ``limit`` commands and alerts, from its partition of each topic (the
    worker's producer partitions by the account key with murmur2)."""
    from streams.cli.verdict import partition_of
    from kafka import TopicPartition

    key = account.encode("utf-8")
    for logical, ts_field, into in ((c.COMMANDS, "issued_at", view.commands), (c.ALERTS, "time", view.alerts)):
        topic = topic_name(logical, settings.topic_prefix)
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            continue
        last: deque = deque(maxlen=limit)

        def note(record, last=last) -> None:
            if record.key == key:
                try:
                    value = orjson.loads(record.value)
                except (orjson.JSONDecodeError, TypeError):
                    return
                if type(value) is dict:
                    last.append(value)

        tp = TopicPartition(topic, partition_of(account, len(partitions)))
        view.complete &= _read_to_end(consumer, [tp], deadline, note)
        into.extend(sorted(last, key=lambda v: v.get(ts_field) if type(v.get(ts_field)) is int else 0))


def read_account(settings: Settings, account: str, *, app_id: str | None = None, limit: int = 10,
                 timeout_s: float = CONNECT_TIMEOUT_S) -> AccountView:
    """Read what the worker's state and the output topics hold about ``account``, within
    ``timeout_s`` in all (connecting included)."""
    deadline = time.monotonic() + timeout_s
    view = AccountView(account, changelog=changelog_topic(app_id or f"{settings.topic_prefix}worker",
                                                         settings.topic_prefix))
    consumer = _consumer(settings, timeout_s)
    try:
        if not consumer.partitions_for_topic(view.changelog):
            raise CliError(f"no worker state on the cluster: topic {view.changelog} does not exist; "
                           "has atoguard run (the quix runtime) run with this --topic-prefix and --app-id?")
        view.profile, view.complete = _read_profile(consumer, view.changelog, account, deadline)
        _read_outputs(consumer, settings, account, limit, deadline, view)
    finally:
        consumer.close()
    return view


# -- describing ------------------------------------------------------------------------------------

def _when(ms: int | None) -> str:
    return f"{utc_text(ms)} UTC" if ms else "-"


def _pseudo(kind: str, value: str | None, key: str) -> str | None:
    return f"{kind} {pseudonym(value, key)}" if value else None


def _where(device: str | None, session: str | None, ip: str | None, key: str) -> str:
    """Where a challenge was put or answered, pseudonymised."""
    parts = [p for p in (_pseudo("device", device, key), _pseudo("session", session, key),
                         _pseudo("ip", ip, key)) if p]
    return ", ".join(parts) if parts else "unknown device"


def _pass_holder(name: str, key: str) -> str:
    """``device:x`` / ``session:x`` of the passes table, pseudonymised."""
    kind, _, value = name.partition(":")
    return f"{kind} {pseudonym(value, key)}"


def _profile_lines(p: Profile, key: str, now_ms: int) -> list[str]:
    r = p.restriction
    lines = [f"  restriction      {r.state}: {STATE_WORDS.get(r.state, r.state)}"]
    if r.state != State.NONE or r.since:
        span = f"since {_when(r.since)}" + (f", until {_when(r.until)}" if r.until else "")
        if r.until and r.until <= now_ms:
            span += " (over by now; the worker updates it at the account's next event)"
        lines.append(f"                   {span}" + (f"; alert {r.alert_id}" if r.alert_id else ""))
    ch = p.challenge
    if ch is None:
        lines.append("  open challenge   none")
    else:
        expiry = _when(ch.expires_at) + (" (over by now: unanswered, it counts as failed at the "
                                         "account's next event)"
                                         if ch.expires_at <= now_ms and ch.action == c.STEP_UP else "")
        lines += [f"  open challenge   {ch.action} {ch.command_id}, risk {ch.risk:.2f}, issued {_when(ch.issued_at)}",
                  f"                   methods, strongest first: {', '.join(ch.methods) or 'none (no way back)'}",
                  f"                   answer by {expiry}, put to {_where(ch.device, ch.session, ch.ip, key)}"]
    lines.append(f"  failed challenges {len(p.failures) or 'none'}" + (" (newest last)" if p.failures else ""))
    for f in p.failures:
        lines.append(f"    {_when(f.ts)}  {f.method or '-'}: {f.reason}, from {_where(f.device, f.session, f.ip, key)}")
    lines.append(f"  passed challenges {len(p.passes) or 'none'}" + (", by device or session" if p.passes else ""))
    for name, ps in sorted(p.passes.items(), key=lambda kv: kv[1].ts):
        lines.append(f"    {_pass_holder(name, key)}: {ps.method}, {'strong' if ps.strong else 'weak'}, {_when(ps.ts)}")
    lines.append("  evidence carried from the last sign-in" + ("" if p.evidence else ": none"))
    for family, ev in sorted(p.evidence.items(), key=lambda kv: kv[1].ts):
        lines.append(f"    {family}: score {ev.score:.2f} at {_when(ev.ts)}: {', '.join(ev.reasons)}")
    lines.append("  last actions" + ("" if p.actions else ": none"))
    for action, mark in sorted(p.actions.items(), key=lambda kv: kv[1].ts):
        lines.append(f"    {action:<9} {_when(mark.ts)}, risk {mark.risk:.2f}")
    trusted = sum(1 for d in p.devices.values() if d.trust > 0)
    suspect = sum(1 for d in p.devices.values() if d.trust < 0)
    lines.append(f"  seen             {len(p.devices)} device(s) ({trusted} trusted, {suspect} suspect), "
                 f"{len(p.ips)} IP address(es), {len(p.countries)} country(ies), {len(p.payees)} payee(s), "
                 f"{len(p.fails)} recent failed sign-in(s)")
    return lines


def _command_lines(cmd: dict[str, Any]) -> list[str]:
    action = str(cmd.get("action", "?")) + (" (dry run: recorded, not acted on)" if cmd.get("dry_run") else "")
    until = ""
    if cmd.get("expires_at"):
        until = (", answer by " if cmd.get("action") == c.STEP_UP else ", until ") + _when(cmd["expires_at"])
    lines = [f"  {_when(cmd.get('issued_at'))}  {action}, risk {cmd.get('risk', 0):.2f}{until}",
             f"    command {cmd.get('command_id', '?')}" + (f", alert {cmd['alert_id']}" if cmd.get("alert_id") else ""),
             f"    reasons: {_reasons(cmd.get('reasons', []))}"]
    if cmd.get("methods") is not None:
        lines.append(f"    methods: {', '.join(cmd['methods']) or 'none'}")
    lines.append(f"    message: {cmd.get('message', '')}")
    return lines


def _alert_lines(alert: dict[str, Any]) -> list[str]:
    info = alert.get("finding_info", {})
    action = (alert.get("unmapped") or {}).get("action") or "no action"
    return [f"  {_when(alert.get('time'))}  alert {info.get('uid', '?')}, risk {alert.get('risk_score', 0)}/100 "
            f"({alert.get('severity', '?')}), {action}",
            f"    reasons: {_reasons(info.get('types', []))}"]


def _reasons(codes: list[str]) -> str:
    return "; ".join(f"{code} ({phrase(code)})" for code in codes) or "none"


def describe(view: AccountView, key: str, now_ms: int | None = None, limit: int = 10) -> str:
    """The account in plain words; ids of devices, sessions and addresses pseudonymised with
    ``key``. ``now_ms`` (default: now) says whether a restriction or challenge has run out."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    p = view.profile
    if p is None:
        lines = [f"account {view.account}: no profile in the worker's state ({view.changelog})"]
    else:
        lines = [f"account {view.account}: {p.n_events} event(s) from {_when(p.first_ts)} to {_when(p.last_ts)}"]
        lines += _profile_lines(p, key, now_ms)
    lines.append("")
    lines.append(f"commands (the last {limit}, newest last): {len(view.commands) or 'none'}")
    for cmd in view.commands:
        lines += _command_lines(cmd)
    lines.append(f"alerts (the last {limit}, newest last): {len(view.alerts) or 'none'}")
    for alert in view.alerts:
        lines += _alert_lines(alert)
    if not view.complete:
        lines.append("(reading was cut short by --timeout: the newest may be missing)")
    return "\n".join(lines)


def _profile_json(p: Profile, key: str) -> dict[str, Any]:
    r, ch = p.restriction, p.challenge
    return {
        "first_ts": p.first_ts, "last_ts": p.last_ts, "n_events": p.n_events,
        "restriction": {"state": r.state, "since": r.since or None, "until": r.until or None,
                        "alert_id": r.alert_id},
        "challenge": None if ch is None else {
            "command_id": ch.command_id, "action": ch.action, "issued_at": ch.issued_at,
            "expires_at": ch.expires_at, "methods": list(ch.methods), "risk": ch.risk,
            "device": ch.device and pseudonym(ch.device, key), "session": ch.session and pseudonym(ch.session, key),
            "ip": ch.ip and pseudonym(ch.ip, key)},
        "failures": [{"ts": f.ts, "method": f.method, "reason": f.reason,
                      "device": f.device and pseudonym(f.device, key),
                      "session": f.session and pseudonym(f.session, key), "ip": f.ip and pseudonym(f.ip, key)}
                     for f in p.failures],
        "passes": [{"on": name.partition(":")[0], "id": pseudonym(name.partition(":")[2], key), "ts": ps.ts,
                    "method": ps.method, "strong": ps.strong}
                   for name, ps in sorted(p.passes.items(), key=lambda kv: kv[1].ts)],
        "evidence": {family: {"ts": ev.ts, "score": ev.score, "reasons": list(ev.reasons)}
                     for family, ev in p.evidence.items()},
        "actions": {action: {"ts": m.ts, "risk": m.risk} for action, m in p.actions.items()},
        "seen": {"devices": len(p.devices), "trusted_devices": sum(1 for d in p.devices.values() if d.trust > 0),
                 "ips": len(p.ips), "countries": len(p.countries), "payees": len(p.payees),
                 "failed_logins": len(p.fails)},
    }


COMMAND_FIELDS = ("command_id", "action", "reasons", "message", "risk", "issued_at", "expires_at", "methods",
                  "alert_id", "dry_run", "policy_version")


def to_json(view: AccountView, key: str) -> dict[str, Any]:
    """The ``--json`` object: the profile (pseudonymised) and the commands and alerts."""
    return {
        "account_id": view.account,
        "changelog": view.changelog,
        "complete": view.complete,
        "profile": None if view.profile is None else _profile_json(view.profile, key),
        "commands": [{k: cmd.get(k) for k in COMMAND_FIELDS if k in cmd} for cmd in view.commands],
        "alerts": [{"alert_id": a.get("finding_info", {}).get("uid"), "time": a.get("time"),
                    "reasons": a.get("finding_info", {}).get("types", []), "risk_score": a.get("risk_score"),
                    "severity": a.get("severity"), "action": (a.get("unmapped") or {}).get("action")}
                   for a in view.alerts],
    }


# -- the command -----------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("account", metavar="ACCOUNT", help="the account id (the message key)")
    parser.add_argument("--limit", type=int, default=10, metavar="N",
                        help="how many of the newest commands and alerts to show (default 10)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up connecting and reading after this long (default {CONNECT_TIMEOUT_S:g})")
    parser.add_argument("--app-id", default=os.environ.get("ATOGUARD_APP_ID") or None,
                        help="the worker's app id, as for atoguard run (env ATOGUARD_APP_ID, "
                             "default '<prefix>worker')")
    add_kafka_options(parser)
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1", 2)
    if args.timeout <= 0:
        raise CliError("--timeout must be more than 0 seconds", 2)
    settings = kafka_settings(args)
    cfg = load_policy(args)
    quiet_kafka_logs()
    try:
        view = read_account(settings, args.account, app_id=args.app_id, limit=args.limit, timeout_s=args.timeout)
    except Unreachable as exc:
        raise CliError(str(exc)) from None
    if not view.known:
        more = "" if view.complete else " (reading was cut short by --timeout; try a longer one)"
        raise CliError(f"account {args.account!r} not found: no profile in the worker's state "
                       f"({view.changelog}) and no commands or alerts{more}")
    key = cfg.keys.pseudonym_hmac
    if args.json:
        sys.stdout.write(orjson.dumps(to_json(view, key)).decode() + "\n")
    else:
        print(describe(view, key, limit=args.limit))
    return 0
