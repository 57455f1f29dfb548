"""The quality checks: each turns a measurement into a :class:`~.report.Check` with a reason.

Check names are stable (documented in docs/quality.md); which checks run depends on the kind of
image (:func:`~.regions.image_kind`) and on the protocol's requirements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..image import Image
from ..preprocess import hu_check, is_label_map
from . import measures
from .protocols import Requirements, body_part_from_term
from .regions import Regions
from .report import Check, Status
from .thresholds import DIRECTION, limits

__all__ = ["consistency_checks", "integrity_checks", "protocol_checks", "signal_checks",
           "value_checks"]

RASTER_FORMATS = {"JPEG", "PNG", "TIFF", "GIF", "BMP", "WEBP"}

#: Plausible voxel sizes in mm: (in-plane min, in-plane max, slice min, slice max).
SPACING_RANGES: dict[str, tuple[float, float, float, float]] = {
    "ct": (0.1, 5.0, 0.3, 15.0),
    "mr": (0.1, 4.0, 0.3, 15.0),
    "xray": (0.03, 1.0, 0.0, math.inf),
    "photo": (0.001, 1.0, 0.0, math.inf),
}


def _threshold(kind: str, name: str) -> dict[str, float] | None:
    lim = limits(kind, name)
    return None if lim is None else {"warn": lim[0], "fail": lim[1]}


def graded(kind: str, name: str, value: float, unit: str,
           describe: Callable[[str, float, Any], str]) -> Check:
    """A check whose status comes from the calibrated ``(warn, fail)`` limits of ``kind``.

    A value that cannot be measured (NaN) passes, with a reason that says so.
    """
    threshold = _threshold(kind, name)
    if value is None or not np.isfinite(value) or threshold is None:
        return Check(name, "pass", None, threshold, describe("na", float("nan"), threshold), unit)
    warn, fail = threshold["warn"], threshold["fail"]
    status: Status
    if DIRECTION[name] == "above":
        status = "fail" if value > fail else "warn" if value > warn else "pass"
    else:
        status = "fail" if value < fail else "warn" if value < warn else "pass"
    return Check(name, status, float(value), threshold, describe(status, float(value), threshold),
                 unit)


# ---------------------------------------------------------------------------------------- values
def value_checks(image: Image) -> list[Check]:
    """NaN/infinite voxels, blank images and label maps: nothing else can be judged on those."""
    arr = image.array
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            return [Check("values", "fail", bad / arr.size, 0,
                          f"{bad} voxel(s) are NaN or infinite: the image data are corrupt; "
                          f"re-export or re-send it", "fraction")]
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        return [Check("values", "fail", hi, None,
                      f"every pixel has the value {hi:g}: the image is blank (no signal recorded); "
                      f"repeat the acquisition or check the export", "value")]
    if is_label_map(image):
        return [Check("values", "fail", None, None,
                      "this is a label map (a segmentation), not an image: quality cannot be judged",
                      "")]
    return [Check("values", "pass", None, None, "pixel values are finite and vary", "")]


# ---------------------------------------------------------------------------------------- integrity
_INTEGRITY: dict[str, tuple[str, Status]] = {
    "missing_slices": ("missing_slices", "fail"),
    "uneven_spacing": ("slice_spacing", "warn"),
    "gantry_tilt": ("series_integrity", "warn"),
    "duplicate_positions": ("series_integrity", "warn"),
    "mixed_orientation": ("series_integrity", "warn"),
    "mixed_size": ("series_integrity", "warn"),
    "multiple_volumes": ("series_integrity", "warn"),
    "mixed_rescale": ("series_integrity", "warn"),
    "no_geometry": ("spacing", "pass"),  # said by the spacing check
    "localizer_excluded": ("series_integrity", "pass"),
}


def integrity_checks(image: Image) -> list[Check]:
    """The DICOM reader's series checks (missing slices, uneven spacing, ...), one check each."""
    found: dict[str, list[tuple[Status, str]]] = {"missing_slices": [], "slice_spacing": [],
                                               "series_integrity": []}
    for w in image.warnings:
        name, status = _INTEGRITY.get(str(w.get("code")), ("series_integrity", "warn"))
        if name in found:
            found[name].append((status, f"{w.get('code')}: {w.get('message')}"))
    clean = {"missing_slices": "no gaps between slices",
             "slice_spacing": "slices are evenly spaced",
             "series_integrity": "the series is consistent (one volume, one geometry)"}
    if image.is_2d:
        clean["missing_slices"] = clean["slice_spacing"] = "single image (no slices to check)"
    checks = []
    for name, items in found.items():
        if not items:
            checks.append(Check(name, "pass", 0, 0, clean[name], "warnings"))
            continue
        worst: Status = "fail" if any(s == "fail" for s, _ in items) else (
            "warn" if any(s == "warn" for s, _ in items) else "pass")
        checks.append(Check(name, worst, len(items), 0, "; ".join(t for _, t in items), "warnings"))
    return checks


