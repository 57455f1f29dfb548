"""What the quality checks look at: a few planes of the image, where the patient is in them, and
what kind of image it is.

Checks work on at most :data:`MAX_PLANES` evenly spaced planes (always the first and the last), so a
512 x 512 x 600 CT costs about what a 12-slice one does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..image import Image
from ..preprocess.masks import coarse_mask, fov_mask, otsu_threshold, refine_mask

__all__ = ["MAX_PLANES", "Regions", "image_kind", "regions"]

MAX_PLANES = 12

PROJECTION_MODALITIES = {"CR", "DX", "DR", "MG", "RF", "XA", "PX", "IO", "RG"}
PHOTO_MODALITIES = {"OP", "XC", "ES", "SM", "GM", "OPT", "DERM"}


def image_kind(image: Image) -> str:
    """``"ct"``, ``"mr"``, ``"xray"`` (projection radiograph), ``"photo"`` (colour photograph) or
    ``"other"``, from the modality (and colour channels)."""
    mod = image.modality.upper()
    if mod == "CT":
        return "ct"
    if mod == "MR":
        return "mr"
    if mod in PROJECTION_MODALITIES:
        return "xray"
    if mod in PHOTO_MODALITIES or (image.channels >= 3 and mod in ("OT", "")):
        return "photo"
    return "other"


def select_planes(count: int, most: int = MAX_PLANES) -> np.ndarray:
    """Evenly spaced plane indices including the first and the last."""
    return np.unique(np.round(np.linspace(0, count - 1, min(most, count))).astype(int))


def luminance(array: np.ndarray) -> np.ndarray:
    """Grey values of an array; colour (last axis 3 or 4) becomes Rec. 601 luma."""
    if array.ndim == 4 and array.shape[-1] >= 3:
        rgb = array[..., :3].astype(np.float32)
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if array.ndim == 4:
        return array[..., 0].astype(np.float32)
    return array.astype(np.float32)


@dataclass
class Regions:
    """Planes of an image and the masks the checks need.

    ``grey`` holds the selected planes ``(n, y, x)`` as float32; ``body`` the object (patient,
    or the lit disc of a photograph), ``main`` its largest connected part, ``background`` what is
    neither object nor within a few mm of it.
    """

    kind: str
    planes: np.ndarray
    grey: np.ndarray
    body: np.ndarray
    main: np.ndarray
    background: np.ndarray
    threshold: float


def _object_threshold(grey: np.ndarray) -> float:
    """Otsu's threshold, unless the background was set to one value (skull-stripped or masked
    images, where Otsu splits tissues instead): then a tenth of the way up to the bright end."""
    low = float(grey.min())
    if float(np.mean(grey <= low)) >= 0.2:
        return low + 0.1 * (float(np.percentile(grey, 99)) - low)
    return otsu_threshold(grey)


def _main_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labels.reshape(-1))
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def regions(image: Image, kind: str | None = None) -> Regions:
    """Select planes and find the object in them (CT: above -500 HU; others: above Otsu)."""
    kind = kind or image_kind(image)
    planes = select_planes(image.spatial_shape[0])
    data = image.array[planes]
    grey = luminance(data)
    stack = Image(grey, spacing=(1e3, image.spacing[1], image.spacing[2]))  # planes kept apart
    if kind == "photo" and data.ndim == 4 and data.shape[-1] >= 3:
        body = fov_mask(Image(data, spacing=stack.spacing))
        threshold = float("nan")
    else:
        threshold = -500.0 if kind == "ct" else _object_threshold(grey)
        open_mm = 4.0 if kind == "ct" else 2.0
        body = refine_mask(coarse_mask(stack, grey, threshold, open_mm), grey, threshold)
    main = _main_component(body)
    gap = int(np.clip(round(5.0 / float(min(image.spacing[1:]))), 1, 20))
    near = ndimage.binary_dilation(body, structure=np.ones((1, 3, 3), bool), iterations=gap)
    return Regions(kind, planes, grey, body, main, ~near, threshold)
