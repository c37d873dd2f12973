"""The console's web application: Starlette routes over the index, the user store and Kafka.

Why Starlette and uvicorn: a small ASGI toolkit (routing, requests, responses) with nothing to
build and no JavaScript, already a dependency of the project (streams/ssf), served by uvicorn,
the reference ASGI server; pages are rendered on the server (:mod:`streams.console.pages`).

| route | role | what |
|---|---|---|
| ``GET /login``, ``POST /login`` | - | local sign-in (CSRF token of an anonymous session) |
| ``GET /auth/oidc``, ``GET /auth/callback`` | - | OpenID Connect, authorization code + PKCE |
| ``POST /logout`` | any | ends the session |
| ``GET /`` | viewer | the live queue, with filters |
| ``GET /account/{ref}`` | viewer | an account: why, the worker's profile, the timeline, verdicts |
| ``POST /account/{ref}/verdict`` | analyst | publishes a verdict to ``<prefix>verdicts`` (v3 ``actor``) |
| ``GET /shadow`` | viewer | the shadow worker's decisions against the real one's |
| ``GET /health`` | viewer | lag, throughput, dead letters |
| ``GET /audit`` | admin | every sign-in, refusal and verdict |

Every response carries a content security policy with no script at all, ``frame-ancestors
'none'``, ``nosniff`` and ``no-referrer``; the session cookie is ``HttpOnly; Secure;
SameSite=Lax``. The access log names accounts only by their reference (a keyed pseudonym).
"""

from __future__ import annotations

import logging
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from detectors import contract as c
from detectors.events import BadInput, parse_value
from detectors.outputs import deterministic_id, pseudonym
from streams.console.auth import AuthError, OidcClient, Session, UserStore, role_at_least
from streams.console.index import Index
from streams.console.pages import CSS, render, svg_chart

__all__ = ["ConsoleConfig", "create_app", "CSP", "verdict_for", "scrape"]

log = logging.getLogger("atoguard.console")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store")]
COOKIE = "atoguard_session"
STATE_WORDS = {"freeze": "frozen", "close": "closed", "step_up": "stepped up", None: "not restricted"}
HOUR_MS = 3_600_000


@dataclass
class ConsoleConfig:
    key: str  # keys.pseudonym_hmac
    topic_prefix: str = "ato."
    bootstrap_servers: str = "127.0.0.1:9092"
    worker_metrics: tuple[str, ...] = ()
    secure_cookies: bool = True
    oidc_name: str | None = None
    refresh_s: int = 10
    producer_options: dict = field(default_factory=dict)


