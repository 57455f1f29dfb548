"""Explanations: Grad-CAM heatmaps (MONAI ``monai.visualize.GradCAM``) for classifications, and a check
that a heatmap points at what the model uses.

The heatmap is the mean of the raw Grad-CAM maps (ReLU of the gradient-weighted activations) of every
member for the positive class, at the network's input size, divided by its maximum: 1 marks the
strongest evidence for the class, 0 none. A model with test-time augmentation is explained in every
exact view it predicts from (mirrors and quarter turns, not the warped jitter views), each map turned
back onto the image before averaging. Raw maps are averaged, not normalised ones, so a member or view
with little evidence for the class adds little; MONAI's default post-processing is not used at all: it
maps each map's minimum to 1 and its maximum to 0 (``default_normalizer``, "will flip magnitudes"),
which turns a heatmap inside out.

:func:`faithfulness` measures a heatmap the usual way (deletion and insertion curves): blur away the
pixels the heatmap ranks highest first and see the probability fall (deletion), or restore them into
a blurred image first and see it rise (insertion), against the same done in a random order.
:func:`heatmap_for_image` resamples a heatmap to the image's own grid and :func:`save_overlay` writes
it over the image as a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .nets import cam_layer
from .registry import BATCH_IMAGES, Model
from .tta import apply, exact_views, invert

__all__ = ["faithfulness", "gradcam", "heatmap_for_image", "save_overlay"]


def _raw(cam_map: Any) -> Any:
    """Post-processing that keeps Grad-CAM's values (MONAI's default inverts them)."""
    return cam_map


def gradcam(model: Model, x: np.ndarray, class_index: int | None = None, *,
            normalise: bool = True) -> np.ndarray:
    """Grad-CAM ``(y, x)`` of a prepared ``(c, y, x)`` input: the mean raw map over members and exact
    views, divided by its maximum (``normalise=False``: the mean raw map, >= 0)."""
    import torch
    from monai.visualize import GradCAM

    layer = cam_layer(model.arch)
    if layer is None or model.contract.task != "classification":
        msg = f"model {model.name!r} ({model.arch}) has no Grad-CAM layer; Grad-CAM needs a classifier"
        raise ValueError(msg)
    cls = model.contract.positive_class if class_index is None else int(class_index)
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))[None]
    model._check_batch(t)
    total = np.zeros(t.shape[-2:], np.float64)
    n = 0
    with torch.enable_grad():
        for net in model.members:
            cam = GradCAM(nn_module=net, target_layers=layer, postprocessing=_raw)
            for v in exact_views(model.tta):
                m = cam(apply(t, v).clone().requires_grad_(True), class_idx=cls)
                total += invert(m, v)[0, 0].detach().numpy()
                n += 1
    out = np.nan_to_num(total / n)
    if normalise:
        peak = float(out.max())
        out = out / peak if peak > 0 else np.zeros_like(out)
    return out.astype(np.float32)


def faithfulness(model: Model, x: np.ndarray, heats: np.ndarray | None = None, *, steps: int = 10,
                 seed: int = 0, baseline: str = "blur") -> dict[str, Any]:
    """Deletion and insertion scores of heatmaps for prepared inputs ``x`` ``(n, c, y, x)``.

    For each image the pixels are taken in the heatmap's order (highest first; ``heats`` default to
    :func:`gradcam`) in ``steps`` equal parts and replaced by a blurred copy of the image (Gaussian,
    sigma a tenth of the smaller side): ``deletion`` is the area under the positive-class probability
    as they go (lower is better), ``insertion`` the area as they come back into the blurred image
    (higher is better); ``random_*`` do the same in one seeded random order per image.
    ``baseline="mean"`` fills with the image's mean instead of blurring. Means over
    the images; a heatmap that points at the evidence has ``deletion < random_deletion`` and
    ``insertion > random_insertion``.
    """
    from scipy.ndimage import gaussian_filter

    if baseline not in ("blur", "mean"):
        msg = f"unknown faithfulness baseline {baseline!r}; use 'blur' or 'mean'"
        raise ValueError(msg)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        msg = f"faithfulness needs a batch (n, c, y, x) of at least one image, got shape {x.shape}"
        raise ValueError(msg)
    if heats is None:
        heats = np.stack([gradcam(model, xi) for xi in x])
    rng = np.random.default_rng(seed)
    hw = x.shape[2] * x.shape[3]
    sigma = max(1.0, min(x.shape[2:]) / 10)
    per_image = 2 * 2 * (steps + 1)  # (heatmap, random order) x (deletion, insertion) x steps
    chunk = max(1, BATCH_IMAGES // per_image)  # images whose curves go in one model call
    probs = []
    for start in range(0, len(x), chunk):
        batch = []
        for xi, h in zip(x[start:start + chunk], heats[start:start + chunk], strict=True):
            if baseline == "blur":
                blur = gaussian_filter(xi, sigma=(0, sigma, sigma)).astype(np.float32)
            else:
                blur = np.broadcast_to(xi.mean(axis=(1, 2), keepdims=True), xi.shape).astype(np.float32)
            for order in (np.argsort(-np.asarray(h).ravel(), kind="stable"), rng.permutation(hw)):
                for k in range(steps + 1):
                    keep = np.zeros(hw, bool)
                    keep[order[: round(hw * k / steps)]] = True
                    keep = keep.reshape(1, *x.shape[2:])
                    batch += [np.where(keep, blur, xi), np.where(keep, xi, blur)]
        probs.append(model.positive_proba(np.stack(batch)).reshape(-1, 2, steps + 1, 2))
    p = np.concatenate(probs)  # (image, order, step, deletion/insertion)
    area = np.trapezoid(p, dx=1 / steps, axis=2)
    scores = {"deletion": area[:, 0, 0], "insertion": area[:, 0, 1],
              "random_deletion": area[:, 1, 0], "random_insertion": area[:, 1, 1]}
    out: dict[str, Any] = {k: float(np.mean(v)) for k, v in scores.items()}
    out.update(n=len(x), steps=steps,
               baseline=f"Gaussian blur, sigma {sigma:g} px" if baseline == "blur" else "image mean")
    return out


def heatmap_for_image(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A heatmap resampled (bilinear) to an image's ``(y, x)`` shape."""
    from .contract import resize

    return resize(heat[None], shape)[0]


def save_overlay(image_yx: np.ndarray, heat: np.ndarray, path: str | Path, alpha: float = 0.45) -> Path:
    """Write the heatmap (red-yellow) over the grey or RGB image as a PNG; returns the path."""
    from PIL import Image as PILImage

    from .contract import to_unit

    base = to_unit(image_yx)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    h = heatmap_for_image(np.clip(heat, 0, 1), base.shape[:2])
    colour = np.stack([np.ones_like(h), h, np.zeros_like(h)], axis=-1)  # red (low) to yellow (high)
    a = (alpha * h)[..., None]
    rgb = (1 - a) * base + a * colour
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(p)
    return p


def evidence_entry(path: Path, model: Model, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``Finding.evidence`` item for a saved Grad-CAM overlay."""
    n = len(model.members) * len(exact_views(model.tta))
    return {"kind": "heatmap", "method": "Grad-CAM (MONAI)", "path": str(path),
            "model": model.name, "layer": cam_layer(model.arch),
            "scale": f"mean of {n} raw maps ({len(model.members)} member(s) x exact test-time views), "
                     "divided by its maximum: 1 marks this image's strongest evidence for the class; "
                     "the map says nothing about the probability",
            **(extra or {})}
