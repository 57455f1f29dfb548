"""Noise level of an image from its own voxels (no background region needed).

Immerkær's estimator (CVIU 64(2), 1996): a 3x3 kernel that cancels planes and linear ramps leaves
mostly noise; with white noise of standard deviation sigma its output has standard deviation
6 sigma.  The median absolute value is used (robust to the edges that also pass the kernel), divided
by 0.6745 (the median absolute value of a unit normal).  Computed in each 2-D plane ``(y, x)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["noise_sigma"]

_KERNEL = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], dtype=np.float32)


def noise_residual(plane: np.ndarray) -> np.ndarray:
    """The kernel's response divided by 6 (unit gain for white noise), valid pixels only."""
    res = ndimage.convolve(plane.astype(np.float32), _KERNEL, mode="nearest") / np.float32(6.0)
    return res[1:-1, 1:-1]


def noise_sigma(array: np.ndarray, mask: np.ndarray | None = None, max_planes: int = 16) -> float:
    """Robust standard deviation of white noise in a ``(z, y, x)`` array (within ``mask`` if given).

    At most ``max_planes`` evenly spaced planes are used.
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    picks = np.unique(np.linspace(0, arr.shape[0] - 1, min(max_planes, arr.shape[0])).astype(int))
    values = []
    for z in picks:
        res = np.abs(noise_residual(arr[z]))
        if mask is not None:
            res = res[np.asarray(mask[z])[1:-1, 1:-1]]
        values.append(res.reshape(-1))
    flat = np.concatenate(values) if values else np.zeros(0)
    if flat.size == 0:
        return float("nan")
    return float(np.median(flat) / 0.6745)
