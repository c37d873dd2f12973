"""The wire contract in code: every kind decodes, every class of bad input is dead-lettered with
its reason and original bytes, and the JSON Schema files agree with the decoder (v3: partners'
signals too); v1 input stays valid under v2 and v3, v3 commands and decisions are signed,
schema-valid and tell the holder the way back, and v2 commands are still written on request."""

from __future__ import annotations

import base64
import dataclasses
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
from detectors.outputs import command_value, decision_value, sign, verify

SCHEMA_ROOT = Path(__file__).resolve().parents[1] / "schemas"
SCHEMA_FILE = {c.DEVICE: "device", c.LOCATION: "location", c.TRANSACTION: "transaction",
               c.VERDICTS: "verdict", c.SIGNALS: "signal"}
#: the schemas this code implements (contract v3)
VERSION = "v3"
V1_KINDS = {c.DEVICE: c.DEVICE_KINDS - c.CHALLENGE_KINDS, c.LOCATION: c.LOCATION_KINDS,
            c.TRANSACTION: c.TRANSACTION_KINDS}


def validator(name: str, version: str = VERSION) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_ROOT / version / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def valid(v: jsonschema.Draft202012Validator, value) -> bool:
    return not list(v.iter_errors(value))


VALIDATORS = {topic: validator(name) for topic, name in SCHEMA_FILE.items()}
V1_VALIDATORS = {topic: validator(name, "v1") for topic, name in SCHEMA_FILE.items() if topic != c.SIGNALS}

BASE = {"event_id": "e1", "account_id": "a1", "ts": 1764000000000}
MINIMAL = {
    c.DEVICE: {},
    c.LOCATION: {"lat": 52.52, "lon": 13.405},
    c.TRANSACTION: {"amount": 12.5},
}
#: What a kind adds to its topic's minimal example (a challenge names its method).
KIND_MINIMAL = {c.CHALLENGE_PASSED: {"method": "face"},
                c.CHALLENGE_FAILED: {"method": "sms_otp", "reason": "wrong_code"}}


def example(topic: str, kind: str, **extra) -> dict:
    return {**BASE, "kind": kind, **MINIMAL[topic], **KIND_MINIMAL.get(kind, {}), **extra}


def encode(obj) -> bytes:
    return orjson.dumps(obj)


# -- every kind decodes ---------------------------------------------------------------------

@pytest.mark.parametrize("topic,kind", [(t, k) for t in c.EVENT_TOPICS for k in sorted(c.KINDS[t])])
def test_every_contract_kind_decodes_and_passes_the_schema(topic, kind):
    value = example(topic, kind)
    event = decode(topic, encode(value), key=b"a1")
    assert (event.topic, event.kind, event.account_id, event.ts) == (topic, kind, "a1", BASE["ts"])
    assert list(VALIDATORS[topic].iter_errors(value)) == []


@pytest.mark.parametrize("topic,kind", [(t, k) for t in c.EVENT_TOPICS for k in sorted(V1_KINDS[t])])
def test_v1_examples_stay_valid_under_v2(topic, kind):
    value = example(topic, kind, device_id="d1", ip="203.0.113.7")
    assert valid(V1_VALIDATORS[topic], value) and valid(VALIDATORS[topic], value)
    assert decode(topic, encode(value)).kind == kind


@pytest.mark.parametrize("kind", sorted(c.CHALLENGE_KINDS))
def test_challenge_kinds_are_v2_only(kind):
    value = example(c.DEVICE, kind)
    assert valid(VALIDATORS[c.DEVICE], value) and not valid(V1_VALIDATORS[c.DEVICE], value)


def test_a_challenge_outcome_keeps_its_v2_fields():
    value = example(c.DEVICE, c.CHALLENGE_FAILED, method="app_push", reason="denied", command_id="cmd-1",
                    device_id="d1", session_id="S", ip="198.51.100.4")
    event = decode(c.DEVICE, encode(value), key=b"a1")
    assert (event.method, event.reason, event.command_id) == ("app_push", "denied", "cmd-1")
    assert to_dict(event) == value


@pytest.mark.parametrize("method", c.METHODS)
def test_every_method_is_a_challenge_method(method):
    event = decode(c.DEVICE, encode(example(c.DEVICE, c.CHALLENGE_PASSED, method=method)))
    assert event.method == method


