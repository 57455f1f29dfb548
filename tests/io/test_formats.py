"""Reading and writing real files through medimg.io.read / write, checked against the libraries.

Every NIfTI, NRRD and MetaImage file of the shared data is compared with what nibabel and SimpleITK
report themselves, then written and read back.  Raster files are compared with Pillow and SimpleITK,
NPZ datasets with their official split counts.  Broken inputs must raise errors that name the file,
and failed writes must leave nothing behind.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

import medimg
from helpers import assert_same_geometry
from medimg.errors import InputError, UnsupportedFormatError
from medimg.image import Image
from medimg.io import datasets, itk, raster
from medimg.io.formats import read, write

NIFTI = [
    "ct/totalseg-example/example_ct.nii.gz",
    "ct/totalseg-example/example_ct_sm.nii.gz",
    "ct/totalseg-example/example_mr_sm.nii.gz",
    "ct/totalseg-example/example_seg.nii.gz",
    "ct/totalseg-example/example_seg_dicom.nii.gz",
    "ct/totalseg-example/example_seg_mr.nii.gz",
    "registration/ants/ch2.nii.gz",
    "registration/ants/function.nii.gz",
    "registration/ants/mni.nii.gz",
    "registration/ants/mnia.nii.gz",
    "registration/ants/oasis_mni.nii.gz",
    "registration/ants/surf.nii.gz",
    "registration/ants/surface.nii.gz",
]
NRRD = sorted(f"mr/pyradiomics/{n}" for n in [
    "brain1_image.nrrd", "brain1_label.nrrd", "brain2_image.nrrd", "brain2_label.nrrd",
    "breast1_image.nrrd", "breast1_label.nrrd", "lung1_label.nrrd", "lung2_label.nrrd",
    "prostate_phantom_subvolume.nrrd",
])
MHA = [f"registration/ct-2d-head/CT_2D_head_{n}.mha" for n in ("fixed", "fixed_mask", "moving")]


def _itk_geometry_matches(image: Image, path: Path, atol: float) -> None:
    """Compare with SimpleITK's own header reading (its (x, y, z) order, no medimg conversion)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    dim = reader.GetDimension()
    size = tuple(reader.GetSize())
    spacing = np.array(reader.GetSpacing())
    origin = np.array(reader.GetOrigin())
    direction = np.array(reader.GetDirection()).reshape(dim, dim)
    if dim == 2:  # a 2-D file is one slice: z == 1, unit z spacing, z origin 0
        size, spacing, origin = size + (1,), np.append(spacing, 1.0), np.append(origin, 0.0)
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    assert image.spatial_shape == size[::-1]
    np.testing.assert_allclose(image.itk_spacing, spacing, atol=atol, rtol=1e-6)
    np.testing.assert_allclose(image.origin, origin, atol=atol, rtol=1e-6)
    np.testing.assert_allclose(np.array(image.itk_direction).reshape(3, 3), direction, atol=atol)


def test_lists_cover_every_file(data_dir: Path) -> None:
    niftis = sorted(
        str(p.relative_to(data_dir))
        for folder in ("ct/totalseg-example", "registration/ants")
        for p in (data_dir / folder).glob("*.nii*")
    )
    assert niftis == sorted(NIFTI)
    assert sorted(str(p.relative_to(data_dir)) for p in (data_dir / "mr/pyradiomics").glob("*.nrrd")) == NRRD
    assert sorted(str(p.relative_to(data_dir)) for p in (data_dir / "registration/ct-2d-head").glob("*.mha")) == MHA


