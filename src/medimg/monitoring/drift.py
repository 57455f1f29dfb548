"""Input drift: are the images a model gets now like the ones it was trained or calibrated on?

Each feature of :mod:`.features` is compared between the recent inputs (a window of analyses) and
the model's training reference (:mod:`.reference`), by a rule that fits its kind:

* **categorical** (scanner, kernel) -- ``unseen_share``: the share of recent inputs whose category
  the reference never had (compared case-insensitively; an input that does not record the attribute
  counts as the category "(not recorded)").  Alert above :data:`UNSEEN_SHARE_ALERT` (10 %): one input
  in ten comes from a scanner or kernel the model was never shown.  A model has no validated
  behaviour there, however rare, so no statistical test is needed to say so; the 10 % keeps a lone
  visiting scan from raising the alarm.
* **setting** (slice thickness, kVp, pixel spacing, image height) -- ``outside_share``: the share of
  recent inputs outside the reference's range ``[min, max]`` widened by :data:`RANGE_TOLERANCE`
  (10 % of the bound).  Alert above :data:`OUTSIDE_SHARE_ALERT` (10 %).  Settings are chosen by a
  protocol, not drawn at random: 1 mm slices are outside what a model calibrated on 5 mm was shown,
  whatever the sample size.
* **numeric** (pixel statistics, field-of-view share) -- ``ks``: the two-sample Kolmogorov-Smirnov
  statistic D between the recent values and the reference distribution, with its p-value (the
  asymptotic two-sample form: the exact one-sample distribution at the effective sample size
  ``n*m/(n+m)``, as scipy's ``ks_2samp(method="asymp")``).  Alert when ``p <`` :data:`KS_P_ALERT`
  (0.01) divided by the number of numeric features tested for the protocol (Bonferroni: 5 or 6
  features, so 0.002 or 0.0017) **and** ``D >=`` :data:`KS_D_ALERT` (0.2, about half a standard
  deviation of shift): the p-value alone would flag trivial shifts once windows are large, D alone
  would flag noise in small ones.  The correction matters because the features are tested together:
  on 500 windows of 50 PneumoniaMNIST training images, some feature had p < 0.01 in 2.8 % of them,
  p < 0.002 in 0.4 %.  A reference of fewer than :data:`MIN_REFERENCE_KS` values cannot support a test (the chest
  CT calibration set is two series of one patient); such features fall back to the range rule, with
  the tolerance widened to the feature's own scale (:data:`ABSOLUTE_TOLERANCE`, e.g. 100 HU).

  PSI (population stability index) is not used for numeric features: over ten reference deciles
  its expected value with *no* drift is about ``9/n`` (0.18 for a window of 50), close to the usual
  0.25 alarm level, so small windows would raise false alarms.

No decision is made on fewer than :data:`MIN_RECENT_SHARE` recent values (shares) or
:data:`MIN_RECENT_KS` (the test): the feature's status is then ``insufficient``.  A feature the
reference does not record (MedMNIST and DRIVE keep no DICOM header) has status ``no_reference``.
Neither ever alerts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .features import CATEGORICAL, NUMERIC, SETTINGS

__all__ = [
    "ABSOLUTE_TOLERANCE",
    "KS_D_ALERT",
    "KS_P_ALERT",
    "MIN_RECENT_KS",
    "MIN_RECENT_SHARE",
    "MIN_REFERENCE_KS",
    "NOT_RECORDED",
    "OUTSIDE_SHARE_ALERT",
    "RANGE_TOLERANCE",
    "UNSEEN_SHARE_ALERT",
    "FeatureDrift",
    "compare",
    "feature_kind",
    "ks_drift",
    "ks_statistic",
    "range_drift",
    "reference_cdf",
    "unseen_drift",
]

UNSEEN_SHARE_ALERT = 0.10
OUTSIDE_SHARE_ALERT = 0.10
RANGE_TOLERANCE = 0.10
KS_P_ALERT = 0.01
KS_D_ALERT = 0.2
MIN_RECENT_SHARE = 10
MIN_RECENT_KS = 20
MIN_REFERENCE_KS = 20
#: The least tolerance of the range rule, per unit of the feature: the scale below which a
#: difference means nothing (100 HU: the distance from fat to water; 0.05 of a 0-1 intensity).
ABSOLUTE_TOLERANCE = {"[hnsf'U]": 100.0, "1": 0.05}
NOT_RECORDED = "(not recorded)"


@dataclass
class FeatureDrift:
    """One feature compared with its reference."""

    feature: str
    kind: str  # categorical | setting | numeric
    method: str  # unseen_share | outside_range | ks
    n: int  # recent inputs with a value
    status: str  # ok | alert | insufficient | no_reference
    alert: bool
    reason: str  # one line
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    missing: int = 0  # recent inputs without a value
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def feature_kind(name: str) -> str:
    if name in CATEGORICAL:
        return "categorical"
    if name in SETTINGS:
        return "setting"
    if name in NUMERIC:
        return "numeric"
    msg = f"unknown feature {name!r}; features are {', '.join((*CATEGORICAL, *SETTINGS, *NUMERIC))}"
    raise ValueError(msg)


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# ---------------------------------------------------------------------------------------- categorical
def _key(value: Any) -> str:
    return NOT_RECORDED if value is None or str(value).strip() == "" else " ".join(str(value).split()).casefold()


def unseen_drift(feature: str, reference: Mapping[str, Any], values: Sequence[Any]) -> FeatureDrift:
    """Share of ``values`` whose category is not among the reference's ``counts``."""
    counts: Mapping[str, int] = reference.get("counts") or {}
    n = len(values)
    base = FeatureDrift(feature, "categorical", "unseen_share", n, "ok", False, "",
                        threshold=UNSEEN_SHARE_ALERT)
    if not counts:
        base.status = "no_reference"
        base.reason = f"{feature}: {reference.get('note') or 'the reference does not record it'}"
        base.details = {"recent": _tally(values)}
        return base
    seen = {_key(k) for k in counts}
    unseen = [v for v in values if _key(v) not in seen]
    share = len(unseen) / n if n else 0.0
    base.statistic = _r(share)
    base.details = {"reference": dict(counts), "recent": _tally(values), "unseen": _tally(unseen)}
    if n < MIN_RECENT_SHARE:
        base.status = "insufficient"
        base.reason = f"{feature}: {n} recent input(s); at least {MIN_RECENT_SHARE} needed to decide"
        return base
    names = ", ".join(sorted({NOT_RECORDED if _key(v) == NOT_RECORDED else str(v) for v in unseen}))
    if share > UNSEEN_SHARE_ALERT:
        base.status, base.alert = "alert", True
        base.reason = (f"{feature}: {share:.0%} of {n} recent inputs ({names}) are of a {feature} the "
                       f"reference never had ({', '.join(sorted(counts))}); alert above "
                       f"{UNSEEN_SHARE_ALERT:.0%}")
    else:
        base.reason = (f"{feature}: {share:.0%} of {n} recent inputs unseen in the reference"
                       + (f" ({names})" if unseen else ""))
    return base


