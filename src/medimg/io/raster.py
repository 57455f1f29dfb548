"""Photographs and radiographs in PNG, JPEG, TIFF (and GIF, BMP) as 2-D :class:`~medimg.image.Image`.

Read with Pillow: 8-bit and 16-bit grey stay ``uint8`` / ``uint16``; colour becomes ``(1, y, x, 3)``
``uint8`` RGB.  Alpha is dropped (``meta["alpha_dropped"]``), palette images become RGB, an EXIF
orientation is applied.  Spacing is 1.0 mm unless a TIFF states its resolution in cm or inch.

Write PNG only: ``uint8``/``uint16`` grey and ``uint8`` RGB as they are; anything else needs an
explicit ``window=(low, high)`` that maps it to 8 bits.

>>> image = read_raster("fundus.tif", modality="XC")
>>> write_png(ct, "slice.png", slice_index=ct.shape[0] // 2, window=(-1000, 400))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedFormatError
from ..image import Image
from ._atomic import atomic_output

__all__ = ["RASTER_EXTENSIONS", "read_raster", "write_png"]

RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")

PathLike = str | os.PathLike[str]

# TIFF tags: XResolution, YResolution, ResolutionUnit (2 = inch, 3 = cm).
_X_RES, _Y_RES, _RES_UNIT = 282, 283, 296
_MM_PER_UNIT = {2: (25.4, "inch"), 3: (10.0, "cm")}


def _warn(meta: dict[str, Any], code: str, message: str) -> None:
    meta.setdefault("warnings", []).append({"code": code, "message": message})


def _tiff_spacing(pil: Any, meta: dict[str, Any]) -> tuple[float, float] | None:
    """(row, column) spacing in mm from TIFF resolution tags, when they give a physical unit."""
    tags = getattr(pil, "tag_v2", None)
    if tags is None or _RES_UNIT not in tags or _X_RES not in tags or _Y_RES not in tags:
        return None
    unit = int(tags[_RES_UNIT])
    if unit not in _MM_PER_UNIT:
        return None
    mm, name = _MM_PER_UNIT[unit]
    xres, yres = float(tags[_X_RES]), float(tags[_Y_RES])
    if not (xres > 0 and yres > 0 and np.isfinite(xres) and np.isfinite(yres)):
        meta["tiff_resolution_ignored"] = f"{xres:g} x {yres:g} pixels per {name}"
        return None
    meta["spacing_source"] = f"TIFF XResolution/YResolution ({xres:g} x {yres:g} pixels per {name})"
    return (mm / yres, mm / xres)


def _pixels(pil: Any, meta: dict[str, Any], fmt: str | None) -> np.ndarray:
    """The array of a Pillow image: grey (y, x) or colour (y, x, 3)."""
    mode = pil.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in pil.info else "RGB"
        pil = pil.convert(mode)
        meta["converted_from"] = "palette"
    elif mode == "1":
        pil = pil.convert("L")  # bilevel -> 0/255
        meta["converted_from"] = "1-bit"
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        meta["converted_from"] = mode
        pil = pil.convert("RGB")
        mode = "RGB"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        meta["alpha_dropped"] = True
        _warn(meta, "alpha_dropped", f"the {mode} image's alpha channel was dropped")
        pil = pil.convert("RGB" if mode.startswith(("RGB", "P")) else "L")
    arr = np.asarray(pil)
    if arr.dtype.byteorder not in ("=", "|"):  # I;16B and friends
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if fmt == "PNG" and pil.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # 16-bit grey PNG that an older Pillow opened as 32-bit
    return arr


def read_raster(path: PathLike, *, modality: str = "OT", frame: int = 0) -> Image:
    """Read a PNG, JPEG, TIFF, GIF or BMP file as a 2-D image (``z == 1``).

    Parameters
    ----------
    path:
        The image file.
    modality:
        DICOM modality code, ``"OT"`` by default (``"XC"`` for clinical photographs, ``"DX"`` for
        radiographs, ...).
    frame:
        Which page of a multi-page TIFF or animated GIF to read (a warning says there were others).

    Returns
    -------
    Image
        ``(1, y, x)`` grey (uint8, uint16, int32 or float32 as stored) or ``(1, y, x, 3)`` uint8 RGB.
        Spacing is ``(1, sy, sx)``: 1.0 mm unless TIFF resolution tags give a cm or inch unit
        (then ``meta["spacing_source"]`` says so).  Origin 0 and :data:`medimg.image.AXIAL_IDENTITY` direction (as
        SimpleITK reads such files): a raster file has no patient geometry.

    Raises
    ------
    InputError
        Missing, empty, truncated or undecodable file, or a frame that does not exist.
    """
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file" if not p.exists() else "is not a file")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)", "re-export or copy it again")
    meta: dict[str, Any] = {"source_path": str(p)}
    try:
        with PILImage.open(p) as pil:
            meta["source_format"] = pil.format
            n_frames = int(getattr(pil, "n_frames", 1))
            if not 0 <= frame < n_frames:
                msg = f"has {n_frames} frame(s); frame {frame} does not exist"
                raise InputError(p, msg, f"pass frame=0..{n_frames - 1}")
            if n_frames > 1:
                pil.seek(frame)
                _warn(meta, "multi_frame", f"the file has {n_frames} frames; frame {frame} was read")
            spacing = _tiff_spacing(pil, meta) if pil.format == "TIFF" else None
            orientation = int(pil.getexif().get(0x0112, 1) or 1)
            if 2 <= orientation <= 8:
                pil_upright = ImageOps.exif_transpose(pil)
                meta["exif_orientation_applied"] = orientation
                if spacing is not None and orientation in (5, 6, 7, 8):  # rotated by 90 degrees
                    spacing = (spacing[1], spacing[0])
                arr = _pixels(pil_upright, meta, pil.format)
            else:
                arr = _pixels(pil, meta, pil.format)
    except InputError:
        raise
    except UnidentifiedImageError:
        msg = "not an image file Pillow can read (PNG, JPEG, TIFF, GIF, BMP)"
        raise InputError(p, msg, "check that the file is complete and has the right extension") from None
    except PILImage.DecompressionBombError as exc:
        raise InputError(p, str(exc), "refused as a possible decompression bomb") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        msg = f"cannot decode image data ({type(exc).__name__}: {exc})"
        raise InputError(p, msg, "the file is truncated or damaged") from None
    if arr.ndim not in (2, 3):
        msg = f"decoded to an array of shape {arr.shape}; expected grey or RGB"
        raise InputError(p, msg)
    sy, sx = spacing if spacing is not None else (1.0, 1.0)
    return Image(arr[np.newaxis], spacing=(1.0, sy, sx), modality=modality,
                 meta=meta)


def _png_array(image: Image, path: Path, window: tuple[float, float] | None,
               slice_index: int | None) -> np.ndarray:
    arr = image.array
    if arr.shape[0] > 1:
        if slice_index is None:
            msg = (f"the image has {arr.shape[0]} slices and a PNG holds one")
            hint = f"pass slice_index= (the middle slice is {arr.shape[0] // 2})"
            raise UnsupportedFormatError(path, msg, hint)
        if not -arr.shape[0] <= slice_index < arr.shape[0]:
            msg = f"slice_index {slice_index} is outside 0..{arr.shape[0] - 1}"
            raise UnsupportedFormatError(path, msg, "pass an index of an existing slice")
    arr = arr[slice_index if slice_index is not None else 0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] != 3:
        msg = f"PNG stores grey or RGB, got {arr.shape[-1]} channels"
        raise UnsupportedFormatError(path, msg, "select one channel or three first")
    if window is not None:
        low, high = (float(v) for v in window)
        if not high > low:
            msg = f"window {window!r} must be (low, high) with high > low"
            raise UnsupportedFormatError(path, msg, "pass e.g. window=(-1000, 400)")
        scaled = (arr.astype(np.float64) - low) / (high - low)
        return np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint8 or (arr.dtype == np.uint16 and arr.ndim == 2):
        return arr
    kind = "RGB" if arr.ndim == 3 else "grey"
    msg = f"PNG stores uint8/uint16 grey or uint8 RGB, got {arr.dtype} {kind}"
    hint = "window or scale the data first, or pass window=(low, high) to map it to 8 bits"
    raise UnsupportedFormatError(path, msg, hint)


def write_png(image: Image, path: PathLike, *, window: tuple[float, float] | None = None,
              slice_index: int | None = None) -> None:
    """Write one slice of ``image`` as PNG, atomically.

    Parameters
    ----------
    image:
        A 2-D image (``z == 1``), or a volume together with ``slice_index``.
    path:
        Destination file.
    window:
        ``(low, high)``: map values linearly to 0..255 (clipped) and write 8-bit.  Needed for any
        type other than uint8/uint16 grey and uint8 RGB; bool masks are written as 0/255.
    slice_index:
        The slice of a volume to write (e.g. ``image.shape[0] // 2`` for the middle one).

    Raises
    ------
    UnsupportedFormatError
        The data cannot be stored as PNG as it is (the message says what to do).
    InputError
        The destination cannot be written.  No file is left behind on any error.
    """
    from PIL import Image as PILImage

    path = Path(path)
    arr = np.ascontiguousarray(_png_array(image, path, window, slice_index))
    pil = PILImage.fromarray(arr)
    with atomic_output(path) as tmp:
        try:
            pil.save(tmp, format="PNG")
        except OSError as exc:
            msg = f"writing PNG failed ({exc.strerror or exc})"
            raise InputError(path, msg, "check the disk space and permissions") from None
