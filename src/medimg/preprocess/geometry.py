"""Geometry: resample to a spacing, reorient, crop and pad -- keeping patient coordinates exact.

Every function returns a new :class:`~medimg.image.Image` whose ``origin``/``direction``/``spacing``
place each voxel where the same anatomy lies in the patient (LPS, mm); tests check this with one
shared helper (tests/preprocess/geometry_check.py).  Resampling is SimpleITK's; reorienting is an
exact permutation/flip of axes (nibabel's orientation algebra), with no interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..image import Image
from ._checks import StepError, is_label_map
from .separable import linear_resample

__all__ = ["INTERPOLATORS", "crop", "crop_or_pad", "orientation_code", "pad", "reorient",
           "resample"]

#: Names accepted by :func:`resample` for ``interpolation``.
INTERPOLATORS = ("nearest", "linear", "bspline")


def _sitk_interpolator(name: str) -> int:
    import SimpleITK as sitk

    table = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear,
             "bspline": sitk.sitkBSpline}
    if name not in table:
        msg = f"resample: unknown interpolation {name!r}; use one of {', '.join(INTERPOLATORS)}"
        raise StepError(msg)
    return table[name]


def _target_spacing(image: Image, spacing: float | Sequence[float]) -> np.ndarray:
    sp = np.asarray(spacing, dtype=float).reshape(-1)
    if sp.size == 1:
        sp = np.repeat(sp, 3)
    elif sp.size == 2:  # in-plane only
        sp = np.array([image.spacing[0], sp[0], sp[1]])
    if sp.size != 3 or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        msg = (f"resample: spacing must be one, two (y, x) or three (z, y, x) positive numbers in mm, "
               f"got {spacing!r}")
        raise StepError(msg)
    if image.is_2d:
        sp[0] = image.spacing[0]  # a 2-D image keeps its single plane
    return sp


def resample(
    image: Image,
    spacing: float | Sequence[float],
    interpolation: str | None = None,
    fill: float | None = None,
) -> Image:
    """Resample onto a grid of ``spacing`` mm (``(z, y, x)``) covering the same field of view.

    Parameters
    ----------
    image:
        Any image; colour/multi-channel images are resampled channel by channel.
    spacing:
        Target voxel size in mm: one number (isotropic), ``(y, x)`` (in-plane) or ``(z, y, x)``.
        A 2-D image keeps its single plane.
    interpolation:
        ``"linear"`` (default for intensities), ``"bspline"`` (cubic) or ``"nearest"`` (default,
        and the only choice, for label maps).
    fill:
        Value outside the input (default: the image minimum, i.e. air for CT).

    Returns
    -------
    Image
        The new grid shares the input's direction; its first voxel centre is placed so the grid's
        outer corner matches the input's (same field of view).
    """
    import SimpleITK as sitk

    label = is_label_map(image)
    if interpolation is None:
        interpolation = "nearest" if label else "linear"
    if label and interpolation != "nearest":
        msg = (f"resample: {interpolation!r} interpolation would invent labels between the values of "
               f"a label map; use interpolation='nearest' (or set image.meta['is_label'] = False)")
        raise StepError(msg)
    new_sp = _target_spacing(image, spacing)
    old_shape = np.array(image.spatial_shape, dtype=float)
    new_shape = np.maximum(1, np.round(old_shape * image.spacing / new_sp)).astype(int)
    # Keep the outer corner of the field of view: shift the first centre by half the size change.
    new_origin = image.origin + image.direction @ ((new_sp - image.spacing) / 2.0)
    if image.is_2d:
        new_shape[0] = 1
        new_origin = image.origin + image.direction[:, 1:] @ ((new_sp[1:] - image.spacing[1:]) / 2.0)
    arr = image.array
    work = arr if np.issubdtype(arr.dtype, np.floating) or label else arr.astype(np.float32)
    if fill is None:
        fill = float(arr.min())
    if interpolation == "linear":
        # Same grid directions: trilinear is separable (exactly SimpleITK's result, faster).
        step = new_sp / image.spacing
        start = (new_sp - image.spacing) / (2.0 * image.spacing)
        if image.is_2d:
            step[0], start[0] = 1.0, 0.0
        data = linear_resample(work, tuple(int(v) for v in new_shape), start, step, float(fill))
    else:
        src = image.replace(array=work).to_sitk()
        ref_dir = tuple(float(v) for v in image.direction[:, ::-1].reshape(-1))
        out = sitk.Resample(
            src, [int(v) for v in new_shape[::-1]], sitk.Transform(),
            _sitk_interpolator(interpolation), tuple(float(v) for v in new_origin),
            tuple(float(v) for v in new_sp[::-1]), ref_dir, float(fill), src.GetPixelID(),
        )
        data = sitk.GetArrayFromImage(out)
    if label and data.dtype != arr.dtype:
        data = data.astype(arr.dtype)
    result = image.replace(array=data, spacing=new_sp, origin=new_origin)
    return result.with_step("resample", spacing=[float(v) for v in new_sp],
                            interpolation=interpolation, fill=float(fill),
                            shape=[int(v) for v in data.shape[:3]])


# ---------------------------------------------------------------------------------------- reorient
def orientation_code(image: Image) -> str:
    """Three letters naming where the ``x``, ``y`` and ``z`` array axes point (DICOM/ITK convention).

    ``"LPS"`` means x runs toward the patient's Left, y toward Posterior, z toward Superior (the
    identity direction; what SimpleITK's ``DICOMOrient`` calls "LPS").
    """
    from nibabel.orientations import io_orientation

    ornt = io_orientation(image.affine)  # rows: array axes (z, y, x); world axes are L, P, S
    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    code = [letters[int(ax)][1 if flip > 0 else 0] for ax, flip in ornt]
    return "".join(code[::-1])


def _ornt_from_code(code: str) -> np.ndarray:
    from nibabel.orientations import axcodes2ornt

    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    code = code.upper()
    pairs = sorted(next((i for i, p in enumerate(letters) if ch in p), -1) for ch in code)
    try:
        ornt = axcodes2ornt(tuple(code[::-1]), labels=letters) if pairs == [0, 1, 2] else None
    except Exception:
        ornt = None
    if len(code) != 3 or ornt is None or np.isnan(ornt).any():
        msg = (f"reorient: {code!r} is not an orientation code; give three letters, one from each "
               f"of L/R, P/A, S/I, for the x, y and z axes (e.g. 'LPS' or 'RAS')")
        raise StepError(msg)
    return ornt


def reorient(image: Image, code: str = "LPS") -> Image:
    """Permute and flip axes so that x, y, z point as ``code`` says (default ``"LPS"``, canonical).

    Voxel values are moved, never interpolated; the new geometry places each voxel where it was.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    target = _ornt_from_code(code)
    start = io_orientation(image.affine)
    transform = ornt_transform(start, target)
    if image.is_2d and int(transform[0, 0]) != 0:
        msg = (f"reorient: {code!r} would turn the single slice of a 2-D image (shape {image.shape}) "
               f"into an in-plane axis; reorienting across slices needs a 3-D volume, so give a 2-D "
               f"image a code that keeps its slice axis ({orientation_code(image)[2]} or its opposite "
               f"last)")
        raise StepError(msg)
    spatial = image.spatial_shape
    data = apply_orientation(image.array, transform)  # a channel axis is carried along
    # inv_ornt_aff maps new indices to old ones; compose with the old affine.
    affine = image.affine @ inv_ornt_aff(transform, spatial)
    lin = affine[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    result = image.replace(array=np.ascontiguousarray(data), spacing=spacing, origin=affine[:3, 3],
                           direction=lin / spacing)
    return result.with_step("reorient", code=code.upper(), from_code=orientation_code(image))


# ---------------------------------------------------------------------------------------- crop/pad
def _as_box(image: Image, start: Sequence[int], stop: Sequence[int], step: str) -> tuple[np.ndarray,
                                                                                       np.ndarray]:
    lo = np.asarray(start, dtype=int).reshape(-1)
    hi = np.asarray(stop, dtype=int).reshape(-1)
    shape = np.array(image.spatial_shape)
    if lo.size != 3 or hi.size != 3:
        msg = f"{step}: start and stop must be (z, y, x) indices, got {start!r} and {stop!r}"
        raise StepError(msg)
    if np.any(lo < 0) or np.any(hi > shape) or np.any(hi <= lo):
        msg = (f"{step}: box {lo.tolist()}..{hi.tolist()} does not lie inside the image of shape "
               f"{shape.tolist()} (or is empty); use pad() to grow an image")
        raise StepError(msg)
    return lo, hi


def crop(image: Image, start: Sequence[int], stop: Sequence[int]) -> Image:
    """Keep the voxels ``start <= index < stop`` (``(z, y, x)``); the origin moves with them."""
    lo, hi = _as_box(image, start, stop, "crop")
    data = image.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    result = image.replace(array=data, origin=image.index_to_patient(lo.astype(float)))
    return result.with_step("crop", start=lo.tolist(), stop=hi.tolist())


def _pad_widths(before: Sequence[int] | int, after: Sequence[int] | int | None) -> tuple[np.ndarray,
                                                                                         np.ndarray]:
    b = np.broadcast_to(np.asarray(before, dtype=int), (3,)).copy()
    a = b.copy() if after is None else np.broadcast_to(np.asarray(after, dtype=int), (3,)).copy()
    if np.any(b < 0) or np.any(a < 0):
        msg = f"pad: widths must be >= 0, got before={before!r}, after={after!r}; use crop() to shrink"
        raise StepError(msg)
    return b, a


def pad(image: Image, before: Sequence[int] | int, after: Sequence[int] | int | None = None,
        value: float | None = None) -> Image:
    """Add voxels before and after each axis ``(z, y, x)``; ``value`` defaults to the image minimum."""
    b, a = _pad_widths(before, after)
    if image.is_2d and (b[0] or a[0]):
        msg = (f"pad: padding slices onto a 2-D image (shape {image.shape}) would make a fake volume; "
               f"give zero widths along z")
        raise StepError(msg)
    if value is None:
        value = float(image.array.min())
    widths: list[tuple[int, int]] = [(int(b[i]), int(a[i])) for i in range(3)]
    if image.array.ndim == 4:
        widths.append((0, 0))
    data = np.pad(image.array, widths, mode="constant", constant_values=value)
    result = image.replace(array=data, origin=image.index_to_patient(-b.astype(float)))
    return result.with_step("pad", before=b.tolist(), after=a.tolist(), value=float(value))


def crop_or_pad(image: Image, size: Sequence[int], value: float | None = None) -> Image:
    """Centre-crop or pad to ``size`` ``(z, y, x)`` voxels (each axis on its own)."""
    target = np.asarray(size, dtype=int).reshape(-1)
    if target.size != 3 or np.any(target < 1):
        msg = f"crop_or_pad: size must be three positive voxel counts (z, y, x), got {size!r}"
        raise StepError(msg)
    shape = np.array(image.spatial_shape)
    if image.is_2d and target[0] != 1:
        msg = (f"crop_or_pad: a 2-D image (shape {image.shape}) has one slice; {target[0]} slices "
               f"needs a 3-D volume; give size (1, y, x) for 2-D images")
        raise StepError(msg)
    diff = target - shape
    out = image
    params: dict[str, Any] = {"size": target.tolist()}
    if np.any(diff > 0):
        grow = np.maximum(diff, 0)
        out = pad(out, grow // 2, grow - grow // 2, value=value)
        params["padded"] = out.history[-1]["params"]
    if np.any(diff < 0):
        shrink = np.maximum(-diff, 0)
        lo = shrink // 2
        hi = np.array(out.spatial_shape) - (shrink - shrink // 2)
        out = crop(out, lo, hi)
        params["cropped"] = out.history[-1]["params"]
    if out is image:
        out = image.replace()
    # Replace the inner pad/crop records by one record of this step.
    del out.history[len(image.history):]
    return out.with_step("crop_or_pad", **params)
