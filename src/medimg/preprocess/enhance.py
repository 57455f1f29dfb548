"""Enhancement: edge-preserving denoising and contrast-limited adaptive histogram equalisation.

Curvature flow and bilateral filtering are SimpleITK's; non-local means and CLAHE are
scikit-image's.  Default strengths follow the image's own noise level
(:func:`~medimg.preprocess.noise.noise_sigma`) and are recorded in ``history``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..image import Image
from ._checks import StepError, require_intensity, require_usable
from .noise import noise_sigma

__all__ = ["DENOISERS", "clahe", "denoise"]

DENOISERS = ("curvature_flow", "bilateral", "nlmeans")


def _curvature_flow(image: Image, iterations: int = 5, time_step: float | None = None) -> tuple[
        np.ndarray, dict[str, Any]]:
    import SimpleITK as sitk

    if time_step is None:
        time_step = 0.125 if image.is_2d else 0.0625  # the stable limits in 2-D and 3-D
    src = image.replace(array=image.array.astype(np.float32)).to_sitk()
    if image.is_2d:
        src = src[:, :, 0]
    out = sitk.CurvatureFlow(src, timeStep=float(time_step), numberOfIterations=int(iterations))
    data = sitk.GetArrayFromImage(out).reshape(image.array.shape)
    return data, {"iterations": int(iterations), "time_step": float(time_step)}


def _bilateral(image: Image, domain_sigma_mm: float | None = None, range_sigma: float | None = None,
               sigma: float = 0.0) -> tuple[np.ndarray, dict[str, Any]]:
    import SimpleITK as sitk

    if domain_sigma_mm is None:
        domain_sigma_mm = 2.0 * float(min(image.spacing[1:]))
    if range_sigma is None:
        range_sigma = 2.0 * sigma
    src = image.replace(array=image.array.astype(np.float32)).to_sitk()
    if image.is_2d:
        src = src[:, :, 0]
    out = sitk.Bilateral(src, domainSigma=float(domain_sigma_mm), rangeSigma=float(range_sigma))
    data = sitk.GetArrayFromImage(out).reshape(image.array.shape)
    return data, {"domain_sigma_mm": float(domain_sigma_mm), "range_sigma": float(range_sigma)}


def _nlmeans(image: Image, h: float | None = None, patch_size: int = 5, patch_distance: int = 6,
             sigma: float = 0.0) -> tuple[np.ndarray, dict[str, Any]]:
    from skimage.restoration import denoise_nl_means

    if h is None:
        h = 0.8 * sigma
    arr = image.array.astype(np.float32)
    colour = arr.ndim == 4
    work = arr[0] if image.is_2d else arr
    out = denoise_nl_means(work, h=float(h), sigma=float(sigma), patch_size=int(patch_size),
                           patch_distance=int(patch_distance), fast_mode=True,
                           channel_axis=-1 if colour else None)
    data = np.asarray(out, dtype=np.float32).reshape(arr.shape)
    return data, {"h": float(h), "patch_size": int(patch_size), "patch_distance": int(patch_distance)}


def denoise(image: Image, method: str = "curvature_flow", **params: Any) -> Image:
    """Edge-preserving denoising; returns float32.

    Parameters
    ----------
    method:
        ``"curvature_flow"`` (``iterations``, ``time_step``), ``"bilateral"`` (``domain_sigma_mm``,
        ``range_sigma`` in image units, default twice the noise level) or ``"nlmeans"`` (``h``,
        default 0.8 x noise level, ``patch_size``, ``patch_distance`` in voxels).
    """
    step = "denoise"
    require_usable(image, step)
    require_intensity(image, step)
    if method not in DENOISERS:
        msg = f"{step}: unknown method {method!r}; use one of {', '.join(DENOISERS)}"
        raise StepError(msg)
    if method != "nlmeans" and image.channels > 1:
        msg = f"{step}: {method} works on one channel; use method='nlmeans' for colour images"
        raise StepError(msg)
    grey = image.array.mean(axis=-1) if image.channels > 1 else image.array
    sigma = noise_sigma(grey)
    try:
        if method == "curvature_flow":
            data, used = _curvature_flow(image, **params)
        elif method == "bilateral":
            data, used = _bilateral(image, sigma=sigma, **params)
        else:
            data, used = _nlmeans(image, sigma=sigma, **params)
    except TypeError as exc:
        msg = f"{step}: bad parameter for {method} ({exc}); see the docstring of medimg.preprocess.denoise"
        raise StepError(msg) from None
    out = image.replace(array=data)
    return out.with_step(step, method=method, noise_sigma_before=sigma, **used)


def clahe(image: Image, kernel_mm: float | None = None, clip_limit: float = 0.01,
          nbins: int = 256) -> Image:
    """Contrast-limited adaptive histogram equalisation (scikit-image); output float32 in [0, 1].

    Greyscale images are first scaled from their 0.5th..99.5th percentile to [0, 1]; colour images
    are equalised on brightness (scikit-image converts to HSV).  ``kernel_mm`` is the tile size
    (default: an eighth of the image's in-plane extent).
    """
    from skimage.exposure import equalize_adapthist

    step = "clahe"
    require_usable(image, step)
    require_intensity(image, step)
    if not 0 < clip_limit <= 1:
        msg = f"{step}: clip_limit must be in (0, 1], got {clip_limit}"
        raise StepError(msg)
    arr = image.array.astype(np.float32)
    lo, hi = (float(v) for v in np.percentile(arr, [0.5, 99.5]))
    if not hi > lo:
        lo, hi = float(arr.min()), float(arr.max())
    scaled = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    colour = arr.ndim == 4
    work = scaled[0] if image.is_2d else scaled
    spatial = np.array(work.shape[:-1] if colour else work.shape)
    sp = image.spacing[1:] if image.is_2d else image.spacing
    if kernel_mm is None:
        kernel = np.maximum(spatial // 8, 1)
    else:
        kernel = np.maximum(np.round(kernel_mm / sp).astype(int), 1)
    out = equalize_adapthist(work, kernel_size=[int(k) for k in kernel], clip_limit=clip_limit,
                             nbins=nbins)
    data = np.asarray(out, dtype=np.float32).reshape(arr.shape)
    result = image.replace(array=data)
    return result.with_step(step, kernel_voxels=[int(k) for k in kernel], clip_limit=clip_limit,
                            nbins=nbins, input_range=[lo, hi])
