"""Augmentation with recorded parameters: random choice (:func:`make_params`) kept apart from
applying it (:func:`apply`), so every augmented batch can be reproduced from its parameters.

The ``[augment]`` table of a config sets the ranges: ``rotate`` (degrees, +-), ``scale`` (+- fraction),
``translate`` (+- fraction of the size), ``flip_x`` / ``flip_y`` (probabilities), ``rot90`` (bool:
random quarter turns), ``brightness`` (+- added), ``contrast`` (+- fraction), ``gamma`` (+- fraction
of the exponent), ``mixup`` (classification: the Beta(a, a) parameter of mixup, Zhang et al. 2018:
each sample blended with a partner from its batch, the loss blended alike).  Absent keys do nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["apply", "make_params", "mix"]

PARAM_NAMES = ("angle", "scale", "tx", "ty", "flip_x", "flip_y", "quarter", "brightness",
               "contrast", "gamma", "mix_lambda", "mix_partner")


def make_params(spec: dict[str, Any], n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw augmentation parameters for ``n`` samples (one value per sample and name)."""

    def u(r: float) -> np.ndarray:
        return rng.uniform(-r, r, n) if r else np.zeros(n)

    a = float(spec.get("mixup", 0.0))
    mix = {"mix_lambda": np.full(n, rng.beta(a, a)) if a else np.ones(n),
           "mix_partner": rng.permutation(n).astype(float) if a else np.arange(n, dtype=float)}
    return mix | {
        "angle": u(float(spec.get("rotate", 0.0))),
        "scale": 1.0 + u(float(spec.get("scale", 0.0))),
        "tx": u(float(spec.get("translate", 0.0))),
        "ty": u(float(spec.get("translate", 0.0))),
        "flip_x": (rng.random(n) < float(spec.get("flip_x", 0.0))).astype(float),
        "flip_y": (rng.random(n) < float(spec.get("flip_y", 0.0))).astype(float),
        "quarter": rng.integers(0, 4, n).astype(float) if spec.get("rot90") else np.zeros(n),
        "brightness": u(float(spec.get("brightness", 0.0))),
        "contrast": 1.0 + u(float(spec.get("contrast", 0.0))),
        "gamma": 1.0 + u(float(spec.get("gamma", 0.0))),
    }


def _geometric(p: dict[str, np.ndarray]) -> bool:
    return bool(np.any(p["angle"]) or np.any(p["scale"] != 1) or np.any(p["tx"]) or np.any(p["ty"]))


def apply(x: torch.Tensor, p: dict[str, np.ndarray], mask: torch.Tensor | None = None
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment a ``(b, c, y, x)`` batch (and its ``(b, 1, y, x)`` masks) with drawn parameters."""
    b = x.shape[0]
    if _geometric(p):
        a = torch.tensor(p["angle"] * math.pi / 180.0, dtype=x.dtype)
        s = torch.tensor(p["scale"], dtype=x.dtype)
        theta = torch.zeros(b, 2, 3, dtype=x.dtype)
        theta[:, 0, 0] = torch.cos(a) / s
        theta[:, 0, 1] = -torch.sin(a) / s
        theta[:, 1, 0] = torch.sin(a) / s
        theta[:, 1, 1] = torch.cos(a) / s
        theta[:, 0, 2] = torch.tensor(p["tx"] * 2, dtype=x.dtype)
        theta[:, 1, 2] = torch.tensor(p["ty"] * 2, dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if mask is not None:
            mask = F.grid_sample(mask, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    for i in range(b):
        dims = [d for d, key in ((3, "flip_x"), (2, "flip_y")) if p[key][i]]
        if dims:
            x[i] = torch.flip(x[i], [d - 1 for d in dims])
            if mask is not None:
                mask[i] = torch.flip(mask[i], [d - 1 for d in dims])
        q = int(p["quarter"][i])
        if q and x.shape[2] == x.shape[3]:
            x[i] = torch.rot90(x[i], q, dims=(1, 2))
            if mask is not None:
                mask[i] = torch.rot90(mask[i], q, dims=(1, 2))
    shape = (b, 1, 1, 1)
    if np.any(p["gamma"] != 1):
        g = torch.tensor(p["gamma"], dtype=x.dtype).view(shape)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        span = (hi - lo).clamp_min(1e-6)
        x = ((x - lo) / span).clamp(0, 1) ** g * span + lo
    if np.any(p["contrast"] != 1) or np.any(p["brightness"]):
        c = torch.tensor(p["contrast"], dtype=x.dtype).view(shape)
        br = torch.tensor(p["brightness"], dtype=x.dtype).view(shape)
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - m) * c + m + br
    return x, mask


def mix(x: torch.Tensor, p: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup of a batch by drawn parameters: the blended batch, each sample's partner index and the
    weight of the sample itself (the loss is ``lam * loss(y) + (1 - lam) * loss(y[partner])``)."""
    lam = float(p["mix_lambda"][0])
    partner = torch.from_numpy(p["mix_partner"].astype(np.int64))
    if lam >= 1.0:
        return x, partner, 1.0
    return lam * x + (1.0 - lam) * x[partner], partner, lam
