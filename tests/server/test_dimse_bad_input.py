"""Bad input over DIMSE: broken files (pydicom's own, and crafted: truncated data sets, lengths beyond
the end, sequences nested 120 deep, a declared length of 0xFFFFFFFF on a text element, UIDs holding
"../" or NUL, request UIDs that differ from the data set's) sent as raw bytes by pynetdicom.

Each must get a failure status, leave nothing on disk (no file under store/files or store/tmp, no
index row), and the association and the node must go on: C-ECHO answered, a good file stored.  And the
limits: an association beyond max_associations is refused; a PDU beyond our maximum and a message
beyond the instance limit abort that association only."""

from __future__ import annotations

import struct
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import dataset_bytes, start_medimg
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE, build_context
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from medimg.server.config import Limits

# the module-scoped node (and its storescp) is built once, on one worker
pytestmark = pytest.mark.xdist_group("test_dimse_bad_input")

WARNINGS = (0xB000, 0xB006, 0xB007)
ROOT = "1.2.826.0.1.3680043.8.498.7777"  # UIDs of the crafted instances


# ---------------------------------------------------------------------------------- crafting bytes
def element(group: int, elem: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    """One explicit VR little endian element; ``length`` overrides the declared length."""
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR"):
        return struct.pack("<HH2s2xI", group, elem, vr, n) + value
    return struct.pack("<HH2sH", group, elem, vr, n) + value


def uid_value(uid: str) -> bytes:
    raw = uid.encode("latin-1")
    return raw + b"\x00" * (len(raw) % 2)


def dataset(sop_uid: str, sop_class: str = SecondaryCaptureImageStorage) -> bytes:
    """A small well-formed explicit VR little endian data set with the given SOP Instance UID, written
    by hand so that even an invalid UID goes out as it is."""
    return b"".join([
        element(0x0008, 0x0016, b"UI", uid_value(sop_class)),
        element(0x0008, 0x0018, b"UI", uid_value(sop_uid)),
        element(0x0008, 0x0060, b"CS", b"OT"),
        element(0x0010, 0x0020, b"LO", b"BADINPUT"),
        element(0x0020, 0x000D, b"UI", uid_value(ROOT + ".1")),
        element(0x0020, 0x000E, b"UI", uid_value(ROOT + ".2")),
    ])


def nested_sequences(depth: int) -> bytes:
    """(0040,A730) Content Sequence nested ``depth`` deep, undefined lengths throughout."""
    inner = b""
    for _ in range(depth):
        inner = (struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", 0xFFFFFFFF)
                 + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + inner
                 + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return inner


def part10(data: bytes, sop_class: str, sop_uid: str, ts: str) -> bytes:
    """A Part 10 file around ``data``: the meta group (written by hand) names the request's SOP Class
    and Instance UIDs and the transfer syntax."""
    body = b"".join([
        element(0x0002, 0x0001, b"OB", b"\x00\x01"),
        element(0x0002, 0x0002, b"UI", uid_value(sop_class)),
        element(0x0002, 0x0003, b"UI", uid_value(sop_uid)),
        element(0x0002, 0x0010, b"UI", uid_value(ts)),
        element(0x0002, 0x0012, b"UI", uid_value("1.2.826.0.1.3680043.8.498.1")),
    ])
    return b"\x00" * 128 + b"DICM" + element(0x0002, 0x0000, b"UL", struct.pack("<I", len(body))) + body


def _truncated_ct(ct: Path) -> tuple[bytes, str, str, str]:
    meta = read_file_meta_info(ct)
    data = dataset_bytes(ct.read_bytes())
    return data[: len(data) * 6 // 10], str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID), \
        str(meta.TransferSyntaxUID)


SC = str(SecondaryCaptureImageStorage)
EXPL = str(ExplicitVRLittleEndian)
CRAFTED: dict[str, tuple[bytes, str, str, str]] = {
    # name: (data set bytes, request SOP Class UID, request SOP Instance UID, transfer syntax)
    "length beyond the end": (dataset(ROOT + ".10") + element(0x0010, 0x4000, b"LT", b"0123456789", length=0x7000),
                              SC, ROOT + ".10", EXPL),
    "sequences 120 deep": (dataset(ROOT + ".11") + nested_sequences(120), SC, ROOT + ".11", EXPL),
    "0xFFFFFFFF on a text element": (dataset(ROOT + ".12") + element(0x0040, 0xA160, b"UT", b"some text",
                                                                     length=0xFFFFFFFF)
                                     + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0), SC, ROOT + ".12", EXPL),
    "UID with ../": (dataset("1.2.3/../../../../tmp/x"), SC, "1.2.3/../../../../tmp/x", EXPL),
    "UID with NUL": (dataset(ROOT + ".13\x00.5"), SC, ROOT + ".13\x00.5", EXPL),
    "request UID differs": (dataset(ROOT + ".14"), SC, ROOT + ".15", EXPL),
    "request SOP class differs": (dataset(ROOT + ".16"), str(CTImageStorage), ROOT + ".16", EXPL),
    "no data set at all": (b"", SC, ROOT + ".17", EXPL),
    "garbage": (bytes(range(256)) * 8, SC, ROOT + ".18", EXPL),
    "implicit VR garbage lengths": (struct.pack("<HHI", 0x0008, 0x0016, 0x7FFFFFF0) + b"1.2", SC, ROOT + ".19",
                                    str(ImplicitVRLittleEndian)),
}
BROKEN_PYDICOM = ["MR_truncated.dcm", "rtplan_truncated.dcm", "SC_rgb_jpeg.dcm", "badVR.dcm"]


# ---------------------------------------------------------------------------------- the node
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_medimg(tmp_path_factory.mktemp("badinput") / "store")
    yield server
    server.stop()


def disk_state(server: Any) -> tuple[list[str], list[str], dict[str, int]]:
    root = server.store.root
    files = sorted(str(p.relative_to(root)) for p in (root / "files").rglob("*") if p.is_file())
    tmp = sorted(p.name for p in (root / "tmp").iterdir())
    return files, tmp, server.store.count()


def associate(port: int, sop_class: str, ts: str, **ae_kw: Any) -> Any:
    ae = AE("BADSCU")
    for k, v in ae_kw.items():
        setattr(ae, k, v)
    contexts = [build_context(sop_class, ts), build_context(CTImageStorage, ImplicitVRLittleEndian),
                build_context(Verification)]
    assoc = ae.associate("127.0.0.1", port, contexts=contexts, ae_title="MEDIMG")
    assert assoc.is_established
    return assoc


def status_of(rsp: Dataset) -> int | None:
    return int(rsp.Status) if rsp is not None and "Status" in rsp else None


def send_bad_then_good(server: Any, path: Path, good: Path) -> int | None:
    """Send ``path`` (a Part 10 file whose data set goes out as raw bytes); check nothing was kept;
    then, on the same association, C-ECHO and store ``good``.  Returns the bad file's status."""
    meta = read_file_meta_info(path)
    before = disk_state(server)
    assoc = associate(server.node.port, str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status = status_of(assoc.send_c_store(path))
        assert disk_state(server) == before, f"{path.name}: something was kept"
        assert status_of(assoc.send_c_echo()) == 0
        assert status_of(assoc.send_c_store(good)) == 0
    finally:
        if assoc.is_established:
            assoc.release()
    assert server.store.instance(str(read_file_meta_info(good).MediaStorageSOPInstanceUID)) is not None
    return status


def is_failure(status: int | None) -> bool:
    return status is not None and status != 0 and status not in WARNINGS


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_instance_is_refused(node: Any, case: str, tmp_path: Path, ct_files: list[Path]) -> None:
    data, sop_class, sop_uid, ts = CRAFTED[case]
    path = tmp_path / "bad.dcm"
    path.write_bytes(part10(data, sop_class, sop_uid, ts) + data)
    good = ct_files[sorted(CRAFTED).index(case)]
    status = send_bad_then_good(node, path, good)
    assert is_failure(status), (case, status)


def test_truncated_ct_is_refused(node: Any, tmp_path: Path, ct_files: list[Path]) -> None:
    data, sop_class, sop_uid, ts = _truncated_ct(ct_files[-1])
    path = tmp_path / "truncated.dcm"
    path.write_bytes(part10(data, sop_class, sop_uid, ts) + data)
    assert is_failure(send_bad_then_good(node, path, ct_files[-2]))
    assert node.store.instance(sop_uid) is None


@pytest.mark.parametrize("name", BROKEN_PYDICOM)
def test_broken_pydicom_file_is_refused(node: Any, name: str, pydicom_test_dir: Path,
                                        ct_files: list[Path]) -> None:
    good = ct_files[20 + BROKEN_PYDICOM.index(name)]
    assert is_failure(send_bad_then_good(node, pydicom_test_dir / name, good))


def test_truncated_jpeg2000_from_pydicom_data(node: Any, pydicom_data_files: list[Path],
                                              ct_files: list[Path]) -> None:
    [path] = [f for f in pydicom_data_files if f.name == "emri_small_jpeg_2k_lossless_too_short.dcm"]
    assert is_failure(send_bad_then_good(node, path, ct_files[30]))


def test_node_still_stores_after_bad_input(node: Any, ct_files: list[Path]) -> None:
    """After everything above: the store verifies clean and a new association stores as usual."""
    assoc = associate(node.node.port, str(CTImageStorage), str(ImplicitVRLittleEndian))
    try:
        assert status_of(assoc.send_c_store(ct_files[40])) == 0
    finally:
        assoc.release()
    report = node.store.verify()
    assert report.clean, report
    assert not any((node.store.root / "tmp").iterdir())


# ---------------------------------------------------------------------------------- limits
def test_association_beyond_the_limit_is_refused(medimg_server: Any) -> None:
    server = medimg_server(limits=Limits(max_associations=2))
    ae = AE("LIMIT")
    ae.add_requested_context(Verification)
    held = [ae.associate("127.0.0.1", server.node.port, ae_title="MEDIMG") for _ in range(2)]
    assert all(a.is_established for a in held)
    third = ae.associate("127.0.0.1", server.node.port, ae_title="MEDIMG")
    assert third.is_rejected
    rj = third.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)  # transient, local limit
    for a in held:
        assert status_of(a.send_c_echo()) == 0
        a.release()
    deadline = time.monotonic() + 10
    while True:  # the released associations end asynchronously
        again = ae.associate("127.0.0.1", server.node.port, ae_title="MEDIMG")
        if again.is_established or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.is_established
    assert status_of(again.send_c_echo()) == 0
    again.release()


def _wait_aborted(assoc: Any) -> bool:
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(assoc.is_aborted)


def test_pdu_beyond_the_maximum_aborts_that_association_only(medimg_server: Any,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    server = medimg_server(limits=Limits(max_pdu=16384))
    ae = AE("BIGPDU")
    ae.add_requested_context(Verification)
    bad = ae.associate("127.0.0.1", server.node.port, ae_title="MEDIMG")
    other = ae.associate("127.0.0.1", server.node.port, ae_title="MEDIMG")
    assert bad.is_established and other.is_established
    assert bad.acceptor.maximum_length == 16384
    # a P-DATA-TF PDU declaring 1 MiB: refused on its header, before anything is read
    bad.dul.socket.socket.sendall(struct.pack(">BBI", 0x04, 0, 1 << 20) + b"\x00" * 64)
    assert _wait_aborted(bad)
    assert "a PDU of 1048576 bytes exceeds the maximum of 16384" in caplog.text
    assert status_of(other.send_c_echo()) == 0
    other.release()
    fresh = ae.associate("127.0.0.1", server.node.port, ae_title="MEDIMG")
    assert status_of(fresh.send_c_echo()) == 0
    fresh.release()


def test_message_beyond_the_instance_limit_aborts(medimg_server: Any, ct_files: list[Path],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A 525 kB CT slice against a 100 kB instance limit: the association is aborted while the data set
    is still arriving (it is never held whole), nothing is kept, the node goes on."""
    server = medimg_server(limits=Limits(max_pdu=16384, max_instance_bytes=100_000))
    before = disk_state(server)
    assoc = associate(server.node.port, str(CTImageStorage), str(ImplicitVRLittleEndian))
    status = status_of(assoc.send_c_store(ct_files[0]))
    assert status is None  # no response: aborted
    assert _wait_aborted(assoc)
    assert "a message of more than 181920 bytes" in caplog.text
    assert disk_state(server) == before
    ae = AE("AFTER")
    ae.add_requested_context(Verification)
    fresh = ae.associate("127.0.0.1", server.node.port, ae_title="MEDIMG")
    assert status_of(fresh.send_c_echo()) == 0
    fresh.release()


def test_instance_over_the_limit_in_one_message_is_refused(medimg_server: Any, ct_files: list[Path]) -> None:
    """Within the message bound but over max_instance_bytes: the store refuses it (0xA700)."""
    server = medimg_server(limits=Limits(max_instance_bytes=400_000))
    before = disk_state(server)
    assoc = associate(server.node.port, str(CTImageStorage), str(ImplicitVRLittleEndian))
    try:
        assert status_of(assoc.send_c_store(ct_files[0])) == 0xA700
        assert disk_state(server) == before
        assert status_of(assoc.send_c_echo()) == 0
    finally:
        assoc.release()


def test_scu_encoding_of_crafted_dataset_matches_pydicom() -> None:
    """The hand-written data set is what pydicom writes for the same attributes (the crafting helper
    itself is right)."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ROOT + ".99"
    ds.Modality = "OT"
    ds.PatientID = "BADINPUT"
    ds.StudyInstanceUID = ROOT + ".1"
    ds.SeriesInstanceUID = ROOT + ".2"
    assert encode(ds, False, True) == dataset(ROOT + ".99")