# ---------------------------------------------------------------------------------------- NIfTI
@pytest.mark.parametrize("name", NIFTI)
def test_nifti_matches_nibabel_and_simpleitk(data_dir: Path, tmp_path: Path, name: str) -> None:
    path = data_dir / name
    image = read(path)
    nii = nib.load(path)
    raw = np.asanyarray(nii.dataobj)  # none of these files has a scaling
    assert image.array.dtype == nii.get_data_dtype() == raw.dtype
    assert image.shape == raw.shape[::-1]
    np.testing.assert_array_equal(image.array, raw.T)
    np.testing.assert_allclose(image.ras_affine, nii.affine, atol=1e-9)
    _itk_geometry_matches(image, path, atol=1e-4)
    assert image.meta["source_format"] == "NIfTI-1"

    out = tmp_path / (path.name.removesuffix(".gz"))  # uncompressed: fast, same header and data
    write(image, out)
    back = read(out)
    assert back.array.dtype == image.array.dtype
    np.testing.assert_array_equal(back.array, image.array)
    assert_same_geometry(back, image, atol=1e-6, rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_nifti_gz_write_is_compressed_and_identical(data_dir: Path, tmp_path: Path) -> None:
    image = read(data_dir / "ct/totalseg-example/example_seg.nii.gz")
    out = tmp_path / "seg.nii.gz"
    write(image, out)
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # gzip magic
    back = read(out)
    np.testing.assert_array_equal(back.array, image.array)
    assert_same_geometry(back, image, atol=1e-6, rtol=1e-6)
    assert nib.load(out).header.get_xyzt_units()[0] == "mm"


def test_dicom_series_and_its_nifti_cover_the_same_voxels(data_dir: Path) -> None:
    # TotalSegmentator wrote example_seg_dicom.nii.gz on the grid of the DICOM series, rows flipped.
    dcm = read(data_dir / "ct/totalseg-example/dicom")
    nii = read(data_dir / "ct/totalseg-example/example_seg_dicom.nii.gz")
    assert dcm.modality == "CT" and dcm.spatial_shape == nii.spatial_shape == (20, 512, 512)
    zs, ys, xs = np.meshgrid([0, 19], [0, 511], [0, 511], indexing="ij")
    corners = np.stack([zs.ravel(), ys.ravel(), xs.ravel()], axis=1).astype(float)
    a = sorted(map(tuple, np.round(dcm.index_to_patient(corners), 3)))
    b = sorted(map(tuple, np.round(nii.index_to_patient(corners), 3)))
    np.testing.assert_allclose(a, b, atol=1e-3)


def _nifti_with_scaling(path: Path, data: np.ndarray, slope: float, inter: float) -> None:
    """A .nii file whose header holds the given scaling (nib.save would choose its own)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr.set_sform(np.diag([-2.0, -2.0, 3.0, 1.0]), code=1)
    hdr["scl_slope"], hdr["scl_inter"], hdr["vox_offset"] = slope, inter, 352
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + data.tobytes(order="F"))


def test_nifti_integer_scaling_keeps_integers(tmp_path: Path) -> None:
    data = np.array([[[0, 1], [2, 40000]]], dtype=np.uint16).T  # (x, y, z) = (2, 2, 1)
    path = tmp_path / "scaled.nii"
    _nifti_with_scaling(path, data, 1.0, -1024.0)
    proxy = nib.load(path).dataobj  # nibabel keeps a loaded file's scaling on the array proxy
    assert (proxy.slope, proxy.inter) == (1.0, -1024.0)
    image = read(path)
    assert image.array.dtype == np.int32  # uint16 - 1024 needs a signed type wider than 16 bits
    np.testing.assert_array_equal(image.array, data.T.astype(np.int32) - 1024)
    assert image.meta["scale_intercept"] == -1024.0

    _nifti_with_scaling(path, data, 0.5, 0.25)
    scaled = read(path)
    assert scaled.array.dtype.kind == "f"
    np.testing.assert_allclose(scaled.array, data.T * 0.5 + 0.25)


def test_4d_nifti_becomes_channels(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(4, 3, 2, 5)  # (x, y, z, t)
    path = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    image = read(path)
    assert image.shape == (2, 3, 4, 5) and image.channels == 5
    np.testing.assert_array_equal(image.array[1, 2, 3], data[3, 2, 1])
    # ...and an ITK-written vector NIfTI ((x, y, z, 1, c) on disk) reads the same way.
    itk_path = tmp_path / "vector.nii"
    sitk.WriteImage(image.to_sitk(), str(itk_path))
    assert nib.load(itk_path).shape == (4, 3, 2, 1, 5)
    np.testing.assert_array_equal(read(itk_path).array, image.array)


def test_int64_is_written_in_a_type_nifti_tools_read(tmp_path: Path) -> None:
    image = Image(np.array([[[0, 3], [70000, -5]]], dtype=np.int64))
    write(image, tmp_path / "labels.nii.gz")
    back = read(tmp_path / "labels.nii.gz")
    assert back.array.dtype == np.int32
    np.testing.assert_array_equal(back.array, image.array)
    huge = Image(np.array([[[0, 2**40]]], dtype=np.int64))
    with pytest.raises(UnsupportedFormatError, match=r"huge\.nii.*\.nrrd or \.mha"):
        write(huge, tmp_path / "huge.nii")
    assert list(tmp_path.iterdir()) == [tmp_path / "labels.nii.gz"]


# --------------------------------------------------------------------------------- NRRD / MHA
@pytest.mark.parametrize("name", NRRD + MHA)
def test_sitk_formats_match_simpleitk(data_dir: Path, tmp_path: Path, name: str) -> None:
    path = data_dir / name
    image = read(path)
    ref = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(ref)
    assert image.array.dtype == arr.dtype
    np.testing.assert_array_equal(image.array.reshape(arr.shape), arr)
    _itk_geometry_matches(image, path, atol=1e-12)
    for ext in (".nrrd", ".mha"):
        out = tmp_path / f"copy{ext}"
        write(image, out)
        back = read(out)
        assert back.array.dtype == image.array.dtype
        np.testing.assert_array_equal(back.array, image.array)
        assert_same_geometry(back, image, atol=1e-12)


def test_2d_mha_reads_as_one_slice(data_dir: Path) -> None:
    image = read(data_dir / MHA[0], modality="CT")
    assert image.shape == (1, 256, 256) and image.is_2d and image.modality == "CT"
    assert image.array.dtype == np.int16


def test_mhd_writes_header_and_data_together(tmp_path: Path) -> None:
    image = Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), spacing=(2.0, 0.5, 0.25),
                  origin=(1.0, 2.0, 3.0))
    write(image, tmp_path / "vol.mhd")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["vol.mhd", "vol.zraw"]
    assert "ElementDataFile = vol.zraw" in (tmp_path / "vol.mhd").read_text()
    back = read(tmp_path / "vol.mhd")
    np.testing.assert_array_equal(back.array, image.array)
    assert_same_geometry(back, image, atol=1e-12)


# ------------------------------------------------------------------------------------- raster
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_lung_seg_jpeg_and_png(data_dir: Path, n: int) -> None:
    folder = data_dir / "xray/lung-seg-2d"
    xray = read(folder / f"{n}.jpg", modality="DX")
    assert xray.shape == (1, 512, 512) and xray.array.dtype == np.uint8 and xray.channels == 1
    assert xray.modality == "DX" and xray.meta["source_format"] == "JPEG"
    np.testing.assert_array_equal(xray.array[0], np.asarray(PILImage.open(folder / f"{n}.jpg")))
    mask = read(folder / f"{n}-mask.png")
    ref = sitk.ReadImage(str(folder / f"{n}-mask.png"))
    np.testing.assert_array_equal(mask.array[0], sitk.GetArrayFromImage(ref))
    assert set(np.unique(mask.array)) <= {0, 255} and mask.array.any()
    # Geometry as SimpleITK gives a 2-D file: same grid, same patient coordinates.
    assert_same_geometry(mask, Image.from_sitk(ref), atol=0.0)


def test_drive_fundus_tiff_and_gif_masks(data_dir: Path) -> None:
    drive = data_dir / "retina/drive"
    photos = sorted(drive.glob("*/images/*.tif"))
    assert len(photos) == 40
    for path in photos[:3]:
        photo = read(path, modality="XC")
        assert photo.shape == (1, 584, 565, 3) and photo.array.dtype == np.uint8
        assert photo.channels == 3 and photo.modality == "XC"
        np.testing.assert_array_equal(photo.array[0], np.asarray(PILImage.open(path)))
        # DRIVE's TIFFs carry 0 x 0 pixels per inch: not a resolution, so spacing stays 1.0.
        np.testing.assert_array_equal(photo.spacing, [1.0, 1.0, 1.0])
        assert "spacing_source" not in photo.meta
    for sub in ("mask", "1st_manual"):
        gif = read(sorted((drive / "test" / sub).glob("*.gif"))[0])
        assert gif.shape == (1, 584, 565) and gif.array.dtype == np.uint8
        assert set(np.unique(gif.array)) == {0, 255}


def test_raster_colour_conversions(tmp_path: Path) -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read(tmp_path / "rgba.png")
    assert image.shape == (1, 4, 5, 3) and image.meta["alpha_dropped"] is True
    np.testing.assert_array_equal(image.array[0, ..., 0], 200)
    assert image.warnings[0]["code"] == "alpha_dropped"

    pal = PILImage.new("P", (3, 2))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "pal.png")
    image = read(tmp_path / "pal.png")
    assert image.shape == (1, 2, 3, 3) and image.meta["converted_from"] == "palette"
    assert image.array[0, 0, 1].tolist() == [10, 20, 30] and image.array[0, 1, 1].tolist() == [0, 0, 0]


def test_16bit_png_round_trip(tmp_path: Path) -> None:
    arr = (np.arange(12, dtype=np.uint16) * 5001).reshape(1, 3, 4)
    write(Image(arr), tmp_path / "x16.png")
    assert PILImage.open(tmp_path / "x16.png").mode.startswith("I")
    back = read(tmp_path / "x16.png")
    assert back.array.dtype == np.uint16
    np.testing.assert_array_equal(back.array, arr)


def test_rgb_png_round_trip(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (1, 6, 7, 3), dtype=np.uint8)
    write(Image(arr), tmp_path / "rgb.png")
    np.testing.assert_array_equal(read(tmp_path / "rgb.png").array, arr)


@pytest.mark.parametrize(("unit", "res", "spacing"), [
    (3, 40.0, 0.25),   # 40 pixels per cm -> 0.25 mm
    (2, 254.0, 0.1),   # 254 dpi -> 0.1 mm
    (1, 254.0, 1.0),   # no unit: not used
])
def test_tiff_resolution_gives_spacing_only_with_a_unit(
    tmp_path: Path, unit: int, res: float, spacing: float
) -> None:
    path = tmp_path / "scan.tif"
    PILImage.fromarray(np.zeros((3, 4), np.uint8)).save(
        path, tiffinfo={282: res, 283: res / 2, 296: unit}
    )
    image = read(path)
    if unit == 1:
        np.testing.assert_array_equal(image.spacing, [1.0, 1.0, 1.0])
        assert "spacing_source" not in image.meta
    else:
        np.testing.assert_allclose(image.spacing, [1.0, 2 * spacing, spacing])
        assert "TIFF" in image.meta["spacing_source"]


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((16, 32), np.uint8)
    arr[:, :8] = 255
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    PILImage.fromarray(arr).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    image = read(tmp_path / "photo.jpg", modality="XC")
    assert image.shape == (1, 32, 16) and image.meta["exif_orientation_applied"] == 6
    assert image.array[0, :8].mean() > 200 and image.array[0, -8:].mean() < 50


def test_png_write_rules(tmp_path: Path) -> None:
    ct = Image(np.linspace(-1000, 1000, 3 * 4 * 5).reshape(3, 4, 5).astype(np.float32))
    with pytest.raises(UnsupportedFormatError, match=r"ct\.png: .*float32.*window") as err:
        write(ct, tmp_path / "ct.png", slice_index=1)
    assert isinstance(err.value, InputError)
    with pytest.raises(UnsupportedFormatError, match=r"3 slices.*slice_index"):
        write(ct, tmp_path / "ct.png", window=(-1000, 1000))
    assert list(tmp_path.iterdir()) == []

    write(ct, tmp_path / "ct.png", window=(-1000, 1000), slice_index=1)
    got = read(tmp_path / "ct.png").array[0]
    want = np.rint(np.clip((ct.array[1] + 1000) / 2000, 0, 1) * 255)
    np.testing.assert_array_equal(got, want)

    mask = Image(np.array([[[True, False]]]))
    write(mask, tmp_path / "mask.png")
    assert read(tmp_path / "mask.png").array.tolist() == [[[255, 0]]]


# ---------------------------------------------------------------------------------------- NPZ
@pytest.mark.parametrize(("name", "counts", "test_positive"), [
    ("xray/pneumoniamnist.npz", {"train": 4708, "val": 524, "test": 624}, 390),
    ("us/breastmnist.npz", {"train": 546, "val": 78, "test": 156}, 114),
])
def test_medmnist_official_splits(
    data_dir: Path, name: str, counts: dict[str, int], test_positive: int
) -> None:
    path = data_dir / name
    assert datasets.list_splits(path) == ["train", "val", "test"]
    for split, n in counts.items():
        ds = datasets.load_npz(path, split)
        assert len(ds) == n and ds.labels.shape == (n, 1) and ds.split == split
        assert set(np.unique(ds.labels)) == {0, 1}
    test = datasets.load_npz(path, "test", modality="US")
    assert int(test.labels.sum()) == test_positive
    image = test.image(5)
    assert image.shape == (1, 28, 28) and image.array.dtype == np.uint8 and image.modality == "US"
    np.testing.assert_array_equal(image.array[0], np.load(path)["test_images"][5])
    assert image.meta["label"] == test.labels[5].tolist() and image.meta["split"] == "test"


def test_pneumoniamnist_train_class_balance(data_dir: Path) -> None:
    train = datasets.load_npz(data_dir / "xray/pneumoniamnist.npz", "train")
    assert np.bincount(train.labels.ravel()).tolist() == [1214, 3494]  # MANIFEST.md


def test_npz_errors_name_the_file(data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / "us/breastmnist.npz"
    with pytest.raises(InputError, match=r"breastmnist\.npz: has no split 'dev'; choose one of train, val, test"):
        datasets.load_npz(path, "dev")
    with pytest.raises(InputError, match=r"breastmnist\.npz: is an image dataset.*load_npz"):
        read(path)
    fake = tmp_path / "fake.npz"
    fake.write_text("not a zip")
    with pytest.raises(InputError, match=r"fake\.npz: not an NPZ file"):
        datasets.load_npz(fake, "train")
    with pytest.raises(InputError, match=r"fake\.npz"):
        read(fake)


def test_voxelmorph_volume_npz(data_dir: Path) -> None:
    path = data_dir / "mr/voxelmorph-t1/test_scan.npz"
    vol = read(path, modality="MR")
    assert vol.shape == (160, 192, 224) and vol.array.dtype == np.float64
    assert vol.meta["npz_key"] == "vol" and vol.meta["npz_other_keys"] == ["seg"]
    assert vol.warnings[0]["code"] == "no_geometry"
    seg = datasets.load_npz_volume(path, "seg", spacing=(1.0, 1.0, 1.0))
    labels = np.unique(seg.array)
    assert len(labels) == 46 and labels[0] == 0  # background + 45 FreeSurfer labels
    assert_same_geometry(seg, vol, atol=0.0)
    with pytest.raises(InputError, match=r"test_scan\.npz: has no array 'mask' \(arrays: vol, seg\)"):
        datasets.load_npz_volume(path, "mask")


# ------------------------------------------------------------------------------- dispatch
def test_dicom_detected_by_content(data_dir: Path, tmp_path: Path) -> None:
    first = sorted((data_dir / "ct/totalseg-example/dicom").iterdir())[0]
    shutil.copy(first, tmp_path / "slice_without_extension")
    image = read(tmp_path / "slice_without_extension")
    assert image.modality == "CT" and image.shape == (1, 512, 512)


@pytest.mark.parametrize(("name", "content", "pattern"), [
    ("empty.nii.gz", b"", r"empty\.nii\.gz: file is empty"),
    ("empty.png", b"", r"empty\.png: file is empty"),
    ("notes.nii.gz", b"this is a text file\n" * 20, r"notes\.nii\.gz: not a readable NIfTI"),
    ("notes.nrrd", b"this is a text file\n" * 20, r"notes\.nrrd: not a readable NRRD"),
    ("notes.mha", b"this is a text file\n" * 20, r"notes\.mha: not a readable MetaImage"),
    ("notes.png", b"this is a text file\n" * 20, r"notes\.png: not an image file"),
])
def test_bad_files_raise_input_errors(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=pattern):
        read(path)


def test_truncated_files(data_dir: Path, tmp_path: Path) -> None:
    for name in ("ct/totalseg-example/example_seg.nii.gz", "mr/pyradiomics/breast1_image.nrrd",
                 "registration/ct-2d-head/CT_2D_head_fixed.mha"):
        src = (data_dir / name).read_bytes()
        path = tmp_path / Path(name).name
        path.write_bytes(src[: len(src) // 2])
        with pytest.raises(InputError, match=re.escape(str(path))):
            read(path)
    jpeg = (data_dir / "xray/lung-seg-2d/1.jpg").read_bytes()
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + jpeg[:50])
    with pytest.raises(InputError, match=r"cut\.png"):
        read(tmp_path / "cut.png")


def test_gzip_of_a_text_file_named_nii_gz(tmp_path: Path) -> None:
    path = tmp_path / "report.nii.gz"
    path.write_bytes(gzip.compress(b"Impression: no acute findings.\n"))
    with pytest.raises(InputError, match=r"report\.nii\.gz: not a readable NIfTI"):
        read(path)


def test_unsupported_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "table.xyz"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(UnsupportedFormatError) as err:
        read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: unsupported file format ('.xyz', and not DICOM)")
    assert ".nii.gz" in message and ".png" in message and "\n" not in message
    with pytest.raises(InputError, match=r"nothing\.nii: no such file"):
        read(tmp_path / "nothing.nii")
    with pytest.raises(InputError, match=r"series='1' applies to DICOM"):
        nifti = tmp_path / "x.nii"
        write(Image(np.zeros((2, 2, 2), np.uint8)), nifti)
        read(nifti, series="1")
    with pytest.raises(UnsupportedFormatError, match=r"out\.jpg: cannot write '\.jpg'; write one of"):
        write(Image(np.zeros((1, 2, 2), np.uint8)), tmp_path / "out.jpg")
    assert not (tmp_path / "out.jpg").exists()


def test_package_exports_the_dispatchers() -> None:
    assert medimg.read is read and medimg.write is write


# ------------------------------------------------------------------------------ atomic writes
def test_failed_nifti_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_fail(img: object, filename: str) -> None:
        Path(filename).write_bytes(b"\x1f\x8b half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib, "save", half_then_fail)
    with pytest.raises(InputError, match=r"ct\.nii\.gz: writing NIfTI failed \(No space left on device\)"):
        write(Image(np.zeros((2, 3, 4), np.int16)), tmp_path / "ct.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = Image(np.full((2, 3, 4), 7, np.int16))
    write(old, tmp_path / "vol.mhd")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def partial(img: object, filename: str, useCompression: bool = False) -> None:  # noqa: N803
        Path(filename).write_text("ObjectType = Image\n")
        Path(filename).with_suffix(".zraw").write_bytes(b"partial")
        raise RuntimeError("ITK ERROR: MetaImageIO(0x1): write failed: disk quota exceeded")

    monkeypatch.setattr(sitk, "WriteImage", partial)
    with pytest.raises(InputError, match=r"vol\.mhd: writing MetaImage failed \(write failed"):
        write(Image(np.zeros((2, 3, 4), np.int16)), tmp_path / "vol.mhd")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    np.testing.assert_array_equal(read(tmp_path / "vol.mhd").array, old.array)


def test_writers_replace_existing_files(tmp_path: Path) -> None:
    path = tmp_path / "img.nrrd"
    write(Image(np.zeros((1, 2, 2), np.uint8)), path)
    write(Image(np.ones((1, 2, 2), np.uint8)), path)
    assert read(path).array.sum() == 4
    assert [p.name for p in tmp_path.iterdir()] == ["img.nrrd"]


def test_write_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"img\.png: the folder .* does not exist"):
        write(Image(np.zeros((1, 2, 2), np.uint8)), tmp_path / "missing" / "img.png")


def test_module_writers_directly(tmp_path: Path) -> None:
    image = Image(np.arange(8, dtype=np.uint8).reshape(2, 2, 2))
    itk.write_itk(image, tmp_path / "a.nii")
    raster.write_png(image, tmp_path / "a.png", slice_index=1)
    np.testing.assert_array_equal(raster.read_raster(tmp_path / "a.png").array[0], image.array[1])
    np.testing.assert_array_equal(itk.read_itk(tmp_path / "a.nii").array, image.array)


def test_dicom_only_options_are_ignored_for_single_files(tmp_path: Path) -> None:
    # The CLI passes progress= (and callers may pass workers=) whatever the input is.
    calls: list[tuple[int, int]] = []
    image = Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2))
    write(image, tmp_path / "a.nrrd")
    back = read(tmp_path / "a.nrrd", series=None, progress=lambda d, t: calls.append((d, t)),
                workers=1, modality="MR")
    assert back.modality == "MR" and calls == []
    np.testing.assert_array_equal(back.array, image.array)
