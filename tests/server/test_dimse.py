"""The DICOM node against real peers: dcmtk's echoscu, storescu, findscu, movescu (to a dcmtk storescp)
and getscu, pynetdicom as a plain SCU for exact statuses, and two medimg nodes talking to each other
through the SCU functions (send_instances, find, retrieve, fetch_priors).

Every instance sent must arrive once, with the data set bytes that were sent; every retrieve must
deliver the stored bytes unchanged.  dcmtk's storescu does not send a file's bytes as they are: it
re-encodes the data set (undefined-length sequences get explicit lengths), so what it sends is taken
from a dcmtk storescp in bit-preserving mode (+B) that receives the same transmission; senders that
do send the file's bytes (pynetdicom, medimg's send_instances) must arrive byte for byte as the file.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import PEER_ENV, dataset_bytes, dcmtk, free_port, start_medimg, wait_port
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, build_context, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from medimg.errors import InputError
from medimg.server.config import Limits, Peer
from medimg.server.dicom_node import _associate, fetch_priors, find, retrieve, send_instances

# the module-scoped node (and its storescp) is built once, on one worker
pytestmark = pytest.mark.xdist_group("test_dimse")

PATIENT = "Lung_Dx-A0001"


def uid_of(path: Path) -> str:
    return str(read_file_meta_info(path).MediaStorageSOPInstanceUID)


def assert_stored_as_sent(server: Any, files: list[Path]) -> None:
    """Each file's instance is in the store once, with the file's data set bytes."""
    for f in files:
        inst = server.store.instance(uid_of(f))
        assert inst is not None, f"{f.name} was not stored"
        assert dataset_bytes(inst.path.read_bytes()) == dataset_bytes(f.read_bytes()), f.name


def storescu(port: int, *args: str, aec: str = "MEDIMG") -> subprocess.CompletedProcess[str]:
    return dcmtk("storescu", "-v", "-aec", aec, *args[:-1], "127.0.0.1", str(port), args[-1])


def findscu(port: int, out: Path, model: str, level: str, *keys: str) -> list[Dataset]:
    """findscu with -X: the responses, read back from the files it extracts."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    args = ["-aec", "MEDIMG", model, "-X", "-od", str(out), "-k", f"QueryRetrieveLevel={level}"]
    for k in keys:
        args += ["-k", k]
    r = dcmtk("findscu", *args, "127.0.0.1", str(port))
    assert r.returncode == 0, r.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def c_find(port: int, identifier: Dataset, model: Any = StudyRootQueryRetrieveInformationModelFind
           ) -> list[tuple[int, Dataset | None, Dataset]]:
    """pynetdicom as SCU: every (status, identifier, status dataset) of one C-FIND."""
    ae = AE("PYSCU")
    assoc = ae.associate("127.0.0.1", port, contexts=[build_context(model)], ae_title="MEDIMG")
    assert assoc.is_established
    out = [(int(st.Status), ident, st) for st, ident in assoc.send_c_find(identifier, model)]
    assoc.release()
    return out


@pytest.fixture(scope="module")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_StoreSCP]:
    """A dcmtk storescp, move destination DEST of the C-MOVE tests, listening for the whole module (a
    port chosen free and left unused until a test starts a listener could be taken meanwhile)."""
    scp = _StoreSCP(free_port(), tmp_path_factory.mktemp("dest"))
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, ct_study_dir: Path,
           dest: _StoreSCP) -> Iterator[tuple[Any, subprocess.CompletedProcess[str]]]:
    """A medimg node that received the 128 CT files from storescu (one association, whole folder)."""
    store = tmp_path_factory.mktemp("dimse") / "store"
    server = start_medimg(store, peers={"DEST": Peer("DEST", "127.0.0.1", dest.port)})
    result = storescu(server.node.port, "+sd", "+r", "+sp", "*.dcm", str(ct_study_dir))
    yield server, result
    server.stop()


