"""The driver's rules (streams/driver.py), as tables of messages in and what came out.

Each row feeds messages to one partition's :class:`streams.driver.Task` and states, for each,
what the driver did with it: ``"applied"`` (through the engine), ``"duplicate"`` (dropped, no
output) or ``"dead:REASON"`` (one dead letter). Then the cross-account facts as of
``ts - facts_delay_ms``, :func:`streams.driver.order_key`, replay of a generated file, and the
facts table's order-freedom.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from detectors import contract as c
from detectors.config import Config, Stream
from detectors.events import DeviceEvent
from detectors.facts import NO_FACTS, FactsSettings, FactsTable, SourceUpdate
from detectors.profile import encode
from detectors.sharding import shard_of
from streams.driver import NO_ORDER, Driver, order_key, updates_of
from streams.replay import DEFAULT_PARTITIONS, replay_file

REPO = Path(__file__).resolve().parents[1]
CFG = Config(stream=Stream(max_lateness_ms=30_000))  # the tables below are written for 30 s
MINUTE, HOUR = 60_000, 3_600_000
T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z, a whole minute
LATE = CFG.stream.max_lateness_ms


def login(eid: str, account: str, ts: int, kind: str = "login_success", ip: str = "198.51.100.7") -> bytes:
    return orjson.dumps({"event_id": eid, "account_id": account, "ts": ts, "kind": kind,
                         "device_id": f"dev-{account}", "ip": ip})


def fate(driver: Driver, partition: int, value: bytes, key: bytes | None, topic: str = c.DEVICE,
         offset: int = 0) -> str:
    """What the driver did with one message: applied, duplicate or dead:REASON."""
    counts = driver.counts
    before = (counts.events, counts.verdicts, counts.duplicates)
    outputs = driver.task(partition).process(topic, value, key, offset, f"ato.{topic}")
    letters = [o for o in outputs if o.topic == c.DEAD_LETTER]
    if letters:
        assert len(outputs) == 1
        letter = letters[0].value
        assert (letter["topic"], letter["partition"], letter["offset"]) == (f"ato.{topic}", partition, offset)
        return f"dead:{letter['reason']}"
    after = (counts.events, counts.verdicts, counts.duplicates)
    if after[2] == before[2] + 1:
        assert outputs == () and after[:2] == before[:2]
        return "duplicate"
    assert after[0] + after[1] == before[0] + before[1] + 1
    return "applied"


def state_of(driver: Driver, partition: int) -> dict:
    task = driver.task(partition)
    return {a: (encode(p), list(seen)) for a, (p, seen) in task.accounts.items()}, task.stream_time


# -- key, partition ------------------------------------------------------------------------------

A1 = "acct-1"
P3 = shard_of(A1, 3)
OTHER = (P3 + 1) % 3

KEY_ROWS = [
    # (partitions, partition, key, expected)
    (1, 0, A1.encode(), "applied"),
    (1, 0, None, f"dead:{c.MISSING_KEY}"),
    (1, 0, b"acct-2", f"dead:{c.KEY_MISMATCH}"),
    (1, 0, b"", f"dead:{c.KEY_MISMATCH}"),
    (3, P3, A1.encode(), "applied"),
    (3, OTHER, A1.encode(), f"dead:{c.WRONG_PARTITION}"),
]


@pytest.mark.parametrize("partitions, partition, key, expected", KEY_ROWS)
def test_key_and_partition(partitions, partition, key, expected):
    driver = Driver(CFG, partitions)
    before = state_of(driver, partition)
    assert fate(driver, partition, login("e1", A1, T0), key, offset=17) == expected
    if expected != "applied":
        assert state_of(driver, partition) == before  # a dead letter changes nothing
        assert driver.counts.dead_letters == {expected[5:]: 1}


# -- lateness and duplicates ---------------------------------------------------------------------

LATE_ROWS = {
    "in order": ([("e1", T0), ("e2", T0 + 1)], ["applied", "applied"]),
    "back by the lateness exactly: accepted": ([("e1", T0), ("e2", T0 - LATE)], ["applied", "applied"]),
    "back by more: late": ([("e1", T0), ("e2", T0 - LATE - 1)], ["applied", f"dead:{c.LATE}"]),
    "stream time is the highest ts, not the last": (
        [("e1", T0), ("e2", T0 - LATE), ("e3", T0 - LATE - 1)], ["applied", "applied", f"dead:{c.LATE}"]),
    "same id again: duplicate": ([("e1", T0), ("e1", T0)], ["applied", "duplicate"]),
    "same id again, out of order within lateness: duplicate": (
        [("e1", T0), ("e2", T0 + 1_000), ("e1", T0)], ["applied", "applied", "duplicate"]),
    "another id at the same ts: applied": ([("e1", T0), ("e1b", T0)], ["applied", "applied"]),
    "same id again, older than the lateness: late, not a silent drop": (
        [("e1", T0), ("e2", T0 + LATE + 1), ("e1", T0)], ["applied", "applied", f"dead:{c.LATE}"]),
}


@pytest.mark.parametrize("name", sorted(LATE_ROWS))
def test_lateness_and_duplicates(name):
    messages, expected = LATE_ROWS[name]
    driver = Driver(CFG, 1)
    got = []
    for i, (eid, ts) in enumerate(messages):
        before = state_of(driver, 0)
        got.append(fate(driver, 0, login(eid, A1, ts), A1.encode(), offset=i))
        if got[-1] != "applied":
            assert state_of(driver, 0) == before, f"{eid} changed the partition"
    assert got == expected
    assert driver.counts.late == expected.count(f"dead:{c.LATE}")
    assert driver.counts.duplicates == expected.count("duplicate")


def test_a_duplicate_older_than_dedup_hours_takes_the_late_path():
    """dedup_hours must cover max_lateness_ms, so an id forgotten by the duplicate store is
    always late: with both at one hour, a re-sent event is a duplicate while within the hour and
    late after it, never applied twice."""
    cfg = Config(stream=Stream(max_lateness_ms=HOUR, dedup_hours=1.0))
    rows = [
        ([("e1", T0), ("e2", T0 + HOUR), ("e1", T0)], ["applied", "applied", "duplicate"]),
        ([("e1", T0), ("e2", T0 + HOUR + 1), ("e1", T0)], ["applied", "applied", f"dead:{c.LATE}"]),
        # e3 two hours on prunes e1 from the seen ids; e1 again is late (never applied twice)
        ([("e1", T0), ("e3", T0 + 2 * HOUR), ("e1", T0)], ["applied", "applied", f"dead:{c.LATE}"]),
    ]
    for messages, expected in rows:
        driver = Driver(cfg, 1)
        got = [fate(driver, 0, login(eid, A1, ts), A1.encode()) for eid, ts in messages]
        assert got == expected, messages
    seen = [eid for eid, _ in driver.task(0).accounts[A1][1]]
    assert seen == ["e3"]  # e1 left the duplicate store after dedup_hours of event time
    with pytest.raises(Exception, match="dedup_hours must cover"):
        Config(stream=Stream(max_lateness_ms=HOUR + 1, dedup_hours=1.0))


# -- facts as of ts - facts_delay_ms ---------------------------------------------------------------

def facts_seen_by_engine(driver: Driver) -> list:
    """Wrap the driver's engine to record the facts it is given (the engine still runs)."""
    seen: list = []
    process = driver.engine.process

    def recording(record, state, facts):
        seen.append(facts)
        return process(record, state, facts)

    driver.engine.process = recording
    return seen


