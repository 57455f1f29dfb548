"""Pick the reader or writer for a path: DICOM, NIfTI/NRRD/MetaImage, PNG/JPEG/TIFF, NPZ.

>>> image = read("study/")              # a DICOM folder (or file): medimg.io.dicom.read_dicom
>>> image = read("ct.nii.gz")           # by extension: medimg.io.itk, .raster, .datasets
>>> write(image, "ct.nrrd")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, UnsupportedFormatError
from ..image import Image
from .datasets import load_npz_volume
from .dicom import is_dicom_path, read_dicom
from .itk import ITK_EXTENSIONS, itk_extension, read_itk, write_itk
from .raster import RASTER_EXTENSIONS, read_raster, write_png

__all__ = ["READ_EXTENSIONS", "WRITE_EXTENSIONS", "read", "write"]

DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")
READ_EXTENSIONS = DICOM_EXTENSIONS + ITK_EXTENSIONS + RASTER_EXTENSIONS + (".npz",)
WRITE_EXTENSIONS = ITK_EXTENSIONS + (".png",)
_DICOM_ONLY = ("workers", "progress")

PathLike = str | os.PathLike[str]


def _extension(path: Path) -> str:
    """The format extension of a file name (lower case; ``.nii.gz`` as one), or ``""``."""
    return itk_extension(path) or path.suffix.lower()


def _unsupported(path: Path, ext: str) -> UnsupportedFormatError:
    what = f"'{ext}'" if ext else "a file without extension"
    msg = f"unsupported file format ({what}, and not DICOM)"
    hint = "supported: DICOM files and folders, " + ", ".join(READ_EXTENSIONS[len(DICOM_EXTENSIONS):])
    return UnsupportedFormatError(path, msg, hint)


def read(path: PathLike | Sequence[PathLike], series: str | None = None, **kwargs: Any) -> Image:
    """Read an image from a file or folder, choosing the reader from the path.

    Parameters
    ----------
    path:
        A DICOM folder, a DICOM file (any extension: detected by content) or a list of DICOM files;
        or a ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd`` file
        (:func:`medimg.io.itk.read_itk`); a ``.png``, ``.jpg``, ``.jpeg``, ``.tif``, ``.tiff``,
        ``.gif``, ``.bmp`` file (:func:`medimg.io.raster.read_raster`); or an ``.npz`` holding one
        volume (:func:`medimg.io.datasets.load_npz_volume`; datasets with splits are read with
        :func:`medimg.io.datasets.load_npz`).
    series:
        For DICOM: the series to read when there are several (see :func:`medimg.io.dicom.index`).
    **kwargs:
        Passed to the reader: ``workers=`` and ``progress=`` to the DICOM reader (other readers
        ignore them), ``modality=`` to the others, ``frame=`` (raster) and ``key=`` (NPZ).

    Raises
    ------
    UnsupportedFormatError
        A file that is none of these formats.
    InputError
        Missing, empty or unreadable input (subclasses for DICOM series problems).
    """
    if not isinstance(path, str | os.PathLike):
        return read_dicom(path, series=series, **kwargs)
    p = Path(path)
    if p.is_dir():
        return read_dicom(p, series=series, **kwargs)
    if not p.exists():
        raise InputError(p, "no such file or folder")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)", "re-export or copy it again")
    ext = _extension(p)
    if ext in DICOM_EXTENSIONS or (ext not in READ_EXTENSIONS and is_dicom_path(p)):
        return read_dicom(p, series=series, **kwargs)
    if ext not in READ_EXTENSIONS:
        raise _unsupported(p, ext)
    if series is not None:
        msg = f"series={series!r} applies to DICOM input, and this is a {ext} file"
        raise InputError(p, msg, "leave series out")
    for name in _DICOM_ONLY:  # one file, read at once: nothing to parallelise or report
        kwargs.pop(name, None)
    if ext in ITK_EXTENSIONS:
        return read_itk(p, **kwargs)
    if ext in RASTER_EXTENSIONS:
        return read_raster(p, **kwargs)
    return load_npz_volume(p, **kwargs)


def write(image: Image, path: PathLike, **kwargs: Any) -> None:
    """Write ``image`` in the format named by the extension of ``path``, atomically.

    ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``: :func:`medimg.io.itk.write_itk`;
    ``.png``: :func:`medimg.io.raster.write_png` (``slice_index=``, ``window=`` as keywords).

    Raises
    ------
    UnsupportedFormatError
        Another extension, or data the format cannot hold.
    InputError
        The destination cannot be written.  No file is left behind on any error.
    """
    p = Path(path)
    ext = _extension(p)
    if ext in ITK_EXTENSIONS:
        write_itk(image, p, **kwargs)
    elif ext == ".png":
        write_png(image, p, **kwargs)
    else:
        what = f"'{ext}'" if ext else "a file name without extension"
        msg = f"cannot write {what}"
        raise UnsupportedFormatError(p, msg, "write one of " + ", ".join(WRITE_EXTENSIONS))
