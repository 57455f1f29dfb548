"""Lesion measurements from a mask: axial diameters, volume and intensity statistics.

Generic: any organ, any modality with meaningful values (HU for CT).  Diameters follow the
RECIST/Fleischner habit of measuring on one axial image:

* **long axis**: the longest distance between two points of the lesion's outline on a slice; the
  slice where it is longest is used;
* **short axis**: on that same slice, the longest extent of the outline perpendicular to the long
  axis (for a convex outline this is the longest perpendicular chord);
* outlines are the sub-voxel contours (marching squares at 0.5) of the mask, so a digital disc of
  diameter *d* measures *d* within a fraction of a pixel, not *d* minus one pixel.

"Axial" here means the image's slice plane (array axes y, x), in mm from the pixel spacing; for an
axial CT that is the axial plane.  Volume is the voxel count times the voxel volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..image import Image
from ..report.model import Measurement

__all__ = [
    "AxialDiameters",
    "axial_diameters",
    "intensity_stats",
    "lesion_measurements",
    "volume_mm3",
]

HU_UNIT = "[hnsf'U]"


@dataclass(frozen=True)
class AxialDiameters:
    """Long and short axis (mm) on the slice ``z`` where the long axis is longest.

    ``long_ends`` and ``short_ends`` are the two end points of each axis as continuous array
    indices ``(z, y, x)``, for drawing.
    """

    long_mm: float
    short_mm: float
    z: int
    long_ends: tuple[tuple[float, float, float], tuple[float, float, float]]
    short_ends: tuple[tuple[float, float, float], tuple[float, float, float]]


def _outlines_mm(mask2d: np.ndarray, spacing_yx: np.ndarray) -> list[np.ndarray]:
    """Sub-pixel closed outlines (each ``(n, 2)``, mm, y and x) of a 2-D mask."""
    from skimage.measure import find_contours

    padded = np.pad(mask2d.astype(np.float32), 1)
    return [(c - 1.0) * spacing_yx for c in find_contours(padded, 0.5)]


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex-hull vertices of 2-D points (all points when there are too few for a hull)."""
    if len(points) < 4:
        return points
    from scipy.spatial import ConvexHull, QhullError

    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # collinear points: a one-pixel-wide line
        return points


