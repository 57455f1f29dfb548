"""Drift statistics against the shipped training references: feature rows drawn from a reference
raise no alert; shifted rows (an unseen scanner, 1 mm slices for a protocol calibrated on 5 mm, a
20 % intensity offset) do, with the statistic values checked (the KS test also against scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp, kstwo

from medimg.monitoring import drift as dr
from medimg.monitoring.reference import load_reference


@pytest.fixture(scope="module")
def cxr() -> dict:
    ref = load_reference("chest_xray")
    assert ref is not None and ref["model"] == "cxr-pneumonia" and ref["n"] == 4708
    return ref


@pytest.fixture(scope="module")
def ct() -> dict:
    ref = load_reference("chest_ct")
    assert ref is not None and ref["n"] == 2
    return ref


@pytest.fixture(scope="module")
def retina() -> dict:
    ref = load_reference("retina")
    assert ref is not None and ref["n"] == 20
    return ref


def quantile_draws(feature: dict, n: int) -> np.ndarray:
    """n values at the reference's (i + 0.5) / n quantiles (what an undrifted window looks like)."""
    q = np.asarray(feature["quantiles"])
    return np.interp((np.arange(n) + 0.5) / n, np.linspace(0, 1, q.size), q)


def random_draws(feature: dict, n: int, seed: int) -> np.ndarray:
    """n values drawn at random from the reference distribution (inverse CDF)."""
    q = np.asarray(feature["quantiles"])
    u = np.random.default_rng(seed).random(n)
    return np.interp(u, np.linspace(0, 1, q.size), q)


def cxr_rows(ref: dict, n: int, scale: float = 1.0, draw=quantile_draws) -> list[dict]:
    cols = {k: draw(ref["features"][k], n) * scale for k in ("px_mean", "px_std", "px_p05", "px_p50", "px_p95")}
    return [{k: float(v[i]) for k, v in cols.items()} | {"scanner": "Agfa CR 85-X", "kvp": 70.0}
            for i in range(n)]


def ct_row(**changes: object) -> dict:
    row = {"scanner": "Philips Brilliance16", "kernel": "L", "slice_thickness": 5.0, "kvp": 120.0,
           "pixel_spacing": 0.841797, "px_mean": -200.0, "px_std": 400.0, "px_p05": -910.0, "px_p50": -40.0,
           "px_p95": 210.0}
    row.update(changes)
    return row


def by_name(results: list[dr.FeatureDrift]) -> dict[str, dr.FeatureDrift]:
    return {r.feature: r for r in results}


# ---------------------------------------------------------------------------------------- no drift
def test_rows_from_the_reference_raise_no_alert(cxr: dict) -> None:
    res = by_name(dr.compare(cxr, cxr_rows(cxr, 50)))
    assert set(res) == {"scanner", "kvp", "pixel_spacing", "px_mean", "px_std", "px_p05", "px_p50", "px_p95"}
    assert not any(r.alert for r in res.values())
    # midpoint quantiles of a piecewise-linear CDF: the ECDF is half a step away at each value
    assert res["px_mean"].statistic == pytest.approx(0.01, abs=1e-6)
    assert res["px_mean"].p_value == pytest.approx(1.0)
    assert res["px_mean"].status == "ok" and res["px_mean"].n == 50
    for name in ("px_std", "px_p05", "px_p50", "px_p95"):
        assert res[name].statistic is not None and res[name].statistic <= 0.03, name
    # MedMNIST keeps no header: nothing to compare the scanner and kVp with, and no alert for it
    for name in ("scanner", "kvp", "pixel_spacing"):
        assert res[name].status == "no_reference" and "PneumoniaMNIST keeps no DICOM header" in res[name].reason
    assert res["scanner"].details["recent"] == {"Agfa CR 85-X": 50}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_random_draws_from_the_reference_raise_no_alert(cxr: dict, seed: int) -> None:
    res = dr.compare(cxr, cxr_rows(cxr, 60, draw=lambda f, n: random_draws(f, n, seed)))
    assert [r.feature for r in res if r.alert] == []
    assert all(r.statistic < dr.KS_D_ALERT for r in res if r.method == "ks")