def test_auth_method_and_attestation_are_optional_on_any_device_kind():
    plain = decode(c.DEVICE, encode(example(c.DEVICE, "login_success")))
    assert (plain.auth_method, plain.attestation, plain.method) == (None, None, None)
    for auth_method in c.AUTH_METHODS:
        for attestation in c.ATTESTATIONS:
            value = example(c.DEVICE, "login_success", auth_method=auth_method, attestation=attestation)
            event = decode(c.DEVICE, encode(value))
            assert (event.auth_method, event.attestation) == (auth_method, attestation)
            assert valid(VALIDATORS[c.DEVICE], value)


def test_v1_positional_construction_still_works_and_decoded_records_are_frozen():
    built = DeviceEvent("e1", "a1", 5, "login_success", "d1", "S", "203.0.113.7")
    decoded = decode(c.DEVICE, encode({"event_id": "e1", "account_id": "a1", "ts": 5, "kind": "login_success",
                                       "device_id": "d1", "session_id": "S", "ip": "203.0.113.7"}))
    assert decoded == built and hash(decoded) == hash(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.method = "face"


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
    # v2
    ("challenge without method", encode({**BASE, "kind": "challenge_failed", "reason": "timeout"}), c.MISSING_FIELD),
    ("challenge with null method", encode({**BASE, "kind": "challenge_passed", "method": None}), c.MISSING_FIELD),
    ("unknown method", encode({**BASE, "kind": "challenge_passed", "method": "carrier_pigeon"}), c.OUT_OF_RANGE),
    ("method not a string", encode({**BASE, "kind": "challenge_passed", "method": 3}), c.WRONG_TYPE),
    ("bad failure reason", encode({**BASE, "kind": "challenge_failed", "method": "totp", "reason": "bored"}),
     c.OUT_OF_RANGE),
    ("unknown method on a login", encode({**BASE, "kind": "login_success", "method": "retina"}), c.OUT_OF_RANGE),
    ("empty command_id", encode({**BASE, "kind": "challenge_passed", "method": "face", "command_id": ""}),
     c.OUT_OF_RANGE),
    ("command_id too long", encode({**BASE, "kind": "challenge_passed", "method": "face", "command_id": "c" * 129}),
     c.OUT_OF_RANGE),
    ("unknown auth_method", encode({**BASE, "kind": "login_success", "auth_method": "magic"}), c.OUT_OF_RANGE),
    ("attestation not a string", encode({**BASE, "kind": "login_success", "attestation": True}), c.WRONG_TYPE),
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
        # v2
        "method": st.one_of(st.sampled_from([*c.METHODS, "retina"]), anything),
        "reason": st.one_of(st.sampled_from([*c.FAILURE_REASONS, "bored"]), anything),
        "command_id": st.one_of(st.sampled_from(["cmd-1", "", "c" * 128, "c" * 129]), anything),
        "auth_method": st.one_of(st.sampled_from([*c.AUTH_METHODS, "magic"]), anything),
        "attestation": st.one_of(st.sampled_from([*c.ATTESTATIONS, "meh"]), anything),
        # v3: partners' signals, a verdict's actor
        "issuer": st.one_of(st.sampled_from(["https://idp.example", "", "x" * 1025]), anything),
        "partner_role": st.one_of(st.sampled_from([*c.PARTNER_ROLES, "friend"]), anything),
        "subject_format": st.one_of(st.sampled_from([*c.SUBJECT_FORMATS, "aadhaar"]), anything),
        "event_ts": st.one_of(st.integers(-5, 10**13), anything),
        "initiating_entity": st.one_of(st.sampled_from([*c.INITIATING_ENTITIES, "cat"]), anything),
        "current_level": st.one_of(st.sampled_from(["high", ""]), anything),
        "actor": st.one_of(st.sampled_from(["analyst-7", ""]), anything),
    }


V2_FIELDS = ("method", "reason", "command_id", "auth_method", "attestation")
V3_FIELDS = ("issuer", "partner_role", "subject_format", "event_ts", "initiating_entity", "current_level", "actor")
#: every input topic's kinds (v3: partners' signals)
V3_KINDS = {**c.KINDS, c.SIGNALS: c.SIGNAL_KINDS}
SIGNAL_BASE = {"event_id": "s1", "account_id": "a1", "ts": 1, "kind": "credential_compromise",
               "issuer": "https://mail.example", "partner_role": "email_provider", "subject_format": "email"}


