"""Bad input: every broken file is an InputError that names the file and says what is wrong; a folder
mixing them with a good series still loads the good series.  Nothing else may escape the reader.

Damaged copies of real files are made in tmp_path; pydicom's deliberately broken test files are read
where they are.
"""

from __future__ import annotations

import shutil
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from medimg.errors import InputError, NotDicomError, SeriesSelectionError
from medimg.io.dicom import index, read_dicom
from medimg.io.dicom_index import read_record

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def ct_files(ct_series: Path) -> list[Path]:
    """Six consecutive slices of the real CT series (uncompressed, implicit VR)."""
    by_z = sorted(ct_series.iterdir(),
                  key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    return by_z[30:36]


@pytest.fixture(scope="module")
def j2k_file(data_dir: Path) -> Path:
    """One slice of the real JPEG 2000 CT."""
    return sorted((data_dir / "ct" / "totalseg-example" / "dicom").iterdir())[0]


def _as_other_series(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A damaged copy gets UIDs of its own, so it can never pass for a slice of the good series."""
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _edited(src: Path, dst: Path, edit: Callable[[pydicom.Dataset], None], **save: object) -> Path:
    ds = _as_other_series(pydicom.dcmread(src))
    edit(ds)
    ds.save_as(dst, **save)  # type: ignore[arg-type]
    return dst


def _bytes(dst: Path, data: bytes) -> Path:
    dst.write_bytes(data)
    return dst


def _tag_offset(data: bytes, group: int, element: int, start: int = 0) -> int:
    i = data.find(struct.pack("<HH", group, element), start)
    assert i >= 0, f"({group:04X},{element:04X}) not found"
    return i


def _set_header(ds: pydicom.Dataset, **values: object) -> None:
    for key, value in values.items():
        setattr(ds, key, value)


def make_bad_inputs(folder: Path, ct: Path, j2k: Path, data_dir: Path, pyd_test: Path,
                    pyd_data: Path) -> dict[str, tuple[Path, str]]:
    """Every bad input: name -> (file, words the error must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}
    ct_bytes = ct.read_bytes()
    pixel_at = _tag_offset(ct_bytes, 0x7FE0, 0x0010)
    j2k_bytes = j2k.read_bytes()
    j2k_pixel_at = _tag_offset(j2k_bytes, 0x7FE0, 0x0010)

    def add(name: str, path: Path, words: str) -> None:
        assert name not in out
        out[name] = (path, words)

    # Not DICOM at all.
    add("empty file", _bytes(folder / "empty.dcm", b""), "file is empty (0 bytes)")
    add("text file", _bytes(folder / "notes.txt", b"Patient arrived at 10:00.\nCT ordered.\n" * 20),
        "not a DICOM file")
    add("PNG", Path(shutil.copy(data_dir / "xray" / "lung-seg-2d" / "1-mask.png", folder / "mask.png")),
        "not a DICOM file")
    add("JPEG", Path(shutil.copy(data_dir / "xray" / "lung-seg-2d" / "1.jpg", folder / "cxr.jpg")),
        "not a DICOM file")
    add("NIfTI", Path(shutil.copy(data_dir / "mr" / "dcm-qa-ts" / "Ref" / "1.nii", folder / "mr.nii")),
        "not a DICOM file")
    add("gzip", Path(shutil.copy(pyd_test / "zipMR.gz", folder / "zipMR.gz")), "not a DICOM file")
    rng = np.random.default_rng(1)
    add("random bytes", _bytes(folder / "random.bin", rng.bytes(20000)), "not a DICOM file")
    add("random bytes that start like a data set",
        _bytes(folder / "random08.bin", b"\x08\x00\x05\x00" + rng.bytes(20000)), "not a DICOM file")
    add("preamble and DICM then random bytes",
        _bytes(folder / "dicm_random.dcm", bytes(128) + b"DICM" + rng.bytes(20000)),
        "incomplete DICOM object")

    # Truncated.
    add("pydicom MR_truncated.dcm", pyd_test / "MR_truncated.dcm", "pixel data is truncated")
    add("cut inside the preamble", _bytes(folder / "cut100.dcm", ct_bytes[:100]), "not a DICOM file")
    add("cut right after DICM", _bytes(folder / "cut132.dcm", ct_bytes[:132]),
        "incomplete DICOM object")
    add("cut inside the header", _bytes(folder / "cut1000.dcm", ct_bytes[:1000]),
        "unreadable DICOM header, truncated or damaged")
    add("cut before the pixel data", _bytes(folder / "cut_before_pixels.dcm", ct_bytes[:pixel_at]),
        "file ends before any Pixel Data")
    add("cut inside the pixel data header", _bytes(folder / "cut_pixel_header.dcm",
                                                  ct_bytes[:pixel_at + 6]),
        "it is truncated")
    add("cut inside the pixel data", _bytes(folder / "cut_pixels.dcm", ct_bytes[:-1000]),
        "pixel data is truncated")
    add("JPEG 2000 cut inside a fragment", _bytes(folder / "j2k_cut.dcm", j2k_bytes[:-5000]),
        "encapsulated pixel data is truncated")
    add("JPEG 2000 cut inside an item header",
        _bytes(folder / "j2k_cut_item.dcm", j2k_bytes[:j2k_pixel_at + 12 + 8 + 3]),
        "encapsulated pixel data is truncated")
    deflated = _edited(ct, folder / "deflated.tmp", lambda ds: None, enforce_file_format=True)
    ds = pydicom.dcmread(deflated)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(deflated, enforce_file_format=True)
    data = deflated.read_bytes()
    deflated.unlink()
    add("deflated data set cut short", _bytes(folder / "deflate_cut.dcm", data[: len(data) // 2]),
        "truncated")

    # Damaged encapsulated pixel data.
    damaged = bytearray(j2k_bytes)
    first_item = j2k_pixel_at + 12
    bot_len = struct.unpack("<I", damaged[first_item + 4:first_item + 8])[0]
    second_item = first_item + 8 + bot_len
    damaged[second_item:second_item + 4] = b"\x10\x00\x10\x00"
    add("JPEG 2000 fragment with a wrong item tag", _bytes(folder / "j2k_item_tag.dcm",
                                                           bytes(damaged)),
        "encapsulated pixel data is damaged")
    only_bot = bytearray(j2k_bytes[:second_item]) + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    add("JPEG 2000 without any fragment", _bytes(folder / "j2k_no_fragment.dcm", bytes(only_bot)),
        "holds no compressed frame")

    # Missing or inconsistent header.
    add("pydicom meta_missing_tsyntax.dcm (no Rows/Columns either)",
        pyd_test / "meta_missing_tsyntax.dcm", "Pixel Data but no valid image size")
    add("Rows 0", _edited(ct, folder / "rows0.dcm", lambda ds: _set_header(ds, Rows=0)),
        "no valid image size (Rows 0")
    add("no Pixel Data element", _edited(ct, folder / "no_pixels.dcm",
                                         lambda ds: delattr(ds, "PixelData")),
        "before any Pixel Data")
    add("absurd 65535 x 65535 x 10000 frames", _edited(
        ct, folder / "absurd.dcm",
        lambda ds: _set_header(ds, Rows=65535, Columns=65535, NumberOfFrames=10000)),
        "absurd image size 65535 x 65535 x 10000 frames")
    add("absurd 65535 x 65535 JPEG 2000", _edited(
        j2k, folder / "absurd_j2k.dcm", lambda ds: _set_header(ds, Rows=65535, Columns=65535)),
        "absurd image size 65535 x 65535 x 1 frames")
    add("5000 frames declared, one stored", _edited(
        ct, folder / "frames5000.dcm", lambda ds: _set_header(ds, NumberOfFrames=5000)),
        "expected 2621440000")
    nf = _edited(j2k, folder / "frames_text.dcm", lambda ds: _set_header(ds, NumberOfFrames=77))
    raw = nf.read_bytes()
    at = _tag_offset(raw, 0x0028, 0x0008)
    nf.write_bytes(raw[:at + 8] + b"ab" + raw[at + 10:])
    add("Number of Frames that is not a number", nf, "Number of Frames 'ab'")
    add("Bits Allocated 12", _edited(ct, folder / "bits12.dcm",
                                     lambda ds: _set_header(ds, BitsAllocated=12)),
        "Bits Allocated 12")
    add("Bits Stored above Bits Allocated", _edited(ct, folder / "bits_stored.dcm",
                                                    lambda ds: _set_header(ds, BitsStored=20)),
        "Bits Stored 20 does not fit Bits Allocated 16")
    add("unknown photometric interpretation", _edited(
        pyd_data / "SC_rgb.dcm", folder / "xyz.dcm", lambda ds: _set_header(ds, PhotometricInterpretation="XYZ")),
        "unsupported photometric interpretation 'XYZ'")
    add("4 samples per pixel", _edited(ct, folder / "samples4.dcm",
                                       lambda ds: _set_header(ds, SamplesPerPixel=4)),
        "Samples per Pixel 4")

    # Broken sequences (pydicom's bad_sequence.dcm reads: see its own test).
    seq = _tag_offset(ct_bytes, 0x0008, 0x1110)  # Referenced Study Sequence, undefined length
    d = bytearray(ct_bytes)
    d[seq + 4:seq + 8] = struct.pack("<I", 0x7FFFFFF0)
    add("sequence length beyond the end of the file", _bytes(folder / "seq_len.dcm", bytes(d)),
        "CT Image Storage object without an image header")
    d = bytearray(ct_bytes)
    delim = ct_bytes.find(b"\xfe\xff\xdd\xe0", seq)
    d[delim:delim + 8] = b"\x08\x00\x20\x00\x00\x00\x00\x00"
    add("sequence without its delimiter", _bytes(folder / "seq_delim.dcm", bytes(d)),
        "unreadable DICOM header, truncated or damaged")
    d = bytearray(ct_bytes)
    d[seq + 20:seq + 24] = struct.pack("<I", 0x7FFFFF00)
    add("element in a sequence item with a huge length", _bytes(folder / "seq_item_elem.dcm",
                                                              bytes(d)),
        "unreadable DICOM header, truncated or damaged")
    ect = (pyd_data / "eCT_Supplemental.dcm").read_bytes()
    pf = _tag_offset(ect, 0x5200, 0x9230)  # Per-frame Functional Groups Sequence (explicit VR)
    d = bytearray(ect)
    d[pf + 8:pf + 12] = struct.pack("<I", 0x100)
    add("per-frame functional groups with a wrong length", _bytes(folder / "ect_pf_len.dcm", bytes(d)),
        "before any Pixel Data")
    # A sequence that parses as a whole (its length made exact, its delimiter replaced by an empty
    # private element) but whose first nested item has lost its delimiter: pydicom only finds out
    # when the per-frame groups are read for the geometry.
    end = _tag_offset(ect, 0x7FE0, 0x0010, pf)
    seq_delim = ect.rfind(b"\xfe\xff\xdd\xe0", pf, end)
    d = bytearray(ect)
    d[pf + 8:pf + 12] = struct.pack("<I", seq_delim - (pf + 12))
    d[seq_delim:seq_delim + 8] = struct.pack("<HH", 0x5201, 0x0010) + b"LO\x00\x00"
    item_delim = bytes(d).find(b"\xfe\xff\x0d\xe0", pf)
    d[item_delim:item_delim + 8] = struct.pack("<HH", 0x0020, 0x9111) + b"\xff" * 4
    add("per-frame functional group item without its delimiter",
        _bytes(folder / "ect_pf_item.dcm", bytes(d)), "damaged DICOM header")
    return out


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, ct_files: list[Path], j2k_file: Path,
               data_dir: Path, pydicom_test_dir: Path,
               pydicom_data_dir: Path) -> dict[str, tuple[Path, str]]:
    return make_bad_inputs(tmp_path_factory.mktemp("bad"), ct_files[0], j2k_file, data_dir,
                           pydicom_test_dir, pydicom_data_dir)


def test_number_of_bad_inputs(bad_inputs: dict[str, tuple[Path, str]]) -> None:
    assert len(bad_inputs) == 37
    assert len({p for p, _ in bad_inputs.values()}) == len(bad_inputs)


def _only_input_errors(call: Callable[[], object]) -> InputError | None:
    try:
        call()
    except InputError as exc:
        return exc
    except Exception as exc:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"{type(exc).__name__} escaped the reader: {exc}")
    return None


def test_each_bad_input_is_a_clear_input_error(bad_inputs: dict[str, tuple[Path, str]]) -> None:
    for name, (path, words) in bad_inputs.items():
        # The header index says what is wrong, naming the file.
        err = _only_input_errors(lambda p=path: read_record(p))
        assert err is not None, f"{name}: read_record accepted it"
        assert str(err).startswith(f"{path}: "), f"{name}: {err}"
        assert err.source == str(path)
        assert words in str(err), f"{name}: {err}"
        assert "\n" not in str(err)
        # Indexing lists it and raises nothing; reading it raises an InputError only.
        idx = index(path)
        assert idx.series == [] and [e.source for e in idx.errors] == [str(path)], name
        assert _only_input_errors(lambda p=path: read_dicom(p)) is not None, name


def test_not_dicom_files_are_not_dicom_errors(bad_inputs: dict[str, tuple[Path, str]]) -> None:
    for name in ("text file", "PNG", "JPEG", "NIfTI", "gzip", "random bytes"):
        path, _ = bad_inputs[name]
        with pytest.raises(NotDicomError):
            read_record(path)


def test_absurd_size_is_refused_before_allocating(bad_inputs: dict[str, tuple[Path, str]]) -> None:
    for name in ("absurd 65535 x 65535 x 10000 frames", "absurd 65535 x 65535 JPEG 2000",
                 "5000 frames declared, one stored", "sequence length beyond the end of the file",
                 "random bytes that start like a data set", "preamble and DICM then random bytes"):
        path, _ = bad_inputs[name]
        tracemalloc.start()
        try:
            with pytest.raises(InputError):
                read_dicom(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 20 * 2**20, f"{name}: {peak / 2**20:.0f} MiB allocated to refuse it"


def test_folder_of_bad_inputs_and_one_good_series(tmp_path: Path, bad_inputs: dict[str, tuple[Path, str]],
                                                  ct_files: list[Path], pydicom_test_dir: Path) -> None:
    folder = tmp_path / "mixed"
    (folder / "bad").mkdir(parents=True)
    (folder / "good").mkdir()
    for k, (path, _) in enumerate(bad_inputs.values()):
        shutil.copy(path, folder / "bad" / f"{k:02d}_{path.name}")
    for path in ct_files:
        shutil.copy(path, folder / "good" / path.name)
    shutil.copy(pydicom_test_dir / "test-SR.dcm", folder / "report.dcm")  # DICOM, not an image

    idx = index(folder, workers=1)
    assert len(idx.errors) == len(bad_inputs)
    assert all(isinstance(e, InputError) for e in idx.errors)
    assert sorted(Path(e.source).parent.name for e in idx.errors) == ["bad"] * len(bad_inputs)
    expected_words = {f"{k:02d}_{p.name}": w for k, (p, w) in enumerate(bad_inputs.values())}
    for err in idx.errors:
        assert str(err).startswith(f"{err.source}: ")
        assert expected_words[Path(err.source).name] in str(err)
    assert len(idx.series) == 1 and len(idx.series[0].instances) == len(ct_files)

    image = read_dicom(folder)
    assert image.shape == (len(ct_files), 512, 512)
    assert image.warnings == []
    ds = pydicom.dcmread(ct_files[0])
    assert np.array_equal(image.array[0], ds.pixel_array * float(ds.RescaleSlope) +
                          float(ds.RescaleIntercept))


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        index(tmp_path / "nowhere")


def test_damaged_compressed_slice_fails_its_series_naming_the_file(tmp_path: Path, data_dir: Path) -> None:
    """Damage only the decoder can see (the JPEG 2000 codestream says 400 columns where the header
    says 512) fails the series load with that file named, instead of a volume built without it."""
    src = sorted((data_dir / "ct" / "totalseg-example" / "dicom").iterdir())[:4]
    for path in src:
        shutil.copy(path, tmp_path / path.name)
    bad = tmp_path / src[2].name
    data = bytearray(bad.read_bytes())
    siz = data.find(b"\xff\x4f\xff\x51")  # start of codestream, SIZ marker
    assert struct.unpack(">I", data[siz + 8:siz + 12]) == (512,)
    data[siz + 8:siz + 12] = struct.pack(">I", 400)
    bad.write_bytes(bytes(data))
    idx = index(tmp_path)
    assert len(idx.series) == 1 and len(idx.series[0].instances) == 4  # headers alone cannot tell
    with pytest.raises(InputError) as err:
        read_dicom(tmp_path)
    assert str(err.value).startswith(f"{bad}: ")
    assert "does not fit Rows 512 x Columns 512" in str(err.value)


# ------------------------------------------------------------------------------ read, not refused
def test_missing_transfer_syntax_is_read_with_the_detected_encoding(
        tmp_path: Path, ct_files: list[Path], pydicom_test_dir: Path) -> None:
    """No Transfer Syntax UID in the meta: the encoding pydicom detects from the data is used."""
    for src, implicit in ((ct_files[0], True), (pydicom_test_dir / "MR_small.dcm", False)):
        ds = pydicom.dcmread(src)
        assert ds.original_encoding[0] is implicit
        del ds.file_meta.TransferSyntaxUID
        dst = tmp_path / src.name
        pydicom.dcmwrite(dst, ds, implicit_vr=implicit, little_endian=True)
        assert "TransferSyntaxUID" not in pydicom.dcmread(dst).file_meta
        image = read_dicom(dst)
        stored = pydicom.dcmread(src).pixel_array
        rescaled = stored * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        assert np.array_equal(image.array[0], rescaled), src.name
    # pydicom's meta_missing_tsyntax.dcm also lacks Rows, Columns and the pixel description: it is
    # refused, in test_each_bad_input_is_a_clear_input_error.


def test_pydicom_bad_sequence_file_reads(pydicom_data_dir: Path) -> None:
    """bad_sequence.dcm carries invalid UIDs and over-long values inside its sequences: tolerable."""
    path = pydicom_data_dir / "bad_sequence.dcm"
    image = read_dicom(path)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(image.array[0], expected)


def test_damaged_sequence_not_needed_for_the_image_is_tolerated(tmp_path: Path,
                                                               ct_files: list[Path]) -> None:
    """An item tag overwritten inside the Referenced Study Sequence: the image does not need it."""
    data = bytearray(ct_files[0].read_bytes())
    seq = _tag_offset(bytes(data), 0x0008, 0x1110)
    data[seq + 8:seq + 12] = b"\x12\x34\x56\x78"
    path = tmp_path / "item_tag.dcm"
    path.write_bytes(bytes(data))
    image = read_dicom(path)
    ds = pydicom.dcmread(ct_files[0])
    assert np.array_equal(image.array[0], ds.pixel_array * float(ds.RescaleSlope) +
                          float(ds.RescaleIntercept))


def test_deflated_file_reads(tmp_path: Path, ct_files: list[Path]) -> None:
    ds = pydicom.dcmread(ct_files[0])
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    image = read_dicom(tmp_path / "deflated.dcm")
    assert image.meta["transfer_syntaxes"] == [DeflatedExplicitVRLittleEndian]
    assert np.array_equal(image.array[0], ds.pixel_array * float(ds.RescaleSlope) +
                          float(ds.RescaleIntercept))


def test_non_image_dicom_is_neither_a_series_nor_an_error(pydicom_test_dir: Path) -> None:
    for name in ("test-SR.dcm", "rtplan.dcm", "rtstruct.dcm", "ExplVR_LitEndNoMeta.dcm"):
        rec = read_record(pydicom_test_dir / name)
        assert rec.has_pixels is False, name
        idx = index(pydicom_test_dir / name)
        assert idx.series == [] and idx.errors == [], name
        with pytest.raises(SeriesSelectionError, match="no readable DICOM image series"):
            read_dicom(pydicom_test_dir / name)
