"""The wire contract in code: every kind decodes, every class of bad input is dead-lettered with
its reason and original bytes, and the JSON Schema files agree with the decoder."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import contract as c
from detectors.events import (
    BadInput, DeadLetter, DeviceEvent, LocationEvent, TransactionEvent, Verdict, decode,
    decode_or_dead_letter, to_dict,
)

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "v1"
SCHEMA_FILE = {c.DEVICE: "device", c.LOCATION: "location", c.TRANSACTION: "transaction",
               c.VERDICTS: "verdict"}


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


VALIDATORS = {topic: validator(name) for topic, name in SCHEMA_FILE.items()}

BASE = {"event_id": "e1", "account_id": "a1", "ts": 1764000000000}
MINIMAL = {
    c.DEVICE: {},
    c.LOCATION: {"lat": 52.52, "lon": 13.405},
    c.TRANSACTION: {"amount": 12.5},
}


def example(topic: str, kind: str, **extra) -> dict:
    return {**BASE, "kind": kind, **MINIMAL[topic], **extra}


def encode(obj) -> bytes:
    return orjson.dumps(obj)


# -- every kind decodes ---------------------------------------------------------------------

@pytest.mark.parametrize("topic,kind", [(t, k) for t in c.EVENT_TOPICS for k in sorted(c.KINDS[t])])
def test_every_contract_kind_decodes_and_passes_the_schema(topic, kind):
    value = example(topic, kind)
    event = decode(topic, encode(value), key=b"a1")
    assert (event.topic, event.kind, event.account_id, event.ts) == (topic, kind, "a1", BASE["ts"])
    assert list(VALIDATORS[topic].iter_errors(value)) == []


def test_the_contract_file_example_decodes():
    line = ('{"topic": "device", "value": {"event_id": "e1", "account_id": "a1", "ts": 1764000000000, '
            '"kind": "login_success", "device_id": "d1", "ip": "203.0.113.7"}}')
    msg = orjson.loads(line)
    event = decode(msg["topic"], orjson.dumps(msg["value"]))
    assert event == DeviceEvent("e1", "a1", 1764000000000, "login_success", device_id="d1", ip="203.0.113.7")


def test_optional_fields_are_typed_and_kept():
    value = example(c.LOCATION, "ip_geo", accuracy_m=5000, country="DE", city="Berlin", asn=3320,
                    ip_type="mobile", ip="2001:db8::1", extra_field={"ignored": True})
    event = decode(c.LOCATION, encode(value))
    assert isinstance(event, LocationEvent)
    assert (event.country, event.asn, event.ip_type, event.ip) == ("DE", 3320, "mobile", "2001:db8::1")
    assert "extra_field" not in to_dict(event)


def test_transaction_and_verdict_records():
    tx = decode(c.TRANSACTION, encode(example(c.TRANSACTION, "credit_inquiry", amount=None, lender_id="L9")))
    assert isinstance(tx, TransactionEvent) and tx.amount is None and tx.lender_id == "L9"
    v = decode(c.VERDICTS, encode({"verdict_id": "v1", "account_id": "a1", "ts": 5, "label": "ato",
                                   "source": "analyst", "alert_id": "al1"}), key=b"a1")
    assert v == Verdict("v1", "a1", 5, "ato", "analyst", alert_id="al1") and v.event_id == "v1"


def test_integral_float_is_an_integer_like_json_schema_says():
    event = decode(c.DEVICE, encode({**BASE, "ts": 1764000000000.0, "kind": "logout"}))
    assert event.ts == 1764000000000 and type(event.ts) is int


# -- every class of bad input becomes a dead letter --------------------------------------------

BAD = [
    ("not json", b"{oops", c.NOT_JSON),
    ("invalid utf-8", b'{"event_id": "\xff"}', c.NOT_JSON),
    ("empty bytes", b"", c.NOT_JSON),
    ("array, not object", b"[1, 2]", c.NOT_OBJECT),
    ("string, not object", b'"hello"', c.NOT_OBJECT),
    ("missing event_id", encode({"account_id": "a1", "ts": 1, "kind": "logout"}), c.MISSING_FIELD),
    ("missing lat", encode({**BASE, "kind": "gps_fix", "lon": 1.0}), c.MISSING_FIELD),
    ("amount missing for payment", encode({**BASE, "kind": "payment"}), c.MISSING_FIELD),
    ("ts is a string", encode({**BASE, "ts": "yesterday", "kind": "logout"}), c.WRONG_TYPE),
    ("ts is a bool", encode({**BASE, "ts": True, "kind": "logout"}), c.WRONG_TYPE),
    ("required field null", encode({**BASE, "account_id": None, "kind": "logout"}), c.WRONG_TYPE),
    ("is_rooted not bool", encode({**BASE, "kind": "logout", "is_rooted": "yes"}), c.WRONG_TYPE),
    ("unknown kind", encode({**BASE, "kind": "teleport"}), c.UNKNOWN_KIND),
    ("kind of another topic", encode({**BASE, "kind": "gps_fix"}), c.UNKNOWN_KIND),
    ("empty account_id", encode({**BASE, "account_id": "", "kind": "logout"}), c.OUT_OF_RANGE),
    ("event_id too long", encode({**BASE, "event_id": "x" * 129, "kind": "logout"}), c.OUT_OF_RANGE),
    ("negative ts", encode({**BASE, "ts": -1, "kind": "logout"}), c.OUT_OF_RANGE),
    ("bad ip", encode({**BASE, "kind": "logout", "ip": "999.1.1.1"}), c.OUT_OF_RANGE),
]
BAD_TOPIC = {"missing lat": c.LOCATION, "amount missing for payment": c.TRANSACTION}


@pytest.mark.parametrize("name,raw,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_input_becomes_a_dead_letter_with_original_bytes(name, raw, reason):
    topic = BAD_TOPIC.get(name, c.DEVICE)
    out = decode_or_dead_letter(topic, raw, key=b"a1", partition=3, offset=42)
    assert isinstance(out, DeadLetter)
    assert out.reason == reason and out.detail
    record = out.to_dict()
    assert base64.b64decode(record["value_b64"]) == raw
    assert (record["topic"], record["partition"], record["offset"]) == (topic, 3, 42)
    assert base64.b64decode(record["key_b64"]) == b"a1"
    assert list(validator("dead-letter").iter_errors(record)) == []


@pytest.mark.parametrize("topic,value,reason", [
    (c.LOCATION, example(c.LOCATION, "gps_fix", lat=91.0), c.OUT_OF_RANGE),
    (c.LOCATION, example(c.LOCATION, "gps_fix", lon=-180.5), c.OUT_OF_RANGE),
    (c.LOCATION, example(c.LOCATION, "gps_fix", accuracy_m=-1), c.OUT_OF_RANGE),
    (c.LOCATION, example(c.LOCATION, "gps_fix", country="de"), c.OUT_OF_RANGE),
    (c.LOCATION, example(c.LOCATION, "gps_fix", ip_type="satellite"), c.OUT_OF_RANGE),
    (c.TRANSACTION, example(c.TRANSACTION, "payment", amount=-5), c.OUT_OF_RANGE),
    (c.TRANSACTION, example(c.TRANSACTION, "payment", currency="euro"), c.OUT_OF_RANGE),
    (c.TRANSACTION, example(c.TRANSACTION, "payment", channel="fax"), c.OUT_OF_RANGE),
    (c.VERDICTS, {"verdict_id": "v", "account_id": "a1", "ts": 1, "label": "maybe", "source": "user"}, c.OUT_OF_RANGE),
])
def test_values_out_of_range_are_rejected_by_decoder_and_schema(topic, value, reason):
    with pytest.raises(BadInput) as err:
        decode(topic, encode(value))
    assert err.value.reason == reason
    assert list(VALIDATORS[topic].iter_errors(value)) != []


def test_key_must_equal_account_id():
    raw = encode(example(c.DEVICE, "logout"))
    assert decode_or_dead_letter(c.DEVICE, raw, key=b"someone-else").reason == c.KEY_MISMATCH
    assert decode_or_dead_letter(c.DEVICE, raw, key=b"\xff\xfe").reason == c.KEY_MISMATCH
    assert isinstance(decode_or_dead_letter(c.DEVICE, raw, key=b"a1"), DeviceEvent)


def test_unknown_topic_and_none_value_are_dead_letters_not_exceptions():
    assert decode_or_dead_letter("ato.nope", b"{}").reason == c.UNKNOWN_TOPIC
    assert decode_or_dead_letter(c.DEVICE, None).reason == c.NOT_JSON
    dl = decode_or_dead_letter("ato.device", b"[]", logical_topic=c.DEVICE)
    assert (dl.topic, dl.reason) == ("ato.device", c.NOT_OBJECT)


@pytest.mark.parametrize("name,raw,reason", [b for b in BAD if b[2] not in (c.NOT_JSON,)], ids=lambda x: x if isinstance(x, str) else "")
def test_schemas_reject_what_the_decoder_rejects(name, raw, reason):
    topic = BAD_TOPIC.get(name, c.DEVICE)
    assert list(VALIDATORS[topic].iter_errors(orjson.loads(raw))) != []


# -- decoder and schemas agree on generated input ---------------------------------------------

def _field_values():
    anything = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**14), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=6), st.sampled_from(["", "a1", "x" * 129, "DE", "de", "EUR", "mobile", "app"]))
    return {
        "event_id": st.one_of(st.sampled_from(["e1", "", "x" * 129]), anything),
        "account_id": st.one_of(st.just("a1"), anything),
        "ts": st.one_of(st.integers(-5, 10**13), st.just(1.0), st.just(2.5), anything),
        "kind": st.one_of(st.sampled_from(sorted(c.DEVICE_KINDS | c.LOCATION_KINDS | c.TRANSACTION_KINDS | {"x"})), anything),
        "lat": st.one_of(st.floats(-100, 100), anything),
        "lon": st.one_of(st.floats(-200, 200), anything),
        "amount": st.one_of(st.floats(-10, 1e6), anything),
        "ip": st.one_of(st.sampled_from(["203.0.113.7", "2001:db8::1", "fe80::1%eth0", "1.2.3", "::ffff:1.2.3.4"]), anything),
        "country": st.one_of(st.sampled_from(["DE", "de", "DEU", "É"]), anything),
        "asn": st.one_of(st.integers(-1, 2**33), anything),
        "is_emulator": anything,
        "ip_type": st.one_of(st.sampled_from(sorted(c.IP_TYPES)), anything),
        "label": st.one_of(st.sampled_from(["ato", "legit", "no"]), anything),
        "source": st.one_of(st.sampled_from(["analyst", "user"]), anything),
        "verdict_id": st.one_of(st.just("v1"), anything),
        "accuracy_m": anything, "currency": anything, "channel": anything, "device_id": anything,
    }


@st.composite
def messages(draw):
    topic = draw(st.sampled_from(list(SCHEMA_FILE)))
    vals = _field_values()
    names = draw(st.sets(st.sampled_from(sorted(vals)), max_size=len(vals)))
    if topic == c.VERDICTS:
        base = {"verdict_id": "v1", "account_id": "a1", "ts": 1, "label": "ato", "source": "user"}
    else:
        base = example(topic, draw(st.sampled_from(sorted(c.KINDS[topic]))))
    obj = dict(base)
    for name in names:
        if draw(st.booleans()):
            obj[name] = draw(vals[name])
        else:
            obj.pop(name, None)
    return topic, obj


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(messages())
def test_decoder_and_json_schema_agree(message):
    topic, obj = message
    schema_ok = not list(VALIDATORS[topic].iter_errors(obj))
    try:
        decode(topic, encode(obj))
        decoder_ok = True
    except BadInput:
        decoder_ok = False
    assert decoder_ok == schema_ok, obj
