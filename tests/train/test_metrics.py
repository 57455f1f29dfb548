"""Metrics against brute-force definitions, operating points, temperature, augmentation records."""

from __future__ import annotations

import numpy as np
import torch

from medimg.train import augment as aug
from medimg.train.metrics import (
    at_threshold,
    auc,
    choose_threshold,
    classification_metrics,
    fit_temperature,
    segmentation_metrics,
    softmax,
)


def _brute_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    return np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])


def test_auc_matches_the_definition() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 2)  # ties included
    assert abs(auc(y, s) - _brute_auc(y, s)) < 1e-12
    assert np.isnan(auc(np.ones(5), np.arange(5)))


def test_threshold_figures_and_rules() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.8, 0.9, 0.3])
    m = at_threshold(y, p, 0.5)
    assert m["sensitivity"] == 0.75 and m["specificity"] == 0.75 and m["accuracy"] == 0.75
    t = choose_threshold(y, p, "sensitivity", target_sensitivity=1.0)
    assert at_threshold(y, p, t)["sensitivity"] == 1.0 and abs(t - 0.35) < 1e-9
    ty = choose_threshold(y, p, "youden")
    mm = at_threshold(y, p, ty)
    assert mm["sensitivity"] + mm["specificity"] >= 1.5


def test_bootstrap_intervals_contain_the_estimate() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 * y + 0.5 * rng.random(300), 0, 1)
    r = classification_metrics(y, p, 0.5, n_boot=300)
    for k in ("auc", "accuracy", "sensitivity", "specificity", "f1"):
        lo, hi = r[f"{k}_ci"]
        assert lo <= r[k] <= hi and hi - lo < 0.2
    assert classification_metrics(y, p, 0.5, n_boot=300) == r  # seeded


def test_temperature_recovers_an_overconfident_scale() -> None:
    rng = np.random.default_rng(0)
    z_true = rng.normal(0, 2, (4000, 2))
    y = np.array([rng.random() < q for q in softmax(z_true)[:, 1]]).astype(int)
    t = fit_temperature(z_true * 3.0, y)  # logits three times too large
    assert 2.5 < t < 3.6


def test_pooled_segmentation_auc_matches_exact() -> None:
    rng = np.random.default_rng(0)
    masks = [rng.random((40, 50)) < 0.1 for _ in range(3)]
    probs = [np.clip(0.4 * m + 0.6 * rng.random(m.shape), 0, 1) for m in masks]
    fovs = [np.ones_like(m) for m in masks]
    r = segmentation_metrics(probs, masks, fovs, 0.5, n_boot=50, hd95=False)
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([p.ravel() for p in probs])
    assert abs(r["auc"] - auc(y, s)) < 1e-3
    pred = s >= 0.5
    f1 = 2 * (pred & y).sum() / (2 * (pred & y).sum() + (pred & ~y).sum() + (~pred & y).sum())
    assert abs(r["f1"] - f1) < 1e-12


def test_augmentation_is_reproducible_from_its_parameters() -> None:
    spec = {"rotate": 10, "scale": 0.1, "translate": 0.1, "flip_x": 0.5, "contrast": 0.2, "gamma": 0.2}
    p1 = aug.make_params(spec, 8, np.random.default_rng(5))
    p2 = aug.make_params(spec, 8, np.random.default_rng(5))
    x = torch.rand(8, 1, 28, 28)
    a, _ = aug.apply(x.clone(), p1)
    b, _ = aug.apply(x.clone(), p2)
    assert torch.equal(a, b)
    none = aug.make_params({}, 8, np.random.default_rng(0))
    c, _ = aug.apply(x.clone(), none)
    assert torch.equal(c, x)  # an empty spec changes nothing


def test_mixup_blends_each_sample_with_its_recorded_partner() -> None:
    p = aug.make_params({"mixup": 0.4}, 6, np.random.default_rng(2))
    lam = float(p["mix_lambda"][0])
    assert 0 < lam < 1 and np.all(p["mix_lambda"] == lam)  # one weight per batch
    assert sorted(p["mix_partner"].astype(int)) == list(range(6))
    x = torch.rand(6, 1, 8, 8)
    mixed, partner, got = aug.mix(x, p)
    assert got == lam
    want = lam * x + (1 - lam) * x[p["mix_partner"].astype(int)]
    assert torch.allclose(mixed, want) and torch.equal(partner, torch.from_numpy(p["mix_partner"].astype(np.int64)))
    # no mixup in the spec: nothing is drawn for it and the batch passes unchanged
    q = aug.make_params({}, 6, np.random.default_rng(2))
    same, _, one = aug.mix(x, q)
    assert one == 1.0 and torch.equal(same, x)
