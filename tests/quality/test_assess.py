"""assess() on real images, on bad input and on what protocols ask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medimg
from medimg import Image
from medimg.quality import assess

NAMES_CT = {"readable", "values", "missing_slices", "slice_spacing", "series_integrity",
            "modality_values", "spacing", "noise", "cnr", "sharpness", "fov_cut"}


@pytest.fixture(scope="module")
def ct(data_dir: Path) -> Image:
    return medimg.read(data_dir / "ct" / "totalseg-example" / "dicom")


def test_clean_ct_passes_with_the_documented_checks(ct: Image) -> None:
    rep = assess(ct)
    assert rep.verdict == "pass", str(rep)
    assert {c.name for c in rep.checks} == NAMES_CT
    noise = rep["noise"]
    assert 5 < noise.value < 30 and noise.unit == "HU"  # a soft-kernel abdominal CT


def test_unreadable_files_fail_with_a_reason(tmp_path: Path, pydicom_test_dir: Path) -> None:
    junk = tmp_path / "scan.dcm"
    junk.write_bytes(b"DICM" + b"\x00" * 50)
    for path in (junk, tmp_path / "missing.nii.gz", pydicom_test_dir / "rtplan_truncated.dcm"):
        rep = assess(path)
        assert rep.verdict == "fail"
        assert rep.checks[0].name == "readable" and rep.checks[0].status == "fail"
        assert rep.checks[0].reason.startswith("the image cannot be read: ")


def test_nan_blank_and_label_images_fail(ct: Image, data_dir: Path) -> None:
    nan = ct.replace(array=ct.array.astype(np.float32))
    nan.array[0, 0, :10] = np.nan
    assert assess(nan)["values"].status == "fail"
    assert "NaN" in assess(nan)["values"].reason
    blank = ct.replace(array=np.zeros(ct.spatial_shape, np.int16))
    rep = assess(blank)
    assert rep.verdict == "fail" and "blank" in rep["values"].reason
    label = medimg.read(data_dir / "mr" / "pyradiomics" / "brain1_label.nrrd")
    assert "label map" in assess(label)["values"].reason


def test_protocol_checks(ct: Image) -> None:
    rep = assess(ct, protocol="abdomen_ct")
    assert rep["protocol_modality"].status == "pass"
    assert rep["slice_count"].status == "fail"  # 20 slices of 2 mm do not make an abdomen CT
    head = assess(ct, protocol="head_ct")
    assert head["body_part"].status in ("warn", "fail") and head["body_part"].value == "abdomen"
    mr = assess(ct, protocol="brain_mri")
    assert mr["protocol_modality"].status == "fail"
    with pytest.raises(ValueError, match="assess: unknown protocol 'knee'"):
        assess(ct, protocol="knee")


def test_report_names_the_source(data_dir: Path) -> None:
    path = data_dir / "mr" / "pyradiomics" / "brain1_image.nrrd"
    rep = assess(path)
    assert rep.source == str(path) and rep.kind == "other"  # NRRD records no modality
