"""Bad input to DICOMweb over real HTTP: non-DICOM bodies, every file of pydicom's test set (several
deliberately broken), truncated and mis-framed multipart bodies, bodies over the size limit, wrong media
types and UIDs that try to leave the store.  Every refusal is a 4xx with a reason in ``{"error": ...}``
or in the STOW-RS failure list; nothing half-written stays (store/files, store/tmp, index rows) and the
server keeps serving."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_helpers import split_multipart, stow, stow_body, value
from peers import start_medimg

from medimg.server.config import Limits

# one worker runs the whole module: its module-scoped server (and analysis) is built once
pytestmark = pytest.mark.xdist_group("test_dicomweb_bad_input")

BODY_LIMIT = 4 << 20
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={}'


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A server that only ever receives bad input (its store must stay empty)."""
    server = start_medimg(tmp_path_factory.mktemp("bad") / "store", limits=Limits(max_body_bytes=BODY_LIMIT))
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}/dicomweb", timeout=60)
    try:
        yield SimpleNamespace(server=server, client=client, port=server.config.http_port,
                              root=server.store.root)
    finally:
        client.close()
        server.stop()


def files_on_disk(root: Path) -> list[Path]:
    return [p for p in (root / "files").rglob("*") if p.is_file()]


def assert_nothing_kept(bad: SimpleNamespace) -> None:
    assert bad.server.store.count() == {"studies": 0, "series": 0, "instances": 0}
    assert files_on_disk(bad.root) == []
    assert list((bad.root / "tmp").iterdir()) == []


def assert_serving(bad: SimpleNamespace) -> None:
    assert bad.client.get("/studies").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{bad.port}/api/health", timeout=10).status_code == 200


def assert_error(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]
    assert words in message, message
    assert "\n" not in message


