"""Reading DICOM: transfer syntaxes, every pydicom-data file, the native fast path, real CT series.

Expected values come from pydicom (and nibabel for the reference NIfTI), never from medimg itself:
pydicom decodes, the test applies the documented transforms (rescale, MONOCHROME1 inversion, palette
LUT; YBR -> RGB is pydicom's default) and medimg must give the same voxels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import data_store
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medimg.errors import SeriesSelectionError
from medimg.io.dicom import index, read_dicom
from medimg.io.dicom_index import NATIVE_TRANSFER_SYNTAXES, read_record
from medimg.io.dicom_pixels import _read_native, read_frames

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Names only (collection needs them before fixtures exist); tests open files through the fixtures.
PYDICOM_DATA_NAMES = sorted(p.name for p in (Path(data_store.__file__).parent / "data").glob("*.dcm"))


def _dcmread(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        # Files without meta: decode with the encoding pydicom found while reading the data set.
        implicit, _little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def _palette_rgb(ds: pydicom.Dataset, indices: np.ndarray) -> np.ndarray:
    """Palette indices -> RGB, reading the LUT data in the file's own byte order."""
    if "RedPaletteColorLookupTableData" not in ds:  # segmented LUTs: pydicom handles byte order
        return apply_color_lut(indices, ds)
    big = ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    entries, first, _bits = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor)
    entries = entries or 65536
    channels = []
    for colour in ("Red", "Green", "Blue"):
        raw = ds[f"{colour}PaletteColorLookupTableData"].value
        dtype = np.dtype(">u2" if big else "<u2") if len(raw) == 2 * entries else np.dtype("u1")
        lut = np.frombuffer(raw, dtype=dtype).astype(np.uint16 if dtype.itemsize == 2 else np.uint8)
        channels.append(lut[np.clip(indices.astype(np.int64) - first, 0, entries - 1)])
    return np.stack(channels, axis=-1)


def _rescale_per_frame(ds: pydicom.Dataset, frames: int) -> tuple[np.ndarray, np.ndarray]:
    slope = np.ones(frames)
    inter = np.zeros(frames)
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    for k in range(frames):
        item = None
        for groups in (per_frame[k] if per_frame else None, shared[0] if shared else None):
            if groups is not None and "PixelValueTransformationSequence" in groups:
                item = groups.PixelValueTransformationSequence[0]
                break
        source = item if item is not None else ds
        slope[k] = float(source.get("RescaleSlope", 1) or 1)
        inter[k] = float(source.get("RescaleIntercept", 0) or 0)
    return slope, inter


