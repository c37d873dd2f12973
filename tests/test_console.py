"""The console without a broker: the index as tables (these outputs in, this queue out), sign-in,
roles, CSRF, headers, pseudonyms, OpenID Connect against a provider served in-process, and the
help examples of ``atoguard --help`` / ``run --help`` that must work as written."""

from __future__ import annotations

import re
import shlex
import time

import orjson
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from detectors import contract as c
from streams.console import ConsoleConfig, Index, UserStore, account_ref, create_app
from streams.console.app import CSP, verdict_for
from streams.console.auth import OidcClient, OidcSettings, hash_password, verify_password
from streams.console.index import feed_once

KEY = "test-pseudonym-key"
T0 = 1_764_000_000_000
HOUR = 3_600_000
PASSWORD = "correct horse battery"


def command(account, action, ts, cid, **more):
    return {"command_id": cid, "account_id": account, "action": action, "reasons": more.pop("reasons", ["NEW_DEVICE"]),
            "message": more.pop("message", "We paused payouts."), "risk": 0.9, "issued_at": ts,
            "expires_at": more.pop("expires_at", ts + 7 * 24 * HOUR), "trigger_event_id": more.pop("trigger", f"e-{cid}"),
            "alert_id": more.pop("alert_id", None), "policy_version": "p1", "dry_run": more.pop("dry_run", False),
            "methods": more.pop("methods", ["face", "id_check"]), **more}


def answer(account, ts, cid, kind=c.CHALLENGE_FAILED):
    return {"event_id": f"ch-{cid}", "account_id": account, "ts": ts, "kind": kind, "method": "face",
            "command_id": cid, "device_id": "raw-device-42", "ip": "203.0.113.77"}


class FakeProducer:
    def __init__(self):
        self.sent = []

    def produce(self, topic, key, value):
        self.sent.append((topic, key, orjson.loads(value)))

    def flush(self, timeout):
        return 0


@pytest.fixture
def console(tmp_path):
    index = Index(tmp_path / "index.sqlite", KEY)
    users = UserStore(tmp_path / "users.sqlite")
    for name, role in (("vera", "viewer"), ("ana", "analyst"), ("root", "admin")):
        users.add_user(name, role, PASSWORD)
    producer = FakeProducer()
    app = create_app(ConsoleConfig(key=KEY, secure_cookies=False), index, users, producer=producer)
    feed_once(index, [
        (c.ALERTS, {"finding_info": {"uid": "al1", "title": "takeover", "types": ["NEW_DEVICE"]}, "time": T0,
                    "severity": "High", "severity_id": 4, "risk_score": 90,
                    "unmapped": {"account_id": "frozen1", "action": "freeze"}}),
        (c.COMMANDS, command("frozen1", c.STEP_UP, T0 - 60_000, "s1")),
        (c.DEVICE, answer("frozen1", T0 - 30_000, "s1")),
        (c.COMMANDS, command("frozen1", c.FREEZE, T0, "f1", alert_id="al1", reasons=["CHALLENGE_FAILED", "NEW_DEVICE"])),
        (c.COMMANDS, command("stepped", c.STEP_UP, T0 + HOUR, "s2", reasons=["NEW_COUNTRY"])),
        (c.COMMANDS, command("passed", c.STEP_UP, T0 + HOUR, "s3")),
        (c.DEVICE, answer("passed", T0 + HOUR + 30_000, "s3", c.CHALLENGE_PASSED)),
        (c.COMMANDS, command("lifted", c.FREEZE, T0 - 2 * HOUR, "f4")),
        (c.COMMANDS, command("lifted", c.UNFREEZE, T0 - HOUR, "u4")),
        (c.COMMANDS, command("shadowed", c.FREEZE, T0, "f5", dry_run=True)),
    ])
    return TestClient(app, base_url="http://127.0.0.1:8080"), index, users, producer


def sign_in(client, user, password=PASSWORD):
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"user": user, "password": password, "csrf": csrf}, follow_redirects=False)


def csrf_of(page_text):
    return re.search(r'name="csrf" value="([^"]+)"', page_text).group(1)


# -- the index ------------------------------------------------------------------------------------

