"""Frames of a stored instance for WADO-RS: the stored bytes of one frame (the compressed bitstream, or
native values in little endian), the decoded frame, and a rendered image (PNG/JPEG) with windowing.

Native pixel data is read frame by frame from its offset in the file (a lazily read header gives it),
so a viewer asking for frame 87 of a cine does not load the other 119.  Encapsulated pixel data is split
into frames by pydicom (Basic or Extended Offset Table, or one fragment per frame) and decoded by pydicom
with the pylibjpeg plugins.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import UID

__all__ = [
    "EXPLICIT_LE",
    "FrameError",
    "PixelSource",
    "Window",
    "media_type_of",
    "parse_window",
    "render",
]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE = frozenset({EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED})

# PS3.18 Table 8.7.3-5 (the media type of a compressed frame by transfer syntax)
_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.110": "image/jxl", "1.2.840.10008.1.2.4.111": "image/jxl",
    "1.2.840.10008.1.2.4.112": "image/jxl",
}
# older or alternative names clients still send
MEDIA_ALIASES = {"image/x-jls": "image/jls", "image/x-dicom-rle": "image/dicom-rle"}


class FrameError(ValueError):
    """A frame that cannot be given; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


def media_type_of(transfer_syntax: str) -> str:
    """The media type of one compressed frame in ``transfer_syntax`` (application/octet-stream if none)."""
    return _MEDIA.get(transfer_syntax, "application/octet-stream")


