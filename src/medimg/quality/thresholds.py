"""Thresholds of the quality checks, per kind of image.

Calibrated on the real images in ../shared/data and degraded copies of them by
``python -m medimg.quality.calibrate`` (the table and the reasoning are in docs/quality.md).  Each
entry is ``(warn, fail)``; ``"above"`` checks flag values over the limits, ``"below"`` checks values
under them.
"""

from __future__ import annotations

__all__ = ["DIRECTION", "THRESHOLDS", "limits"]

#: Whether a check flags high values ("above") or low values ("below").
DIRECTION: dict[str, str] = {
    "noise": "above",
    "snr": "below",
    "cnr": "below",
    "sharpness": "above",
    "clipping": "above",
    "dynamic_range": "below",
    "fov_cut": "above",
    "ghosting": "above",
}

THRESHOLDS: dict[str, dict[str, tuple[float, float]]] = {
    "ct": {
        "noise": (45.0, 70.0),  # HU, global noise index
        "cnr": (2.0, 1.2),  # fat vs soft tissue over noise
        "sharpness": (0.76, 0.84),  # blur effect (h=5), 0 sharp .. 1 blurred
        "fov_cut": (0.15, 0.30),  # share of the trunk's width on an image edge
    },
    # CT reconstructed with a sharp (lung, bone) kernel: several times the noise of a soft kernel
    # at the same dose, and read in wide windows where it matters less.
    "ct_sharp": {
        "noise": (90.0, 130.0),
        "cnr": (1.2, 0.8),
    },
    "mr": {
        "snr": (10.5, 6.0),
        "cnr": (2.0, 1.2),
        "sharpness": (0.78, 0.84),
        "ghosting": (0.015, 0.04),
        "fov_cut": (0.15, 0.30),
    },
    "xray": {
        "snr": (15.0, 8.0),
        "cnr": (3.0, 1.5),
        "sharpness": (0.80, 0.86),
        "clipping": (0.02, 0.05),
        "dynamic_range": (0.35, 0.2),
    },
    "photo": {
        "snr": (15.0, 8.0),
        "cnr": (3.0, 1.5),
        "sharpness": (0.66, 0.76),
        "clipping": (0.02, 0.05),
        "dynamic_range": (0.25, 0.15),
        "fov_cut": (0.15, 0.30),
    },
    "other": {
        "snr": (15.0, 8.0),
        "sharpness": (0.78, 0.84),
    },
}


def limits(kind: str, check: str) -> tuple[float, float] | None:
    """``(warn, fail)`` of ``check`` for ``kind``, or ``None`` when the check does not apply."""
    return THRESHOLDS.get(kind, {}).get(check)