def test_the_queue_puts_open_freezes_first_then_unanswered_step_ups(console):
    _, index, _, _ = console
    rows = index.queue()
    assert [(r["account"], r["action"]) for r in rows] == [("frozen1", "freeze"), ("stepped", "step_up")]
    # a lifted freeze, a passed step-up and a shadow's freeze are not cases
    # the freeze's way back not tried yet (the failed answer was the step-up's); its alert's severity
    assert rows[0]["answered"] is None and rows[0]["severity"] == "High"


@pytest.mark.parametrize("filters, expected", [
    ({"reason": "NEW_COUNTRY"}, ["stepped"]),
    ({"severity": "High"}, ["frozen1"]),
    ({"answered": "no"}, ["frozen1", "stepped"]),
    ({"answered": "yes"}, ["passed"]),
    ({"max_age_h": 0.5}, ["stepped"]),  # stream time is T0 + 1 h 30 s
])
def test_the_queue_filters_by_reason_severity_answer_and_age(console, filters, expected):
    _, index, _, _ = console
    assert [r["account"] for r in index.queue(**filters)] == expected


def test_device_ids_and_addresses_are_stored_only_as_pseudonyms(console, tmp_path):
    _, index, _, _ = console
    raw = (tmp_path / "index.sqlite").read_bytes() + (tmp_path / "index.sqlite-wal").read_bytes()
    assert b"raw-device-42" not in raw and b"203.0.113.77" not in raw


def test_the_shadow_diff_sets_the_dry_run_freeze_against_nothing(console):
    _, index, _, _ = console
    feed_once(index, [(c.COMMANDS, command("stepped", c.STEP_UP, T0 + HOUR, "s2-shadow", trigger="e-s2",
                                           dry_run=True))])
    rows = {(r["account"], r["real"], r["shadow"]) for r in index.shadow_diff(24)["rows"]}
    assert ("shadowed", "-", "freeze") in rows and ("frozen1", "freeze", "-") in rows
    assert not any(account == "stepped" for account, *_ in rows)  # the shadow agrees there


# -- security -------------------------------------------------------------------------------------

def test_every_page_needs_a_sign_in(console):
    client, *_ = console
    for path in ("/", "/shadow", "/health", "/audit", f"/account/{account_ref('frozen1', KEY)}"):
        assert client.get(path, follow_redirects=False).headers["location"] == "/login"


def test_a_wrong_password_is_refused_and_audited(console):
    client, _, users, _ = console
    assert sign_in(client, "ana", "wrong password!").status_code == 401
    assert users.audit_log()[0]["action"] == "sign-in refused"


def test_pages_carry_a_content_security_policy_and_a_secure_cookie(tmp_path):
    index, users = Index(tmp_path / "i.sqlite", KEY), UserStore(tmp_path / "u.sqlite")
    client = TestClient(create_app(ConsoleConfig(key=KEY), index, users), base_url="https://console.test")
    page = client.get("/login")
    assert page.headers["content-security-policy"] == CSP and "script-src" not in CSP
    assert "default-src 'none'" in CSP and page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
    assert "<script" not in page.text


def test_a_sign_in_without_the_forms_csrf_token_is_refused(console):
    client, *_ = console
    client.get("/login")
    assert client.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": "forged"}).status_code == 403


def test_the_account_page_explains_and_shows_pseudonyms_only(console):
    client, *_ = console
    sign_in(client, "vera")
    page = client.get(f"/account/{account_ref('frozen1', KEY)}")
    assert page.status_code == 200
    assert "CHALLENGE_FAILED" in page.text and "We paused payouts." in page.text
    assert "raw-device-42" not in page.text and "203.0.113.77" not in page.text
    from detectors.outputs import pseudonym
    assert pseudonym("raw-device-42", KEY) in page.text


def test_a_viewer_cannot_give_a_verdict(console):
    client, _, _, producer = console
    sign_in(client, "vera")
    ref = account_ref("frozen1", KEY)
    page = client.get(f"/account/{ref}")
    assert 'action="/account/' not in page.text  # no verdict form
    refused = client.post(f"/account/{ref}/verdict", data={"label": "legit", "csrf": csrf_of(page.text)})
    assert refused.status_code == 403 and producer.sent == []