def _frame_positions(ds: pydicom.Dataset, frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-frame Image Position (Patient) and the slice normal, for enhanced multi-frame files."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame or len(per_frame) != frames:
        return None
    shared = ds.SharedFunctionalGroupsSequence[0]
    pos = []
    for item in per_frame:
        if "PlanePositionSequence" not in item:
            return None
        pos.append([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
    ori_item = per_frame[0] if "PlaneOrientationSequence" in per_frame[0] else shared
    iop = np.array([float(v) for v in ori_item.PlaneOrientationSequence[0].ImageOrientationPatient])
    return np.array(pos), np.cross(iop[:3], iop[3:])


def expected_image(path: Path) -> tuple[np.ndarray, pydicom.Dataset]:
    """What medimg must return for a single file, computed with pydicom and the documented rules."""
    ds = _dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    arr = ds.pixel_array
    pi = ds.PhotometricInterpretation
    if frames == 1:
        arr = arr[np.newaxis]
    if pi == "PALETTE COLOR":
        return _palette_rgb(ds, arr), ds
    if int(ds.SamplesPerPixel) > 1:
        return arr, ds
    values = arr.astype(np.float64)
    if pi == "MONOCHROME1":
        values = (2 ** int(ds.BitsStored) - 1) - values
    slope, inter = _rescale_per_frame(ds, frames)
    values = values * slope[:, None, None] + inter[:, None, None]
    placed = _frame_positions(ds, frames)
    if placed is not None:
        pos, normal = placed
        values = values[np.argsort(pos @ normal, kind="stable")]
    return values, ds


# A damaged copy whose pixels are intact: its values must equal those of the intact file.
EXPECTED_FROM = {"emri_small_jpeg_2k_lossless_too_short.dcm": "emri_small_jpeg_2k_lossless.dcm"}


# ------------------------------------------------------------------------------ transfer syntaxes
def test_dcm_qa_ts_mosaic_identical_in_every_transfer_syntax(data_dir: Path) -> None:
    folder = data_dir / "mr" / "dcm-qa-ts"
    first = None
    syntaxes = set()
    for n in range(1, 10):
        path = folder / "In" / f"{n}.dcm"
        ts = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        syntaxes.add(ts)
        image = read_dicom(path)
        assert image.shape == (35, 64, 64), f"{n}.dcm"
        assert image.meta["transfer_syntaxes"] == [ts]
        assert image.meta["mosaic"] is True
        assert image.warnings == []
        if first is None:
            first = image
        else:
            assert np.array_equal(image.array, first.array), f"{n}.dcm pixels differ from 1.dcm"
            assert image.array.dtype == first.array.dtype, f"{n}.dcm"
            np.testing.assert_allclose(image.affine, first.affine, atol=1e-9, err_msg=f"{n}.dcm")

        # The reference NIfTI made by dcm2niix: same voxels at the same place, in world space.
        ours = nib.as_closest_canonical(image.to_nibabel())
        ref = nib.as_closest_canonical(nib.load(folder / "Ref" / f"{n}.nii"))
        assert ours.shape == ref.shape, f"{n}.dcm"
        np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3, err_msg=f"{n}.dcm")
        assert np.array_equal(np.asanyarray(ours.dataobj), np.asanyarray(ref.dataobj)), f"{n}.dcm"
    # Explicit/implicit little, big endian, RLE, JPEG lossless, JPEG-LS, JPEG 2000 (two pairs of
    # files share a syntax but come from different encoders).
    assert len(syntaxes) == 7


# ------------------------------------------------------------------------------ pydicom-data
def test_pydicom_data_has_68_files() -> None:
    assert len(PYDICOM_DATA_NAMES) == 68


@pytest.mark.parametrize("name", PYDICOM_DATA_NAMES)
def test_pydicom_data_file_loads_like_pydicom(name: str, pydicom_data_dir: Path) -> None:
    path = pydicom_data_dir / name
    image = read_dicom(path)
    expected, ds = expected_image(pydicom_data_dir / EXPECTED_FROM.get(name, name))

    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pi = ds.PhotometricInterpretation
    channels = 3 if pi == "PALETTE COLOR" else int(ds.SamplesPerPixel)
    assert image.shape == (frames, rows, cols) + ((channels,) if channels > 1 else ())
    assert image.channels == channels
    assert image.array.dtype.isnative

    if channels > 1:
        assert image.array.dtype == expected.dtype.newbyteorder("=")
        assert np.array_equal(image.array, expected)
        return
    identity = np.allclose(_rescale_per_frame(ds, frames), [[1.0], [0.0]])
    integral = np.allclose(_rescale_per_frame(ds, frames)[0], 1.0) and np.all(
        np.mod(_rescale_per_frame(ds, frames)[1], 1.0) == 0
    )
    if identity:
        assert image.array.dtype == ds.pixel_array.dtype.newbyteorder("=")
    elif integral:
        assert np.issubdtype(image.array.dtype, np.integer)
    else:
        assert image.array.dtype == np.float32
    if np.issubdtype(image.array.dtype, np.integer):
        assert np.array_equal(image.array.astype(np.float64), expected)
    else:
        np.testing.assert_allclose(image.array, expected, rtol=1e-6)
    if pi == "MONOCHROME1":
        assert image.meta["inverted_from_monochrome1"] is True

    placed = _frame_positions(ds, frames)
    if placed is not None:  # enhanced multi-frame: frames sorted along the normal, placed exactly
        pos, normal = placed
        ordered = pos[np.argsort(pos @ normal, kind="stable")]
        for k in range(frames):
            np.testing.assert_allclose(image.index_to_patient((k, 0, 0)), ordered[k], atol=1e-3)


def test_pixel_spacing_of_zero_means_unknown(pydicom_data_dir: Path) -> None:
    # RG1 writes Pixel Spacing 0\0: it must load with nominal 1 mm spacing, flagged as unknown.
    ds = pydicom.dcmread(pydicom_data_dir / "RG1_UNCI.dcm", stop_before_pixels=True)
    assert [float(v) for v in ds.PixelSpacing] == [0.0, 0.0]
    image = read_dicom(pydicom_data_dir / "RG1_UNCI.dcm")
    assert tuple(image.spacing[1:]) == (1.0, 1.0)
    assert image.meta["pixel_spacing_known"] is False


def test_colour_cine_is_rgb_like_pydicom(pydicom_data_dir: Path) -> None:
    """The 120-frame JPEG-baseline YBR_FULL_422 cine: RGB frames over time, equal to pydicom's."""
    path = pydicom_data_dir / "color3d_jpeg_baseline.dcm"
    image = read_dicom(path)
    assert image.shape == (120, 480, 640, 3)
    assert image.meta["frame_axis"] == "time"
    assert image.meta["frame_time_ms"] == pytest.approx(float(pydicom.dcmread(path).FrameTime))
    for k in (0, 60, 119):  # every frame is compared in test_pydicom_data_file_loads_like_pydicom
        assert np.array_equal(image.array[k], pixel_array(path, index=k)), f"frame {k}"
    assert image.array[60].std() > 10  # real content, so the colour conversion is exercised
    assert image.array.dtype == np.uint8


@pytest.mark.parametrize("name", ["SC_ybr_full_422_uncompressed.dcm", "examples_ybr_color.dcm",
                                  "SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_jpeg_gdcm.dcm",
                                  "examples_palette.dcm"])
def test_colour_from_pydicom_test_files(name: str, pydicom_test_dir: Path) -> None:
    """YBR (native 4:2:2, JPEG) is converted to RGB exactly as pydicom does; palettes are applied."""
    path = pydicom_test_dir / name
    image = read_dicom(path)
    expected, ds = expected_image(path)
    assert image.channels == 3
    assert image.array.dtype == expected.dtype
    assert np.array_equal(image.array, expected)


# Same image in several transfer syntaxes (or an uncompressed copy of the decoded image): the
# arrays must be identical.  *_UNCR is the reversible J2KR image uncompressed, *_UNCI the irreversible
# J2KI one (pixel-identical to each other within a pair, checked against pydicom too).
LOSSLESS_GROUPS = {
    "693 reversible": ["data/693_UNCR.dcm", "data/693_J2KR.dcm"],
    "693 irreversible": ["data/693_UNCI.dcm", "test/693_J2KI.dcm"],
    "MR2 reversible": ["data/MR2_UNCR.dcm", "data/MR2_J2KR.dcm"],
    "MR2 irreversible": ["data/MR2_UNCI.dcm", "data/MR2_J2KI.dcm"],
    "RG1 reversible": ["data/RG1_UNCR.dcm", "data/RG1_J2KR.dcm"],
    "RG1 irreversible": ["data/RG1_UNCI.dcm", "data/RG1_J2KI.dcm"],
    "RG3 reversible": ["data/RG3_UNCR.dcm", "data/RG3_J2KR.dcm"],
    "RG3 irreversible": ["data/RG3_UNCI.dcm", "data/RG3_J2KI.dcm"],
    "US1 reversible": ["data/US1_UNCR.dcm", "data/US1_J2KR.dcm"],
    "US1 irreversible": ["data/US1_UNCI.dcm", "data/US1_J2KI.dcm"],
    "emri_small": ["data/emri_small.dcm", "data/emri_small_RLE.dcm", "data/emri_small_big_endian.dcm",
                   "data/emri_small_jpeg_2k_lossless.dcm", "data/emri_small_jpeg_ls_lossless.dcm",
                   "data/emri_small_jpeg_2k_lossless_too_short.dcm"],
    "MR_small": ["test/MR_small.dcm", "test/MR_small_RLE.dcm", "test/MR_small_jpeg_ls_lossless.dcm",
                 "test/MR_small_jp2klossless.dcm", "test/MR_small_bigendian.dcm",
                 "test/MR_small_expb.dcm", "test/MR_small_implicit.dcm", "test/MR_small_padded.dcm"],
    "SC_rgb": ["data/SC_rgb.dcm", "data/SC_rgb_expb.dcm", "data/SC_rgb_gdcm2k_uncompressed.dcm",
               "test/SC_rgb_rle.dcm"],
    "SC_rgb 16 bit": ["data/SC_rgb_16bit.dcm", "data/SC_rgb_expb_16bit.dcm",
                      "test/SC_rgb_rle_16bit.dcm"],
    "SC_rgb 32 bit": ["data/SC_rgb_32bit.dcm", "data/SC_rgb_expb_32bit.dcm",
                      "test/SC_rgb_rle_32bit.dcm"],
    "SC_rgb 2 frames": ["data/SC_rgb_2frame.dcm", "data/SC_rgb_expb_2frame.dcm",
                        "test/SC_rgb_rle_2frame.dcm"],
    "SC_rgb 16 bit 2 frames": ["data/SC_rgb_16bit_2frame.dcm", "data/SC_rgb_expb_16bit_2frame.dcm",
                               "test/SC_rgb_rle_16bit_2frame.dcm"],
    "SC_rgb 32 bit 2 frames": ["data/SC_rgb_32bit_2frame.dcm", "data/SC_rgb_expb_32bit_2frame.dcm",
                               "test/SC_rgb_rle_32bit_2frame.dcm"],
    "OBXXXX1A palette": ["data/OBXXXX1A.dcm", "data/OBXXXX1A_expb.dcm", "data/OBXXXX1A_rle.dcm"],
    "OBXXXX1A palette 2 frames": ["data/OBXXXX1A_2frame.dcm", "data/OBXXXX1A_expb_2frame.dcm",
                                  "data/OBXXXX1A_rle_2frame.dcm"],
    "ALOKA segmented palette": ["data/gdcm-US-ALOKA-16.dcm", "data/gdcm-US-ALOKA-16_big.dcm"],
    "colour planar configuration": ["data/color-pl.dcm", "data/color-px.dcm"],
    "liver SEG 1 bit": ["data/liver.dcm", "data/liver_expb.dcm"],
    "liver SEG 1 bit 1 frame": ["test/liver_1frame.dcm", "test/liver_expb_1frame.dcm"],
    "JPEG 2000": ["data/JPEG2000_UNC.dcm", "test/JPEG2000.dcm"],
    "rtdose": ["test/rtdose.dcm", "test/rtdose_expb.dcm", "test/rtdose_rle.dcm"],
    "rtdose 1 frame": ["test/rtdose_1frame.dcm", "test/rtdose_expb_1frame.dcm",
                       "test/rtdose_rle_1frame.dcm"],
}


@pytest.mark.parametrize("group", sorted(LOSSLESS_GROUPS))
def test_lossless_variants_are_identical(group: str, pydicom_data_dir: Path,
                                         pydicom_test_dir: Path) -> None:
    roots = {"data": pydicom_data_dir, "test": pydicom_test_dir}
    paths = [roots[p.split("/")[0]] / p.split("/")[1] for p in LOSSLESS_GROUPS[group]]
    syntaxes = {str(_dcmread(p).file_meta.TransferSyntaxUID) for p in paths}
    images = [read_dicom(p) for p in paths]
    ref = images[0]
    assert ref.array.std() > 0, "a blank image proves nothing"
    for path, image in zip(paths[1:], images[1:], strict=True):
        assert image.array.dtype == ref.array.dtype, path.name
        assert np.array_equal(image.array, ref.array), f"{path.name} differs from {paths[0].name}"
        np.testing.assert_allclose(image.affine, ref.affine, atol=1e-9, err_msg=path.name)
    if "irreversible" not in group and "planar" not in group:
        assert len(syntaxes) >= 2, f"{group}: the variants should differ in transfer syntax"


# ------------------------------------------------------------------------------ native fast path
def _native_candidates(*folders: Path) -> list[Path]:
    out = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            try:
                rec = read_record(path)
            except Exception:
                continue
            if (rec.has_pixels and rec.transfer_syntax in NATIVE_TRANSFER_SYNTAXES
                    and rec.samples_per_pixel == 1 and rec.bits_allocated in (8, 16, 32)
                    and rec.photometric in ("MONOCHROME1", "MONOCHROME2")):
                out.append(path)
    return out


def test_native_fast_path_equals_pydicom_for_every_native_file(
        pydicom_data_dir: Path, pydicom_test_dir: Path) -> None:
    candidates = _native_candidates(pydicom_test_dir, pydicom_data_dir)
    checked = set()
    fewer_bits = {"signed": 0, "unsigned": 0}
    for path in candidates:
        rec = read_record(path)
        fast = _read_native(rec)
        assert fast is not None, f"{path.name}: the fast path declined a native monochrome file"
        ds = _dcmread(path)
        if str(ds.get("NumberOfFrames", "1")) == "1A":  # badVR.dcm: Number of Frames is not a number
            ds.NumberOfFrames = rec.frames
        ref = ds.pixel_array.reshape(rec.frames, rec.rows, rec.columns)
        assert fast.dtype == ref.dtype, path.name
        assert np.array_equal(fast, ref), f"{path.name}: fast path differs from pydicom"
        checked.add(path.name)
        if rec.bits_stored < rec.bits_allocated:
            fewer_bits["signed" if rec.pixel_representation else "unsigned"] += 1
    # Single and multi-frame, 8/16/32 bits, signed and unsigned, MONOCHROME1, Bits Stored < Allocated.
    assert {"CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "rtdose.dcm", "vlut_04.dcm",
            "RG3_UNCI.dcm", "693_UNCR.dcm", "mlut_18.dcm", "eCT_Supplemental.dcm",
            "badVR.dcm"} <= checked
    assert fewer_bits["signed"] >= 2 and fewer_bits["unsigned"] >= 5, fewer_bits
    assert len(checked) >= 50


def test_native_fast_path_ignores_bits_above_bits_stored(tmp_path: Path, pydicom_data_dir: Path,
                                                         pydicom_test_dir: Path) -> None:
    """Unused high bits may carry overlays or garbage: only the low Bits Stored bits are the value."""
    rng = np.random.default_rng(0)
    # Unsigned, 12 of 16 bits, 10 frames.
    ds = _dcmread(pydicom_data_dir / "emri_small.dcm")
    clean = ds.pixel_array.copy()
    assert int(ds.BitsStored) == 12 and int(ds.PixelRepresentation) == 0
    dirty = clean | (rng.integers(0, 16, clean.shape, dtype=np.uint16) << 12)
    assert not np.array_equal(dirty, clean)
    ds.PixelData = dirty.astype("<u2").tobytes()
    ds.save_as(tmp_path / "unsigned.dcm")
    # Signed, 14 of 16 bits.
    ds2 = _dcmread(pydicom_data_dir / "693_UNCR.dcm")
    clean2 = ds2.pixel_array.copy()
    assert int(ds2.BitsStored) == 14 and int(ds2.PixelRepresentation) == 1
    assert clean2.min() < 0
    raw = (clean2.view(np.uint16) & 0x3FFF) | (rng.integers(0, 4, clean2.shape, dtype=np.uint16) << 14)
    ds2.PixelData = raw.astype("<u2").tobytes()
    ds2.save_as(tmp_path / "signed.dcm")

    for name, expected in (("unsigned.dcm", clean), ("signed.dcm", clean2)):
        rec = read_record(tmp_path / name)
        fast = _read_native(rec)
        assert fast is not None
        want = expected.reshape(fast.shape)
        assert np.array_equal(fast, want), name
        assert np.array_equal(fast, _dcmread(tmp_path / name).pixel_array.reshape(fast.shape)), name
        assert np.array_equal(read_frames(rec), want), name


def test_fast_path_declines_what_it_does_not_handle(pydicom_data_dir: Path,
                                                    pydicom_test_dir: Path) -> None:
    # Colour, palette, 1-bit and big-endian files are decoded by pydicom, not read raw.
    for path in (pydicom_data_dir / "SC_rgb.dcm", pydicom_data_dir / "OBXXXX1A.dcm",
                 pydicom_data_dir / "liver.dcm", pydicom_test_dir / "MR_small_bigendian.dcm"):
        rec = read_record(path)
        assert _read_native(rec) is None, path.name
        frames = read_frames(rec)
        assert frames.shape[:3] == (rec.frames, rec.rows, rec.columns), path.name


# ------------------------------------------------------------------------------ real CT series
def _positions(folder: Path) -> list[tuple[np.ndarray, Path]]:
    out = []
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out.append((np.array([float(v) for v in ds.ImagePositionPatient]), path))
    return out


@pytest.mark.parametrize("series", ["series-2", "series-3"])
def test_lung_ct_series(series: str, data_dir: Path) -> None:
    folder = data_dir / "ct" / "lung-pet-ct-dx-A0001" / series
    image = read_dicom(folder)
    assert image.shape == (64, 512, 512)
    assert image.modality == "CT"
    assert image.warnings == []
    first = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    np.testing.assert_allclose(image.spacing, [5.0, *(float(v) for v in first.PixelSpacing)])
    np.testing.assert_allclose(image.direction, np.column_stack([[0, 0, 1], [0, 1, 0], [1, 0, 0]]),
                               atol=1e-9)
    # HU: integral rescale keeps integers; air about -1000, nothing below the -1024 padding.
    assert image.array.dtype == np.int16
    assert image.array.min() == -1024
    assert -1050 < np.median(image.array[:, :20, 200:312]) < -950
    assert 0 < np.median(image.array[:, 256, 256]) < 100  # soft tissue in the mediastinum
    # Ordered by position along the normal (+z here), each plane from the right file.
    ordered = sorted(_positions(folder), key=lambda pp: pp[0][2])
    for k, (pos, path) in enumerate(ordered):
        np.testing.assert_allclose(image.index_to_patient((k, 0, 0)), pos, atol=1e-3)
        if k % 21 == 0:
            ds = pydicom.dcmread(path)
            hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert np.array_equal(image.array[k], hu), f"plane {k} is not {path.name}"
    assert image.meta["series_instance_uid"] == str(first.SeriesInstanceUID)


def test_totalsegmentator_jpeg2000_ct(data_dir: Path) -> None:
    folder = data_dir / "ct" / "totalseg-example" / "dicom"
    image = read_dicom(folder)
    assert image.shape == (20, 512, 512)
    assert image.warnings == []
    assert image.meta["transfer_syntaxes"] == ["1.2.840.10008.1.2.4.90"]
    ordered = sorted(_positions(folder), key=lambda pp: pp[0][2])
    z = np.array([p[2] for p, _ in ordered])
    assert np.allclose(np.diff(z), 2.0)  # 2 mm apart (3 mm thick, overlapping)
    first = pydicom.dcmread(ordered[0][1])
    np.testing.assert_allclose(image.spacing, [2.0, *(float(v) for v in first.PixelSpacing)])
    assert -1050 < np.median(image.array[:, :20, 200:312]) < -950
    for k, (pos, _) in enumerate(ordered):
        np.testing.assert_allclose(image.index_to_patient((k, 0, 0)), pos, atol=1e-3)
    for k in (0, 13):
        ds = pydicom.dcmread(ordered[k][1])
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(image.array[k], hu)


def test_folder_with_two_series(data_dir: Path) -> None:
    parent = data_dir / "ct" / "lung-pet-ct-dx-A0001"  # series-2, series-3, XML annotations, LICENSE
    uids = {}
    for series in ("series-2", "series-3"):
        ds = pydicom.dcmread(next((parent / series).iterdir()), stop_before_pixels=True)
        uids[series] = str(ds.SeriesInstanceUID)
    assert uids["series-2"] != uids["series-3"]

    idx = index(parent)
    assert sorted(s.series_instance_uid for s in idx.series) == sorted(uids.values())
    assert [len(s.instances) for s in idx.series] == [64, 64]
    non_dicom = [p for p in parent.rglob("*") if p.is_file() and "series-" not in p.parent.name]
    assert len(idx.errors) == len(non_dicom) > 0  # the annotations and the licence, listed not fatal

    with pytest.raises(SeriesSelectionError) as err:
        read_dicom(parent)
    assert uids["series-2"] in str(err.value) and uids["series-3"] in str(err.value)

    image = read_dicom(parent, series=uids["series-3"])
    assert image.meta["series_instance_uid"] == uids["series-3"]
    by_z = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in (parent / "series-3").iterdir()),
                  key=lambda d: float(d.ImagePositionPatient[2]))
    assert image.meta["sop_instance_uids"] == [str(d.SOPInstanceUID) for d in by_z]


