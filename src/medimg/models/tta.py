"""Test-time augmentation: the same image seen in several views, outputs averaged.

A :class:`View` mirrors the image left-right (if ``mirrored``), turns it by ``quarter_turns`` x 90
degrees and then, for the jitter views only, warps it by a small similarity transform (``degrees``,
``zoom``, ``shift`` as a fraction of the size; the conventions of :mod:`medimg.train.augment`, borders
repeated).  Mirrors and quarter turns are exact and invertible; the warped views are not, so they serve
classifiers only.  A classifier's outputs are averaged over the views as they are; a segmentation's
outputs and a Grad-CAM map are turned back (:func:`invert`) before they are averaged (Grad-CAM uses a
model's exact views only).  Only views the network was trained to be invariant to make sense:
:func:`augment_problem` refuses a name whose views lie outside a config's ``[augment]`` ranges.

Names (``[inference] tta`` in a training config, stored with the model):

* ``none``: the image as it is;
* ``flip_x``: plus its left-right mirror image (2 views);
* ``flip_xy``: plus its left-right, top-bottom and both mirror images (4 views);
* ``dihedral``: all 8 quarter turns and mirror images (for images without an up or a left);
* ``flip_x_jitter``: ``flip_x`` plus shifts of 4% of the size left, right, up and down, turns of
  +-10 degrees and zooms of +-10% (10 views; classification; needs ``rotate >= 10``, ``scale >= 0.1``,
  ``translate >= 0.04`` and ``flip_x`` in the training augmentation).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["TTA_NAMES", "View", "apply", "augment_problem", "exact_views", "invert", "task_problem", "views"]


class View(NamedTuple):
    quarter_turns: int
    mirrored: bool
    degrees: float = 0.0
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # (x, y), fractions of the size

    @property
    def exact(self) -> bool:
        """Mirrors and quarter turns only: no interpolation, invertible."""
        return self.degrees == 0.0 and self.zoom == 1.0 and self.shift == (0.0, 0.0)


_JITTER = (View(0, False, shift=(0.04, 0.0)), View(0, False, shift=(-0.04, 0.0)),
           View(0, False, shift=(0.0, 0.04)), View(0, False, shift=(0.0, -0.04)),
           View(0, False, degrees=10.0), View(0, False, degrees=-10.0),
           View(0, False, zoom=0.9), View(0, False, zoom=1.1))

TTA_NAMES: dict[str, tuple[View, ...]] = {
    "none": (View(0, False),),
    "flip_x": (View(0, False), View(0, True)),
    # top-bottom mirror = left-right mirror turned by two quarter turns; both = a half turn
    "flip_xy": (View(0, False), View(0, True), View(2, True), View(2, False)),
    "dihedral": tuple(View(q, f) for f in (False, True) for q in range(4)),
    "flip_x_jitter": (View(0, False), View(0, True), *_JITTER),
}

# What each name needs of the training augmentation: [augment] key -> smallest value (None: switched on).
_NEEDS: dict[str, dict[str, float | None]] = {
    "none": {},
    "flip_x": {"flip_x": None},
    "flip_xy": {"flip_x": None, "flip_y": None},
    "dihedral": {"flip_x": None, "rot90": None},
    "flip_x_jitter": {"flip_x": None, "rotate": 10.0, "scale": 0.1, "translate": 0.04},
}


def views(name: str | None) -> tuple[View, ...]:
    """The views of a TTA name (``None`` or ``""``: none); ValueError for an unknown name."""
    key = name or "none"
    if key not in TTA_NAMES:
        msg = f"unknown test-time augmentation {name!r}; choose one of {', '.join(TTA_NAMES)}"
        raise ValueError(msg)
    return TTA_NAMES[key]


def exact_views(name: str | None) -> tuple[View, ...]:
    """The views of ``name`` that can be turned back exactly (for maps: Grad-CAM, segmentation)."""
    return tuple(v for v in views(name) if v.exact)


def task_problem(name: str | None, task: str) -> str | None:
    """Why ``name``'s views do not serve a ``task`` model (None: they do): warped views cannot be
    turned back onto a segmentation's grid.  ValueError for an unknown name."""
    if any(not v.exact for v in views(name)) and task != "classification":
        return f"{name or 'none'!r} has warped views, which cannot be turned back: classification only"
    return None


def augment_problem(name: str | None, augment: dict[str, Any], task: str) -> str | None:
    """Why ``name`` does not fit a model trained with ``augment`` for ``task`` (None: it fits)."""
    key = name or "none"
    problem = task_problem(key, task)
    if problem:
        return problem
    short = [k if need is None else f"{k} >= {need:g}" for k, need in _NEEDS[key].items()
             if (not augment.get(k) if need is None else float(augment.get(k) or 0) < need)]
    if short:
        return (f"{key!r} shows the network views it was not trained on; the [augment] table needs "
                + ", ".join(short))
    return None


def apply(x: Any, view: View) -> Any:
    """``x`` (a tensor ``(..., y, x)``; ``(n, c, y, x)`` for warped views) as seen in ``view``."""
    import torch

    q, mirrored = view.quarter_turns, view.mirrored
    if mirrored:
        x = torch.flip(x, dims=(-1,))
    if q % 4:
        x = torch.rot90(x, q, dims=(-2, -1))
    return x if view.exact else _warp(x, view)


def _warp(x: Any, view: View) -> Any:
    import torch
    import torch.nn.functional as F

    a = math.radians(view.degrees)
    c, s = math.cos(a) / view.zoom, math.sin(a) / view.zoom
    theta = torch.tensor([[c, -s, 2 * view.shift[0]], [s, c, 2 * view.shift[1]]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def invert(y: Any, view: View) -> Any:
    """A spatial output computed on ``apply(x, view)`` brought back onto ``x``'s grid (exact views)."""
    import torch

    if not view.exact:
        raise ValueError(f"test-time view {view} is warped and cannot be turned back exactly")
    q = view.quarter_turns
    if q % 4:
        y = torch.rot90(y, -q, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if view.mirrored else y
