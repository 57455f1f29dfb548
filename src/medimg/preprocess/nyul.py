"""Nyúl-Udupa histogram standardisation with a learned landmark set (MR intensity standardisation).

Nyúl, Udupa & Zhang, "New variants of a method of MRI scale standardization", IEEE TMI 19(2), 2000.
Training maps each image's foreground percentiles ``p1 .. p99`` linearly onto a standard range and
averages them into the standard landmarks; applying maps an image's own landmarks onto the standard
ones piecewise-linearly (the end segments extend beyond the outer landmarks).

TorchIO's ``HistogramStandardization`` does the same on files; this one works on :class:`Image` and
masks, stores its landmarks as JSON, and a test checks both give the same values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..image import Image
from ._checks import StepError, require_intensity, require_scalar, require_usable
from .intensity import resolve_mask

__all__ = ["NyulStandardizer"]

DEFAULT_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)


def _landmarks(image: Image, mask: Any, percentiles: Sequence[float], step: str) -> np.ndarray:
    require_scalar(image, step)
    require_usable(image, step)
    require_intensity(image, step)
    m = resolve_mask(image, mask, step)
    values = np.percentile(image.array[m].astype(np.float64), list(percentiles))
    if not values[-1] > values[0]:
        msg = (f"{step}: the {percentiles[0]:g}th and {percentiles[-1]:g}th percentiles of the "
               f"foreground are equal ({values[0]:g}); the image has no intensity spread")
        raise StepError(msg)
    return values


@dataclass
class NyulStandardizer:
    """Learned standard landmarks; ``fit`` on training images, then ``apply`` to any image.

    Parameters
    ----------
    percentiles:
        Foreground percentiles used as landmarks (first and last are the cut-offs).
    standard_range:
        Where the first and last landmarks go on the standard scale.
    landmarks:
        The learned standard landmarks (set by :meth:`fit` or loaded with :meth:`load`).
    """

    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    standard_range: tuple[float, float] = (0.0, 100.0)
    landmarks: np.ndarray | None = None
    trained_on: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def fit(self, images: Sequence[Image], masks: Sequence[Any] | None = None) -> NyulStandardizer:
        """Learn the standard landmarks from ``images`` (``masks``: per image, default foreground)."""
        if len(images) == 0:
            msg = "nyul.fit: no training images given; give at least one image of the contrast"
            raise StepError(msg)
        if masks is not None and len(masks) != len(images):
            msg = f"nyul.fit: {len(images)} images but {len(masks)} masks; give one mask per image"
            raise StepError(msg)
        s1, s2 = self.standard_range
        mapped = []
        for i, img in enumerate(images):
            p = _landmarks(img, None if masks is None else masks[i], self.percentiles, "nyul.fit")
            mapped.append(s1 + (p - p[0]) * (s2 - s1) / (p[-1] - p[0]))
        self.landmarks = np.mean(np.vstack(mapped), axis=0)
        self.trained_on = len(images)
        return self

    def apply(self, image: Image, mask: Any = None) -> Image:
        """Map ``image`` onto the standard scale (float32); landmarks come from ``mask``'s voxels."""
        if self.landmarks is None:
            msg = "nyul.apply: no landmarks learned yet; call fit() with training images or load()"
            raise StepError(msg)
        src = _landmarks(image, mask, self.percentiles, "nyul.apply")
        dst = np.asarray(self.landmarks, dtype=np.float64)
        # Segment k maps [src[k], src[k+1]] to [dst[k], dst[k+1]]; ends extend linearly.
        dsrc = np.diff(src)
        slopes = np.diff(dst) / np.where(dsrc > 1e-5, dsrc, np.inf)
        offsets = dst[:-1] - slopes * src[:-1]
        x = image.array.astype(np.float32)
        seg = np.digitize(x, src[1:-1])
        data = (slopes[seg] * x + offsets[seg]).astype(np.float32)
        out = image.replace(array=data)
        return out.with_step("nyul_standardize", percentiles=list(self.percentiles),
                             image_landmarks=[float(v) for v in src],
                             standard_landmarks=[float(v) for v in dst])

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        if self.landmarks is None:
            msg = "nyul: nothing to save; fit() first"
            raise StepError(msg)
        return {"method": "nyul", "percentiles": list(self.percentiles),
                "standard_range": list(self.standard_range),
                "landmarks": [float(v) for v in self.landmarks], "trained_on": self.trained_on,
                "notes": self.notes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NyulStandardizer:
        try:
            pct = tuple(float(v) for v in data["percentiles"])
            lm = np.asarray(data["landmarks"], dtype=float)
            rng = tuple(float(v) for v in data.get("standard_range", (0.0, 100.0)))
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"nyul: not a landmark set ({exc}); expected keys percentiles and landmarks"
            raise StepError(msg) from None
        if lm.shape != (len(pct),) or np.any(np.diff(lm) < 0):
            msg = f"nyul: {len(lm)} landmarks for {len(pct)} percentiles, or not increasing"
            raise StepError(msg)
        return cls(percentiles=pct, standard_range=(rng[0], rng[1]), landmarks=lm,
                   trained_on=int(data.get("trained_on", 0)), notes=dict(data.get("notes", {})))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> NyulStandardizer:
        return cls.from_dict(json.loads(Path(path).read_text()))
