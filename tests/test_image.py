"""Property-based tests of Image geometry: every conversion keeps voxels and patient coordinates.

Random shapes, dtypes, spacings, origins and directions (proper and improper rotations, and sheared
gantry-tilt grids) go through SimpleITK, nibabel, NIfTI/NRRD/MetaImage files, torch and MONAI and
must come back with identical voxels and the same geometry; index <-> patient mappings must agree
with SimpleITK's and nibabel's own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import assert_same_geometry
from medimg.image import Image
from medimg.io.itk import read_itk, write_itk

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.float64]
FLIP_XY = np.array([-1.0, -1.0, 1.0])


# ------------------------------------------------------------------------------------ strategies
@st.composite
def rotations(draw: st.DrawFn) -> np.ndarray:
    """A random 3x3 orthonormal matrix, proper or improper (a reflection is a valid LPS grid)."""
    q = np.array(draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4)))
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    w, x, y, z = q / np.linalg.norm(q)
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    if draw(st.booleans()):
        rot[:, draw(st.integers(0, 2))] *= -1
    return rot


@st.composite
def gantry_tilts(draw: st.DrawFn) -> np.ndarray:
    """A sheared direction: the slice axis stays along the table while the image plane is tilted.

    Columns (z, y, x) of an axial CT tilted by t about the patient x axis are (0, 0, 1),
    (0, cos t, sin t) and (1, 0, 0); the whole grid may then be rotated.
    """
    t = np.deg2rad(draw(st.floats(-30, 30).filter(lambda v: abs(v) > 1)))
    sheared = np.array([[0.0, 0.0, 1.0], [0.0, np.cos(t), 0.0], [1.0, np.sin(t), 0.0]])
    return draw(rotations()) @ sheared if draw(st.booleans()) else sheared


@st.composite
def images(draw: st.DrawFn, sheared: bool | None = None, channels: bool = True,
           dtypes: list[type] | None = None) -> Image:
    """A small random Image: shape, dtype, values, spacing, origin and direction."""
    shape = [draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))]
    if channels and draw(st.booleans()):
        shape.append(draw(st.integers(2, 3)))
    dtype = np.dtype(draw(st.sampled_from(dtypes or DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        arr = rng.normal(0, 1000, size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    spacing = draw(st.lists(st.floats(0.05, 10), min_size=3, max_size=3))
    origin = draw(st.lists(st.floats(-500, 500), min_size=3, max_size=3))
    tilt = draw(st.booleans()) if sheared is None else sheared
    direction = draw(gantry_tilts()) if tilt else draw(rotations())
    return Image(arr, spacing=spacing, origin=origin, direction=direction)


def _float32_atol(image: Image, max_index: float = 10.0) -> float:
    """Error bound for patient points computed from a float32 affine (NIfTI headers)."""
    magnitude = np.abs(image.origin).sum() + 3 * max_index * image.spacing.max()
    return float(1e-6 * (1.0 + magnitude))


def _assert_same_voxels(got: Image, want: Image) -> None:
    assert got.array.dtype == want.array.dtype, f"{got.array.dtype} != {want.array.dtype}"
    np.testing.assert_array_equal(got.array, want.array)


# --------------------------------------------------------------------------------- round trips
@FAST
@given(images())
def test_sitk_round_trip_is_exact(image: Image) -> None:
    back = Image.from_sitk(image.to_sitk())
    _assert_same_voxels(back, image)
    assert_same_geometry(back, image, atol=1e-9)


@FAST
@given(images())
def test_nibabel_round_trip(image: Image) -> None:
    back = Image.from_nibabel(image.to_nibabel())
    _assert_same_voxels(back, image)
    # in memory the float64 affine is kept: exact
    assert_same_geometry(back, image, atol=1e-9)


def test_nibabel_round_trip_in_memory_is_float64_exact() -> None:
    image = Image(np.zeros((2, 2, 2), np.int16), spacing=(1.5333580721425673, 1.0, 1.0),
                  origin=(0.1, -0.2, 123.456789))
    back = Image.from_nibabel(image.to_nibabel())
    assert_same_geometry(back, image, atol=1e-9)


@FILES
@given(images(), st.sampled_from([".nii", ".nii.gz"]))
def test_nifti_file_round_trip(image: Image, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"img{ext}"
        write_itk(image, path)
        back = read_itk(path)
    _assert_same_voxels(back, image)
    # NIfTI-1 stores its affine as float32: error up to ~1e-7 of the values' magnitude.
    assert_same_geometry(back, image, atol=1e-6, rtol=1e-6)


@FILES
@given(images(), st.sampled_from([".nrrd", ".mha", ".mhd", ".nhdr"]))
def test_nrrd_and_metaimage_file_round_trip_is_exact(image: Image, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"img{ext}"
        write_itk(image, path)
        back = read_itk(path)
    _assert_same_voxels(back, image)
    assert_same_geometry(back, image, atol=1e-9)


@FAST
@given(images())
def test_torch_round_trip_keeps_voxels(image: Image) -> None:
    tensor = image.to_tensor()
    assert tuple(tensor.shape) == (image.channels, *image.spatial_shape)
    back = Image.from_tensor(tensor, like=image)
    np.testing.assert_array_equal(back.array, image.array)
    # torch has no general uint16: to_tensor widens it to int32 (documented), all else is kept.
    expected = np.int32 if image.array.dtype == np.uint16 else image.array.dtype
    assert back.array.dtype == expected
    assert_same_geometry(back, image, atol=1e-12)


@FAST
@given(images())
def test_metatensor_round_trip(image: Image) -> None:
    mt = image.to_metatensor()
    # MONAI's own reading of the affine: voxel sizes in (x, y, z) order.
    np.testing.assert_allclose(np.asarray(mt.pixdim), image.spacing[::-1], rtol=1e-9)
    back = Image.from_metatensor(mt)
    np.testing.assert_array_equal(back.array, image.array)
    assert_same_geometry(back, image, atol=1e-9)


# ------------------------------------------------------------------------------- coordinates
index_points = st.lists(
    st.tuples(st.floats(-5, 10), st.floats(-5, 10), st.floats(-5, 10)), min_size=1, max_size=5
)


@FAST
@given(images(channels=False), index_points)
def test_index_and_patient_are_inverse(image: Image, points: list[tuple[float, float, float]]) -> None:
    idx = np.array(points)
    lps = image.index_to_patient(idx)
    np.testing.assert_allclose(image.patient_to_index(lps), idx, atol=1e-8)


@FAST
@given(images(channels=False), index_points)
def test_index_to_patient_agrees_with_simpleitk(
    image: Image, points: list[tuple[float, float, float]]
) -> None:
    img = image.to_sitk()
    for z, y, x in points:
        want = img.TransformContinuousIndexToPhysicalPoint((x, y, z))  # SimpleITK: (x, y, z)
        np.testing.assert_allclose(image.index_to_patient([z, y, x]), want, atol=1e-9)


@FILES
@given(images(sheared=False, channels=False, dtypes=[np.int16]), index_points)
def test_index_to_patient_agrees_with_nibabel_affine_of_an_itk_written_file(
    image: Image, points: list[tuple[float, float, float]]
) -> None:
    # SimpleITK writes the file, nibabel reads it: neither side uses medimg's conversions.
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "itk.nii")
        sitk.WriteImage(image.to_sitk(), path)
        nii = nib.load(path)
        assert nii.shape[:3] == image.spatial_shape[::-1]  # nibabel: (i, j, k) = (x, y, z)
        affine = nii.affine.copy()
    for z, y, x in points:
        ras = nib.affines.apply_affine(affine, [x, y, z])
        np.testing.assert_allclose(
            image.index_to_patient([z, y, x]), ras * FLIP_XY, atol=_float32_atol(image)
        )


@FAST
@given(images(channels=False), index_points)
def test_ras_affine_is_lps_affine_with_x_and_y_flipped(
    image: Image, points: list[tuple[float, float, float]]
) -> None:
    nii_affine = image.to_nibabel().affine  # as nibabel reports it (float32 header values)
    for z, y, x in points:
        lps = image.index_to_patient([z, y, x])
        ras = nib.affines.apply_affine(image.ras_affine, [x, y, z])  # nibabel: (i, j, k) = (x, y, z)
        np.testing.assert_allclose(ras * FLIP_XY, lps, atol=1e-9)
        ras_nib = nib.affines.apply_affine(nii_affine, [x, y, z])
        np.testing.assert_allclose(ras_nib * FLIP_XY, lps, atol=_float32_atol(image))


# Axial slices in the (z, y, x) column convention: z -> superior, y -> posterior, x -> left.
AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_axial_ct_example_by_hand() -> None:
    # A head-first-supine axial CT: x to the patient's left, y to posterior, slices to superior.
    image = Image(np.zeros((10, 4, 5), np.int16), spacing=(2.5, 0.7, 0.8),
                  origin=(-100.0, -50.0, 300.0), direction=AXIAL)
    np.testing.assert_allclose(image.index_to_patient([2, 3, 4]), [-96.8, -47.9, 305.0])
    ras = nib.affines.apply_affine(image.ras_affine, [4, 3, 2])
    np.testing.assert_allclose(ras, [96.8, 47.9, 305.0])
    assert image.to_sitk().GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_default_direction_is_simpleitks_identity() -> None:
    default = Image(np.zeros((2, 3, 4), np.uint8))
    from_itk = Image.from_sitk(sitk.Image([4, 3, 2], sitk.sitkUInt8))
    np.testing.assert_array_equal(default.direction, from_itk.direction)


@FAST
@given(images(sheared=True, channels=False, dtypes=[np.int16]))
def test_sheared_grid_keeps_its_shear_and_voxel_volume(image: Image) -> None:
    d = image.direction
    assert abs(float(d[:, 0] @ d[:, 1])) > 1e-3  # really sheared, not a rotation
    back = Image.from_sitk(image.to_sitk())
    assert back.voxel_volume == pytest.approx(image.voxel_volume, rel=1e-12)
    assert_same_geometry(back, image, atol=1e-9)


def test_from_nibabel_applies_the_files_scaling(tmp_path: Path) -> None:
    data = np.array([[[0, 1], [2, 40000]]], dtype=np.uint16).T
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr.set_sform(np.eye(4), code=1)
    hdr["scl_slope"], hdr["scl_inter"], hdr["vox_offset"] = 0.5, -1024.0, 352
    path = tmp_path / "scaled.nii"
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + data.tobytes(order="F"))
    image = Image.from_nibabel(nib.load(path))
    np.testing.assert_allclose(image.array, data.T * 0.5 - 1024.0)