class _SecurityHeaders:
    """ASGI middleware: the security headers on every response, and one log line per request
    (method, path, status, user) with no client address."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {}

        async def wrapped(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)
        started = time.perf_counter()
        await self.app(scope, receive, wrapped)
        log.info("%s %s %s %.1f ms", scope["method"], scope["path"], status.get("code"),
                 (time.perf_counter() - started) * 1000)


def verdict_for(account: str, label: str, actor: str, ts: int, note: str | None, alert_id: str | None) -> dict:
    """A contract v3 verdict from an analyst: deterministic id, ``actor``, checked by the
    decoder (raises ``BadInput``)."""
    value: dict[str, Any] = {
        "verdict_id": "v-" + deterministic_id("verdict", account, alert_id or "", label, "analyst", str(ts), actor),
        "account_id": account, "ts": ts, "label": label, "source": "analyst", "actor": actor}
    if alert_id:
        value["alert_id"] = alert_id
    if note:
        value["note"] = note
    parse_value(c.VERDICTS, value)
    return value


def scrape(url: str, timeout_s: float = 2.0) -> dict[str, list[tuple[dict, float]]]:
    """A Prometheus text page as ``name -> [(labels, value)]``."""
    if not urlparse(url).scheme:
        url = "http://" + url
    if not url.rstrip("/").endswith("/metrics"):
        url = url.rstrip("/") + "/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (configured address)
        text = resp.read().decode("utf-8", "replace")
    out: dict[str, list[tuple[dict, float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = {}
        for part in rest.rstrip("}").split(","):
            if "=" in part:
                k, _, v = part.partition("=")
                labels[k.strip()] = v.strip().strip('"')
        try:
            out.setdefault(name, []).append((labels, float(value)))
        except ValueError:
            continue
    return out


def create_app(config: ConsoleConfig, index: Index, users: UserStore, *, producer=None, feeder=None,
               oidc: OidcClient | None = None) -> Starlette:
    """The console. ``producer`` is a confluent-kafka producer (murmur2 partitioning) for
    verdicts; ``feeder`` the :class:`~streams.console.index.Feeder` whose status health shows."""
    last_scrape: dict[str, tuple[float, float]] = {}

    # -- sessions ----------------------------------------------------------------------------
    def session_of(request: Request) -> Session | None:
        return users.session(request.cookies.get(COOKIE))

    def set_cookie(response: Response, s: Session) -> Response:
        response.set_cookie(COOKIE, s.sid, max_age=int(s.expires - time.time()), httponly=True,
                            secure=config.secure_cookies, samesite="lax", path="/")
        return response

    async def form_of(request: Request, s: Session | None) -> dict[str, str]:
        """The posted form, refused unless it carries the session's CSRF token and comes from
        this site."""
        import hmac

        origin = request.headers.get("origin")
        if origin and origin != "null" and urlparse(origin).netloc != request.headers.get("host"):
            raise PermissionError("the form came from another site")
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if s is None or not hmac.compare_digest(form.get("csrf", ""), s.csrf):
            raise PermissionError("the form's CSRF token is missing or wrong")
        return form

    def refuse(request: Request, s: Session | None, why: str, status: int = 403) -> Response:
        users.audit(s.user if s else None, s.role if s else None, "refused", None,
                    {"path": request.url.path, "why": why})
        return HTMLResponse(render("error", title="Refused", text=why, session=s, page=None), status_code=status)

    def need(request: Request, role: str) -> Session | Response:
        s = session_of(request)
        if s is None or not s.user:
            return RedirectResponse("/login", status_code=303)
        if not role_at_least(s.role, role):
            return refuse(request, s, f"this needs the {role} role; you are {s.role}")
        return s

    # -- sign-in -----------------------------------------------------------------------------
    async def login_page(request: Request) -> Response:
        s = session_of(request)
        if s and s.user:
            return RedirectResponse("/", status_code=303)
        s = s or users.new_session()
        return set_cookie(HTMLResponse(render("login", title="Sign in", session=s, page="login",
                                              oidc=config.oidc_name if oidc else None)), s)

    async def login(request: Request) -> Response:
        s = session_of(request)
        try:
            form = await form_of(request, s)
        except PermissionError as exc:
            return refuse(request, s, str(exc))
        name = form.get("user", "").strip()
        role = users.check_password(name, form.get("password", ""))
        if role is None:
            users.audit(name or None, None, "sign-in refused", None, {"method": "password"})
            s2 = users.new_session()
            return set_cookie(HTMLResponse(render("login", title="Sign in", session=s2, page="login",
                                                  error="Wrong user or password.",
                                                  oidc=config.oidc_name if oidc else None), status_code=401), s2)
        users.end_session(s.sid)  # a new session id on sign-in (no fixation)
        new = users.new_session(name, role)
        users.audit(name, role, "signed in", None, {"method": "password"})
        return set_cookie(RedirectResponse("/", status_code=303), new)

    async def oidc_start(request: Request) -> Response:
        if oidc is None:
            return HTMLResponse(render("error", title="Not configured", text="No identity provider is configured.",
                                       session=None, page=None), status_code=404)
        try:
            url, pending = oidc.start()
        except (AuthError, OSError) as exc:
            return HTMLResponse(render("error", title="Sign-in failed", text=str(exc), session=None, page=None),
                                status_code=502)
        s = users.new_session(oidc=pending)
        return set_cookie(RedirectResponse(url, status_code=303), s)

    async def oidc_callback(request: Request) -> Response:
        s = session_of(request)
        if oidc is None or s is None:
            return HTMLResponse(render("error", title="Sign-in failed", text="No sign-in was started here.",
                                       session=None, page=None), status_code=400)
        try:
            user, role = oidc.finish(dict(request.query_params), s.data.get("oidc") or {})
        except AuthError as exc:
            users.audit(None, None, "sign-in refused", None, {"method": "oidc", "why": str(exc)})
            return HTMLResponse(render("error", title="Sign-in failed", text=str(exc), session=None, page=None),
                                status_code=401)
        users.end_session(s.sid)
        new = users.new_session(user, role)
        users.audit(user, role, "signed in", None, {"method": "oidc"})
        return set_cookie(RedirectResponse("/", status_code=303), new)

    async def logout(request: Request) -> Response:
        s = session_of(request)
        try:
            await form_of(request, s)
        except PermissionError as exc:
            return refuse(request, s, str(exc))
        users.end_session(s.sid)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages -------------------------------------------------------------------------------
    async def queue(request: Request) -> Response:
        s = need(request, "viewer")
        if isinstance(s, Response):
            return s
        q = request.query_params
        try:
            age = float(q["age"]) if q.get("age") else None
        except ValueError:
            age = None
        f = {"reason": q.get("reason") or None, "severity": q.get("severity") or None, "age": age,
             "answered": q.get("answered") if q.get("answered") in ("yes", "no") else None}
        rows = index.queue(reason=f["reason"], severity=f["severity"], max_age_h=age, answered=f["answered"])
        db = index.db()
        reasons = sorted({code for r in db.execute("SELECT DISTINCT restriction_reasons FROM accounts WHERE "
                                                   "restriction IS NOT NULL UNION SELECT DISTINCT step_up_reasons "
                                                   "FROM accounts WHERE step_up_id IS NOT NULL LIMIT 500")
                          for code in orjson.loads(r[0] or "[]")})
        severities = [r[0] for r in db.execute("SELECT DISTINCT severity FROM alerts WHERE severity IS NOT NULL")]
        return HTMLResponse(render("queue", title="Queue", session=s, page="queue", rows=rows, f=f,
                                   filtered=any(f.values()), reasons=reasons, severities=severities,
                                   now=index.stream_now(), refresh=config.refresh_s))

    def verdict_ts(a: dict) -> int:
        """The verdict's event time: now, unless the stream lives in another time (simulated or
        replayed data), then the stream's newest time, and never before the account's last."""
        now_ms = int(time.time() * 1000)
        stream = index.stream_now() or now_ms
        base = now_ms if abs(now_ms - stream) < HOUR_MS else stream
        last = max(a.get("last_ts") or 0, a.get("restriction_ts") or 0, a.get("step_up_ts") or 0)
        return max(base, last + 1)

    def changes(a: dict, ts: int) -> dict[str, str]:
        from streams.cli.verdict import AccountHistory, expected_change

        restriction = None
        if a.get("restriction"):
            restriction = {"action": a["restriction"], "issued_at": a["restriction_ts"],
                           "expires_at": a["restriction_until"]}
        h = AccountHistory(restriction=restriction, latest_ts=a.get("last_ts"))
        return {label: expected_change(h, label, "analyst", ts) + ("; the models learn it as a takeover"
                                                                     if label == "ato" else "")
                for label in ("legit", "ato")}

    async def account(request: Request) -> Response:
        s = need(request, "viewer")
        if isinstance(s, Response):
            return s
        a = index.account(request.path_params["ref"])
        if a is None:
            return HTMLResponse(render("error", title="Unknown account", text="No such account in the index.",
                                       session=s, page=None), status_code=404)
        timeline = index.timeline(a["account"])
        commands = [e for e in timeline if e["what"] == "command" and not e["dry_run"]]
        why = next((e for e in reversed(commands) if e["action"] != c.UNFREEZE), None)
        state = a["restriction"] or ("step_up" if a["step_up_id"] else None)
        ts = verdict_ts(a)
        flash = {"published": "Verdict published; the worker's answer appears in the timeline when it arrives."}.get(
            request.query_params.get("done", ""))
        return HTMLResponse(render("account", title="Account", session=s, page="account", a=a, p=a["profile"],
                                   timeline=timeline, why=why, state=state or "none",
                                   state_words=STATE_WORDS.get(state, state), change=changes(a, ts),
                                   verdict_ts=ts, can_judge=role_at_least(s.role, "analyst"), flash=flash,
                                   audit=users.audit_log(50, subject=a["ref"])))

    async def verdict(request: Request) -> Response:
        s = session_of(request)
        try:
            form = await form_of(request, s)
        except PermissionError as exc:
            return refuse(request, s, str(exc))
        if not s.user:
            return RedirectResponse("/login", status_code=303)
        if not role_at_least(s.role, "analyst"):
            return refuse(request, s, f"a verdict needs the analyst role; you are {s.role}")
        a = index.account(request.path_params["ref"])
        if a is None:
            return refuse(request, s, "no such account", 404)
        label = form.get("label")
        if label not in c.VERDICT_LABELS:
            return refuse(request, s, "choose ato or legit", 400)
        note = (form.get("note") or "").strip()[:1000] or None
        ts = verdict_ts(a)
        change = changes(a, ts)[label]
        actor = "analyst:" + pseudonym("console-user:" + s.user, config.key)
        try:
            value = verdict_for(a["account"], label, actor, ts, note,
                                a.get("restriction_alert") or a.get("step_up_alert"))
        except (BadInput, ValueError) as exc:
            return refuse(request, s, f"the verdict is not valid: {exc}", 400)
        if producer is None:
            return refuse(request, s, "this console has no Kafka producer", 503)
        producer.produce(f"{config.topic_prefix}{c.VERDICTS}", key=a["account"].encode(), value=orjson.dumps(value))
        left = producer.flush(10)
        if left:
            return refuse(request, s, "the verdict could not be delivered to Kafka within 10 s", 502)
        users.audit(s.user, s.role, "verdict", a["ref"], {"label": label, "note": note, "change": change,
                                                           "verdict_id": value["verdict_id"], "ts": ts,
                                                           "actor": actor})
        return RedirectResponse(f"/account/{a['ref']}?done=published", status_code=303)

    async def shadow(request: Request) -> Response:
        s = need(request, "viewer")
        if isinstance(s, Response):
            return s
        try:
            hours = max(1.0, min(24 * 90.0, float(request.query_params.get("hours") or 24)))
        except ValueError:
            hours = 24.0
        d = index.shadow_diff(hours)
        return HTMLResponse(render("shadow", title="Policy in shadow", session=s, page="shadow", d=d,
                                   hours=f"{hours:g}", chart=svg_chart(d["hourly"])))

    async def health(request: Request) -> Response:
        s = need(request, "viewer")
        if isinstance(s, Response):
            return s
        workers = []
        for url in config.worker_metrics:
            w: dict[str, Any] = {"url": url}
            try:
                m = scrape(url)
            except (OSError, ValueError) as exc:
                w["error"] = f"no metrics from {url}: {exc}"
                workers.append(w)
                continue
            total = lambda name: sum(v for _, v in m.get(name, []))  # noqa: E731
            w["lag_rows"] = sorted((lb.get("topic", "?"), lb.get("partition", "?"), v)
                                   for lb, v in m.get("atoguard_consumer_lag", []))
            w["lag"] = sum(v for *_, v in w["lag_rows"])
            w["events"] = total("atoguard_events_total")
            w["commands"] = total("atoguard_commands_total")
            w["dead_rows"] = sorted(((lb.get("topic", "?"), lb.get("reason", "?"), v)
                                     for lb, v in m.get("atoguard_dead_letters_total", [])), key=lambda r: -r[2])
            w["dead"] = sum(r[2] for r in w["dead_rows"])
            now = time.monotonic()
            before = last_scrape.get(url)
            w["rate"] = ((w["events"] - before[1]) / (now - before[0])) if before and now > before[0] else None
            last_scrape[url] = (now, w["events"])
            workers.append(w)
        feed = feeder.status if feeder is not None else None
        return HTMLResponse(render("health", title="Health", session=s, page="health", workers=workers,
                                   dead=index.dead_letters_by_reason(), counts=index.counts(),
                                   feed=feed or {"topics": (), "records": 0, "caught_up": False,
                                                 "last_error": None}))

    async def audit(request: Request) -> Response:
        s = need(request, "admin")
        if isinstance(s, Response):
            return s
        return HTMLResponse(render("audit", title="Audit", session=s, page="audit", rows=users.audit_log(500)))

    async def css(request: Request) -> Response:
        return Response(CSS, media_type="text/css")

    routes = [
        Route("/", queue), Route("/login", login_page, methods=["GET"]), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]), Route("/auth/oidc", oidc_start),
        Route("/auth/callback", oidc_callback), Route("/account/{ref}", account),
        Route("/account/{ref}/verdict", verdict, methods=["POST"]), Route("/shadow", shadow),
        Route("/health", health), Route("/audit", audit), Route("/static/console.css", css),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_SecurityHeaders)
    return app
