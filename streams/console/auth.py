"""Who may use the console, and how they prove it.

* **Local accounts** (a single-node install): user name, role and a password hashed with
  ``hashlib.scrypt`` (n=2**14, r=8, p=1, a 16-byte random salt per user; the standard library,
  nothing to compile), kept in the console's own SQLite file (``--users``), never in the index,
  which can be rebuilt from the topics at any time.
* **OpenID Connect** (:class:`OidcClient`): the authorization code flow with PKCE (S256),
  ``state`` and ``nonce``, against the provider named by its issuer URL (discovery at
  ``/.well-known/openid-configuration``); the ID token is verified with the provider's JWKS
  (joserfc): signature, ``iss``, ``aud``, ``exp``, ``nonce``. The role comes from a claim (by
  default ``roles``: ``atoguard-admin``, ``atoguard-analyst`` or ``atoguard-viewer``), else viewer.
* **Sessions**: a random 32-byte id in an ``HttpOnly; Secure; SameSite=Lax`` cookie; the server
  keeps only its SHA-256, with the user, role, CSRF token and expiry. Sign-out deletes it.
* **CSRF**: every form carries the session's token (a synchronizer token), checked with
  ``hmac.compare_digest`` on every POST, sign-in included (the sign-in page opens an anonymous
  session for it); a POST whose ``Origin`` is another site is refused too.
* **Audit**: every sign-in, refusal and verdict is a row (who, when, what) in the same file.

Roles, each including the one before: ``viewer`` reads every page; ``analyst`` gives verdicts;
``admin`` reads the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

__all__ = ["ROLES", "AuthError", "OidcClient", "OidcSettings", "Session", "UserStore", "hash_password",
           "verify_password", "role_at_least"]

ROLES = ("viewer", "analyst", "admin")
SESSION_S = 8 * 3600
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}


class AuthError(Exception):
    """A refusal the user is told about in one line."""


def role_at_least(role: str | None, needed: str) -> bool:
    """``True`` when ``role`` includes ``needed``.

    >>> role_at_least("admin", "analyst"), role_at_least("viewer", "analyst")
    (True, False)
    """
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64).

    >>> verify_password("pw", hash_password("pw")), verify_password("px", hash_password("pw"))
    (True, False)
    """
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass
class Session:
    sid: str  # the cookie's value (only its hash is stored)
    user: str | None  # None: an anonymous session (the sign-in form's CSRF token)
    role: str | None
    csrf: str
    expires: float
    data: dict[str, Any]


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class UserStore:
    """Users, sessions and the audit log, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT,
          origin TEXT NOT NULL DEFAULT 'local', created REAL);
        CREATE TABLE IF NOT EXISTS sessions (sid TEXT PRIMARY KEY, user TEXT, role TEXT, csrf TEXT NOT NULL,
          expires REAL NOT NULL, data TEXT NOT NULL DEFAULT '{}');
        CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT,
          role TEXT, action TEXT NOT NULL, subject TEXT, detail TEXT);
        """)

    # users
    def add_user(self, name: str, role: str, password: str) -> None:
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if len(password) < 12:
            raise AuthError("a password needs at least 12 characters")
        with self._lock:
            self._db.execute("INSERT INTO users VALUES (?,?,?,'local',?) ON CONFLICT(name) DO UPDATE SET "
                             "role=excluded.role, password=excluded.password", (name, role, hash_password(password),
                                                                                 time.time()))

    def check_password(self, name: str, password: str) -> str | None:
        """The user's role when the password is right, else ``None`` (the same time either way:
        an unknown user is checked against a dummy hash)."""
        row = self._db.execute("SELECT role, password FROM users WHERE name=? AND origin='local'", (name,)).fetchone()
        stored = row["password"] if row else _DUMMY
        ok = verify_password(password, stored)
        return row["role"] if (row and ok) else None

    def users(self) -> list[dict]:
        return [dict(r) for r in self._db.execute("SELECT name, role, origin, created FROM users ORDER BY name")]

    # sessions
    def new_session(self, user: str | None = None, role: str | None = None, **data: Any) -> Session:
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = time.time() + SESSION_S
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            self._db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?)",
                             (_sid_hash(sid), user, role, csrf, expires, orjson.dumps(data).decode()))
        return Session(sid, user, role, csrf, expires, data)

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        row = self._db.execute("SELECT * FROM sessions WHERE sid=?", (_sid_hash(sid),)).fetchone()
        if row is None or row["expires"] < time.time():
            return None
        return Session(sid, row["user"], row["role"], row["csrf"], row["expires"], orjson.loads(row["data"]))

    def end_session(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._db.execute("DELETE FROM sessions WHERE sid=?", (_sid_hash(sid),))

    # audit
    def audit(self, actor: str | None, role: str | None, action: str, subject: str | None = None,
              detail: dict | None = None) -> None:
        with self._lock:
            self._db.execute("INSERT INTO audit(at, actor, role, action, subject, detail) VALUES (?,?,?,?,?,?)",
                             (time.time(), actor, role, action, subject,
                              orjson.dumps(detail or {}).decode()))

    def audit_log(self, limit: int = 200, subject: str | None = None) -> list[dict]:
        sql = "SELECT * FROM audit" + (" WHERE subject=?" if subject else "") + " ORDER BY id DESC LIMIT ?"
        rows = self._db.execute(sql, (subject, limit) if subject else (limit,))
        return [dict(r, detail=orjson.loads(r["detail"] or "{}")) for r in rows]


_DUMMY = hash_password("a dummy password nobody has", b"0123456789abcdef")


# -- OpenID Connect --------------------------------------------------------------------------------

@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str | None
    redirect_uri: str  # <console>/auth/callback
    role_claim: str = "roles"
    scope: str = "openid profile email"


class OidcClient:
    """The authorization code flow (with PKCE) against one provider. ``transport`` is an httpx
    transport, for tests against a provider served in-process."""

    def __init__(self, settings: OidcSettings, transport=None) -> None:
        self.settings = settings
        self._transport = transport
        self._meta: dict | None = None
        self._jwks: dict | None = None

    def _http(self):
        import httpx

        return httpx.Client(transport=self._transport, timeout=10, follow_redirects=False)

    def metadata(self) -> dict:
        if self._meta is None:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            with self._http() as http:
                resp = http.get(url)
            if resp.status_code != 200:
                raise AuthError(f"the identity provider's discovery document answered {resp.status_code}")
            meta = resp.json()
            if meta.get("issuer") != self.settings.issuer:
                raise AuthError("the identity provider's discovery document names another issuer")
            self._meta = meta
        return self._meta

    def start(self) -> tuple[str, dict]:
        """The provider's authorization URL and what the session must remember to check the
        answer (state, nonce, PKCE verifier)."""
        meta = self.metadata()
        state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({"response_type": "code", "client_id": self.settings.client_id,
                           "redirect_uri": self.settings.redirect_uri, "scope": self.settings.scope,
                           "state": state, "nonce": nonce, "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        return f"{meta['authorization_endpoint']}?{query}", {"state": state, "nonce": nonce, "verifier": verifier}

    def finish(self, params: dict, pending: dict) -> tuple[str, str]:
        """Check the provider's answer against ``pending`` (from :meth:`start`), exchange the
        code, verify the ID token; returns ``(user, role)``."""
        if params.get("error"):
            raise AuthError(f"the identity provider refused: {params['error']}")
        if not pending or not hmac.compare_digest(str(params.get("state", "")), str(pending.get("state", ""))):
            raise AuthError("the sign-in answer does not belong to this session (state)")
        meta = self.metadata()
        form = {"grant_type": "authorization_code", "code": params.get("code", ""),
                "redirect_uri": self.settings.redirect_uri, "client_id": self.settings.client_id,
                "code_verifier": pending["verifier"]}
        auth = (self.settings.client_id, self.settings.client_secret) if self.settings.client_secret else None
        with self._http() as http:
            resp = http.post(meta["token_endpoint"], data=form, auth=auth)
            if resp.status_code != 200:
                raise AuthError(f"the identity provider refused the code ({resp.status_code})")
            id_token = resp.json().get("id_token")
            if self._jwks is None:
                self._jwks = http.get(meta["jwks_uri"]).json()
        claims = self._verify(id_token, pending["nonce"])
        user = claims.get("preferred_username") or claims.get("email") or claims["sub"]
        return str(user), self._role(claims)

    def _verify(self, token: str | None, nonce: str) -> dict:
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        if not token:
            raise AuthError("the identity provider sent no ID token")
        try:
            decoded = jwt.decode(token, KeySet.import_key_set(self._jwks), algorithms=["RS256", "ES256", "PS256"])
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.settings.issuer},
                                  aud={"essential": True, "value": self.settings.client_id},
                                  exp={"essential": True}, sub={"essential": True},
                                  nonce={"essential": True, "value": nonce}).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise AuthError(f"the ID token does not verify: {type(exc).__name__}") from None
        return decoded.claims

    def _role(self, claims: dict) -> str:
        value = claims.get(self.settings.role_claim) or []
        values = [value] if isinstance(value, str) else list(value)
        for role in reversed(ROLES):
            if f"atoguard-{role}" in values or role in values:
                return role
        return "viewer"
