"""The one shared check that a geometry operation keeps patient coordinates exact.

Marker cubes are written into the image at chosen voxels; the operation runs; each marker is found
again in the output (by its own value) and its centroid, mapped to patient coordinates with the
*output's* geometry, must be where the marker was in the input.  The same anatomy at the same LPS
point is the promise every geometry operation makes, whatever it does to the grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from medimg import Image

__all__ = ["assert_keeps_patient_coordinates", "default_landmarks"]


def default_landmarks(image: Image, count: int = 4) -> list[tuple[int, int, int]]:
    """Voxels spread through the image, away from its edges (z = 0 for 2-D images)."""
    fractions = [(0.35, 0.3, 0.35), (0.6, 0.65, 0.3), (0.45, 0.4, 0.7), (0.65, 0.7, 0.65),
                 (0.5, 0.5, 0.5)][:count]
    shape = np.array(image.spatial_shape)
    out = []
    for f in fractions:
        idx = np.floor(np.array(f) * (shape - 1)).astype(int)
        if image.is_2d:
            idx[0] = 0
        out.append((int(idx[0]), int(idx[1]), int(idx[2])))
    return out


def _half_widths(image: Image, size_mm: float) -> np.ndarray:
    half = np.maximum(1, np.round(size_mm / 2.0 / image.spacing)).astype(int)
    if image.is_2d:
        half[0] = 0
    return half


def _with_markers(image: Image, landmarks: Sequence[Sequence[int]], size_mm: float,
                  label: bool) -> tuple[Image, list[float], np.ndarray]:
    half = _half_widths(image, size_mm)
    if label:
        arr = np.zeros(image.array.shape[:3], dtype=np.uint8)
        values = [float(k + 1) for k in range(len(landmarks))]
    else:
        arr = image.array.astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        span = 10.0 * (hi - lo + 1.0)
        values = [hi + span * (k + 1) for k in range(len(landmarks))]
    centres = []
    for value, idx in zip(values, landmarks, strict=True):
        c = np.asarray(idx, dtype=int)
        lo_i = np.maximum(c - half, 0)
        hi_i = np.minimum(c + half + 1, np.array(image.spatial_shape))
        arr[lo_i[0]:hi_i[0], lo_i[1]:hi_i[1], lo_i[2]:hi_i[2]] = value
        centres.append(image.index_to_patient((lo_i + hi_i - 1) / 2.0))
    marked = image.replace(array=arr)
    if label:
        marked.meta["is_label"] = True
    return marked, values, np.array(centres)


def _find(out: Image, value: float, base: float, span: float, label: bool) -> np.ndarray | None:
    arr = out.array if out.array.ndim == 3 else out.array[..., 0]
    if label:
        hit = arr == value
        if not hit.any():
            return None
        return np.argwhere(hit).mean(axis=0)
    # The marker's plateau (the largest connected region near its value), then the weighted
    # centroid of the excess over the image's own maximum in a box around it.
    near = np.abs(arr - value) < 0.3 * span  # markers are ``span`` apart in value
    labels, count = ndimage.label(near)
    if count == 0:
        return None
    sizes = np.bincount(labels.reshape(-1))
    sizes[0] = 0
    box = ndimage.find_objects((labels == int(np.argmax(sizes))).astype(np.uint8))[0]
    grown = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in box)
    weights = np.clip(arr[grown].astype(np.float64) - base, 0.0, None)
    grid = np.indices(weights.shape).reshape(3, -1).T + np.array([s.start for s in grown])
    return (grid * weights.reshape(-1, 1)).sum(axis=0) / weights.sum()


def assert_keeps_patient_coordinates(
    op: Callable[[Image], Image],
    image: Image,
    landmarks: Sequence[Sequence[int]] | None = None,
    *,
    label: bool = False,
    size_mm: float = 10.0,
    tol_mm: float | None = None,
) -> Image:
    """Run ``op`` on ``image`` with marker cubes and check every marker keeps its LPS position.

    Parameters
    ----------
    op:
        The geometry operation (``Image -> Image``).
    landmarks:
        Marker centres as voxel indices ``(z, y, x)``; default :func:`default_landmarks`.  Markers
        must survive the operation (inside any crop).
    label:
        Markers in an empty label map (for label-only operations such as nearest resampling);
        otherwise they are written into the real image, brighter than anything in it.
    size_mm:
        Edge of the marker cubes (at least 3 voxels per axis).
    tol_mm:
        Allowed distance; default a quarter of the smallest voxel edge of the input or output.

    Returns
    -------
    Image
        The operation's output (markers included), for further checks.
    """
    if landmarks is None:
        landmarks = default_landmarks(image)
    marked, values, expected = _with_markers(image, landmarks, size_mm, label)
    base = float(image.array.max()) if not label else 0.0
    out = op(marked)
    assert isinstance(out, Image), f"the operation returned {type(out).__name__}, not an Image"
    if tol_mm is None:
        tol_mm = 0.25 * float(min(image.spacing[1:].min() if image.is_2d else image.spacing.min(),
                                  out.spacing[1:].min() if out.is_2d else out.spacing.min()))
    errors = []
    for k, (value, want) in enumerate(zip(values, expected, strict=True)):
        idx = _find(out, value, base, values[0] - base, label)
        assert idx is not None, f"marker {k} at voxel {tuple(landmarks[k])} is missing from the output"
        got = out.index_to_patient(idx)
        errors.append(float(np.linalg.norm(got - want)))
        assert errors[-1] <= tol_mm, (
            f"marker {k}: expected at LPS {np.round(want, 3).tolist()}, found at "
            f"{np.round(got, 3).tolist()} ({errors[-1]:.3f} mm off, tolerance {tol_mm:.3f} mm)")
    return out
