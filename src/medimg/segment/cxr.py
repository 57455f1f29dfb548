"""Lung fields on a frontal chest radiograph, classically (no learned model).

On a radiograph in MONOCHROME2 convention (air dark) the lungs are the two large dark regions inside
the body.  The image is reduced to at most 256 pixels a side, contrast-stretched (1st-99th
percentile; burned-in black label boxes ignored), thresholded by Otsu's method; dark regions lying
mostly along the image border (air around the patient) are removed, then the two largest remaining regions of at least 2% of the image are kept,
smoothed (closing, hole filling) and brought back to the image's grid.  Left and right are assigned
in the patient frame: on a PA/AP radiograph shown in the usual way, the patient's right lung is on
the image's left.  Checked against the 4 manual masks of ../shared/data/xray/lung-seg-2d
(tests/segment/test_cxr.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["LungFields", "lung_fields"]

WORK_SIZE = 256
MIN_FRACTION = 0.02
#: A dark region with more than this share of its pixels in the outer 6% of the image is air
#: around the patient.
BAND_FRACTION = 0.3


@dataclass
class LungFields:
    mask: np.ndarray  # (y, x) bool, both lungs
    right: np.ndarray  # the patient's right lung (image left)
    left: np.ndarray
    threshold: float  # Otsu threshold on the stretched image (0..1)


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    p = hist.astype(float) / max(hist.sum(), 1)
    w = np.cumsum(p)
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    between = (mu[-1] * w - mu) ** 2 / np.maximum(w * (1 - w), 1e-12)
    return float(edges[int(np.nanargmax(between)) + 1])


def lung_fields(grey: np.ndarray) -> LungFields:
    """The lung fields of a ``(y, x)`` radiograph (air dark)."""
    from ..models.contract import resize

    a = np.asarray(grey, dtype=np.float32)
    h, w = a.shape
    scale = min(1.0, WORK_SIZE / max(h, w))
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    small = resize(a[None], size)[0]
    lo, hi = np.percentile(small, [1, 99])
    s = np.clip((small - lo) / max(float(hi - lo), 1e-6), 0, 1)
    s[ndimage.binary_opening(s < 0.02, iterations=2)] = 1.0  # burned-in black label boxes
    s = ndimage.gaussian_filter(s, 1.0)
    m = max(2, round(0.06 * min(s.shape)))
    t = _otsu(s[m:-m, m:-m])
    dark = s < t
    dark = ndimage.binary_opening(dark, iterations=2)
    labels, n = ndimage.label(dark)
    band = np.ones_like(dark)
    band[m:-m, m:-m] = False
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(float)
    in_band = np.bincount(labels[band], minlength=n + 1)
    sizes[in_band > BAND_FRACTION * np.maximum(sizes, 1)] = 0  # air around the patient, not lung
    sizes[0] = 0
    keep = [int(i) for i in np.argsort(sizes)[::-1][:2] if sizes[i] >= MIN_FRACTION * s.size]
    mask = np.isin(labels, keep) if keep else np.zeros_like(dark)
    mask = ndimage.binary_closing(mask, iterations=3)
    mask = ndimage.binary_fill_holes(mask)
    full = resize(mask[None].astype(np.float32), (h, w))[0] >= 0.5
    lab, k = ndimage.label(full)
    right = np.zeros_like(full)
    left = np.zeros_like(full)
    for i in range(1, k + 1):
        comp = lab == i
        cx = np.nonzero(comp)[1].mean()
        (right if cx < w / 2 else left)[comp] = True
    return LungFields(mask=full, right=right, left=left, threshold=t)