@dataclass
class PixelSource:
    """The pixel data of one stored instance, described by its header."""

    path: Path
    transfer_syntax: str
    header: Dataset  # read lazily: pixel data (and other large values) not loaded
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    frames: int
    photometric: str

    @classmethod
    def open(cls, path: Path, transfer_syntax: str) -> PixelSource:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, defer_size=1024)
            except Exception as exc:
                raise FrameError(f"the stored file cannot be read ({exc})", 500) from None
        if not any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009)):
            raise FrameError("the instance has no pixel data (it is not an image)", 404)
        if 0x7FE00010 not in ds:
            raise FrameError("float pixel data is not served as frames", 406)

        def number(keyword: str, default: int) -> int:
            try:
                return int(ds.get(keyword, default) or default)
            except (TypeError, ValueError):
                return default

        rows, columns = number("Rows", 0), number("Columns", 0)
        if rows <= 0 or columns <= 0:
            raise FrameError("the header has no valid Rows and Columns", 404)
        return cls(path, transfer_syntax, ds, rows, columns, number("SamplesPerPixel", 1),
                   number("BitsAllocated", 16), max(1, number("NumberOfFrames", 1)),
                   str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip())

    @property
    def is_native(self) -> bool:
        return self.transfer_syntax in NATIVE or not UID(self.transfer_syntax).is_encapsulated

    @property
    def frame_bits(self) -> int:
        return self.rows * self.columns * self.samples * self.bits_allocated

    def check(self, number: int) -> int:
        """The 0-based index of frame ``number`` (1-based), or FrameError."""
        if not 1 <= number <= self.frames:
            raise FrameError(f"frame {number} does not exist: the instance has {self.frames} "
                             f"frame{'s' if self.frames != 1 else ''}", 404)
        return number - 1

    # ------------------------------------------------------------------------------ stored bytes
    def _native_all(self) -> bytes:
        value = self.header.PixelData
        return bytes(value)

    def native_frame(self, index: int) -> bytes:
        """Frame ``index`` (0-based) of native pixel data, little endian."""
        bits = self.frame_bits
        raw = self.header.get_item(0x7FE00010, keep_deferred=True)
        start_bit, end_bit = index * bits, (index + 1) * bits
        first, last = start_bit // 8, (end_bit + 7) // 8
        if (isinstance(raw, RawDataElement) and raw.value is None and raw.value_tell is not None
                and self.transfer_syntax != DEFLATED):
            if last > raw.length:
                raise self._short(raw.length, index)
            with open(self.path, "rb") as fp:
                fp.seek(raw.value_tell + first)
                data = fp.read(last - first)
            if len(data) != last - first:
                raise self._short(raw.value_tell + len(data), index)
        else:
            whole = self._native_all()
            if last > len(whole):
                raise self._short(len(whole), index)
            data = whole[first:last]
        if bits % 8 or start_bit % 8:  # 1-bit data whose frames are not byte aligned
            unpacked = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
            offset = start_bit - first * 8
            data = np.packbits(unpacked[offset:offset + bits], bitorder="little").tobytes()
        if self.transfer_syntax == EXPLICIT_BE and self.bits_allocated in (16, 32):
            size = self.bits_allocated // 8
            data = np.frombuffer(data, dtype=f">u{size}").astype(f"<u{size}").tobytes()
        return data

    def _short(self, have: int, index: int) -> FrameError:
        expected = (index + 1) * self.frame_bits // 8
        return FrameError(f"frame {index + 1} is not in the stored pixel data ({have} bytes, "
                          f"{expected} needed for Rows x Columns x Samples x Bits Allocated); the stored "
                          "file is truncated", 404)

    def _encapsulated(self) -> bytes:
        try:
            return bytes(self.header.PixelData)
        except Exception as exc:
            raise FrameError(f"the stored pixel data cannot be read ({exc})", 500) from None

    def compressed_frame(self, index: int) -> bytes:
        """The compressed bitstream of frame ``index`` (0-based), as stored."""
        kw: dict[str, Any] = {"number_of_frames": self.frames}
        ext = self.header.get("ExtendedOffsetTable")
        lengths = self.header.get("ExtendedOffsetTableLengths")
        if ext is not None and lengths is not None:
            kw["extended_offsets"] = (ext, lengths)
        try:
            return get_frame(self._encapsulated(), index, **kw)
        except FrameError:
            raise
        except Exception as exc:
            raise FrameError(f"frame {index + 1} cannot be found in the encapsulated pixel data ({exc})",
                             404) from None

    def stored_frame(self, index: int) -> bytes:
        """Frame ``index`` as stored: the compressed bitstream, or native values in little endian."""
        return self.native_frame(index) if self.is_native else self.compressed_frame(index)

    # ------------------------------------------------------------------------------ decoded
    def decoded(self, index: int) -> np.ndarray:
        """Frame ``index`` decoded by pydicom: (rows, columns) or (rows, columns, samples); YBR colour
        converted to RGB as pydicom does by default."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = self.header
                if self.is_native and self.transfer_syntax != DEFLATED:
                    arr = self._native_array(index)
                else:
                    arr = pixel_array(ds, index=index)
        except FrameError:
            raise
        except Exception as exc:
            raise FrameError(f"frame {index + 1} cannot be decoded ({self.transfer_syntax}): {exc}",
                             406) from None
        return np.asarray(arr)

    def _native_array(self, index: int) -> np.ndarray:
        data = self.native_frame(index)
        if self.bits_allocated == 1:
            bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[:self.frame_bits]
            return bits.reshape(self.rows, self.columns)
        signed = int(self.header.get("PixelRepresentation", 0) or 0) == 1
        dtype = np.dtype(f"<{'i' if signed else 'u'}{self.bits_allocated // 8}")
        arr = np.frombuffer(data, dtype=dtype)
        stored = int(self.header.get("BitsStored", self.bits_allocated) or self.bits_allocated)
        if 0 < stored < self.bits_allocated:
            arr = arr.copy()
            shift = arr.dtype.type(self.bits_allocated - stored)
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)
        if self.samples > 1:
            planar = int(self.header.get("PlanarConfiguration", 0) or 0) == 1
            if planar:
                return arr.reshape(self.samples, self.rows, self.columns).transpose(1, 2, 0)
            return arr.reshape(self.rows, self.columns, self.samples)
        return arr.reshape(self.rows, self.columns)

    def uncompressed_frame(self, index: int) -> bytes:
        """Frame ``index`` as Explicit VR Little Endian values: stored native bytes, or decoded."""
        if self.is_native:
            return self.native_frame(index)
        arr = self.decoded(index)
        return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


# ---------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"  # LINEAR | LINEAR_EXACT | SIGMOID (PS3.3 C.11.2.1.2)


def parse_window(text: str) -> Window:
    """``center,width[,function]`` of the WADO-RS ``window`` parameter."""
    pieces = [p.strip() for p in text.split(",")]
    if len(pieces) not in (2, 3):
        raise ValueError(f"window={text!r} is not 'center,width[,function]'")
    try:
        center, width = float(pieces[0]), float(pieces[1])
    except ValueError:
        raise ValueError(f"window={text!r}: center and width must be numbers") from None
    function = (pieces[2] if len(pieces) == 3 else "linear").upper().replace("-", "_")
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise ValueError(f"window function {pieces[2]!r} is not linear, linear-exact or sigmoid")
    if width <= 0 or (function == "LINEAR" and width < 1):
        raise ValueError(f"window width {pieces[1]} must be positive (at least 1 for linear)")
    if not (np.isfinite(center) and np.isfinite(width)):
        raise ValueError(f"window={text!r} is not finite")
    return Window(center, width, function)


def _apply_window(values: np.ndarray, w: Window) -> np.ndarray:
    """Values -> 0..255 by the VOI functions of PS3.3 C.11.2.1.2."""
    x = values.astype(np.float64)
    if w.function == "LINEAR_EXACT":
        out = (x - (w.center - w.width / 2)) / w.width
    elif w.function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (x - w.center) / w.width))
    else:
        out = ((x - (w.center - 0.5)) / (w.width - 1)) + 0.5
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _first(value: Any) -> float | None:
    try:
        if isinstance(value, list | tuple | MultiValue):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _grey(src: PixelSource, arr: np.ndarray, index: int, window: Window | None) -> np.ndarray:
    ds = src.header
    values = apply_modality_lut(arr, ds) if src.bits_allocated > 1 else arr.astype(np.float64)
    if window is None:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            window = Window(center, max(width, 1.0) if function == "LINEAR" else width,
                            function if function in ("LINEAR", "LINEAR_EXACT", "SIGMOID") else "LINEAR")
        elif "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds, index=0)
    if window is None:
        lo, hi = float(np.min(values)), float(np.max(values))
        window = Window((lo + hi) / 2, max(hi - lo, 1.0), "LINEAR_EXACT")
    out = _apply_window(values, window)
    if src.photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _colour(src: PixelSource, arr: np.ndarray) -> np.ndarray:
    ds = src.header
    if src.photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        bits = 16 if arr.dtype.itemsize > 1 else 8
    else:
        bits = int(ds.get("BitsStored", src.bits_allocated) or src.bits_allocated)
    if arr.dtype == np.uint8 and bits <= 8:
        return arr
    scale = 255.0 / float((1 << min(bits, 32)) - 1)
    return np.clip(arr.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)


def render(src: PixelSource, index: int, *, media_type: str = "image/jpeg", window: Window | None = None,
           viewport: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    """Frame ``index`` as a PNG or JPEG image: Modality LUT, then the ``window`` (or the header's VOI:
    Window Center/Width, VOI LUT Sequence, else the frame's range), MONOCHROME1 inverted; colour as RGB.
    ``viewport`` (width, height) scales the image to fit, keeping its aspect ratio."""
    from PIL import Image

    arr = src.decoded(index)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) or src.photometric == "PALETTE COLOR":
        pixels = _colour(src, arr)
        if pixels.ndim == 3 and pixels.shape[-1] == 4:
            pixels = pixels[..., :3]
        image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    else:
        image = Image.fromarray(np.ascontiguousarray(_grey(src, arr, index, window)), "L")
    if viewport is not None:
        vw, vh = viewport
        scale = min(vw / image.width, vh / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if media_type == "image/png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
