"""Test-time augmentation: the same image seen in several mirrored / quarter-turned views.

A view is ``(quarter_turns, mirrored)``: the image is first mirrored left-right (if ``mirrored``),
then turned by ``quarter_turns`` x 90 degrees.  A classifier's outputs are averaged over the views as
they are; a segmentation's outputs are turned back (:func:`invert`) before they are averaged.  Only
views the network was trained to be invariant to make sense: name in a config only the ones its
``[augment]`` table draws (``flip_x``, ``flip_y``, ``rot90``).

Names (``[inference] tta`` in a training config, stored with the model):

* ``none``: the image as it is;
* ``flip_x``: plus its left-right mirror image (2 views);
* ``flip_xy``: plus its left-right, top-bottom and both mirror images (4 views);
* ``dihedral``: all 8 quarter turns and mirror images (for images without an up or a left).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TTA_NAMES", "View", "apply", "invert", "views"]

View = tuple[int, bool]

TTA_NAMES: dict[str, tuple[View, ...]] = {
    "none": ((0, False),),
    "flip_x": ((0, False), (0, True)),
    # top-bottom mirror = left-right mirror turned by two quarter turns; both = a half turn
    "flip_xy": ((0, False), (0, True), (2, True), (2, False)),
    "dihedral": tuple((q, f) for f in (False, True) for q in range(4)),
}


def views(name: str | None) -> tuple[View, ...]:
    """The views of a TTA name (``None`` or ``""``: none); ValueError for an unknown name."""
    key = name or "none"
    if key not in TTA_NAMES:
        msg = f"unknown test-time augmentation {name!r}; choose one of {', '.join(TTA_NAMES)}"
        raise ValueError(msg)
    return TTA_NAMES[key]


def apply(x: Any, view: View) -> Any:
    """``x`` (a tensor ``(..., y, x)``) as seen in ``view``."""
    import torch

    q, mirrored = view
    if mirrored:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, q, dims=(-2, -1)) if q % 4 else x


def invert(y: Any, view: View) -> Any:
    """A spatial output computed on ``apply(x, view)`` brought back onto ``x``'s grid."""
    import torch

    q, mirrored = view
    if q % 4:
        y = torch.rot90(y, -q, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if mirrored else y
