"""Chest CT: quality -> localisation -> segmentation -> detection -> characterisation ->
quantification -> comparison with priors -> decision support -> report.

Each step is a function ``(Case) -> Case`` that adds its results to the case and records its
provenance; a step that finds the case unfit calls ``case.stop(...)`` and the pipeline runs no further
step.  The image analysis itself lives in :mod:`medimg.segment.ct` and :mod:`medimg.detect.lung_nodules`;
the rules in :mod:`medimg.decide`.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from ..decide import fleischner, lung_rads, triage
from ..decide.facts import GROWTH_MM, round_half_up
from ..report.model import Comparison, Finding, Measurement, Provenance

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..image import Image
    from ..pipeline import Case, Prior

__all__ = [
    "GROWTH_MM",
    "LUNG_AIR_HU",
    "MIN_LUNG_ML",
    "STEPS",
    "characterisation",
    "comparison",
    "decision_support",
    "detection",
    "localisation",
    "quality",
    "quantification",
    "report",
    "segmentation",
]

PROTOCOL = "chest_ct"
#: Voxels below this (HU) inside the body are air: lungs, airways, or gas.
LUNG_AIR_HU = -400.0
#: Less air than this (mL) in the two largest air spaces inside the body: no lungs in the image.
MIN_LUNG_ML = 250.0
#: Lungs are cut by the scan when an end slice holds more than this share of the largest lung area.
CUT_FRACTION = 0.25
#: A lesion this long (mm) or longer is a mass (Fleischner 2017, Lung-RADS v2022 glossary).
MASS_MM = 30.0


def _version() -> str:
    from .. import __version__

    return __version__


def _record(case: Case, name: str, **parameters: Any) -> None:
    case.steps.append(Provenance(f"medimg.protocols.chest_ct.{name}", _version(), parameters))


# ---------------------------------------------------------------------------------------- quality
def quality(case: Case) -> Case:
    """Image quality for chest CT (:func:`medimg.quality.assess`); a failed check stops the case."""
    from ..quality import assess

    assert case.image is not None
    case.quality = assess(case.image, protocol=PROTOCOL)
    _record(case, "quality", protocol=PROTOCOL, verdict=case.quality.verdict)
    if case.quality.verdict == "fail":
        failed = [c for c in case.quality.checks if c.status == "fail"]
        reasons = "; ".join(f"{c.name}: {c.reason}" for c in failed)
        case.stop("quality", f"the image failed the chest CT quality check ({reasons}); it is not "
                             f"read, because findings on it could be missed or false")
    return case


# ---------------------------------------------------------------------------------------- localisation
def lung_air(image: Image, stride: int = 4) -> tuple[np.ndarray, float]:
    """A coarse mask of the air spaces inside the body (lungs, airways) on every ``stride``-th row
    and column, and the volume of one coarse voxel in mL.  Air connected to the edge of a slice is
    outside the patient; of the air inside, the two largest 3-D spaces are kept."""
    arr = np.asarray(image.array[:, ::stride, ::stride])
    air = arr < LUNG_AIR_HU
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(air, structure=in_plane)
    edge = np.unique(np.concatenate([labels[:, 0, :].ravel(), labels[:, -1, :].ravel(),
                                     labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    inside = air & ~np.isin(labels, edge[edge > 0])
    spaces, n = ndimage.label(inside)
    voxel_ml = image.voxel_volume * stride * stride / 1000.0
    if n == 0:
        return np.zeros_like(inside), voxel_ml
    sizes = np.bincount(spaces.ravel())[1:]
    keep = np.argsort(sizes)[::-1][:2] + 1
    return np.isin(spaces, keep), voxel_ml


def localisation(case: Case) -> Case:
    """Are there lungs, and are they wholly in the scan?  No lungs stops the case: the series is not
    a chest CT whatever its headers say."""
    assert case.image is not None
    mask, voxel_ml = lung_air(case.image)
    volume_ml = float(mask.sum()) * voxel_ml
    per_slice = mask.sum(axis=(1, 2)).astype(float)
    present = volume_ml >= MIN_LUNG_ML
    lungs_complete: bool | None = None
    z_range: list[int] | None = None
    if present:
        top = float(per_slice.max())
        ends = (per_slice[0] / top, per_slice[-1] / top)
        lungs_complete = bool(max(ends) <= CUT_FRACTION)
        rows = np.flatnonzero(per_slice > 0.02 * top)
        z_range = [int(rows[0]), int(rows[-1])]
    case.notes["lung_air_ml"] = volume_ml
    case.notes["lungs_complete"] = lungs_complete
    case.notes["lung_slices"] = z_range
    _record(case, "localisation", method="air below -400 HU inside the body, two largest spaces, "
                                          "every 4th row and column", air_hu=LUNG_AIR_HU,
            min_lung_ml=MIN_LUNG_ML, lung_air_ml=round(volume_ml, 1), lungs_complete=lungs_complete,
            lung_slices=z_range)
    if not present:
        case.stop("input", f"no lungs in the image ({volume_ml:.0f} mL of air inside the body, "
                           f"lungs hold well over {MIN_LUNG_ML:.0f} mL): this is not a chest CT, "
                           f"so the chest CT protocol cannot analyse it")
    return case


# ---------------------------------------------------------------------------------------- segmentation
def segmentation(case: Case) -> Case:
    """Body, lungs and airways (:func:`medimg.segment.ct.segment_chest`) as structures."""
    from ..segment.ct import segment_chest

    assert case.image is not None
    seg = segment_chest(case.image)
    case.segmentation = seg
    case.structures.extend(seg.structures())
    case.steps.append(seg.provenance)
    if not seg.lungs_present:
        case.stop("input", "the lung segmentation found no lungs: the chest CT protocol cannot "
                           "analyse this series")
    return case


# ---------------------------------------------------------------------------------------- detection
def detection(case: Case) -> Case:
    """Lung nodules and masses (:func:`medimg.detect.lung_nodules.detect_lung_lesions`)."""
    from ..detect.lung_nodules import detect_lung_lesions

    assert case.image is not None
    found = detect_lung_lesions(case.image, case.segmentation)
    case.findings.extend(found)
    if found:
        prov = found[0].provenance
        case.steps.append(Provenance(prov.algorithm, prov.version,
                                     {**prov.parameters, "findings": len(found)}, prov.model_card))
    else:
        _record(case, "detection", detector="medimg.detect.lung_nodules.detect_lung_lesions",
                findings=0)
    return case


# ---------------------------------------------------------------------------------------- characterisation
_TYPES = ("solid", "part-solid", "ground-glass")


def characterisation(case: Case) -> Case:
    """Nodule or mass by size, and the density type the detector gave (checked, never invented).

    A lesion whose long axis is 30 mm or more is a mass (the Fleischner and Lung-RADS definition),
    whatever the detector called it; the change is recorded on the finding.
    """
    relabelled = []
    untyped = []
    for f in case.findings:
        long_axis = f.measurement("long_axis_diameter")
        if long_axis is not None and float(long_axis.value) >= MASS_MM and f.kind != "mass":
            f.characterisation["size_class"] = (f"mass: long axis {float(long_axis.value):.1f} mm "
                                                f"(30 mm or more); the detector said {f.kind}")
            f.kind = "mass"
            relabelled.append(f.id)
        elif long_axis is not None and f.kind in ("nodule", "mass"):
            f.characterisation.setdefault(
                "size_class", "mass (30 mm or more)" if f.kind == "mass" else "nodule (under 30 mm)")
        if str(f.characterisation.get("type", "")).lower() not in _TYPES:
            untyped.append(f.id)
            f.characterisation["type_note"] = ("density type not characterised; the rules apply the "
                                               "solid row and say so")
    _record(case, "characterisation", mass_mm=MASS_MM, relabelled_as_mass=relabelled,
            untyped=untyped)
    return case


# ---------------------------------------------------------------------------------------- quantification
def quantification(case: Case) -> Case:
    """Mean diameter (the guidelines' size) for every finding, and volume from its mask where the
    detector gave none."""
    added: dict[str, list[str]] = {}
    image = case.image
    for f in case.findings:
        names = []
        long_m = f.measurement("long_axis_diameter")
        short_m = f.measurement("short_axis_diameter")
        if long_m is not None and short_m is not None and f.measurement("mean_diameter") is None:
            mean = (float(long_m.value) + float(short_m.value)) / 2.0
            f.measurements.append(Measurement(
                "mean_diameter", mean, "mm",
                "mean of the long and short axis diameters (the size Fleischner 2017 rounds to "
                "whole mm and Lung-RADS v2022 to 0.1 mm)"))
            names.append("mean_diameter")
        if f.measurement("volume") is None and f.mask is not None and image is not None:
            f.measurements.append(Measurement("volume", float(f.mask.sum()) * image.voxel_volume,
                                              "mm3", "voxel count of the finding's mask x voxel "
                                                     "volume"))
            names.append("volume")
        if names:
            added[f.id] = names
    _record(case, "quantification", added=added)
    return case


# ---------------------------------------------------------------------------------------- comparison
def _lung_box(seg: Any, image: Image) -> tuple[np.ndarray, np.ndarray]:
    """LPS corners (min, max) of the lungs' bounding box."""
    lungs = np.asarray(seg.lung_left) | np.asarray(seg.lung_right)
    idx = np.argwhere(lungs)
    if idx.size == 0:
        idx = np.array([[0, 0, 0], [s - 1 for s in image.spatial_shape]])
    corners = np.array([[z, y, x] for z in (idx[:, 0].min(), idx[:, 0].max())
                        for y in (idx[:, 1].min(), idx[:, 1].max())
                        for x in (idx[:, 2].min(), idx[:, 2].max())], dtype=float)
    pts = image.index_to_patient(corners)
    return pts.min(axis=0), pts.max(axis=0)


def _centre(f: Finding, image: Image) -> np.ndarray | None:
    loc = f.location
    if loc.centroid_patient is not None:
        return np.asarray(loc.centroid_patient, dtype=float)
    if loc.centroid_index is not None:
        return image.index_to_patient(np.asarray(loc.centroid_index, dtype=float))
    return None


def _days(a: str, b: str) -> int | None:
    try:
        da = _dt.datetime.strptime(a, "%Y%m%d").date()
        db = _dt.datetime.strptime(b, "%Y%m%d").date()
    except ValueError:
        return None
    return (da - db).days


def match_findings(current: list[Finding], cur_box: tuple[np.ndarray, np.ndarray],
                   cur_image: Image, prior: list[Finding], prior_box: tuple[np.ndarray, np.ndarray],
                   prior_image: Image) -> dict[str, Finding | None]:
    """Current finding id -> its prior finding (or ``None``: new).

    Positions are compared relative to each study's lung bounding box (so a different patient
    position or table height does not matter): a prior finding's place in its box is mapped into the
    current box, and the nearest one on the same side within max(10 mm, the current long axis) is its
    match; each prior finding matches at most once, nearest pairs first.
    """
    def rel(point: np.ndarray, box: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        lo, hi = box
        return (point - lo) / np.maximum(hi - lo, 1e-6)

    pairs = []
    for f in current:
        c = _centre(f, cur_image)
        if c is None:
            continue
        lim = max(10.0, float(getattr(f.measurement("long_axis_diameter"), "value", 0.0)))
        for p in prior:
            q = _centre(p, prior_image)
            if q is None or (f.location.side and p.location.side and f.location.side != p.location.side):
                continue
            mapped = cur_box[0] + rel(q, prior_box) * (cur_box[1] - cur_box[0])
            dist = float(np.linalg.norm(mapped - c))
            if dist <= lim:
                pairs.append((dist, f.id, p))
    pairs.sort(key=lambda t: t[0])
    out: dict[str, Finding | None] = {f.id: None for f in current}
    used: set[str] = set()
    for _, fid, p in pairs:
        if out[fid] is None and p.id not in used:
            out[fid] = p
            used.add(p.id)
    return out


def _changes(f: Finding, p: Finding, days: int | None) -> tuple[list[Measurement], str]:
    changes = []
    parts = []
    mean_now = _mean(f)
    mean_then = _mean(p)
    if mean_now is not None and mean_then is not None:
        delta = mean_now - mean_then
        changes.append(Measurement("mean_diameter_change", delta, "mm",
                                   "current minus prior mean of long and short axis"))
        if days is not None and days <= 0:
            parts.append(f"same study date: the {delta:+.1f} mm difference in mean diameter is "
                         f"measurement variability (another series or reconstruction), not growth")
        elif delta > GROWTH_MM:
            parts.append(f"grown by {delta:.1f} mm in mean diameter (more than {GROWTH_MM:g} mm)")
        elif delta < -GROWTH_MM:
            parts.append(f"smaller by {-delta:.1f} mm in mean diameter")
        else:
            parts.append(f"stable in size ({delta:+.1f} mm mean diameter, within {GROWTH_MM:g} mm)")
    v_now = f.measurement("volume")
    v_then = p.measurement("volume")
    if v_now is not None and v_then is not None and float(v_then.value) > 0:
        ratio = float(v_now.value) / float(v_then.value)
        changes.append(Measurement("volume_change", (ratio - 1.0) * 100.0, "%",
                                   "current volume over prior volume, minus 1"))
        if days is not None and days > 0 and ratio > 1.0:
            vdt = days * math.log(2.0) / math.log(ratio)
            changes.append(Measurement("volume_doubling_time", vdt, "d",
                                       "interval x ln 2 / ln(current volume / prior volume)"))
            parts.append(f"volume doubling time {vdt:.0f} days")
    if days is not None:
        changes.append(Measurement("interval", float(days), "d", "days between the study dates"))
    return changes, "; ".join(parts) or "matched; sizes not comparable"


def _mean(f: Finding) -> float | None:
    long_m = f.measurement("long_axis_diameter")
    short_m = f.measurement("short_axis_diameter")
    if long_m is None:
        return None
    short = float(short_m.value) if short_m is not None else float(long_m.value)
    return (float(long_m.value) + short) / 2.0


def _analyse_prior(prior: Prior) -> tuple[Any, list[Finding]]:
    from ..detect.lung_nodules import detect_lung_lesions
    from ..segment.ct import segment_chest

    seg = segment_chest(prior.image)
    return seg, detect_lung_lesions(prior.image, seg)


def comparison(case: Case) -> Case:
    """Each finding against the prior studies given (newest prior first): new, stable, growing."""
    if not case.priors:
        _record(case, "comparison", priors=0, note="no prior study was given")
        return case
    assert case.image is not None
    cur_box = _lung_box(case.segmentation, case.image)
    prior = sorted(case.priors, key=lambda p: p.study.study_date, reverse=True)[0]
    seg, prior_findings = _analyse_prior(prior)
    prior_box = _lung_box(seg, prior.image)
    matches = match_findings(case.findings, cur_box, case.image, prior_findings, prior_box,
                             prior.image)
    days = _days(case.study.study_date, prior.study.study_date)
    for f in case.findings:
        p = matches.get(f.id)
        if p is None:
            case.comparisons.append(Comparison(f.id, prior.study.study_instance_uid, None, [],
                                               "new: not seen on the prior study"))
            continue
        changes, summary = _changes(f, p, days)
        case.comparisons.append(Comparison(f.id, prior.study.study_instance_uid, p.id, changes,
                                           summary))
    gone = [p.id for p in prior_findings if p.id not in {m.id for m in matches.values() if m}]
    case.notes["prior_findings_not_seen_now"] = gone
    _record(case, "comparison", priors=len(case.priors), prior_study=prior.study.study_instance_uid,
            prior_date=prior.study.study_date, interval_days=days,
            prior_findings=len(prior_findings), not_seen_now=gone, growth_mm=GROWTH_MM,
            method="positions relative to each study's lung bounding box; nearest on the same "
                   "side within max(10 mm, long axis)")
    return case


# ---------------------------------------------------------------------------------------- decision
def decision_support(case: Case) -> Case:
    """Fleischner 2017 and Lung-RADS v2022 (each quoting its rule and scope), then triage."""
    fl = fleischner(case.findings, case.context, case.comparisons)
    lr = lung_rads(case.findings, case.context, case.comparisons,
                   lungs_complete=case.notes.get("lungs_complete"))
    case.recommendations.extend([fl, lr])
    case.triage = triage(case.findings, case.recommendations)
    _record(case, "decision_support", rules=["Fleischner 2017", "Lung-RADS v2022", "medimg triage"],
            context=case.context.describe())
    return case


# ---------------------------------------------------------------------------------------- report
def _describe(f: Finding) -> str:
    mean = _mean(f)
    size = f"{round_half_up(mean, 1):.1f} mm" if mean is not None else "unmeasured"
    ftype = f.characterisation.get("type", "untyped")
    where = " ".join(w for w in (f.location.side, f.location.zone) if w)
    where = f" in the {where} lung" if where else ""
    return f"{f.id}: {ftype} {f.kind}, {size} mean diameter{where} (probability {f.probability:.2f})"


def report(case: Case) -> Case:
    """The impression: what was found, the recommendations that apply, the priority."""
    lines = []
    if case.findings:
        biggest = sorted(case.findings, key=lambda f: -(_mean(f) or 0.0))
        lines.append(f"{len(case.findings)} lung lesion candidate(s) detected by software: "
                     + "; ".join(_describe(f) for f in biggest[:5])
                     + ("; ..." if len(biggest) > 5 else "") + ".")
    else:
        lines.append("No lung nodule or mass was detected by the software.")
    lines.extend(r.text if r.text.startswith(r.guideline.split()[0]) else f"{r.guideline}: {r.text}"
                 for r in case.recommendations)
    if case.triage is not None:
        lines.append(f"Priority {case.triage.priority}: {case.triage.reason}.")
    if case.quality is not None and case.quality.verdict == "warn":
        lines.append("Image quality warnings: " + "; ".join(
            f"{c.name}: {c.reason}" for c in case.quality.problems) + ".")
    case.impression = " ".join(lines)
    _record(case, "report", findings=len(case.findings),
            recommendations=[r.guideline for r in case.recommendations])
    return case


STEPS: list[Callable[[Case], Case]] = [quality, localisation, segmentation, detection, characterisation, quantification,
         comparison, decision_support, report]
