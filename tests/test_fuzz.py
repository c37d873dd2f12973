"""Bad input, generated: the decoders and the engine take anything without an exception.

Inputs are real simulated events mutated by hypothesis (a field dropped, retyped, set to an
extreme, an unknown field or kind, the key of another account, the bytes truncated or replaced),
plus arbitrary bytes. Engine inputs go the way every runtime takes them, through
:class:`streams.driver.Task` (decode, key, partition, late, duplicate, facts, engine). For every
input: no exception escapes; a rejected input gives exactly one
dead letter with a known reason, its original bytes, topic, partition and offset; the state of
the other accounts is untouched. 100,000 decoder inputs and 3,000 engine inputs by default,
partners' signals (topic ``signals``) among them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from detectors import contract as c
from detectors.config import Config
from detectors.config import Stream
from detectors.events import DeadLetter, decode_or_dead_letter
from detectors.profile import encode
from streams.driver import Driver, order_key

REPO = Path(__file__).resolve().parents[1]


def _samples() -> list[dict]:
    """A few hundred simulated input lines of every topic and kind (with attacks)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "events.jsonl"
        subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--accounts", "40", "--days", "3",
                        "--seed", "3", "--rate-credential-stuffing", "0.1", "--rate-sim-swap-payout", "0.1",
                        "--out", str(out), "--labels", str(out.with_suffix(".labels")), "--quiet"],
                       cwd=REPO, check=True, capture_output=True, timeout=120)
        lines = [r for r in map(orjson.loads, out.read_bytes().splitlines()) if r.get("topic") in c.INPUT_TOPICS]
    by_kind: dict[tuple, list[dict]] = {}
    for r in lines:
        by_kind.setdefault((r["topic"], r["value"].get("kind") or r["value"].get("label")), []).append(r)
    return [r for group in by_kind.values() for r in group[:20]]


#: partners' signals (contract v3): a few of each role, as the SSF receiver writes them
SIGNAL_SAMPLES = [
    {"topic": c.SIGNALS, "value": {"event_id": f"sig-{i}", "account_id": "acct-000001", "ts": 1767571512792 + i,
                                   "event_ts": 1767571500000, "kind": kind, "issuer": issuer, "partner_role": role,
                                   "subject_format": fmt, **extra}}
    for i, (kind, issuer, role, fmt, extra) in enumerate([
        ("credential_compromise", "https://mail.example", "email_provider", "email", {}),
        ("sessions_revoked", "https://mail.example", "email_provider", "email", {"initiating_entity": "user"}),
        ("identifier_changed", "https://carrier.example", "carrier", "phone_number", {}),
        ("account_disabled", "https://lender.example", "lender", "opaque", {"reason": "hijacking"}),
        ("credential_change", "https://idp.example", "identity_provider", "iss_sub",
         {"change_type": "update", "credential_type": "password"}),
        ("risk_level_change", "https://other.example", "other", "opaque", {"current_level": "low"}),
    ])
]
_samples_events = _samples()
SAMPLES = _samples_events + SIGNAL_SAMPLES
INTS = st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1)  # what JSON encoders write
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), INTS,
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.integers(min_value=2000, max_value=2100).map(lambda n: "é" * n),
    st.lists(INTS, max_size=3), st.dictionaries(st.text(max_size=5), INTS, max_size=2),
    st.sampled_from([0, -1, 2 ** 63, 253_402_300_800_000, "", "null", "1767571512792", 1e308, -0.0]),
)


@st.composite
def bad_inputs(draw) -> tuple[str, bytes, bytes | None]:
    """(logical topic, value bytes, key bytes) of a mutated or made-up input message."""
    line = draw(st.sampled_from(SAMPLES))
    topic = draw(st.sampled_from([line["topic"], line["topic"], *c.INPUT_TOPICS, c.SIGNALS]))
    value = dict(line["value"])  # the values are flat: a shallow copy is a copy
    key: bytes | None = value["account_id"].encode()
    how = draw(st.sampled_from(["drop", "retype", "retype", "extra", "kind", "key", "truncate", "bytes",
                                "not-object", "bigint", "valid"]))
    if how == "drop":
        value.pop(draw(st.sampled_from(sorted(value))))
    elif how == "retype":
        value[draw(st.sampled_from(sorted(value)))] = draw(ODD_VALUES)
    elif how == "extra":
        value[draw(st.text(min_size=1, max_size=12))] = draw(ODD_VALUES)
    elif how == "kind":
        value["kind" if "kind" in value else "label"] = draw(st.text(max_size=20))
    elif how == "key":
        key = draw(st.one_of(st.none(), st.binary(max_size=20), st.just(b"acct-someone-else")))
    raw = orjson.dumps(value)
    if how == "bigint":  # an integer beyond 64 bits in the JSON text
        raw = raw.replace(b'"ts":', b'"ts":1' + b"0" * draw(st.integers(min_value=19, max_value=400)) + b",\"_ts\":", 1)
    if how == "truncate":
        raw = raw[: draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))]
    elif how == "bytes":
        raw = draw(st.binary(max_size=200))
    elif how == "not-object":
        raw = orjson.dumps(draw(st.one_of(ODD_VALUES, st.lists(st.just(value), max_size=2))))
    return topic, raw, key


