"""Input checks shared by the preprocessing steps, and the error they raise.

Every check names the step, says what is wrong with the input and what to do, in one line.
"""

from __future__ import annotations

import numpy as np

from ..errors import MedimgError
from ..image import Image

__all__ = ["StepError", "is_label_map", "require_3d", "require_intensity", "require_scalar",
           "require_usable"]

#: At most this many distinct integer values (0 among them) make an image look like a label map.
LABEL_MAX_VALUES = 64


class StepError(MedimgError, ValueError):
    """A preprocessing step cannot work on the image it was given (wrong kind, NaNs, no signal).

    It is a :class:`ValueError` too, so code that catches ``ValueError`` keeps working.
    """


def _fail(step: str, problem: str, hint: str) -> StepError:
    return StepError(f"{step}: {problem}; {hint}")


def is_label_map(image: Image) -> bool:
    """Whether ``image`` holds labels (a segmentation) rather than intensities.

    ``image.meta["is_label"]`` decides when set.  Otherwise boolean arrays, modality ``SEG`` and
    integer arrays with 2 to :data:`LABEL_MAX_VALUES` distinct values including 0 count as labels
    (a single value is a blank image, not a label map).
    """
    flag = image.meta.get("is_label")
    if flag is not None:
        return bool(flag)
    arr = image.array
    if arr.dtype == np.bool_ or image.modality.upper() == "SEG":
        return True
    if not np.issubdtype(arr.dtype, np.integer) or image.channels > 1:
        return False
    sample = arr.reshape(-1)[:: max(1, arr.size // 2_000_000)]
    lo, hi = int(sample.min()), int(sample.max())
    if lo < 0 or hi > 10_000:
        return False
    values = np.unique(sample)
    return 2 <= len(values) <= LABEL_MAX_VALUES and values[0] == 0


def require_usable(image: Image, step: str) -> None:
    """Reject NaN/infinite voxels and images without any signal (all one value)."""
    arr = image.array
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            raise _fail(step, f"the image has {n_bad} NaN or infinite voxel(s) of {arr.size}",
                        "replace them first (e.g. numpy.nan_to_num) or fix the source")
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        raise _fail(step, f"every voxel has the same value ({lo!r}); there is no signal to work on",
                    "check that the right file was read (an empty or blank export?)")


def require_3d(image: Image, step: str) -> None:
    """Reject 2-D images (``z == 1``) for steps that need a volume."""
    if image.is_2d:
        raise _fail(step, f"needs a 3-D volume, got a 2-D image of shape {image.shape}",
                    "use it on volumes (CT/MR series), or use the 2-D variant of this step")


def require_scalar(image: Image, step: str) -> None:
    """Reject colour and multi-channel images."""
    if image.channels > 1:
        raise _fail(step, f"needs a single-channel image, got {image.channels} channels "
                          f"(shape {image.shape})",
                    "convert colour to grey or pick one channel first")


def require_intensity(image: Image, step: str) -> None:
    """Reject label maps (segmentations) for steps that transform intensities."""
    if is_label_map(image):
        values = np.unique(image.array.reshape(-1)[:: max(1, image.array.size // 2_000_000)])
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise _fail(step, f"the image is a label map ({len(values)} label values: {shown}), not "
                          f"intensities",
                    "give it the intensity image; if this really is an intensity image, set "
                    "image.meta['is_label'] = False")