# ---------------------------------------------------------------------------------------- consistency
def _spacing_known(image: Image) -> bool:
    if image.meta.get("pixel_spacing_known") is False:
        return False
    if any(w.get("code") == "no_geometry" for w in image.warnings):
        return False
    fmt = str(image.meta.get("source_format", "")).upper()
    return not (fmt in RASTER_FORMATS and np.allclose(image.spacing[1:], 1.0))


def consistency_checks(image: Image, kind: str, r: Regions) -> list[Check]:
    """Values that do not fit the modality, implausible voxel sizes."""
    checks = []
    mod = image.modality.upper()
    if kind == "ct":
        ok, why, stats = hu_check(image.array)
        checks.append(Check("modality_values", "pass" if ok else "fail", stats.get("tissue_peak"),
                            {"air_fraction_min": 0.002, "tissue_peak": [-150, 150]},
                            why if ok else f"labelled CT but {why}; the image is not in Hounsfield "
                            f"units (raw stored values, a screenshot or another modality?)", "HU"))
    elif kind == "mr":
        ok, _, stats = hu_check(image.array)
        neg = float(np.mean(r.grey < -0.05 * max(float(np.abs(r.grey).max()), 1e-6)))
        if ok and stats["air_fraction"] > 0.05:
            checks.append(Check("modality_values", "fail", stats["min"], None,
                                "labelled MR but the values look like CT in Hounsfield units "
                                "(air near -1000)", "value"))
        elif neg > 0.05:
            checks.append(Check("modality_values", "warn", neg, 0.05,
                                f"{neg:.0%} of values are negative: MR magnitude images are not; "
                                f"the data were processed (normalised?) before", "fraction"))
        else:
            checks.append(Check("modality_values", "pass", neg, 0.05,
                                "values are non-negative, as MR magnitude images are", "fraction"))
    elif kind in ("xray", "photo"):
        colour = image.channels >= 3
        if kind == "xray" and colour:
            checks.append(Check("modality_values", "warn", image.channels, 1,
                                f"a {mod} radiograph in colour: probably a screenshot or photo of "
                                f"the image, not the original", "channels"))
        elif kind == "xray" and not image.is_2d:
            checks.append(Check("modality_values", "warn", image.spatial_shape[0], 1,
                                f"a {mod} radiograph with {image.spatial_shape[0]} frames", "frames"))
        else:
            checks.append(Check("modality_values", "pass", None, None,
                                f"values fit a {'colour photograph' if kind == 'photo' else mod}", ""))
    checks.append(_spacing_check(image, kind))
    return checks


def _spacing_check(image: Image, kind: str) -> Check:
    rng = SPACING_RANGES.get(kind)
    sp = image.spacing
    if not _spacing_known(image):
        return Check("spacing", "pass", None, None,
                     "the file records no pixel size or geometry: the 1 mm grid is nominal, "
                     "distances and positions are not real", "mm")
    if rng is None:
        return Check("spacing", "pass", [float(v) for v in sp], None, "no range to check", "mm")
    lo, hi, zlo, zhi = rng
    inplane = [float(v) for v in sp[1:]]
    problems = [f"pixel size {v:g} mm" for v in inplane if not lo <= v <= hi]
    if not image.is_2d and not zlo <= float(sp[0]) <= zhi:
        problems.append(f"slice spacing {float(sp[0]):g} mm")
    value = [float(v) for v in sp]
    threshold = {"in_plane_mm": [lo, hi], "slice_mm": [zlo, zhi] if math.isfinite(zhi) else None}
    if problems:
        return Check("spacing", "fail", value, threshold,
                     f"{', '.join(problems)} is implausible for {image.modality}: the geometry in "
                     f"the header is wrong, measurements would be too", "mm")
    return Check("spacing", "pass", value, threshold, "voxel size is plausible", "mm")


# ---------------------------------------------------------------------------------------- signal
def sharp_kernel(kernel: Any) -> bool:
    """Whether a CT Convolution Kernel name is a sharp (lung, bone, high-resolution) one.

    GE LUNG/BONE/BONEPLUS/EDGE/DETAIL, Siemens B/Br/I/Hr 50 and above (B60f, Br64, I70f),
    Philips L/D/E/YC/YD/YE, Canon FC5x/FC8x lung kernels, and anything named lung, bone or sharp.
    """
    import re

    if not kernel:
        return False
    text = str(kernel if not isinstance(kernel, (list, tuple)) else kernel[0]).upper().strip()
    if any(word in text for word in ("LUNG", "BONE", "SHARP", "EDGE", "DETAIL")):
        return True
    m = re.match(r"^(?:B|BR|I|HR|Q|BL|J)(\d\d)", text)
    if m:
        return int(m.group(1)) >= 50
    if text in {"L", "D", "E", "YC", "YD", "YE", "LUNG"}:
        return True
    return bool(re.match(r"^FC(5\d|8\d)", text))


