"""Evaluate a model (shipped name or model file) on a dataset: figures with 95% bootstrap CIs.

The data come in any form :mod:`medimg.train.data` reads; the model's own contract prepares them and
its own operating point (chosen on validation data when it was trained) makes the decisions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.contract import ContractError
from ..models.registry import Model, load
from .config import resolve_data_path
from .data import ClassData, SegData, _has_split_dirs, load_split
from .metrics import classification_metrics, segmentation_metrics

__all__ = ["default_split", "evaluate", "explanation_check"]


def default_split(path: Path) -> str:
    """``test`` for an NPZ file or a folder with split folders; ``all`` for a plain folder or CSV."""
    if path.suffix.lower() == ".npz":
        return "test"
    if path.is_dir() and _has_split_dirs(path):
        return "test"
    return "all"


def evaluate(model: str | os.PathLike[str] | Model, data: str | os.PathLike[str],
             split: str | None = None, *, n_boot: int = 1000, out: str | Path | None = None,
             limit: int | None = None, explain: int = 0) -> dict[str, Any]:
    """Metrics of ``model`` on ``data`` (its ``split``), each with a ``_ci`` 95% interval.

    Classification: ``auc``, ``accuracy``, ``sensitivity``, ``specificity``, ``f1``, ``ppv``,
    ``npv``, ``brier``, ``ece`` at the model's operating point; segmentation: ``f1`` (pooled
    pixels inside the field of view), ``auc``, ``accuracy``, ``sensitivity``, ``specificity``,
    ``dice`` (mean per image), ``hd95`` (pixels).

    ``explain=N`` (classifiers) adds ``explanation``: :func:`medimg.models.explain.faithfulness` of the
    Grad-CAM heatmaps of the first ``N`` images the model calls positive.
    """
    m = model if isinstance(model, Model) else load(model)
    p = resolve_data_path(data)  # as given, else under $MEDIMG_DATA / ../shared/data
    if not p.exists():
        raise InputError(p, "no such dataset", "pass an NPZ file, a folder or a CSV manifest")
    split = split or default_split(p)
    c = m.contract
    split_arg = split
    dcfg = {"path": str(p), "source": "auto", "classes": list(c.classes) or None,
            "val_fraction": 0.15, "limit": limit}
    if split_arg == "all" and p.suffix.lower() == ".csv":
        raise InputError(p, "a CSV manifest needs --split when it has a split column")
    ds = load_split(dcfg, c.task, split_arg, c)
    result: dict[str, Any] = {"model": m.name, "data": str(p), "split": split, "n": len(ds)}
    if c.task == "classification":
        if not isinstance(ds, ClassData):
            raise ContractError(f"{p}: not classification data for model {m.name!r}")
        if ds.y.max() >= len(c.classes or (0, 1)):
            raise ContractError(f"{p}: labels up to {int(ds.y.max())} but model {m.name!r} has "
                                f"{len(c.classes)} classes ({', '.join(c.classes)}); "
                                "use data with the model's classes")
        prob = m.positive_proba(ds.x)
        y = (ds.y == c.positive_class).astype(int)
        result.update(classification_metrics(y, prob, m.threshold, n_boot=n_boot))
        result["positive_class"] = c.classes[c.positive_class] if c.classes else c.positive_class
        if explain > 0:
            result["explanation"] = explanation_check(m, ds.x, prob, explain)
        if out:
            from . import plots

            o = Path(out)
            plots.roc(y, prob, o / f"roc_{split}.png", f"{m.name} ROC ({split})", m.threshold)
            plots.calibration(y, prob, o / f"calibration_{split}.png", f"{m.name} calibration ({split})")
    else:
        if explain > 0:
            raise ContractError(f"model {m.name!r} is a {c.task} model; --explain (Grad-CAM) needs a classifier")
        if not isinstance(ds, SegData):
            raise ContractError(f"{p}: not segmentation data for model {m.name!r}")
        probs = [m.segment_proba(img) for img in ds.images]
        result.update(segmentation_metrics(probs, ds.masks, ds.fovs, m.threshold, n_boot=n_boot))
        if out:
            from PIL import Image as PILImage

            o = Path(out)
            o.mkdir(parents=True, exist_ok=True)
            for pr, ident in zip(probs, ds.ids, strict=True):
                PILImage.fromarray((np.clip(pr, 0, 1) * 255).astype(np.uint8)).save(
                    o / f"{Path(ident).stem}_prob.png")
    result["threshold"] = m.threshold
    return result


def explanation_check(model: Model, x: np.ndarray, prob: np.ndarray, n: int) -> dict[str, Any]:
    """Faithfulness of the Grad-CAM heatmaps of the first ``n`` of ``x`` that ``model`` calls positive."""
    from ..models.explain import faithfulness

    idx = np.flatnonzero(prob >= model.threshold)[:n]
    if len(idx) == 0:
        return {"n": 0, "selection": "no image called positive; nothing to explain"}
    out = faithfulness(model, x[idx])
    out["selection"] = f"the first {len(idx)} images called positive (probability >= {model.threshold:.4f})"
    return out
