"""Performance figures with 95% bootstrap confidence intervals.

Classification: AUC (Mann-Whitney), and at an operating point accuracy, sensitivity, specificity,
F1, PPV, NPV; calibration (Brier score, expected calibration error).  Operating points are chosen on
validation data (:func:`choose_threshold`), never on the data being reported.

Segmentation: Dice and HD95 per image (MONAI's surface distance), and for thin structures such as
vessels the pixel-level F1 and AUC pooled over all images inside a field-of-view mask.  Pooled AUC
uses score histograms of 4096 bins per image (exact to about 1e-4), which makes its bootstrap over
images cheap.

Confidence intervals resample cases (images for segmentation) 1000 times with a fixed seed and take
the 2.5 and 97.5 percentiles.  Each figure ``m`` comes with ``m_ci: [low, high]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "at_threshold",
    "auc",
    "bootstrap_ci",
    "choose_threshold",
    "classification_metrics",
    "ece",
    "fit_temperature",
    "segmentation_metrics",
    "softmax",
]

N_BOOT = 1000
BINS = 4096


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64) / t
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of a binary label ``y`` (1 positive) and a score (NaN: one class)."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def at_threshold(y: np.ndarray, p: np.ndarray, thr: float) -> dict[str, float]:
    """Binary figures when ``p >= thr`` calls positive."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p) >= thr
    tp = float(np.sum(pred & y))
    tn = float(np.sum(~pred & ~y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {"accuracy": div(tp + tn, len(y)), "sensitivity": div(tp, tp + fn),
            "specificity": div(tn, tn + fp), "f1": div(2 * tp, 2 * tp + fp + fn),
            "ppv": div(tp, tp + fp), "npv": div(tn, tn + fn)}


def choose_threshold(y: np.ndarray, p: np.ndarray, rule: str = "youden",
                     target_sensitivity: float = 0.95, fixed: float = 0.5) -> float:
    """An operating point on validation data.

    ``youden``: maximises sensitivity + specificity; ``sensitivity``: the highest threshold whose
    sensitivity reaches ``target_sensitivity``; ``accuracy``: maximises accuracy; ``fixed``: ``fixed``.
    Thresholds are midpoints between consecutive distinct scores.
    """
    if rule == "fixed":
        return float(fixed)
    y = np.asarray(y).astype(bool)
    s = np.unique(p)
    cands = np.concatenate([[0.0], (s[:-1] + s[1:]) / 2, [1.0]])
    best, best_val = 0.5, -np.inf
    for t in cands:
        m = at_threshold(y, p, float(t))
        if rule == "youden":
            val = m["sensitivity"] + m["specificity"]
        elif rule == "accuracy":
            val = m["accuracy"]
        elif rule == "sensitivity":
            val = t if m["sensitivity"] >= target_sensitivity else -np.inf
        else:
            msg = f"unknown operating-point rule {rule!r}; use youden, sensitivity, accuracy or fixed"
            raise ValueError(msg)
        if val > best_val:
            best, best_val = float(t), val
    return best


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the validation NLL of the averaged softmax of ``(k, n, c)`` logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2:
        logits = logits[None]
    y = np.asarray(y).astype(int)

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t))).mean(axis=0)
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))

    grid = np.linspace(np.log(0.05), np.log(20.0), 241)
    vals = [nll(g) for g in grid]
    g0 = grid[int(np.argmin(vals))]
    fine = np.linspace(g0 - 0.02, g0 + 0.02, 41)
    return float(np.exp(fine[int(np.argmin([nll(g) for g in fine]))]))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of positive-class probabilities (equal-width bins)."""
    y = np.asarray(y).astype(float)
    p = np.asarray(p, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(p[sel].mean() - y[sel].mean())
    return float(total / len(y))


def bootstrap_ci(fn: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT,
                 seed: int = 0) -> list[float]:
    """The 95% percentile interval of ``fn(indices)`` over ``n_boot`` resamples of ``n`` cases."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        v = fn(rng.integers(0, n, n))
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return [float(lo), float(hi)]


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float,
                           n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """AUC, figures at ``threshold``, Brier and ECE, each with a bootstrap CI (binary ``y``, ``p``)."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)

    def figures(idx: np.ndarray) -> dict[str, float]:
        yy, pp = y[idx], p[idx]
        out = {"auc": auc(yy, pp)}
        out.update(at_threshold(yy, pp, threshold))
        out["brier"] = float(np.mean((pp - yy) ** 2))
        return out

    point = figures(np.arange(len(y)))
    point["ece"] = ece(y, p)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in point if k != "ece"}
    for _ in range(n_boot):
        f = figures(rng.integers(0, len(y), len(y)))
        for k, v in f.items():
            if np.isfinite(v):
                samples[k].append(v)
    out: dict[str, Any] = {}
    for k, v in point.items():
        out[k] = v
        if k in samples and samples[k]:
            lo, hi = np.percentile(samples[k], [2.5, 97.5])
            out[f"{k}_ci"] = [float(lo), float(hi)]
    out["threshold"] = float(threshold)
    out["n"] = len(y)
    out["n_positive"] = int(y.sum())
    return out


# ---------------------------------------------------------------- segmentation


def _hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    import torch
    from monai.metrics import compute_hausdorff_distance

    if not pred.any() or not gt.any():
        return float("nan")
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    g = torch.from_numpy(gt[None, None].astype(np.float32))
    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal argument
        warnings.simplefilter("ignore", FutureWarning)
        return float(compute_hausdorff_distance(p, g, percentile=95).item())


def segmentation_metrics(probs: list[np.ndarray], masks: list[np.ndarray], fovs: list[np.ndarray],
                         threshold: float = 0.5, n_boot: int = N_BOOT, seed: int = 0,
                         hd95: bool = True) -> dict[str, Any]:
    """Pixel F1 (= Dice of the pooled pixels), AUC, accuracy, sensitivity, specificity pooled inside
    the FOV over all images; mean per-image Dice and HD95 (pixels); bootstrap CIs over images."""
    k = len(probs)
    counts = np.zeros((k, 4))  # tp, fp, fn, tn
    h_pos = np.zeros((k, BINS))
    h_neg = np.zeros((k, BINS))
    dice = np.zeros(k)
    hd = np.full(k, np.nan)
    for i, (pr, gt, fov) in enumerate(zip(probs, masks, fovs, strict=True)):
        fov = fov.astype(bool)
        g = gt.astype(bool)[fov]
        s = np.clip(pr[fov], 0, 1)
        pred = s >= threshold
        counts[i] = [np.sum(pred & g), np.sum(pred & ~g), np.sum(~pred & g), np.sum(~pred & ~g)]
        b = np.minimum((s * BINS).astype(int), BINS - 1)
        h_pos[i] = np.bincount(b[g], minlength=BINS)
        h_neg[i] = np.bincount(b[~g], minlength=BINS)
        tp, fp, fn, _ = counts[i]
        dice[i] = 2 * tp / max(2 * tp + fp + fn, 1)
        if hd95:
            full = (pr >= threshold) & fov
            hd[i] = _hd95(full, gt.astype(bool) & fov)

    def pooled(idx: np.ndarray) -> dict[str, float]:
        tp, fp, fn, tn = counts[idx].sum(axis=0)
        hp, hn = h_pos[idx].sum(axis=0), h_neg[idx].sum(axis=0)
        # P(score_pos > score_neg) + 0.5 P(equal bin), from the histograms.
        cum_neg = np.cumsum(hn) - hn
        a = float((hp * (cum_neg + 0.5 * hn)).sum() / max(hp.sum() * hn.sum(), 1))
        n = tp + fp + fn + tn
        return {"f1": 2 * tp / max(2 * tp + fp + fn, 1), "auc": a, "accuracy": (tp + tn) / n,
                "sensitivity": tp / max(tp + fn, 1), "specificity": tn / max(tn + fp, 1),
                "dice": float(np.mean(dice[idx])), "hd95": float(np.nanmean(hd[idx]))
                if np.isfinite(hd[idx]).any() else float("nan")}

    point = pooled(np.arange(k))
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in point}
    for _ in range(n_boot):
        for key, v in pooled(rng.integers(0, k, k)).items():
            if np.isfinite(v):
                samples[key].append(v)
    out: dict[str, Any] = {}
    for key, v in point.items():
        out[key] = float(v)
        if samples[key]:
            lo, hi = np.percentile(samples[key], [2.5, 97.5])
            out[f"{key}_ci"] = [float(lo), float(hi)]
    out["threshold"] = float(threshold)
    out["n"] = k
    out["per_image_dice"] = [float(d) for d in dice]
    return out
