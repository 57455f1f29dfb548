"""DICOMweb over real HTTP against a started medimg server: STOW-RS of the 128 CT files and the pydicom-data
files, QIDO-RS at every level, WADO-RS retrieve, metadata, bulk data, frames and rendered images, compared
with what was sent and with pydicom."""

from __future__ import annotations

import base64
import io
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_helpers import split_multipart, stow, value, values
from peers import start_medimg
from PIL import Image
from pydicom.encaps import get_frame

from medimg.server.config import Limits

pytestmark = [pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning"), pytest.mark.xdist_group("test_dicomweb")]

MAX_RESULTS = 100
OCTET_ANY = "multipart/related; type=application/octet-stream; transfer-syntax=*"  # cornerstone's Accept
OCTET = 'multipart/related; type="application/octet-stream"'
DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
VARIANTS = ("emri_small_big_endian.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm",
            "emri_small_jpeg_ls_lossless.dcm", "liver_expb.dcm")


def read(path: Path | bytes, **kw: Any) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(path) if isinstance(path, bytes) else path, **kw)


def derived(path: Path) -> bytes:
    """The file under a new SOP Instance UID (everything else as it was), so that transfer-syntax
    variants of one instance can be held side by side."""
    ds = read(path)
    uid = pydicom.uid.generate_uid(entropy_srcs=["medimg-dicomweb-test", path.name])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def url_of(ds: pydicom.Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, ct_files: list[Path], pydicom_data_files: list[Path],
        pydicom_test_dir: Path) -> Iterator[SimpleNamespace]:
    server = start_medimg(tmp_path_factory.mktemp("dicomweb") / "store",
                          limits=Limits(max_query_results=MAX_RESULTS))
    base = f"http://127.0.0.1:{server.config.http_port}/dicomweb"
    client = httpx.Client(base_url=base, timeout=120)
    study = read(ct_files[0], stop_before_pixels=True).StudyInstanceUID
    ct_responses = [stow(client, ct_files[:64], study), stow(client, ct_files[64:], study)]
    data_response = stow(client, pydicom_data_files)
    by_name = {p.name: p for p in pydicom_data_files}
    variants = {name: derived(by_name[name]) for name in VARIANTS}
    variants_response = stow(client, list(variants.values()))
    sr = pydicom_test_dir / "test-SR.dcm"
    sr_response = stow(client, [sr])
    try:
        yield SimpleNamespace(server=server, client=client, base=base, study=study, ct=ct_files,
                              ct_responses=ct_responses, data_response=data_response, by_name=by_name,
                              variants=variants, variants_response=variants_response, sr=sr,
                              sr_response=sr_response)
    finally:
        client.close()
        server.stop()


def referenced(response: httpx.Response) -> list[dict[str, Any]]:
    return response.json().get("00081199", {}).get("Value", [])


def failed(response: httpx.Response) -> list[dict[str, Any]]:
    return response.json().get("00081198", {}).get("Value", [])


# ---------------------------------------------------------------------------------------- STOW-RS
def test_stow_ct_study_all_stored(web: SimpleNamespace) -> None:
    sops = set()
    for response in web.ct_responses:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/dicom+json")
        body = response.json()
        assert value(body, "00081190") == f"{web.base}/studies/{web.study}"
        assert "00081198" not in body
        items = referenced(response)
        assert len(items) == 64
        for item in items:
            sop = value(item, "00081155")
            assert value(item, "00081150") == "1.2.840.10008.5.1.4.1.1.2"
            assert value(item, "00081190").endswith(f"/instances/{sop}")
            assert value(item, "00081190").startswith(f"{web.base}/studies/{web.study}/series/")
            sops.add(sop)
    assert sops == {read(p, stop_before_pixels=True).SOPInstanceUID for p in web.ct}
    assert len(web.server.store.instances(study_uid=web.study)) == 128


