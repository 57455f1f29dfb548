"""NIfTI, NRRD and MetaImage files as :class:`~medimg.image.Image`.

NIfTI (``.nii``, ``.nii.gz``) is read and written with nibabel: it applies the header's scaling only
when there is one (and keeps integer data integer when the scaling is integral too), reads the sform
or qform exactly as stored (shears included), and turns a 4th data axis into the channel axis.  NRRD
(``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) are read and written with SimpleITK, which
keeps the full direction matrix (rotations and gantry-tilt shears) in double precision.

>>> image = read_itk("ct.nii.gz")
>>> write_itk(image, "ct.nrrd")

Writers are atomic: the file appears complete or not at all.  NIfTI-1 stores its affine as float32,
so geometry written to NIfTI is exact to about 1e-7 of its magnitude; NRRD and MetaImage keep it to
the last digit.  A sheared (gantry-tilt) geometry is kept exactly in the NIfTI sform, but tools that
read NIfTI with ITK make it orthogonal; prefer NRRD or MetaImage for such volumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedFormatError
from ..image import Image
from ._atomic import atomic_output

__all__ = [
    "ITK_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "SITK_EXTENSIONS",
    "itk_extension",
    "read_itk",
    "read_nifti",
    "write_itk",
    "write_nifti",
]

NIFTI_EXTENSIONS = (".nii", ".nii.gz")
SITK_EXTENSIONS = (".nrrd", ".nhdr", ".mha", ".mhd")
ITK_EXTENSIONS = NIFTI_EXTENSIONS + SITK_EXTENSIONS

_FORMAT_NAMES = {
    ".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD",
    ".mha": "MetaImage", ".mhd": "MetaImage",
}

PathLike = str | os.PathLike[str]


def itk_extension(path: PathLike) -> str | None:
    """The format extension of ``path`` (lower case, ``".nii.gz"`` as one), or None if not ours."""
    name = Path(path).name.lower()
    for ext in sorted(ITK_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def _require_extension(path: Path) -> str:
    ext = itk_extension(path)
    if ext is None:
        msg = f"not a NIfTI, NRRD or MetaImage file name (expected one of {', '.join(ITK_EXTENSIONS)})"
        raise UnsupportedFormatError(path, msg, "rename the file or use medimg.io.read")
    return ext


def _check_readable(path: PathLike) -> None:
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file")
    if not p.is_file():
        raise InputError(p, "is not a file", "pass the image file itself")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)", "re-export or copy it again")


def _short(exc: BaseException) -> str:
    """One line of a library exception (SimpleITK's span many lines with source paths)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "ITK ERROR" in ln:
            ln = ln.split("ITK ERROR:", 1)[-1].strip()
            return ln.split(": ", 1)[-1] if ln.count(":") else ln
    text = lines[-1] if lines else type(exc).__name__
    return text[:300]


# ---------------------------------------------------------------------------------------------- read
def read_itk(path: PathLike, *, modality: str = "OT") -> Image:
    """Read a NIfTI, NRRD or MetaImage file.

    Parameters
    ----------
    path:
        ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd`` file.
    modality:
        DICOM modality code to give the image (these formats do not store one).

    Returns
    -------
    Image
        Voxels in the file's data type, geometry as the file states it (LPS).

    Raises
    ------
    UnsupportedFormatError
        The extension is not one of these formats.
    InputError
        The file is missing, empty, truncated or not of the format its name says.
    """
    path = Path(path)
    ext = _require_extension(path)
    if ext in NIFTI_EXTENSIONS:
        return read_nifti(path, modality=modality)
    return _read_sitk(path, ext, modality)


def _integral(value: float | None) -> bool:
    return value is not None and np.isfinite(value) and float(value).is_integer()


def _fit_integer(values: np.ndarray, prefer: np.dtype) -> np.ndarray:
    """``values`` (int64) in ``prefer`` or the narrowest wider integer type that holds them."""
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dt in (prefer, np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64)):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max and dt.itemsize >= prefer.itemsize:
            return values.astype(dt)
    return values  # pragma: no cover - int64 always fits


