"""Lung lesion detection: the annotated tumour of Lung-PET-CT-Dx A0001 (both series), synthetic
nodules inserted into that real CT, a synthetic chest with a nodule beside a vessel, and refusals.

Accuracy on the annotated slices is judged as the issue states it: on each annotated slice, the
IoU between the annotation box and the **bounding box of the finding's mask on that slice** must be
at least 0.3 on at least 80 % of the slices.  Box against box is what the annotation supports (it
is a box, not an outline), so a perfect outline scores 1; the overlap of the mask's own region with
the box is printed as well (it is lower by construction: a round tumour fills about 3/4 of its box).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import medimg
from medimg import Image
from medimg.detect.lung_nodules import LESION_CODES, detect_lung_lesions
from medimg.quantify import axial_diameters
from medimg.report.model import Finding
from medimg.segment.ct import ChestSegmentation, segment_chest

REPO = Path(__file__).resolve().parents[2]
CASE = Path("ct") / "lung-pet-ct-dx-A0001"


def _boxes(data_dir: Path, image: Image) -> dict[int, tuple[int, int, int, int]]:
    """Annotation boxes of this series by slice index: (x0, y0, x1, y1), inclusive, 0-based.

    The Pascal VOC files (LabelImg) count pixels from 1, so 1 is subtracted; each file is named by
    the SOP Instance UID of its slice.
    """
    index = {uid: z for z, uid in enumerate(image.meta["sop_instance_uids"])}
    out = {}
    for path in sorted((data_dir / CASE / "annotations").glob("*.xml")):
        z = index.get(path.stem)
        if z is None:
            continue  # a slice of the other series
        root = ET.parse(path).getroot()
        assert root.findtext("size/width") == str(image.shape[2])
        box = root.find("object/bndbox")
        assert box is not None
        x0, y0, x1, y1 = (int(box.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))
        out[z] = (x0, y0, x1, y1)
    return out


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)


def _mask_box(plane: np.ndarray) -> tuple[int, int, int, int] | None:
    if not plane.any():
        return None
    ys, xs = np.nonzero(plane)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _mask_region_iou(plane: np.ndarray, box: tuple[int, int, int, int]) -> float:
    region = np.zeros_like(plane)
    region[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    return float(np.count_nonzero(plane & region) / np.count_nonzero(plane | region))


def render(image: Image, seg: ChestSegmentation, finding: Finding | None, z: int,
           box: tuple[int, int, int, int], path: Path) -> None:
    """A PNG of slice ``z`` (lung window): right lung green, left lung blue, finding red, the
    annotation box yellow; cropped to the body."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    plane = image.array[z].astype(np.float32)
    grey = np.clip((plane + 1350.0) / 1500.0 * 255.0, 0, 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    layers = [(seg.lung_right[z], (40, 220, 40)), (seg.lung_left[z], (60, 140, 255))]
    if finding is not None and finding.mask is not None:
        layers.append((finding.mask[z], (255, 40, 40)))
    for mask, colour in layers:
        edge = mask & ~ndimage.binary_erosion(mask)
        rgb[ndimage.binary_dilation(edge)] = colour
    picture = PILImage.fromarray(rgb)
    ImageDraw.Draw(picture).rectangle(box, outline=(255, 230, 0), width=2)
    ys, xs = np.nonzero(seg.body[z])
    picture = picture.crop((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    picture.save(path, optimize=True)


@pytest.fixture(scope="module", params=["series-2", "series-3"])
def case(request: pytest.FixtureRequest, data_dir: Path
         ) -> tuple[str, Image, ChestSegmentation, list[Finding], dict[int, tuple[int, int, int, int]]]:
    image = medimg.read(data_dir / CASE / request.param)
    seg = segment_chest(image)
    findings = detect_lung_lesions(image, seg)
    return request.param, image, seg, findings, _boxes(data_dir, image)


def test_annotated_tumour_is_found_and_measured(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    series, image, seg, findings, boxes = case
    assert len(boxes) >= 9, "the annotations of this series were not found"
    # The finding that matches the most annotated slices is the tumour.
    scores = {}
    for f in findings:
        assert f.mask is not None
        ious = []
        for z, box in sorted(boxes.items()):
            mb = _mask_box(f.mask[z])
            ious.append(0.0 if mb is None else _box_iou(mb, box))
        scores[f.id] = ious
    assert scores, f"{series}: no findings at all"
    best = max(scores, key=lambda k: sum(v >= 0.3 for v in scores[k]))
    tumour = next(f for f in findings if f.id == best)
    ious = scores[best]
    hit_rate = float(np.mean([v >= 0.3 for v in ious]))
    region = [_mask_region_iou(tumour.mask[z], b) for z, b in sorted(boxes.items())]  # type: ignore[index]
    print(f"\n{series}: tumour is {best} ({tumour.kind}, p={tumour.probability}, "
          f"{tumour.location.side} {tumour.location.zone}); slices {sorted(boxes)}")
    print("  box IoU per slice:       " + " ".join(f"{v:.2f}" for v in ious))
    print("  mask-region IoU per slice: " + " ".join(f"{v:.2f}" for v in region))
    print(f"  box IoU >= 0.3 on {hit_rate:.0%} of {len(ious)} annotated slices; "
          f"median box IoU {np.median(ious):.2f}")
    assert hit_rate >= 0.8

    # Diameter on the slice where the box is largest: between the box's longer side and its
    # diagonal (mm), +-10 %.
    zbig, box = max(boxes.items(), key=lambda kv: (kv[1][2] - kv[1][0] + 1) * (kv[1][3] - kv[1][1] + 1))
    w = (box[2] - box[0] + 1) * image.spacing[2]
    h = (box[3] - box[1] + 1) * image.spacing[1]
    plane = np.zeros_like(tumour.mask)
    plane[zbig] = tumour.mask[zbig]  # type: ignore[index]
    long_on_slice = axial_diameters(plane, image.spacing).long_mm
    lo, hi = 0.9 * max(w, h), 1.1 * float(np.hypot(w, h))
    print(f"  largest box on slice {zbig}: {w:.1f} x {h:.1f} mm, diagonal {np.hypot(w, h):.1f} mm; "
          f"finding's long axis there {long_on_slice:.1f} mm (allowed {lo:.1f}-{hi:.1f}); reported "
          f"long/short axis {tumour.measurement('long_axis_diameter').value}/"  # type: ignore[union-attr]
          f"{tumour.measurement('short_axis_diameter').value} mm, "  # type: ignore[union-attr]
          f"volume {tumour.measurement('volume').value / 1000:.1f} mL")  # type: ignore[union-attr]
    assert lo <= long_on_slice <= hi

    # False positives: findings that overlap no annotation box on any annotated slice.
    fp = [f for f in findings if f is not tumour and max(scores[f.id]) == 0.0]
    print(f"  false positives: {len(fp)} " + ", ".join(
        f"{f.id} {f.kind} {f.measurement('long_axis_diameter').value} mm "  # type: ignore[union-attr]
        f"{f.location.side} {f.location.zone} p={f.probability}" for f in fp))
    # A reading aid that marks more than a handful of wrong places per scan is not used; this is
    # a guard against regressions, the measured figure is in docs/protocols/chest_ct.md.
    assert len(fp) <= 4

    assert tumour.kind == "mass" and tumour.code == LESION_CODES["mass"]
    assert tumour.location.side == "left" and tumour.location.zone == "upper"
    assert tumour.characterisation["type"] == "solid"
    path = tmp_path / f"{series}_slice{zbig}.png"
    render(image, seg, tumour, zbig, box, path)
    assert path.stat().st_size < 300_000
    if os.environ.get("MEDIMG_WRITE_DOCS") and series == "series-2":
        render(image, seg, tumour, zbig, box, REPO / "docs" / "protocols" / "chest_ct_example.png")


def test_findings_are_complete_and_ordered(case) -> None:  # type: ignore[no-untyped-def]
    _, image, _, findings, _ = case
    assert [f.id for f in findings] == [f"F{i}" for i in range(1, len(findings) + 1)]
    assert [f.probability for f in findings] == sorted((f.probability for f in findings), reverse=True)
    for f in findings:
        names = {m.name: m for m in f.measurements}
        assert {"long_axis_diameter", "short_axis_diameter", "volume", "mean_hu", "max_hu"} <= set(names)
        assert names["short_axis_diameter"].value <= names["long_axis_diameter"].value
        assert names["mean_hu"].unit == "[hnsf'U]" and names["volume"].unit == "mm3"
        assert 0.0 <= f.probability <= 1.0
        assert f.kind == ("mass" if names["long_axis_diameter"].value >= 30.0 else "nodule")
        assert f.characterisation["type"] in {"solid", "part-solid", "ground-glass"}
        assert f.mask is not None and f.mask.shape == image.spatial_shape
        assert f.location.structure == "lung" and f.location.side in {"left", "right"}
        assert f.location.zone in {"upper", "middle", "lower"}
        # The reported centroid is the mask's, in voxels and in the patient frame.
        c = np.array(ndimage.center_of_mass(f.mask))
        np.testing.assert_allclose(f.location.centroid_index, c, atol=0.01)  # type: ignore[arg-type]
        np.testing.assert_allclose(f.location.centroid_patient, image.index_to_patient(c),  # type: ignore[arg-type]
                                   atol=0.01)
        assert f.provenance.parameters["min_lung_contact"] == 0.5


# ------------------------------------------------------------------------------ synthetic nodules
def _insert_sphere(array: np.ndarray, spacing: np.ndarray, centre: np.ndarray, d: float,
                   hu: float = 30.0) -> None:
    """Blend a ball of diameter ``d`` mm into ``array`` with its partial volume (sub-sampled)."""
    r = d / 2.0
    lo = np.floor(centre - r / spacing - 1).astype(int)
    hi = np.ceil(centre + r / spacing + 2).astype(int)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)],
                                indexing="ij"), axis=-1).astype(float)
    frac = np.zeros(grid.shape[:3])
    offsets = [(np.arange(n) + 0.5) / n - 0.5 for n in (9, 3, 3)]
    for oz in offsets[0]:
        for oy in offsets[1]:
            for ox in offsets[2]:
                p = (grid + np.array([oz, oy, ox]) - centre) * spacing
                frac += np.linalg.norm(p, axis=-1) <= r
    frac /= 81.0
    array[sl] = np.round(array[sl] * (1 - frac) + hu * frac).astype(array.dtype)


