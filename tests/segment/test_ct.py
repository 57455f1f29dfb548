"""Chest CT segmentation: a synthetic chest with known volumes, the real chest CT, CTs without lungs,
and inputs that must be refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import medimg
from medimg import Image
from medimg.segment.ct import STRUCTURE_CODES, ChestSegmentation, lung_zone, segment_chest

# ------------------------------------------------------------------------------ synthetic chest
SPACING = (2.5, 1.5, 1.5)
SHAPE = (48, 160, 200)
LUNG_AXES = (45.0, 70.0, 45.0)  # semi-axes z, y, x (mm)
LUNG_X = 60.0  # lung centres at +-60 mm from the midline


def _mm_grid() -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), axis=-1)
    return (idx - (np.array(SHAPE) - 1) / 2.0) * np.array(SPACING)


def _tube(p: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., np.newaxis] * ab), axis=-1) <= radius


def synthetic_chest() -> tuple[Image, dict[str, np.ndarray]]:
    """Body of soft tissue, two ellipsoid lungs (-850 HU), a trachea and two bronchi (air) joining
    them; patient left at +x (LPS), so the lung at larger column index is the left one."""
    p = _mm_grid()
    body = (p[..., 1] / 100.0) ** 2 + (p[..., 2] / 140.0) ** 2 <= 1.0
    truth = {}
    for name, sign in (("lung_left", 1.0), ("lung_right", -1.0)):
        c = np.array([0.0, 0.0, sign * LUNG_X])
        truth[name] = (((p - c) / np.array(LUNG_AXES)) ** 2).sum(axis=-1) <= 1.0
    carina = np.array([35.0, -10.0, 0.0])
    airway = _tube(p, carina, np.array([80.0, -10.0, 0.0]), 8.0)
    for sign in (1.0, -1.0):
        airway |= _tube(p, carina, np.array([15.0, -5.0, sign * 45.0]), 5.0)
    hu = np.where(body, 40.0, -1000.0)
    hu[truth["lung_left"] | truth["lung_right"]] = -850.0
    hu[airway & body] = -1000.0
    hu += np.random.default_rng(0).normal(0.0, 15.0, hu.shape)
    image = Image(np.round(hu).astype(np.int16), spacing=SPACING, modality="CT")
    return image, truth


@pytest.fixture(scope="module")
def phantom() -> tuple[Image, dict[str, np.ndarray], ChestSegmentation]:
    image, truth = synthetic_chest()
    return image, truth, segment_chest(image)


def test_synthetic_lungs_have_their_volume_and_side(phantom) -> None:  # type: ignore[no-untyped-def]
    image, truth, seg = phantom
    true_ml = 4.0 / 3.0 * np.pi * np.prod(LUNG_AXES) / 1000.0
    for name in ("lung_left", "lung_right"):
        got = getattr(seg, name)
        assert seg.volume_ml(name) == pytest.approx(true_ml, rel=0.03), name
        dice = 2 * np.count_nonzero(got & truth[name]) / (got.sum() + truth[name].sum())
        assert dice > 0.97, (name, dice)
    assert seg.lungs_present
    assert not (seg.lung_left & seg.lung_right).any()
    # The trachea and bronchi were found and are not lung.
    assert 10.0 < seg.volume_ml("airways") < 60.0
    assert not (seg.airways & seg.lungs).any()


def test_sides_follow_the_patient_frame_not_the_array(phantom) -> None:  # type: ignore[no-untyped-def]
    image, _, seg = phantom
    # Columns reversed *and* the x direction reversed: the same patient, so the same sides.
    d = image.direction.copy()
    d[:, 2] *= -1.0
    origin = image.index_to_patient([0, 0, image.shape[2] - 1])
    same_patient = image.replace(array=image.array[:, :, ::-1].copy(), direction=d, origin=origin)
    seg2 = segment_chest(same_patient)
    np.testing.assert_array_equal(seg2.lung_left[:, :, ::-1], seg.lung_left)
    # The left lung lies at larger LPS x (the patient's left) in both.
    for s, im in ((seg, image), (seg2, same_patient)):
        xl = im.index_to_patient(ndimage.center_of_mass(s.lung_left))[0]
        xr = im.index_to_patient(ndimage.center_of_mass(s.lung_right))[0]
        assert xl > xr


def test_a_single_lung_keeps_its_side() -> None:
    """After a right pneumonectomy (right lung replaced by fluid): all lung is the left one."""
    image, truth = synthetic_chest()
    array = image.array.copy()
    array[truth["lung_right"]] = 20
    seg = segment_chest(image.replace(array=array))
    assert seg.volume_ml("lung_right") == 0.0
    assert seg.volume_ml("lung_left") == pytest.approx(
        4.0 / 3.0 * np.pi * np.prod(LUNG_AXES) / 1000.0, rel=0.03)


def test_zones_split_each_lung_in_thirds_of_its_height(phantom) -> None:  # type: ignore[no-untyped-def]
    image, _, seg = phantom
    zc = (SHAPE[0] - 1) / 2.0
    col = (SHAPE[2] - 1) / 2.0 + LUNG_X / SPACING[2]
    dz = LUNG_AXES[0] / SPACING[0]
    assert lung_zone(seg, image, (zc + 0.8 * dz, 80, col), "left") == "upper"
    assert lung_zone(seg, image, (zc, 80, col), "left") == "middle"
    assert lung_zone(seg, image, (zc - 0.8 * dz, 80, col), "left") == "lower"


def test_structures_carry_codes_and_volumes(phantom) -> None:  # type: ignore[no-untyped-def]
    _, _, seg = phantom
    structures = {s.name: s for s in seg.structures()}
    assert set(structures) == {"body", "lung_left", "lung_right", "airways"}
    assert structures["lung_left"].code.value == "44029006"  # type: ignore[union-attr]
    assert structures["lung_right"].code.value == "3341006"  # type: ignore[union-attr]
    assert structures["airways"].code == STRUCTURE_CODES["airways"]
    vol = structures["lung_left"].measurements[0]
    assert (vol.name, vol.unit) == ("volume", "mL")
    assert vol.value == pytest.approx(seg.volume_ml("lung_left"), abs=0.1)
    assert seg.provenance.parameters["air_hu"] == -400.0


# ------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def chest(ct_series: Path) -> tuple[Image, ChestSegmentation]:
    image = medimg.read(ct_series)
    return image, segment_chest(image)


def test_real_chest_ct_lung_volumes_are_adult(chest) -> None:  # type: ignore[no-untyped-def]
    image, seg = chest
    left, right = seg.volume_ml("lung_left"), seg.volume_ml("lung_right")
    print(f"\nlung volumes: left {left:.0f} mL, right {right:.0f} mL, total {left + right:.0f} mL; "
          f"airways {seg.volume_ml('airways'):.0f} mL")
    assert 2000.0 <= left + right <= 8000.0
    assert 700.0 <= left <= 5000.0 and 700.0 <= right <= 5000.0
    # Airways: trachea and main bronchi of an adult, tens of millilitres.
    assert 10.0 <= seg.volume_ml("airways") <= 150.0
    assert not (seg.airways & seg.lungs).any()
    assert not (seg.lungs & ~seg.body).any()
    xl = image.index_to_patient(ndimage.center_of_mass(seg.lung_left))[0]
    xr = image.index_to_patient(ndimage.center_of_mass(seg.lung_right))[0]
    assert xl > xr + 100.0  # left lung to the patient's left, about a hand's width apart
    # Vessels inside the lungs belong to the lungs: few holes remain in any slice.
    z = 30
    filled = ndimage.binary_fill_holes(seg.lung_left[z])
    assert np.count_nonzero(filled & ~seg.lung_left[z]) < 0.01 * np.count_nonzero(filled)


def test_abdominal_ct_without_lungs_says_so(data_dir: Path) -> None:
    image = medimg.read(data_dir / "ct" / "totalseg-example" / "dicom")
    seg = segment_chest(image)
    assert not seg.lungs_present
    assert not seg.lungs.any() and not seg.airways.any()
    assert seg.volume_ml("body") > 1000.0
    assert any("gas" in note or "no lungs" in note for note in seg.notes)


def test_lung_bases_match_totalsegmentator(data_dir: Path) -> None:
    """The lung bases at the top of an abdominal CT against TotalSegmentator's lobes (a published
    model's output, not manual truth): both lungs partly in view, stomach and bowel gas left out."""
    folder = data_dir / "ct" / "totalseg-example"
    image = medimg.read(folder / "example_ct_sm.nii.gz").replace(modality="CT")
    reference = medimg.read(folder / "example_seg.nii.gz").array
    seg = segment_chest(image)
    assert seg.lungs_present
    for name, lobes in (("lung_left", [10, 11]), ("lung_right", [12, 13, 14])):
        ref = np.isin(reference, lobes)
        got = getattr(seg, name)
        dice = 2 * np.count_nonzero(got & ref) / (got.sum() + ref.sum())
        print(f"\n{name}: {seg.volume_ml(name):.1f} mL, TotalSegmentator "
              f"{ref.sum() * image.voxel_volume / 1000:.1f} mL, Dice {dice:.3f}")
        assert dice > 0.9
    assert sum("gas" in note for note in seg.notes) >= 1  # the stomach is not a lung


def test_refuses_what_it_cannot_segment(data_dir: Path) -> None:
    one_slice = medimg.read(data_dir / "registration" / "ny-sbu" / "A002304" / "19001231-076.dcm")
    with pytest.raises(ValueError, match=r"segment_chest: needs a 3-D CT volume.*medimg.read"):
        segment_chest(one_slice)
    image, _ = synthetic_chest()
    with pytest.raises(ValueError, match=r"segment_chest: needs a CT in Hounsfield units"):
        segment_chest(image.replace(modality="MR"))
    raw = image.replace(array=(image.array.astype(np.int32) + 1024).astype(np.uint16))
    with pytest.raises(ValueError, match=r"segment_chest: the values do not look like .*to_hu"):
        segment_chest(raw)