def signal_checks(image: Image, kind: str, r: Regions, background: bool = True) -> list[Check]:
    """Noise, SNR, CNR, sharpness, exposure and (with ``background`` beside the object) ghosting."""
    out: list[Check] = []
    px = float(min(image.spacing[1:]))
    if kind == "ct":
        noise = measures.ct_noise_hu(r, px)
        kernel = image.meta.get("convolution_kernel")
        sharp = sharp_kernel(kernel)
        out.append(graded("ct_sharp" if sharp else kind, "noise", noise, "HU",
                          lambda s, v, t: _noise_text(s, v, t, kernel, sharp)))
        out.append(graded("ct_sharp" if sharp else kind, "cnr", measures.cnr(r, noise, (-200.0, 200.0)),
                          "ratio", _cnr_text))
    else:
        noise = measures.noise_level(r)
        signal = measures.signal_level(r)
        snr = signal / noise if noise > 0 else (math.inf if signal > 0 else float("nan"))
        out.append(graded(kind, "snr", min(snr, 1e6), "ratio", _snr_text))
        if limits(kind, "cnr") is not None:
            out.append(graded(kind, "cnr", min(measures.cnr(r, noise), 1e6) if noise > 0 else
                              float("nan"), "ratio", _cnr_text))
    out.append(graded(kind, "sharpness", measures.blur(r), "blur 0..1", _sharp_text))
    if limits(kind, "clipping") is not None:
        out.append(graded(kind, "clipping", measures.clipped_fraction(image, r), "fraction",
                          _clip_text))
        out.append(graded(kind, "dynamic_range", measures.dynamic_range(image, r), "fraction",
                          _range_text))
    if kind == "mr" and background:
        pe = str(image.meta.get("phase_encoding_direction") or "").upper()
        value, axis = measures.ghosting(r, {"COL": "y", "ROW": "x"}.get(pe))
        out.append(graded(kind, "ghosting", value, "ratio",
                          lambda s, v, t: _ghost_text(s, v, t, axis, image)))
    return out


def coverage_check(image: Image, kind: str, r: Regions) -> Check | None:
    """Anatomy cut at the field-of-view edge (not for radiographs: the body always fills them)."""
    if limits(kind, "fov_cut") is None:
        return None
    value, side = measures.fov_contact(image, r)
    return graded(kind, "fov_cut", value, "fraction", lambda s, v, t: _fov_text(s, v, t, side, kind))


# ---------------------------------------------------------------------------------------- protocol
def protocol_checks(image: Image, kind: str, r: Regions, name: str, req: Requirements) -> list[Check]:
    """Modality, slices and body part against what protocol ``name`` needs."""
    checks = []
    mod = image.modality.upper()
    if req.modalities and mod not in req.modalities:
        checks.append(Check("protocol_modality", "fail", mod, list(req.modalities),
                            f"{name} needs {'/'.join(req.modalities)}, this is {mod}", ""))
    else:
        checks.append(Check("protocol_modality", "pass", mod, list(req.modalities),
                            f"{mod} fits {name}", ""))
    if req.volume:
        n = image.spatial_shape[0]
        if n < req.min_slices:
            checks.append(Check("slice_count", "fail", n, req.min_slices,
                                f"{n} slice(s): {name} needs a volume of at least {req.min_slices} "
                                f"slices to cover the anatomy", "slices"))
        elif req.max_slice_mm and float(image.spacing[0]) > req.max_slice_mm + 1e-6:
            checks.append(Check("slice_count", "warn", n, req.min_slices,
                                f"slices are {float(image.spacing[0]):g} mm apart, thicker than the "
                                f"{req.max_slice_mm:g} mm {name} expects: small lesions may be "
                                f"missed", "slices"))
        else:
            checks.append(Check("slice_count", "pass", n, req.min_slices,
                                f"{n} slices at {float(image.spacing[0]):g} mm", "slices"))
    if req.body_parts:
        checks.append(_body_part_check(image, kind, r, name, req))
    return checks