@pytest.mark.slow
def test_synthetic_nodules_in_the_real_lung_are_found_and_measured(data_dir: Path) -> None:
    """Balls of 10-25 mm blended (with partial volume) into lung parenchyma far from the tumour,
    where no vessel runs within 2 mm of their surface (a touching vessel adds to a diameter;
    that is a separate matter)."""
    image = medimg.read(data_dir / CASE / "series-2")
    seg = segment_chest(image)
    inner = ndimage.binary_erosion(seg.lungs, structure=np.ones((1, 3, 3), bool), iterations=20)
    local = ndimage.uniform_filter(np.where(seg.lungs, image.array, 0).astype(np.float32), (1, 15, 15))
    spots = np.argwhere(inner & (local < -780) & (image.array < -700))
    spots = spots[(spots[:, 0] < 36) | (spots[:, 2] < 256)]  # away from the tumour (left upper)
    rng = np.random.default_rng(7)
    placed: list[tuple[np.ndarray, float]] = []
    for d in (10.0, 15.0, 20.0, 25.0):
        for _ in range(3000):
            p = spots[rng.integers(len(spots))] + rng.uniform(-0.5, 0.5, 3)
            reach = np.ceil((d / 2 + 2.0) / image.spacing).astype(int)
            c = np.round(p).astype(int)
            near = image.array[tuple(slice(a - r, a + r + 1) for a, r in zip(c, reach, strict=True))]
            if np.percentile(near, 98) > -500:  # a vessel, not a noise spike
                continue
            if all(np.linalg.norm((p - q) * image.spacing) > 50 for q, _ in placed):
                placed.append((p, d))
                break
    assert len(placed) == 4, "no room for the balls: the spot search is broken"
    array = image.array.copy()
    for p, d in placed:
        _insert_sphere(array, image.spacing, p, d)
    altered = image.replace(array=array)
    findings = detect_lung_lesions(altered, segment_chest(altered))
    for p, d in placed:
        z, y, x = (int(round(v)) for v in p)
        hit = [f for f in findings if f.mask is not None and f.mask[z, y, x]]
        assert hit, f"the {d:g} mm ball at {(z, y, x)} was missed"
        long_axis = hit[0].measurement("long_axis_diameter").value  # type: ignore[union-attr]
        volume = hit[0].measurement("volume").value  # type: ignore[union-attr]
        true_volume = np.pi / 6.0 * d ** 3
        print(f"ball {d:g} mm: long axis {long_axis} mm, volume {volume:.0f} mm3 (true "
              f"{true_volume:.0f}), p={hit[0].probability}")
        assert abs(long_axis - d) <= 1.5  # pixel 0.84 mm, plus partial volume at the rim
        # 5 mm slices lose the caps of small balls to partial volume.
        assert volume == pytest.approx(true_volume, rel=0.35 if d < 15 else 0.15)
        assert hit[0].characterisation["type"] == "solid"


