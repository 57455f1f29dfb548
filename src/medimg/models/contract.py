"""The input contract of a model: what images it was made for, checked at load and at inference.

A contract says the task, the accepted modalities, the channels (``grey``: one channel, ``rgb``:
three), the size a classifier resizes to, and how intensities are normalised.  :func:`prepare`
turns an array into the network's input exactly as training did; :func:`check_image` refuses an
image the model was not made for, with a one-line reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["Contract", "ContractError", "prepare", "resize"]


class ContractError(InputError):
    """An input a model was not made for (modality, channels, dimensionality, size)."""

    def __init__(self, message: str, *_: Any) -> None:
        super().__init__(None, message)

    def __reduce__(self) -> tuple[type, tuple[str]]:  # type: ignore[override]
        return (type(self), (self.problem,))


@dataclass(frozen=True)
class Contract:
    task: str  # "classification" | "segmentation"
    modalities: tuple[str, ...]  # DICOM modality codes the model accepts
    channels: str  # "grey" | "rgb"
    size: tuple[int, int] | None  # (y, x) a classifier resizes to; None: any size (sliding window)
    normalise: str = "unit"  # "unit": uint8 / 255, others by 0.5/99.5 percentiles; "zscore": then per image z-score
    classes: tuple[str, ...] = ()
    positive_class: int = 1
    min_size: tuple[int, int] = (16, 16)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return 1 if self.channels == "grey" else 3

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        d["size"] = list(self.size) if self.size else None
        d["classes"] = list(self.classes)
        d["min_size"] = list(self.min_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Contract:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["modalities"] = tuple(known.get("modalities", ()))
        known["size"] = tuple(known["size"]) if known.get("size") else None
        known["classes"] = tuple(known.get("classes", ()))
        if "min_size" in known:
            known["min_size"] = tuple(known["min_size"])
        c = cls(**known)
        if c.task not in ("classification", "segmentation") or c.channels not in ("grey", "rgb"):
            msg = f"invalid contract: task {c.task!r}, channels {c.channels!r}"
            raise ValueError(msg)
        return c

    def check_array(self, arr: np.ndarray, source: str) -> None:
        """Refuse a ``(y, x)`` / ``(y, x, c)`` array of the wrong channel count or too small a size."""
        c = 1 if arr.ndim == 2 else arr.shape[-1]
        if arr.ndim not in (2, 3) or c != self.in_channels:
            want = "1 (grey)" if self.channels == "grey" else "3 (RGB)"
            msg = (f"{source}: image has {c} channel(s) (shape {arr.shape}); the model expects {want}")
            hint = ("convert it first (a photograph of a radiograph: medimg.models.to_grey)"
                    if self.channels == "grey" else "use a colour image")
            raise ContractError(f"{msg}; {hint}")
        y, x = arr.shape[:2]
        if y < self.min_size[0] or x < self.min_size[1]:
            msg = (f"{source}: image is {y}x{x} pixels, smaller than the model's minimum "
                   f"{self.min_size[0]}x{self.min_size[1]}; use a larger image")
            raise ContractError(msg)

    def check_image(self, image: Any, source: str = "image") -> np.ndarray:
        """The ``(y, x[, c])`` array of a 2-D :class:`~medimg.image.Image` the model may be applied to."""
        if image.modality not in self.modalities:
            msg = (f"{source}: modality {image.modality!r} is not one this model was made for "
                   f"({', '.join(self.modalities)}); use a model for {image.modality} images")
            raise ContractError(msg)
        if image.spatial_shape[0] != 1:
            msg = (f"{source}: a volume of {image.spatial_shape[0]} slices; the model takes 2-D "
                   "images (z == 1); choose one slice or frame")
            raise ContractError(msg)
        arr = image.array[0]
        self.check_array(arr, source)
        return arr


def to_unit(arr: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1]: uint8 divided by 255, anything else by its 0.5/99.5 percentiles."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    a = arr.astype(np.float32)
    lo, hi = np.percentile(a, [0.5, 99.5])
    return np.clip((a - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``(c, y, x)`` float array to ``size`` with area averaging (down) or bilinear (up)."""
    import torch
    import torch.nn.functional as F

    if tuple(arr.shape[-2:]) == tuple(size):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    down = arr.shape[-2] >= size[0] and arr.shape[-1] >= size[1]
    if down:
        out = F.interpolate(t, size=tuple(size), mode="area")
    else:
        out = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    return out[0].numpy()


def prepare(arr: np.ndarray, contract: Contract) -> np.ndarray:
    """A ``(y, x[, c])`` array as the network's ``(c, y, x)`` float32 input (resized, normalised)."""
    x = to_unit(arr)
    x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
    if contract.size is not None:
        x = resize(x, contract.size)
    if contract.normalise == "zscore":
        m = x.mean(axis=(1, 2), keepdims=True)
        s = x.std(axis=(1, 2), keepdims=True)
        x = (x - m) / np.maximum(s, 1e-6)
    return np.ascontiguousarray(x, dtype=np.float32)