def _long_axis(points: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    hull = _hull(points)
    d = np.linalg.norm(hull[:, np.newaxis, :] - hull[np.newaxis, :, :], axis=-1)
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(d[i, j]), hull[i], hull[j]


def _short_axis(outlines: list[np.ndarray], a: np.ndarray, b: np.ndarray
                ) -> tuple[float, np.ndarray, np.ndarray]:
    """Longest extent of the outlines along lines perpendicular to the long axis ``a``-``b``.

    Every outline edge is intersected with perpendicular lines every 0.1 mm along the long axis;
    on each line the extent is the distance between its outermost intersections.
    """
    u = (b - a) / max(float(np.linalg.norm(b - a)), 1e-12)
    v = np.array([-u[1], u[0]])
    starts = np.concatenate([c[:-1] for c in outlines])
    ends = np.concatenate([c[1:] for c in outlines])
    t0, t1 = (starts - a) @ u, (ends - a) @ u
    s0, s1 = (starts - a) @ v, (ends - a) @ v
    length = float(np.linalg.norm(b - a))
    ts = np.linspace(0.0, length, max(int(np.ceil(length / 0.1)), 1) + 1)
    lo_t, hi_t = np.minimum(t0, t1), np.maximum(t0, t1)
    cross = (lo_t[np.newaxis, :] <= ts[:, np.newaxis]) & (ts[:, np.newaxis] <= hi_t[np.newaxis, :])
    dt = np.where(t1 == t0, 1.0, t1 - t0)
    w = np.clip((ts[:, np.newaxis] - t0[np.newaxis, :]) / dt[np.newaxis, :], 0.0, 1.0)
    s = s0[np.newaxis, :] + w * (s1 - s0)[np.newaxis, :]
    hi = np.where(cross, s, -np.inf).max(axis=1)
    lo = np.where(cross, s, np.inf).min(axis=1)
    ext = np.where(np.isfinite(hi) & np.isfinite(lo), hi - lo, 0.0)
    k = int(np.argmax(ext))
    p = a + ts[k] * u + lo[k] * v
    q = a + ts[k] * u + hi[k] * v
    return float(max(ext[k], 0.0)), p, q


def axial_diameters(mask: np.ndarray, spacing: np.ndarray | tuple[float, float, float]
                    ) -> AxialDiameters:
    """Long and short axial diameters (mm) of a 3-D boolean mask ``(z, y, x)``.

    Parameters
    ----------
    mask:
        The lesion, boolean ``(z, y, x)``.
    spacing:
        Voxel size in mm, ``(z, y, x)``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or not mask.any():
        msg = f"axial_diameters: needs a non-empty 3-D mask, got shape {mask.shape}"
        raise ValueError(msg)
    sp = np.asarray(spacing, dtype=float)[1:]
    best: tuple[float, int, np.ndarray, np.ndarray, list[np.ndarray]] | None = None
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        plane = mask[z]
        rows = np.flatnonzero(plane.any(axis=1))
        cols = np.flatnonzero(plane.any(axis=0))
        y0, x0 = rows[0], cols[0]
        sub = plane[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        outlines = [c + np.array([y0, x0]) * sp for c in _outlines_mm(sub, sp)]
        length, a, b = _long_axis(np.concatenate(outlines))
        if best is None or length > best[0] + 1e-9:
            best = (length, int(z), a, b, outlines)
    assert best is not None
    length, z_best, a, b, outlines = best
    short, p, q = _short_axis(outlines, a, b)
    short = min(short, length)  # a strip across can graze a diagonal: never longer than the long axis

    def idx(point: np.ndarray) -> tuple[float, float, float]:
        y, x = point / sp
        return (float(z_best), float(y), float(x))

    return AxialDiameters(length, short, z_best, (idx(a), idx(b)), (idx(p), idx(q)))


def volume_mm3(mask: np.ndarray, voxel_volume: float) -> float:
    """Volume in mm^3: voxel count times the volume of one voxel (mm^3)."""
    return float(np.count_nonzero(mask)) * float(voxel_volume)


def intensity_stats(values: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, minimum, median and maximum of ``values`` inside ``mask``."""
    inside = np.asarray(values)[np.asarray(mask, dtype=bool)].astype(np.float64)
    if inside.size == 0:
        msg = "intensity_stats: the mask is empty; there are no values to summarise"
        raise ValueError(msg)
    return {"mean": float(inside.mean()), "std": float(inside.std()), "min": float(inside.min()),
            "median": float(np.median(inside)), "max": float(inside.max())}


def lesion_measurements(image: Image, mask: np.ndarray, *, hu: bool | None = None
                        ) -> tuple[list[Measurement], AxialDiameters]:
    """The standard measurements of one lesion on ``image``'s grid.

    Returns ``long_axis_diameter`` and ``short_axis_diameter`` (mm), ``volume`` (mm3) and, for CT
    (or ``hu=True``), ``mean_hu`` and ``max_hu`` (UCUM ``[hnsf'U]``); otherwise ``mean_value`` and
    ``max_value`` in the image's units ("1").  The diameters are returned too, for drawing.
    """
    if mask.shape != image.spatial_shape:
        msg = (f"lesion_measurements: mask shape {mask.shape} differs from the image's "
               f"{image.spatial_shape}; give a mask on the image's grid")
        raise ValueError(msg)
    diam = axial_diameters(mask, image.spacing)
    vol = volume_mm3(mask, image.voxel_volume)
    stats = intensity_stats(image.array, mask)
    is_hu = image.modality.upper() == "CT" if hu is None else hu
    where = f"on slice {diam.z}, the slice where the long axis is longest"
    out = [
        Measurement("long_axis_diameter", round(diam.long_mm, 1), "mm",
                    f"longest distance across the sub-pixel outline in the axial plane, {where}"),
        Measurement("short_axis_diameter", round(diam.short_mm, 1), "mm",
                    "longest extent of the outline perpendicular to the long axis, same slice"),
        Measurement("volume", round(vol, 1), "mm3", "voxel count x voxel volume"),
    ]
    if is_hu:
        out += [Measurement("mean_hu", round(stats["mean"], 1), HU_UNIT, "mean HU inside the mask"),
                Measurement("max_hu", round(stats["max"], 1), HU_UNIT, "maximum HU inside the mask")]
    else:
        out += [Measurement("mean_value", round(stats["mean"], 3), "1", "mean value inside the mask"),
                Measurement("max_value", round(stats["max"], 3), "1", "maximum value inside the mask")]
    return out, diam