@settings(max_examples=2_000, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(bad_inputs(), min_size=50, max_size=50), st.integers(min_value=0, max_value=2 ** 40))
def test_decoders_take_anything_and_dead_letter_what_they_reject(messages, offset):
    """2,000 examples of 50 inputs each: 100,000 decoder inputs."""
    for message in messages:
        _check_decoder(message, offset)


def _check_decoder(message: tuple[str, bytes, bytes | None], offset: int) -> None:
    topic, raw, key = message
    real = f"ato.{topic}"
    record = decode_or_dead_letter(real, raw, key, partition=2, offset=offset, logical_topic=topic)
    if type(record) is DeadLetter:
        assert record.reason in c.DEAD_LETTER_REASONS and record.detail
        letter = record.to_dict()
        assert (letter["topic"], letter["partition"], letter["offset"]) == (real, 2, offset)
        orjson.dumps(letter)  # the dead-letter value is JSON
    elif key is not None:
        assert record.account_id == key.decode("utf-8", "replace")  # accepted only under its own account's key


#: lateness wide enough that the samples (days apart) and most mutations reach the engine
FUZZ_CFG = Config(stream=Stream(max_lateness_ms=400 * 86_400_000, dedup_hours=400 * 24.0))


class _Accounts:
    """A one-partition driver whose task has three warmed-up accounts (their profiles and seen
    ids kept in the task), and the stream time it reached."""

    def __init__(self) -> None:
        self.driver = Driver(FUZZ_CFG, 1)
        self.task = self.driver.task(0)
        chosen: set[str] = set()
        for line in sorted(_samples_events, key=lambda r: order_key(orjson.dumps(r["value"]))):
            account = line["value"]["account_id"]
            if account not in chosen and len(chosen) >= 3:
                continue
            chosen.add(account)
            self.task.process(line["topic"], orjson.dumps(line["value"]), account.encode(), 0, f"ato.{line['topic']}")
        assert len(self.task.accounts) == 3 and self.driver.counts.events > 0
        self.stream_time = self.task.stream_time

    def snapshot(self, but: str) -> dict[str, tuple[bytes, list]]:
        return {a: (encode(p), list(seen)) for a, (p, seen) in self.task.accounts.items() if a != but}


ACCOUNTS = _Accounts()
ENGINE_TOPICS = (c.COMMANDS, c.ALERTS, c.DECISIONS, c.SIGNALS_OUT)


@settings(max_examples=3_000, deadline=5000, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bad_inputs(), st.integers(min_value=0, max_value=2 ** 40))
def test_engine_takes_anything_and_leaves_other_accounts_alone(message, offset):
    topic, raw, key = message
    accounts = ACCOUNTS
    accounts.task.stream_time = accounts.stream_time  # each input against the warmed partition
    account = key.decode("utf-8", "replace") if key else ""
    before = accounts.snapshot(account)
    real = f"ato.{topic}"
    outputs = accounts.task.process(topic, raw, key, offset, real)
    letters = [o for o in outputs if o.topic == c.DEAD_LETTER]
    if letters:
        [letter] = outputs
        assert letter.value["reason"] in c.DEAD_LETTER_REASONS
        assert (letter.value["topic"], letter.value["partition"], letter.value["offset"]) == (real, 0, offset)
        orjson.dumps(letter.value)
    else:
        for o in outputs:
            assert o.topic in ENGINE_TOPICS and o.key == account
            orjson.dumps(o.value)
    assert accounts.snapshot(account) == before