def _nifti_data(img: Any, meta: dict[str, Any]) -> np.ndarray:
    """The data array of a nibabel NIfTI image, scaled only if the file says so.

    On load nibabel moves ``scl_slope``/``scl_inter`` from the header to the array proxy (the
    image's header then reports ``(None, None)``), so the proxy is asked.
    """
    proxy = img.dataobj
    raw = np.asanyarray(proxy.get_unscaled())
    s = float(getattr(proxy, "slope", 1.0))
    i = float(getattr(proxy, "inter", 0.0))
    if (s, i) == (1.0, 0.0):
        data = raw
    else:
        meta["scale_slope"], meta["scale_intercept"] = s, i
        if raw.dtype.kind in "iu" and _integral(s) and _integral(i):
            data = _fit_integer(raw.astype(np.int64) * int(s) + int(i), raw.dtype)
        else:  # float32 for data of up to 16 bits and float32, float64 otherwise (as nibabel)
            ftype = np.result_type(raw.dtype, np.float32)
            data = raw.astype(ftype) * ftype.type(s) + ftype.type(i)
    if data.dtype.names:  # RGB24 / RGBA32 structured voxels -> channel axis
        data = np.stack([data[name] for name in data.dtype.names], axis=-1)
    if data.ndim == 5 and data.shape[3] == 1:  # ITK's vector layout: (x, y, z, 1, c)
        data = data[:, :, :, 0, :]
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    return np.asarray(data)


def read_nifti(path: PathLike, *, modality: str = "OT") -> Image:
    """Read a NIfTI-1 or NIfTI-2 file with nibabel (see :func:`read_itk`).

    The affine is nibabel's choice (sform if set, else qform).  A file with neither gets nibabel's
    fallback geometry and a ``no_orientation`` warning in ``meta``.  A 4th data axis (time, volumes
    or vector components) becomes the channel axis.
    """
    import nibabel as nib

    path = Path(path)
    _check_readable(path)
    meta: dict[str, Any] = {"source_path": str(path)}
    try:
        img = nib.load(os.fspath(path))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            msg = f"is a {type(img).__name__}, not NIfTI"
            raise InputError(path, msg, "give it a name that matches its format")
        data = _nifti_data(img, meta)
    except InputError:
        raise
    except Exception as exc:  # nibabel, gzip and zlib raise many types for broken files
        msg = f"not a readable NIfTI file ({type(exc).__name__}: {_short(exc)})"
        raise InputError(path, msg, "the file is truncated, damaged or not NIfTI") from None
    if data.ndim < 2 or data.ndim > 4:
        msg = f"has {data.ndim}-D data of shape {data.shape}; medimg reads 2-D to 4-D NIfTI"
        raise InputError(path, msg, "split it into 3-D or 4-D files first")
    header = img.header
    meta["source_format"] = "NIfTI-2" if isinstance(img, nib.Nifti2Image) else "NIfTI-1"
    if int(header["sform_code"]) > 0:
        meta["nifti_affine"] = "sform"
    elif int(header["qform_code"]) > 0:
        meta["nifti_affine"] = "qform"
    else:
        meta["nifti_affine"] = "none"
        meta["warnings"] = [{
            "code": "no_orientation",
            "message": "the NIfTI header sets neither sform nor qform; the geometry is nibabel's "
                       "fallback (voxel sizes only) and the orientation is unknown",
        }]
    if data.ndim == 4:
        meta["channel_axis_from"] = "NIfTI 4th axis"
    holder = nib.spatialimages.SpatialImage(data, img.affine)
    try:
        return Image.from_nibabel(holder, modality=modality, meta=meta)
    except ValueError as exc:  # a singular or non-finite affine
        msg = f"has unusable geometry ({exc})"
        raise InputError(path, msg, "fix the sform/qform in the header") from None


