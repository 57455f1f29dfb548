"""A re-sent instance in another encoding is the same instance; changed content is a conflict."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medimg.store import Store


def _reencoded(path: Path, implicit: bool, change: dict[str, object] | None = None) -> bytes:
    ds = pydicom.dcmread(path)
    for keyword, value in (change or {}).items():
        setattr(ds, keyword, value)
    # sequences written with explicit lengths, as dcmtk forwards them
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = False
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


@pytest.mark.parametrize("implicit", [True, False])
def test_same_instance_in_another_encoding_is_a_duplicate(tmp_path: Path, ct_files: list[Path],
                                                          implicit: bool) -> None:
    store = Store(tmp_path / "s")
    first = store.put_path(ct_files[0])
    again = _reencoded(ct_files[0], implicit)
    assert again != ct_files[0].read_bytes()
    result = store.put_file_bytes(again, source="test")
    assert result.outcome == "duplicate", result.reason
    assert result.ok and result.status == 0
    assert "another encoding" in result.reason
    assert result.path == first.path
    assert store.count()["instances"] == 1
    assert store.verify().clean  # the stored copy is the first one, untouched
    store.close()


def test_changed_value_is_a_conflict(tmp_path: Path, ct_files: list[Path]) -> None:
    store = Store(tmp_path / "s")
    store.put_path(ct_files[1])
    changed = _reencoded(ct_files[1], implicit=False, change={"PatientName": "Other^Name"})
    result = store.put_file_bytes(changed, source="test")
    assert result.outcome == "conflict"
    assert result.status == 0x0111
    assert [e["action"] for e in store.events()] == ["conflict"]
    assert store.count()["instances"] == 1
    store.close()


def test_replace_policy_does_not_rewrite_identical_content(tmp_path: Path, ct_files: list[Path]) -> None:
    store = Store(tmp_path / "s", conflict="replace")
    first = store.put_path(ct_files[2])
    result = store.put_file_bytes(_reencoded(ct_files[2], implicit=True), source="test")
    assert result.outcome == "duplicate"
    assert result.path == first.path and first.path is not None and first.path.exists()
    changed = store.put_file_bytes(_reencoded(ct_files[2], implicit=True, change={"SeriesNumber": 77}))
    assert changed.outcome == "replaced"
    assert store.count()["instances"] == 1
    store.close()
