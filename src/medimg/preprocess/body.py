"""CT body: crop to the body and remove the table, bed and everything else outside the patient."""

from __future__ import annotations

import numpy as np

from ..image import Image
from ._checks import StepError
from .geometry import crop
from .masks import body_mask, coarse_body_mask

__all__ = ["bounding_box", "crop_to_body", "remove_table"]

#: HU written where the table and bed were.
AIR_HU = -1000.0


def bounding_box(mask: np.ndarray, margin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(start, stop)`` voxel indices ``(z, y, x)`` of the ``True`` voxels, grown by ``margin`` voxels
    and clipped to the array."""
    if not mask.any():
        msg = "bounding_box: the mask is empty"
        raise StepError(msg)
    start, stop = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        start.append(int(hit[0]))
        stop.append(int(hit[-1]) + 1)
    lo, hi = np.array(start), np.array(stop)
    if margin is not None:
        lo = np.maximum(lo - margin, 0)
        hi = np.minimum(hi + margin, np.array(mask.shape))
    return lo, hi


def _require_ct(image: Image, step: str) -> None:
    if image.modality.upper() != "CT":
        msg = (f"{step}: works on CT in HU, got modality {image.modality!r}; for other images use "
               f"masks.foreground_mask with geometry.crop")
        raise StepError(msg)


def crop_to_body(image: Image, margin_mm: float = 5.0, mask: np.ndarray | None = None) -> Image:
    """Crop a CT to the bounding box of the body (:func:`~medimg.preprocess.masks.body_mask`).

    ``margin_mm`` is kept around the body on every side (as far as the image goes); the box is found
    on a 4 mm grid, so it may be up to one coarse voxel (~4 mm) more generous.  The
    table is outside the box wherever it is not under the body.
    """
    step = "crop_to_body"
    margin = np.ceil(margin_mm / image.spacing).astype(int)
    if mask is None:
        _require_ct(image, step)
        coarse = coarse_body_mask(image, target_mm=4.0)
        if not coarse.mask.any():
            msg = f"{step}: no body found (nothing above -500 HU); check that the image is a CT in HU"
            raise StepError(msg)
        lo, hi = coarse.bounding_box(image.spatial_shape)
        lo = np.maximum(lo - margin, 0)
        hi = np.minimum(hi + margin, np.array(image.spatial_shape))
    else:
        if mask.shape != image.spatial_shape:
            msg = f"{step}: mask shape {mask.shape} differs from the image's {image.spatial_shape}"
            raise StepError(msg)
        lo, hi = bounding_box(mask, margin)
    out = crop(image, lo.tolist(), hi.tolist())
    out.history.pop()
    return out.with_step(step, start=lo.tolist(), stop=hi.tolist(), margin_mm=margin_mm)


def remove_table(image: Image, value: float = AIR_HU, dilate_mm: float = 3.0) -> Image:
    """Set everything outside the body of a CT (table, bed, cables, air) to ``value`` HU (air).

    The body mask is grown by ``dilate_mm`` so that skin is kept whole.
    """
    from scipy import ndimage

    step = "remove_table"
    _require_ct(image, step)
    mask = body_mask(image)
    r = np.maximum(np.round(dilate_mm / image.spacing[1:]).astype(int), 0)
    if r.max() >= 1:
        yy, xx = np.mgrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1]
        disc = (yy / max(r[0], 1)) ** 2 + (xx / max(r[1], 1)) ** 2 <= 1.0
        mask = ndimage.binary_dilation(mask, structure=disc[np.newaxis])
    data = np.where(mask, image.array, np.asarray(value).astype(image.array.dtype))
    out = image.replace(array=data)
    return out.with_step(step, value=float(value), dilate_mm=dilate_mm,
                         removed_voxels=int((~mask).sum()))
