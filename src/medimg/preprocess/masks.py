"""Masks of where the patient is: CT body, foreground of MR and other greyscale images, fundus field of view.

Masks are boolean arrays of the image's spatial shape ``(z, y, x)``.  The shape is found on a
subsampled copy (about 3 mm voxels: fast, and thin structures such as the CT table fall apart
there), then refined at full resolution along its border.  scipy.ndimage does the labelling and
hole filling; scikit-image the Otsu thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..image import Image
from ._checks import StepError, require_scalar, require_usable

__all__ = ["CoarseMask", "body_mask", "coarse_body_mask", "coarse_mask", "foreground_mask", "fov_mask",
           "otsu_threshold", "refine_mask"]

#: HU above which a voxel is patient (or table, clothes) rather than air.
BODY_HU = -500.0
#: Components smaller than this fraction of the largest are dropped (noise, table remnants, tubes).
KEEP_FRACTION = 0.1


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= r * r


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` (a subsample of at most ~2 million is used)."""
    from skimage.filters import threshold_otsu

    flat = np.asarray(values).reshape(-1)
    flat = flat[:: max(1, flat.size // 2_000_000)]
    return float(threshold_otsu(flat.astype(np.float32)))


def _factors(image: Image, target_mm: float) -> tuple[int, int, int]:
    """Subsampling step per axis so that coarse voxels are about ``target_mm`` (z kept for 2-D)."""
    f = np.clip(np.floor(target_mm / image.spacing), 1, 8).astype(int)
    if image.is_2d:
        f[0] = 1
    return int(f[0]), int(f[1]), int(f[2])


@dataclass
class CoarseMask:
    """A mask on the subsampled grid ``array[::fz, ::fy, ::fx]``."""

    mask: np.ndarray
    factors: tuple[int, int, int]

    def bounding_box(self, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution ``(start, stop)`` of the mask, generous by up to one coarse voxel."""
        f = np.array(self.factors)
        lo, hi = [], []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            hit = np.flatnonzero(self.mask.any(axis=other))
            lo.append(hit[0] if hit.size else 0)
            hi.append(hit[-1] + 1 if hit.size else 0)
        start = np.maximum(np.array(lo) * f - (f - 1), 0)
        stop = np.minimum(np.array(hi) * f + (f - 1), np.array(shape))
        return start.astype(int), stop.astype(int)


def coarse_mask(image: Image, grey: np.ndarray, threshold: float, open_mm: float,
                 target_mm: float = 3.0) -> CoarseMask:
    """Threshold on the subsampled grid, open in-plane, keep big components, fill holes per slice."""
    fz, fy, fx = _factors(image, target_mm)
    small = np.ascontiguousarray(grey[::fz, ::fy, ::fx]) > threshold
    px = float(min(image.spacing[1] * fy, image.spacing[2] * fx))
    radius = min(int(round(open_mm / px)), 10)
    if radius >= 1:
        small = ndimage.binary_opening(small, structure=_disk(radius)[np.newaxis])
    labels, count = ndimage.label(small)
    if count:
        sizes = np.bincount(labels.reshape(-1))
        sizes[0] = 0
        keep = sizes >= KEEP_FRACTION * sizes.max()
        keep[0] = False
        small = keep[labels]
        for z in range(small.shape[0]):
            small[z] = ndimage.binary_fill_holes(small[z])
    return CoarseMask(small, (fz, fy, fx))


def _upsample(small: np.ndarray, factors: tuple[int, int, int],
              shape: tuple[int, int, int]) -> np.ndarray:
    fz, fy, fx = factors
    z, y, x = small.shape
    if factors == (1, 1, 1):
        return small[: shape[0], : shape[1], : shape[2]]
    # One pass: each coarse voxel becomes an fz x fy x fx block.
    blocks = np.broadcast_to(small[:, None, :, None, :, None], (z, fz, y, fy, x, fx))
    return blocks.reshape(z * fz, y * fy, x * fx)[: shape[0], : shape[1], : shape[2]]


def refine_mask(coarse: CoarseMask, grey: np.ndarray, threshold: float) -> np.ndarray:
    """Full-resolution mask: the coarse interior, plus voxels above ``threshold`` along its border.

    Built plane by plane (the border band is thresholded where it is, nothing else is).
    """
    shape = grey.shape[:3]
    if coarse.factors == (1, 1, 1):
        return coarse.mask
    ball = _disk(1)[np.newaxis]
    inner = ndimage.binary_erosion(coarse.mask, structure=ball)
    band = ndimage.binary_dilation(coarse.mask, structure=ball) & ~inner
    fz, fy, fx = coarse.factors
    full = np.empty(shape, dtype=bool)
    for iz in range(inner.shape[0]):
        z0, z1 = iz * fz, min((iz + 1) * fz, shape[0])
        if z0 >= z1:
            break
        plane_in = _upsample(inner[iz:iz + 1], (1, fy, fx), (1, *shape[1:]))[0]
        plane_band = _upsample(band[iz:iz + 1], (1, fy, fx), (1, *shape[1:]))[0]
        for z in range(z0, z1):
            np.logical_and(plane_band, grey[z] > threshold, out=full[z])
            full[z] |= plane_in
    return full


def body_mask(image: Image, threshold: float = BODY_HU, open_mm: float = 4.0) -> np.ndarray:
    """The patient's body in a CT (values in HU), without table, bed, tubes or air around.

    Voxels above ``threshold`` HU, opened in-plane with a disc of ``open_mm`` (detaches the table
    and thin cables), keeping components at least a tenth the size of the largest (so arms stay),
    with holes (lungs, bowel gas) filled slice by slice.
    """
    coarse = coarse_body_mask(image, threshold, open_mm)
    return refine_mask(coarse, image.array, threshold)


def coarse_body_mask(image: Image, threshold: float = BODY_HU, open_mm: float = 4.0,
                     target_mm: float = 3.0) -> CoarseMask:
    """:func:`body_mask` on a grid of about ``target_mm`` voxels only (enough for a bounding box)."""
    require_scalar(image, "body_mask")
    require_usable(image, "body_mask")
    return coarse_mask(image, image.array, threshold, open_mm, target_mm)


def foreground_mask(image: Image, threshold: float | None = None, open_mm: float = 2.0) -> np.ndarray:
    """Where the object is in an MR, X-ray or other greyscale image (not CT: use :func:`body_mask`).

    Voxels above ``threshold`` (default: Otsu's threshold of the image), cleaned like the body mask.
    For colour images the mean of the channels is thresholded.
    """
    require_usable(image, "foreground_mask")
    arr = image.array
    grey = arr.mean(axis=-1) if arr.ndim == 4 else arr
    if threshold is None:
        threshold = otsu_threshold(grey[:: _factors(image, 2.0)[0]])
    coarse = coarse_mask(image, grey, threshold, open_mm)
    return refine_mask(coarse, grey, threshold)


def fov_mask(image: Image, threshold: float | None = None) -> np.ndarray:
    """The circular field of view of a fundus (or dermoscopy) photograph: the lit disc, holes filled.

    The red channel (brightest in fundus photographs) is thresholded at ``threshold`` (default: a
    tenth of Otsu's threshold above the darkest level, which separates the dark surround from even
    a dim periphery); the largest component is kept and its holes filled.
    """
    require_usable(image, "fov_mask")
    arr = image.array
    if arr.ndim != 4 or arr.shape[-1] < 3:
        msg = (f"fov_mask: needs a colour photograph (z, y, x, 3), got shape {arr.shape}; greyscale "
               f"images have no lit disc to find: use foreground_mask")
        raise StepError(msg)
    red = arr[..., 0].astype(np.float32)
    if threshold is None:
        dark = float(np.percentile(red, 1))
        threshold = dark + 0.25 * (otsu_threshold(red) - dark)
    above = red > threshold
    mask = np.zeros(above.shape, dtype=bool)
    for z in range(above.shape[0]):
        labels, count = ndimage.label(above[z])
        if count == 0:
            continue
        sizes = np.bincount(labels.reshape(-1))[1:]
        mask[z] = ndimage.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))
    return mask