def test_stow_pydicom_data_reports_every_file(web: SimpleNamespace, pydicom_data_files: list[Path]) -> None:
    """Every file is either referenced or failed, with the failure the store gives: a second file with
    the SOP Instance UID of a stored one but other bytes is refused 0x0111, a malformed one 0xC000,
    one with a SOP Instance UID that is not a UID 0xA900."""
    response = web.data_response
    assert response.status_code == 202, response.text
    stored: set[str] = set()
    expected_failures: Counter[tuple[str, int]] = Counter()
    for path in pydicom_data_files:
        ds = read(path, stop_before_pixels=True)
        sop = ds.file_meta.MediaStorageSOPInstanceUID
        if path.name == "emri_small_jpeg_2k_lossless_too_short.dcm":
            expected_failures[(sop, 0xC000)] += 1
        elif path.name == "bad_sequence.dcm":
            expected_failures[(sop, 0xA900)] += 1
        elif sop in stored:
            expected_failures[(sop, 0x0111)] += 1
        else:
            stored.add(sop)
    got_ok = [value(i, "00081155") for i in referenced(response)]
    got_failed = Counter((value(i, "00081155"), value(i, "00081197")) for i in failed(response))
    assert len(got_ok) == len(set(got_ok)) == len(stored)
    assert set(got_ok) == stored
    assert got_failed == expected_failures
    assert len(got_ok) + sum(got_failed.values()) == len(pydicom_data_files)
    warning = response.headers["warning"]
    assert warning.startswith('299 medimg "part ') and "different bytes" in warning


