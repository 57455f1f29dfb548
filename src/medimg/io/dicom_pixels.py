"""Pixel data of one DICOM file as a numpy array of frames.

Decoding is pydicom's, with the pylibjpeg plugins for JPEG, JPEG-LS, JPEG 2000 and RLE.  The one thing
done here without pydicom is reading *native* (uncompressed little-endian, single-sample) pixel data
straight from the file offset the header index recorded: the bytes are the values, so there is nothing
to decode, and it skips parsing the header a second time.  A test checks it equals pydicom's array for
every such file we have.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut

from ..errors import InputError
from .dicom_index import InstanceRecord

__all__ = ["read_frames"]

_COLOUR_OK = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "PALETTE COLOR"}


def _native_dtype(rec: InstanceRecord) -> np.dtype | None:
    if rec.samples_per_pixel != 1 or rec.bits_allocated not in (8, 16, 32):
        return None
    if rec.pixel_representation == 1 and rec.bits_stored != rec.bits_allocated:
        return None  # needs sign extension of the stored bits: leave it to pydicom
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
    return arr.reshape(rec.frames, rec.rows, rec.columns)


def _read_with_pydicom(rec: InstanceRecord) -> np.ndarray:
    try:
        ds = pydicom.dcmread(rec.path, force=True)
        if rec.photometric == "PALETTE COLOR":
            arr = apply_color_lut(ds.pixel_array, ds)
        else:
            arr = ds.pixel_array
    except InputError:
        raise
    except Exception as exc:  # pydicom and the plugins raise many types
        raise InputError(rec.path, _describe_decode_error(rec, exc), "re-export or re-send it") from None
    arr = np.asarray(arr)
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
    return pydicom.dcmread(rec.path, force=True)
