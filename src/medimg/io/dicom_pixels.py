"""Pixel data of one DICOM file as a numpy array of frames.

Decoding is pydicom's, with the pylibjpeg plugins for JPEG, JPEG-LS, JPEG 2000 and RLE.  The one thing
done here without pydicom is reading *native* (uncompressed little-endian, single-sample) pixel data
straight from the file offset the header index recorded: the bytes are the values, so there is nothing
to decode, and it skips parsing the header a second time.  A test checks it equals pydicom's array for
every such file we have.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space, get_decoder
from pydicom.uid import UID

from ..errors import InputError
from .dicom_index import (
    BIG_ENDIAN_TRANSFER_SYNTAX,
    BoundedFile,
    InstanceRecord,
    scan_pixel_element,
)

__all__ = ["read_frames"]

_COLOUR_OK = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "PALETTE COLOR"}


def _native_dtype(rec: InstanceRecord) -> np.dtype | None:
    if rec.samples_per_pixel != 1 or rec.bits_allocated not in (8, 16, 32):
        return None
    kind = "i" if rec.pixel_representation == 1 else "u"
    return np.dtype(f"<{kind}{rec.bits_allocated // 8}")


def _expected_bytes(rec: InstanceRecord) -> int:
    bits = rec.rows * rec.columns * rec.frames * rec.samples_per_pixel * rec.bits_allocated
    return (bits + 7) // 8


def _read_native(rec: InstanceRecord) -> np.ndarray | None:
    dtype = _native_dtype(rec)
    if dtype is None or rec.pixel_offset is None or rec.pixel_length is None:
        return None
    if rec.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    expected = _expected_bytes(rec)
    if rec.pixel_length < expected:
        raise InputError(
            rec.path,
            f"pixel data is {rec.pixel_length} bytes, expected {expected} "
            f"(Rows {rec.rows} x Columns {rec.columns} x Frames {rec.frames} x "
            f"{rec.bits_allocated} bits); the file is truncated",
            "re-export or re-send it",
        )
    count = expected // dtype.itemsize
    with open(rec.path, "rb") as fp:
        fp.seek(rec.pixel_offset)
        arr = np.fromfile(fp, dtype=dtype, count=count)
    if arr.size != count:
        raise InputError(
            rec.path,
            f"pixel data ends after {arr.size * dtype.itemsize} of {expected} bytes; the file is truncated",
            "re-export or re-send it",
        )
    arr = arr.reshape(rec.frames, rec.rows, rec.columns)
    if 0 < rec.bits_stored < rec.bits_allocated:
        # Only the low Bits Stored bits are the value (as pydicom does): the high bits may hold
        # overlays or garbage.  Shifting left and back clears them for unsigned data and extends the
        # sign bit for signed data.
        shift = arr.dtype.type(rec.bits_allocated - rec.bits_stored)
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def native_plane_dtype(rec: InstanceRecord) -> np.dtype | None:
    """The dtype a single-frame native grey record can be read into directly, else None."""
    if rec.frames != 1 or rec.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    if rec.pixel_offset is None or rec.pixel_length is None:
        return None
    return _native_dtype(rec)


def read_native_stack(records: list[InstanceRecord]) -> np.ndarray:
    """Single-frame native grey files straight into one preallocated ``(n, rows, columns)`` array.

    All records must share :func:`native_plane_dtype`, Rows, Columns and Bits Stored (the caller
    checks).  Avoids one temporary array per file and the copy of stacking them.
    """
    first = records[0]
    dtype = native_plane_dtype(first)
    assert dtype is not None
    stack = np.empty((len(records), first.rows, first.columns), dtype=dtype)
    nbytes = first.rows * first.columns * dtype.itemsize
    for k, rec in enumerate(records):
        if rec.pixel_length is None or rec.pixel_length < nbytes or rec.pixel_offset is None:
            raise InputError(rec.path, f"pixel data is {rec.pixel_length} bytes, expected {nbytes}; "
                             f"the file is truncated", "re-export or re-send it")
        with open(rec.path, "rb") as fp:
            fp.seek(rec.pixel_offset)
            got = fp.readinto(memoryview(stack[k]).cast("B"))
        if got != nbytes:
            raise InputError(rec.path, f"pixel data ends after {got} of {nbytes} bytes; the file is "
                             f"truncated", "re-export or re-send it")
    if 0 < first.bits_stored < first.bits_allocated:
        shift = stack.dtype.type(first.bits_allocated - first.bits_stored)
        np.left_shift(stack, shift, out=stack)
        np.right_shift(stack, shift, out=stack)
    return stack


def _read_dataset(rec: InstanceRecord) -> Dataset:
    """The whole data set, ready to decode: a transfer syntax that the file meta lacks is filled in
    with the one the header index detected, and encapsulated pixel data that only lacks its closing
    Sequence Delimitation Item (all fragments complete) is taken as it is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with BoundedFile(rec.path) as fp:
            ds: Dataset = pydicom.dcmread(fp, force=True)
        if "PixelData" not in ds and UID(rec.transfer_syntax).is_encapsulated:
            ds = _dataset_with_undelimited_pixels(rec) or ds
    if not getattr(ds, "file_meta", None):
        ds.file_meta = FileMetaDataset()
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = UID(rec.transfer_syntax)
    if "NumberOfFrames" in ds:
        try:
            valid = int(str(ds.NumberOfFrames)) == rec.frames
        except (TypeError, ValueError):
            valid = False
        if not valid:  # the index replaced a value that is not a number by what the data holds
            ds.NumberOfFrames = rec.frames
    return ds