# ---------------------------------------------------------------------------------------- QIDO-RS
def qido(web: SimpleNamespace, path: str, **params: Any) -> list[dict[str, Any]]:
    r = web.client.get(path, params=params, headers={"Accept": "application/dicom+json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    return list(r.json())


def test_qido_studies_match_keys(web: SimpleNamespace) -> None:
    everything = qido(web, "/studies")
    assert web.study in values(everything, "0020000D")
    ct = next(s for s in everything if value(s, "0020000D") == web.study)
    assert value(ct, "00100020") == "Lung_Dx-A0001"
    assert value(ct, "00100010") == "Lung_Dx-A0001"
    assert value(ct, "00201206") == 2 and value(ct, "00201208") == 128
    assert ct["00080061"]["Value"] == ["CT"]
    assert value(ct, "00080056") == "ONLINE"
    assert value(ct, "00081190") == f"{web.base}/studies/{web.study}"
    for params in ({"PatientID": "Lung_Dx-A0001"}, {"00100020": "Lung_Dx-A0001"},
                   {"PatientName": "lung*"}, {"PatientName": "*A0001"}, {"PatientName": "Lung?Dx-A000?"},
                   {"StudyDate": "20070404"}, {"StudyDate": "20070101-20071231"}, {"StudyDate": "20070404-"},
                   {"StudyDate": "-20070404"}, {"00080020": "20070404", "ModalitiesInStudy": "CT"},
                   {"StudyInstanceUID": web.study}, {"0020000D": f"1.2.3.4\\{web.study}"},
                   {"StudyInstanceUID": f"{web.study},1.2.3.4"}):
        found = values(qido(web, "/studies", **params), "0020000D")
        assert web.study in found, params
    for params in ({"PatientID": "Lung_Dx-A0002"}, {"StudyDate": "-20061231"}, {"StudyDate": "20070405-"},
                   {"PatientName": "lung"}, {"ModalitiesInStudy": "MR"}, {"StudyInstanceUID": "1.2.3.4"}):
        assert web.study not in values(qido(web, "/studies", **params), "0020000D"), params
    assert qido(web, "/studies", PatientID="nobody-has-this-id") == []


def test_qido_studies_includefield(web: SimpleNamespace) -> None:
    plain = qido(web, "/studies", PatientID="Lung_Dx-A0001")[0]
    assert "00080070" not in plain  # Manufacturer is not a study return key
    extra = qido(web, "/studies", PatientID="Lung_Dx-A0001", includefield="00080070,StudyDescription")[0]
    assert value(extra, "00080070") == read(web.ct[0], stop_before_pixels=True).Manufacturer  # from a file
    assert value(extra, "00081030") == "Chest"
    empty_key = qido(web, "/studies", PatientID="Lung_Dx-A0001", Manufacturer="")[0]  # a return key
    assert value(empty_key, "00080070") == value(extra, "00080070")
    everything = qido(web, "/studies", PatientID="Lung_Dx-A0001", includefield="all")[0]
    assert set(plain) <= set(everything)
    assert list(everything) == sorted(everything)  # attributes in tag order


def test_qido_series(web: SimpleNamespace) -> None:
    series = qido(web, f"/studies/{web.study}/series")
    assert len(series) == 2
    assert sorted(values(series, "00200011")) == [2, 3]
    assert values(series, "00201209") == [64, 64]
    for s in series:
        assert value(s, "00080060") == "CT"
        assert value(s, "0020000D") == web.study
        assert value(s, "00081190") == f"{web.base}/studies/{web.study}/series/{value(s, '0020000E')}"
        assert "00100020" not in s  # study attributes only when searching all series
    assert len(qido(web, f"/studies/{web.study}/series", SeriesNumber="3")) == 1
    assert qido(web, f"/studies/{web.study}/series", Modality="MR") == []
    all_series = qido(web, "/series", PatientID="Lung_Dx-A0001", Modality="CT")
    assert sorted(values(all_series, "0020000E")) == sorted(values(series, "0020000E"))
    assert values(all_series, "00100020") == ["Lung_Dx-A0001"] * 2
    one = value(series[0], "0020000E")
    assert values(qido(web, "/series", SeriesInstanceUID=one), "0020000E") == [one]
    assert qido(web, "/studies/1.2.3.4.5/series") == []


def test_qido_instances_and_paging(web: SimpleNamespace) -> None:
    series = value(qido(web, f"/studies/{web.study}/series", SeriesNumber="2")[0], "0020000E")
    path = f"/studies/{web.study}/series/{series}/instances"
    listed = qido(web, path)
    assert len(listed) == 64
    assert sorted(values(listed, "00200013")) == list(range(1, 65))
    first = listed[0]
    assert value(first, "00280010") == 512 and value(first, "00280011") == 512
    assert value(first, "00080016") == "1.2.840.10008.5.1.4.1.1.2"
    assert value(first, "00081190") == f"{web.base}{path}/{value(first, '00080018')}"
    pages = [qido(web, path, limit=30, offset=offset) for offset in (0, 30, 60)]
    assert [len(p) for p in pages] == [30, 30, 4]
    paged = [value(i, "00080018") for p in pages for i in p]
    assert paged == values(listed, "00080018")  # stable order, no overlap, nothing missing
    five = qido(web, path, InstanceNumber="5")
    assert values(five, "00200013") == [5]
    sop = value(five[0], "00080018")
    found = qido(web, "/instances", SOPInstanceUID=sop)
    assert values(found, "00080018") == [sop]
    assert value(found[0], "0020000E") == series and value(found[0], "0020000D") == web.study
    assert value(found[0], "00100020") == "Lung_Dx-A0001"  # study attributes when searching all instances
    assert len(qido(web, f"/studies/{web.study}/instances", limit=50)) == 50


def test_qido_results_capped(web: SimpleNamespace) -> None:
    r = web.client.get(f"/studies/{web.study}/instances")
    assert r.status_code == 200 and len(r.json()) == MAX_RESULTS
    assert f"limited to {MAX_RESULTS}" in r.headers["warning"]
    r = web.client.get(f"/studies/{web.study}/instances", params={"limit": 1000})
    assert len(r.json()) == MAX_RESULTS and "limited" in r.headers["warning"]
    rest = web.client.get(f"/studies/{web.study}/instances", params={"offset": MAX_RESULTS})
    assert len(rest.json()) == 128 - MAX_RESULTS and "warning" not in rest.headers
    r = web.client.get(f"/studies/{web.study}/instances", params={"limit": 10})
    assert len(r.json()) == 10 and "warning" not in r.headers


@pytest.mark.parametrize(("params", "words"), [
    ({"Nonsense": "1"}, "Nonsense"),
    ({"00191010": "x"}, "00191010"),
    ({"SliceThickness": "5"}, "SliceThickness"),
    ({"StudyDate": "2007"}, "YYYYMMDD"),
    ({"limit": "0"}, "limit"),
    ({"limit": "ten"}, "integer"),
    ({"offset": "-1"}, "offset"),
    ({"includefield": "NotAKeyword"}, "NotAKeyword"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching"),
    ({"SeriesNumber": "two"}, "integer"),
    ({"Manufacturer": "Philips"}, "Manufacturer cannot be matched"),
    ({"NumberOfStudyRelatedInstances": "128"}, "cannot be matched"),
])
def test_qido_bad_keys(web: SimpleNamespace, params: dict[str, str], words: str) -> None:
    r = web.client.get("/instances" if "Series" in str(params) else "/studies", params=params)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]


def test_qido_fuzzy_and_accept(web: SimpleNamespace) -> None:
    r = web.client.get("/studies", params={"fuzzymatching": "true", "PatientID": "Lung_Dx-A0001"})
    assert r.status_code == 200 and len(r.json()) == 1
    assert "fuzzy matching is not supported" in r.headers["warning"]
    r = web.client.get("/studies", headers={"Accept": "application/dicom+xml"})
    assert r.status_code == 406 and "application/dicom+json" in r.json()["error"]
    r = web.client.get("/studies", headers={"Accept": "application/json"})
    assert r.status_code == 200


# ---------------------------------------------------------------------------------------- WADO-RS retrieve
def test_retrieve_instances_byte_identical(web: SimpleNamespace) -> None:
    stored = {value(i, "00081155") for i in referenced(web.data_response)}
    paths = web.ct[::16] + [p for p in web.by_name.values()
                            if read(p, stop_before_pixels=True).SOPInstanceUID in stored]
    seen = set()
    for path in paths:
        ds = read(path, stop_before_pixels=True)
        if ds.SOPInstanceUID in seen:
            continue
        seen.add(ds.SOPInstanceUID)
        r = web.client.get(url_of(ds), headers={"Accept": DICOM_ANY})
        assert r.status_code == 200, r.text
        (headers, content), = split_multipart(r)
        assert content == path.read_bytes(), path.name
        assert headers["content-type"] == \
            f"application/dicom; transfer-syntax={ds.file_meta.TransferSyntaxUID}"
    single = web.client.get(url_of(read(web.ct[0], stop_before_pixels=True)),
                            headers={"Accept": "application/dicom"})
    assert single.headers["content-type"] == "application/dicom"
    assert single.content == web.ct[0].read_bytes()


def test_retrieve_series_and_study(web: SimpleNamespace) -> None:
    ds = read(web.ct[0], stop_before_pixels=True)
    sent = {p.read_bytes() for p in web.ct}
    for accept in (None, DICOM_ANY, 'multipart/related; type="application/dicom"',
                   "multipart/related; type=application/dicom", "*/*"):
        headers = {"Accept": accept} if accept else {}
        r = web.client.get(f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}", headers=headers)
        assert r.status_code == 200, (accept, r.text)
        assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
        parts = split_multipart(r)
        assert len(parts) == 64
        assert {c for _, c in parts} <= sent
    r = web.client.get(f"/studies/{web.study}")
    parts = split_multipart(r)
    assert {c for _, c in parts} == sent
    assert int(r.headers["content-length"]) == len(r.content)


def test_retrieve_transcodes_to_explicit_little_endian(web: SimpleNamespace) -> None:
    path = web.by_name["693_J2KR.dcm"]
    ds = read(path)
    r = web.client.get(url_of(ds), headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'})
    assert r.status_code == 200, r.text
    (headers, content), = split_multipart(r)
    assert headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    out = read(content)
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert out.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(out.pixel_array, ds.pixel_array)
    r = web.client.get(url_of(ds), headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'})
    assert r.status_code == 406 and "transfer-syntax=*" in r.json()["error"]
    r = web.client.get(url_of(ds), headers={"Accept": "application/zip"})
    assert r.status_code == 406


# ---------------------------------------------------------------------------------------- metadata, bulk data
def compare_json(mine: dict[str, Any], ref: dict[str, Any], where: str = "") -> list[str]:
    """Differences between our DICOM JSON and pydicom's (all binary inline there): equal attributes,
    except that ours may give a binary value as a BulkDataURI."""
    problems = []
    for key in sorted(set(mine) | set(ref)):
        if key == "00083002" and not where:
            continue  # Available Transfer Syntax UID: added by the server
        a, b = mine.get(key), ref.get(key)
        if a is None or b is None:
            problems.append(f"{where}{key}: only in {'pydicom' if a is None else 'medimg'}")
        elif "BulkDataURI" in a:
            if a["vr"] != b["vr"] or "InlineBinary" not in b:
                problems.append(f"{where}{key}: bulk data for {b}")
        elif a.get("vr") == "SQ" and b.get("vr") == "SQ" and len(a.get("Value", [])) == len(b.get("Value", [])):
            for i, (x, y) in enumerate(zip(a.get("Value", []), b.get("Value", []), strict=True)):
                problems += compare_json(x, y, f"{where}{key}.{i}.")
        elif a != b:
            problems.append(f"{where}{key}: {a} != {b}")
    return problems


def test_metadata_equals_pydicom(web: SimpleNamespace) -> None:
    stored = {value(i, "00081155") for i in referenced(web.data_response)}
    paths = [web.ct[0], web.ct[100]] + [p for p in web.by_name.values()
                                        if read(p, stop_before_pixels=True).SOPInstanceUID in stored]
    checked = set()
    for path in paths:
        sop = read(path, stop_before_pixels=True).SOPInstanceUID
        if sop in checked:
            continue
        checked.add(sop)
        ds = read(path)
        r = web.client.get(url_of(ds) + "/metadata", headers={"Accept": "application/dicom+json"})
        assert r.status_code == 200, r.text
        (mine,) = r.json()
        ref = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=None)
        assert compare_json(mine, ref) == [], path.name
        assert value(mine, "00083002") == ds.file_meta.TransferSyntaxUID
        if "PixelData" in ds:
            assert mine["7FE00010"]["BulkDataURI"] == f"{web.base}{url_of(ds)}/bulkdata/7FE00010"
    assert len(checked) > 30


def test_metadata_series_and_study(web: SimpleNamespace) -> None:
    ds = read(web.ct[0], stop_before_pixels=True)
    series = web.client.get(f"/studies/{web.study}/series/{ds.SeriesInstanceUID}/metadata").json()
    assert len(series) == 64 and {value(i, "0020000E") for i in series} == {ds.SeriesInstanceUID}
    study = web.client.get(f"/studies/{web.study}/metadata").json()
    assert len(study) == 128
    assert {value(i, "00080018") for i in study} == {read(p, stop_before_pixels=True).SOPInstanceUID
                                                     for p in web.ct}


def fetch_bulk(web: SimpleNamespace, uri: str, accept: str = OCTET) -> bytes:
    assert uri.startswith(web.base)
    r = web.client.get(uri[len(web.base):], headers={"Accept": accept})
    assert r.status_code == 200, r.text
    if accept == OCTET:
        (_, content), = split_multipart(r)
        return content
    assert r.headers["content-type"] == "application/octet-stream"
    return r.content


def test_bulkdata(web: SimpleNamespace) -> None:
    ds = read(web.ct[3])
    meta = web.client.get(url_of(ds) + "/metadata").json()[0]
    assert fetch_bulk(web, meta["7FE00010"]["BulkDataURI"]) == ds.PixelData
    assert fetch_bulk(web, meta["7FE00010"]["BulkDataURI"], "application/octet-stream") == ds.PixelData
    overlay = read(web.by_name["MR-SIEMENS-DICOM-WithOverlays.dcm"])
    meta = web.client.get(url_of(overlay) + "/metadata").json()[0]
    assert fetch_bulk(web, meta["60003000"]["BulkDataURI"]) == overlay[0x60003000].value
    # big endian: bulk data comes in little endian
    big = read(web.variants["emri_small_big_endian.dcm"])
    meta = web.client.get(url_of(big) + "/metadata").json()[0]
    assert fetch_bulk(web, meta["7FE00010"]["BulkDataURI"]) == big.pixel_array.astype("<u2").tobytes()
    # encapsulated pixel data: one part per frame, as stored
    j2k = read(web.variants["emri_small_jpeg_2k_lossless.dcm"])
    r = web.client.get(url_of(j2k) + "/bulkdata/7FE00010", headers={"Accept": OCTET_ANY})
    frames = [c for _, c in split_multipart(r)]
    assert frames == [get_frame(j2k.PixelData, i, number_of_frames=10) for i in range(10)]
    r = web.client.get(url_of(ds) + "/bulkdata/00280010")
    assert r.status_code == 404 and "no bulk data" in r.json()["error"]
    r = web.client.get(url_of(ds) + "/bulkdata/..%2F..%2Findex.sqlite")
    assert r.status_code in (400, 404)


# ---------------------------------------------------------------------------------------- frames
def frame_parts(web: SimpleNamespace, ds: pydicom.Dataset, frames: str, accept: str) -> list[tuple[dict[str, str], bytes]]:
    r = web.client.get(url_of(ds) + f"/frames/{frames}", headers={"Accept": accept})
    assert r.status_code == 200, r.text
    return split_multipart(r)


def test_frames_native(web: SimpleNamespace) -> None:
    ct = read(web.ct[10])
    for accept in (OCTET, OCTET_ANY, "*/*"):
        (headers, content), = frame_parts(web, ct, "1", accept)
        assert content == ct.PixelData
        assert headers["content-type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    emri = read(web.by_name["emri_small.dcm"])
    size = 64 * 64 * 2
    parts = frame_parts(web, emri, "2,5,10,2", OCTET)
    assert [c for _, c in parts] == [emri.PixelData[(n - 1) * size:n * size] for n in (2, 5, 10, 2)]
    big = read(web.variants["emri_small_big_endian.dcm"])
    parts = frame_parts(web, big, "1,7", OCTET_ANY)
    assert [c for _, c in parts] == [big.pixel_array[i].astype("<u2").tobytes() for i in (0, 6)]
    seg = read(web.by_name["liver.dcm"])  # 1 bit per pixel, 3 frames of 512 x 512
    parts = frame_parts(web, seg, "3", OCTET)
    assert parts[0][1] == seg.PixelData[2 * 32768:3 * 32768]
    single = web.client.get(url_of(ct) + "/frames/1", headers={"Accept": "application/octet-stream"})
    assert single.headers["content-type"].startswith("application/octet-stream")
    assert single.content == ct.PixelData


@pytest.mark.parametrize("name", ["emri_small_jpeg_2k_lossless.dcm", "emri_small_RLE.dcm",
                                  "emri_small_jpeg_ls_lossless.dcm"])
def test_frames_compressed(web: SimpleNamespace, name: str) -> None:
    ds = read(web.variants[name])
    ts = ds.file_meta.TransferSyntaxUID
    decoded = ds.pixel_array
    parts = frame_parts(web, ds, "1,4,10", OCTET)
    for (headers, content), i in zip(parts, (0, 3, 9), strict=True):
        assert headers["content-type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
        assert content == decoded[i].astype(decoded.dtype.newbyteorder("<")).tobytes()
    parts = frame_parts(web, ds, "1,4,10", OCTET_ANY)
    for (headers, content), i in zip(parts, (0, 3, 9), strict=True):
        assert headers["content-type"] == f"application/octet-stream; transfer-syntax={ts}"
        assert content == get_frame(ds.PixelData, i, number_of_frames=10)


def test_frames_in_image_media_types(web: SimpleNamespace) -> None:
    ds = read(web.variants["emri_small_jpeg_2k_lossless.dcm"])
    for accept in ('multipart/related; type="image/jp2"', 'multipart/related; type="image/jp2"; '
                   "transfer-syntax=1.2.840.10008.1.2.4.90", "multipart/related; type=image/*"):
        (headers, content), = frame_parts(web, ds, "2", accept)
        assert headers["content-type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"
        assert content == get_frame(ds.PixelData, 1, number_of_frames=10)
    r = web.client.get(url_of(ds) + "/frames/1", headers={"Accept": 'multipart/related; type="image/jls"'})
    assert r.status_code == 406 and "transfer-syntax=*" in r.json()["error"]
    # one Accept with several ranges: the first that can be served wins
    (headers, _), = frame_parts(web, ds, "1", 'multipart/related; type="image/jls", ' + OCTET_ANY)
    assert headers["content-type"].endswith("transfer-syntax=1.2.840.10008.1.2.4.90")


def test_frames_of_a_jpeg2000_ct(web: SimpleNamespace) -> None:
    ds = read(web.by_name["693_J2KR.dcm"])
    (_, content), = frame_parts(web, ds, "1", OCTET)
    assert content == ds.pixel_array.astype(ds.pixel_array.dtype.newbyteorder("<")).tobytes()
    assert np.array_equal(np.frombuffer(content, dtype="<i2" if ds.PixelRepresentation else "<u2")
                          .reshape(512, 512), ds.pixel_array)


@pytest.mark.parametrize(("frames", "status", "words"), [
    ("0", 400, "positive"), ("a", 400, "positive"), ("1,,2", 400, "positive"), ("-1", 400, "positive"),
    ("11", 404, "10 frames"), ("1,99", 404, "frame 99"),
])
def test_frames_bad_numbers(web: SimpleNamespace, frames: str, status: int, words: str) -> None:
    ds = read(web.by_name["emri_small.dcm"], stop_before_pixels=True)
    r = web.client.get(url_of(ds) + f"/frames/{frames}", headers={"Accept": OCTET})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_no_frames_without_pixel_data(web: SimpleNamespace) -> None:
    assert web.sr_response.status_code == 200
    ds = read(web.sr, stop_before_pixels=True)
    for suffix in ("/frames/1", "/rendered", "/thumbnail"):
        r = web.client.get(url_of(ds) + suffix)
        assert r.status_code == 404 and "no pixel data" in r.json()["error"]
    assert web.client.get(url_of(ds) + "/metadata").status_code == 200


# ---------------------------------------------------------------------------------------- rendered
def rendered(web: SimpleNamespace, path: str, **params: Any) -> Image.Image:
    r = web.client.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == params.get("accept", "image/jpeg")
    return Image.open(io.BytesIO(r.content))


def expected_linear(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 to 0..255, computed here independently."""
    y = np.where(hu <= center - 0.5 - (width - 1) / 2, 0.0,
                 np.where(hu > center - 0.5 + (width - 1) / 2, 1.0,
                          (hu - (center - 0.5)) / (width - 1) + 0.5))
    return np.round(y * 255.0).astype(np.uint8)


def test_rendered_png_windowing(web: SimpleNamespace) -> None:
    ds = read(web.ct[20])
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    image = rendered(web, url_of(ds) + "/rendered", accept="image/png")
    assert image.size == (512, 512) and image.mode == "L"
    center, width = float(ds.WindowCenter[0]), float(ds.WindowWidth[0])
    assert np.abs(np.asarray(image).astype(int) - expected_linear(hu, center, width)).max() <= 1
    image = rendered(web, url_of(ds) + "/rendered", accept="image/png", window="40,400,linear")
    assert np.abs(np.asarray(image).astype(int) - expected_linear(hu, 40, 400)).max() <= 1
    image = rendered(web, url_of(ds) + "/frames/1/rendered", viewport="256,256")
    assert image.format == "JPEG" and image.size == (256, 256)
    r = web.client.get(url_of(ds) + "/rendered", headers={"Accept": "image/png"})
    assert r.headers["content-type"] == "image/png"


def test_rendered_colour_and_monochrome1(web: SimpleNamespace) -> None:
    rgb = read(web.by_name["US1_UNCR.dcm"])
    image = rendered(web, url_of(rgb) + "/rendered", accept="image/png")
    assert image.mode == "RGB" and image.size == (640, 480)
    assert np.array_equal(np.asarray(image), rgb.pixel_array)
    mono1 = read(web.by_name["RG1_UNCR.dcm"])
    image = rendered(web, url_of(mono1) + "/rendered", accept="image/png", window="2000,4000,linear-exact")
    assert image.size == (1841, 1955)
    raw = mono1.pixel_array.astype(np.float64)  # no Modality LUT in this file
    grey = np.round(np.clip(raw / 4000.0, 0.0, 1.0) * 255.0)  # linear-exact, center 2000, width 4000
    assert np.abs(np.asarray(image).astype(int) - (255 - grey)).max() <= 1  # MONOCHROME1: inverted


def test_thumbnails(web: SimpleNamespace) -> None:
    ds = read(web.ct[0], stop_before_pixels=True)
    for path in (f"/studies/{web.study}/thumbnail", f"/studies/{web.study}/series/{ds.SeriesInstanceUID}/thumbnail",
                 url_of(ds) + "/thumbnail", url_of(ds) + "/frames/1/thumbnail"):
        image = rendered(web, path)
        assert max(image.size) == 128
    image = rendered(web, url_of(ds) + "/thumbnail", viewport="256,256")
    assert image.size == (256, 256)


@pytest.mark.parametrize(("params", "headers", "status", "words"), [
    ({"window": "abc"}, {}, 400, "window"),
    ({"window": "40,0"}, {}, 400, "width"),
    ({"window": "40,400,cubic"}, {}, 400, "cubic"),
    ({"viewport": "0,0"}, {}, 400, "viewport"),
    ({"quality": "500"}, {}, 400, "quality"),
    ({}, {"Accept": "image/gif"}, 406, "image/jpeg"),
])
def test_rendered_bad_parameters(web: SimpleNamespace, params: dict[str, str], headers: dict[str, str],
                                 status: int, words: str) -> None:
    ds = read(web.ct[0], stop_before_pixels=True)
    r = web.client.get(url_of(ds) + "/rendered", params=params, headers=headers)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    r = web.client.get(url_of(ds) + "/frames/1,2/rendered")
    assert r.status_code == 400


# ---------------------------------------------------------------------------------------- OHIF
def test_ohif_data_source_requests(web: SimpleNamespace) -> None:
    """The requests OHIF's DICOMweb data source makes (study list, series of a study, series metadata,
    then frames through cornerstone's WADO-RS loader), with their parameters and Accept headers, and
    the responses read the way those clients read them."""
    json_accept = {"Accept": "application/dicom+json"}
    r = web.client.get("/studies", headers=json_accept, params={
        "PatientName": "*Lung*", "00100020": "*A0001*", "limit": "101", "offset": "0",
        "fuzzymatching": "false", "includefield": "00081030,00080060,00080090,00100030"})
    assert r.status_code == 200
    (study,) = r.json()
    for tag in ("0020000D", "00080020", "00080030", "00080050", "00100020", "00100010", "00100030",
                "00201208", "00081030", "00080061", "00080090"):
        assert tag in study, tag
    uid = value(study, "0020000D")
    series = web.client.get(f"/studies/{uid}/series", headers=json_accept,
                            params={"includefield": "0008103E,00080021"}).json()
    assert all("0008103E" in s and "00080021" in s and "0020000E" in s for s in series)
    for s in series:
        se = value(s, "0020000E")
        instances = web.client.get(f"/studies/{uid}/series/{se}/metadata", headers=json_accept).json()
        assert len(instances) == 64
        first = instances[0]
        for tag in ("00080018", "00200013", "00280010", "00280011", "00280100", "00280030", "00200032",
                    "00200037", "00281050", "00281051", "00281052", "00281053", "00083002"):
            assert tag in first, tag
        sop = value(first, "00080018")
        frames = web.client.get(f"/studies/{uid}/series/{se}/instances/{sop}/frames/1",
                                headers={"Accept": OCTET_ANY})
        assert frames.status_code == 200
        body = frames.content
        # cornerstone: header block up to the first blank line, a boundary line starting with "--",
        # a "Content-Type:" line with the transfer syntax, the data up to "\r\n" + boundary
        header_end = body.index(b"\r\n\r\n")
        lines = body[:header_end].decode().split("\r\n")
        boundary = next(line for line in lines if line.startswith("--"))
        ctype = next(line for line in lines if line.startswith("Content-Type:"))[13:].strip()
        params = dict(p.strip().split("=", 1) for p in ctype.split(";")[1:])
        assert params["transfer-syntax"] == "1.2.840.10008.1.2.1"
        end = body.index(boundary.encode(), header_end + 4)
        pixel = body[header_end + 4:end - 2]
        assert len(pixel) == 512 * 512 * 2
        assert pixel == read(next(p for p in web.ct if read(p, stop_before_pixels=True).SOPInstanceUID == sop)).PixelData


def test_cors_for_a_browser_viewer(tmp_path: Path) -> None:
    server = start_medimg(tmp_path / "store", cors_origins=("http://localhost:3000",))
    try:
        url = f"http://127.0.0.1:{server.config.http_port}/dicomweb/studies"
        r = httpx.options(url, headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET",
                                        "Access-Control-Request-Headers": "accept"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = httpx.get(url, headers={"Origin": "http://localhost:3000", "Accept": "application/dicom+json"})
        assert r.status_code == 200 and r.json() == []
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = httpx.get(url, headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    finally:
        server.stop()


def test_stow_as_dicomweb_client_js_sends_it(web: SimpleNamespace) -> None:
    """dicomweb-client (used by OHIF for uploads) quotes the boundary; the last part has no CRLF before
    the close delimiter's own line end."""
    data = web.ct[5].read_bytes()
    boundary = "abc123-quoted"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--".encode())
    r = web.client.post("/studies", content=body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"'})
    assert r.status_code == 200, r.text
    assert value(referenced(r)[0], "00081155") == read(web.ct[5], stop_before_pixels=True).SOPInstanceUID


def test_inline_binary_is_base64_of_the_value(web: SimpleNamespace) -> None:
    ds = read(web.by_name["OBXXXX1A.dcm"])  # palette colour: LUT data
    meta = web.client.get(url_of(ds) + "/metadata").json()[0]
    for tag in ("00281201", "00281202", "00281203"):
        element = meta[tag]
        data = base64.b64decode(element["InlineBinary"]) if "InlineBinary" in element \
            else fetch_bulk(web, element["BulkDataURI"])
        assert data == ds[int(tag, 16)].value


def test_ohif_thumbnail_requests(web: SimpleNamespace) -> None:
    """OHIF's 'thumbnail'/'rendered' strategies: dicomweb-client asks multipart image/jpeg with an
    ``accept`` query parameter; the 'fetch' strategy asks image/jpeg with viewport=256,256."""
    ds = read(web.ct[0], stop_before_pixels=True)
    r = web.client.get(url_of(ds) + "/thumbnail", params={"accept": "image/jpeg"},
                       headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (128, 128)
    r = web.client.get(url_of(ds) + "/rendered", headers={"Accept": 'multipart/related; type="image/png"'})
    (headers, content), = split_multipart(r)
    assert headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(content)).size == (512, 512)
    r = web.client.get(f"/studies/{web.study}/series/{ds.SeriesInstanceUID}/thumbnail",
                       params={"viewport": "256,256"}, headers={"Accept": "image/jpeg"})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (256, 256)