@st.composite
def messages(draw, kinds=V3_KINDS, skip=()):
    """A message of an input topic, a valid example with some fields replaced or removed."""
    topic = draw(st.sampled_from([t for t in SCHEMA_FILE if t in kinds or t == c.VERDICTS]))
    vals = {name: strategy for name, strategy in _field_values().items() if name not in skip}
    names = draw(st.sets(st.sampled_from(sorted(vals)), max_size=len(vals)))
    if topic == c.VERDICTS:
        base = {"verdict_id": "v1", "account_id": "a1", "ts": 1, "label": "ato", "source": "user"}
    elif topic == c.SIGNALS:
        base = {**SIGNAL_BASE, "kind": draw(st.sampled_from(sorted(kinds[topic])))}
    else:
        base = example(topic, draw(st.sampled_from(sorted(kinds[topic]))))
    obj = dict(base)
    for name in names:
        if draw(st.booleans()):
            obj[name] = draw(vals[name])
        else:
            obj.pop(name, None)
    return topic, obj


def _decodes(topic: str, obj) -> bool:
    try:
        decode(topic, encode(obj))
    except BadInput:
        return False
    return True


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(messages())
def test_decoder_and_json_schema_agree(message):
    topic, obj = message
    assert _decodes(topic, obj) == valid(VALIDATORS[topic], obj), obj


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(messages(kinds=V1_KINDS, skip=V2_FIELDS + V3_FIELDS))
def test_on_v1_input_the_decoder_agrees_with_the_v1_schemas_too(message):
    topic, obj = message
    assert _decodes(topic, obj) == valid(V1_VALIDATORS[topic], obj), obj


# -- commands (v3, and v2 on request) ------------------------------------------------------------

KEY = "test-command-key"
COMMAND_V3 = validator("command")
COMMAND_V2 = validator("command", "v2")
COMMAND_V1 = validator("command", "v1")
T = 1_764_000_000_000


def command(action: str, methods=None, **overrides) -> dict:
    args = dict(account_id="a1", action=action, reasons=("SIM_SWAP", "NEW_DEVICE_LOGIN"), risk=0.9,
                issued_at=T, expires_at=T + 3_600_000 if action == c.FREEZE else None, trigger_event_id="e1",
                alert_id="al1", policy_version="p1", dry_run=False, key=KEY, methods=methods)
    return command_value(**{**args, **overrides})


COMMANDS = [
    (c.STEP_UP, ["passkey", "face", "totp"]), (c.STEP_UP, None), (c.FREEZE, ["face"]), (c.FREEZE, []),
    (c.FREEZE, None), (c.UNFREEZE, None), (c.CLOSE, None),
]


@pytest.mark.parametrize("action,methods", COMMANDS)
def test_commands_are_v3_valid_and_not_v2_nor_v1(action, methods):
    cmd = command(action, methods)
    assert cmd["contract_version"] == 3
    assert valid(COMMAND_V3, cmd), list(COMMAND_V3.iter_errors(cmd))
    assert not valid(COMMAND_V2, cmd) and not valid(COMMAND_V1, cmd)
    assert ("methods" in cmd) == (action in c.METHOD_ACTIONS)
    if methods is not None:
        assert cmd["methods"] == methods


@pytest.mark.parametrize("action,methods", COMMANDS)
def test_a_v2_account_service_still_gets_v2_commands(action, methods):
    cmd = command(action, methods, contract_version=2)
    assert cmd["contract_version"] == 2
    assert valid(COMMAND_V2, cmd), list(COMMAND_V2.iter_errors(cmd))
    assert ("methods" in cmd) == (action in c.METHOD_ACTIONS)
    if methods is not None:
        assert cmd["methods"] == methods


@pytest.mark.parametrize("action,methods", COMMANDS)
def test_the_signature_verifies_and_covers_every_field(action, methods):
    cmd = command(action, methods)
    assert verify(cmd, KEY) and not verify(cmd, "another key")
    for name, value in cmd.items():
        if name == "signature":
            continue
        altered = {**cmd, name: "tampered" if value != "tampered" else "other"}
        assert not verify(altered, KEY), name
    assert not verify({k: v for k, v in cmd.items() if k != "signature"}, KEY)


