"""N4 bias-field correction removes a known multiplicative field from a real MR.

A real MR has its own shading, so the field N4 finds on the biased copy is compared with the field
it finds on the original: their ratio must be the field that was applied.
"""

from __future__ import annotations

import numpy as np
import pytest

from medimg import Image
from medimg.preprocess import StepError, crop, foreground_mask, n4_bias_correction, resample


def _field(image: Image) -> np.ndarray:
    """A smooth field from 0.7 to 1.3 across the head (like a receive coil's shading)."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in image.spatial_shape), indexing="ij")
    return (1.0 + 0.3 * (0.6 * x + 0.4 * y)).astype(np.float32)


def _check_recovers_field(image: Image, left: float, **params: object) -> None:
    """N4 finds the applied field (r > 0.9) and leaves at most ``left`` of its spread."""
    field = _field(image)
    biased = image.replace(array=image.array.astype(np.float32) * field)
    out, found = n4_bias_correction(biased, return_field=True, **params)
    _, own = n4_bias_correction(image, return_field=True, **params)
    mask = foreground_mask(image)
    extra = np.log(found.array[mask]) - np.log(own.array[mask])
    assert np.corrcoef(extra, np.log(field[mask]))[0, 1] > 0.9
    # What N4 leaves of the applied field (besides a constant factor) is a small fraction of it.
    residual = np.log(field[mask]) - extra
    assert np.std(residual) < left * np.std(np.log(field[mask]))
    np.testing.assert_allclose(out.array, biased.array / found.array, rtol=1e-5)
    step = out.history[-1]
    assert step["name"] == "n4_bias_correction" and step["params"]["shrink"] == params.get("shrink", 4)


def test_n4_recovers_a_field_in_a_slice(mr: Image) -> None:
    _check_recovers_field(crop(mr, (12, 0, 0), (13, 256, 256)), 0.25, shrink=4)


@pytest.mark.slow
def test_n4_recovers_a_field_in_a_volume(mr: Image) -> None:
    # 25 slices of 6.5 mm: N4 removes about 70 % of the field's spread (measured 0.30 left).
    _check_recovers_field(resample(mr, (6.5, 1.5625, 1.5625)), 0.35, shrink=2,
                          iterations=(30, 30, 30))


def test_n4_refuses_normalised_data(mr: Image) -> None:
    shifted = mr.replace(array=mr.array.astype(np.float32) - 500.0)
    with pytest.raises(StepError, match="n4_bias_correction: N4 models a multiplicative field"):
        n4_bias_correction(shifted)
