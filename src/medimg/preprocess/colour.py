"""Colour normalisation of photographs (fundus, dermoscopy), inside their field of view.

* ``shades_of_grey`` -- colour constancy: estimate the illuminant as the Minkowski p-norm mean of
  each channel and rescale channels so it becomes neutral grey (Finlayson & Trezzi 2004; the usual
  choice for dermoscopy, Barata et al. 2015).  Needs no reference.
* ``reinhard`` -- match the mean and spread of each CIE Lab channel to a reference image or
  reference statistics (Reinhard et al. 2001; common for fundus photographs).  scikit-image converts
  RGB <-> Lab.

Output is float32 RGB in [0, 1]; pixels outside the mask are left as they were (scaled to [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..image import Image
from ._checks import StepError, require_usable
from .masks import fov_mask

__all__ = ["COLOUR_METHODS", "colour_normalize", "lab_statistics"]

COLOUR_METHODS = ("shades_of_grey", "reinhard")


def _rgb01(image: Image, step: str) -> np.ndarray:
    arr = image.array
    if arr.ndim != 4 or arr.shape[-1] != 3:
        msg = f"{step}: needs an RGB photograph (z, y, x, 3), got shape {arr.shape}"
        raise StepError(msg)
    require_usable(image, step)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    top = float(arr.max())
    return arr.astype(np.float32) / np.float32(top if top > 1.0 else 1.0)


def lab_statistics(image: Image, mask: np.ndarray | None = None) -> dict[str, list[float]]:
    """Mean and standard deviation of L, a, b inside ``mask`` (default: the field of view)."""
    from skimage.color import rgb2lab

    rgb = _rgb01(image, "lab_statistics")
    m = fov_mask(image) if mask is None else np.asarray(mask, dtype=bool)
    lab = rgb2lab(rgb[m])
    return {"mean": [float(v) for v in lab.mean(axis=0)], "std": [float(v) for v in lab.std(axis=0)]}


def colour_normalize(image: Image, method: str = "shades_of_grey", mask: np.ndarray | None = None,
                     p: float = 6.0, reference: Image | dict[str, Sequence[float]] | None = None
                     ) -> Image:
    """Normalise the colour of an RGB photograph (see the module docstring for the methods).

    Parameters
    ----------
    mask:
        Pixels that are the subject (default: :func:`~medimg.preprocess.masks.fov_mask`).
    p:
        Minkowski norm of shades of grey (1: grey world, large: max-RGB).
    reference:
        For ``reinhard``: an RGB Image or ``{"mean": [L, a, b], "std": [L, a, b]}``.
    """
    step = "colour_normalize"
    if method not in COLOUR_METHODS:
        msg = f"{step}: unknown method {method!r}; use one of {', '.join(COLOUR_METHODS)}"
        raise StepError(msg)
    rgb = _rgb01(image, step)
    m = fov_mask(image) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != image.spatial_shape or not m.any():
        msg = f"{step}: the mask is empty or its shape {m.shape} is not {image.spatial_shape}"
        raise StepError(msg)
    out = rgb.copy()
    params: dict[str, Any] = {"method": method}
    if method == "shades_of_grey":
        if not p >= 1:
            msg = f"{step}: p must be >= 1, got {p}"
            raise StepError(msg)
        pix = rgb[m].astype(np.float64)
        illum = np.power(np.mean(np.power(pix, p), axis=0), 1.0 / p)
        if np.any(illum <= 0):
            msg = f"{step}: a colour channel is black everywhere in the mask; cannot estimate the light"
            raise StepError(msg)
        gains = illum.mean() / illum
        out[m] = np.clip(rgb[m] * gains.astype(np.float32), 0.0, 1.0)
        params.update(p=p, gains=[float(g) for g in gains])
    else:
        from skimage.color import lab2rgb, rgb2lab

        if reference is None:
            msg = (f"{step}: reinhard needs reference= (an RGB Image or {{'mean': [L, a, b], 'std': "
                   f"[L, a, b]}}); or use method='shades_of_grey'")
            raise StepError(msg)
        ref = lab_statistics(reference) if isinstance(reference, Image) else reference
        ref_mean = np.asarray(ref["mean"], dtype=np.float64)
        ref_std = np.asarray(ref["std"], dtype=np.float64)
        lab = rgb2lab(rgb[m])
        mean, std = lab.mean(axis=0), lab.std(axis=0)
        lab = (lab - mean) / np.where(std > 1e-6, std, 1.0) * ref_std + ref_mean
        out[m] = np.clip(lab2rgb(lab), 0.0, 1.0).astype(np.float32)
        params.update(source_mean=mean.tolist(), source_std=std.tolist(),
                      reference_mean=ref_mean.tolist(), reference_std=ref_std.tolist())
    result = image.replace(array=out.astype(np.float32))
    return result.with_step(step, **params)