def test_a_changed_method_list_breaks_the_signature():
    cmd = command(c.FREEZE, ["face"])
    assert not verify({**cmd, "methods": ["face", "sms_otp"]}, KEY)
    assert not verify({**cmd, "methods": []}, KEY)


DROP = object()


@pytest.mark.parametrize("change", [
    {"contract_version": 1}, {"contract_version": DROP}, {"methods": DROP}, {"methods": []},
    {"methods": ["retina"]}, {"methods": ["face", "face"]}, {"expires_at": None},
], ids=lambda change: next(iter(change)))
def test_the_command_schema_rejects_a_broken_step_up(change):
    cmd = {**command(c.STEP_UP, ["face"]), **change}
    cmd = {k: v for k, v in cmd.items() if v is not DROP}
    cmd["signature"] = sign(cmd, KEY)
    assert not valid(COMMAND_V3, cmd)


def test_the_command_schema_wants_methods_on_freeze_and_forbids_them_elsewhere():
    freeze = command(c.FREEZE, ["face"])
    no_way_back = {k: v for k, v in freeze.items() if k != "methods"}
    assert not valid(COMMAND_V3, no_way_back)
    for action in (c.UNFREEZE, c.CLOSE):
        assert not valid(COMMAND_V3, {**command(action), "methods": ["face"]})
        assert not valid(COMMAND_V3, {**command(action), "methods": []})


@pytest.mark.parametrize("action,methods", [
    (c.UNFREEZE, ["face"]), (c.CLOSE, []), (c.STEP_UP, []), (c.FREEZE, ["retina"]), (c.STEP_UP, ["face", "face"]),
])
def test_command_value_refuses_methods_the_contract_does_not_allow(action, methods):
    with pytest.raises(ValueError):
        command(action, methods)


def test_a_command_listing_id_check_expires_no_sooner_than_three_hours_and_v2_drops_it():
    step_up = command(c.STEP_UP, ["face", "id_check"], expires_at=T + 300_000)
    assert step_up["expires_at"] == T + 3 * 3_600_000 and valid(COMMAND_V3, step_up)
    assert "ID and a selfie" in step_up["message"]
    freeze = command(c.FREEZE, ["passkey", "id_check"], expires_at=T + 24 * 3_600_000)
    assert freeze["expires_at"] == T + 24 * 3_600_000
    v2 = command(c.FREEZE, ["passkey", "id_check"], contract_version=2)
    assert v2["methods"] == ["passkey"] and valid(COMMAND_V2, v2)


def test_a_step_up_expires_no_sooner_than_two_minutes():
    assert command(c.STEP_UP, ["face"])["expires_at"] >= T + 120_000
    assert command(c.STEP_UP, ["face"], expires_at=T + 300_000)["expires_at"] == T + 300_000


def test_messages_name_the_check_and_the_way_back():
    step_up = command(c.STEP_UP, ["face", "passkey"])["message"]
    assert "your face in the app" in step_up and "passkey" in step_up
    assert "face" not in command(c.STEP_UP, ["totp"])["message"]
    way_back = command(c.FREEZE, ["passkey"])["message"]
    assert "passkey" in way_back and "lift the pause at once" in way_back
    no_way_back = command(c.FREEZE, [])["message"]
    assert "call us" in no_way_back and "lift the pause at once" not in no_way_back


# -- labels file (v2) ---------------------------------------------------------------------------

LABELS = validator("labels")
INCIDENT = {"account_id": "a1", "scenario": "sim_swap_payout", "label": "ato", "start_ts": T,
            "end_ts": T + 900_000, "first_loss_ts": T + 600_000, "event_ids": ["e1", "e2"]}


@pytest.mark.parametrize("line", [
    INCIDENT,
    {**INCIDENT, "attacker_passes": ["sms_otp"]},
    {**INCIDENT, "attacker_passes": []},
    {**INCIDENT, "label": "legit", "scenario": "travel", "first_loss_ts": None},
    {**INCIDENT, "label": "legit", "scenario": "lost_phone", "first_loss_ts": None, "holder_passes": ["sms_otp", "face"]},
    {"account_id": "a1", "label": "enrolled", "methods": ["sms_otp", "face"]},
    {"account_id": "a1", "label": "enrolled", "methods": []},
], ids=lambda line: f"{line['label']}-{sorted(line)[0]}-{len(line)}")
def test_labels_lines_of_the_contract_are_valid(line):
    assert valid(LABELS, line), list(LABELS.iter_errors(line))


