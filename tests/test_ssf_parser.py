"""The receiver's parser under 10,000 generated inputs: any input is either refused with an
RFC 8935 code or turned into ``signals`` messages the contract's schema and decoder accept."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import events
from streams.ssf.sets import ERROR_CODES, EVENT_URIS, Refusal, check_claims, parse, signals_of
from streams.ssf.subjects import Directory, subject_key

SCHEMA = json.loads(open("schemas/v3/signal.schema.json").read())
AUD = "https://b.example/ssf"
DIRECTORY = Directory([{"account_id": "acct-1", "subject": {"format": "email", "email": "ana@example.com"}},
                       {"account_id": "acct-2", "subject": {"format": "phone_number", "phone_number": "+15550001"}}])

text = st.text(max_size=20)
scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                           max_leaves=8)
subjects = st.one_of(
    st.just({"format": "email", "email": "ana@example.com"}), st.just({"format": "email", "email": "ANA@example.com"}),
    st.just({"format": "phone_number", "phone_number": "+15550001"}),
    st.builds(lambda f, v: {"format": f, "email": v, "id": v, "uri": v}, st.sampled_from(["email", "opaque", "uri", "nope"]), text),
    st.just({"format": "complex", "user": {"format": "email", "email": "ana@example.com"}}),
    st.builds(lambda i: {"format": "aliases", "identifiers": i}, st.lists(json_values, max_size=2)),
    json_values,
)
payloads = st.fixed_dictionaries({}, optional={
    "event_timestamp": json_values | st.integers(0, 2_000_000_000) | st.floats(0, 2e9),
    "reason": json_values, "reason_admin": json_values, "initiating_entity": st.sampled_from(["user", "admin", "x"]) | json_values,
    "change_type": json_values, "credential_type": json_values, "current_level": json_values,
    "current_status": json_values, "subject": subjects})
event_types = st.sampled_from(list(EVENT_URIS.values()) + ["https://schemas.openid.net/secevent/ssf/event-type/verification",
                                                           "urn:other"]) | text
claims = st.fixed_dictionaries(
    {"iss": st.just("https://a.example") | json_values},
    optional={"aud": st.just(AUD) | st.lists(st.just(AUD) | text, max_size=2) | json_values,
              "jti": text | json_values, "iat": st.integers(0, 2**40) | json_values, "sub_id": subjects,
              "events": st.dictionaries(event_types, payloads | json_values, max_size=3) | json_values,
              "sub": text, "exp": st.integers(0, 2**40)})
headers = st.fixed_dictionaries({"typ": st.sampled_from(["secevent+jwt", "application/secevent+jwt", "JWT"]) | json_values},
                                optional={"alg": st.sampled_from(["RS256", "none", "HS256"]), "kid": text})


def b64(value) -> bytes:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=")


tokens = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda h, c, s: b64(h) + b"." + b64(c) + b"." + s, headers, claims, st.binary(min_size=1, max_size=20)),
    st.builds(lambda parts: b".".join(parts), st.lists(st.binary(max_size=30), max_size=5)),
)


def receive(token: bytes) -> list[tuple[str, dict]]:
    """What the receiver does after the signature (joserfc's) has verified."""
    parsed = parse(token)
    check_claims(parsed.claims, AUD)
    return signals_of(parsed.claims, partner="a", role="email_provider", directory=DIRECTORY, now_ms=1).messages


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(tokens)
def test_any_input_is_refused_with_an_rfc_code_or_becomes_valid_signals(token):
    import jsonschema

    try:
        messages = receive(token)
    except Refusal as refusal:
        assert refusal.code in ERROR_CODES and refusal.body()["err"] == refusal.code
        return
    for key, value in messages:
        jsonschema.validate(value, SCHEMA)
        decoded = events.decode("signals", orjson.dumps(value), key.encode())
        assert decoded.account_id == key in ("acct-1", "acct-2")


@pytest.mark.parametrize("subject, key", [
    ({"format": "email", "email": " Ana@Example.com"}, "email:ana@example.com"),
    ({"format": "iss_sub", "iss": "https://i", "sub": "42"}, "iss_sub:https://i 42"),
    ({"format": "opaque", "id": "p-1"}, "opaque:p-1"),
])
def test_subject_keys_are_canonical(subject, key):
    assert subject_key(subject) == key


def test_a_per_partner_subject_maps_only_for_that_partner():
    d = Directory([{"account_id": "a1", "subject": {"format": "opaque", "id": "x"}, "partners": ["mailco"]}])
    assert d.account_of({"format": "opaque", "id": "x"}, "mailco") == ("a1", "opaque")
    assert d.account_of({"format": "opaque", "id": "x"}, "carrier") is None
    assert d.subjects_of("a1", "carrier") == []
