"""Degraded copies of real images, to calibrate and test the quality checks.

Each function takes an :class:`~medimg.image.Image` and a level and returns a new Image with the
degradation recorded in ``history``; random ones take a seed and are reproducible.  MR motion and
ghosting are TorchIO's (``RandomMotion``, ``RandomGhosting``), applied so that the k-space lines
they corrupt are stacked along the image's y axis (a typical in-plane phase-encoding axis).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..image import Image
from ..preprocess.geometry import crop
from .regions import luminance, regions

__all__ = ["add_noise", "blur", "compress_contrast", "crop_fov", "drop_slices", "ghosting",
           "motion", "saturate"]


def _keep_type(image: Image, data: np.ndarray) -> np.ndarray:
    """Back to the image's own type: integers are rounded and clipped to their range."""
    dtype = image.array.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(data), info.min, info.max).astype(dtype)
    return data.astype(dtype)


def _object_signal(image: Image) -> float:
    r = regions(image)
    return float(np.median(r.grey[r.body]))


def add_noise(image: Image, level: float, seed: int = 0, relative: bool = True) -> Image:
    """Gaussian noise of standard deviation ``level`` x the object's median value (``relative``) or
    ``level`` in image units (CT: HU)."""
    sigma = level * _object_signal(image) if relative else level
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, image.array.shape[:3]).astype(np.float32)
    if image.array.ndim == 4:
        noise = noise[..., np.newaxis]
    out = image.replace(array=_keep_type(image, image.array.astype(np.float32) + noise))
    return out.with_step("degrade.noise", sigma=float(sigma), seed=seed)


def blur(image: Image, sigma_px: float) -> Image:
    """In-plane Gaussian blur of ``sigma_px`` pixels."""
    sig = [0.0, sigma_px, sigma_px] + ([0.0] if image.array.ndim == 4 else [])
    data = ndimage.gaussian_filter(image.array.astype(np.float32), sig)
    out = image.replace(array=_keep_type(image, data))
    return out.with_step("degrade.blur", sigma_px=sigma_px)


def crop_fov(image: Image, fraction: float, side: str = "right") -> Image:
    """Cut ``fraction`` of the object's width away at one side (``"left"``/``"right"`` columns,
    ``"top"``/``"bottom"`` rows) -- a field of view set too small."""
    r = regions(image)
    axis = 2 if side in ("left", "right") else 1
    firsts, lasts = [], []
    for plane in r.main:
        hit = np.flatnonzero(plane.any(axis=0 if axis == 2 else 1))
        if hit.size:
            firsts.append(hit[0])
            lasts.append(hit[-1] + 1)
    lo, hi = int(np.median(firsts)), int(np.median(lasts))  # the typical plane's extent
    cut = max(1, int(round(fraction * (hi - lo))))
    start = [0, 0, 0]
    stop = list(image.spatial_shape)
    if side in ("right", "bottom"):
        stop[axis] = hi - cut
    else:
        start[axis] = lo + cut
    out = crop(image, start, stop)
    out.history.pop()
    return out.with_step("degrade.crop_fov", fraction=fraction, side=side)


def saturate(image: Image, fraction: float) -> Image:
    """Over-expose: scale values so that ``fraction`` of the object is above the top of the range,
    then clip there (burnt-out regions).  For colour, "above" means two channels of three."""
    from .measures import _value_range

    r = regions(image)
    lo, hi = _value_range(image)
    arr = image.array[r.planes]
    level_of = np.sort(arr[..., :3], axis=-1)[..., -2] if arr.ndim == 4 else arr
    level = float(np.percentile(level_of[r.body], 100.0 * (1.0 - fraction)))
    gain = (hi - lo) / max(level - lo, 1e-6)
    data = np.clip((image.array.astype(np.float32) - lo) * gain + lo, lo, hi)
    out = image.replace(array=_keep_type(image, data))
    return out.with_step("degrade.saturate", fraction=fraction, gain=float(gain))


