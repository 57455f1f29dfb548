"""The thresholds on real held-out data from the same sources as the references: images the models
were not trained on, but from the same camera or collection, raise no alert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.io import read
from medimg.io.datasets import load_npz
from medimg.models import load
from medimg.models.contract import prepare
from medimg.monitoring.drift import KS_D_ALERT, compare
from medimg.monitoring.features import describe, pixel_stats
from medimg.monitoring.reference import load_reference


def test_drive_test_images_raise_no_alert(data_dir: Path) -> None:
    ref = load_reference("retina")
    assert ref is not None
    files = sorted((data_dir / "retina" / "drive" / "test" / "images").glob("*.tif"))
    assert len(files) == 20
    rows = [describe(None, read(p).replace(modality="OP"), "retina") for p in files]
    res = {r.feature: r for r in compare(ref, rows)}
    assert [f for f, r in res.items() if r.alert] == []
    assert {f: r.status for f, r in res.items()} == {
        "scanner": "no_reference", "rows": "ok", "px_mean": "ok", "px_std": "ok", "px_p05": "ok", "px_p50": "ok",
        "px_p95": "ok", "fov_fraction": "ok"}
    assert res["rows"].statistic == 0.0 and res["px_mean"].statistic == pytest.approx(0.15)


@pytest.mark.parametrize("split", ["val", "test"])
def test_pneumoniamnist_held_out_splits_raise_no_alert(data_dir: Path, split: str) -> None:
    ref = load_reference("chest_xray")
    assert ref is not None
    contract = load("cxr-pneumonia").contract
    ds = load_npz(data_dir / "xray" / "pneumoniamnist.npz", split)
    rows = [pixel_stats(prepare(np.asarray(a), contract)) for a in ds.images]
    res = {r.feature: r for r in compare(ref, rows)}
    assert [f for f, r in res.items() if r.alert] == []
    if split == "test":
        # the test split's known shift (docs/models/cxr-pneumonia.md) is significant over 624 images
        # but small: the effect-size gate keeps it from alerting
        p50 = res["px_p50"]
        assert p50.p_value is not None and p50.p_value < p50.details["p_threshold"]
        assert p50.statistic == pytest.approx(0.0906, abs=1e-4) and p50.statistic < KS_D_ALERT