def _read_sitk(path: Path, ext: str, modality: str) -> Image:
    import SimpleITK as sitk

    _check_readable(path)
    fmt = _FORMAT_NAMES[ext]
    try:
        img = sitk.ReadImage(os.fspath(path))
    except RuntimeError as exc:
        msg = f"not a readable {fmt} file ({_short(exc)})"
        raise InputError(path, msg, "the file is truncated, damaged or not " + fmt) from None
    meta: dict[str, Any] = {"source_path": str(path), "source_format": fmt}
    dim = img.GetDimension()
    if dim == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
        dim = 3
    if dim in (2, 3):
        try:
            return Image.from_sitk(img, modality=modality, meta=meta)
        except ValueError as exc:  # zero spacing or a singular direction
            msg = f"has unusable geometry ({exc})"
            raise InputError(path, msg, "fix the spacing and direction in the header") from None
    if dim == 4 and img.GetNumberOfComponentsPerPixel() == 1:
        # (t, z, y, x) -> (z, y, x, t): the 4th axis becomes the channel axis, as for NIfTI.
        arr = np.moveaxis(sitk.GetArrayFromImage(img), 0, -1)
        geo = sitk.Image([1, 1, 1], sitk.sitkUInt8)
        geo.SetSpacing(img.GetSpacing()[:3])
        geo.SetOrigin(img.GetOrigin()[:3])
        geo.SetDirection(tuple(np.array(img.GetDirection()).reshape(4, 4)[:3, :3].ravel()))
        meta["channel_axis_from"] = f"{fmt} 4th axis"
        return Image.from_sitk(geo, modality=modality, meta=meta).replace(
            array=np.ascontiguousarray(arr)
        )
    msg = (f"has {dim}-D data with {img.GetNumberOfComponentsPerPixel()} components per voxel; "
           "medimg reads 2-D and 3-D images, optionally with one channel axis")
    raise InputError(path, msg, "split it into 3-D files first")


# --------------------------------------------------------------------------------------------- write
def write_itk(image: Image, path: PathLike, *, compress: bool = True) -> None:
    """Write ``image`` as NIfTI, NRRD or MetaImage, chosen by the extension of ``path``.

    Parameters
    ----------
    image:
        The image; a channel axis is written as vector voxels (NRRD, MetaImage) or the 4th NIfTI axis.
    path:
        Destination; ``.nii.gz`` is compressed, ``.nii`` is not.
    compress:
        Compress NRRD and MetaImage data (lossless).

    Raises
    ------
    UnsupportedFormatError
        Unknown extension, or a data type the format cannot store.
    InputError
        The destination cannot be written.  No file is left behind on any error.
    """
    path = Path(path)
    ext = _require_extension(path)
    if ext in NIFTI_EXTENSIONS:
        write_nifti(image, path)
        return
    import SimpleITK as sitk

    arr = image.array
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    try:
        sitk_img = image.replace(array=arr).to_sitk()
    except (RuntimeError, TypeError, ValueError) as exc:
        msg = f"{_FORMAT_NAMES[ext]} cannot store {arr.dtype} data ({_short(exc)})"
        raise UnsupportedFormatError(path, msg, "cast the array to a numeric type first") from None
    with atomic_output(path) as tmp:
        try:
            sitk.WriteImage(sitk_img, os.fspath(tmp), useCompression=compress)
        except RuntimeError as exc:
            msg = f"writing {_FORMAT_NAMES[ext]} failed ({_short(exc)})"
            raise InputError(path, msg, "check the disk space and permissions") from None


def _nifti_array(arr: np.ndarray, path: Path) -> np.ndarray:
    """``arr`` in a type NIfTI tools accept; values are never changed."""
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    if arr.dtype in (np.int64, np.uint64):
        # nibabel refuses 64-bit integers by default because many NIfTI tools cannot read them.
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        for dt in (np.uint8, np.int16, np.uint16, np.int32, np.uint32):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                return arr.astype(dt)
        msg = f"values {lo}..{hi} do not fit 32-bit integers, which is what NIfTI tools read"
        raise UnsupportedFormatError(path, msg, "write .nrrd or .mha instead")
    return arr


def write_nifti(image: Image, path: PathLike) -> None:
    """Write ``image`` as NIfTI-1 with nibabel (affine in sform and qform, units mm).

    64-bit integer arrays are stored in the narrowest 8/16/32-bit integer type that holds their
    values (many NIfTI tools cannot read int64); float16 is stored as float32.
    """
    import nibabel as nib

    path = Path(path)
    arr = _nifti_array(image.array, path)
    try:
        nii = image.replace(array=arr).to_nibabel()
    except (nib.spatialimages.HeaderDataError, ValueError) as exc:
        msg = f"NIfTI cannot store {arr.dtype} data ({_short(exc)})"
        raise UnsupportedFormatError(path, msg, "cast the array to a numeric type first") from None
    with atomic_output(path) as tmp:
        try:
            nib.save(nii, os.fspath(tmp))
        except OSError as exc:
            msg = f"writing NIfTI failed ({exc.strerror or exc})"
            raise InputError(path, msg, "check the disk space and permissions") from None