def compress_contrast(image: Image, factor: float) -> Image:
    """Squeeze values towards the object's mean by ``factor`` (under-used dynamic range)."""
    grey = luminance(image.array)
    mean = float(grey.mean())
    data = mean + (image.array.astype(np.float32) - mean) * factor
    out = image.replace(array=_keep_type(image, data))
    return out.with_step("degrade.compress_contrast", factor=factor)


def drop_slices(folder: str | Path, count: int, seed: int = 0, workdir: str | Path | None = None
                ) -> Image:
    """Read a DICOM series folder with ``count`` interior slices missing (files left out).

    The files are copied to a temporary folder without the dropped ones and read with
    :func:`medimg.read`, so the reader's own ``missing_slices`` check sees the gap.
    """
    import pydicom

    from ..io import read

    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    positions = []
    for p in files:
        ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
        ipp = getattr(ds, "ImagePositionPatient", None)
        if ipp is None:
            continue
        positions.append((float(ipp[2]), p))
    positions.sort()
    rng = np.random.default_rng(seed)
    interior = np.arange(2, len(positions) - 2)
    dropped = set(rng.choice(interior, size=min(count, interior.size), replace=False).tolist())
    tmp = Path(tempfile.mkdtemp(prefix="medimg-drop-", dir=workdir))
    try:
        for i, (_, p) in enumerate(positions):
            if i not in dropped:
                shutil.copy(p, tmp / p.name)
        image = read(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return image.with_step("degrade.drop_slices", count=count, seed=seed)


# ---------------------------------------------------------------------------------------- MR (TorchIO)
def _torchio_apply(image: Image, transform: Any, seed: int) -> Image:
    """Run a TorchIO intensity transform with the image's y axis as TorchIO's third axis.

    The array is handed over as TorchIO's (1, W, H, D) = (x, z, y), so TorchIO's third axis, along
    which RandomMotion splits k-space, is the image's row (y) axis.
    """
    import torch
    import torchio as tio

    arr = image.array.astype(np.float32)
    if arr.ndim == 4:
        arr = luminance(arr)
    tensor = torch.from_numpy(np.ascontiguousarray(np.transpose(arr, (2, 0, 1))[np.newaxis]))
    sz, sy, sx = (float(v) for v in image.spacing)
    affine = np.diag([sx, sz, sy, 1.0])
    torch.manual_seed(seed)
    out = transform(tio.ScalarImage(tensor=tensor, affine=affine))
    data = np.transpose(out.data[0].numpy(), (1, 2, 0))
    return image.replace(array=_keep_type(image, data))


def motion(image: Image, degrees: float, translation_mm: float, transforms: int = 2,
           seed: int = 0) -> Image:
    """Patient movement during a 3-D scan (TorchIO ``RandomMotion``: rigid moves up to ``degrees``
    and ``translation_mm``, k-space filled from ``transforms + 1`` positions).

    Volumes only: TorchIO splits k-space along its third axis, which a single slice does not have.
    """
    import torchio as tio

    if image.is_2d:
        msg = f"degrade.motion: needs a 3-D volume, got a 2-D image of shape {image.shape}"
        raise ValueError(msg)
    t = tio.RandomMotion(degrees=degrees, translation=translation_mm, num_transforms=transforms)
    out = _torchio_apply(image, t, seed)
    return out.with_step("degrade.motion", degrees=degrees, translation_mm=translation_mm,
                         transforms=transforms, seed=seed)


def ghosting(image: Image, intensity: float, ghosts: tuple[int, int] = (4, 10), seed: int = 0,
             axis: str = "y") -> Image:
    """Ghost copies shifted along the image's ``"y"`` (rows) or ``"x"`` axis (TorchIO
    ``RandomGhosting``: every n-th k-space line along that axis is attenuated by ``intensity``)."""
    import torchio as tio

    t = tio.RandomGhosting(num_ghosts=ghosts, axes=(2 if axis == "y" else 0,),
                           intensity=(intensity, intensity))
    out = _torchio_apply(image, t, seed)
    return out.with_step("degrade.ghosting", intensity=intensity, ghosts=list(ghosts), seed=seed,
                         axis=axis)
