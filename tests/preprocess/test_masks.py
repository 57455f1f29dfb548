"""Masks: CT body without the table, MR foreground, fundus field of view against DRIVE's own masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import medimg
from medimg import Image
from medimg.preprocess import StepError, body_mask, foreground_mask, fov_mask, remove_table


def test_body_mask_fills_the_lungs_and_leaves_the_table(ct: Image) -> None:
    mask = body_mask(ct)
    z = 32
    assert np.array_equal(ndimage.binary_fill_holes(mask[z]), mask[z])  # no holes: lungs inside
    lungs = (ct.array[z] < -400) & ndimage.binary_erosion(mask[z], iterations=10)
    assert lungs.sum() > 20_000  # the lungs are large and inside the mask
    table = (ct.array > -500) & ~mask
    rows = np.argwhere(table)[:, 1]
    body_rows = np.argwhere(mask)[:, 1]
    assert table.sum() > 20_000 and np.median(rows) > np.percentile(body_rows, 95)


def test_remove_table_sets_the_outside_to_air(ct_small: Image) -> None:
    out = remove_table(ct_small)
    mask = body_mask(ct_small)
    assert out.array[~mask].max() <= ct_small.array[mask].max()
    outside = ~ndimage.binary_dilation(mask, structure=np.ones((1, 11, 11), bool))
    assert (out.array[outside] == -1000).all()
    np.testing.assert_array_equal(out.array[mask], ct_small.array[mask])
    assert out.history[-1]["name"] == "remove_table"


def test_foreground_of_the_mr_holds_the_head(mr: Image, mr_label: Image) -> None:
    fg = foreground_mask(mr)
    assert fg[mr_label.array > 0].all()  # the tumour is inside the head
    assert not fg[:, :5, :5].any()  # the corners are air
    assert 0.3 < fg.mean() < 0.8


@pytest.mark.parametrize("name", ["01_test", "05_test", "17_test", "21_training", "33_training"])
def test_fov_mask_matches_drive(data_dir: Path, name: str) -> None:
    split = name.split("_")[1]
    image = medimg.read(data_dir / "retina" / "drive" / split / "images" / f"{name}.tif")
    ref = medimg.read(data_dir / "retina" / "drive" / split / "mask" / f"{name}_mask.gif").array > 0
    got = fov_mask(image)
    dice = 2 * np.logical_and(got, ref).sum() / (got.sum() + ref.sum())
    assert dice > 0.99


def test_fov_mask_needs_colour(xray: Image) -> None:
    with pytest.raises(StepError, match="fov_mask: needs a colour photograph"):
        fov_mask(xray)
