"""Helpers of the workstation tests (test_review, test_meshes, test_live): a server with users, the
real chest CT analysed on it, clients signed in as one of the users, a dcmtk storescp as destination."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from peers import PEER_ENV, StoreSCP, free_port, start_medimg, wait_for, wait_port  # noqa: F401 (re-exported)

from medimg.server import auth

T = TypeVar("T")
PASSWORD = "correct horse battery"
#: user name -> (role, display name)
USERS = {"ada": ("radiologist", "Dr Ada Lovelace"), "tom": ("technologist", "Tom Tech"),
         "root": ("admin", "Administrator")}


def add_users(server: Any) -> None:
    for username, (role, name) in USERS.items():
        auth.create_user(server.store, username, PASSWORD, role, name)


@contextmanager
def signed_in(server: Any, username: str) -> Iterator[httpx.Client]:
    """An httpx client of ``server`` whose cookie jar holds a session of ``username``."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}", timeout=300) as c:
        r = c.post("/api/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield c


def put_study(server: Any, files: list[Path]) -> str:
    """Store ``files`` as the DICOM node would and tell the server; returns the Study Instance UID."""
    uid = ""
    for path in files:
        result = server.store.put_path(path, source="test")
        server.instance_stored(result, "test")
        uid = result.study_uid
    return uid


@contextmanager
def analysed_ct(folder: Path, ct_files: list[Path], **overrides: Any) -> Iterator[tuple[Any, str]]:
    """A server (analysis and sessions on, the users of :data:`USERS`) on which the real chest CT has
    been stored and analysed; yields (server, Study Instance UID)."""
    server = start_medimg(folder / "store", analysis=True, auth=True, quiet_seconds=1.0, **overrides)
    try:
        add_users(server)
        uid = put_study(server, ct_files)
        wait_for(lambda: server.store.study_status(uid) in ("ready", "failed", "skipped"), 900,
                 "the analysis of the CT study")
        assert server.store.study_status(uid) == "ready", server.store.events(uid)[-3:]
        yield server, uid
    finally:
        server.stop()


def sr_value(it: Any) -> Any:
    """The value of one SR content item as Python (None for container and image/geometry types)."""
    match it.ValueType:
        case "NUM":
            return float(it.MeasuredValueSequence[0].NumericValue)
        case "CODE":
            return str(it.ConceptCodeSequence[0].CodeMeaning)
        case "TEXT":
            return str(it.TextValue)
        case "PNAME":
            return str(it.PersonName)
        case "UIDREF":
            return str(it.UID)
    return None


def sr_items(ds: Any) -> list[tuple[str, str, Any]]:
    """Every content item of an SR as (value type, concept meaning, value), depth first."""
    out: list[tuple[str, str, Any]] = []

    def walk(items: Any) -> None:
        for it in items:
            name = it.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in it else ""
            out.append((str(it.ValueType), str(name), sr_value(it)))
            if "ContentSequence" in it:
                walk(it.ContentSequence)

    walk(ds.ContentSequence)
    return out
