"""Users, roles and sessions of the workstation: local accounts, a session cookie, FastAPI dependencies.

* **Accounts** (table ``users``): user name (lower case letters, digits, ``.``, ``_``, ``-``), display
  name, role (``radiologist``: view, review, sign; ``technologist``: view, re-run analyses; ``admin``:
  users and settings, no review, no sign) and a scrypt hash of the password (``hashlib.scrypt``,
  n=2**14, r=8, p=1, a random 16-byte salt per user), compared in constant time.
* **Sessions** (table ``sessions``): a random 256-bit token per login, sent as the ``medimg_session``
  cookie (HttpOnly, SameSite=Strict, Secure over HTTPS); the table keeps only the token's SHA-256, so
  a copy of the database opens no session.  A session lasts :data:`SESSION_SECONDS` (12 hours, a
  reading shift) from the login, then the user signs in again; logging out ends it at once.
* **Lockout**: :data:`MAX_FAILURES` wrong passwords in a row lock the account for
  :data:`LOCKOUT_SECONDS`; a locked account is answered 429 (with ``Retry-After``) without the
  password being checked.  An unknown user name costs the same scrypt work as a known one.
* **Guard**: :class:`SessionGuard` (installed by :func:`install`) answers 401 to every ``/api/*``
  request without a valid session, except ``/api/login`` and ``/api/health`` (and CORS preflights).
  ``/dicomweb/*`` is guarded too: a session cookie (the workstation's viewer) or HTTP Basic
  credentials of an active account (PACS, OHIF behind a proxy, scripts); a Basic answer is remembered
  for :data:`BASIC_CACHE_SECONDS` by the SHA-256 of the header, so a viewer's hundreds of frame
  requests cost one scrypt check (the account is still looked up, so disabling it works at once).
  Wrong Basic passwords count towards the lockout like sign-ins.
  ``auth = false`` in the server config turns the guard off (ingest-only nodes, benchmarks); the
  endpoints that act as a person (review, sign, users, the event stream) need a session even then.

Use in routes: ``user: CurrentUser`` (any signed-in user) or
``user: Annotated[User, Depends(require_role("radiologist"))]``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..store import Store
from ..store import schema as t

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from .app import MedimgServer

__all__ = ["COOKIE", "LOCKOUT_SECONDS", "MAX_FAILURES", "ROLES", "SESSION_SECONDS", "AdminUser", "CurrentUser",
           "LoginRefused", "RadiologistUser", "SessionGuard", "User", "authenticate", "close_session", "create_user",
           "current_user", "hash_password", "install", "list_users", "open_session", "require_role",
           "router", "session_user", "set_active", "set_password", "verify_password"]

log = logging.getLogger("medimg.server.auth")

ROLES = ("radiologist", "technologist", "admin")
COOKIE = "medimg_session"
SESSION_SECONDS = 12 * 3600
MAX_FAILURES = 5
LOCKOUT_SECONDS = 120
MIN_PASSWORD = 8
#: ``/api/*`` paths open without a session (exact matches only).
OPEN_PATHS = frozenset({"/api/login", "/api/health"})
#: How long a checked HTTP Basic header of ``/dicomweb`` stands without another password check.
BASIC_CACHE_SECONDS = 60.0
_BASIC_REALM = 'Basic realm="medimg DICOMweb", charset="UTF-8"'

_N, _R, _P, _DKLEN = 1 << 14, 8, 1, 32
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class User:
    """A signed-in (or listed) account."""

    id: int
    username: str
    display_name: str
    role: str
    active: bool = True

    @property
    def name(self) -> str:
        """How reports name the user: the display name, else the user name."""
        return self.display_name or self.username

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "display_name": self.display_name, "role": self.role}


class LoginRefused(Exception):
    """A login that did not succeed: ``status`` 401 (wrong credentials) or 429 (locked)."""

    def __init__(self, status: int, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


# ---------------------------------------------------------------------------------------- passwords
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``password`` with a new random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(expected), maxmem=256 * int(r) * int(n) + (1 << 20))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


#: Checked against when the user name is unknown, so that both cases cost the same time.
_DUMMY_HASH = hash_password(secrets.token_hex(16))


def _check_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        msg = (f"user name {username[:80]!r} is not valid: use 1-64 lower-case letters, digits, '.', '_' "
               "or '-', starting with a letter or digit")
        raise ValueError(msg)
    return name


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        msg = f"the password is too short ({len(password)} characters); use at least {MIN_PASSWORD}"
        raise ValueError(msg)
    if len(password) > 1024:
        msg = "the password is longer than 1024 characters"
        raise ValueError(msg)


def _check_role(role: str) -> str:
    if role not in ROLES:
        msg = f"role {role!r} is unknown; use one of {', '.join(ROLES)}"
        raise ValueError(msg)
    return role


# ---------------------------------------------------------------------------------------- accounts
def _user(row: Any) -> User:
    return User(int(row.id), row.username, row.display_name, row.role, bool(row.active))


def create_user(store: Store, username: str, password: str, role: str, display_name: str = "") -> User:
    """Create an account.  ``ValueError`` (one line) for a bad name, role or password, or a user name
    that is taken."""
    name = _check_username(username)
    _check_role(role)
    _check_password(password)
    display = " ".join(display_name.split())[:128]
    try:
        with store.engine.execution_options(immediate=True).begin() as conn:
            key = conn.execute(insert(t.users).values(
                username=name, display_name=display, role=role, password_hash=hash_password(password),
                active=True, created=time.time(), failed_logins=0, locked_until=0.0)).inserted_primary_key
    except IntegrityError:
        msg = f"user {name!r} exists already"
        raise ValueError(msg) from None
    assert key is not None
    return User(int(key[0]), name, display, role)


def list_users(store: Store) -> list[User]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.users).order_by(t.users.c.username)).all()
    return [_user(r) for r in rows]


def _find(store: Store, username: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(select(t.users).where(t.users.c.username == username.strip().lower())).first()


def set_password(store: Store, username: str, password: str) -> None:
    """Change a password; every session of the user ends.  ``KeyError`` for an unknown user."""
    _check_password(password)
    row = _find(store, username)
    if row is None:
        raise KeyError(username)
    with store.engine.execution_options(immediate=True).begin() as conn:
        conn.execute(update(t.users).where(t.users.c.id == row.id)
                     .values(password_hash=hash_password(password), failed_logins=0, locked_until=0.0))
        conn.execute(delete(t.sessions).where(t.sessions.c.user_pk == row.id))


def set_active(store: Store, username: str, active: bool) -> None:
    """Enable or disable an account (a disabled one cannot sign in; its sessions end)."""
    row = _find(store, username)
    if row is None:
        raise KeyError(username)
    with store.engine.execution_options(immediate=True).begin() as conn:
        conn.execute(update(t.users).where(t.users.c.id == row.id).values(active=active))
        if not active:
            conn.execute(delete(t.sessions).where(t.sessions.c.user_pk == row.id))


# ---------------------------------------------------------------------------------------- sessions
def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate(store: Store, username: str, password: str) -> User:
    """The user whose credentials these are, or :class:`LoginRefused` (401 wrong, 429 locked)."""
    now = time.time()
    wrong = LoginRefused(401, "wrong user name or password")
    try:
        name = _check_username(username)
    except ValueError:
        verify_password(password, _DUMMY_HASH)
        raise wrong from None
    row = _find(store, name)
    if row is None or not row.active:
        verify_password(password, _DUMMY_HASH)
        raise wrong
    if row.locked_until > now:
        wait = max(1, int(row.locked_until - now + 0.999))
        raise LoginRefused(429, f"too many failed sign-ins for {name}; the account is locked for another "
                                f"{wait} s", wait)
    db = store.engine.execution_options(immediate=True)
    if not verify_password(password, row.password_hash):
        failures = int(row.failed_logins) + 1
        values: dict[str, Any] = {"failed_logins": failures}
        if failures >= MAX_FAILURES:
            values = {"failed_logins": 0, "locked_until": now + LOCKOUT_SECONDS}
        with db.begin() as conn:
            conn.execute(update(t.users).where(t.users.c.id == row.id).values(**values))
        raise wrong
    if row.failed_logins:
        with db.begin() as conn:
            conn.execute(update(t.users).where(t.users.c.id == row.id).values(failed_logins=0))
    return _user(row)


def open_session(store: Store, user: User, seconds: float = SESSION_SECONDS) -> str:
    """A new session of ``user``; returns its token (the cookie value).  Expired sessions are purged."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    with store.engine.execution_options(immediate=True).begin() as conn:
        conn.execute(delete(t.sessions).where(t.sessions.c.expires <= now))
        conn.execute(insert(t.sessions).values(token_sha256=_token_key(token), user_pk=user.id, created=now,
                                               expires=now + seconds))
    return token


