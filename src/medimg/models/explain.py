"""Explanations: Grad-CAM heatmaps (MONAI ``monai.visualize.GradCAM``) for classifications.

For an ensemble the heatmap is the mean of the members' Grad-CAM maps for the positive class, each
normalised to [0, 1] by MONAI, at the network's input size; a model with test-time augmentation is
explained in every exact view it predicts from (mirrors and quarter turns, not the warped jitter
views), each map turned back onto the image before averaging.
:func:`heatmap_for_image` resamples it to the image's own grid and :func:`save_overlay` writes it
over the image as a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .nets import cam_layer
from .registry import Model
from .tta import apply, exact_views, invert

__all__ = ["gradcam", "heatmap_for_image", "save_overlay"]


def gradcam(model: Model, x: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM ``(y, x)`` in [0, 1] of a prepared ``(c, y, x)`` input, averaged over members."""
    import torch
    from monai.visualize import GradCAM

    layer = cam_layer(model.arch)
    if layer is None or model.contract.task != "classification":
        msg = f"model {model.name!r} ({model.arch}) has no Grad-CAM layer; Grad-CAM needs a classifier"
        raise ValueError(msg)
    cls = model.contract.positive_class if class_index is None else int(class_index)
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))[None]
    model._check_batch(t)
    maps = []
    with torch.enable_grad():
        for net in model.members:
            cam = GradCAM(nn_module=net, target_layers=layer)
            for v in exact_views(model.tta):
                m = cam(apply(t, v).clone().requires_grad_(True), class_idx=cls)
                maps.append(invert(m, v)[0, 0].detach().numpy())
    out = np.mean(maps, axis=0)
    return np.nan_to_num(out.astype(np.float32))


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
    return {"kind": "heatmap", "method": "Grad-CAM (MONAI)", "path": str(path),
            "model": model.name, "layer": cam_layer(model.arch), **(extra or {})}