def test_an_analysts_legit_verdict_is_published_with_the_actor_and_audited(console):
    client, _, users, producer = console
    sign_in(client, "ana")
    ref = account_ref("frozen1", KEY)
    page = client.get(f"/account/{ref}")
    assert "lifts the freeze" in page.text
    done = client.post(f"/account/{ref}/verdict", data={"label": "legit", "note": "her new phone",
                                                        "csrf": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303
    (topic, key, value), = producer.sent
    assert topic == "ato.verdicts" and key == b"frozen1"
    assert value["label"] == "legit" and value["source"] == "analyst" and value["actor"].startswith("analyst:")
    from detectors.outputs import pseudonym
    assert value["actor"] == "analyst:" + pseudonym("console-user:ana", KEY) and value["ts"] > T0
    entry = users.audit_log(subject=ref)[0]
    assert entry["actor"] == "ana" and entry["detail"]["label"] == "legit" and "lifts" in entry["detail"]["change"]


def test_a_forged_verdict_form_is_refused(console):
    client, _, _, producer = console
    sign_in(client, "ana")
    ref = account_ref("frozen1", KEY)
    assert client.post(f"/account/{ref}/verdict", data={"label": "legit", "csrf": "x"}).status_code == 403
    assert client.post(f"/account/{ref}/verdict", data={"label": "legit", "csrf": csrf_of(client.get("/").text)},
                       headers={"origin": "https://evil.example"}).status_code == 403
    assert producer.sent == []


def test_only_an_admin_reads_the_audit_log(console):
    client, *_ = console
    sign_in(client, "ana")
    assert client.get("/audit").status_code == 403
    client.cookies.clear()
    sign_in(client, "root")
    assert client.get("/audit").status_code == 200


def test_passwords_are_hashed_with_scrypt_and_salted():
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b and a.startswith("scrypt$") and PASSWORD not in a
    assert verify_password(PASSWORD, a) and not verify_password("nope", a)


def test_a_verdict_is_checked_by_the_contracts_decoder():
    v = verdict_for("a1", "legit", "analyst:abc", T0, None, None)
    assert v["actor"] == "analyst:abc"
    with pytest.raises(Exception):
        verdict_for("a1", "maybe", "analyst:abc", T0, None, None)


# -- OpenID Connect, against a provider served in-process -----------------------------------------

@pytest.fixture
def provider():
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    issuer = "https://id.test"
    codes: dict[str, dict] = {}

    async def discovery(request):
        return JSONResponse({"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
                             "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks"})

    async def authorize(request):
        q = request.query_params
        codes["c1"] = {"nonce": q["nonce"], "challenge": q["code_challenge"]}
        return RedirectResponse(f"{q['redirect_uri']}?code=c1&state={q['state']}")

    async def token(request):
        import base64
        import hashlib

        from urllib.parse import parse_qsl

        form = dict(parse_qsl((await request.body()).decode()))
        grant = codes.pop(form["code"], None)
        want = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).rstrip(b"=").decode()
        if grant is None or want != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        claims = {"iss": issuer, "aud": "atoguard", "sub": "u-17", "preferred_username": "olga",
                  "exp": int(time.time()) + 300, "iat": int(time.time()), "nonce": grant["nonce"],
                  "roles": ["atoguard-analyst"]}
        return JSONResponse({"id_token": jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key),
                             "token_type": "Bearer", "access_token": "x"})

    async def jwks(request):
        return JSONResponse({"keys": [key.as_dict(private=False)]})

    app = Starlette(routes=[Route("/.well-known/openid-configuration", discovery), Route("/authorize", authorize),
                            Route("/token", token, methods=["POST"]), Route("/jwks", jwks)])
    return issuer, app


