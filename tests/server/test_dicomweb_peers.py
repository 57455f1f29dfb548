"""DICOMweb with a real peer, Orthanc 1.10 and its DICOMweb plugin: medimg's client reads a study from
Orthanc's DICOMweb into the store with byte-identical data sets, and Orthanc's DICOMweb client reads
from (get, QIDO, retrieve) and writes to (STOW-RS) medimg."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pydicom
import pytest
from dicomweb_helpers import stow, value, values
from peers import Orthanc, dataset_bytes, start_medimg

from medimg.server.dicomweb_client import DicomWebClient, DicomWebError, import_study
from medimg.store import Store

pytestmark = [pytest.mark.peer, pytest.mark.xdist_group("test_dicomweb_peers")]

IN_MEDIMG = ("US1_J2KR.dcm", "emri_small.dcm", "SC_rgb.dcm", "liver.dcm")  # Orthanc retrieves these


def header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


@pytest.fixture(scope="module")
def peers(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory, ct_files: list[Path],
          pydicom_data_files: list[Path]) -> Iterator[SimpleNamespace]:
    server = start_medimg(tmp_path_factory.mktemp("dicomweb-peers") / "store")
    base = f"http://127.0.0.1:{server.config.http_port}/dicomweb"
    client = httpx.Client(base_url=base, timeout=120)
    by_name = {p.name: p for p in pydicom_data_files}
    series2 = [p for p in ct_files if p.parent.name == "series-2"]
    series3 = [p for p in ct_files if p.parent.name == "series-3"]
    orthanc.upload(series2 + [by_name["693_J2KR.dcm"]])
    assert stow(client, series3).status_code == 200
    assert stow(client, [by_name[n] for n in IN_MEDIMG]).status_code == 200
    orthanc.api("PUT", "/dicom-web/servers/medimg", json={"Url": base})
    try:
        yield SimpleNamespace(server=server, base=base, client=client, orthanc=orthanc, by_name=by_name,
                              series2=series2, series3=series3, study=header(ct_files[0]).StudyInstanceUID)
    finally:
        client.close()
        server.stop()


def stored_datasets(store: Store, study: str) -> dict[str, bytes]:
    return {i.sop_uid: dataset_bytes(i.path.read_bytes()) for i in store.instances(study_uid=study)}


# ---------------------------------------------------------------------------------------- medimg reads Orthanc
def test_client_queries_orthanc(peers: SimpleNamespace) -> None:
    with DicomWebClient(peers.orthanc.dicomweb_url) as dw:
        studies = dw.search_studies(PatientID="Lung_Dx-A0001")
        assert values(studies, "0020000D") == [peers.study]
        (series,) = dw.search_series(peers.study)
        se = value(series, "0020000E")
        assert se == header(peers.series2[0]).SeriesInstanceUID
        assert len(dw.search_instances(peers.study, se)) == 64
        metadata = dw.metadata(peers.study, se)
        assert len(metadata) == 64
        one = header(peers.series2[7])
        (data,) = list(dw.retrieve(peers.study, se, one.SOPInstanceUID))
        assert dataset_bytes(data) == dataset_bytes(peers.series2[7].read_bytes())
        with pytest.raises(DicomWebError) as err:
            list(dw.retrieve("1.2.3.4.5.6"))
        assert err.value.status == 404


def test_import_study_from_orthanc(peers: SimpleNamespace) -> None:
    store = peers.server.store
    assert len(store.instances(study_uid=peers.study)) == 64  # series 3 only, so far
    counts = import_study(peers.server, peers.orthanc.dicomweb_url, peers.study)
    assert counts == {"received": 64, "stored": 64, "duplicate": 0, "failed": 0}
    held = stored_datasets(store, peers.study)
    assert len(held) == 128
    for path in peers.series2 + peers.series3:
        assert held[header(path).SOPInstanceUID] == dataset_bytes(path.read_bytes()), path.name
    again = import_study(peers.server, peers.orthanc.dicomweb_url, peers.study)
    assert again == {"received": 64, "stored": 0, "duplicate": 64, "failed": 0}


def test_import_into_a_bare_store(peers: SimpleNamespace, tmp_path: Path) -> None:
    j2k = peers.by_name["693_J2KR.dcm"]
    with Store(tmp_path / "store") as store:
        counts = import_study(store, peers.orthanc.dicomweb_url, header(j2k).StudyInstanceUID)
        assert counts == {"received": 1, "stored": 1, "duplicate": 0, "failed": 0}
        (inst,) = store.instances()
        assert inst.transfer_syntax == "1.2.840.10008.1.2.4.90"
        assert dataset_bytes(inst.path.read_bytes()) == dataset_bytes(j2k.read_bytes())
        with pytest.raises(DicomWebError, match="no series there"):
            import_study(store, peers.orthanc.dicomweb_url, "1.2.3.4.5.6")


# ---------------------------------------------------------------------------------------- Orthanc reads medimg
def test_orthanc_queries_medimg(peers: SimpleNamespace) -> None:
    listed = json.loads(peers.orthanc.api("POST", "/dicom-web/servers/medimg/get", json={"Uri": "/studies"}))
    for name in IN_MEDIMG:
        assert header(peers.by_name[name]).StudyInstanceUID in values(listed, "0020000D")
    found = peers.orthanc.api("POST", "/dicom-web/servers/medimg/qido", json={
        "Uri": "/studies", "Arguments": {"PatientID": "Lung_Dx-A0001"}})
    assert [s["0020000D"]["Value"] for s in found] == [peers.study]
    series = peers.orthanc.api("POST", "/dicom-web/servers/medimg/qido", json={
        "Uri": f"/studies/{peers.study}/series"})
    assert len(series) >= 1 and all(s["00080060"]["Value"] == "CT" for s in series)
    emri = header(peers.by_name["emri_small.dcm"])
    metadata = json.loads(peers.orthanc.api("POST", "/dicom-web/servers/medimg/get", json={
        "Uri": f"/studies/{emri.StudyInstanceUID}/series/{emri.SeriesInstanceUID}/metadata"}))
    assert value(metadata[0], "00280008") == 10


def test_orthanc_retrieves_from_medimg(peers: SimpleNamespace) -> None:
    before = set(peers.orthanc.instances())
    resources = [{"Study": header(peers.by_name[n]).StudyInstanceUID} for n in IN_MEDIMG]
    answer = peers.orthanc.api("POST", "/dicom-web/servers/medimg/retrieve", json={"Resources": resources})
    assert int(answer["ReceivedInstancesCount"]) == len(IN_MEDIMG)
    new = set(peers.orthanc.instances()) - before
    assert len(new) == len(IN_MEDIMG)
    got = {}
    for orthanc_id in new:
        data = peers.orthanc.instance_file(orthanc_id)
        got[pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID] = data
    for name in IN_MEDIMG:
        path = peers.by_name[name]
        assert dataset_bytes(got[header(path).SOPInstanceUID]) == dataset_bytes(path.read_bytes()), name


def test_orthanc_stores_into_medimg(peers: SimpleNamespace) -> None:
    j2k = peers.by_name["693_J2KR.dcm"]
    ds = header(j2k)
    (study_id,) = [s for s in peers.orthanc.api("GET", "/studies")
                   if peers.orthanc.api("GET", f"/studies/{s}")["MainDicomTags"]["StudyInstanceUID"]
                   == ds.StudyInstanceUID]
    assert peers.server.store.instances(study_uid=ds.StudyInstanceUID) == []
    answer = peers.orthanc.api("POST", "/dicom-web/servers/medimg/stow", json={"Resources": [study_id]})
    assert int(answer["InstancesCount"]) == 1
    (inst,) = peers.server.store.instances(study_uid=ds.StudyInstanceUID)
    assert dataset_bytes(inst.path.read_bytes()) == dataset_bytes(j2k.read_bytes())