def session_user(store: Store, token: str | None) -> User | None:
    """The user of a live session, or ``None`` (no token, unknown, expired, user disabled)."""
    if not token or len(token) > 256:
        return None
    u, s = t.users, t.sessions
    with store.engine.connect() as conn:
        row = conn.execute(select(u).join(s, s.c.user_pk == u.c.id)
                           .where(s.c.token_sha256 == _token_key(token), s.c.expires > time.time(),
                                  u.c.active.is_(True))).first()
    return _user(row) if row is not None else None


def close_session(store: Store, token: str | None) -> None:
    if token:
        with store.engine.execution_options(immediate=True).begin() as conn:
            conn.execute(delete(t.sessions).where(t.sessions.c.token_sha256 == _token_key(token)))


# ---------------------------------------------------------------------------------------- FastAPI
def _store(request: Request) -> Store:
    store: Store = request.app.state.auth_store
    return store


def current_user(request: Request) -> User:
    """Dependency: the signed-in user (401 without a valid session)."""
    user = getattr(request.state, "user", None)
    if isinstance(user, User):
        return user
    user = session_user(_store(request), request.cookies.get(COOKIE))
    if user is None:
        raise HTTPException(401, "not signed in: POST /api/login first (the session may have expired)")
    request.state.user = user
    return user