def _tally(values: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        k = NOT_RECORDED if _key(v) == NOT_RECORDED else " ".join(str(v).split())
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------------------------------- range
def _bounds(reference: Mapping[str, Any], unit: str) -> tuple[float, float, float, float]:
    lo, hi = float(reference["min"]), float(reference["max"])
    floor = ABSOLUTE_TOLERANCE.get(unit, 0.0)
    tol_lo = max(RANGE_TOLERANCE * abs(lo), floor)
    tol_hi = max(RANGE_TOLERANCE * abs(hi), floor)
    return lo, hi, lo - tol_lo, hi + tol_hi


def range_drift(feature: str, reference: Mapping[str, Any], values: Sequence[float],
                kind: str = "setting") -> FeatureDrift:
    """Share of ``values`` outside the reference's ``[min, max]`` widened by the tolerance."""
    n = len(values)
    unit = str(reference.get("unit", ""))
    base = FeatureDrift(feature, kind, "outside_range", n, "ok", False, "", threshold=OUTSIDE_SHARE_ALERT)
    if not reference.get("n"):
        base.status = "no_reference"
        base.reason = f"{feature}: {reference.get('note') or 'the reference does not record it'}"
        return base
    lo, hi, allow_lo, allow_hi = _bounds(reference, unit)
    arr = np.asarray(values, dtype=np.float64)
    outside = arr[(arr < allow_lo) | (arr > allow_hi)]
    share = float(outside.size / n) if n else 0.0
    base.statistic = _r(share)
    base.details = {"reference_range": [lo, hi], "allowed": [_r(allow_lo, 6), _r(allow_hi, 6)], "unit": unit,
                    "recent_range": [_r(float(arr.min()), 6), _r(float(arr.max()), 6)] if n else None,
                    "reference_n": int(reference["n"])}
    if kind == "numeric":
        base.details["note"] = (f"reference of {reference['n']} value(s), too few for a two-sample test "
                                f"(>= {MIN_REFERENCE_KS}); range rule instead")
    if n < MIN_RECENT_SHARE:
        base.status = "insufficient"
        base.reason = f"{feature}: {n} recent input(s); at least {MIN_RECENT_SHARE} needed to decide"
        return base
    span = f"{_fmt(lo)}-{_fmt(hi)}" if lo != hi else _fmt(lo)
    u = f" {unit}" if unit and unit != "1" else ""
    if share > OUTSIDE_SHARE_ALERT:
        base.status, base.alert = "alert", True
        seen = f"{_fmt(float(outside.min()))}-{_fmt(float(outside.max()))}" if outside.min() != outside.max() \
            else _fmt(float(outside[0]))
        base.reason = (f"{feature}: {share:.0%} of {n} recent inputs ({seen}{u}) are outside the reference's "
                       f"{span}{u} (tolerance to {_fmt(allow_lo)}-{_fmt(allow_hi)}); alert above "
                       f"{OUTSIDE_SHARE_ALERT:.0%}")
    else:
        base.reason = f"{feature}: {share:.0%} of {n} recent inputs outside the reference's {span}{u}"
    return base


# ---------------------------------------------------------------------------------------- KS test
def reference_cdf(reference: Mapping[str, Any]) -> Any:
    """The reference's cumulative distribution function: the exact empirical CDF when the
    reference stores its ``values``, else the piecewise-linear CDF through its ``quantiles``
    (evenly spaced probabilities 0, 1/(k-1), ..., 1)."""
    if reference.get("values") is not None:
        ref = np.sort(np.asarray(reference["values"], dtype=np.float64))

        def ecdf(x: np.ndarray) -> np.ndarray:
            return np.searchsorted(ref, x, side="right") / ref.size

        return ecdf
    q = np.asarray(reference["quantiles"], dtype=np.float64)
    probs = np.linspace(0.0, 1.0, q.size)

    def qcdf(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        # right-continuous at ties of the quantiles (a point mass): take the highest probability
        hi = np.searchsorted(q, x, side="right")
        out = np.interp(x, q, probs, left=0.0, right=1.0)
        tied = (hi > 0) & (hi < q.size) & np.isin(x, q)
        out[tied] = probs[hi[tied] - 1]
        out[x >= q[-1]] = 1.0
        return out

    return qcdf


def ks_statistic(reference: Mapping[str, Any], values: Sequence[float] | np.ndarray) -> float:
    """sup |F_recent - F_reference|, evaluated at every recent value and every reference point."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    cdf = reference_cdf(reference)
    pts = np.asarray(reference["values"] if reference.get("values") is not None else reference["quantiles"],
                     dtype=np.float64)
    grid = np.unique(np.concatenate([x, pts]))
    f_recent = np.searchsorted(x, grid, side="right") / x.size
    f_ref = cdf(grid)
    # just below each jump of either CDF as well (both are right-continuous step/linear functions)
    below = np.nextafter(grid, -np.inf)
    f_recent_b = np.searchsorted(x, below, side="right") / x.size
    f_ref_b = cdf(below)
    return float(max(np.max(np.abs(f_recent - f_ref)), np.max(np.abs(f_recent_b - f_ref_b))))


def _ks_p(d: float, n: int, m: int) -> float:
    from scipy.stats import kstwo

    en = max(1, round(n * m / (n + m)))
    return float(min(1.0, max(0.0, kstwo.sf(d, en))))


def ks_drift(feature: str, reference: Mapping[str, Any], values: Sequence[float],
             alpha: float = KS_P_ALERT) -> FeatureDrift:
    """Two-sample Kolmogorov-Smirnov comparison of ``values`` with the reference distribution; an
    alert needs ``p < alpha`` and ``D >=`` :data:`KS_D_ALERT`."""
    n = len(values)
    m = int(reference.get("n") or 0)
    if m == 0:
        return FeatureDrift(feature, "numeric", "ks", n, "no_reference", False,
                            f"{feature}: {reference.get('note') or 'the reference does not record it'}")
    if m < MIN_REFERENCE_KS:
        return range_drift(feature, reference, values, kind="numeric")
    unit = str(reference.get("unit", ""))
    base = FeatureDrift(feature, "numeric", "ks", n, "ok", False, "", threshold=KS_D_ALERT)
    arr = np.asarray(values, dtype=np.float64)
    base.details = {"reference_n": m, "reference_median": _r(_median(reference), 6), "unit": unit,
                    "recent_median": _r(float(np.median(arr)), 6) if n else None, "p_threshold": float(f"{alpha:.4g}")}
    if n < MIN_RECENT_KS:
        base.status = "insufficient"
        base.reason = f"{feature}: {n} recent input(s); at least {MIN_RECENT_KS} needed for the test"
        return base
    d = ks_statistic(reference, arr)
    p = _ks_p(d, n, m)
    base.statistic, base.p_value = _r(d), float(f"{p:.4g}")
    med_r, med_n = base.details["reference_median"], base.details["recent_median"]
    shift = f"median {_fmt(med_n)} vs {_fmt(med_r)} in the reference"
    if p < alpha and d >= KS_D_ALERT:
        base.status, base.alert = "alert", True
        base.reason = (f"{feature}: distribution shifted ({shift}); KS D={d:.3f} >= {KS_D_ALERT} and "
                       f"p={p:.2g} < {alpha:.2g} over {n} recent inputs")
    else:
        base.reason = f"{feature}: KS D={d:.3f}, p={p:.2g} over {n} recent inputs ({shift})"
    return base


def _median(reference: Mapping[str, Any]) -> float:
    if reference.get("values") is not None:
        return float(np.median(np.asarray(reference["values"], dtype=np.float64)))
    q = np.asarray(reference["quantiles"], dtype=np.float64)
    return float(np.interp(0.5, np.linspace(0.0, 1.0, q.size), q))


# ---------------------------------------------------------------------------------------- all features
def compare(reference: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[FeatureDrift]:
    """Every feature of ``reference["features"]`` compared with the same feature of ``rows``
    (feature dicts of recent analyses, as :func:`medimg.monitoring.features.describe` makes them)."""
    features: Mapping[str, Any] = reference.get("features", {})
    tested = sum(1 for name, ref in features.items()
                 if feature_kind(name) == "numeric" and int(ref.get("n") or 0) >= MIN_REFERENCE_KS)
    alpha = KS_P_ALERT / max(1, tested)
    out = []
    for name, ref in features.items():
        kind = feature_kind(name)
        present = [r.get(name) for r in rows]
        if kind == "categorical":
            # a row that recorded features but not this attribute is "(not recorded)", not missing
            out.append(unseen_drift(name, ref, present))
            continue
        values = [float(v) for v in present if v is not None]
        drift = range_drift(name, ref, values) if kind == "setting" else ks_drift(name, ref, values, alpha)
        drift.missing = len(present) - len(values)
        out.append(drift)
    return out
