"""Preprocessing on :class:`~medimg.image.Image`: intensities, geometry, MR bias field, enhancement.

Every step returns a new Image and appends ``{"name", "params"}`` to its ``history``.  Steps refuse
inputs they cannot handle (2-D into a 3-D step, label maps into intensity steps, NaNs, blank images)
with a :class:`StepError` naming the step, the problem and what to do.

>>> from medimg import preprocess as pp
>>> ct = pp.zscore(pp.crop_to_body(pp.resample(pp.to_hu(image), 1.0)))
"""

from __future__ import annotations

from ._checks import StepError, is_label_map
from .body import bounding_box, crop_to_body, remove_table
from .colour import colour_normalize, lab_statistics
from .enhance import clahe, denoise
from .geometry import crop, crop_or_pad, orientation_code, pad, reorient, resample
from .intensity import WINDOWS, hu_check, percentile_scale, to_hu, window, zscore
from .masks import body_mask, foreground_mask, fov_mask
from .mri import n4_bias_correction
from .noise import noise_sigma
from .nyul import NyulStandardizer

__all__ = [
    "WINDOWS",
    "NyulStandardizer",
    "StepError",
    "body_mask",
    "bounding_box",
    "clahe",
    "colour_normalize",
    "crop",
    "crop_or_pad",
    "crop_to_body",
    "denoise",
    "foreground_mask",
    "fov_mask",
    "hu_check",
    "is_label_map",
    "lab_statistics",
    "n4_bias_correction",
    "noise_sigma",
    "orientation_code",
    "pad",
    "percentile_scale",
    "remove_table",
    "reorient",
    "resample",
    "to_hu",
    "window",
    "zscore",
]
