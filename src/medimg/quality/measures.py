"""The numbers behind the quality checks, each computed on :class:`~.regions.Regions`.

Every function returns a plain float (NaN when the image gives nothing to measure) so that the
calibration script can tabulate it; the checks in :mod:`.checks` turn them into verdicts.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..image import Image
from .regions import Regions

__all__ = ["blur", "clipped_fraction", "cnr", "ct_noise_hu", "dynamic_range", "fov_contact",
           "ghosting", "noise_level", "signal_level"]


def _erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels < 1:
        return mask
    return ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool), iterations=pixels)


# ---------------------------------------------------------------------------------------- noise
def ct_noise_hu(r: Regions, spacing_mm: float, window_mm: float = 6.0) -> float:
    """CT noise in HU: the most common local standard deviation in soft tissue.

    The global noise index of Christianson et al. (AJR 2015): standard deviations in small windows
    (``window_mm``, a few mm inside the body) lying wholly in soft tissue (-100..150 HU after light
    smoothing); the mode of their histogram is what a radiographer's ROI in a homogeneous organ
    would show.
    """
    k = int(np.clip(round(window_mm / spacing_mm), 3, 15)) | 1  # pixels (odd), whatever the header
    inside = _erode(r.body, int(np.clip(round(5.0 / spacing_mm), 1, 20)))
    sds = []
    for z in range(r.grey.shape[0]):
        if inside[z].sum() < 50:
            continue
        g = r.grey[z]
        # Soft tissue judged on a lightly smoothed copy (so heavy noise does not hide it); windows
        # wholly inside it, so that edges between tissues do not count as noise.
        smooth = ndimage.gaussian_filter(g, 1.5)
        soft = inside[z] & (smooth > -100.0) & (smooth < 150.0)
        valid = ndimage.binary_erosion(soft, structure=np.ones((k, k), bool))
        if valid.sum() < 50:
            continue
        mean = ndimage.uniform_filter(g, k)
        sq = ndimage.uniform_filter(g * g, k)
        sds.append(np.sqrt(np.maximum(sq - mean * mean, 0.0))[valid])
    if not sds:
        return float("nan")
    values = np.concatenate(sds)
    top = float(np.percentile(values, 90))
    if top <= 0:
        return 0.0
    hist, edges = np.histogram(values, bins=90, range=(0.0, top))
    smooth = ndimage.gaussian_filter1d(hist.astype(float), 2.0)
    k_max = int(np.argmax(smooth))
    return float((edges[k_max] + edges[k_max + 1]) / 2.0)


def noise_level(r: Regions) -> float:
    """Standard deviation of white noise inside the object (Immerkær's kernel, homogeneous pixels).

    The mean absolute response of a kernel that cancels planes and ramps, over the half of the object
    with the smallest gradients (edges excluded), times sqrt(pi/2) / 6.  Works on quantised 8-bit
    images where median-based estimators return 0.
    """
    from ..preprocess.noise import noise_residual

    inside = _erode(r.body, 2)
    values = []
    for z in range(r.grey.shape[0]):
        if inside[z].sum() < 50:
            continue
        g = r.grey[z]
        res = np.abs(noise_residual(g))
        grad = ndimage.gaussian_gradient_magnitude(g, 1.0)[1:-1, 1:-1]
        m = inside[z][1:-1, 1:-1]
        if m.sum() < 50:
            continue
        flat = grad[m] <= np.median(grad[m])
        values.append(res[m][flat])
    if not values:
        return float("nan")
    return float(np.mean(np.concatenate(values)) * np.sqrt(np.pi / 2.0))


def signal_level(r: Regions) -> float:
    """Median value inside the object."""
    vals = r.grey[r.body]
    return float(np.median(vals)) if vals.size else float("nan")


def cnr(r: Regions, noise: float, window: tuple[float, float] | None = None) -> float:
    """Contrast of the object's two main tissue classes (multi-Otsu) over the noise.

    ``window`` restricts the values considered (CT: -200..200 HU, so fat against soft tissue).
    """
    from skimage.filters import threshold_multiotsu

    vals = r.grey[_erode(r.body, 2)]
    if window is not None:
        vals = vals[(vals > window[0]) & (vals < window[1])]
    if vals.size < 500 or not noise > 0:
        return float("nan")
    vals = vals[:: max(1, vals.size // 500_000)]
    try:
        t = float(threshold_multiotsu(vals, classes=2)[0])
    except ValueError:
        return float("nan")
    lo, hi = vals[vals <= t], vals[vals > t]
    if lo.size < 0.02 * vals.size or hi.size < 0.02 * vals.size:
        return float("nan")
    return float((np.median(hi) - np.median(lo)) / noise)


# ---------------------------------------------------------------------------------------- sharpness
def blur(r: Regions, h_size: int = 5) -> float:
    """Blur effect of Crete et al. (2007), 0 sharp .. 1 blurred, median over planes.

    The no-reference measure compares each plane with a copy re-blurred by an ``h_size`` box:
    a sharp plane loses much of its neighbour differences, a blurred one little.  Planes are
    cropped to the object and scaled from its 1st..99th percentile to [0, 1], so the measure does
    not depend on the value range (scikit-image's ``blur_effect``).  ``h_size=5`` separated
    blurred from clean images best in calibration (docs/quality.md).
    """
    from skimage.measure import blur_effect

    values = []
    for z in range(r.grey.shape[0]):
        m = r.body[z]
        if m.sum() < 100:
            continue
        g = r.grey[z]
        lo, hi = np.percentile(g[m], [1, 99])
        if hi <= lo:
            continue
        ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        crop = g[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        if min(crop.shape) < 12:
            continue
        values.append(blur_effect(np.clip((crop - lo) / (hi - lo), 0.0, 1.0), h_size=h_size))
    return float(np.median(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------- exposure
def _value_range(image: Image) -> tuple[float, float]:
    """The representable range: the integer type's, or what bits stored allows; else observed."""
    arr = image.array
    bits = image.meta.get("bits_stored")
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        lo, hi = float(info.min), float(info.max)
        if isinstance(bits, int) and 0 < bits < info.bits:
            lo, hi = (0.0, float(2**bits - 1)) if info.min == 0 else (float(-(2 ** (bits - 1))),
                                                                       float(2 ** (bits - 1) - 1))
        if arr.dtype.itemsize > 1 and not isinstance(bits, int):
            lo, hi = float(arr.min()), float(arr.max())
        return lo, hi
    return float(arr.min()), float(arr.max())


def clipped_fraction(image: Image, r: Regions) -> float:
    """Share of the object's pixels at the top of the range (burnt out / saturated).

    For colour, a pixel counts when at least two of its three channels are at the top: one clipped
    channel (the red of a fundus photograph) is common and keeps the detail, two lose it.  Floating
    images count pixels at their maximum.
    """
    lo, hi = _value_range(image)
    arr = image.array[r.planes]
    top = hi - 0.5 if np.issubdtype(arr.dtype, np.integer) else hi - 1e-6 * abs(hi)
    at_top = (arr[..., :3] >= top).sum(axis=-1) >= 2 if arr.ndim == 4 else arr >= top
    inside = at_top[r.body]
    return float(inside.mean()) if inside.size else float("nan")


def dynamic_range(image: Image, r: Regions) -> float:
    """Share of the representable range that the 0.5..99.5 percentiles span: of the whole image
    for radiographs (lungs and mediastinum both matter), of the object (the field of view) for
    photographs."""
    lo, hi = _value_range(image)
    vals = r.grey.reshape(-1) if r.kind == "xray" else r.grey[r.body]
    if vals.size == 0 or hi <= lo:
        return float("nan")
    p_lo, p_hi = np.percentile(vals, [0.5, 99.5])
    return float((p_hi - p_lo) / (hi - lo))


# ---------------------------------------------------------------------------------------- coverage
def fov_contact(image: Image, r: Regions) -> tuple[float, str]:
    """How much of the main object lies on the image's edges: worst side, and which side.

    In each plane, the object's pixels on an edge are divided by the object's extent along that
    edge; the median over the planes that show the object is taken per edge (one plane where the
    shoulders touch is normal, a field of view set too small cuts every plane).  For volumes whose
    slices do not run head to foot, the first and last slice count as edges too.  Edges across the
    patient's head-foot axis are skipped: anatomy always continues there.
    """
    main = r.main
    present = main.any(axis=(1, 2))
    if not present.any():
        return float("nan"), ""
    sub = main[present]
    si = np.abs(image.direction[2, :])  # how much each array axis runs head-foot
    worst, side = 0.0, ""
    names = {1: ("top rows", "bottom rows"), 2: ("left columns", "right columns")}
    for axis in (1, 2):
        if si[axis] > 0.7:
            continue
        extent = np.maximum(sub.any(axis=axis).sum(axis=1), 1)  # per plane
        for end, index in ((0, 0), (1, sub.shape[axis] - 1)):
            edge = np.take(sub, index, axis=axis).sum(axis=1)
            frac = float(np.median(edge / extent))
            if frac > worst:
                worst, side = frac, names[axis][end]
    if not image.is_2d and si[0] <= 0.7 and main.shape[0] > 2:
        area = max(float(main.sum(axis=(1, 2)).max()), 1.0)
        for end, index in ((0, 0), (1, main.shape[0] - 1)):
            frac = float(main[index].sum()) / area
            if frac > worst:
                worst, side = frac, ("first slice", "last slice")[end]
    return worst, side


# ---------------------------------------------------------------------------------------- ghosting
def ghosting(r: Regions, phase_axis: str | None = None) -> tuple[float, str]:
    """Signal in the background along the phase-encoding axis, beyond what the other axis shows.

    Ghosts of a moving or pulsating object are copies shifted along the phase-encoding axis: they
    land in the background strip beside the object along that axis (above and below it for
    phase encoding along y).  Noise and most real background features are the same in both
    strips.  So the spread (standard deviation) of each strip is taken over the object's median,
    and the value is the phase-encoding strip's minus the other's -- or, when the direction is not
    known (``phase_axis`` None), the larger minus the smaller.  Without one of the strips (the
    object fills the field of view that way) the corners beside neither serve as reference; with
    too little background the value is NaN (not measurable).
    """
    main = ndimage.binary_dilation(r.main, structure=np.ones((1, 3, 3), bool), iterations=3)
    signal = float(np.median(r.grey[r.main])) if r.main.any() else float("nan")
    if not main.any() or not signal > 0 or r.background.mean() < 0.1:
        return float("nan"), ""
    # Per plane: the rows and columns that the object spans.
    rows, cols = main.any(axis=2), main.any(axis=1)
    span_y = np.maximum.accumulate(rows, axis=1) & np.maximum.accumulate(rows[:, ::-1], axis=1)[:, ::-1]
    span_x = np.maximum.accumulate(cols, axis=1) & np.maximum.accumulate(cols[:, ::-1], axis=1)[:, ::-1]
    bg = r.background
    band = {"y": bg & ~span_y[:, :, None] & span_x[:, None, :],
            "x": bg & span_y[:, :, None] & ~span_x[:, None, :]}
    corner = bg & ~span_y[:, :, None] & ~span_x[:, None, :]

    def spread(mask: np.ndarray) -> float:
        return float(np.std(r.grey[mask])) / signal if mask.sum() >= 200 else float("nan")

    g = {a: spread(m) for a, m in band.items()}
    ref = spread(corner)
    names = {"y": "rows (y)", "x": "columns (x)"}
    axes = [phase_axis] if phase_axis in ("y", "x") else ["y", "x"]
    best, where = float("nan"), ""
    for a in axes:
        other = "x" if a == "y" else "y"
        base = g[other] if np.isfinite(g[other]) else ref
        if not (np.isfinite(g[a]) and np.isfinite(base)):
            continue
        value = max(g[a] - base, 0.0)
        if not np.isfinite(best) or value > best:
            best, where = value, names[a]
    return best, where
