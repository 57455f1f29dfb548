"""Many senders, one study, at once: the study ends with exactly its instances, once each.

Orthanc's promise (orthanc-tests NewTests/Concurrency, PITFALLS.md): concurrent senders of the same
study leave exactly one copy of each instance, every sender is answered success.  Here: 10 dcmtk
``storescu`` processes, each sending the same 50-instance real CT study twice in its own order over one
association; then pynetdicom SCUs and STOW-RS clients mixed.

dcmtk re-encodes what it sends (these files' sequences of undefined length go out with explicit
lengths), so its instances are compared with the files by value (pydicom); pynetdicom (sending the
files' data sets as they are) and STOW-RS keep the bytes, so there the SHA-256 is compared too -- and
both must send the same bytes, or the second copy would be a conflict (a different encoding of a
stored SOP Instance UID)."""

from __future__ import annotations

import hashlib
import random
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from peers import PEER_ENV

from medimg.store.part10 import split_part10

pytestmark = [pytest.mark.peer, pytest.mark.xdist_group("test_concurrency")]


def _dataset_sha(path: Path) -> str:
    data = path.read_bytes()
    _, offset = split_part10(data)
    return hashlib.sha256(data[offset:]).hexdigest()


def _storescu(server: Any, files: list[Path]) -> subprocess.Popen[str]:
    """storescu over one association; -xi proposes implicit VR little endian only, the encoding of
    these files, so the data sets go over the wire unchanged and their SHA-256 can be compared."""
    return subprocess.Popen(
        ["storescu", "-v", "-xi", "-aet", "STORESCU", "-aec", server.config.aet, "127.0.0.1", str(server.node.port),
         *map(str, files)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=PEER_ENV)


def _assert_exactly(server: Any, files: list[Path], same_bytes: bool) -> None:
    """The store holds these instances, once each, and nothing else: the same data sets as the files
    (by value; with ``same_bytes`` byte for byte)."""
    store = server.store
    by_uid = {_sop(f): f for f in files}
    stored = {i.sop_uid: i for i in store.iter_all()}
    assert set(stored) == set(by_uid)
    for uid, inst in stored.items():
        data = inst.path.read_bytes()
        assert hashlib.sha256(data[split_part10(data)[1]:]).hexdigest() == inst.sha256
        if same_bytes:
            assert inst.sha256 == _dataset_sha(by_uid[uid])
        else:
            assert pydicom.dcmread(inst.path) == pydicom.dcmread(by_uid[uid])
    assert store.count()["instances"] == len(files)
    assert len([p for p in (store.root / "files").rglob("*") if p.is_file()]) == len(files)
    assert [p for p in (store.root / "tmp").iterdir() if not p.name.startswith("stow-")] == []
    assert store.verify().clean


def _sop(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


@pytest.fixture(scope="module")
def study50(ct_files: list[Path]) -> list[Path]:
    """50 instances of one real CT study (series-2 and the start of series-3)."""
    return ct_files[:50]


def test_ten_storescu_send_the_same_study_at_once(medimg_server: Any, study50: list[Path]) -> None:
    server = medimg_server()
    procs = []
    for i in range(10):
        order = study50 * 2  # every sender offers each instance twice
        random.Random(i).shuffle(order)
        procs.append(_storescu(server, order))
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-2000:]
        assert out.count("Received Store Response (Success)") == 100, out[-2000:]
        assert "Warning" not in out and "Failed" not in out
    _assert_exactly(server, study50, same_bytes=False)
    assert server.store.events() == []  # dcmtk encodes each file the same way every time: no conflict


def _multipart(files: list[Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f.read_bytes()
                    + b"\r\n" for f in files) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def _pynetdicom_sender(port: int, files: list[Path], statuses: list[int], lock: threading.Lock) -> None:
    from pynetdicom import AE, evt

    from medimg.server.dicom_node import _tune_requestor

    ae = AE(ae_title="PYSCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2"])
    # plain pynetdicom as a requestor loses a C-STORE response about once in a thousand (its reactor
    # can take the reply meant for send_c_store: "Received unexpected C-STORE service message", then a
    # DIMSE timeout and an abort); the sender side of this test gets the same fix medimg's own SCU uses
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDIMG",
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda e: _tune_requestor(e, True, 1 << 20))])
    assert assoc.is_established
    try:
        for f in files:
            status = assoc.send_c_store(f)
            with lock:
                statuses.append(int(status.Status) if "Status" in status else -1)
    finally:
        assoc.release()


def test_dimse_and_stow_senders_mixed(medimg_server: Any, study50: list[Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """5 pynetdicom SCUs and 5 STOW-RS clients (5 requests of 10 instances each) send the same study
    at once, the same bytes: exactly 50 instances, every answer a success."""
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the files' data sets as they are
    server = medimg_server()
    url = f"http://127.0.0.1:{server.config.http_port}/dicomweb/studies"
    answers: list[tuple[int, Any]] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def stow(seed: int) -> None:
        order = list(study50)
        random.Random(100 + seed).shuffle(order)
        with httpx.Client(timeout=600) as client:
            for k in range(0, 50, 10):
                body, ctype = _multipart(order[k:k + 10])
                r = client.post(url, content=body, headers={"Content-Type": ctype,
                                                            "Accept": "application/dicom+json"})
                with lock:
                    answers.append((r.status_code, r.json() if r.content else None))

    threads = [threading.Thread(target=stow, args=(i,)) for i in range(5)]
    for i in range(5):
        order = list(study50)
        random.Random(i).shuffle(order)
        threads.append(threading.Thread(target=_pynetdicom_sender,
                                        args=(server.node.port, order, statuses, lock)))
    for th in threads:
        th.start()
    for th in threads:
        th.join(900)
    assert statuses == [0] * 250
    assert len(answers) == 25
    for status, doc in answers:
        assert status == 200, doc
        assert "00081198" not in doc  # no Failed SOP Sequence
        assert len(doc["00081199"]["Value"]) == 10  # Referenced SOP Sequence: all 10 stored
    _assert_exactly(server, study50, same_bytes=True)
    assert server.store.events() == []
