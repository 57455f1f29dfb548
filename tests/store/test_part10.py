"""Part 10 handling of the store on every real file: the structure check accepts the good files and
refuses the broken ones, the indexed attributes equal pydicom's reading, the meta group medimg writes
is the one pydicom writes."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from crafted import CT_IMAGE, EXPLICIT_LE, IMPLICIT_LE
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

from helpers import part10_files
from medimg.store import StructureError
from medimg.store.part10 import (
    _HEADER_KEYWORDS,
    MEDIMG_IMPLEMENTATION_UID,
    MEDIMG_IMPLEMENTATION_VERSION,
    build_meta,
    inspect_dataset,
    is_valid_uid,
    split_part10,
)

_INTEGERS = {"SeriesNumber", "InstanceNumber", "NumberOfFrames", "Rows", "Columns"}

# deliberately broken files among the real ones, and what is wrong with each
BROKEN = {
    "emri_small_jpeg_2k_lossless_too_short.dcm": "no sequence delimiter",  # pydicom-data
    "MR_truncated.dcm": "declares 8192 bytes but only 8130 remain",  # pydicom test files from here
    "rtplan_truncated.dcm": "declares 976 bytes but only 711 remain",
    "DICOMDIR-nooffset": "declares 248 bytes but fewer remain",
    "SC_rgb_jpeg.dcm": "no valid VR",  # the meta says explicit VR, the data set is implicit
    "meta_missing_tsyntax.dcm": "no Transfer Syntax UID",
}


def _pydicom_value(ds: Any, keyword: str) -> Any:
    """The value medimg indexes, as pydicom reads it ('' or None when absent or unreadable)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None if keyword in _INTEGERS else ""
    if keyword in _INTEGERS:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None  # e.g. IS '1A': medimg indexes no number either
    return str(value)


