"""Users, roles and sessions of a running medimg server (server/auth.py): login and the session cookie,
401 on /api/* without a session (login and health excepted), logout, admin-only user management,
the lockout after repeated wrong passwords, scrypt hashes and token digests at rest, expired and
disabled accounts, and a server with ``auth = false``.

Real servers on loopback ports (analysis off), httpx clients keeping their cookies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from medimg.server import auth
from medimg.store import schema as t

PASSWORD = "correct horse battery"


@dataclass
class Site:
    server: Any
    url: str
    study_uid: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    @contextmanager
    def login(self, username: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
        """A client signed in as ``username`` (its cookie jar holds the session)."""
        with self.client() as c:
            r = c.post("/api/login", json={"username": username, "password": password})
            assert r.status_code == 200, r.text
            yield c


@pytest.fixture
def site(medimg_server: Callable[..., Any], pydicom_data_dir: Path) -> Iterator[Site]:
    server = medimg_server(auth=True)
    for username, role, name in (("ada", "radiologist", "Dr Ada Lovelace"), ("tom", "technologist", "Tom Tech"),
                                 ("root", "admin", "Administrator")):
        auth.create_user(server.store, username, PASSWORD, role, name)
    uid = server.store.put_path(pydicom_data_dir / "693_UNCR.dcm", source="test").study_uid
    yield Site(server, f"http://127.0.0.1:{server.config.http_port}", uid)


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["error"], str) and "\n" not in body["error"]
    return str(body["error"])


def test_login_sets_a_strict_http_only_cookie_and_me_answers(site: Site) -> None:
    with site.client() as c:
        r = c.post("/api/login", json={"username": "Ada", "password": PASSWORD})  # names are case-insensitive
        assert r.status_code == 200
        assert r.json() == {"username": "ada", "display_name": "Dr Ada Lovelace", "role": "radiologist"}
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{auth.COOKIE}=")
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
        assert "httponly" in attributes
        assert attributes["samesite"].lower() == "samesite=strict"
        assert attributes["path"] == "Path=/"
        assert attributes["max-age"] == f"Max-Age={auth.SESSION_SECONDS}"
        me = c.get("/api/me")
        assert me.status_code == 200
        assert me.json()["username"] == "ada"


def test_every_api_endpoint_but_login_and_health_needs_a_session(site: Site) -> None:
    uid = site.study_uid
    with site.client() as anon:
        assert anon.get("/api/health").status_code == 200
        for method, path in (("GET", "/api/worklist"), ("GET", f"/api/studies/{uid}"),
                             ("GET", f"/api/studies/{uid}/report"), ("POST", f"/api/studies/{uid}/analyze"),
                             ("GET", "/api/events"), ("GET", "/api/events/stream"), ("GET", "/api/me"),
                             ("GET", "/api/users"), ("POST", "/api/logout"), ("GET", f"/api/studies/{uid}/review"),
                             ("POST", f"/api/studies/{uid}/sign"), ("GET", f"/api/studies/{uid}/history"),
                             ("GET", f"/api/studies/{uid}/mesh/lung_left.stl"), ("GET", "/api/no-such-endpoint")):
            assert "not signed in" in error_of(anon.request(method, path), 401), (method, path)
        forged = site.client()
        forged.cookies.set(auth.COOKIE, "x" * 43)
        assert forged.get("/api/worklist").status_code == 401
        forged.close()
    with site.login("tom") as c:
        assert c.get("/api/worklist").status_code == 200
        assert c.get(f"/api/studies/{uid}").json()["study"]["study_uid"] == uid


def test_dicomweb_needs_a_session_or_basic_credentials(site: Site) -> None:
    uid = site.study_uid
    studies = f"/dicomweb/studies?StudyInstanceUID={uid}"
    metadata = f"/dicomweb/studies/{uid}/metadata"
    with site.client() as anon:
        for path in (studies, metadata, "/dicomweb/studies/1.2/series", "/dicomweb"):
            r = anon.get(path)
            assert "not signed in" in error_of(r, 401) and path.split("?")[0] in r.json()["error"], path
            assert r.headers["www-authenticate"].startswith('Basic realm="medimg DICOMweb"')
        assert anon.post("/dicomweb/studies", content=b"x").status_code == 401  # no STOW without an account
        for bad in (("ada", "wrong password"), ("nobody", PASSWORD)):
            assert "wrong user name or password" in error_of(anon.get(studies, auth=bad), 401)
        r = anon.get(studies, headers={"Authorization": "Basic not-base64!"})
        assert "not valid HTTP Basic" in error_of(r, 401)
        r = anon.get(studies, auth=("tom", PASSWORD))  # any active account may read
        assert r.status_code == 200 and r.json()[0]["0020000D"]["Value"] == [uid]
        assert anon.get(metadata, auth=("tom", PASSWORD)).status_code == 200  # remembered: no new check
    with site.login("ada") as c:  # the workstation's viewer: its session cookie
        assert c.get(studies).status_code == 200
    with site.client() as c:  # wrong Basic passwords count towards the lockout like sign-ins
        for _ in range(auth.MAX_FAILURES):
            assert c.get(studies, auth=("ada", "guess guess")).status_code == 401
        r = c.get(studies, auth=("ada", PASSWORD))
        assert "locked" in error_of(r, 429) and int(r.headers["retry-after"]) > 0
        auth.set_active(site.server.store, "tom", False)  # refused at once, though its answer was remembered
        assert "wrong user name or password" in error_of(c.get(studies, auth=("tom", PASSWORD)), 401)


def test_wrong_password_and_unknown_user_get_the_same_401(site: Site) -> None:
    with site.client() as c:
        wrong = error_of(c.post("/api/login", json={"username": "ada", "password": "not the password"}), 401)
        unknown = error_of(c.post("/api/login", json={"username": "nobody", "password": PASSWORD}), 401)
        invalid = error_of(c.post("/api/login", json={"username": "../etc", "password": PASSWORD}), 401)
        assert wrong == unknown == invalid == "wrong user name or password"
        assert "set-cookie" not in c.post("/api/login", json={"username": "ada", "password": "nope"}).headers
        assert c.get("/api/me").status_code == 401
    events = site.server.store.events()
    assert [e["action"] for e in events].count("login_failed") == 4
    assert all("password" not in str(e["detail"]) for e in events)


def test_logout_ends_the_session(site: Site) -> None:
    with site.login("ada") as c:
        token = c.cookies.get(auth.COOKIE)
        r = c.post("/api/logout")
        assert r.status_code == 200 and r.json() == {"signed_out": "ada"}
        assert c.get("/api/me").status_code == 401
    with site.client() as replay:  # the old token no longer opens anything
        replay.cookies.set(auth.COOKIE, str(token))
        assert replay.get("/api/worklist").status_code == 401
    actions = [(e["actor"], e["action"]) for e in site.server.store.events()]
    assert ("ada", "login") in actions and ("ada", "logout") in actions


def test_users_are_managed_by_admins_only(site: Site) -> None:
    for who in ("ada", "tom"):
        with site.login(who) as c:
            assert "needs the role admin" in error_of(c.get("/api/users"), 403)
            assert c.post("/api/users", json={"username": "eve", "password": PASSWORD, "role": "admin"}
                          ).status_code == 403
    with site.login("root") as admin:
        listed = admin.get("/api/users").json()["items"]
        assert [(u["username"], u["role"], u["active"]) for u in listed] == [
            ("ada", "radiologist", True), ("root", "admin", True), ("tom", "technologist", True)]
        r = admin.post("/api/users", json={"username": "grace", "password": PASSWORD, "role": "radiologist",
                                           "display_name": "Dr Grace Hopper"})
        assert r.status_code == 201
        assert r.json() == {"username": "grace", "display_name": "Dr Grace Hopper", "role": "radiologist"}
        assert "exists already" in error_of(admin.post("/api/users", json={
            "username": "grace", "password": PASSWORD, "role": "radiologist"}), 409)
        assert "role 'surgeon' is unknown" in error_of(admin.post("/api/users", json={
            "username": "hal", "password": PASSWORD, "role": "surgeon"}), 400)
        assert "too short" in error_of(admin.post("/api/users", json={
            "username": "hal", "password": "short", "role": "technologist"}), 400)
        assert "not valid" in error_of(admin.post("/api/users", json={
            "username": "hal/../x", "password": PASSWORD, "role": "technologist"}), 400)
    with site.login("grace") as c:
        assert c.get("/api/me").json()["role"] == "radiologist"
    created = [e for e in site.server.store.events() if e["action"] == "user_created"]
    assert [(e["actor"], e["detail"]) for e in created] == [("root", {"username": "grace", "role": "radiologist"})]


def test_repeated_wrong_passwords_lock_the_account(site: Site) -> None:
    with site.client() as c:
        for _ in range(auth.MAX_FAILURES):
            assert c.post("/api/login", json={"username": "tom", "password": "guess guess"}).status_code == 401
        r = c.post("/api/login", json={"username": "tom", "password": PASSWORD})  # right, but locked
        assert "locked" in error_of(r, 429)
        assert 0 < int(r.headers["retry-after"]) <= auth.LOCKOUT_SECONDS
        assert c.get("/api/me").status_code == 401
        # other accounts are not affected
        assert c.post("/api/login", json={"username": "ada", "password": PASSWORD}).status_code == 200


def test_a_good_login_resets_the_failure_count(site: Site) -> None:
    with site.client() as c:
        for _ in range(auth.MAX_FAILURES - 1):
            assert c.post("/api/login", json={"username": "tom", "password": "guess guess"}).status_code == 401
        assert c.post("/api/login", json={"username": "tom", "password": PASSWORD}).status_code == 200
        for _ in range(auth.MAX_FAILURES - 1):
            assert c.post("/api/login", json={"username": "tom", "password": "guess guess"}).status_code == 401
        assert c.post("/api/login", json={"username": "tom", "password": PASSWORD}).status_code == 200


def test_passwords_and_tokens_are_stored_as_digests(site: Site) -> None:
    store = site.server.store
    auth.create_user(store, "twin", PASSWORD, "technologist")
    with site.login("ada") as c:
        token = str(c.cookies.get(auth.COOKIE))
    with store.engine.connect() as conn:
        hashes = dict(conn.execute(select(t.users.c.username, t.users.c.password_hash)).all())
        stored_tokens = conn.execute(select(t.sessions.c.token_sha256)).scalars().all()
    assert all(h.startswith("scrypt$16384$8$1$") for h in hashes.values())
    assert hashes["ada"] != hashes["twin"]  # same password, different salts
    assert not any(PASSWORD in h for h in hashes.values())
    assert auth.verify_password(PASSWORD, hashes["twin"]) and not auth.verify_password(PASSWORD + "!", hashes["twin"])
    assert token not in stored_tokens and len(token) >= 43
    assert auth.session_user(store, token) == auth.User(1, "ada", "Dr Ada Lovelace", "radiologist")


def test_expired_sessions_and_disabled_accounts_are_refused(site: Site) -> None:
    store = site.server.store
    ada = auth.session_user(store, auth.open_session(store, auth.authenticate(store, "ada", PASSWORD)))
    assert ada is not None
    expired = auth.open_session(store, ada, seconds=-1.0)
    with site.client() as c:
        c.cookies.set(auth.COOKIE, expired)
        assert c.get("/api/me").status_code == 401
    with site.login("tom") as c:
        auth.set_active(store, "tom", False)
        assert c.get("/api/worklist").status_code == 401  # the session ended with the account
    with site.client() as c2:
        assert c2.post("/api/login", json={"username": "tom", "password": PASSWORD}).status_code == 401
    auth.set_active(store, "tom", True)
    auth.set_password(store, "tom", "a new password")
    with site.client() as c3:
        assert c3.post("/api/login", json={"username": "tom", "password": PASSWORD}).status_code == 401
        assert c3.post("/api/login", json={"username": "tom", "password": "a new password"}).status_code == 200


def test_create_user_checks_its_input(site: Site) -> None:
    store = site.server.store
    with pytest.raises(ValueError, match="exists already"):
        auth.create_user(store, "ADA", PASSWORD, "radiologist")
    with pytest.raises(ValueError, match="role 'boss' is unknown"):
        auth.create_user(store, "bob", PASSWORD, "boss")
    with pytest.raises(ValueError, match="at least 8"):
        auth.create_user(store, "bob", "1234567", "admin")
    with pytest.raises(KeyError):
        auth.set_password(store, "nobody", PASSWORD)


def test_auth_off_opens_the_other_endpoints_but_not_the_personal_ones(medimg_server: Callable[..., Any]) -> None:
    server = medimg_server(auth=False)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}", timeout=30) as c:
        assert c.get("/api/worklist").status_code == 200
        assert c.get("/dicomweb/studies").status_code == 200
        assert c.get("/api/me").status_code == 401
        assert c.get("/api/users").status_code == 401
        assert c.get("/api/events/stream").status_code == 401