#: A route parameter: the signed-in user.
CurrentUser = Annotated[User, Depends(current_user)]


def require_role(*roles: str) -> Callable[..., User]:
    """Dependency factory: the signed-in user if their role is one of ``roles``, else 403."""
    for role in roles:
        _check_role(role)

    def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(403, f"{user.username} is a {user.role}; this needs the role "
                                     f"{' or '.join(roles)}")
        return user

    return check


#: Route parameters: the signed-in user when an admin / a radiologist (403 otherwise).
AdminUser = Annotated[User, Depends(require_role("admin"))]
RadiologistUser = Annotated[User, Depends(require_role("radiologist"))]


class SessionGuard:
    """ASGI middleware: 401 for ``/api/*`` requests without a valid session and for ``/dicomweb/*``
    requests without a session or HTTP Basic credentials (see the module docstring).
    The user found is left in ``request.state.user`` for :func:`current_user`."""

    def __init__(self, app: ASGIApp, store: Store, required: bool = True) -> None:
        self.app = app
        self.store = store
        self.required = required
        self._lock = threading.Lock()
        self._basic: dict[str, tuple[User, float]] = {}  # SHA-256 of a checked header -> (user, until)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        dicomweb = path == "/dicomweb" or path.startswith("/dicomweb/")
        if (not self.required or not (path.startswith("/api/") or dicomweb) or path in OPEN_PATHS
                or scope.get("method") == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        import anyio
        from starlette.requests import HTTPConnection
        from starlette.responses import JSONResponse

        conn = HTTPConnection(scope)
        token = conn.cookies.get(COOKIE)
        user = await anyio.to_thread.run_sync(session_user, self.store, token) if token else None
        basic = conn.headers.get("authorization", "")
        refused: LoginRefused | None = None
        if user is None and dicomweb and basic[:6].lower() == "basic ":
            try:
                user = await anyio.to_thread.run_sync(self._basic_user, basic)
            except LoginRefused as exc:
                refused = exc
        if user is None:
            if not dicomweb:
                error, status, headers = ("not signed in: POST /api/login first (the session may have expired)",
                                          401, {})
            elif refused is not None:
                error, status = f"{path}: {refused.message}", refused.status
                headers = ({"Retry-After": str(refused.retry_after)} if status == 429
                           else {"WWW-Authenticate": _BASIC_REALM})
            else:
                error = f"{path}: not signed in: send HTTP Basic credentials of a medimg account or a session cookie"
                status, headers = 401, {"WWW-Authenticate": _BASIC_REALM}
            await JSONResponse({"error": error}, status_code=status, headers=headers)(scope, receive, send)
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)

    def _basic_user(self, header: str) -> User:
        """The account of an HTTP Basic ``Authorization`` header (:class:`LoginRefused` if none)."""
        key = hashlib.sha256(header.encode("utf-8", "surrogateescape")).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._basic.get(key)
        if hit is not None and hit[1] > now:
            row = _find(self.store, hit[0].username)  # one cheap query: a disabled account stops at once
            if row is not None and row.active:
                return hit[0]
        try:
            username, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise LoginRefused(401, "the Authorization header is not valid HTTP Basic (base64 of user:password)") from None
        user = authenticate(self.store, username, password)
        with self._lock:
            if len(self._basic) >= 256:
                self._basic = {k: v for k, v in self._basic.items() if v[1] > now}
            self._basic[key] = (user, now + BASIC_CACHE_SECONDS)
        return user


