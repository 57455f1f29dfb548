"""A Report built on the real 64-slice chest CT, independent of medimg's segmentation and detection.

Lungs: air below -400 HU that does not touch the edge of the field, split at the midline into right and
left.  Finding: a 9 mm-radius ball placed where the left lung is thickest, with its measurements
computed here (long/short axis on the slice of the longest chord, volume, mean HU).  The writers must
reproduce exactly these numbers and masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import medimg
from medimg.image import Image
from medimg.quality.report import Check, QualityReport
from medimg.report.model import (
    Code,
    Finding,
    Location,
    Measurement,
    Provenance,
    Recommendation,
    Report,
    Structure,
    StudyInfo,
    Triage,
)

RADIUS_MM = 9.0


def _feret(mask2d: np.ndarray, spacing_yx: tuple[float, float]) -> tuple[float, float]:
    """Longest chord between pixel centres and the widest extent perpendicular to it, brute force."""
    pts = np.argwhere(mask2d) * np.asarray(spacing_yx)
    d2 = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    i, j = np.unravel_index(np.argmax(d2), d2.shape)
    long_mm = float(np.sqrt(d2[i, j]))
    u = (pts[j] - pts[i]) / long_mm
    v = np.array([-u[1], u[0]])
    pu, pv = (pts - pts[i]) @ u, (pts - pts[i]) @ v
    bins = np.round(pu / min(spacing_yx)).astype(int)
    short_mm = max(float(pv[bins == b].max() - pv[bins == b].min()) for b in np.unique(bins))
    return long_mm, short_mm


def _lungs(image: Image) -> tuple[np.ndarray, np.ndarray]:
    hu = image.array
    air = hu < -400
    labels, n = ndimage.label(air)
    edge = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(),
                                     labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes[1:] * image.voxel_volume > 200_000  # > 200 mL
    keep[edge] = False
    lungs = keep[labels]
    mid = int(round(np.argwhere(lungs)[:, 2].mean()))
    # +x of this series is the patient's left (direction column 2 = +L).
    assert image.direction[0, 2] > 0.99
    left = lungs.copy()
    left[:, :, :mid] = False
    right = lungs & ~left
    return right, left


def _ball_in(image: Image, lung: np.ndarray) -> np.ndarray:
    sz, sy, sx = image.spacing
    reach = int(np.ceil(RADIUS_MM / sz))
    # Where the lung is present on 2*reach+1 consecutive slices, find the deepest point.
    solid = ndimage.binary_erosion(lung, structure=np.ones((2 * reach + 1, 1, 1), bool))
    box = ndimage.find_objects(solid.astype(np.uint8))[0]
    dist = ndimage.distance_transform_edt(solid[box], sampling=(1000.0, sy, sx))
    z, y, x = (int(i) + s.start for i, s in zip(np.unravel_index(int(np.argmax(dist)), dist.shape), box, strict=True))
    assert dist.max() > RADIUS_MM + 3
    zz, yy, xx = np.ogrid[: lung.shape[0], : lung.shape[1], : lung.shape[2]]
    ball = ((zz - z) * sz) ** 2 + ((yy - y) * sy) ** 2 + ((xx - x) * sx) ** 2 <= RADIUS_MM**2
    assert (ball & ~lung).sum() == 0
    return ball


def _sct(value: str, meaning: str) -> Code:
    return Code(value, "SCT", meaning)


def build_report(image: Image) -> Report:
    right, left = _lungs(image)
    ball = _ball_in(image, left)
    prov = Provenance("test-threshold-lungs", "1.0", {"threshold_hu": -400})
    vv = image.voxel_volume
    structures = [
        Structure("lung_right", _sct("3341006", "Right lung"),
                  [Measurement("volume", float(right.sum() * vv / 1000.0), "mL", "voxel count x voxel volume")],
                  prov, mask=right),
        Structure("lung_left", _sct("44029006", "Left lung"),
                  [Measurement("volume", float(left.sum() * vv / 1000.0), "mL", "voxel count x voxel volume")],
                  prov, mask=left),
    ]
    spacing_yx = (float(image.spacing[1]), float(image.spacing[2]))
    per_slice = [(_feret(ball[z], spacing_yx), z) for z in np.flatnonzero(ball.any(axis=(1, 2)))]
    (long_mm, short_mm), _z = max(per_slice)
    idx = np.argwhere(ball)
    centroid = idx.mean(axis=0)
    z0, y0, x0 = idx.min(axis=0)
    z1, y1, x1 = idx.max(axis=0) + 1
    finding = Finding(
        id="F1", kind="nodule", code=_sct("27925004", "Nodule"),
        location=Location(side="left", zone="middle", structure="lung",
                          centroid_index=tuple(float(c) for c in centroid),
                          centroid_patient=tuple(float(c) for c in image.index_to_patient(centroid)),
                          bbox_index=(int(z0), int(y0), int(x0), int(z1), int(y1), int(x1))),
        measurements=[
            Measurement("long_axis_diameter", long_mm, "mm", "longest in-plane chord, axial"),
            Measurement("short_axis_diameter", short_mm, "mm", "longest chord perpendicular to the long axis"),
            Measurement("volume", float(ball.sum() * vv), "mm3", "voxel count x voxel volume"),
            Measurement("mean_hu", float(image.array[ball].mean()), "[hnsf'U]", "mean over the mask"),
        ],
        probability=0.87, provenance=Provenance("test-ball", "1.0", {"radius_mm": RADIUS_MM}),
        characterisation={"type": "solid"}, mask=ball,
    )
    quality = QualityReport(checks=[
        Check("noise", "pass", 11.2, {"warn": 25, "fail": 40}, "Noise in air is low.", "HU"),
        Check("slice_thickness", "warn", 5.0, {"warn": 2.5, "fail": 7.5},
              "Slices are 5 mm thick; nodules under 6 mm may be missed.", "mm"),
    ], kind="CT", protocol="chest_ct", source="series-2")
    rec = Recommendation(
        guideline="Fleischner 2017", category="solid single 6-8 mm",
        text="CT at 6-12 months, then consider CT at 18-24 months.",
        rule="Single solid nodule 6-8 mm, low-risk patient: CT at 6-12 months, then consider 18-24 months.",
        finding_ids=["F1"], provenance=Provenance("test-rules", "1.0"))
    study = StudyInfo(
        study_instance_uid=image.meta["study_instance_uid"],
        series_instance_uid=image.meta["series_instance_uid"], modality="CT",
        study_date=image.meta.get("study_date", ""), study_description="Chest",
        series_description="5mm", patient_id=image.meta.get("patient_id", ""),
        series_choice="only CT series", source="series-2")
    return Report(
        study=study, protocol="chest_ct", status="complete", quality=quality,
        structures=structures, findings=[finding], recommendations=[rec],
        triage=Triage("soon", "nodule of 18 mm needs follow-up"),
        impression=f"One solid nodule in the left lung, long axis {long_mm:.1f} mm.",
        steps=[prov, finding.provenance], timings={"segment": 1.5, "detect": 0.5},
        medimg_version=medimg.__version__,
    )


def build_refused(image: Image) -> Report:
    quality = QualityReport(checks=[
        Check("coverage", "fail", 0.42, {"fail": 0.8}, "The lungs are not fully covered by the scan.",
              "fraction"),
    ], kind="CT", protocol="chest_ct", source="series-2")
    return Report(
        study=StudyInfo(study_instance_uid=image.meta["study_instance_uid"],
                        series_instance_uid=image.meta["series_instance_uid"], modality="CT"),
        protocol="chest_ct", status="refused", quality=quality,
        refusal="Quality check 'coverage' failed: the lungs are not fully covered by the scan.",
        medimg_version=medimg.__version__)


@pytest.fixture(scope="session")
def ct_image(ct_series: Path) -> Image:
    return medimg.read(ct_series)


@pytest.fixture(scope="session")
def ct_report(ct_image: Image) -> Report:
    return build_report(ct_image)


@pytest.fixture(scope="session")
def refused_report(ct_image: Image) -> Report:
    return build_refused(ct_image)


@pytest.fixture(scope="session")
def written(ct_report: Report, ct_image: Image, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every output of ``write_report`` for the complete report, written once for the session."""
    from medimg.report.outputs import write_report

    out = tmp_path_factory.mktemp("report-out")
    return write_report(ct_report, ct_image, out)
