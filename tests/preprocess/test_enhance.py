"""Denoising, CLAHE and colour normalisation on real images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medimg import Image
from medimg.preprocess import (
    StepError,
    body_mask,
    clahe,
    colour_normalize,
    crop,
    denoise,
    fov_mask,
    lab_statistics,
    noise_sigma,
)


@pytest.fixture(scope="module")
def noisy_slice(data_dir) -> tuple[Image, Image]:
    """One slice of the soft-kernel chest CT (little noise of its own) and a copy with 40 HU of
    Gaussian noise added."""
    import medimg

    series = medimg.read(data_dir / "ct" / "lung-pet-ct-dx-A0001" / "series-3")
    clean = crop(series, (32, 0, 0), (33, 512, 512))
    rng = np.random.default_rng(3)
    noisy = clean.replace(array=clean.array + rng.normal(0, 40, clean.array.shape).astype(np.float32))
    return clean, noisy


@pytest.mark.parametrize("method, params", [("curvature_flow", {}), ("bilateral", {}),
                                            ("nlmeans", {"patch_distance": 4})])
def test_denoisers_remove_noise_and_keep_edges(noisy_slice, method: str, params: dict) -> None:
    clean, noisy = noisy_slice
    out = denoise(noisy, method, **params)
    before = noise_sigma(noisy.array)
    assert noise_sigma(out.array) < 0.6 * before
    # Closer to the clean image than the noisy one was ...
    err_in = np.abs(noisy.array - clean.array).mean()
    err_out = np.abs(out.array - clean.array).mean()
    assert err_out < 0.5 * err_in
    # ... and the skin edge stays sharper than a Gaussian blur of the same noise reduction gives.
    mask = body_mask(clean)
    edge = mask[0] ^ ndimage.binary_erosion(mask[0], iterations=2)
    grad = ndimage.gaussian_gradient_magnitude(out.array[0], 1.0)[edge].mean()
    ref = clean.array[0].astype(np.float32)
    assert grad > 0.5 * ndimage.gaussian_gradient_magnitude(ref, 1.0)[edge].mean()
    step = out.history[-1]
    assert step["name"] == "denoise" and step["params"]["method"] == method
    assert step["params"]["noise_sigma_before"] == pytest.approx(before)


def test_denoise_errors(noisy_slice, fundus: Image) -> None:
    with pytest.raises(StepError, match="denoise: unknown method 'median'"):
        denoise(noisy_slice[1], "median")
    with pytest.raises(StepError, match="denoise: curvature_flow works on one channel"):
        denoise(fundus, "curvature_flow")
    with pytest.raises(StepError, match="denoise: bad parameter for bilateral"):
        denoise(noisy_slice[1], "bilateral", radius=3)


def test_clahe_raises_local_contrast(xray: Image) -> None:
    out = clahe(xray)
    assert out.array.dtype == np.float32 and out.array.min() >= 0.0 and out.array.max() <= 1.0
    scaled = (xray.array.astype(np.float32) - np.percentile(xray.array, 0.5)) / np.ptp(
        np.percentile(xray.array, [0.5, 99.5]))
    local = lambda a: ndimage.generic_filter(a[0, ::4, ::4], np.std, size=5).mean()  # noqa: E731
    assert local(out.array) > 1.2 * local(np.clip(scaled, 0, 1))
    assert out.history[-1]["name"] == "clahe"


def test_clahe_on_colour(fundus: Image) -> None:
    out = clahe(fundus, clip_limit=0.02)
    assert out.array.shape == fundus.array.shape


def test_shades_of_grey_makes_the_light_neutral(fundus: Image) -> None:
    out = colour_normalize(fundus, "shades_of_grey")
    mask = fov_mask(fundus)
    pix = out.array[mask].astype(np.float64)
    pix = pix[(pix < 1.0).all(axis=1)]  # leave clipped pixels out of the estimate
    illum = np.power(np.mean(np.power(pix, 6), axis=0), 1 / 6)
    assert np.ptp(illum) / illum.mean() < 0.1  # was strongly red before
    before = np.power(np.mean(np.power(fundus.array[mask] / 255.0, 6), axis=0), 1 / 6)
    assert np.ptp(before) / before.mean() > 0.5
    np.testing.assert_array_equal(out.array[~mask], fundus.array[~mask] / np.float32(255))


def test_reinhard_matches_the_reference(data_dir, fundus: Image) -> None:
    import medimg

    ref = medimg.read(data_dir / "retina" / "drive" / "training" / "images" / "25_training.tif")
    out = colour_normalize(fundus, "reinhard", reference=ref)
    got, want = lab_statistics(out), lab_statistics(ref)
    np.testing.assert_allclose(got["mean"], want["mean"], atol=1.5)
    np.testing.assert_allclose(got["std"], want["std"], rtol=0.15, atol=0.5)
    with pytest.raises(StepError, match="colour_normalize: reinhard needs reference="):
        colour_normalize(fundus, "reinhard")


def test_colour_normalize_needs_rgb(xray: Image) -> None:
    with pytest.raises(StepError, match=r"colour_normalize: needs an RGB photograph"):
        colour_normalize(xray)
