"""Input features of one analysis: the live path (an Image as the pipeline hands it over) gives the
same numbers as the reference builder on the same data; headers are read as documented; nothing
raises on an input the features cannot describe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.image import Image
from medimg.io import read
from medimg.io.datasets import load_npz
from medimg.models import load
from medimg.models.contract import prepare
from medimg.monitoring.features import (
    describe,
    finding_scores,
    fundus_pixel_stats,
    header_features,
    pixel_stats,
)
from medimg.monitoring.reference import load_reference
from medimg.report.model import Finding, Location, Measurement, Provenance


def test_pixel_stats_values() -> None:
    s = pixel_stats(np.arange(101, dtype=float))
    assert s == {"px_mean": 50.0, "px_std": pytest.approx(29.1548, abs=1e-4), "px_p05": 5.0, "px_p50": 50.0,
                 "px_p95": 95.0}
    assert pixel_stats(np.array([np.nan])) == dict.fromkeys(s)


def test_classifier_input_stats_match_the_reference_path(data_dir: Path) -> None:
    ds = load_npz(data_dir / "xray" / "pneumoniamnist.npz", "train")
    contract = load("cxr-pneumonia").contract
    for i in (0, 1, 4707):
        arr = np.asarray(ds.images[i])
        reference_path = pixel_stats(prepare(arr, contract))
        grey = describe(None, Image(arr[None], modality="DX"), "chest_xray")
        assert {k: grey[k] for k in reference_path} == reference_path
        # a colour export of the same radiograph is converted to grey as the protocol does
        rgb = describe(None, Image(np.repeat(arr[None, ..., None], 3, axis=-1), modality="DX"), "chest_xray")
        assert rgb["px_mean"] == pytest.approx(reference_path["px_mean"], abs=1e-6)
    ref = load_reference("chest_xray")
    assert ref is not None
    lo, hi = ref["features"]["px_mean"]["min"], ref["features"]["px_mean"]["max"]
    assert lo <= grey["px_mean"] <= hi


def test_a_full_size_radiograph_is_described_as_the_model_sees_it(data_dir: Path) -> None:
    img = read(data_dir / "xray" / "lung-seg-2d" / "1.jpg").replace(modality="DX")
    f = describe(None, img, "chest_xray")
    assert "error" not in f
    assert 0.0 <= f["px_p05"] <= f["px_p50"] <= f["px_p95"] <= 1.0
    assert f["pixel_spacing"] is None  # a JPEG does not know its pixel size
    assert f["scanner"] is None and f["kvp"] is None


def test_fundus_features_match_the_reference(data_dir: Path) -> None:
    ref = load_reference("retina")
    assert ref is not None
    img = read(data_dir / "retina" / "drive" / "training" / "images" / "21_training.tif").replace(modality="OP")
    f = describe(None, img, "retina")
    assert f["rows"] == 584.0
    for name in ("px_mean", "px_std", "px_p05", "px_p50", "px_p95", "fov_fraction"):
        assert f[name] in ref["features"][name]["values"], name
    assert fundus_pixel_stats(img.array[0]) == {k: f[k] for k in (*pixel_stats(np.zeros(1)), "fov_fraction", "rows")}


def test_header_features() -> None:
    meta = {"manufacturer": "GE MEDICAL SYSTEMS ", "manufacturer_model_name": "LightSpeed  VCT",
            "convolution_kernel": ["FC17", "AIDR"], "slice_thickness": "1.250000", "kvp": 100}
    f = header_features(meta, np.array([1.25, 0.724609, 0.724609]))
    assert f == {"scanner": "GE MEDICAL SYSTEMS LightSpeed VCT", "kernel": "FC17\\AIDR", "slice_thickness": 1.25,
                 "kvp": 100.0, "pixel_spacing": 0.724609}
    assert header_features({"pixel_spacing_known": False}, np.ones(3))["pixel_spacing"] is None
    assert header_features({"source_format": "png"}, np.ones(3))["pixel_spacing"] is None
    assert header_features({"kvp": "n/a", "manufacturer": ""}, None) == {
        "scanner": None, "kernel": None, "slice_thickness": None, "kvp": None, "pixel_spacing": None}


def test_describe_never_raises() -> None:
    assert describe(None, None, "chest_ct") == {}
    # an MR image handed to the X-ray features: the header features stay, the problem is noted
    f = describe(None, Image(np.zeros((1, 32, 32), np.uint8), modality="MR", meta={"manufacturer": "X"}),
                 "chest_xray")
    assert f["scanner"] == "X" and "px_mean" not in f
    assert f["error"].startswith("pixel statistics: ContractError:")
    # a protocol without pixel features: headers only
    assert set(describe(None, Image(np.zeros((3, 8, 8)), modality="CT"), "brain_mri")) == {
        "scanner", "kernel", "slice_thickness", "kvp", "pixel_spacing"}


def test_finding_scores() -> None:
    from medimg.report.model import Report, StudyInfo

    f = Finding("pneumonia-1", "pneumonia", None, Location(),
                [Measurement("operating_point", 0.4766, "1", "threshold")], 0.81,
                Provenance("medimg.models.cxr-pneumonia", "1"))
    g = Finding("F1", "nodule", None, Location(), [], 0.3, Provenance("medimg.detect.lung_nodules.x", "1"))
    report = Report(study=StudyInfo(), protocol="chest_xray", status="complete", findings=[f, g])
    assert finding_scores(report) == [
        {"finding": "pneumonia-1", "kind": "pneumonia", "probability": 0.81,
         "algorithm": "medimg.models.cxr-pneumonia", "threshold": 0.4766},
        {"finding": "F1", "kind": "nodule", "probability": 0.3, "algorithm": "medimg.detect.lung_nodules.x",
         "threshold": None}]
    assert finding_scores(None) == []