VICTIM_TS = T0 + 10 * MINUTE + 30_000  # bound: records below T0 + 9 min count
FACTS_ROWS = [
    # (the burst's first ts, accounts the victim's sign-in sees on the burst's IP)
    (T0 + 7 * MINUTE, 8),
    (T0 + 8 * MINUTE + 50_000, 8),           # the burst's last at T0 + 8:57: before the bound
    (T0 + 9 * MINUTE, 0),                    # the bound's bucket: not yet
    (T0 + 9 * MINUTE + 20_000, 0),           # before ts - facts_delay_ms, but rounded down away
    (T0 + 10 * MINUTE, 0),                   # after the bound
    (T0 + 7 * MINUTE - 90 * MINUTE, 0),      # older than facts_window buckets
]


@pytest.mark.parametrize("burst_ts, accounts", FACTS_ROWS)
def test_facts_as_of_ts_minus_facts_delay(burst_ts, accounts):
    ip = "203.0.113.50"
    driver = Driver(CFG, 1)
    facts_stage = Driver(CFG, 1, engine=False)  # replay's facts stage: the same admit path
    facts_stage.facts = driver.facts
    stage = facts_stage.task(0)
    for k in range(8):
        value = login(f"b{k}", f"other-{k}", burst_ts + k * 1_000, "login_failure", ip=ip)
        for u in updates_of(stage.admit(c.DEVICE, value, f"other-{k}".encode(), k)):
            driver.facts.add(u)
    seen = facts_seen_by_engine(driver)
    assert fate(driver, 0, login("v1", "victim", VICTIM_TS, ip=ip), b"victim") == "applied"
    [facts] = seen
    assert facts.ip.accounts == accounts and facts.ip.failures == accounts