def test_an_openid_connect_sign_in_takes_the_role_from_the_id_token(provider, tmp_path):
    issuer, idp = provider
    oidc = OidcClient(OidcSettings(issuer, "atoguard", "secret", "http://127.0.0.1:8080/auth/callback"))
    idp_client = TestClient(idp, base_url=issuer)
    oidc._http = lambda: idp_client  # the provider in-process: the same requests, no network
    users = UserStore(tmp_path / "u.sqlite")
    client = TestClient(create_app(ConsoleConfig(key=KEY, secure_cookies=False, oidc_name=issuer),
                                   Index(tmp_path / "i.sqlite", KEY), users, oidc=oidc),
                        base_url="http://127.0.0.1:8080")
    to_idp = client.get("/auth/oidc", follow_redirects=False).headers["location"]
    back = idp_client.get(to_idp.removeprefix(issuer), follow_redirects=False).headers["location"]
    done = client.get(back.removeprefix("http://127.0.0.1:8080"), follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert "olga (analyst)" in client.get("/").text
    # a replayed answer (the code is spent, the session is gone) is refused
    assert client.get(back.removeprefix("http://127.0.0.1:8080")).status_code in (400, 401)


def test_an_openid_connect_answer_with_another_state_is_refused(provider, tmp_path):
    issuer, idp = provider
    oidc = OidcClient(OidcSettings(issuer, "atoguard", None, "http://127.0.0.1:8080/auth/callback"))
    idp_client = TestClient(idp, base_url=issuer)
    oidc._http = lambda: idp_client
    client = TestClient(create_app(ConsoleConfig(key=KEY, secure_cookies=False, oidc_name=issuer),
                                   Index(tmp_path / "i.sqlite", KEY), UserStore(tmp_path / "u.sqlite"), oidc=oidc),
                        base_url="http://127.0.0.1:8080")
    client.get("/auth/oidc", follow_redirects=False)
    assert client.get("/auth/callback?code=c1&state=forged").status_code == 401


# -- the help examples work as written ------------------------------------------------------------

def _examples(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        for part in line.split("&&"):
            part = part.split("#")[0].strip()
            try:
                words = shlex.split(part) if part else []
            except ValueError:
                continue
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if words[:2] == ["atoguard", "run"]:
                out.append(words)
    return out


@pytest.mark.parametrize("argv", [[], ["run", "--help"]])
def test_the_run_examples_in_the_help_pass_the_development_key_check(argv, capsys):
    from streams.cli import main
    from streams.config import load_config
    from streams.security import development_keys_refusal, development_run

    try:
        main(argv or ["--help"])
    except SystemExit:
        pass
    examples = _examples(capsys.readouterr().out)
    assert examples, "no atoguard run example found"
    for words in examples:
        # the built-in keys are refused without --dev; an example without it names a --config
        # whose [keys] table holds real ones (the help says so)
        assert "--dev" in words or "--config" in words, " ".join(words)
    assert development_keys_refusal(load_config(None), development_run(True)) is None
    assert development_keys_refusal(load_config(None), development_run(False, environ={})) is not None


def test_the_shadow_counts_add_up_to_one_pair_per_event(console):
    _, index, _, _ = console
    feed_once(index, [(c.COMMANDS, command("stepped", c.STEP_UP, T0 + HOUR, "s2-shadow", trigger="e-s2",
                                           dry_run=True))])
    d = index.shadow_diff(24 * 30)
    counted = dict(d["pairs"])
    assert counted[("command: step_up", "step_up")] == 1  # the real step-up and its shadow, one event
    assert counted[("command: step_up", "-")] == 2 and counted[("command: -", "freeze")] == 1
    rows = index.db().execute("SELECT count(*) FROM shadow_hourly").fetchone()[0]
    assert rows <= len(counted) * 2  # one row per hour and pair, not one per event


def test_the_workers_profile_from_its_changelog_is_shown_pseudonymised(console):
    from detectors.outputs import pseudonym
    from detectors.profile import Challenge, Device, Failure, Profile, encode
    from streams.cli.account import STAMPED_HEADER, state_key

    client, index, _, _ = console
    p = Profile(first_ts=T0 - 240 * HOUR, last_ts=T0, n_events=42,
                devices={"raw-device-42": Device(first=T0 - HOUR, last=T0)},
                challenge=Challenge("f1", c.FREEZE, T0, T0 + HOUR, ["face", "id_check"], 0.9, device="raw-device-42",
                                    ip="203.0.113.77"),
                failures=[Failure(T0 - 30_000, "face", "wrong_code", device="raw-device-42", ip="203.0.113.77")])
    # a stamped record (8 bytes of expiry before the value), as Quix writes with a TTL
    index.write([("changelog", state_key("frozen1"), b"\0" * 8 + encode(p), [(STAMPED_HEADER, b"\x01")])])
    sign_in(client, "vera")
    page = client.get(f"/account/{account_ref('frozen1', KEY)}").text
    assert "42 events" in page and "wrong_code" in page and "face, id_check" in page
    assert pseudonym("raw-device-42", KEY) in page and pseudonym("203.0.113.77", KEY) in page
    assert "raw-device-42" not in page and "203.0.113.77" not in page
