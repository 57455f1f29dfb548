"""Series integrity: modified copies of a real CT series (made in tmp_path with pydicom) must load with
the named warning and honest geometry, or be refused with a SeriesError.

The geometry promise checked for every case: each acquired slice that is part of the volume is a plane
of the array, copied exactly, and ``index_to_patient((k, 0, 0))`` of that plane is the slice's Image
Position (Patient).  Only the planes listed in ``meta['interpolated_slices']`` are computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medimg.errors import SeriesError
from medimg.image import Image
from medimg.io.dicom import index, read_dicom

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

N = 12  # slices copied from the 64 of the real series (20..31, the lungs)
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]


@pytest.fixture(scope="module")
def ct_slices(ct_series: Path) -> list[Path]:
    """N consecutive slices of the real series, ordered by position (checked with pydicom here)."""
    by_z = sorted(ct_series.iterdir(),
                  key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    return by_z[20:20 + N]


Edit = Callable[[int, pydicom.Dataset], None]


def write_copies(folder: Path, sources: list[Path], edit: Edit | None = None,
                 names: list[str] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, src in enumerate(sources):
        ds = pydicom.dcmread(src)
        if edit is not None:
            edit(k, ds)
        path = folder / (names[k] if names else f"{k:03d}.dcm")
        ds.save_as(path)
        out.append(path)
    return out


def new_instance(ds: pydicom.Dataset, instance_number: int) -> None:
    """Make ``ds`` another instance of the same series."""
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.InstanceNumber = instance_number


def hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def codes(image: Image) -> list[str]:
    return [w["code"] for w in image.warnings]


def assert_geometry_promise(image: Image, files: list[Path]) -> None:
    """Every file given is an exact plane of the array at its exact patient position, and the volume
    holds no other acquired plane: the planes that are not these files are listed as interpolated."""
    interpolated = set(image.meta.get("interpolated_slices", []))
    planes = set()
    for path in files:
        ds = pydicom.dcmread(path)
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        k_cont = image.patient_to_index(ipp)
        k = int(round(float(k_cont[0])))
        assert 0 <= k < image.shape[0], f"{path.name} lies outside the volume"
        np.testing.assert_allclose(k_cont, [k, 0.0, 0.0], atol=1e-6, err_msg=path.name)
        np.testing.assert_allclose(image.index_to_patient((k, 0, 0)), ipp, atol=1e-3,
                                   err_msg=path.name)
        assert k not in interpolated, f"{path.name} (plane {k}) is listed as interpolated"
        assert np.array_equal(image.array[k], hu(ds)), f"plane {k} is not an exact copy of {path.name}"
        planes.add(k)
    assert len(planes) == len(files), "two acquired slices landed on one plane"
    assert planes | interpolated == set(range(image.shape[0]))
    assert not planes & interpolated


def z_of(path: Path) -> float:
    return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])


# ------------------------------------------------------------------------------ clean cases
def test_order_is_by_position_not_names_or_instance_numbers(tmp_path: Path,
                                                            ct_slices: list[Path]) -> None:
    rng = np.random.default_rng(7)
    perm = rng.permutation(N)
    assert not np.array_equal(perm, np.arange(N))

    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.InstanceNumber = int(perm[k]) + 1

    names = [f"img{perm[(k + 5) % N]:02d}.dcm" for k in range(N)]  # names in another random order
    files = write_copies(tmp_path / "s", ct_slices, edit, names)
    image = read_dicom(tmp_path / "s")
    assert codes(image) == []
    assert image.shape == (N, 512, 512)
    assert image.spacing[0] == pytest.approx(5.0)
    by_z = sorted(files, key=z_of)
    assert image.meta["sop_instance_uids"] == [
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in by_z]
    assert_geometry_promise(image, files)
    # Sorting by file name or by Instance Number would have given another order.
    assert sorted(files, key=lambda p: p.name) != by_z
    assert sorted(files, key=lambda p: pydicom.dcmread(p).InstanceNumber) != by_z


# ------------------------------------------------------------------------------ warnings
def test_missing_slice_is_interpolated_and_listed(tmp_path: Path, ct_slices: list[Path]) -> None:
    kept = ct_slices[:5] + ct_slices[6:]  # slice 5 of 12 lost in transfer
    files = write_copies(tmp_path / "s", kept)
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["missing_slices"]
    assert image.shape == (N, 512, 512)
    assert image.spacing[0] == pytest.approx(5.0)
    assert image.meta["interpolated_slices"] == [5]
    assert image.array.dtype == np.float32
    # Halfway between its neighbours: the mean of the two acquired planes.
    np.testing.assert_allclose(image.array[5], (image.array[4] + image.array[6]) / 2, atol=1e-3)
    assert not np.array_equal(image.array[5], hu(pydicom.dcmread(ct_slices[5])))
    assert_geometry_promise(image, files)


def test_two_missing_slices_are_interpolated_linearly(tmp_path: Path, ct_slices: list[Path]) -> None:
    kept = ct_slices[:3] + ct_slices[5:]
    files = write_copies(tmp_path / "s", kept)
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["missing_slices"]
    assert image.meta["interpolated_slices"] == [3, 4]
    a, b = image.array[2].astype(np.float64), image.array[5].astype(np.float64)
    np.testing.assert_allclose(image.array[3], a + (b - a) / 3, atol=1e-2)
    np.testing.assert_allclose(image.array[4], a + 2 * (b - a) / 3, atol=1e-2)
    assert_geometry_promise(image, files)


def test_uneven_spacing_keeps_every_acquired_slice(tmp_path: Path, ct_slices: list[Path]) -> None:
    """Gaps of 5 mm and one of 2.5 mm: a 2.5 mm grid holds every slice; planes between are computed."""

    def edit(k: int, ds: pydicom.Dataset) -> None:
        if k >= 7:
            ipp = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] - 2.5]

    files = write_copies(tmp_path / "s", ct_slices, edit)
    z = sorted(z_of(p) for p in files)
    assert sorted(np.round(np.diff(z), 3).tolist()) == [2.5] + [5.0] * (N - 2)
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["uneven_spacing"]
    assert image.spacing[0] == pytest.approx(2.5)
    assert image.shape[0] == round((z[-1] - z[0]) / 2.5) + 1 == 2 * N - 2
    assert len(image.meta["interpolated_slices"]) == image.shape[0] - N
    assert_geometry_promise(image, files)


def test_uneven_spacing_without_common_step_is_resampled_and_says_so(
        tmp_path: Path, ct_slices: list[Path]) -> None:
    """Gaps of 5 mm and one of 3.7 mm: no grid holds every slice; the volume is resampled at 5 mm and
    every plane that is not an exact acquired slice is listed."""

    def edit(k: int, ds: pydicom.Dataset) -> None:
        if k >= 7:
            ipp = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] - 1.3]

    files = write_copies(tmp_path / "s", ct_slices, edit)
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["uneven_spacing"]
    assert "not kept as they are" in image.warnings[0]["message"]
    assert image.spacing[0] == pytest.approx(5.0)
    on_grid = files[:7]  # the slices before the short gap sit on the 5 mm grid from the first
    off_grid = files[7:]
    assert image.meta["interpolated_slices"] == list(range(7, image.shape[0]))
    for k, path in enumerate(on_grid):
        assert np.array_equal(image.array[k], hu(pydicom.dcmread(path)))
        np.testing.assert_allclose(image.index_to_patient((k, 0, 0)),
                                   [float(v) for v in pydicom.dcmread(path).ImagePositionPatient],
                                   atol=1e-3)
    # The last slice (at 53.7 mm from the first) is not a plane of the 5 mm grid.
    last = image.patient_to_index([float(v) for v in pydicom.dcmread(off_grid[-1]).ImagePositionPatient])
    assert abs(last[0] - round(last[0])) > 0.1


def test_gantry_tilt_keeps_exact_sheared_geometry(tmp_path: Path, ct_slices: list[Path]) -> None:
    tilt_deg = 15.0
    dy = 5.0 * math.tan(math.radians(tilt_deg))

    def edit(k: int, ds: pydicom.Dataset) -> None:
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1] + k * dy, ipp[2]]
        ds.GantryDetectorTilt = tilt_deg

    files = write_copies(tmp_path / "s", ct_slices, edit)
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["gantry_tilt"]
    assert "15.00 degrees" in image.warnings[0]["message"]
    assert image.shape == (N, 512, 512)
    assert "interpolated_slices" not in image.meta  # nothing resampled
    np.testing.assert_allclose(image.spacing[0], 5.0 / math.cos(math.radians(tilt_deg)), rtol=1e-6)
    axis = np.array([0.0, dy, 5.0]) / math.hypot(dy, 5.0)
    np.testing.assert_allclose(image.direction[:, 0], axis, atol=1e-9)
    np.testing.assert_allclose(image.direction[:, 1:], [[0, 1], [1, 0], [0, 0]], atol=1e-9)
    for k, path in enumerate(files):  # written in position order
        ipp = [float(v) for v in pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient]
        np.testing.assert_allclose(image.index_to_patient((k, 0, 0)), ipp, atol=1e-3)
        # The far corner of each plane too: the in-plane axes are not tilted.
        corner = np.array(ipp) + 511 * image.spacing[1] * np.array([1.0, 1.0, 0.0])
        np.testing.assert_allclose(image.index_to_patient((k, 511, 511)), corner, atol=1e-3)
    assert_geometry_promise(image, files)


def test_duplicate_positions_keep_the_lowest_instance_number(tmp_path: Path,
                                                             ct_slices: list[Path]) -> None:
    files = write_copies(tmp_path / "s", ct_slices)
    dup = pydicom.dcmread(ct_slices[4])
    original_number = int(dup.InstanceNumber)
    new_instance(dup, original_number + 1000)
    dup.PixelData = (dup.pixel_array + 100).astype(dup.pixel_array.dtype).tobytes()
    dup.save_as(tmp_path / "s" / "dup.dcm")

    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["duplicate_positions"]
    assert image.shape == (N, 512, 512)
    assert np.array_equal(image.array[4], hu(pydicom.dcmread(ct_slices[4])))
    assert str(dup.SOPInstanceUID) not in image.meta["sop_instance_uids"]
    assert_geometry_promise(image, files)


def test_mixed_orientation_minority_is_left_out(tmp_path: Path, ct_slices: list[Path]) -> None:
    files = write_copies(tmp_path / "s", ct_slices)
    for j, src in enumerate(ct_slices[:2]):
        ds = pydicom.dcmread(src)
        new_instance(ds, 500 + j)
        ds.ImageOrientationPatient = CORONAL
        ds.ImagePositionPatient = [-250.0, -50.0 + 10 * j, -200.0]
        ds.save_as(tmp_path / "s" / f"coronal{j}.dcm")
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["mixed_orientation"]
    assert "2 slice(s)" in image.warnings[0]["message"]
    assert image.shape == (N, 512, 512)
    np.testing.assert_allclose(image.direction[:, 0], [0, 0, 1], atol=1e-9)
    assert_geometry_promise(image, files)


def test_mixed_size_minority_is_left_out(tmp_path: Path, ct_slices: list[Path]) -> None:
    files = write_copies(tmp_path / "s", ct_slices)
    top = z_of(files[-1])
    for j, src in enumerate(ct_slices[:2]):
        ds = pydicom.dcmread(src)
        new_instance(ds, 600 + j)
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:256, :256]).tobytes()
        ds.Rows, ds.Columns = 256, 256
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], top + 5.0 * (j + 1)]  # would extend the stack
        ds.save_as(tmp_path / "s" / f"small{j}.dcm")
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["mixed_size"]
    assert "256x256" in image.warnings[0]["message"]
    assert image.shape == (N, 512, 512)
    assert_geometry_promise(image, files)


def test_localizer_is_excluded(tmp_path: Path, ct_slices: list[Path]) -> None:
    files = write_copies(tmp_path / "s", ct_slices)
    ds = pydicom.dcmread(ct_slices[0])
    new_instance(ds, 0)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = CORONAL
    ds.ImagePositionPatient = [-250.0, 0.0, 0.0]
    ds.save_as(tmp_path / "s" / "scout.dcm")
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["localizer_excluded"]  # not also mixed_orientation
    assert image.shape == (N, 512, 512)
    assert str(ds.SOPInstanceUID) not in image.meta["sop_instance_uids"]
    assert_geometry_promise(image, files)


def test_second_echo_is_another_volume(tmp_path: Path, ct_slices: list[Path]) -> None:
    def first(k: int, ds: pydicom.Dataset) -> None:
        ds.EchoNumbers = 1

    def second(k: int, ds: pydicom.Dataset) -> None:
        new_instance(ds, 100 + k)
        ds.EchoNumbers = 2
        ds.PixelData = (ds.pixel_array // 2).astype(ds.pixel_array.dtype).tobytes()

    files = write_copies(tmp_path / "s", ct_slices, first)
    write_copies(tmp_path / "s", ct_slices, second, [f"echo2_{k:03d}.dcm" for k in range(N)])
    image = read_dicom(tmp_path / "s")
    assert codes(image) == ["multiple_volumes"]
    assert image.shape == (N, 512, 512)
    assert_geometry_promise(image, files)


# ------------------------------------------------------------------------------ refused
def test_even_split_between_orientations_is_refused(tmp_path: Path, ct_slices: list[Path]) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        if k % 2:
            ds.ImageOrientationPatient = CORONAL
            ds.ImagePositionPatient = [-250.0, -100.0 + 5 * k, -200.0]

    write_copies(tmp_path / "s", ct_slices, edit)
    assert index(tmp_path / "s").errors == []
    with pytest.raises(SeriesError) as err:
        read_dicom(tmp_path / "s")
    text = str(err.value)
    assert "split evenly" in text and "6 and 6" in text
    assert str(tmp_path / "s") in text


def test_slices_off_one_line_are_refused(tmp_path: Path, ct_slices: list[Path]) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        if k >= 6:  # a second stack shifted 20 mm to the left
            ipp = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [ipp[0] + 20.0, ipp[1], ipp[2]]

    write_copies(tmp_path / "s", ct_slices, edit)
    with pytest.raises(SeriesError) as err:
        read_dicom(tmp_path / "s")
    assert "do not lie on one line" in str(err.value)
    assert str(tmp_path / "s") in str(err.value)


def test_huge_gap_is_refused_not_filled(tmp_path: Path, ct_slices: list[Path]) -> None:
    """Two stacks 500 mm apart: filling the gap would invent 100 planes for 12 acquired ones."""

    def edit(k: int, ds: pydicom.Dataset) -> None:
        if k >= 6:
            ipp = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 500.0]

    write_copies(tmp_path / "s", ct_slices, edit)
    with pytest.raises(SeriesError) as err:
        read_dicom(tmp_path / "s")
    assert "gaps are too large" in str(err.value)
