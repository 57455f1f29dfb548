"""The input features of one analysis: what the model was shown, in a few numbers and words.

:func:`describe` is called by the server's analysis worker right after the pipeline has run (the
analysed image is still in memory) and by :mod:`medimg.monitoring.reference` on the data each model
was trained or calibrated on, so that both sides are measured by the same code.

Features (``None`` where the input does not record it):

==================  ============  ==========================================================
``scanner``         categorical   Manufacturer + Manufacturer's Model Name
``kernel``          categorical   Convolution Kernel (CT)
``slice_thickness`` setting, mm   Slice Thickness (CT)
``kvp``             setting, kV   KVP (CT, X-ray)
``pixel_spacing``   setting, mm   in-plane spacing along the rows, when the file records it
``rows``            setting, px   image height (fundus photographs only: the model works at a
                                  fixed scale)
``px_mean`` ...     numeric       ``px_mean, px_std, px_p05, px_p50, px_p95`` of the analysed
                                  intensities (below)
``fov_fraction``    numeric       share of the photograph inside the field of view (fundus)
==================  ============  ==========================================================

Which intensities the pixel statistics describe, per protocol (:data:`PIXEL_DOMAIN`):

* ``chest_ct``: HU of the analysed series inside the body (the coarse body mask of
  :func:`medimg.preprocess.masks.coarse_body_mask`, lungs included; sampled on its ~3 mm grid).
* ``chest_xray``, ``breast_us``: the classifier's input exactly as it sees it
  (:func:`medimg.models.contract.prepare`: 28x28, intensities in 0-1).
* ``retina``: luminance (BT.601) in 0-1 inside the classical field of view
  (:func:`medimg.quantify.vessels.field_of_view`).  The model's own input is z-scored per image,
  which would hide any brightness shift, so the statistics are taken before that step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Image
    from ..report.model import Report

__all__ = ["CATEGORICAL", "FEATURES", "NUMERIC", "PIXEL_DOMAIN", "PIXEL_STATS", "PROTOCOL_MODELS",
           "SETTINGS", "ct_pixel_stats", "describe", "finding_scores", "fundus_pixel_stats",
           "header_features", "model_input_stats", "pixel_stats"]

#: Categorical features: compared by the share of categories the reference never had.
CATEGORICAL = ("scanner", "kernel")
#: Acquisition settings: compared with the range the reference covers.
SETTINGS = ("slice_thickness", "kvp", "pixel_spacing", "rows")
PIXEL_STATS = ("px_mean", "px_std", "px_p05", "px_p50", "px_p95")
#: Numeric features of the image content: compared by a two-sample test.
NUMERIC = (*PIXEL_STATS, "fov_fraction")
FEATURES = (*CATEGORICAL, *SETTINGS, *NUMERIC)

#: The shipped model of each protocol (chest CT uses a classical detector, named by its module).
PROTOCOL_MODELS = {
    "chest_ct": "medimg.detect.lung_nodules",
    "chest_xray": "cxr-pneumonia",
    "breast_us": "us-breast",
    "retina": "retina-vessels",
}

#: What the pixel statistics of each protocol are computed on, and their unit.
PIXEL_DOMAIN = {
    "chest_ct": ("HU inside the body", "[hnsf'U]"),
    "chest_xray": ("model input (28x28, 0-1)", "1"),
    "breast_us": ("model input (28x28, 0-1)", "1"),
    "retina": ("luminance inside the field of view (0-1)", "1"),
}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = "\\".join(str(v) for v in value)
    text = " ".join(str(value).split())
    return text or None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _round(value: float | None, digits: int = 6) -> float | None:
    """``value`` to ``digits`` significant digits (features are compared, not measured)."""
    if value is None or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def header_features(meta: Mapping[str, Any], spacing: Any = None) -> dict[str, Any]:
    """Scanner, kernel, slice thickness, kVp and pixel spacing from an image's ``meta`` (the DICOM
    attributes medimg keeps) and its ``(z, y, x)`` spacing."""
    scanner = " ".join(x for x in (_text(meta.get("manufacturer")),
                                   _text(meta.get("manufacturer_model_name"))) if x) or None
    known_spacing = (spacing is not None and meta.get("pixel_spacing_known", True) is not False
                     and "source_format" not in meta)
    return {
        "scanner": scanner,
        "kernel": _text(meta.get("convolution_kernel")),
        "slice_thickness": _round(_number(meta.get("slice_thickness"))),
        "kvp": _round(_number(meta.get("kvp"))),
        "pixel_spacing": _round(float(spacing[1])) if known_spacing else None,
    }


def pixel_stats(values: np.ndarray) -> dict[str, float | None]:
    """Mean, standard deviation and 5th/50th/95th percentiles of ``values`` (``None`` if empty)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return dict.fromkeys(PIXEL_STATS)
    p05, p50, p95 = np.percentile(v, [5, 50, 95])
    return {"px_mean": _round(float(v.mean())), "px_std": _round(float(v.std())),
            "px_p05": _round(float(p05)), "px_p50": _round(float(p50)), "px_p95": _round(float(p95))}