def estimate_body_part(image: Image, kind: str, r: Regions) -> str | None:
    """Head, chest or abdomen from a CT's content (width of the body, air in the lungs)."""
    if kind not in ("ct", "mr") or not r.main.any():
        return None
    widths = []
    for z in range(r.main.shape[0]):
        m = r.main[z]
        if m.sum() < 50:
            continue
        widths.append(max(np.ptp(np.flatnonzero(m.any(axis=0))), np.ptp(np.flatnonzero(m.any(axis=1)))))
    if not widths:
        return None
    width_mm = float(np.median(widths)) * float(min(image.spacing[1:]))
    if width_mm < 230.0:
        return "head"
    if kind != "ct":
        return None
    inside = r.grey[r.main]
    lung = float(np.mean(inside < -400.0))
    return "chest" if lung > 0.08 else "abdomen"


def _body_part_check(image: Image, kind: str, r: Regions, name: str, req: Requirements) -> Check:
    stated = body_part_from_term(image.meta.get("body_part_examined"))
    wanted = list(req.body_parts)
    if stated is not None:
        ok = stated in req.body_parts
        return Check("body_part", "pass" if ok else "fail", stated, wanted,
                     f"the header says {image.meta.get('body_part_examined')} ({stated})" +
                     ("" if ok else f"; {name} is for {'/'.join(wanted)}: wrong study or protocol"),
                     "")
    seen = estimate_body_part(image, kind, r)
    if seen is None:
        return Check("body_part", "pass", None, wanted,
                     "the body part is not in the header and could not be told from the image", "")
    ok = seen in req.body_parts
    return Check("body_part", "pass" if ok else "warn", seen, wanted,
                 f"the image looks like {seen}" + ("" if ok else f", but {name} is for "
                 f"{'/'.join(wanted)}: check that the right study was sent"), "")


# ---------------------------------------------------------------------------------------- reasons
def _noise_text(s: str, v: float, t: Any, kernel: Any, sharp: bool) -> str:
    if s == "na":
        return "noise could not be measured (no homogeneous soft tissue found)"
    base = f"image noise is {v:.0f} HU in soft tissue"
    if kernel:
        base += f" (kernel {kernel}{', sharp' if sharp else ''})"
    if s == "pass":
        return base
    return f"{base} (limit {t[s]:.0f} HU): low-contrast lesions can be hidden; check dose and kernel"


def _cnr_text(s: str, v: float, t: Any) -> str:
    if s == "na":
        return "contrast-to-noise could not be measured (no two tissue classes found)"
    base = f"contrast between the main tissues is {v:.1f} x the noise"
    return base if s == "pass" else f"{base} (limit {t[s]:g}): tissues are hard to tell apart"


def _snr_text(s: str, v: float, t: Any) -> str:
    if s == "na":
        return "signal-to-noise could not be measured"
    base = f"signal is {v:.0f} x the noise" if v < 1e5 else "no measurable noise (processed image?)"
    return base if s == "pass" else f"{base} (limit {t[s]:g}): the image is grainy; fine detail is lost"


def _sharp_text(s: str, v: float, t: Any) -> str:
    if s == "na":
        return "sharpness could not be measured"
    base = f"blur measure {v:.2f} (0 sharp, 1 blurred)"
    return base if s == "pass" else f"{base}, above {t[s]:.2f}: edges are smeared (focus, motion or heavy smoothing)"


def _clip_text(s: str, v: float, t: Any) -> str:
    if s == "na":
        return "clipping could not be measured"
    base = f"{v:.1%} of the image is at the top of the range"
    return base if s == "pass" else f"{base} (limit {t[s]:.0%}): burnt-out regions carry no detail (over-exposed)"


def _range_text(s: str, v: float, t: Any) -> str:
    if s == "na":
        return "dynamic range could not be measured"
    base = f"the image uses {v:.0%} of the available grey levels"
    return base if s == "pass" else f"{base} (limit {t[s]:.0%}): flat, low-contrast exposure"


def _fov_text(s: str, v: float, t: Any, side: str, kind: str) -> str:
    what = "the field of view disc" if kind == "photo" else "the anatomy"
    if s == "na":
        return "coverage could not be measured (no object found)"
    if v <= 0:
        return f"{what} lies wholly inside the image"
    base = f"{what} touches the {side} over {v:.0%} of its width"
    return base if s == "pass" else f"{base} (limit {t[s]:.0%}): it is cut off; repeat with a larger field of view"


def _ghost_text(s: str, v: float, t: Any, axis: str, image: Image) -> str:
    if s == "na":
        return "ghosting could not be measured (no background beside the object)"
    pe = image.meta.get("phase_encoding_direction")
    where = f" beside the {axis}" if axis else ""
    pe_note = f", phase encoding {pe}" if pe else ""
    base = (f"background{where} varies {v:.3f} x the object's signal more than across the other "
            f"axis{pe_note}")
    return base if s == "pass" else (f"{base} (limit {t[s]:.3f}): ghosts along the phase-encoding "
                                     f"direction, from motion, pulsation or the sequence")