@pytest.mark.parametrize("line", [
    {**INCIDENT, "attacker_passes": ["telepathy"]},
    {**INCIDENT, "holder_passes": ["face"]},
    {**INCIDENT, "label": "legit", "attacker_passes": ["face"]},
    {**INCIDENT, "label": "maybe"},
    {k: v for k, v in INCIDENT.items() if k != "event_ids"},
    {"account_id": "a1", "label": "enrolled"},
    {"account_id": "a1", "label": "enrolled", "methods": ["face", "retina"]},
    {"account_id": "a1", "label": "enrolled", "methods": "face"},
    {"label": "enrolled", "methods": ["face"]},
], ids=lambda line: "-".join(sorted(line)))
def test_labels_lines_outside_the_contract_are_rejected(line):
    assert not valid(LABELS, line)


def test_v3_labels_may_say_a_thief_passes_id_check():
    assert valid(LABELS, {**INCIDENT, "attacker_passes": ["id_check"]})
    assert valid(LABELS, {"account_id": "a1", "label": "enrolled", "methods": ["id_check"]})


# -- decisions (v3) -----------------------------------------------------------------------------

DECISION = validator("decision")


def decision(kind: str, **overrides) -> dict:
    args = dict(account_id="a1", event_id="e1", ts=T, decision=kind, command_id=None, methods=None,
                expires_at=None, resolves=None, risk=0.2, reasons=(), policy_version="p1", dry_run=False, key=KEY)
    return decision_value(**{**args, **overrides})


DECISIONS = [
    ("allow", {}),
    ("hold", dict(command_id="c1", methods=["face", "id_check"], expires_at=T + 3 * 3_600_000, reasons=("NEW_DEVICE_LOGIN",))),
    ("deny", dict(command_id="c2", reasons=("ACCOUNT_FROZEN",))),
    ("allow", dict(command_id="c1", methods=["face"], expires_at=T + 60_000, resolves="d1", reasons=("CHALLENGE_PASSED",))),
    ("deny", dict(command_id="c1", methods=["face"], expires_at=T + 60_000, resolves="d1")),
]


@pytest.mark.parametrize("kind,fields", DECISIONS, ids=lambda x: x if isinstance(x, str) else "-".join(sorted(x)))
def test_decisions_carry_every_field_are_signed_and_schema_valid(kind, fields):
    d = decision(kind, **fields)
    assert valid(DECISION, d), list(DECISION.iter_errors(d))
    assert set(d) == set(DECISION.schema["required"])  # null, never absent
    assert verify(d, KEY) and not verify({**d, "decision": "allow" if kind != "allow" else "deny"}, KEY)
    assert (d["message"] is None) == (kind == "allow")


@pytest.mark.parametrize("change", [
    {"decision": "maybe"}, {"resolves": DROP}, {"contract_version": 2}, {"methods": ["retina"]},
    {"extra": 1}, {"risk": 1.5},
], ids=lambda change: next(iter(change)))
def test_the_decision_schema_rejects_a_broken_decision(change):
    d = {**decision("hold", command_id="c1", methods=["face"], expires_at=T + 60_000), **change}
    d = {k: v for k, v in d.items() if v is not DROP}
    assert not valid(DECISION, d)


def test_a_hold_names_its_challenge_and_a_resolution_is_never_a_hold():
    assert not valid(DECISION, decision("hold"))
    assert not valid(DECISION, decision("hold", command_id="c1", methods=["face"], expires_at=T, resolves="d1"))


def test_the_decision_id_depends_on_the_event_and_the_hold_resolved():
    assert decision("allow")["decision_id"] == decision("allow")["decision_id"]
    assert decision("allow", resolves="d1")["decision_id"] != decision("allow")["decision_id"]
    assert decision("allow", event_id="e2")["decision_id"] != decision("allow")["decision_id"]


def test_dead_letter_reasons_of_v3_are_in_the_schema():
    reasons = validator("dead-letter").schema["properties"]["reason"]["enum"]
    assert set(reasons) == set(c.DEAD_LETTER_REASONS)