def test_nodules_are_found_and_the_vessel_is_not() -> None:
    """A synthetic chest: in the left lung a 12 mm ball and a 6 mm wide, 60 mm long oblique tube;
    in the right lung a 14 mm ball against the chest wall (juxtapleural)."""
    spacing = np.array([2.5, 1.5, 1.5])
    shape = (48, 160, 200)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    p = (idx - (np.array(shape) - 1) / 2.0) * spacing
    body = (p[..., 1] / 100.0) ** 2 + (p[..., 2] / 140.0) ** 2 <= 1.0
    hu = np.where(body, 40.0, -1000.0)
    for sign in (1.0, -1.0):
        lung = (((p - [0.0, 0.0, sign * 60.0]) / [45.0, 70.0, 45.0]) ** 2).sum(axis=-1) <= 1.0
        hu[lung] = -850.0
    ball_centre = np.array([-10.0, 25.0, 60.0])
    hu[np.linalg.norm(p - ball_centre, axis=-1) <= 6.0] = 40.0
    a, b = np.array([10.0, -45.0, 45.0]), np.array([-10.0, 5.0, 75.0])  # the tube's ends
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    tube = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1) <= 3.0
    hu[tube] = 40.0
    # Against the lateral wall of the right lung (which reaches x = -105 mm), 1 mm into it.
    wall_ball = np.array([5.0, 0.0, -97.0])
    hu[np.linalg.norm(p - wall_ball, axis=-1) <= 7.0] = 40.0
    hu += np.random.default_rng(3).normal(0.0, 15.0, hu.shape)
    image = Image(np.round(hu).astype(np.int16), spacing=spacing, modality="CT")
    findings = detect_lung_lesions(image, segment_chest(image))
    assert len(findings) == 2, [(f.id, f.location.centroid_index) for f in findings]
    inner = next(f for f in findings if f.location.side == "left")
    centre_index = ball_centre / spacing + (np.array(shape) - 1) / 2.0
    np.testing.assert_allclose(inner.location.centroid_index, centre_index, atol=1.0)  # type: ignore[arg-type]
    assert inner.measurement("long_axis_diameter").value == pytest.approx(12.0, abs=1.5)  # type: ignore[union-attr]
    assert (inner.kind, inner.location.zone) == ("nodule", "middle")
    assert inner.code == LESION_CODES["nodule"]
    assert inner.evidence[0]["blobness"] > 0.55
    # The juxtapleural one: found on the right, measured without the chest wall behind it.
    pleural = next(f for f in findings if f.location.side == "right")
    assert pleural.mask is not None
    wall_index = wall_ball / spacing + (np.array(shape) - 1) / 2.0
    assert pleural.mask[tuple(np.round(wall_index).astype(int))]
    assert pleural.measurement("long_axis_diameter").value == pytest.approx(14.0, abs=2.0)  # type: ignore[union-attr]