def test_ct_rows_like_the_calibration_set_raise_no_alert(ct: dict) -> None:
    rows = [ct_row(kernel="L" if i % 2 else "b") for i in range(30)]  # categories compare case-insensitively
    res = by_name(dr.compare(ct, rows))
    assert not any(r.alert for r in res.values())
    assert res["scanner"].statistic == 0.0 and res["kernel"].statistic == 0.0
    assert res["slice_thickness"].method == "outside_range" and res["slice_thickness"].statistic == 0.0
    # two series are too few for a test: the pixel statistics use the range rule, 100 HU tolerance
    assert res["px_mean"].method == "outside_range" and res["px_mean"].kind == "numeric"
    assert res["px_mean"].details["allowed"] == [pytest.approx(-304.892), pytest.approx(-94.516)]


# ---------------------------------------------------------------------------------------- drift
def test_an_unseen_scanner_alerts(ct: dict) -> None:
    rows = [ct_row() for _ in range(24)] + [ct_row(scanner="SIEMENS SOMATOM Force") for _ in range(6)]
    res = by_name(dr.compare(ct, rows))["scanner"]
    assert res.alert and res.status == "alert"
    assert res.statistic == pytest.approx(0.2)
    assert res.threshold == dr.UNSEEN_SHARE_ALERT
    assert res.details["unseen"] == {"SIEMENS SOMATOM Force": 6}
    assert "20% of 30 recent inputs (SIEMENS SOMATOM Force)" in res.reason
    assert "\n" not in res.reason
    # two in thirty is below the 10 % alarm level: reported, no alert
    few = by_name(dr.compare(ct, [ct_row() for _ in range(28)] + [ct_row(scanner="GE LightSpeed VCT")] * 2))
    assert not few["scanner"].alert and few["scanner"].statistic == pytest.approx(0.0667)


def test_a_missing_manufacturer_counts_as_unseen(ct: dict) -> None:
    rows = [ct_row() for _ in range(15)] + [ct_row(scanner=None) for _ in range(5)]
    res = by_name(dr.compare(ct, rows))["scanner"]
    assert res.alert and res.statistic == pytest.approx(0.25)
    assert res.details["unseen"] == {dr.NOT_RECORDED: 5}


def test_thin_slices_alert_on_a_protocol_calibrated_on_5_mm(ct: dict) -> None:
    res = by_name(dr.compare(ct, [ct_row(slice_thickness=1.0) for _ in range(30)]))
    st = res["slice_thickness"]
    assert st.alert and st.statistic == 1.0 and st.method == "outside_range"
    assert st.details["reference_range"] == [5.0, 5.0] and st.details["allowed"] == [4.5, 5.5]
    assert st.reason.startswith("slice_thickness: 100% of 30 recent inputs (1 mm) are outside the reference's 5 mm")
    assert [r.feature for r in res.values() if r.alert] == ["slice_thickness"]
    # within the 10 % tolerance: no alert; a mixed window alerts by its share
    assert not by_name(dr.compare(ct, [ct_row(slice_thickness=5.4)] * 30))["slice_thickness"].alert
    mixed = by_name(dr.compare(ct, [ct_row(slice_thickness=1.25)] * 4 + [ct_row()] * 16))["slice_thickness"]
    assert mixed.alert and mixed.statistic == pytest.approx(0.2)


