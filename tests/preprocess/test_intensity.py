"""Intensity steps: HU, windows, z-score, percentile scaling, Nyul standardisation."""

from __future__ import annotations

import numpy as np
import pytest

from medimg import Image
from medimg.preprocess import (
    WINDOWS,
    NyulStandardizer,
    StepError,
    body_mask,
    foreground_mask,
    percentile_scale,
    to_hu,
    window,
    zscore,
)


# ---------------------------------------------------------------------------------------- HU
def test_to_hu_on_a_dicom_ct_is_already_hu(ct_small: Image) -> None:
    out = to_hu(ct_small)
    np.testing.assert_array_equal(out.array, ct_small.array)
    assert out.history[-1] == {"name": "to_hu", "params": {"slope": 1.0, "intercept": -1024.0,
                                                          "applied": False}}


def test_to_hu_applies_rescale_to_stored_values(ct_small: Image) -> None:
    stored = ct_small.replace(array=(ct_small.array.astype(np.int32) + 1024).astype(np.uint16))
    with pytest.raises(StepError, match=r"to_hu: the values do not look like HU .*pass slope="):
        to_hu(stored)
    out = to_hu(stored, slope=1.0, intercept=-1024.0)
    np.testing.assert_array_equal(out.array, ct_small.array.astype(np.float32))
    assert out.meta["values"] == "HU"


def test_to_hu_refuses_other_modalities(mr: Image) -> None:
    with pytest.raises(StepError, match="to_hu: modality is 'MR'"):
        to_hu(mr)


# ---------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_window_presets_map_their_range(name: str, ct_small: Image) -> None:
    c, w = WINDOWS[name]
    probe = ct_small.replace(array=np.array([[[c - w, c - w / 2, c, c + w / 2, c + w]]], np.float32))
    out = window(probe, name).array.reshape(-1)
    # DICOM's linear VOI LUT: bottom and top clip, the centre maps to one half.
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5 + 0.5 / (w - 1), 1.0, 1.0], atol=1e-3)


def test_window_custom_and_uint8(ct_small: Image) -> None:
    out = window(ct_small, center=40, width=400, dtype="uint8")
    assert out.array.dtype == np.uint8
    soft = (ct_small.array > -155) & (ct_small.array < 235)
    assert out.array[soft].min() > 0 and out.array[soft].max() < 255
    assert out.meta["window_center"] == 40 and out.history[-1]["params"]["width"] == 400


def test_window_errors(ct_small: Image) -> None:
    with pytest.raises(StepError, match="window: unknown preset 'lungs'"):
        window(ct_small, "lungs")
    with pytest.raises(StepError, match="window: window width must be at least 1"):
        window(ct_small, (40, 0))


# ---------------------------------------------------------------------------------------- z-score
def test_zscore_inside_the_body_is_standard(ct_small: Image) -> None:
    out = zscore(ct_small)
    mask = body_mask(ct_small)
    inside = out.array[mask].astype(np.float64)
    assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1.0) < 1e-4
    assert out.array.dtype == np.float32
    params = out.history[-1]["params"]
    assert params["mask_voxels"] == int(mask.sum())
    np.testing.assert_allclose(params["mean"], ct_small.array[mask].mean(dtype=np.float64), rtol=1e-6)


def test_zscore_of_mr_uses_the_foreground(mr: Image) -> None:
    out = zscore(mr)
    inside = out.array[foreground_mask(mr)]
    assert abs(float(inside.mean())) < 1e-3 and abs(float(inside.std()) - 1.0) < 1e-3


def test_percentile_scale(xray: Image) -> None:
    out = percentile_scale(xray, 2, 98)
    lo, hi = np.percentile(xray.array, [2, 98])
    assert out.array.min() == 0.0 and out.array.max() == 1.0
    assert out.history[-1]["params"]["low_value"] == lo and out.history[-1]["params"]["high_value"] == hi