def test_a_verdict_is_applied_without_facts():
    driver = Driver(CFG, 1)
    seen = facts_seen_by_engine(driver)
    verdict = orjson.dumps({"verdict_id": "v1", "account_id": A1, "ts": T0, "label": "legit", "source": "analyst"})
    assert fate(driver, 0, verdict, A1.encode(), topic=c.VERDICTS) == "applied"
    assert fate(driver, 0, verdict, A1.encode(), topic=c.VERDICTS) == "duplicate"  # by verdict_id
    assert len(seen) == 1 and seen[0] == NO_FACTS


def test_a_partners_signal_is_applied():
    """A partner's signal (contract v3, topic ``signals``) carries no IP, device or payee: the
    engine takes it without cross-account facts."""
    driver = Driver(CFG, 1)
    signal = orjson.dumps({"event_id": "sig-1", "account_id": A1, "ts": T0 + 1, "event_ts": T0, "kind":
                           "credential_compromise", "issuer": "https://mail.example", "partner_role": "email_provider",
                           "subject_format": "email"})
    assert fate(driver, 0, signal, A1.encode(), topic=c.SIGNALS) == "applied"


# -- order ---------------------------------------------------------------------------------------

ORDER_ROWS = [
    # values, in the order order_key must put them
    [b'{"ts": 5, "event_id": "b"}', b'{"ts": 5, "event_id": "c"}', b'{"ts": 6, "event_id": "a"}'],
    [b'{"ts": 5, "event_id": "B"}', b'{"ts": 5, "event_id": "a"}'],                 # bytes: upper case first
    [b'{"ts": 5, "event_id": "e1"}', b'{"ts": 5, "event_id": "e10"}', b'{"ts": 5, "event_id": "e2"}'],
    [b'{"ts": 5, "event_id": "z"}', '{"ts": 5, "event_id": "\u00e9"}'.encode()],   # é is 0xc3 0xa9
    [b'{"ts": 7, "verdict_id": "v1"}', b'{"ts": 7, "verdict_id": "v2"}', b'{"ts": 7, "event_id": "w"}'],
    [b"not json", b'{"ts": -5, "event_id": "a"}'],                                  # bad input first
    [b'{"ts": "5", "event_id": "a"}', b'{"ts": 1, "event_id": "a"}'],               # a string ts is bad
]


@pytest.mark.parametrize("values", ORDER_ROWS)
def test_order_key(values):
    shuffled = list(reversed(values))
    assert sorted(shuffled, key=order_key) == values
    assert order_key(b"") == order_key(None) == order_key(b"[1]") == NO_ORDER
    assert order_key(b'{"ts": 5, "event_id": "\xc3\xa9"}') == (5, "\u00e9".encode())


def test_order_key_of_a_verdict_is_its_verdict_id():
    """Contract v3, "Order": ``id`` is the ``verdict_id`` for verdicts; an extra ``event_id`` field
    on a verdict (unknown extra fields are ignored) must not change where it sorts."""
    assert order_key(b'{"ts": 7, "verdict_id": "v2", "event_id": "e0"}', verdict=True) == (7, b"v2")
    assert order_key(b'{"ts": 7, "verdict_id": "v2", "event_id": "e0"}') == (7, b"e0")


# -- replay --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "events.jsonl"
    subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--accounts", "30", "--days", "3",
                    "--seed", "5", "--rate-credential-stuffing", "0.2", "--out", str(out),
                    "--labels", str(out.with_suffix(".labels")), "--quiet"],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    return out