@pytest.fixture(scope="module")
def storescu_sent(tmp_path_factory: pytest.TempPathFactory, ct_study_dir: Path) -> dict[str, bytes]:
    """What storescu transmits for each CT file: {SOP Instance UID: data set bytes}, as a dcmtk storescp
    in bit-preserving mode receives it."""
    port = free_port()
    scp = _StoreSCP(port, tmp_path_factory.mktemp("storescp"), "MEDIMG", "+xi")  # the files' syntax
    try:
        r = storescu(port, "+sd", "+r", "+sp", "*.dcm", str(ct_study_dir))
        assert r.returncode == 0, r.stderr[-2000:]
    finally:
        scp.stop()
    return {uid_of(f): dataset_bytes(f.read_bytes()) for f in scp.files()}


@pytest.fixture(scope="module")
def series(ct_files: list[Path]) -> dict[str, list[Path]]:
    """The CT files by Series Instance UID."""
    out: dict[str, list[Path]] = {}
    for f in ct_files:
        out.setdefault(str(dcmread(f, stop_before_pixels=True).SeriesInstanceUID), []).append(f)
    return out


@pytest.fixture(scope="module")
def study_uid(ct_files: list[Path]) -> str:
    return str(dcmread(ct_files[0], stop_before_pixels=True).StudyInstanceUID)


# ---------------------------------------------------------------------------------- C-ECHO, C-STORE
@pytest.mark.peer
def test_echoscu(loaded: Any) -> None:
    server, _ = loaded
    r = dcmtk("echoscu", "-aec", "MEDIMG", "127.0.0.1", str(server.node.port))
    assert r.returncode == 0, r.stderr


@pytest.mark.peer
def test_storescu_ct_folder_in_one_association(loaded: Any, ct_files: list[Path],
                                               storescu_sent: dict[str, bytes]) -> None:
    server, result = loaded
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("Requesting Association") == 1
    assert result.stderr.count("Received Store Response (Success)") == 128
    assert server.store.count() == {"studies": 1, "series": 2, "instances": 128}
    assert sorted(storescu_sent) == sorted(uid_of(f) for f in ct_files)
    for f in ct_files:
        inst = server.store.instance(uid_of(f))
        assert inst is not None, f.name
        stored = inst.path.read_bytes()
        assert dataset_bytes(stored) == storescu_sent[inst.sop_uid], f.name  # as transmitted
        assert dcmread(inst.path) == dcmread(f), f.name  # and the same content as the file


