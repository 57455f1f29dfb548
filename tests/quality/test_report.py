"""QualityReport: verdict rules and the JSON that outside checks read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medimg.quality import Check, QualityReport


def test_verdict_is_the_worst_status() -> None:
    rep = QualityReport([Check("a", "pass", 1.0, None, "ok"), Check("b", "warn", 2.0, 1.0, "hm")])
    assert rep.verdict == "warn"
    rep.checks.append(Check("c", "fail", 3.0, 1.0, "bad"))
    assert rep.verdict == "fail" and [c.name for c in rep.problems] == ["c", "b"]
    assert QualityReport([]).verdict == "fail"  # nothing checked is not a pass


def test_json_shape_and_plain_values() -> None:
    rep = QualityReport([Check("noise", "warn", np.float32(51.25), {"warn": 45.0, "fail": 70.0},
                               "image noise is 51 HU", "HU"),
                         Check("snr", "pass", float("nan"), None, "not measured")])
    data = json.loads(rep.to_json())
    assert data["verdict"] == "warn"
    assert data["checks"][0] == {"name": "noise", "status": "warn", "value": 51.25,
                                 "threshold": {"warn": 45.0, "fail": 70.0},
                                 "reason": "image noise is 51 HU", "unit": "HU"}
    assert data["checks"][1]["value"] is None  # NaN is not valid JSON


def test_bad_status_is_refused() -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        Check("x", "ok", 1, None, "")  # type: ignore[arg-type]


def test_text_lists_every_check() -> None:
    rep = QualityReport([Check("sharpness", "fail", 0.9, {"warn": 0.7, "fail": 0.8}, "blurred")],
                        source="a.nrrd", kind="mr")
    text = str(rep)
    assert text.splitlines()[0] == "quality: FAIL  a.nrrd  (mr)"
    assert "sharpness" in text and "blurred" in text
