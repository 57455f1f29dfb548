"""Intensities: CT values to HU, display windows, z-score and percentile scaling.

Every function returns a new :class:`~medimg.image.Image` and records itself in ``history``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..image import Image
from ._checks import StepError, require_intensity, require_scalar, require_usable

__all__ = ["WINDOWS", "hu_check", "percentile_scale", "resolve_mask", "to_hu", "window", "zscore"]

#: Display windows ``name: (centre, width)`` in HU (typical radiology presets).
WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "stroke": (40.0, 40.0),
    "liver": (60.0, 150.0),
    "abdomen": (40.0, 400.0),
}


# ---------------------------------------------------------------------------------------- HU
def hu_check(array: np.ndarray) -> tuple[bool, str, dict[str, float]]:
    """Whether values look like Hounsfield units: air at -1000, soft tissue near 0..100.

    Returns ``(ok, reason, stats)``; ``stats`` holds ``air_fraction`` (share of values in
    [-1100, -900] HU: air around the patient and in the lungs; the minimum value does not count when
    many voxels share it, as padding outside the reconstruction circle or clamped air do) and ``tissue_peak`` (the most frequent value in
    -300..300 HU, soft tissue and water).
    """
    flat = np.asarray(array).reshape(-1)
    flat = flat[:: max(1, flat.size // 1_000_000)].astype(np.float32)
    lo, hi = float(flat.min()), float(flat.max())
    # Padding (outside the reconstruction circle) or clamped air sits at one value, the minimum;
    # real air is noisy, so it also shows above the minimum.  Count only that.
    at_min = flat == lo
    real = flat[~at_min] if at_min.mean() >= 0.02 else flat
    air = float(np.sum((real >= -1100.0) & (real <= -900.0))) / flat.size
    inside = flat[(flat > -300.0) & (flat < 300.0)]
    peak = float("nan")
    if inside.size > 0.02 * flat.size:
        hist, edges = np.histogram(inside, bins=60, range=(-300.0, 300.0))
        smooth = np.convolve(hist, np.ones(3) / 3.0, mode="same")
        k = int(np.argmax(smooth))
        peak = float((edges[k] + edges[k + 1]) / 2.0)
    stats = {"min": lo, "max": hi, "air_fraction": air, "tissue_peak": peak}
    if air < 0.002:
        return False, (f"only {air:.2%} of values are air (-1100..-900 HU; lowest value {lo:g}): "
                       f"CT in HU has air around the patient and in the lungs"), stats
    if inside.size <= 0.02 * flat.size:
        return False, (f"only {inside.size / flat.size:.1%} of values lie in -300..300 where soft "
                       f"tissue and water are in HU"), stats
    if not -150.0 <= peak <= 150.0:
        return False, f"the soft-tissue peak is at {peak:g}, not within -150..150 HU", stats
    return True, "values look like HU (air near -1000, soft tissue near 0..100)", stats


def to_hu(image: Image, slope: float | None = None, intercept: float | None = None) -> Image:
    """CT values in Hounsfield units (float32 when scaling, else the stored type).

    ``slope``/``intercept`` (DICOM Rescale Slope/Intercept) are applied when given.  Without them an
    image read by medimg's DICOM reader is already in HU (the reader rescales; ``meta`` keeps the
    factors); any other image must look like HU (:func:`hu_check`) or this raises.
    """
    step = "to_hu"
    if image.modality.upper() != "CT":
        msg = (f"{step}: modality is {image.modality!r}; Hounsfield units exist only for CT; "
               f"check the image (or set image.modality = 'CT' if it really is CT)")
        raise StepError(msg)
    require_scalar(image, step)
    require_usable(image, step)
    if slope is not None or intercept is not None:
        s = 1.0 if slope is None else float(slope)
        b = 0.0 if intercept is None else float(intercept)
        data = image.array.astype(np.float32) * np.float32(s) + np.float32(b)
        out = image.replace(array=data)
        out.meta["values"] = "HU"
        return out.with_step(step, slope=s, intercept=b, applied=True)
    ok, reason, stats = hu_check(image.array)
    if not ok:
        msg = (f"{step}: the values do not look like HU ({reason}); pass slope= and intercept= "
               f"(the source's Rescale Slope/Intercept)")
        raise StepError(msg)
    out = image.replace()
    out.meta["values"] = "HU"
    return out.with_step(step, slope=image.meta.get("rescale_slope"),
                         intercept=image.meta.get("rescale_intercept"), applied=False)


# ---------------------------------------------------------------------------------------- windows
def window(image: Image, preset: str | tuple[float, float] | None = None, *,
           center: float | None = None, width: float | None = None, dtype: str = "float32") -> Image:
    """Map a display window to [0, 1] (``dtype="float32"``) or 0..255 (``dtype="uint8"``).

    Give a preset name from :data:`WINDOWS`, a ``(centre, width)`` pair, or ``center=``/``width=``.
    The mapping is DICOM's linear VOI LUT (PS3.3 C.11.2.1.2.1).
    """
    step = "window"
    require_scalar(image, step)
    require_usable(image, step)
    require_intensity(image, step)
    name = None
    if isinstance(preset, str):
        key = preset.lower()
        if key not in WINDOWS:
            msg = f"{step}: unknown preset {preset!r}; use one of {', '.join(WINDOWS)} or center=/width="
            raise StepError(msg)
        name = key
        c, w = WINDOWS[key]
    elif preset is not None:
        c, w = (float(v) for v in preset)
    elif center is not None and width is not None:
        c, w = float(center), float(width)
    else:
        msg = f"{step}: give a preset name ({', '.join(WINDOWS)}), a (center, width) pair or both center= and width="
        raise StepError(msg)
    if not w >= 1.0:
        msg = f"{step}: window width must be at least 1, got {w:g}"
        raise StepError(msg)
    if dtype not in ("float32", "uint8"):
        msg = f"{step}: dtype must be 'float32' or 'uint8', got {dtype!r}"
        raise StepError(msg)
    x = image.array.astype(np.float32)
    y = np.clip((x - np.float32(c - 0.5)) / np.float32(w - 1.0) + np.float32(0.5), 0.0, 1.0)
    data = np.round(y * 255.0).astype(np.uint8) if dtype == "uint8" else y.astype(np.float32)
    out = image.replace(array=data)
    out.meta["window_center"], out.meta["window_width"] = c, w
    return out.with_step(step, preset=name, center=c, width=w, dtype=dtype)


# ---------------------------------------------------------------------------------------- normalisation
def resolve_mask(image: Image, mask: Any, step: str) -> np.ndarray:
    """A boolean mask from ``mask``: an array, ``"all"``, or ``None``/``"foreground"`` (CT: body mask,
    others: Otsu foreground)."""
    from .masks import body_mask, foreground_mask

    if mask is None or (isinstance(mask, str) and mask == "foreground"):
        m = body_mask(image) if image.modality.upper() == "CT" else foreground_mask(image)
    elif isinstance(mask, str) and mask == "all":
        m = np.ones(image.spatial_shape, dtype=bool)
    elif isinstance(mask, Image):
        m = np.asarray(mask.array) > 0
    else:
        m = np.asarray(mask).astype(bool)
    if m.shape != image.spatial_shape:
        msg = f"{step}: mask shape {m.shape} differs from the image's {image.spatial_shape}"
        raise StepError(msg)
    if not m.any():
        msg = f"{step}: the mask is empty; give a mask that covers the object (or mask='all')"
        raise StepError(msg)
    return m


def _mask_name(mask: Any) -> str:
    if isinstance(mask, str):
        return mask
    return "foreground" if mask is None else "given"


def _masked_mean_std(array: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of ``array[mask]``, a few planes at a time.

    Values are centred on a rough mean first, so that float32 dot products lose nothing that
    matters (relative error ~1e-7); the sums over chunks are float64.
    """
    sample = array[::8, ::8, ::8][mask[::8, ::8, ::8]]
    shift = np.float32(sample.mean() if sample.size else 0.0)
    n, total, squares = 0, 0.0, 0.0
    for z in range(0, array.shape[0], 8):
        d = array[z:z + 8][mask[z:z + 8]].astype(np.float32, copy=False) - shift
        n += d.size
        total += float(d.sum(dtype=np.float64))
        squares += float(np.dot(d, d))
    mean = total / n
    return float(shift) + mean, float(np.sqrt(max(squares / n - mean * mean, 0.0)))


