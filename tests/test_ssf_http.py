"""A's transmitter to B's receiver over real HTTP on localhost (no Kafka: B writes to memory).

Push and poll deliver a shared signal once, mapped to B's own account; every refusal answers
its RFC 8935 code, is counted, and leaves the next good SET accepted."""

from __future__ import annotations

import json
import socket
import time

import pytest

from detectors import events
from streams.ssf.sets import EVENT_URIS, event_id
from streams.ssf.transmitter import POLL, PUSH
from tests.ssf_helpers import ANA, B_TOKEN, PartyA, PartyB, rsa, wait_for

SCHEMA = json.loads(open("schemas/v3/signal.schema.json").read())


@pytest.fixture
def a(tmp_path):
    party = PartyA(tmp_path).start()
    yield party
    party.stop()


@pytest.fixture
def b(a):
    party = PartyB(a).start()
    yield party
    party.stop()


def valid_signal(value: dict) -> None:
    import jsonschema

    jsonschema.validate(value, SCHEMA)


def test_a_pushes_a_shared_freeze_to_b_which_writes_it_for_its_own_account(a, b):
    a.open_stream(PUSH, b.url)
    assert a.share(0) == 1
    wait_for(lambda: b.writer.messages, what="B received the signal")
    [(key, value)] = b.writer.messages
    assert key == "acct-B9" and value["account_id"] == "acct-B9"
    assert value["kind"] == "account_disabled" and value["reason"] == "hijacking"
    assert value["issuer"] == a.url and value["partner_role"] == "lender" and value["subject_format"] == "email"
    assert value["event_ts"] == 1_760_000_000_000
    valid_signal(value)
    wait_for(lambda: a.tx.offsets.committable() == {0: 1}, what="A may commit offset 1")


def test_a_polled_signal_arrives_once_and_is_acknowledged(a, tmp_path):
    stream_id = a.open_stream(POLL)
    b = PartyB(a, poll_url=f"{a.url}/ssf/poll/{stream_id}").start()
    try:
        a.share(0, kind="credential_compromise")
        wait_for(lambda: b.writer.messages, what="B polled the signal")
        wait_for(lambda: not a.tx.outbox[stream_id], what="A's outbox emptied by B's acknowledgement")
        [(key, value)] = b.writer.messages
        assert (key, value["kind"]) == ("acct-B9", "credential_compromise")
        time.sleep(0.5)  # more polls: nothing delivered twice
        assert len(b.writer.messages) == 1
    finally:
        b.stop()


def test_a_sends_nothing_about_a_subject_b_did_not_add_and_never_an_account_id(a, b):
    a.open_stream(PUSH, b.url, subject={"format": "email", "email": "someone-else@example.com"})
    assert a.share(0) == 0          # Ana not added by B
    assert a.share(1, account="acct-A2") == 0  # Bo not added either
    assert a.tx.offsets.committable() == {0: 2}
    stream = next(iter(a.tx.streams.values()))
    a.tx.add_subject(stream, ANA)
    a.share(2)
    wait_for(lambda: b.writer.messages, what="B received the signal")
    token = None
    # what went over the wire names Ana's e-mail, never acct-A1
    from streams.ssf.sets import parse
    for item in list(a.tx.outbox[stream.stream_id]):
        token = item.token
    assert token is None or b"acct-A1" not in parse(token).token


def test_the_verification_event_reaches_b_and_is_counted(a, b):
    stream_id = a.open_stream(PUSH, b.url)
    assert a.api("POST", "/ssf/verify", json={"stream_id": stream_id, "state": "abc"}).status_code == 204
    wait_for(lambda: b.receiver.metrics.verifications.value(transmitter="a") == 1, what="verification counted")
    assert b.writer.messages == []


@pytest.mark.parametrize("case, code, reason", [
    ("tampered", "invalid_key", "bad_signature"),
    ("wrong_audience", "invalid_audience", "invalid_audience"),
    ("unknown_issuer", "invalid_issuer", "invalid_issuer"),
    ("unknown_key", "invalid_key", "unknown_key"),
    ("weak_key", "invalid_key", "weak_key"),
    ("sub_claim", "invalid_request", "sub_claim"),
    ("exp_claim", "invalid_request", "exp_claim"),
    ("not_a_set", "invalid_request", "malformed"),
    ("wrong_typ", "invalid_request", "bad_typ"),
    ("no_token", "authentication_failed", "authentication_failed"),
    ("media_type", "invalid_request", "media_type"),
    ("oversized", "invalid_request", "oversized"),
])
def test_each_bad_push_is_refused_with_its_code_counted_and_disturbs_nothing(a, b, case, code, reason):
    good = a.token()
    token, kw = a.token(), {}
    if case == "tampered":
        head, body, sig = token.split(b".")
        token = head + b"." + body + b"." + (b"A" if sig[:1] != b"A" else b"B") + sig[1:]
    elif case == "wrong_audience":
        token = a.token(aud="https://c.example/ssf")
    elif case == "unknown_issuer":
        token = a.token(iss="https://stranger.example")
    elif case == "unknown_key":
        token = a.token(key=rsa(2048, 1), kid="not-published")
    elif case == "weak_key":
        a.tx.rotate(rsa(1024), "weak-1")
        token = a.token(key=rsa(1024), kid="weak-1")
    elif case == "sub_claim":
        token = a.token(sub="ana")
    elif case == "exp_claim":
        token = a.token(exp=int(time.time()) + 60)
    elif case == "not_a_set":
        token = b"hello"
    elif case == "wrong_typ":
        from joserfc import jws
        token = jws.serialize_compact({"alg": "RS256", "typ": "JWT", "kid": "a-1"}, b"{}", rsa()).encode()
    elif case == "no_token":
        kw = {"token": None}
    elif case == "media_type":
        kw = {"content_type": "application/json"}
    elif case == "oversized":
        token = b"x" * (b.config.max_body_bytes + 1)
    answer = b.push(token, **kw)
    assert answer.status_code in (400, 401, 413), answer.text
    assert answer.json()["err"] == code
    if case == "weak_key":
        a.tx.rotate(rsa(), "a-1")
    transmitter = "unknown" if case == "no_token" else "a"
    assert b.receiver.metrics.refusals.value(transmitter=transmitter, code=code, reason=reason) == 1
    assert b.writer.messages == []
    assert b.push(good).status_code == 202         # nothing else disturbed
    assert [v["account_id"] for _, v in b.writer.messages] == ["acct-B9"]


