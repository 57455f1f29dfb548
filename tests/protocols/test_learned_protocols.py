"""Chest X-ray, breast ultrasound and retina protocols end to end on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medimg.io import read
from medimg.protocols.learned import analyze_image
from medimg.segment.cxr import lung_fields


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
def test_chest_xray_on_pydicom_cr(pydicom_data_dir: Path, tmp_path: Path, name: str) -> None:
    path = next(pydicom_data_dir.rglob(name))
    report, image = analyze_image(path, "chest_xray", output_dir=tmp_path)
    assert report.status == "complete", report.refusal
    assert {s.name for s in report.structures} == {"lung_right", "lung_left"}
    (f,) = report.findings
    assert f.kind == "pneumonia" and 0.0 <= f.probability <= 1.0
    assert f.measurement("operating_point") is not None
    assert f.characterisation["call"] in ("pneumonia suspected", "pneumonia not suspected")
    heat = Path(f.evidence[0]["path"])
    assert heat.is_file() and PILImage.open(heat).size == (image.array.shape[2], image.array.shape[1])
    assert f.provenance.model_card == "docs/models/cxr-pneumonia.md"
    d = report.to_dict()
    assert d["findings"][0]["evidence"][0]["kind"] == "heatmap"
    assert "Pneumonia probability" in report.impression
    # how much of the heatmap lies in the lung fields, measured again from the model and the masks
    from medimg.models import load
    from medimg.models.contract import prepare
    from medimg.models.explain import gradcam
    from medimg.protocols.learned import MIN_HEAT_SHARE, heat_share

    share = f.measurement("gradcam_share_in_lung_fields")
    assert share is not None and 0.0 <= share.value <= 1.0
    model = load("cxr-pneumonia")
    arr = model.contract.check_image(image, str(path))
    lungs = np.zeros(arr.shape, bool)
    for s in report.structures:
        lungs |= s.mask[0].astype(bool)
    assert share.value == pytest.approx(heat_share(gradcam(model, prepare(arr, model.contract)), lungs), abs=1e-4)
    caveat = f.characterisation.get("explanation_caveat")
    assert (caveat is not None) == (share.value < MIN_HEAT_SHARE)
    if caveat:
        assert f"{100 * (1 - share.value):.0f}% of the heatmap lies outside the lung fields" in caveat
        assert caveat in report.impression


def test_heat_share_is_the_mass_inside_the_mask() -> None:
    from medimg.protocols.learned import heat_share

    heat = np.zeros((28, 28), np.float32)
    heat[:14] = 1.0  # the top half, on a 28x28 grid resampled to 56x56
    top = np.zeros((56, 56), bool)
    top[:28] = True
    assert heat_share(heat, top) == pytest.approx(1.0, abs=0.03)
    assert heat_share(heat, ~top) == pytest.approx(0.0, abs=0.03)
    left = np.zeros((56, 56), bool)
    left[:, :28] = True
    assert heat_share(heat, left) == pytest.approx(0.5, abs=1e-6)
    assert heat_share(np.zeros((28, 28), np.float32), top) == 0.0


def test_chest_xray_photograph(data_dir: Path, tmp_path: Path) -> None:
    report, _ = analyze_image(data_dir / "xray" / "lung-seg-2d" / "1.jpg", "chest_xray",
                              output_dir=tmp_path, modality="DX")
    assert report.status == "complete", report.refusal
    assert report.findings[0].kind == "pneumonia"


def test_chest_xray_refuses_other_modalities(pydicom_data_dir: Path) -> None:
    report, _ = analyze_image(next(pydicom_data_dir.rglob("US1_UNCR.dcm")), "chest_xray")
    assert report.status == "refused" and "not a radiograph" in report.refusal


def test_lung_fields_against_manual_masks(data_dir: Path) -> None:
    folder = data_dir / "xray" / "lung-seg-2d"
    dices = []
    for i in range(1, 5):
        a = read(folder / f"{i}.jpg").array[0]
        g = read(folder / f"{i}-mask.png").array[0] > 0
        m = lung_fields(a).mask
        dices.append(2 * (m & g).sum() / (m.sum() + g.sum()))
    # classical method: measured 0.79 / 0.86 / 0.77 / 0.89
    assert min(dices) > 0.75 and np.mean(dices) > 0.8


def test_breast_us_on_dicom_ultrasound(pydicom_data_dir: Path, tmp_path: Path) -> None:
    report, _ = analyze_image(next(pydicom_data_dir.rglob("US1_UNCR.dcm")), "breast_us",
                              output_dir=tmp_path)
    assert report.status == "complete", report.refusal
    (f,) = report.findings
    assert f.kind == "breast_lesion_malignancy" and 0 <= f.probability <= 1
    assert Path(f.evidence[0]["path"]).is_file()
    assert report.steps[0].parameters["converted_to_grey"] is True


def test_breast_us_region_of_interest(pydicom_data_dir: Path, tmp_path: Path) -> None:
    report, _ = analyze_image(next(pydicom_data_dir.rglob("US1_UNCR.dcm")), "breast_us",
                              output_dir=tmp_path, roi=(100, 200, 300, 400))
    assert report.findings[0].provenance.parameters["roi"] == [100, 200, 300, 400]


@pytest.mark.slow
def test_retina_on_drive(data_dir: Path, tmp_path: Path) -> None:
    drive = data_dir / "retina" / "drive" / "test"
    report, _ = analyze_image(drive / "images" / "01_test.tif", "retina", output_dir=tmp_path,
                              modality="OP")
    assert report.status == "complete", report.refusal
    (s,) = report.structures
    d = {m.name: m.value for m in s.measurements}
    assert 0.05 < d["vessel_density"] < 0.2  # DRIVE manual masks: about 12% of the FOV
    assert 1.0 <= d["tortuosity_mean"] < 1.5
    assert "density" in report.impression


def test_classical_field_of_view_matches_drive_masks(data_dir: Path) -> None:
    from medimg.quantify.vessels import field_of_view

    drive = data_dir / "retina" / "drive" / "test"
    for i in (1, 7, 14):
        rgb = read(drive / "images" / f"{i:02d}_test.tif").array[0]
        ref = read(drive / "mask" / f"{i:02d}_test_mask.gif").array[0] > 0
        got = field_of_view(rgb)
        assert 2 * (got & ref).sum() / (got.sum() + ref.sum()) > 0.97


def test_retina_refuses_a_grey_radiograph(data_dir: Path) -> None:
    report, _ = analyze_image(data_dir / "xray" / "lung-seg-2d" / "1.jpg", "retina", modality="OP")
    assert report.status == "refused"
