"""Live updates (server/live.py): ``GET /api/events/stream`` of a running server sends a ``study`` event
when a study arrives over STOW-RS, replays what a reconnecting client missed (Last-Event-ID), filters
by study, ends when the server stops, and needs a session.  Real server, real httpx streams read in
threads, real pydicom-data files."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_helpers import stow
from peers import start_medimg
from workstation_helpers import PASSWORD, add_users, signed_in

from medimg.server import auth


class Stream:
    """An event stream read in a thread; ``next()`` gives each message (a dict of its fields, ``data``
    parsed as JSON) or ``None`` when the stream ended."""

    def __init__(self, server: Any, cookie: str, headers: dict[str, str] | None = None,
                 params: dict[str, str] | None = None) -> None:
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.status = 0
        self.opened = threading.Event()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}",
                                   timeout=httpx.Timeout(60.0), cookies={auth.COOKIE: cookie})
        self.thread = threading.Thread(target=self._read, args=(headers or {}, params or {}), daemon=True)
        self.thread.start()
        assert self.opened.wait(30), "the stream did not open"

    def _read(self, headers: dict[str, str], params: dict[str, str]) -> None:
        try:
            with self.client.stream("GET", "/api/events/stream", headers=headers, params=params) as r:
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                fields: dict[str, Any] = {}
                for line in r.iter_lines():
                    if line.startswith(":"):
                        self.opened.set()  # the greeting comment: the subscription is in place
                        continue
                    if not line:  # dispatch (as browsers do: only a message with data is an event)
                        if "data" in fields:
                            fields["data"] = json.loads(fields["data"])
                            self.messages.put(fields)
                        fields = {}
                        continue
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except httpx.HTTPError:
            pass
        finally:
            self.opened.set()
            self.messages.put(None)

    def next(self, timeout: float = 60.0) -> dict[str, Any] | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no event within {timeout:.0f} s", pytrace=False)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def live(medimg_server: Callable[..., Any]) -> Iterator[tuple[Any, str]]:
    server = medimg_server(auth=True)
    add_users(server)
    with signed_in(server, "tom") as c:
        yield server, str(c.cookies.get(auth.COOKIE))


def dicomweb(server: Any) -> httpx.Client:
    """A DICOMweb client of ``server`` with the HTTP Basic credentials of a technologist (a PACS would
    send its account's the same way)."""
    return httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}/dicomweb", timeout=60,
                        auth=("tom", PASSWORD))


def study_uid_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_a_study_arriving_over_stow_is_announced(live: tuple[Any, str], pydicom_data_dir: Path) -> None:
    server, cookie = live
    stream = Stream(server, cookie)
    try:
        assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
        with dicomweb(server) as c:
            r = stow(c, [pydicom_data_dir / "693_UNCR.dcm"])
            assert r.status_code == 200, r.text
        msg = stream.next()
        assert msg is not None
        assert msg["event"] == "study" and int(msg["id"]) >= 1
        event = msg["data"]
        assert event["study_uid"] == study_uid_of(pydicom_data_dir / "693_UNCR.dcm")
        assert (event["status"], event["action"]) == ("received", "instances_arrived")
        assert event["detail"]["instances"] == 1
    finally:
        stream.close()


def test_a_reconnecting_client_gets_what_it_missed_and_can_filter(live: tuple[Any, str],
                                                                  pydicom_data_dir: Path) -> None:
    server, cookie = live
    first, second = pydicom_data_dir / "MR2_UNCR.dcm", pydicom_data_dir / "RG1_UNCR.dcm"
    stream = Stream(server, cookie)
    with dicomweb(server) as c:
        assert stow(c, [first]).status_code == 200
        one = stream.next()
        stream.close()  # the client goes away
        assert stow(c, [second]).status_code == 200
    assert one is not None
    again = Stream(server, cookie, headers={"Last-Event-ID": one["id"]})
    try:
        missed = again.next()
        assert missed is not None and int(missed["id"]) > int(one["id"])
        assert missed["data"]["study_uid"] == study_uid_of(second)
    finally:
        again.close()
    only = Stream(server, cookie, headers={"Last-Event-ID": "0"}, params={"study": study_uid_of(second)})
    try:
        replayed = only.next()
        assert replayed is not None and replayed["data"]["study_uid"] == study_uid_of(second)
    finally:
        only.close()


def test_published_study_events_carry_the_study_status(live: tuple[Any, str], pydicom_data_dir: Path) -> None:
    server, cookie = live
    uid = server.store.put_path(pydicom_data_dir / "SC_rgb.dcm", source="test").study_uid
    stream = Stream(server, cookie)
    try:
        server.store.set_study_status(uid, "signed")
        server.hub.study_event(server.store, uid, "signed", "ada", {"analysis_id": 7})
        msg = stream.next()
        assert msg is not None
        assert {k: msg["data"][k] for k in ("study_uid", "status", "action", "actor", "detail")} == {
            "study_uid": uid, "status": "signed", "action": "signed", "actor": "ada", "detail": {"analysis_id": 7}}
    finally:
        stream.close()


def test_stopping_the_server_ends_the_stream(tmp_path: Path) -> None:
    server = start_medimg(tmp_path / "store", auth=True)  # stopped here, not by a fixture
    add_users(server)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}", timeout=30) as c:
        cookie = str(c.post("/api/login", json={"username": "ada", "password": PASSWORD}).cookies[auth.COOKIE])
    stream = Stream(server, cookie)
    assert server.hub.subscribers == 1
    server.stop()
    assert stream.next(30) is None  # ended, not hanging
    stream.thread.join(30)
    assert not stream.thread.is_alive()
    stream.close()


def test_the_stream_needs_a_session(live: tuple[Any, str]) -> None:
    server, _cookie = live
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}", timeout=30) as anon:
        r = anon.get("/api/events/stream")
        assert r.status_code == 401 and "not signed in" in r.json()["error"]
