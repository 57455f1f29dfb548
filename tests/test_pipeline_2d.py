"""`medimg analyze` on 2-D studies: routing to the learned protocols and their outputs (real data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from medimg.protocols import SeriesFacts, route

TWO_D_OUTPUTS = {"report.json", "report.html", "report.pdf", "fhir.json"}


def analyze(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medimg", "analyze", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False)


def files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}


def test_chest_cr_routes_to_chest_xray(pydicom_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = analyze(pydicom_data_dir / "RG1_UNCR.dcm", "-o", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete" and report["protocol"] == "chest_xray"
    assert "for chest_xray: CR with chest" in report["study"]["series_choice"]
    (finding,) = [f for f in report["findings"] if f["kind"] == "pneumonia"]
    values = {m["name"]: m["value"] for m in finding["measurements"]}
    assert 0.0 <= finding["probability"] <= 1.0
    assert values["pneumonia_probability"] == finding["probability"]
    assert 0.0 < values["operating_point"] < 1.0
    assert finding["provenance"]["parameters"]["threshold"] == values["operating_point"]
    above = finding["probability"] >= values["operating_point"]
    assert finding["characterisation"]["call"] == ("pneumonia suspected" if above else "no pneumonia")
    assert {s["name"] for s in report["structures"]} == {"lung_right", "lung_left"}
    html = (out / "report.html").read_text()
    assert "Grad-CAM (MONAI) of pneumonia-1" in html
    assert html.count("data:image/png;base64") >= 2  # overview and the Grad-CAM overlay
    assert files(out) == TWO_D_OUTPUTS  # no SEG/SR: a CR has no Frame of Reference
    # the heatmap the finding points to is kept with the report, not in a temporary folder
    (heatmap,) = [e for e in finding["evidence"] if e["kind"] == "heatmap"]
    path = Path(heatmap["path"])
    assert path.parent == out / "evidence" and path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fundus_photo_with_protocol_retina(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    photo = data_dir / "retina" / "drive" / "test" / "images" / "01_test.tif"
    proc = analyze(photo, "-o", out, "--protocol", "retina")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete" and report["protocol"] == "retina"
    (vessels,) = [s for s in report["structures"] if s["name"] == "retinal_vessels"]
    density = {m["name"]: m["value"] for m in vessels["measurements"]}["vessel_density"]
    assert 0.05 < density < 0.3  # DRIVE vessels cover roughly 10-15% of the field of view
    assert files(out) == TWO_D_OUTPUTS


def test_ultrasound_not_named_breast_is_refused(pydicom_data_dir: Path, tmp_path: Path) -> None:
    import pydicom

    src = pydicom_data_dir / "US1_UNCR.dcm"
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    assert ds.Modality == "US" and "BREAST" not in str(ds.get("BodyPartExamined", "")).upper()
    out = tmp_path / "out"
    proc = analyze(src, "-o", out)
    assert proc.returncode == 4
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "refused" and report["findings"] == []
    assert "breast_us model only when" in report["refusal"]
    assert "--protocol breast_us" in report["refusal"]
    assert "analysis refused" in proc.stderr
    assert files(out) == TWO_D_OUTPUTS


def test_png_without_protocol_is_refused(tmp_path: Path) -> None:
    png = tmp_path / "photo.png"
    PILImage.fromarray(np.full((64, 64), 128, np.uint8)).save(png)
    out = tmp_path / "out"
    proc = analyze(png, "-o", out)
    assert proc.returncode == 4
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "refused"
    assert "is not DICOM" in report["refusal"] and "pass --protocol" in report["refusal"]
    assert "--protocol" in proc.stderr


def test_route_2d_rules() -> None:
    assert route(SeriesFacts("k", 1, "DX", body_part="CHEST"))[0] == "chest_xray"
    assert route(SeriesFacts("k", 1, "CR", slices=1))[0] == "chest_xray"  # unnamed, one grey image
    assert route(SeriesFacts("k", 1, "CR", slices=1, colour=True))[0] is None
    assert route(SeriesFacts("k", 1, "CR", body_part="KNEE", slices=1))[0] is None
    assert route(SeriesFacts("k", 1, "US", body_part="BREAST"))[0] == "breast_us"
    assert route(SeriesFacts("k", 1, "US", body_part="ABDOMEN"))[0] is None
    assert route(SeriesFacts("k", 1, "OP"))[0] == "retina"
    assert route(SeriesFacts("k", 1, "XC"))[0] is None
    assert route(SeriesFacts("k", 1, "XC", series_description="Fundus OD"))[0] == "retina"