def test_fast_header_values_equal_pydicom(data_dir: Path, pydicom_data_dir: Path,
                                          pydicom_test_dir: Path) -> None:
    """The index's direct ASCII conversion gives pydicom's values for every attribute it reads."""
    import warnings

    from medimg.io.dicom_index import _META_KEYWORDS, _FastHeader, _plain

    keywords = list(_META_KEYWORDS) + [
        "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
        "PhotometricInterpretation", "ImageType", "ImagePositionPatient", "ImageOrientationPatient",
        "PixelSpacing", "ImagerPixelSpacing", "RescaleSlope", "RescaleIntercept", "SliceThickness",
        "EchoNumbers", "TemporalPositionIdentifier", "WindowCenter", "WindowWidth",
        "GantryDetectorTilt", "FrameTime", "SOPInstanceUID", "SOPClassUID", "StudyInstanceUID",
        "SeriesInstanceUID", "Modality", "InstanceNumber", "AcquisitionNumber", "NumberOfFrames",
    ]
    files = sorted(data_dir.rglob("*.dcm")) + sorted(pydicom_data_dir.glob("*.dcm"))
    files += sorted(pydicom_test_dir.glob("*.dcm"))
    compared = 0
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                slow = pydicom.dcmread(f, stop_before_pixels=True, force=True)
                fast = pydicom.dcmread(f, stop_before_pixels=True, force=True)
                expected = {k: slow.get(k) for k in keywords}
            except Exception:
                continue  # broken files are covered by the bad-input tests
            header = _FastHeader(fast)
            for k in keywords:
                want = expected[k]
                got = header.get(k)
                if want is None or want == "":
                    assert got in (None, ""), (f, k, got)
                    continue
                # pydicom keeps the padding inside multi-valued strings; the standard says it is
                # insignificant (PS3.5 6.2), so the index strips it
                want_plain, got_plain = _strip(_plain(want)), _strip(_plain(got))
                if isinstance(want_plain, list) and len(want_plain) == 1:
                    want_plain = want_plain[0]
                assert got_plain == want_plain, (f.name, k, got_plain, want_plain)
                compared += 1
    assert compared > 5000


def _strip(value: object) -> object:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_parallel_index_equals_serial(monkeypatch: pytest.MonkeyPatch, data_dir: Path,
                                      pydicom_data_dir: Path) -> None:
    """The worker-process index gives the same series, records and errors as the in-process one."""
    import medimg.io.dicom_index as dicom_index

    paths = [data_dir / "ct" / "lung-pet-ct-dx-A0001", pydicom_data_dir]
    serial = dicom_index.index_paths(paths, workers=1)
    monkeypatch.setattr(dicom_index, "_PARALLEL_MIN_FILES", 1)
    parallel = dicom_index.index_paths(paths, workers=2)
    assert parallel.files_seen == serial.files_seen
    assert [str(e) for e in parallel.errors] == [str(e) for e in serial.errors]
    assert [s.key for s in parallel.series] == [s.key for s in serial.series]
    for a, b in zip(parallel.series, serial.series, strict=True):
        assert [r.path for r in a.instances] == [r.path for r in b.instances]
        assert [r.frame_geometry for r in a.instances] == [r.frame_geometry for r in b.instances]
        assert [r.pixel_offset for r in a.instances] == [r.pixel_offset for r in b.instances]