def test_no_lungs_no_findings(data_dir: Path) -> None:
    image = medimg.read(data_dir / "ct" / "totalseg-example" / "dicom")
    seg = segment_chest(image)
    assert detect_lung_lesions(image, seg) == []


def test_refuses_images_it_cannot_analyse(data_dir: Path) -> None:
    one_slice = medimg.read(data_dir / "registration" / "ny-sbu" / "A002304" / "19001231-076.dcm")
    empty = np.zeros((1,) + one_slice.spatial_shape[1:], dtype=bool)
    seg = ChestSegmentation(empty, empty, empty, empty, False, one_slice.voxel_volume)
    with pytest.raises(ValueError, match=r"detect_lung_lesions: needs a 3-D CT volume"):
        detect_lung_lesions(one_slice, seg)
    values = np.full((4, 16, 16), -1000.0)
    values[:, 4:12, 4:12] = 40.0
    values += np.random.default_rng(0).normal(0.0, 15.0, values.shape)  # real air is noisy
    image = Image(values.astype(np.int16), modality="CT")
    other = ChestSegmentation(*(np.zeros((4, 8, 8), bool),) * 4, False, 1.0)
    with pytest.raises(ValueError, match=r"detect_lung_lesions: the segmentation's grid"):
        detect_lung_lesions(image, other)