@pytest.mark.peer
def test_storescu_resend_is_stored_once(loaded: Any, ct_study_dir: Path) -> None:
    server, _ = loaded
    files_before = sorted(p.name for p in (server.store.root / "files").rglob("*.dcm"))
    r = storescu(server.node.port, "+sd", "+r", "+sp", "*.dcm", str(ct_study_dir / "series-3"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("Received Store Response (Success)") == 64  # same bytes again: success
    assert server.store.count()["instances"] == 128
    assert sorted(p.name for p in (server.store.root / "files").rglob("*.dcm")) == files_before


def _storescu_config(files: list[Path], path: Path) -> None:
    """A storescu configuration proposing each file's own (SOP class, transfer syntax), so that
    compressed files travel as they are (storescu otherwise proposes uncompressed syntaxes only)."""
    pairs = sorted({(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID))
                    for m in map(read_file_meta_info, files)})
    syntaxes = sorted({ts for _, ts in pairs})
    lines = ["[[TransferSyntaxes]]"]
    for i, ts in enumerate(syntaxes):
        lines += [f"[TS{i}]", f"TransferSyntax1 = {ts}"]
    lines += ["[[PresentationContexts]]", "[Files]"]
    for i, (sop, ts) in enumerate(pairs, 1):
        lines.append(f"PresentationContext{i} = {sop}\\TS{syntaxes.index(ts)}")
    lines += ["[[Profiles]]", "[Files]", "PresentationContexts = Files"]
    assert len(pairs) <= 128
    path.write_text("\n".join(lines) + "\n")


def _outcomes(log: str) -> dict[str, str]:
    """storescu -v log -> {file name: store response text} for the files it sent."""
    out: dict[str, str] = {}
    current = ""
    for line in log.splitlines():
        m = re.match(r"I: Sending file: (.*)$", line)
        if m:
            current = Path(m.group(1)).name
        m = re.match(r"I: Received Store Response \((.*)\)$", line)
        if m and current:
            out[current] = m.group(1)
            current = ""
    return out


@pytest.mark.peer
@pytest.mark.slow
def test_storescu_pydicom_data_folder(medimg_server: Any, pydicom_data_files: list[Path],
                                      tmp_path: Path) -> None:
    server = medimg_server()
    folder = tmp_path / "in"
    folder.mkdir()
    by_name: dict[str, Path] = {}
    for i, f in enumerate(pydicom_data_files):
        link = folder / f"{i:03d}_{f.name}"
        link.symlink_to(f.resolve())
        by_name[link.name] = f
    cfg = tmp_path / "storescu.cfg"
    _storescu_config(pydicom_data_files, cfg)
    args = ("-xf", str(cfg), "Files", "-nh", "+sd", str(folder))
    # what storescu transmits, received bit-preserving by a dcmtk storescp
    port = free_port()
    scp = _StoreSCP(port, tmp_path / "reference", "MEDIMG", "+xa", "+uf")
    try:
        storescu(port, *args)
    finally:
        scp.stop()
    sent: dict[str, set[bytes]] = {}
    for f in scp.files():
        sent.setdefault(uid_of(f), set()).add(dataset_bytes(f.read_bytes()))

    r = storescu(server.node.port, *args)
    assert r.stderr.count("Requesting Association") == 1
    outcomes = _outcomes(r.stderr)
    # storescu itself cannot parse two of them (no SOP Instance UID it can read): never sent
    assert len(outcomes) >= len(pydicom_data_files) - 2
    stored: set[str] = set()
    for name, outcome in outcomes.items():
        source = by_name[name]
        uid = uid_of(source)
        inst = server.store.instance(uid)
        if outcome == "Success":
            assert inst is not None, name
            assert dataset_bytes(inst.path.read_bytes()) in sent[uid], name  # stored as transmitted
            stored.add(uid)
        elif "0x111" in outcome:  # several pydicom-data files share a SOP Instance UID with other bytes
            assert inst is not None and uid in stored, name
        else:  # refused by the store's checks (a UID that is not a UID ...): nothing kept
            assert "Success" not in outcome and "Warning" not in outcome, (name, outcome)
            assert inst is None or uid in stored, name
    assert len(stored) >= 30
    assert server.store.count()["instances"] == len(stored)  # every instance once


def test_transfer_syntax_choice(loaded: Any) -> None:
    """Uncompressed first, unless the requestor put a compressed syntax (or deflate) first."""
    server, _ = loaded
    mr = "1.2.840.10008.5.1.4.1.1.4"
    proposals = {  # context -> accepted
        ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1"): "1.2.840.10008.1.2.4.90",  # J2K first: J2K
        ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"): "1.2.840.10008.1.2.1",  # never lossy for them
        ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2"): "1.2.840.10008.1.2",  # implicit rather than big endian
        ("1.2.840.10008.1.2.4.70",): "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
        ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.1"): "1.2.840.10008.1.2.1.99",  # deflate first
        ("1.2.840.10008.1.2.4.201",): "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    }
    for proposed, accepted in proposals.items():
        sop = mr if proposed[0] != "1.2.840.10008.1.2.1.99" else "1.2.840.10008.5.1.4.1.1.7"
        ae = AE("TS")
        assoc = ae.associate("127.0.0.1", server.node.port, contexts=[build_context(sop, list(proposed))],
                             ae_title="MEDIMG")
        assert assoc.is_established
        [cx] = assoc.accepted_contexts
        assert cx.transfer_syntax[0] == accepted, proposed
        assoc.release()


# ---------------------------------------------------------------------------------- C-FIND
@pytest.mark.peer
def test_findscu_patient_root(loaded: Any, tmp_path: Path, series: dict[str, list[Path]],
                              study_uid: str) -> None:
    server, _ = loaded
    port = server.node.port
    pats = findscu(port, tmp_path, "-P", "PATIENT", "PatientID", "PatientName", "NumberOfPatientRelatedStudies",
                   "NumberOfPatientRelatedInstances")
    assert [(p.PatientID, str(p.PatientName), int(p.NumberOfPatientRelatedStudies),
             int(p.NumberOfPatientRelatedInstances)) for p in pats] == [(PATIENT, PATIENT, 1, 128)]
    studies = findscu(port, tmp_path, "-P", "STUDY", f"PatientID={PATIENT}", "StudyInstanceUID", "StudyDate",
                      "NumberOfStudyRelatedSeries")
    assert [(s.StudyInstanceUID, s.StudyDate, int(s.NumberOfStudyRelatedSeries)) for s in studies] == \
        [(study_uid, "20070404", 2)]
    found = findscu(port, tmp_path, "-P", "SERIES", f"PatientID={PATIENT}", f"StudyInstanceUID={study_uid}",
                    "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances")
    assert sorted(s.SeriesInstanceUID for s in found) == sorted(series)
    assert {(s.Modality, int(s.NumberOfSeriesRelatedInstances)) for s in found} == {("CT", 64)}
    one = sorted(series)[0]
    images = findscu(port, tmp_path, "-P", "IMAGE", f"PatientID={PATIENT}", f"StudyInstanceUID={study_uid}",
                     f"SeriesInstanceUID={one}", "SOPInstanceUID", "InstanceNumber")
    assert sorted(i.SOPInstanceUID for i in images) == sorted(uid_of(f) for f in series[one])


@pytest.mark.peer
def test_findscu_study_root(loaded: Any, tmp_path: Path, series: dict[str, list[Path]], study_uid: str) -> None:
    server, _ = loaded
    port = server.node.port
    studies = findscu(port, tmp_path, "-S", "STUDY", "StudyInstanceUID", "PatientID", "ModalitiesInStudy",
                      "NumberOfStudyRelatedInstances", "RetrieveAETitle")
    assert len(studies) == 1
    s = studies[0]
    assert (s.StudyInstanceUID, s.PatientID, s.ModalitiesInStudy, int(s.NumberOfStudyRelatedInstances),
            s.RetrieveAETitle) == (study_uid, PATIENT, "CT", 128, "MEDIMG")
    found = findscu(port, tmp_path, "-S", "SERIES", f"StudyInstanceUID={study_uid}", "SeriesInstanceUID",
                    "SeriesNumber")
    assert sorted(int(x.SeriesNumber) for x in found) == [2, 3]
    images = findscu(port, tmp_path, "-S", "IMAGE", f"SeriesInstanceUID={sorted(series)[1]}", "SOPInstanceUID")
    assert len(images) == 64
    # matching: wildcards, date ranges, no match
    assert len(findscu(port, tmp_path, "-S", "STUDY", "PatientName=LUNG_dx*", "StudyInstanceUID")) == 1
    assert len(findscu(port, tmp_path, "-S", "STUDY", "StudyDate=20070101-20071231", "StudyInstanceUID")) == 1
    assert findscu(port, tmp_path, "-S", "STUDY", "StudyDate=-20061231", "StudyInstanceUID") == []
    assert findscu(port, tmp_path, "-S", "STUDY", "PatientID=nobody", "StudyInstanceUID") == []


def _identifier(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.peer  # the node was loaded by storescu
def test_find_statuses(loaded: Any) -> None:
    server, _ = loaded
    port = server.node.port
    # the Study Root model has no PATIENT level
    [(status, _, st)] = c_find(port, _identifier("PATIENT", PatientID=""))
    assert status == 0xA900 and "PATIENT" in st.ErrorComment
    # a level that does not exist
    [(status, _, _)] = c_find(port, _identifier("FRAME", PatientID=""))
    assert status == 0xA900
    # matching on a key the store does not know: refused, not silently ignored
    [(status, _, st)] = c_find(port, _identifier("STUDY", StudyInstanceUID="", OperatorsName="Smith"))
    assert status == 0xA900 and "OperatorsName" in st.ErrorComment
    # a key that only asks for a value it cannot give: answered empty, pending with warning (0xFF01)
    answers = c_find(port, _identifier("STUDY", StudyInstanceUID="", OperatorsName=""))
    assert [a[0] for a in answers] == [0xFF01, 0x0000]
    ident = answers[0][1]
    assert ident is not None and ident.OperatorsName == "" and ident.StudyInstanceUID
    # a malformed value
    [(status, _, _)] = c_find(port, _identifier("STUDY", StudyInstanceUID="", StudyDate="2007-bad"))
    assert status & 0xF000 in (0xA000, 0xC000)


def test_find_limit(medimg_server: Any, series: dict[str, list[Path]]) -> None:
    """Beyond max_query_results: the first N matches, then failure 0xA700 saying so."""
    server = medimg_server(limits=Limits(max_query_results=5))
    files = series[sorted(series)[0]]
    for f in files:
        server.store.put_path(f)
    answers = c_find(server.node.port, _identifier("IMAGE", SOPInstanceUID=""))
    assert [a[0] for a in answers] == [0xFF00] * 5 + [0xA700]
    assert "more than 5 matches" in answers[-1][2].ErrorComment
    assert len({str(a[1].SOPInstanceUID) for a in answers[:5] if a[1] is not None}) == 5
    # exactly at the limit: all of them, then success
    answers = c_find(server.node.port, _identifier("SERIES", SeriesInstanceUID=""))
    assert [a[0] for a in answers] == [0xFF00, 0x0000]


# ---------------------------------------------------------------------------------- C-MOVE, C-GET
class _StoreSCP:
    """A dcmtk storescp writing what it receives, bit-preserving, into ``folder``."""

    def __init__(self, port: int, folder: Path, aet: str = "DEST", *extra: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port
        self.proc = subprocess.Popen(["storescp", "-aet", aet, "-od", str(folder), "+B", *(extra or ("+xa",)),
                                      str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=PEER_ENV)
        wait_port(port, 20, self.proc)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def clear(self) -> None:
        for f in self.files():
            f.unlink()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def assert_retrieved(received: list[Path], sources: list[Path], server: Any) -> None:
    """``received`` hold exactly the instances of ``sources``, each data set byte for byte as stored."""
    got = {uid_of(f): f for f in received}
    assert len(got) == len(received) == len(sources)
    assert set(got) == {uid_of(f) for f in sources}
    for uid, f in got.items():
        inst = server.store.instance(uid)
        assert dataset_bytes(f.read_bytes()) == dataset_bytes(inst.path.read_bytes()), uid


@pytest.mark.peer
@pytest.mark.slow
def test_movescu_to_storescp(loaded: Any, dest: _StoreSCP, ct_files: list[Path], series: dict[str, list[Path]],
                             study_uid: str) -> None:
    server, _ = loaded
    dest.clear()
    r = dcmtk("movescu", "-v", "-aec", "MEDIMG", "-aem", "DEST", "-S", "-k", "QueryRetrieveLevel=STUDY",
              "-k", f"StudyInstanceUID={study_uid}", "127.0.0.1", str(server.node.port))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Received Final Move Response (Success)" in r.stderr, r.stderr[-2000:]
    assert_retrieved(dest.files(), ct_files, server)
    # Patient Root, one series
    one = sorted(series)[0]
    dest.clear()
    r = dcmtk("movescu", "-aec", "MEDIMG", "-aem", "DEST", "-P", "-k", "QueryRetrieveLevel=SERIES",
              "-k", f"PatientID={PATIENT}", "-k", f"StudyInstanceUID={study_uid}",
              "-k", f"SeriesInstanceUID={one}", "127.0.0.1", str(server.node.port))
    assert r.returncode == 0, r.stderr[-2000:]
    assert_retrieved(dest.files(), series[one], server)


@pytest.mark.peer  # the node was loaded by storescu
def test_move_statuses(loaded: Any, study_uid: str, dest: _StoreSCP, series: dict[str, list[Path]]) -> None:
    server, _ = loaded
    ae = AE("PYSCU")
    model = StudyRootQueryRetrieveInformationModelMove
    assoc = ae.associate("127.0.0.1", server.node.port, contexts=[build_context(model)], ae_title="MEDIMG")
    assert assoc.is_established
    try:
        # an unknown move destination
        statuses = [int(st.Status) for st, _ in
                    assoc.send_c_move(_identifier("STUDY", StudyInstanceUID=study_uid), "NOWHERE", model)]
        assert statuses == [0xA801]
        # nothing matches: success with no sub-operations
        [(st, _)] = list(assoc.send_c_move(_identifier("STUDY", StudyInstanceUID="1.2.3.4"), "DEST", model))
        assert int(st.Status) == 0 and int(st.NumberOfCompletedSuboperations) == 0
        # no unique key: a failure
        [(st, _)] = list(assoc.send_c_move(_identifier("STUDY", PatientID=PATIENT), "DEST", model))
        assert int(st.Status) & 0xF000 in (0xA000, 0xC000)
        # a list of UIDs naming one instance twice, and one of another series: two sub-operations
        a, b = series[sorted(series)[0]][3], series[sorted(series)[1]][5]
        dest.clear()
        ident = _identifier("IMAGE", SOPInstanceUID=[uid_of(a), uid_of(a), uid_of(b)])
        *_, (st, _) = list(assoc.send_c_move(ident, "DEST", model))
        assert (int(st.Status), int(st.NumberOfCompletedSuboperations)) == (0, 2)
        assert sorted(uid_of(f) for f in dest.files()) == sorted([uid_of(a), uid_of(b)])
    finally:
        assoc.release()


def _getscu(port: int, out: Path, *keys: str, model: str = "-S") -> subprocess.CompletedProcess[str]:
    out.mkdir(parents=True, exist_ok=True)
    args = ["+B", "-aec", "MEDIMG", model]
    for k in keys:
        args += ["-k", k]
    return dcmtk("getscu", *args, "-od", str(out), "127.0.0.1", str(port))


@pytest.mark.peer
def test_getscu_into_folder(medimg_server: Any, tmp_path: Path, series: dict[str, list[Path]],
                            study_uid: str, pydicom_test_dir: Path) -> None:
    """getscu proposes explicit VR little endian first, and gets it: an explicit VR file arrives as
    stored; an implicit VR file is converted on the way (same content)."""
    server = medimg_server()
    explicit = [pydicom_test_dir / "CT_small.dcm", pydicom_test_dir / "MR_small.dcm"]
    one = sorted(series)[1]
    for f in [*explicit, *series[one]]:
        server.store.put_path(f)
    port = server.node.port
    ct = dcmread(explicit[0], stop_before_pixels=True)
    r = _getscu(port, tmp_path / "study", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ct.StudyInstanceUID}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_retrieved(sorted((tmp_path / "study").iterdir()), explicit[:1], server)
    assert dataset_bytes(next((tmp_path / "study").iterdir()).read_bytes()) == \
        dataset_bytes(explicit[0].read_bytes())
    mr = dcmread(explicit[1], stop_before_pixels=True)
    r = _getscu(port, tmp_path / "image", "QueryRetrieveLevel=IMAGE", f"PatientID={mr.PatientID}",
                f"StudyInstanceUID={mr.StudyInstanceUID}", f"SeriesInstanceUID={mr.SeriesInstanceUID}",
                f"SOPInstanceUID={mr.SOPInstanceUID}", model="-P")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_retrieved(sorted((tmp_path / "image").iterdir()), explicit[1:], server)
    # the implicit VR CT series: 64 instances, converted to explicit VR by pydicom, same content
    r = _getscu(port, tmp_path / "series", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study_uid}",
                f"SeriesInstanceUID={one}")
    assert r.returncode == 0, r.stderr[-2000:]
    received = {uid_of(f): f for f in (tmp_path / "series").iterdir()}
    assert sorted(received) == sorted(uid_of(f) for f in series[one])
    for f in series[one][::8]:
        got = dcmread(received[uid_of(f)])
        assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert got == dcmread(f)


# ---------------------------------------------------------------------------------- SCU functions
@pytest.fixture
def two_nodes(medimg_server: Any, ct_files: list[Path]) -> tuple[Any, Any]:
    """Node A (MEDIMG, empty) and node B (PACS, holding the CT study), each a peer of the other."""
    a_port, b_port = free_port(), free_port()
    pacs = Peer("PACS", "127.0.0.1", b_port)
    a = medimg_server(dicom_port=a_port, peers={"PACS": pacs}, priors_from="PACS")
    b = medimg_server(dicom_port=b_port, aet="PACS", peers={"A": Peer("MEDIMG", "127.0.0.1", a_port)})
    for f in ct_files:
        b.store.put_path(f)
    return a, b


def test_scu_find_retrieve_priors(two_nodes: tuple[Any, Any], ct_files: list[Path],
                                  series: dict[str, list[Path]], study_uid: str) -> None:
    a, b = two_nodes
    studies = find(a, "PACS", "STUDY", {"PatientID": PATIENT, "StudyInstanceUID": "",
                                        "NumberOfStudyRelatedInstances": ""})
    assert [(s.StudyInstanceUID, int(s.NumberOfStudyRelatedInstances)) for s in studies] == [(study_uid, 128)]
    assert len(find(a, "PACS", "IMAGE", {"StudyInstanceUID": study_uid, "SOPInstanceUID": ""})) == 128
    assert find(a, "PACS", "PATIENT", {"PatientID": ""})[0].PatientID == PATIENT
    one = sorted(series)[0]
    assert retrieve(a, "PACS", "SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": one}) == 64
    assert_stored_as_sent(a, series[one])
    assert a.store.count()["instances"] == 64
    # priors: the study is incomplete here (64 of 128), so it is fetched; then complete, so not again
    assert fetch_priors(a, PATIENT) == [study_uid]
    assert a.store.count()["instances"] == 128
    assert_stored_as_sent(a, ct_files)
    assert fetch_priors(a, PATIENT) == []
    assert fetch_priors(a, "nobody") == []


def test_scu_send_instances(two_nodes: tuple[Any, Any], series: dict[str, list[Path]],
                            pydicom_test_dir: Path) -> None:
    a, b = two_nodes
    # B sends a series to A (A knows B as PACS; B knows A as "A")
    one = sorted(series)[1]
    results = send_instances(b, "A", series[one])
    assert results == [(uid_of(f), 0) for f in series[one]]
    assert_stored_as_sent(a, series[one])
    # each file goes in its own transfer syntax, as it is: JPEG 2000, JPEG-LS, RLE, JPEG baseline and
    # extended, JPEG lossless SV1, deflated, big endian, implicit and explicit VR little endian
    picks = [pydicom_test_dir / n for n in (
        "693_J2KI.dcm", "MR_small_jpeg_ls_lossless.dcm", "rtdose_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPGExtended.dcm",
        "SC_rgb_jpeg_gdcm.dcm", "image_dfl.dcm", "ExplVR_BigEnd.dcm", "SC_rgb_jpeg_dcmd.dcm", "CT_small.dcm")]
    results = send_instances(a, "PACS", picks)
    assert [s for _, s in results] == [0] * len(picks)
    assert_stored_as_sent(b, picks)


def test_scu_errors_name_the_peer(medimg_server: Any, tmp_path: Path, ct_files: list[Path]) -> None:
    gone = free_port()
    a = medimg_server(peers={"GONE": Peer("GONE", "127.0.0.1", gone)})
    with pytest.raises(InputError, match=r"peer GONE \(GONE@127.0.0.1:\d+\).*cannot be reached"):
        send_instances(a, "GONE", ct_files[:1])
    with pytest.raises(InputError, match="GONE"):
        find(a, "GONE", "STUDY", {"StudyInstanceUID": ""})
    with pytest.raises(InputError, match="is not a configured peer"):
        retrieve(a, "ELSEWHERE", "STUDY", {"StudyInstanceUID": "1.2.3"})
    with pytest.raises(InputError, match="no peer to fetch priors from"):
        fetch_priors(a, PATIENT)
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    with pytest.raises(InputError, match="notes.txt"):
        send_instances(a, "GONE", [text])
    # a peer that answers with failures: it does not know us as a move destination, it refuses a key
    b = medimg_server(aet="PACS")
    a2 = medimg_server(peers={"PACS": Peer("PACS", "127.0.0.1", b.node.port)})
    for f in ct_files[:2]:
        b.store.put_path(f)
    with pytest.raises(InputError, match=r"peer PACS .*does not know the move destination MEDIMG"):
        retrieve(a2, "PACS", "STUDY", {"StudyInstanceUID": str(dcmread(ct_files[0]).StudyInstanceUID)})
    with pytest.raises(InputError, match=r"peer PACS .*C-FIND STUDY failed: status 0xA900"):
        find(a2, "PACS", "STUDY", {"StudyInstanceUID": "", "OperatorsName": "x"})
    with pytest.raises(InputError, match="not a DICOM keyword"):
        find(a2, "PACS", "STUDY", {"NoSuchKeyword": ""})
    # a peer that rejects the association (its only association is taken)
    full = medimg_server(aet="FULL", limits=Limits(max_associations=1))
    a3 = medimg_server(peers={"FULL": Peer("FULL", "127.0.0.1", full.node.port)})
    ae = AE("HOLDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    holder = ae.associate("127.0.0.1", full.node.port, ae_title="FULL")
    assert holder.is_established
    rejected = r"peer FULL \(FULL@127.0.0.1:\d+\): rejected the association \(rejected transient, local limit exceeded\); try again later"
    try:
        with pytest.raises(InputError, match=rejected):
            send_instances(a3, "FULL", ct_files[:1])
        # pynetdicom's requestor misses a reject that arrives (and the connection closes) before the
        # requesting thread looks at the connection; a slow EVT_REQUESTED handler makes that certain
        with pytest.raises(InputError, match=rejected):
            _associate(a3, "FULL", [build_context(Verification)],
                       handlers=[(evt.EVT_REQUESTED, lambda _event: time.sleep(0.5))])
    finally:
        holder.release()


def test_find_names_in_other_character_sets(two_nodes: tuple[Any, Any]) -> None:
    """Names stored in Latin-1, Cyrillic, ISO 2022 Japanese and UTF-8 come back as the same text (the
    answers are UTF-8, ISO_IR 192)."""
    import pydicom

    a, b = two_nodes
    folder = Path(pydicom.__file__).parent / "data" / "charset_files"
    names = {}
    for n in ("chrGerm.dcm", "chrRuss.dcm", "chrH31.dcm", "chrX1.dcm"):
        ds = dcmread(folder / n)
        b.store.put_path(folder / n)
        names[str(ds.StudyInstanceUID)] = str(ds.PatientName)
    found = find(a, "PACS", "STUDY", {"StudyInstanceUID": "", "PatientName": ""})
    got = {str(s.StudyInstanceUID): str(s.PatientName) for s in found}
    for uid, name in names.items():
        assert got[uid] == name
    [japanese] = find(a, "PACS", "STUDY", {"PatientName": "Yamada*", "StudyInstanceUID": ""})
    assert str(japanese.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"


def test_find_non_ascii_name_matching(two_nodes: tuple[Any, Any]) -> None:
    import pydicom

    a, b = two_nodes
    folder = Path(pydicom.__file__).parent / "data" / "charset_files"
    for n in ("chrGerm.dcm", "chrRuss.dcm"):
        b.store.put_path(folder / n)
    [german] = find(a, "PACS", "STUDY", {"PatientName": "Äneas*", "StudyInstanceUID": ""})
    assert str(german.PatientName) == "Äneas^Rüdiger"
    [russian] = find(a, "PACS", "PATIENT", {"PatientName": "Люкceмбypг", "PatientID": ""})
    assert str(russian.PatientName) == "Люкceмбypг"


@pytest.mark.slow
def test_requestor_keeps_its_responses(medimg_server: Any) -> None:
    """An association medimg requests (SCU functions, C-MOVE sub-operations) must not lose a response to
    its own reactor: with pynetdicom's pause alone, one of a few thousand quick requests is taken by
    the reactor and the sender times out."""
    from medimg.server.dicom_node import _tune_requestor

    server = medimg_server()
    ae = AE("MANY")
    ae.dimse_timeout = 5
    assoc = ae.associate("127.0.0.1", server.node.port, ae_title="MEDIMG", contexts=[build_context(Verification)],
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda e: _tune_requestor(e, True, 1 << 20))])
    assert assoc.is_established
    try:
        statuses = [assoc.send_c_echo().get("Status") for _ in range(2000)]
    finally:
        if assoc.is_established:
            assoc.release()
    assert statuses == [0] * 2000
