"""MR: N4 bias-field correction (SimpleITK's N4BiasFieldCorrectionImageFilter).

The field is estimated on a shrunk copy (fast), then evaluated at full resolution from the filter's
B-spline log-field, and divided out -- the usual way to run N4 on whole volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..image import Image
from ._checks import StepError, require_intensity, require_scalar, require_usable
from .intensity import resolve_mask

__all__ = ["n4_bias_correction"]


def n4_bias_correction(
    image: Image,
    mask: np.ndarray | str | None = None,
    shrink: int = 4,
    iterations: Sequence[int] = (50, 50, 50),
    control_points: int = 4,
    return_field: bool = False,
) -> Image | tuple[Image, Image]:
    """Remove the slowly varying intensity bias (coil shading) of an MR image with N4.

    Parameters
    ----------
    image:
        A single-channel MR (or other positive-valued) image; 2-D or 3-D.
    mask:
        Where to estimate the field (default: the Otsu foreground).
    shrink:
        In-plane (and through-plane for volumes) shrink factor for the estimation.
    iterations:
        Maximum iterations per fitting level (one number per level).
    control_points:
        B-spline control points per axis at the first level.
    return_field:
        Also return the estimated multiplicative field as an Image.

    Returns
    -------
    Image, or (Image, field)
        The corrected image (float32) with the step recorded.
    """
    import SimpleITK as sitk

    step = "n4_bias_correction"
    require_scalar(image, step)
    require_usable(image, step)
    require_intensity(image, step)
    if float(image.array.min()) < 0:
        msg = (f"{step}: N4 models a multiplicative field on positive intensities, but the image has "
               f"values down to {float(image.array.min()):g}; correct MR magnitude images before "
               f"any normalisation")
        raise StepError(msg)
    if shrink < 1 or len(iterations) == 0 or control_points < 2:
        msg = f"{step}: need shrink >= 1, at least one level of iterations and control_points >= 2"
        raise StepError(msg)
    m = resolve_mask(image, mask, step)
    src = image.replace(array=image.array.astype(np.float32)).to_sitk()
    msk = image.replace(array=m.astype(np.uint8)).to_sitk()
    if image.is_2d:  # N4 in the plane: a B-spline needs more than one slice along every axis
        src, msk = src[:, :, 0], msk[:, :, 0]
        factors = [shrink, shrink]
    else:
        factors = [shrink, shrink, min(shrink, max(1, image.spatial_shape[0] // 8))]
    small = sitk.Shrink(src, factors)
    small_mask = sitk.Shrink(msk, factors)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(v) for v in iterations])
    n4.SetNumberOfControlPoints([int(control_points)] * src.GetDimension())
    n4.Execute(small, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(src)
    field = np.exp(sitk.GetArrayFromImage(log_field)).astype(np.float32).reshape(image.spatial_shape)
    data = (image.array.astype(np.float32) / field).astype(np.float32)
    out = image.replace(array=data)
    out.with_step(step, shrink=shrink, iterations=[int(v) for v in iterations],
                  control_points=control_points, field_min=float(field[m].min()),
                  field_max=float(field[m].max()))
    if return_field:
        return out, image.replace(array=field, history=[])
    return out