def _dataset_with_undelimited_pixels(rec: InstanceRecord) -> Dataset | None:
    with BoundedFile(rec.path) as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
        element, problem = scan_pixel_element(fp, rec.transfer_syntax, fp.size)
        if problem or element is None or element.length is not None or element.delimited:
            return None
        fp.seek(element.offset)
        items = fp.read(element.end - element.offset)
    ds.PixelData = items + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


# Decoded data still in YBR_FULL (chroma upsampled already for 4:2:2) is converted here.
_YBR_FULL = ("YBR_FULL", "YBR_FULL_422")


def _ybr_full_to_rgb(arr: np.ndarray) -> np.ndarray:
    """YBR_FULL -> RGB with pydicom's own arithmetic, one frame at a time, in place.

    pydicom converts a whole multi-frame array at once through a float32 copy four times its size
    (a 120-frame 640x480 cine needs 440 MB; see docs/PITFALLS.md on pydicom#2226).  Frame by frame the
    result is identical and the extra memory is one frame.
    """
    out = arr if arr.flags.writeable else arr.copy()
    frames = out.reshape((-1,) + out.shape[-3:])
    for i in range(frames.shape[0]):
        frames[i] = convert_color_space(frames[i], "YBR_FULL", "RGB")
    return out


_LUT_DATA = ("RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
             "BluePaletteColorLookupTableData", "AlphaPaletteColorLookupTableData")


def _palette_in_little_endian(ds: Dataset, rec: InstanceRecord) -> Dataset:
    """pydicom's ``apply_color_lut`` reads 16-bit (non-segmented) LUT data as little endian whatever
    the file's byte order, so a big-endian palette image comes out with byte-swapped colours.  Swap
    the LUT bytes of big-endian files first (the segmented form is read correctly)."""
    if rec.transfer_syntax != BIG_ENDIAN_TRANSFER_SYNTAX:
        return ds
    desc = ds.get("RedPaletteColorLookupTableDescriptor")
    entries = (int(desc[0]) or 2**16) if desc else 0
    for keyword in _LUT_DATA:
        value = ds.get(keyword)
        if isinstance(value, bytes) and entries and len(value) == 2 * entries:
            setattr(ds, keyword, np.frombuffer(value, dtype=">u2").astype("<u2").tobytes())
    return ds


def _read_with_pydicom(rec: InstanceRecord) -> np.ndarray:
    try:
        ds = _read_dataset(rec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
            arr, info = decoder.as_array(ds, as_rgb=False)  # type: ignore[arg-type]
            if rec.photometric == "PALETTE COLOR":
                arr = apply_color_lut(arr, _palette_in_little_endian(ds, rec))
            elif str(info.get("photometric_interpretation", "")) in _YBR_FULL and arr.shape[-1] == 3:
                arr = _ybr_full_to_rgb(arr)
    except InputError:
        raise
    except Exception as exc:  # pydicom and the plugins raise many types
        raise InputError(rec.path, _describe_decode_error(rec, exc), "re-export or re-send it") from None
    arr = np.asarray(arr)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))  # big-endian files: native byte order out
    colour = rec.samples_per_pixel > 1 or rec.photometric == "PALETTE COLOR"
    # Normalise to (frames, rows, columns[, samples]).
    if colour:
        if arr.ndim == 3:
            arr = arr[np.newaxis]
    elif arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.shape[1:3] != (rec.rows, rec.columns):
        raise InputError(rec.path, f"decoded pixel data has shape {arr.shape}, which does not match "
                         f"Rows {rec.rows} x Columns {rec.columns}", "the header or the data is corrupt")
    return arr


def _describe_decode_error(rec: InstanceRecord, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "broadcast" in low or ("buffer" in low and "size" in low):
        return (f"decoded pixel data does not fit Rows {rec.rows} x Columns {rec.columns} x "
                f"{rec.samples_per_pixel} samples x {rec.frames} frames from the header ({text})")
    if "length" in low and ("match" in low or "expected" in low or "short" in low):
        return f"pixel data is truncated or has the wrong length ({text})"
    if "transfer syntax" in low or "no pixel data handler" in low or "decod" in low:
        return f"pixel data cannot be decoded ({rec.transfer_syntax_name}): {text}"
    return f"pixel data cannot be read ({type(exc).__name__}: {text})"


def read_frames(rec: InstanceRecord) -> np.ndarray:
    """Stored values of every frame: ``(frames, rows, columns)`` or ``(..., 3)`` for colour (RGB).

    Colour data is returned as RGB (YBR converted, palettes applied).  Rescale and MONOCHROME1
    inversion are left to the caller, which knows the series.
    """
    if not rec.has_pixels:
        raise InputError(rec.path, "has no pixel data", "it is not an image (a report or a state?)")
    if rec.samples_per_pixel > 1 and rec.photometric not in _COLOUR_OK:
        raise InputError(rec.path, f"unsupported photometric interpretation {rec.photometric!r}")
    arr = _read_native(rec)
    if arr is None:
        arr = _read_with_pydicom(rec)
    return arr


def read_frames_safe(rec: InstanceRecord) -> np.ndarray | InputError:
    """:func:`read_frames` for process pools: errors are returned, not raised."""
    try:
        return read_frames(rec)
    except InputError as exc:
        return exc


def dataset_for(rec: InstanceRecord) -> Any:
    """The whole data set of a record (for wrappers that need more than the index has)."""
    return _read_dataset(rec)