def ct_pixel_stats(image: Image) -> dict[str, float | None]:
    """Pixel statistics of a CT volume (HU) inside its body, on the body mask's coarse grid."""
    from ..preprocess.masks import coarse_body_mask

    coarse = coarse_body_mask(image, target_mm=3.0)
    fz, fy, fx = coarse.factors
    grid = image.array[::fz, ::fy, ::fx]
    return pixel_stats(grid[coarse.mask[: grid.shape[0], : grid.shape[1], : grid.shape[2]]])


def model_input_stats(arr: np.ndarray, contract: Any) -> dict[str, float | None]:
    """Pixel statistics of a ``(y, x[, c])`` array as a classifier's network input (``prepare``)."""
    from ..models.contract import prepare

    return pixel_stats(prepare(arr, contract))


def fundus_pixel_stats(rgb: np.ndarray) -> dict[str, Any]:
    """Luminance statistics (0-1) inside the field of view of a ``(y, x, 3)`` fundus photograph,
    the share of the image the field of view covers, and the image height."""
    from ..models.contract import to_unit
    from ..quantify.vessels import field_of_view

    fov = field_of_view(rgb)
    unit = to_unit(np.asarray(rgb))
    lum = unit[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out: dict[str, Any] = pixel_stats(lum[fov])
    out["fov_fraction"] = _round(float(fov.mean()))
    out["rows"] = float(rgb.shape[0])
    return out


def _roi(report: Report | None) -> tuple[int, int, int, int] | None:
    for f in report.findings if report is not None else []:
        roi = f.provenance.parameters.get("roi")
        if roi:
            return (int(roi[0]), int(roi[1]), int(roi[2]), int(roi[3]))
    return None


def _pixels(protocol: str, image: Image, report: Report | None) -> dict[str, Any]:
    if protocol == "chest_ct":
        return dict(ct_pixel_stats(image))
    if protocol in ("chest_xray", "breast_us"):
        from ..models import load
        from ..protocols.learned import to_grey

        contract = load(PROTOCOL_MODELS[protocol]).contract
        arr = contract.check_image(to_grey(image))
        roi = _roi(report)
        if roi is not None:
            arr = arr[roi[0]:roi[2], roi[1]:roi[3]]
        return dict(model_input_stats(arr, contract))
    if protocol == "retina":
        return fundus_pixel_stats(image.array[0])
    return {}


def describe(report: Report | None, image: Image | None, protocol: str | None = None) -> dict[str, Any]:
    """The input features of one analysis (module docstring), or ``{}`` when no image was analysed.

    Never raises: a feature that cannot be computed is left out and the first problem is kept
    under ``"error"`` (drift monitoring must not fail an analysis).
    """
    if image is None:
        return {}
    name = protocol or (report.protocol if report is not None else "") or ""
    out: dict[str, Any] = {}
    try:
        out.update(header_features(image.meta, image.spacing))
    except Exception as exc:  # a header feature is worth less than the analysis
        out["error"] = f"header features: {type(exc).__name__}: {exc}"[:300]
    try:
        out.update(_pixels(name, image, report))
    except Exception as exc:
        out.setdefault("error", f"pixel statistics: {type(exc).__name__}: {exc}"[:300])
    return out


def finding_scores(report: Report | None) -> list[dict[str, Any]]:
    """The AI score of each finding: id, kind, probability, the algorithm that made it and, for
    learned classifiers, the operating point the call was made at."""
    out: list[dict[str, Any]] = []
    for f in report.findings if report is not None else []:
        op = f.measurement("operating_point")
        prob = _number(f.probability)
        out.append({"finding": f.id, "kind": f.kind, "probability": prob,
                    "algorithm": f.provenance.algorithm,
                    "threshold": _number(op.value) if op is not None else None})
    return out