def test_a_20_percent_intensity_offset_alerts(cxr: dict) -> None:
    rows = cxr_rows(cxr, 50, scale=1.2)
    res = by_name(dr.compare(cxr, rows))
    alerted = sorted(r.feature for r in res.values() if r.alert)
    assert {"px_mean", "px_p50", "px_p95"} <= set(alerted)
    m = res["px_mean"]
    # the same statistic from scipy against a dense sample of the reference distribution
    dense = quantile_draws(cxr["features"]["px_mean"], 200_000)
    d_scipy = ks_2samp([r["px_mean"] for r in rows], dense).statistic
    assert m.statistic == pytest.approx(d_scipy, abs=2e-3)
    assert m.statistic == pytest.approx(0.5326, abs=1e-4)
    # asymptotic two-sample p-value: the one-sample distribution at n*m/(n+m) = 49.48 -> 49
    assert m.p_value == pytest.approx(kstwo.sf(m.statistic, 49), rel=1e-3)
    assert m.p_value < 1e-12 and m.threshold == dr.KS_D_ALERT
    assert m.details["p_threshold"] == 0.002  # 0.01 over the 5 pixel statistics tested together
    assert m.details["recent_median"] == pytest.approx(1.2 * m.details["reference_median"], rel=1e-3)
    assert m.reason == ("px_mean: distribution shifted (median 0.6907 vs 0.5756 in the reference); KS D=0.533 >= 0.2 "
                        "and p=1.7e-13 < 0.002 over 50 recent inputs")


def test_ks_matches_scipy_on_a_stored_sample(retina: dict) -> None:
    ref = retina["features"]["px_mean"]
    assert len(ref["values"]) == 20
    recent = np.linspace(0.40, 0.75, 25)
    res = dr.ks_drift("px_mean", ref, recent)
    want = ks_2samp(recent, ref["values"], method="asymp")
    assert res.statistic == pytest.approx(want.statistic, abs=1e-4)
    assert res.p_value == pytest.approx(want.pvalue, rel=1e-3)


def test_a_ct_rescale_error_alerts_on_the_range_rule(ct: dict) -> None:
    """A 20 % gain on HU (slope 1.2): lung air drops from -910 to -1092 HU, outside the calibration
    set's -934 to -883 HU widened by 100 HU; the body mean (-240) stays inside its tolerance."""
    rows = [ct_row(**{k: 1.2 * v for k, v in ct_row().items() if k.startswith("px_")}) for _ in range(20)]
    res = by_name(dr.compare(ct, rows))
    assert res["px_p05"].alert and res["px_p05"].statistic == 1.0
    assert not res["px_mean"].alert


def test_small_windows_decide_nothing(ct: dict, cxr: dict) -> None:
    few = by_name(dr.compare(ct, [ct_row(slice_thickness=1.0, scanner="X")] * 9))
    assert few["slice_thickness"].status == "insufficient" and not few["slice_thickness"].alert
    assert few["slice_thickness"].statistic == 1.0  # still shown
    assert few["scanner"].status == "insufficient"
    ks = by_name(dr.compare(cxr, cxr_rows(cxr, 19, scale=1.5)))["px_mean"]
    assert ks.status == "insufficient" and ks.statistic is None and not ks.alert


def test_rows_without_a_value_are_counted_as_missing(ct: dict) -> None:
    rows = [ct_row(kvp=None) for _ in range(12)] + [ct_row() for _ in range(12)]
    res = by_name(dr.compare(ct, rows))["kvp"]
    assert res.n == 12 and res.missing == 12 and res.statistic == 0.0


# ---------------------------------------------------------------------------------------- CDF
def test_reference_cdf_from_quantiles_handles_point_masses() -> None:
    ref = {"n": 1000, "quantiles": [0.0, 0.0, 0.0, 1.0, 2.0]}  # 50 % of the mass at 0
    cdf = dr.reference_cdf(ref)
    assert cdf(np.array([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0])).tolist() == [0.0, 0.5, 0.625, 0.75, 0.875, 1.0, 1.0]
    assert dr.ks_statistic(ref, [0.0] * 10) == pytest.approx(0.5)


def test_reference_cdf_from_values_is_the_ecdf() -> None:
    cdf = dr.reference_cdf({"n": 4, "values": [1.0, 2.0, 2.0, 4.0]})
    assert cdf(np.array([0.5, 1.0, 2.0, 3.0, 4.0])).tolist() == [0.0, 0.25, 0.75, 0.75, 1.0]


def test_unknown_feature_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown feature 'colour'"):
        dr.feature_kind("colour")
