"""Every step refuses what it cannot handle with one line naming the step, the problem and a fix."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from medimg import Image
from medimg import preprocess as pp

STEPS: dict[str, Callable[[Image], Image]] = {
    "zscore": pp.zscore,
    "percentile_scale": pp.percentile_scale,
    "window": lambda im: pp.window(im, "lung"),
    "to_hu": pp.to_hu,
    "denoise": pp.denoise,
    "clahe": pp.clahe,
    "n4_bias_correction": pp.n4_bias_correction,
    "body_mask": pp.body_mask,  # type: ignore[dict-item]
}


def _named(exc: pytest.ExceptionInfo[pp.StepError], step: str) -> None:
    text = str(exc.value)
    assert text.startswith(f"{step}: "), text
    assert "\n" not in text and ";" in text  # one line: problem; what to do


@pytest.mark.parametrize("step", sorted(STEPS))
def test_nan_voxels(ct_small: Image, step: str) -> None:
    bad = ct_small.replace(array=ct_small.array.astype(np.float32))
    bad.array[1, 2, 3] = np.nan
    with pytest.raises(pp.StepError) as exc:
        STEPS[step](bad)
    _named(exc, step)
    assert "NaN" in str(exc.value)


@pytest.mark.parametrize("step", sorted(STEPS))
def test_all_zero_image(ct_small: Image, step: str) -> None:
    blank = ct_small.replace(array=np.zeros(ct_small.spatial_shape, np.int16))
    with pytest.raises(pp.StepError) as exc:
        STEPS[step](blank)
    _named(exc, step)
    assert "same value" in str(exc.value)


@pytest.mark.parametrize("step", ["zscore", "percentile_scale", "window", "denoise", "clahe",
                                  "n4_bias_correction"])
def test_label_map_into_intensity_steps(mr_label: Image, step: str) -> None:
    with pytest.raises(pp.StepError) as exc:
        STEPS[step](mr_label)
    _named(exc, step)
    assert "label map" in str(exc.value)


def test_2d_image_into_3d_only_steps(ct_slice: Image) -> None:
    for step, call in [("reorient", lambda: pp.reorient(ct_slice, "SPL")),
                       ("crop_or_pad", lambda: pp.crop_or_pad(ct_slice, (32, 512, 512))),
                       ("pad", lambda: pp.pad(ct_slice, 2))]:
        with pytest.raises(pp.StepError) as exc:
            call()
        _named(exc, step)
        assert "2-D" in str(exc.value)


def test_step_errors_are_value_errors_and_medimg_errors(ct_small: Image) -> None:
    from medimg.errors import MedimgError

    with pytest.raises(ValueError):
        pp.window(ct_small, "nope")
    with pytest.raises(MedimgError):
        pp.window(ct_small, "nope")


def test_a_chain_records_every_step(ct_small: Image) -> None:
    before = [dict(h) for h in ct_small.history]
    out = pp.zscore(pp.crop_to_body(pp.resample(pp.to_hu(ct_small), 2.0)))
    names = [h["name"] for h in out.history[len(ct_small.history):]]
    assert names == ["to_hu", "resample", "crop_to_body", "zscore"]
    assert out.history[-3]["params"]["spacing"] == [2.0, 2.0, 2.0]
    assert ct_small.history == before  # the input is never changed
