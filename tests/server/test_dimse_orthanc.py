"""The DICOM node with Orthanc as the PACS on the other side: Orthanc sends a study to medimg (C-STORE
SCU), medimg sends results to Orthanc (send_instances), finds, retrieves (C-MOVE to itself) and
fetches priors from it.

Orthanc (DCMTK underneath) re-encodes a data set when it sends one (undefined-length sequences get
explicit lengths) and when it stores one.  So "unchanged" is checked as: medimg stores exactly what
Orthanc transmits (the same transmission received by a bit-preserving dcmtk storescp), with the same
content as the source file (pydicom data sets equal); and what medimg sends is the file's data set as
it is (Orthanc's copy has the same content)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import PEER_ENV, Orthanc, dataset_bytes, free_port, start_medimg, wait_port
from pydicom import dcmread
from pydicom.filereader import read_file_meta_info

from medimg.errors import InputError
from medimg.server.config import Peer
from medimg.server.dicom_node import fetch_priors, find, retrieve, send_instances

pytestmark = [pytest.mark.peer, pytest.mark.xdist_group("test_dimse_orthanc")]

PATIENT = "Lung_Dx-A0001"


def uid_of(path: Path) -> str:
    return str(read_file_meta_info(path).MediaStorageSOPInstanceUID)


def orthanc_transmission(orthanc: Orthanc, ids: list[str], folder: Path) -> dict[str, bytes]:
    """What Orthanc transmits when it C-STOREs the instances ``ids``: {SOP Instance UID: data set},
    received by a dcmtk storescp in bit-preserving mode."""
    port = free_port()
    folder.mkdir(parents=True)
    proc = subprocess.Popen(["storescp", "-aet", "REF", "+B", "+xa", "-od", str(folder), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=PEER_ENV)
    try:
        wait_port(port, 20, proc)
        orthanc.add_modality("REF", "REF", port)
        job = orthanc.api("POST", "/modalities/REF/store", json={"Resources": ids, "Synchronous": True})
        assert job.get("FailedInstancesCount", 0) == 0, job
    finally:
        proc.terminate()
        proc.wait(10)
    return {uid_of(f): dataset_bytes(f.read_bytes()) for f in folder.iterdir()}


def same_content(a: Path, b: Path) -> bool:
    """The two files hold the same data set content, apart from what DCMTK normalises when it
    re-encodes: group lengths (gggg,0000) and the VR of encapsulated pixel data (OB)."""
    da, db = dcmread(a), dcmread(b)
    for d in (da, db):
        for tag in [e.tag for e in d if e.tag.element == 0]:
            del d[tag]
    if "PixelData" in da and "PixelData" in db:
        db["PixelData"].VR = da["PixelData"].VR
    return bool(da == db)


def stored_dataset(server: Any, sop_uid: str) -> bytes:
    inst = server.store.instance(sop_uid)
    assert inst is not None, sop_uid
    return dataset_bytes(inst.path.read_bytes())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, orthanc: Orthanc) -> Iterator[Any]:
    """A medimg node that knows Orthanc as peer PACS (and fetches priors from it); Orthanc knows it as
    modality MEDIMG."""
    port = free_port()
    server = start_medimg(tmp_path_factory.mktemp("orthanc-node") / "store", dicom_port=port,
                          peers={"PACS": Peer(orthanc.aet, "127.0.0.1", orthanc.dicom_port)}, priors_from="PACS")
    orthanc.add_modality("MEDIMG", "MEDIMG", port)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def series(ct_files: list[Path]) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for f in ct_files:
        out.setdefault(int(dcmread(f, stop_before_pixels=True).SeriesNumber), []).append(f)
    return out


def test_orthanc_sends_a_series(node: Any, orthanc: Orthanc, series: dict[int, list[Path]],
                                tmp_path: Path) -> None:
    ids = orthanc.upload(series[2])
    job = orthanc.api("POST", "/modalities/MEDIMG/store", json={"Resources": ids, "Synchronous": True})
    assert job.get("FailedInstancesCount", 0) == 0, job
    sent = orthanc_transmission(orthanc, ids, tmp_path / "reference")
    assert sorted(sent) == sorted(uid_of(f) for f in series[2])
    for f in series[2]:
        assert stored_dataset(node, uid_of(f)) == sent[uid_of(f)]  # stored as transmitted
        assert same_content(node.store.instance(uid_of(f)).path, f)  # the file's content
    assert node.store.count()["instances"] >= 64


def test_send_instances_to_orthanc(node: Any, orthanc: Orthanc, pydicom_test_dir: Path, tmp_path: Path) -> None:
    files = [pydicom_test_dir / n for n in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm",
                                            "SC_rgb_jpeg_dcmtk.dcm")]
    results = send_instances(node, "PACS", files)
    assert results == [(uid_of(f), 0) for f in files]
    for f in files:
        [found] = orthanc.api("POST", "/tools/lookup", content=uid_of(f))
        held = tmp_path / f.name
        held.write_bytes(orthanc.instance_file(found["ID"]))
        # not transcoded on the way, same content (Orthanc re-encodes sequence lengths when it stores)
        assert read_file_meta_info(held).TransferSyntaxUID == read_file_meta_info(f).TransferSyntaxUID, f.name
        assert same_content(held, f), f.name
    # sending again: Orthanc already has them, still success
    assert [s for _, s in send_instances(node, "PACS", files[:2])] == [0, 0]


def test_find_at_orthanc(node: Any, orthanc: Orthanc, pydicom_test_dir: Path) -> None:
    ct = pydicom_test_dir / "CT_small.dcm"
    orthanc.upload([ct])
    ds = dcmread(ct, stop_before_pixels=True)
    studies = find(node, "PACS", "STUDY", {"PatientID": ds.PatientID, "StudyInstanceUID": "",
                                           "NumberOfStudyRelatedInstances": "", "StudyDate": ""})
    assert [(s.StudyInstanceUID, int(s.NumberOfStudyRelatedInstances), s.StudyDate) for s in studies] == \
        [(ds.StudyInstanceUID, 1, ds.StudyDate)]
    images = find(node, "PACS", "IMAGE", {"StudyInstanceUID": ds.StudyInstanceUID,
                                          "SeriesInstanceUID": ds.SeriesInstanceUID, "SOPInstanceUID": ""})
    assert [i.SOPInstanceUID for i in images] == [ds.SOPInstanceUID]
    patients = find(node, "PACS", "PATIENT", {"PatientID": ds.PatientID, "PatientName": ""})
    assert [str(p.PatientName) for p in patients] == [str(ds.PatientName)]
    assert find(node, "PACS", "STUDY", {"PatientID": "nobody-here", "StudyInstanceUID": ""}) == []


def test_retrieve_from_orthanc(node: Any, orthanc: Orthanc, pydicom_test_dir: Path, tmp_path: Path) -> None:
    files = [pydicom_test_dir / n for n in ("693_J2KI.dcm", "JPGExtended.dcm")]
    ids = orthanc.upload(files)
    sent = orthanc_transmission(orthanc, ids, tmp_path / "reference")
    for f in files:
        ds = dcmread(f, stop_before_pixels=True)
        assert node.store.instance(ds.SOPInstanceUID) is None
        assert retrieve(node, "PACS", "IMAGE", {"StudyInstanceUID": ds.StudyInstanceUID,
                                                "SeriesInstanceUID": ds.SeriesInstanceUID,
                                                "SOPInstanceUID": ds.SOPInstanceUID}) == 1
        assert stored_dataset(node, ds.SOPInstanceUID) == sent[ds.SOPInstanceUID]
        stored = node.store.instance(ds.SOPInstanceUID).path
        assert read_file_meta_info(stored).TransferSyntaxUID == read_file_meta_info(f).TransferSyntaxUID
        assert same_content(stored, f)
    # Orthanc answers a C-MOVE of an unknown study with a failure (0xC000): an error naming the peer
    with pytest.raises(InputError, match=r"peer PACS \(ORTHANC@127.0.0.1:\d+\): C-MOVE STUDY failed"):
        retrieve(node, "PACS", "STUDY", {"StudyInstanceUID": "1.2.3.4.5.6"})


@pytest.mark.slow
def test_fetch_priors_from_orthanc(medimg_server: Any, orthanc: Orthanc, ct_files: list[Path]) -> None:
    port = free_port()
    server = medimg_server(dicom_port=port, aet="MEDIMG2",
                           peers={"PACS": Peer(orthanc.aet, "127.0.0.1", orthanc.dicom_port)})
    orthanc.add_modality("MEDIMG2", "MEDIMG2", port)
    orthanc.upload(ct_files)
    study_uid = str(dcmread(ct_files[0], stop_before_pixels=True).StudyInstanceUID)
    assert fetch_priors(server, PATIENT, "PACS") == [study_uid]
    assert server.store.count() == {"studies": 1, "series": 2, "instances": 128}
    for f in ct_files[::16]:
        assert same_content(server.store.instance(uid_of(f)).path, f)
    assert fetch_priors(server, PATIENT, "PACS") == []  # all here already