def install(app: FastAPI, server: MedimgServer) -> None:
    """Put the session guard in front of ``app`` (``auth = false`` in the config leaves the other
    ``/api`` endpoints open) and make the store known to :func:`current_user`."""
    app.state.auth_store = server.store
    required = bool(getattr(server.config, "auth", True))
    if not required:
        log.warning("auth = false: /dicomweb and the /api endpoints other than review, sign and users are open to "
                     "anyone who can reach %s:%d", server.config.host, server.config.http_port)
    app.add_middleware(SessionGuard, store=server.store, required=required)


class LoginBody(BaseModel):
    username: str = Field(max_length=128)
    password: str = Field(max_length=1024)


class NewUser(BaseModel):
    username: str = Field(max_length=128)
    password: str = Field(max_length=1024)
    role: str
    display_name: str = Field(default="", max_length=128)


def router(server: MedimgServer) -> APIRouter:
    """``POST /api/login``, ``POST /api/logout``, ``GET /api/me``, ``GET/POST /api/users``."""
    store = server.store
    r = APIRouter(prefix="/api")

    def event(actor: str, action: str, detail: dict[str, Any]) -> None:
        try:
            store.log_event(actor, action, None, detail)
        except Exception:
            log.exception("cannot record event %s of %s", action, actor)

    @r.post("/login")
    def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
        client = request.client.host if request.client else ""
        try:
            user = authenticate(store, body.username, body.password)
        except LoginRefused as exc:
            event(body.username[:64] or "?", "login_failed", {"status": exc.status, "client": client})
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            raise HTTPException(exc.status, exc.message, headers=headers) from None
        token = open_session(store, user)
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                            secure=secure, path="/")
        event(user.username, "login", {"client": client})
        return user.to_dict()

    @r.post("/logout")
    def logout(user: CurrentUser, request: Request, response: Response) -> dict[str, Any]:
        close_session(store, request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        event(user.username, "logout", {})
        return {"signed_out": user.username}

    @r.get("/me")
    def me(user: CurrentUser) -> dict[str, Any]:
        return user.to_dict()

    @r.get("/users")
    def users(_admin: AdminUser) -> dict[str, Any]:
        return {"items": [{**u.to_dict(), "active": u.active} for u in list_users(store)]}

    @r.post("/users", status_code=201)
    def add_user(admin: AdminUser, body: NewUser) -> dict[str, Any]:
        try:
            user = create_user(store, body.username, body.password, body.role, body.display_name)
        except ValueError as exc:
            status = 409 if "exists already" in str(exc) else 400
            raise HTTPException(status, str(exc)) from None
        event(admin.username, "user_created", {"username": user.username, "role": user.role})
        return user.to_dict()

    return r