def _compare_with_pydicom(path: Path) -> list[str]:
    data = path.read_bytes()
    meta, offset = split_part10(data)
    header = inspect_dataset(memoryview(data)[offset:], meta["TransferSyntaxUID"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        differences = []
        for keyword in _HEADER_KEYWORDS:
            if keyword == "SpecificCharacterSet":
                continue
            mine, theirs = header.values[keyword], _pydicom_value(ds, keyword)
            if mine != theirs:
                differences.append(f"{path.name} {keyword}: medimg {mine!r}, pydicom {theirs!r}")
    assert header.sop_instance_uid == header.values["SOPInstanceUID"]
    assert header.study_uid == header.values["StudyInstanceUID"]
    return differences


def test_every_ct_file_passes_and_reads_like_pydicom(ct_files: list[Path]) -> None:
    differences: list[str] = []
    for f in ct_files:
        differences += _compare_with_pydicom(f)
    assert differences == []


def test_every_good_pydicom_data_file_passes_and_reads_like_pydicom(pydicom_data_files: list[Path]) -> None:
    differences: list[str] = []
    refused: dict[str, str] = {}
    transfer_syntaxes = set()
    for f in pydicom_data_files:
        try:
            differences += _compare_with_pydicom(f)
            transfer_syntaxes.add(split_part10(f.read_bytes())[0]["TransferSyntaxUID"])
        except StructureError as exc:
            refused[f.name] = str(exc)
    assert differences == []
    assert set(refused) == {"emri_small_jpeg_2k_lossless_too_short.dcm"}
    assert BROKEN["emri_small_jpeg_2k_lossless_too_short.dcm"] in refused[
        "emri_small_jpeg_2k_lossless_too_short.dcm"]
    # the set covers big endian, implicit VR, RLE and the JPEG families
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90"} <= transfer_syntaxes


def test_pydicom_test_files_broken_ones_refused_others_read_alike(pydicom_test_dir: Path) -> None:
    """pydicom's own test files include deflated and other rare encodings and several broken files."""
    differences: list[str] = []
    refused: dict[str, str] = {}
    deflated = 0
    for f in part10_files(pydicom_test_dir):
        try:
            differences += _compare_with_pydicom(f)
        except StructureError as exc:
            refused[f.name] = str(exc)
            continue
        deflated += split_part10(f.read_bytes())[0]["TransferSyntaxUID"] == "1.2.840.10008.1.2.1.99"
    assert differences == []
    assert sorted(refused) == sorted(set(BROKEN) - {"emri_small_jpeg_2k_lossless_too_short.dcm"})
    for name, why in refused.items():
        assert BROKEN[name] in why, (name, why)
    assert deflated >= 1


def _pydicom_meta(sop_class: str, sop: str, ts: str, aet: str = "") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = MEDIMG_IMPLEMENTATION_UID
    meta.ImplementationVersionName = MEDIMG_IMPLEMENTATION_VERSION
    if aet:
        meta.SourceApplicationEntityTitle = aet
    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = False
    write_file_meta_info(buf, meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + buf.getvalue()


@pytest.mark.parametrize(("sop", "ts", "aet"), [
    ("1.2.3.4", IMPLICIT_LE, ""),  # odd-length UIDs are padded with NUL
    ("1.2.3.45", EXPLICIT_LE, "STORESCU"),
    ("1.2.826.0.1.3680043.10.1234." + "9" * 36, "1.2.840.10008.1.2.4.90", "AE1"),  # 64 characters
])
def test_meta_group_is_the_one_pydicom_writes(sop: str, ts: str, aet: str) -> None:
    mine = build_meta(CT_IMAGE, sop, ts, aet)
    assert mine == _pydicom_meta(CT_IMAGE, sop, ts, aet)
    meta, offset = split_part10(mine)
    assert offset == len(mine)
    assert meta["TransferSyntaxUID"] == ts and meta["MediaStorageSOPInstanceUID"] == sop
    assert meta.get("SourceApplicationEntityTitle", "") == aet


def test_meta_group_cleans_the_calling_ae_title_and_refuses_bad_uids() -> None:
    meta, _ = split_part10(build_meta(CT_IMAGE, "1.2.3", EXPLICIT_LE, " A\\B\x00C\u00e9 "))
    assert meta["SourceApplicationEntityTitle"] == "ABC"
    with pytest.raises(ValueError, match="not a valid UID"):
        build_meta(CT_IMAGE, "1.2/../../x", EXPLICIT_LE)
    with pytest.raises(ValueError, match="not a valid UID"):
        build_meta(CT_IMAGE, "1.2.3", "")


def test_pydicom_reads_a_stored_file_back(ct_files: list[Path]) -> None:
    data = ct_files[0].read_bytes()
    meta, offset = split_part10(data)
    rebuilt = build_meta(CT_IMAGE, pydicom.dcmread(ct_files[0]).SOPInstanceUID, meta["TransferSyntaxUID"],
                         "SENDER") + data[offset:]
    ds = pydicom.dcmread(io.BytesIO(rebuilt))
    assert ds.file_meta.SourceApplicationEntityTitle == "SENDER"
    assert ds.pixel_array.shape == (512, 512)


def test_split_part10_refuses_what_is_not_part10() -> None:
    good = build_meta(CT_IMAGE, "1.2.3", EXPLICIT_LE)
    with pytest.raises(StructureError, match="not a DICOM Part 10 file"):
        split_part10(b"\0" * 200)
    with pytest.raises(StructureError, match="not a DICOM Part 10 file"):
        split_part10(good[:100])
    with pytest.raises(StructureError):
        split_part10(good[:-3])  # the last meta element is cut
    # a meta element that claims more bytes than there are
    bad = bytearray(good)
    pos = bad.index(b"\x02\x00\x10\x00UI")
    bad[pos + 6:pos + 8] = (0x7FFF).to_bytes(2, "little")
    with pytest.raises(StructureError, match="impossible length"):
        split_part10(bytes(bad))


@pytest.mark.parametrize(("value", "ok"), [
    ("1.2.840.10008.1.2", True), ("1", True), ("1." + "2" * 62, True), ("1." + "2" * 63, False),
    ("", False), ("1..2", False), (".1", False), ("1.2.", False), ("1.2/../../x", False),
    ("1.2\x00", False), ("1.2 ", False), ("１.２", False), (None, False), (12, False),
])
def test_uid_syntax(value: Any, ok: bool) -> None:
    assert is_valid_uid(value) is ok
