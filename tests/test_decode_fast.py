"""The typed fast path of :func:`detectors.events.decode` (msgspec) against the table-driven
path it stands in for: on any input, the same record (field values and their types) or the
same dead letter (reason and detail)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import contract as c
from detectors.events import FIELDS, BadInput, _decode_by_table, _fast_decode, decode

TOPICS = (c.DEVICE, c.LOCATION, c.TRANSACTION, c.VERDICTS, c.SIGNALS)


def outcome(fn, topic, value, key):
    """What decoding gives, comparable to the type: the record's repr (3 and 3.0 differ), or
    the dead-letter reason and detail."""
    try:
        return "record", repr(fn(topic, value, key))
    except BadInput as exc:
        return "dead letter", exc.reason, exc.detail


def same(topic: str, value: bytes, key: bytes | None = None) -> None:
    expected = outcome(_decode_by_table, topic, value, key)
    assert outcome(decode, topic, value, key) == expected
    fast = _fast_decode(topic, value, key)
    if expected[0] == "dead letter":
        assert fast is None  # the fast path never accepts what the contract refuses


GOOD = {
    "event_id": "e1", "account_id": "a1", "verdict_id": "v1", "ts": 1764000000000, "device_id": "d1",
    "session_id": "s1", "ip": "203.0.113.7", "device_model": "Pixel", "os": "Android 14", "user_agent": "UA",
    "is_emulator": False, "is_rooted": True, "method": "sms_otp", "command_id": "cmd-1", "reason": "wrong_code",
    "auth_method": "password", "attestation": "none", "lat": 52.5, "lon": 13.4, "accuracy_m": 20,
    "country": "DE", "city": "Berlin", "asn": 3320, "ip_type": "mobile", "amount": 12.5, "currency": "EUR",
    "counterparty_id": "p1", "channel": "app", "balance_after": -3, "credit_limit": 1000.0, "lender_id": "L",
    "label": "ato", "source": "analyst", "alert_id": "al-1", "note": "n",
    # partners' signals (v3)
    "issuer": "https://mail.example", "partner_role": "email_provider", "subject_format": "email",
    "event_ts": 1763999990000, "initiating_entity": "user", "change_type": "update", "credential_type": "password",
    "current_level": "high", "previous_level": "low", "current_status": "compliant",
}
ODD = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 3.0, -0.0, 1764000000000.0, 2**32, 4_294_967_295, 4_294_967_296, 90, 90.0001, -180,
                     c.TS_MIN - 1, c.TS_MAX + 1, "", "x" * 129, "x" * 1025, "de", "DE\n", "DEU", "2001:db8::1",
                     "999.1.1.1", "fe80::1%eth0", "\u00e9" * 128, "\U0001F600" * 128, [], {}, [1], {"a": 1}]),
    st.text(max_size=6),
)


@st.composite
def messages(draw):
    topic = draw(st.sampled_from(TOPICS))
    obj = {}
    for f in FIELDS[topic]:
        choice = draw(st.integers(0, 9))
        if choice <= 5:
            obj[f.name] = GOOD[f.name] if f.name in GOOD else draw(ODD)
        elif choice <= 7:
            obj[f.name] = draw(ODD)
        elif choice == 8:
            obj[f.name] = None
        # 9: absent
    kinds = sorted(c.KINDS.get(topic, ())) + ["bogus"]
    if topic != c.VERDICTS and draw(st.integers(0, 4)):
        obj["kind"] = draw(st.sampled_from(kinds))
    if topic == c.VERDICTS and draw(st.booleans()):
        obj["label"], obj["source"] = draw(st.sampled_from(sorted(c.VERDICT_LABELS))), "user"
    if topic == c.SIGNALS and draw(st.booleans()):
        obj["partner_role"] = draw(st.sampled_from([*c.PARTNER_ROLES, "bank"]))
        obj["subject_format"] = draw(st.sampled_from([*c.SUBJECT_FORMATS, "fax"]))
    if draw(st.booleans()):
        obj["unknown_field"] = draw(ODD)
    key = draw(st.sampled_from([None, b"a1", b"a2", b"\xff", str(obj.get("account_id")).encode()]))
    return topic, obj, key


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_fast_path_equals_the_table_on_generated_messages(message):
    topic, obj, key = message
    same(topic, orjson.dumps(obj), key)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(TOPICS), st.binary(max_size=40), st.integers(0, 200))
def test_fast_path_equals_the_table_on_mangled_bytes(topic, junk, at):
    base = orjson.dumps({"event_id": "e1", "account_id": "a1", "ts": 1764000000000, "kind": "login_success",
                         "lat": 1, "lon": 2, "ip": "203.0.113.7"})
    same(topic, base[:at] + junk + base[at:])
    same(topic, junk)


@pytest.mark.parametrize("value", [
    b'{"event_id":"e1","account_id":"a1","ts":1764000000000,"kind":"login_success","ts":5}',  # repeated key
    b'{"event_id":"e1","account_id":"a1","ts":1764000000000.0,"kind":"login_success"}',  # integer as float
    b'{"event_id":"e1","account_id":"a1","ts":1764000000000,"kind":"login_success","is_rooted":1}',
    b'{"event_id":"e1","account_id":"a1","ts":1764000000000,"kind":"login_success","ip":"1.2.3.4 "}',
    b' {"event_id":"e1","account_id":"a1","ts":1764000000000,"kind":"login_success"}\n',
    b'\xef\xbb\xbf{"event_id":"e1","account_id":"a1","ts":1764000000000,"kind":"login_success"}',
    b'{"event_id":"e\\ud800","account_id":"a1","ts":1764000000000,"kind":"login_success"}',
    b'[1, 2]', b'null', b'', b'{"event_id":"e1"}',
])
def test_fast_path_equals_the_table_on_corner_cases(value):
    for topic in TOPICS:
        for key in (None, b"a1"):
            same(topic, value, key)


def test_fast_path_takes_every_simulated_event(tmp_path):
    from simulator import SimConfig, simulate

    simulate(SimConfig(accounts=40, days=3, seed=5), str(tmp_path / "ev.jsonl"), str(tmp_path / "lab.jsonl"))
    n = 0
    for line in (tmp_path / "ev.jsonl").open("rb"):
        msg = orjson.loads(line)
        if "value" in msg and msg.get("topic") in TOPICS:
            value, key = orjson.dumps(msg["value"]), msg["value"]["account_id"].encode()
            same(msg["topic"], value, key)
            assert _fast_decode(msg["topic"], value, key) is not None
            n += 1
    assert n > 500