def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side path normalisation); (status, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def failures(r: httpx.Response) -> list[dict[str, Any]]:
    return list(r.json().get("00081198", {}).get("Value", []))


# ---------------------------------------------------------------------------------------- bodies
def test_non_dicom_part(bad: SimpleNamespace) -> None:
    r = stow(bad.client, [b"this is a text file, not a DICOM instance\n" * 10])
    assert r.status_code == 409, r.text
    (item,) = failures(r)
    assert value(item, "00081197") == 0xC000
    assert "DICM" in r.headers["warning"]
    assert "00081199" not in r.json()
    assert_nothing_kept(bad)


def test_dicom_truncated_inside_an_intact_multipart(bad: SimpleNamespace, ct_files: list[Path]) -> None:
    data = ct_files[0].read_bytes()
    r = stow(bad.client, [data[:len(data) * 6 // 10], data[:300], data[:132]])
    assert r.status_code == 409, r.text
    reasons = [value(i, "00081197") for i in failures(r)]
    assert reasons == [0xC000] * 3
    assert "part 1" in r.headers["warning"] and "part 3" in r.headers["warning"]
    assert_nothing_kept(bad)


def test_empty_and_partless_bodies(bad: SimpleNamespace) -> None:
    ctype = STOW_TYPE.format("BB")
    assert_error(bad.client.post("/studies", content=b"", headers={"Content-Type": ctype}), 400, "empty")
    assert_error(bad.client.post("/studies", content=b"--BB--\r\n", headers={"Content-Type": ctype}),
                 400, "no parts")
    assert_nothing_kept(bad)


@pytest.mark.parametrize(("cut", "words"), [
    (0.5, "part 2 does not end with the boundary"),  # in the middle of the second part
    (-3, "delimiter 4 is not followed by a line end"),  # the close delimiter cut short
    (-len(b"--BOUNDARY--\r\n"), "part 3 does not end with the boundary"),  # no close delimiter at all
    (-len(b"\r\n--BOUNDARY--\r\n"), "part 3 does not end with the boundary"),
])
def test_truncated_body(bad: SimpleNamespace, ct_files: list[Path], cut: float, words: str) -> None:
    body, ctype = stow_body([p.read_bytes() for p in ct_files[:3]], boundary="BOUNDARY")
    end = int(len(body) * cut) if isinstance(cut, float) else len(body) + cut
    r = bad.client.post("/studies", content=body[:end], headers={"Content-Type": ctype})
    assert_error(r, 400, "malformed multipart body")
    assert words in r.json()["error"] and "nothing was stored" in r.json()["error"]
    assert_nothing_kept(bad)


def test_wrong_boundary(bad: SimpleNamespace, ct_files: list[Path]) -> None:
    body, _ = stow_body([ct_files[0].read_bytes()], boundary="the-real-boundary")
    r = bad.client.post("/studies", content=body, headers={"Content-Type": STOW_TYPE.format("another-one")})
    assert_error(r, 400, "does not contain the boundary 'another-one'")
    body = b"--B\r\nContent-Type application/dicom\r\n\r\nxx\r\n--B--\r\n"  # header line without colon
    r = bad.client.post("/studies", content=body, headers={"Content-Type": STOW_TYPE.format("B")})
    assert_error(r, 400, "not 'Name: value'")
    assert_nothing_kept(bad)


@pytest.mark.parametrize(("ctype", "status", "words"), [
    ("text/plain", 415, "text/plain"),
    ("application/dicom", 415, "multipart/related"),
    ('multipart/related; type="application/dicom+json"; boundary=BB', 415, "application/dicom+json"),
    ('multipart/related; type="application/dicom"', 400, "boundary"),
    ("", 415, "not a media type"),
    ("multipart/related; boundary", 415, "not a media type"),
])
def test_wrong_media_types(bad: SimpleNamespace, ct_files: list[Path], ctype: str, status: int,
                           words: str) -> None:
    body, _ = stow_body([ct_files[0].read_bytes()], boundary="BB")
    r = bad.client.post("/studies", content=body, headers={"Content-Type": ctype})
    assert_error(r, status, words)
    assert_nothing_kept(bad)


def test_part_of_another_media_type(bad: SimpleNamespace, ct_files: list[Path]) -> None:
    data = ct_files[0].read_bytes()
    body = b"--BB\r\nContent-Type: application/pdf\r\n\r\n" + data + b"\r\n--BB--\r\n"
    r = bad.client.post("/studies", content=body, headers={"Content-Type": STOW_TYPE.format("BB")})
    assert r.status_code == 409
    assert "application/pdf" in r.headers["warning"]
    assert_nothing_kept(bad)


def test_instance_of_another_study(bad: SimpleNamespace, ct_files: list[Path]) -> None:
    r = stow(bad.client, [ct_files[0]], study="1.2.3.4.5")
    assert r.status_code == 409, r.text
    (item,) = failures(r)
    assert value(item, "00081197") == 0xC409
    assert value(item, "00081155") == pydicom.dcmread(ct_files[0], stop_before_pixels=True).SOPInstanceUID
    assert "is not the target study 1.2.3.4.5" in r.headers["warning"]
    assert_nothing_kept(bad)


# ---------------------------------------------------------------------------------------- size limits
def test_declared_length_over_the_limit(bad: SimpleNamespace) -> None:
    """A Content-Length of a terabyte is refused before a byte of the body is read."""
    request = (b"POST /dicomweb/studies HTTP/1.1\r\nHost: medimg\r\nConnection: close\r\n"
               b"Content-Type: " + STOW_TYPE.format("BB").encode() + b"\r\n"
               b"Content-Length: 1000000000000\r\n\r\n--BB\r\n")
    status, body = raw_request(bad.port, request)
    assert status == 413
    assert b"exceeds the limit of 4194304 bytes" in body
    r = bad.client.post("/studies", content=b"x" * (BODY_LIMIT + 1),
                        headers={"Content-Type": STOW_TYPE.format("BB")})
    assert_error(r, 413, "max_body_bytes")
    assert_nothing_kept(bad)


def test_streamed_body_over_the_limit(bad: SimpleNamespace, ct_files: list[Path]) -> None:
    """Without Content-Length (chunked) the body is counted as it arrives and dropped at the limit."""
    files = [p.read_bytes() for p in ct_files[:12]]  # ~6 MB of real CT in a valid multipart body
    body, ctype = stow_body(files)
    assert len(body) > BODY_LIMIT

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = bad.client.post("/studies", content=chunks(), headers={"Content-Type": ctype})
    assert_error(r, 413, "max_body_bytes")
    assert_nothing_kept(bad)
    assert_serving(bad)


# ---------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize(("path", "status", "words"), [
    (b"/dicomweb/studies/../../../etc/passwd", 404, "no DICOMweb resource"),
    (b"/dicomweb/studies/..%2F..%2Findex.sqlite/metadata", 404, "no DICOMweb resource"),
    (b"/dicomweb/studies/%2E%2E/series", 400, "is not a UID"),
    (b"/dicomweb/studies/..", 400, "is not a UID"),
    (b"/dicomweb/studies/1.2.3%00/metadata", 400, "is not a UID"),
    (b"/dicomweb/studies/1.2.3%00.4", 400, "is not a UID"),
    (b"/dicomweb/studies/1.2.3/series/..%5C..%5Cx/metadata", 400, "is not a UID"),
    (b"/dicomweb/studies/1.2.3/series/4.5/instances/6.7%2F..%2F../frames/1", 404, "no DICOMweb resource"),
    (b"/dicomweb/studies/1.2.3/series/4.5/instances/%2Fetc%2Fpasswd", 404, "no DICOMweb resource"),
    (b"/dicomweb/studies/1.2.3/series/4.5/instances/6.7/bulkdata/..%2F..%2Findex.sqlite", 404,
     "no DICOMweb resource"),
    (b"/dicomweb/studies/" + b"1" * 65, 400, "at most 64 characters"),
    (b"/dicomweb/studies/1.2.3/thumbnail", 404, "not stored here"),
    (b"/dicomweb/studies/1.2.3/series/4.5/instances/6.7/frames/1", 404, "not stored here"),
])
def test_uids_in_paths(bad: SimpleNamespace, path: bytes, status: int, words: str) -> None:
    got, body = raw_request(bad.port, b"GET " + path + b" HTTP/1.1\r\nHost: medimg\r\nConnection: close\r\n\r\n")
    assert got == status, body
    assert words.encode() in body, body
    assert body.startswith(b'{"error": ')
    assert_serving(bad)


def test_stow_to_a_study_path_that_is_not_a_uid(bad: SimpleNamespace, ct_files: list[Path]) -> None:
    body, ctype = stow_body([ct_files[0].read_bytes()])
    for study in ("%2E%2E", "1.2.3%00", "abc", "1.2.3.a"):
        r = bad.client.post(f"/studies/{study}", content=body, headers={"Content-Type": ctype})
        assert_error(r, 400, "is not a UID")
    assert_nothing_kept(bad)


# ---------------------------------------------------------------------------------------- pydicom's test files
def test_every_pydicom_test_file(medimg_server: Callable[..., Any], pydicom_test_dir: Path) -> None:
    """Each of pydicom's 176 test files (truncated pixel data, bad VRs, missing meta, DICOMDIRs, non-DICOM
    files) sent on its own: stored (200) or refused (409) with a failure reason; the store holds exactly
    the stored ones, each file with its index row, nothing left in tmp, and every stored one comes back
    byte for byte."""
    server = medimg_server()
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}/dicomweb", timeout=60)
    files = sorted(p for p in pydicom_test_dir.rglob("*") if p.is_file())
    assert len(files) >= 170
    stored: dict[str, tuple[Path, str]] = {}
    refused: dict[str, str] = {}
    try:
        for path in files:
            r = stow(client, [path])
            assert r.status_code in (200, 409), (path.name, r.status_code, r.text)
            if r.status_code == 200:
                (item,) = r.json()["00081199"]["Value"]
                stored.setdefault(value(item, "00081155"), (path, value(item, "00081190")))
            else:
                (item,) = failures(r)
                assert value(item, "00081197") in (0x0111, 0xA900, 0xC000), path.name
                refused[path.name] = r.headers["warning"]
        for name in ("MR_truncated.dcm", "rtplan_truncated.dcm", "no_meta.dcm", "ExplVR_BigEndNoMeta.dcm",
                     "ExplVR_LitEndNoMeta.dcm", "meta_missing_tsyntax.dcm", "zipMR.gz", "crayons.icc",
                     "test1.json", "badVR.dcm", "UN_sequence.dcm"):
            assert name in refused, name
        assert "declares 8192 bytes but only 8130 remain" in refused["MR_truncated.dcm"]
        assert "no 'DICM'" in refused["zipMR.gz"]
        assert server.store.count()["instances"] == len(stored)
        report = server.store.verify()
        assert report.clean and report.ok == len(stored)
        assert list((server.store.root / "tmp").iterdir()) == []
        for path, url in stored.values():
            r = client.get(url[len(str(client.base_url).rstrip("/")):])
            (_, content), = split_multipart(r)
            assert content == path.read_bytes(), path.name
        assert client.get("/studies").status_code == 200
    finally:
        client.close()
