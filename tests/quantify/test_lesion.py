"""Lesion measurements on synthetic shapes whose diameters and volumes are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from medimg import Image
from medimg.quantify import axial_diameters, intensity_stats, lesion_measurements, volume_mm3


def _grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxel centres in mm relative to the array centre, shape (z, y, x, 3)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return (idx - (np.array(shape) - 1) / 2.0) * np.array(spacing)


def _ellipsoid(shape: tuple[int, int, int], spacing: tuple[float, float, float], a: float, b: float,
               c: float, angle_deg: float = 0.0) -> np.ndarray:
    """Semi-axes ``a`` (in-plane, along ``angle_deg`` from the x axis towards y), ``b`` (in-plane,
    perpendicular) and ``c`` (along z), in mm."""
    p = _grid(shape, spacing)
    t = np.deg2rad(angle_deg)
    u = p[..., 2] * np.cos(t) + p[..., 1] * np.sin(t)
    v = -p[..., 2] * np.sin(t) + p[..., 1] * np.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 + (p[..., 0] / c) ** 2 <= 1.0


# One pixel of tolerance: a digital outline is exact to within about a pixel.
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.6, 0.9), (5.0, 0.8, 0.8)])
def test_sphere_diameters_and_volume(spacing: tuple[float, float, float]) -> None:
    d = 20.0
    shape = tuple(int(np.ceil(30.0 / s)) for s in spacing)
    mask = _ellipsoid(shape, spacing, d / 2, d / 2, d / 2)  # type: ignore[arg-type]
    diam = axial_diameters(mask, spacing)
    px = max(spacing[1:])
    assert abs(diam.long_mm - d) <= px
    assert abs(diam.short_mm - d) <= px
    assert diam.short_mm <= diam.long_mm
    # The widest slice is a middle one: within 3.5 mm of the centre a 10 mm radius section loses
    # under 0.7 mm, so thin slices there tie.
    assert abs(diam.z - (shape[0] - 1) / 2) * spacing[0] <= 3.5
    true_volume = np.pi / 6 * d ** 3
    # Thick slices sample a sphere coarsely: 5 mm slices are good to ~6 %, 1 mm to ~1 %.
    tol = 0.015 if spacing[0] <= 1.0 else 0.07
    assert volume_mm3(mask, float(np.prod(spacing))) == pytest.approx(true_volume, rel=tol)


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 110.0])
def test_rotated_ellipse_in_plane_with_anisotropic_pixels(angle: float) -> None:
    spacing = (2.0, 0.5, 0.8)  # y and x pixels differ: a swapped axis shows at once
    a, b, c = 15.0, 6.0, 8.0
    mask = _ellipsoid((20, 90, 60), spacing, a, b, c, angle)
    diam = axial_diameters(mask, spacing)
    assert diam.long_mm == pytest.approx(2 * a, abs=0.8)
    assert diam.short_mm == pytest.approx(2 * b, abs=0.8)
    # The long axis points along the ellipse's major axis (direction in mm, y and x).
    (z0, y0, x0), (z1, y1, x1) = diam.long_ends
    vec = np.array([(y1 - y0) * spacing[1], (x1 - x0) * spacing[2]])
    major = np.array([np.sin(np.deg2rad(angle)), np.cos(np.deg2rad(angle))])
    assert abs(abs(vec @ major) / np.linalg.norm(vec) - 1.0) < 0.01
    # The short axis is perpendicular to the long axis.
    (_, p0, q0), (_, p1, q1) = diam.short_ends
    short_vec = np.array([(p1 - p0) * spacing[1], (q1 - q0) * spacing[2]])
    assert abs(short_vec @ vec) / (np.linalg.norm(short_vec) * np.linalg.norm(vec)) < 1e-6
    assert z0 == z1 == diam.z


def test_long_axis_is_taken_on_the_slice_where_it_is_longest() -> None:
    spacing = (3.0, 1.0, 1.0)
    mask = np.zeros((6, 60, 60), dtype=bool)
    mask[1, 20:30, 20:30] = True  # 10 x 10 square: diagonal ~14 mm
    mask[4, 10:50, 28:32] = True  # 40 x 4 bar: the longest
    diam = axial_diameters(mask, spacing)
    assert diam.z == 4
    assert diam.long_mm == pytest.approx(np.hypot(40.0, 4.0), abs=1.0)
    assert diam.short_mm == pytest.approx(4.0, abs=1.0)


def test_measurements_of_a_ct_lesion_have_units_and_hu() -> None:
    spacing = (2.0, 0.7, 0.7)
    mask = _ellipsoid((16, 64, 64), spacing, 8.0, 8.0, 8.0)
    values = np.where(mask, 40, -850).astype(np.int16)
    values[mask.nonzero()[0][0], mask.nonzero()[1][0], mask.nonzero()[2][0]] = 180
    image = Image(values, spacing=spacing, modality="CT")
    measurements, diam = lesion_measurements(image, mask)
    by_name = {m.name: m for m in measurements}
    assert set(by_name) == {"long_axis_diameter", "short_axis_diameter", "volume", "mean_hu",
                            "max_hu"}
    assert by_name["long_axis_diameter"].unit == "mm"
    assert by_name["volume"].unit == "mm3"
    assert by_name["mean_hu"].unit == "[hnsf'U]"
    assert by_name["max_hu"].value == 180
    assert 40 < by_name["mean_hu"].value < 41
    assert by_name["long_axis_diameter"].value == pytest.approx(16.0, abs=0.7)
    assert by_name["volume"].value == pytest.approx(np.count_nonzero(mask) * 0.98, rel=1e-3)
    assert diam.long_mm >= diam.short_mm


def test_bad_masks_are_refused() -> None:
    with pytest.raises(ValueError, match="non-empty 3-D mask"):
        axial_diameters(np.zeros((3, 5, 5), bool), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        intensity_stats(np.zeros((2, 2, 2)), np.zeros((2, 2, 2), bool))
    image = Image(np.zeros((4, 8, 8), np.int16), modality="CT")
    with pytest.raises(ValueError, match="differs from the image"):
        lesion_measurements(image, np.ones((4, 8, 7), bool))
