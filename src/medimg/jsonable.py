"""Turn results into JSON-friendly Python values (one helper for every JSON writer)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["plain"]


def plain(value: Any, digits: int | None = None) -> Any:
    """numpy arrays and scalars to Python, tuples to lists, NaN/inf to None, other objects to str.

    ``digits`` rounds floats (for human-facing summaries); None keeps full precision.
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), digits)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return None
    return round(f, digits) if digits is not None else f