# ---------------------------------------------------------------------------------------- bad input
def test_label_maps_are_refused(mr_label: Image) -> None:
    for step in (zscore, percentile_scale, lambda im: window(im, "brain")):
        with pytest.raises(StepError, match="the image is a label map .* not intensities"):
            step(mr_label)


def test_nans_and_blank_images_are_refused(ct_small: Image) -> None:
    nan = ct_small.replace(array=ct_small.array.astype(np.float32))
    nan.array[3, 10, 10] = np.nan
    with pytest.raises(StepError, match=r"zscore: the image has 1 NaN or infinite voxel"):
        zscore(nan)
    blank = ct_small.replace(array=np.zeros(ct_small.spatial_shape, np.float32))
    with pytest.raises(StepError, match="zscore: every voxel has the same value"):
        zscore(blank)


# ---------------------------------------------------------------------------------------- Nyul
def _brains(data_dir) -> list[Image]:
    import medimg

    names = ["brain1_image.nrrd", "brain2_image.nrrd"]
    return [medimg.read(data_dir / "mr" / "pyradiomics" / n).replace(modality="MR") for n in names]


def test_nyul_matches_torchio(data_dir, tmp_path) -> None:
    import torch
    import torchio as tio
    from torchio.transforms.preprocessing.intensity.histogram_standardization import _normalize

    images = _brains(data_dir)
    masks = [foreground_mask(im) for im in images]
    paths, mask_paths = [], []
    for i, (im, m) in enumerate(zip(images, masks, strict=True)):
        p, q = tmp_path / f"im{i}.nii.gz", tmp_path / f"m{i}.nii.gz"
        im.replace(array=im.array.astype(np.float32)).to_nibabel().to_filename(p)
        im.replace(array=m.astype(np.uint8)).to_nibabel().to_filename(q)
        paths.append(p)
        mask_paths.append(q)
    theirs = tio.HistogramStandardization.train(paths, mask_path=mask_paths, progress=False)
    ours = NyulStandardizer().fit(images, masks)
    keep = [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12]  # TorchIO also stores quartiles; it uses these
    np.testing.assert_allclose(ours.landmarks, theirs[keep], rtol=1e-6)
    # Applying: same values as TorchIO's mapping on the first image.
    mine = ours.apply(images[0], masks[0]).array
    data = torch.from_numpy(np.swapaxes(images[0].array.astype(np.float32), 0, 2).copy())[None]
    ref = _normalize(data, theirs, mask=np.swapaxes(masks[0], 0, 2)[None])[0].numpy()
    np.testing.assert_allclose(mine, np.swapaxes(ref, 0, 2), rtol=1e-4, atol=1e-3)


def test_nyul_standardises_and_round_trips(data_dir, tmp_path) -> None:
    images = _brains(data_dir)
    model = NyulStandardizer().fit(images)
    model.save(tmp_path / "t1.json")
    loaded = NyulStandardizer.load(tmp_path / "t1.json")
    np.testing.assert_allclose(loaded.landmarks, model.landmarks)
    # A new image (brain 2 scaled by 3, as another scanner might) lands on the learned landmarks.
    other = images[1].replace(array=images[1].array.astype(np.float32) * 3.0 + 50.0)
    out = loaded.apply(other)
    got = np.percentile(out.array[foreground_mask(other)], loaded.percentiles)
    np.testing.assert_allclose(got, loaded.landmarks, atol=0.5)
    assert out.history[-1]["name"] == "nyul_standardize"


def test_nyul_errors(mr_label: Image) -> None:
    with pytest.raises(StepError, match="nyul.apply: no landmarks learned yet"):
        NyulStandardizer().apply(mr_label)
    with pytest.raises(StepError, match="nyul.fit: .* label map"):
        NyulStandardizer().fit([mr_label])
    with pytest.raises(StepError, match="nyul: 3 landmarks for 11 percentiles"):
        NyulStandardizer.from_dict({"percentiles": list(range(11)), "landmarks": [0, 1, 2]})
