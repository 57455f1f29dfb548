"""PNG plots drawn with Pillow (no plotting dependency): loss and metric curves, ROC and calibration.

Each plot is a simple line chart with axes, ticks, a title and a legend; enough to read a training
run, not a publication figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["calibration", "curves", "line_chart", "roc"]

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def line_chart(series: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str,
               xlabel: str, ylabel: str, xlim: tuple[float, float] | None = None,
               ylim: tuple[float, float] | None = None, size: tuple[int, int] = (640, 440),
               dashed_diagonal: bool = False) -> Path:
    """Draw ``(label, x, y)`` series into a PNG."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 60, 20, 30, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xs = np.concatenate([np.asarray(s[1], float) for s in series]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(s[2], float) for s in series]) if series else np.zeros(1)
    ys = ys[np.isfinite(ys)] if np.isfinite(ys).any() else np.zeros(1)
    x0, x1 = xlim or (float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1)
    y0, y1 = ylim or (float(ys.min()), float(ys.max()) if ys.max() > ys.min() else float(ys.min()) + 1)

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for i in range(6):
        xv = x0 + (x1 - x0) * i / 5
        yv = y0 + (y1 - y0) * i / 5
        X, _ = px(xv, y0)
        _, Y = px(x0, yv)
        d.line([X, h - bottom, X, h - bottom + 4], fill="black")
        d.text((X - 12, h - bottom + 6), f"{xv:.3g}", fill="black")
        d.line([left - 4, Y, left, Y], fill="black")
        d.text((4, Y - 6), f"{yv:.3g}", fill="black")
    d.text((w // 2 - 4 * len(title), 8), title, fill="black")
    d.text((w // 2 - 3 * len(xlabel), h - 18), xlabel, fill="black")
    d.text((4, top - 16), ylabel, fill="black")
    if dashed_diagonal:
        for t in np.linspace(0, 1, 40)[::2]:
            d.line([px(t, t), px(t + 1 / 40, t + 1 / 40)], fill=(150, 150, 150))
    for i, (label, x, y) in enumerate(series):
        c = _COLOURS[i % len(_COLOURS)]
        pts = [px(float(a), float(b)) for a, b in zip(x, y, strict=True) if np.isfinite(b)]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        elif pts:
            d.ellipse([pts[0][0] - 3, pts[0][1] - 3, pts[0][0] + 3, pts[0][1] + 3], fill=c)
        d.text((w - right - 190, top + 6 + 14 * i), label, fill=c)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def curves(histories: Sequence[Sequence[dict[str, Any]]], path: Path, name: str) -> Path:
    """Training loss and validation metric per epoch for every member, side by side."""
    from PIL import Image

    loss_series, metric_series = [], []
    for i, hist in enumerate(histories):
        ep = np.array([r["epoch"] for r in hist], float)
        loss_series.append((f"member {i} train loss", ep, np.array([r["train_loss"] for r in hist])))
        if any("val_loss" in r for r in hist):
            loss_series.append((f"member {i} val loss", ep,
                                np.array([r.get("val_loss", np.nan) for r in hist], float)))
        key = "val_auc" if any("val_auc" in r for r in hist) else "val_f1"
        metric_series.append((f"member {i} {key}", ep, np.array([r.get(key, np.nan) for r in hist], float)))
        if any("val_f1" in r for r in hist) and key != "val_f1":
            pass
    a = line_chart(loss_series, path.with_name("_loss.png"), f"{name}: loss", "epoch", "loss")
    b = line_chart(metric_series, path.with_name("_metric.png"), f"{name}: validation", "epoch", "metric")
    both = Image.new("RGB", (1280, 440), "white")
    both.paste(Image.open(a), (0, 0))
    both.paste(Image.open(b), (640, 0))
    both.save(path)
    a.unlink()
    b.unlink()
    return path


def roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-np.asarray(p))
    y = np.asarray(y).astype(bool)[order]
    tpr = np.concatenate([[0], np.cumsum(y) / max(y.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(~y) / max((~y).sum(), 1)])
    return fpr, tpr


def roc(y: np.ndarray, p: np.ndarray, path: Path, title: str, threshold: float | None = None) -> Path:
    fpr, tpr = roc_points(y, p)
    series = [("ROC", fpr, tpr)]
    if threshold is not None:
        yb = np.asarray(y).astype(bool)
        pred = np.asarray(p) >= threshold
        series.append((f"operating point {threshold:.3f}", np.array([np.mean(pred[~yb])]),
                       np.array([np.mean(pred[yb])])))
    return line_chart(series, path, title, "1 - specificity", "sensitivity", (0, 1), (0, 1),
                      dashed_diagonal=True)


def calibration(y: np.ndarray, p: np.ndarray, path: Path, title: str, bins: int = 10) -> Path:
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    mids, obs = [], []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            mids.append(p[sel].mean())
            obs.append(y[sel].mean())
    return line_chart([("observed frequency", np.array(mids), np.array(obs))], path, title,
                      "predicted probability", "observed fraction positive", (0, 1), (0, 1),
                      dashed_diagonal=True)