def test_a_replayed_jti_is_refused_and_written_once(a, b):
    token = a.token(jti="once")
    assert b.push(token).status_code == 202
    again = b.push(token)
    assert (again.status_code, again.json()["err"]) == (400, "invalid_request")
    assert b.receiver.metrics.refusals.value(transmitter="a", code="invalid_request", reason="replayed_jti") == 1
    assert len(b.writer.messages) == 1
    assert b.writer.messages[0][1]["event_id"] == event_id(a.url, "once", "credential_compromise")


def test_a_rotated_key_verifies_new_sets_and_refuses_the_old_one(a, b):
    old = a.token(jti="old")                   # signed before the rotation, delivered after
    a.tx.rotate(rsa(2048, 2), "a-2")
    assert b.push(a.token(key=rsa(2048, 2), kid="a-2")).status_code == 202
    refused = b.push(old)
    assert (refused.status_code, refused.json()["err"]) == (400, "invalid_key")
    assert len(b.writer.messages) == 1


def test_a_slow_client_is_answered_408_and_the_receiver_keeps_serving(a, b):
    with socket.create_connection(("127.0.0.1", b.server.port), timeout=10) as sock:
        sock.sendall(b"POST /ssf/push HTTP/1.1\r\nHost: b\r\nContent-Type: application/secevent+jwt\r\n"
                     b"Authorization: Bearer push-token-for-a\r\nContent-Length: 500\r\n\r\nabc")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b'"err":"invalid_request"' in answer
    assert b.receiver.metrics.refusals.value(transmitter="a", code="invalid_request", reason="slow_client") == 1
    assert b.push(a.token()).status_code == 202


def test_an_unknown_subject_or_event_type_is_acknowledged_dropped_and_counted(a, b):
    stranger = a.token(sub_id={"format": "email", "email": "not-a-customer@example.com"})
    assert b.push(stranger).status_code == 202
    odd = a.token(events={"https://example.com/event-type/odd": {}})
    assert b.push(odd).status_code == 202
    assert b.writer.messages == []
    assert b.receiver.metrics.unknown_subjects.value(transmitter="a") == 1
    assert b.receiver.metrics.unknown_types.value(transmitter="a") == 1


def test_kafka_down_answers_503_and_the_retry_lands_once(a, b):
    token = a.token(jti="retry-me")
    b.writer.fail = True
    down = b.push(token)
    assert down.status_code == 503 and down.headers["Retry-After"] == "1"
    b.writer.fail = False
    assert b.push(token).status_code == 202
    assert len(b.writer.messages) == 1
    assert b.push(token).status_code == 400  # now it is a replay


def test_the_signal_decodes_as_the_engine_reads_it(a, b):
    b.push(a.token(events={EVENT_URIS["credential_change"]: {"change_type": "update", "credential_type": "password",
                                                                "initiating_entity": "user", "event_timestamp": 1760000000}}))
    [(key, value)] = b.writer.messages
    valid_signal(value)
    decoded = events.decode("signals", json.dumps(value).encode(), key.encode())
    assert (decoded.kind, decoded.account_id, decoded.initiating_entity) == ("credential_change", "acct-B9", "user")
    assert decoded.event_ts == 1_760_000_000_000 and decoded.change_type == "update"


def test_stream_management_needs_the_partners_token_and_hides_other_streams(a, b):
    assert a.api("GET", "/ssf/stream", token="wrong").status_code == 401
    stream_id = a.open_stream(PUSH, b.url)
    read = a.api("GET", "/ssf/stream", params={"stream_id": stream_id}).json()
    assert read["aud"] == "https://b.example/ssf" and "authorization_header" not in read["delivery"]
    assert a.api("POST", "/ssf/status", json={"stream_id": stream_id, "status": "paused"}).json()["status"] == "paused"
    assert a.api("PATCH", "/ssf/stream", json={"stream_id": stream_id, "description": "x"}).json()["description"] == "x"
    assert a.api("DELETE", "/ssf/stream", params={"stream_id": stream_id}).status_code == 204
    assert a.api("GET", "/ssf/stream", params={"stream_id": stream_id}).status_code == 404
    meta = a.api("GET", "/.well-known/ssf-configuration").json()
    assert meta["issuer"] == a.url and "urn:ietf:rfc:8936" in meta["delivery_methods_supported"]