def lines_of(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def commands_of(path: Path) -> list[bytes]:
    return sorted(line for line in lines_of(path) if orjson.loads(line)["topic"] == c.COMMANDS)


def test_replay_of_an_unsorted_copy_within_lateness_gives_the_same_commands(simulated, tmp_path):
    lines = lines_of(simulated)
    rng = random.Random(1)
    # every line moved later by less than the lateness: none is late, some arrive out of order
    jitter = [orjson.loads(line)["value"]["ts"] + rng.randrange(LATE - 1_000) for line in lines]
    shuffled = [line for _, line in sorted(zip(jitter, lines), key=lambda p: p[0])]
    highest: dict = {}
    inversions = 0
    for line in shuffled:  # lines below an earlier line of their topic and partition
        r = orjson.loads(line)
        where, ts = (r["topic"], shard_of(r["value"]["account_id"], DEFAULT_PARTITIONS)), r["value"]["ts"]
        inversions += ts < highest.get(where, ts)
        highest[where] = max(ts, highest.get(where, ts))
    assert inversions >= 5
    unsorted = tmp_path / "unsorted.jsonl"
    unsorted.write_bytes(b"\n".join(shuffled) + b"\n")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    sa = replay_file(simulated, a, CFG)
    sb = replay_file(unsorted, b, CFG)
    assert sa.late == sb.late == 0
    assert (sa.events, sa.verdicts, sa.duplicates) == (sb.events, sb.verdicts, sb.duplicates)
    assert commands_of(a) and commands_of(a) == commands_of(b)


def test_replay_with_one_and_three_partitions_and_twice_byte_identical(simulated, tmp_path):
    summaries = {}
    for n in (1, 3):
        outs = [tmp_path / f"p{n}-{k}.jsonl" for k in (1, 2)]
        summaries[n] = [replay_file(simulated, out, CFG, partitions=n) for out in outs]
        assert outs[0].read_bytes() == outs[1].read_bytes() and outs[0].stat().st_size > 0
    one, three = summaries[1][0], summaries[3][0]
    assert (one.partitions, three.partitions) == (1, 3)
    assert (one.lines, one.events, one.verdicts, one.late) == (three.lines, three.events, three.verdicts, three.late)
    assert one.accounts == three.accounts > 0


# -- the facts table is a set union ------------------------------------------------------------------

SOURCES = ["ip:10.0.0.1", "ip:10.0.0.2", "dev:d1", "pay:m1"]
BUCKET = 1_000


@st.composite
def updates(draw) -> list[SourceUpdate]:
    n = draw(st.integers(min_value=0, max_value=40))
    out = []
    for i in range(n):
        source = draw(st.sampled_from(SOURCES))
        ts = draw(st.integers(min_value=0, max_value=20 * BUCKET))
        account = draw(st.sampled_from(["a1", "a2", "a3", "a4"]))
        if source.startswith("ip:") and draw(st.booleans()):
            out.append(SourceUpdate(source, "geo", account, f"g{i}", ts, False,
                                    draw(st.sampled_from([None, "hosting", "mobile"])),
                                    draw(st.sampled_from([None, 64500, 3320]))))
        else:
            kind = "pay" if source.startswith("pay:") else "login"
            out.append(SourceUpdate(source, kind, account, f"e{i}", ts, kind == "login" and draw(st.booleans())))
    return out


def answers(table: FactsTable) -> list:
    return [(table.source(s, b), table.geo(s[3:], b) if s.startswith("ip:") else None)
            for s in SOURCES for b in range(0, 24)]


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(updates(), st.randoms(use_true_random=False), st.lists(st.integers(min_value=0, max_value=39), max_size=15))
def test_facts_table_answers_the_same_in_any_order_and_with_repeats(ups, rng, repeats):
    s = FactsSettings(delay_ms=0, bucket_ms=BUCKET, window=5)
    plain = FactsTable(s)
    for u in ups:
        plain.add(u)
    again = [*ups, *(ups[i] for i in repeats if i < len(ups))]
    rng.shuffle(again)
    mixed = FactsTable(s)
    for k, u in enumerate(again):
        mixed.add(u)
        if k % 3 == 0:
            answers(mixed)  # answers cached along the way must not stick
    assert answers(mixed) == answers(plain)
