"""Geometry steps keep patient coordinates exact: every one goes through the shared helper."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_check import assert_keeps_patient_coordinates, default_landmarks

from medimg import Image
from medimg.preprocess import (
    StepError,
    crop,
    crop_or_pad,
    crop_to_body,
    orientation_code,
    pad,
    reorient,
    resample,
)


# ---------------------------------------------------------------------------------------- resample
@pytest.mark.parametrize("spacing", [1.0, (2.0, 1.5, 1.5), (5.0, 0.5, 0.5)])
def test_linear_resample_keeps_positions(ct_small: Image, spacing) -> None:
    out = assert_keeps_patient_coordinates(lambda im: resample(im, spacing), ct_small)
    np.testing.assert_allclose(out.spacing, np.broadcast_to(spacing, (3,)))
    # Same field of view: size times spacing is preserved to within one new voxel.
    extent_in = np.array(ct_small.spatial_shape) * ct_small.spacing
    extent_out = np.array(out.spatial_shape) * out.spacing
    assert np.all(np.abs(extent_out - extent_in) <= out.spacing / 2 + 1e-9)


def test_bspline_resample_keeps_positions(ct_small: Image) -> None:
    part = crop(ct_small, (0, 64, 64), (8, 192, 192))
    assert_keeps_patient_coordinates(lambda im: resample(im, (2.5, 1.0, 1.0), "bspline"), part,
                                     size_mm=12.0)


def test_nearest_resample_of_a_label_map(mr_label: Image) -> None:
    # Nearest neighbour moves a boundary by up to half an output voxel along each axis, and the
    # centroid with it: the tolerance is half the output voxel's diagonal.
    new = np.array([2.0, 1.5625, 1.5625])
    out = assert_keeps_patient_coordinates(lambda im: resample(im, new), mr_label, label=True,
                                           size_mm=14.0, tol_mm=0.5 * float(np.linalg.norm(new)))
    assert out.history[-1]["params"]["interpolation"] == "nearest"
    assert set(np.unique(out.array)) <= {0, 1, 2, 3, 4}  # labels only, no blends


def test_resample_on_a_tilted_oblique_grid(ct_small: Image) -> None:
    # A rotated, sheared grid (like gantry tilt): the promise holds whatever the direction.
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = rot @ ct_small.direction
    direction[:, 0] = direction[:, 0] + 0.2 * direction[:, 1]  # shear the slice axis
    oblique = ct_small.replace(direction=direction)
    # Markers 5 slices deep, so sampling the 5 mm slices at 3 mm moves their centroid very little.
    assert_keeps_patient_coordinates(lambda im: resample(im, (3.0, 1.2, 1.2)), oblique,
                                     size_mm=25.0)


def test_resample_2d_and_colour_images(ct_slice: Image, fundus: Image) -> None:
    out = assert_keeps_patient_coordinates(lambda im: resample(im, (0.5, 0.5)), ct_slice)
    assert out.is_2d and out.spacing[0] == ct_slice.spacing[0]
    colour = assert_keeps_patient_coordinates(lambda im: resample(im, (0.5, 0.5)), fundus,
                                              size_mm=20.0)
    assert colour.channels == 3 and colour.spatial_shape == (1, 1168, 1130)


def test_linear_resample_equals_simpleitk(ct_small: Image) -> None:
    import SimpleITK as sitk

    out = resample(ct_small, (2.0, 0.7, 1.3))
    src = sitk.Cast(ct_small.to_sitk(), sitk.sitkFloat32)
    ref = sitk.Resample(src, [int(v) for v in out.spatial_shape[::-1]], sitk.Transform(),
                        sitk.sitkLinear, tuple(out.origin), out.itk_spacing, out.itk_direction,
                        float(ct_small.array.min()), sitk.sitkFloat32)
    np.testing.assert_allclose(out.array, sitk.GetArrayFromImage(ref), atol=0.01)


def test_resample_refuses_blending_labels(mr_label: Image) -> None:
    with pytest.raises(StepError, match="resample: 'linear' interpolation would invent labels"):
        resample(mr_label, 1.0, "linear")


def test_resample_rejects_bad_spacing(ct_small: Image) -> None:
    with pytest.raises(StepError, match="resample: spacing must be"):
        resample(ct_small, (1.0, -1.0, 1.0))


# ---------------------------------------------------------------------------------------- reorient
@pytest.mark.parametrize("code", ["RAS", "LPI", "PLS", "SAR", "IRP"])
def test_reorient_keeps_positions(ct_small: Image, code: str) -> None:
    out = assert_keeps_patient_coordinates(lambda im: reorient(im, code), ct_small)
    assert orientation_code(out) == code
    back = reorient(reorient(ct_small, code), "LPS")
    np.testing.assert_array_equal(back.array, ct_small.array)
    np.testing.assert_allclose(back.affine, ct_small.affine, atol=1e-9)


def test_reorient_is_canonical_for_the_ct(ct: Image) -> None:
    assert orientation_code(ct) == "LPS"
    assert reorient(ct).history[-1] == {"name": "reorient", "params": {"code": "LPS",
                                                                     "from_code": "LPS"}}


def test_reorient_a_2d_image_in_plane_only(ct_slice: Image) -> None:
    assert_keeps_patient_coordinates(lambda im: reorient(im, "RAS"), ct_slice)
    with pytest.raises(StepError, match="reorient: 'SPL' would turn the single slice"):
        reorient(ct_slice, "SPL")


def test_reorient_rejects_bad_codes(ct_small: Image) -> None:
    with pytest.raises(StepError, match="not an orientation code"):
        reorient(ct_small, "LLS")


# ---------------------------------------------------------------------------------------- crop/pad
def test_crop_pad_and_crop_or_pad_keep_positions(ct_small: Image) -> None:
    marks = default_landmarks(ct_small)
    assert_keeps_patient_coordinates(lambda im: crop(im, (2, 30, 40), (15, 250, 300)), ct_small,
                                     marks)
    assert_keeps_patient_coordinates(lambda im: pad(im, (2, 5, 7), (1, 0, 3)), ct_small, marks)
    out = assert_keeps_patient_coordinates(lambda im: crop_or_pad(im, (20, 200, 360)), ct_small,
                                           marks)
    assert out.spatial_shape == (20, 200, 360)
    assert out.history[-1]["name"] == "crop_or_pad"
    assert len(out.history) == len(ct_small.history) + 1


def test_pad_value_defaults_to_the_minimum(ct_small: Image) -> None:
    out = pad(ct_small, 1)
    assert out.array[0].max() == ct_small.array.min()


def test_crop_refuses_boxes_outside(ct_small: Image) -> None:
    with pytest.raises(StepError, match=r"crop: box .* does not lie inside"):
        crop(ct_small, (0, 0, 0), (17, 10, 10))


def test_2d_images_cannot_grow_slices(ct_slice: Image) -> None:
    with pytest.raises(StepError, match="crop_or_pad: a 2-D image .* has one slice"):
        crop_or_pad(ct_slice, (64, 256, 256))
    with pytest.raises(StepError, match="pad: padding slices onto a 2-D image"):
        pad(ct_slice, (1, 0, 0))
    assert crop_or_pad(ct_slice, (1, 256, 256)).spatial_shape == (1, 256, 256)


# ---------------------------------------------------------------------------------------- body crop
def test_crop_to_body_keeps_positions_and_drops_the_table(ct: Image) -> None:
    from medimg.preprocess import body_mask

    mask = body_mask(ct)
    inside = np.argwhere(mask[32])
    centre = inside.mean(axis=0).astype(int)
    marks = [(20, int(centre[0]), int(centre[1])), (40, int(centre[0]) - 40, int(centre[1]) + 60)]
    out = assert_keeps_patient_coordinates(crop_to_body, ct, marks)
    # The table lies below (posterior to) the body: the crop ends within ~1 cm of the skin.
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    stop_y = out.history[-1]["params"]["stop"][1]
    assert ys[-1] < stop_y <= ys[-1] + int(np.ceil(10 / ct.spacing[1]))
    table_below = np.count_nonzero(ct.array[:, stop_y:, :] > -500)
    assert table_below > 20_000  # the table's curved shell and base plate are cut away


# ---------------------------------------------------------------------------------------- the helper
def test_helper_catches_a_half_voxel_shift(ct_small: Image) -> None:
    def shifted(im: Image) -> Image:
        out = resample(im, 1.0)
        return out.replace(origin=out.origin + out.direction[:, 2] * 0.5)

    with pytest.raises(AssertionError, match="mm off"):
        assert_keeps_patient_coordinates(shifted, ct_small)


def test_helper_catches_a_flip_without_geometry(ct_small: Image) -> None:
    with pytest.raises(AssertionError, match="mm off"):
        assert_keeps_patient_coordinates(lambda im: im.replace(array=im.array[:, ::-1]), ct_small)