def zscore(image: Image, mask: Any = None) -> Image:
    """``(x - mean) / std`` with mean and std from the voxels in ``mask`` (default: the foreground).

    Every voxel is transformed (inside and outside the mask); the result is float32.
    """
    step = "zscore"
    require_scalar(image, step)
    require_usable(image, step)
    require_intensity(image, step)
    m = resolve_mask(image, mask, step)
    mean, std = _masked_mean_std(image.array, m)
    if not std > 0:
        msg = f"{step}: every voxel in the mask has the value {mean:g}; there is no spread to scale by"
        raise StepError(msg)
    data = np.subtract(image.array, np.float32(mean), dtype=np.float32)
    data *= np.float32(1.0 / std)
    out = image.replace(array=data)
    return out.with_step(step, mean=mean, std=std, mask_voxels=int(m.sum()), mask=_mask_name(mask))


def percentile_scale(image: Image, lower: float = 1.0, upper: float = 99.0,
                     out_range: tuple[float, float] = (0.0, 1.0), clip: bool = True,
                     mask: Any = "all") -> Image:
    """Map the ``lower`` and ``upper`` percentiles (within ``mask``) linearly to ``out_range``."""
    step = "percentile_scale"
    require_usable(image, step)
    require_intensity(image, step)
    if not 0.0 <= lower < upper <= 100.0:
        msg = f"{step}: need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}"
        raise StepError(msg)
    m = resolve_mask(image, mask, step)
    values = image.array[m]
    lo, hi = (float(v) for v in np.percentile(values, [lower, upper]))
    if not hi > lo:
        msg = (f"{step}: the {lower:g}th and {upper:g}th percentiles are equal ({lo:g}); widen them "
               f"or check the image")
        raise StepError(msg)
    a, b = (float(v) for v in out_range)
    data = (image.array.astype(np.float32) - np.float32(lo)) * np.float32((b - a) / (hi - lo)) + np.float32(a)
    if clip:
        data = np.clip(data, min(a, b), max(a, b))
    out = image.replace(array=data.astype(np.float32))
    return out.with_step(step, lower=lower, upper=upper, low_value=lo, high_value=hi,
                         out_range=[a, b], clip=clip, mask=_mask_name(mask))
