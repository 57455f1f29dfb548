"""A radiologist's review applied to an analysis report: the reviewed (and signed) :class:`Report`.

:func:`apply_review` takes the AI's report as the analysis wrote it and the radiologist's decisions,
and returns a new report in which

* every finding has its review ``status``: ``accepted``, ``rejected`` (kept, so that every format can
  show it struck through), ``edited`` (the new position, size or characterisation replace the AI's;
  the AI's values are kept in the review entry's ``original``), ``ai`` (not reviewed) -- and the
  radiologist's own findings follow with ``added``;
* the impression is the radiologist's text when it was edited (the AI's stays in ``review.impression_ai``);
* the guideline recommendations and the triage are made again from the findings the radiologist kept,
  edited and added (:func:`medimg.decide.reassess.reassess`); what changed is appended to an unedited
  impression and recorded as a ``review_reassessment`` step, and each changed recommendation's
  provenance keeps the AI's text;
* :class:`~medimg.report.model.Review` says who did what and when, and who signed.

The writers mark the changes from ``Finding.status`` and the review entries (HTML: a review column and
struck-through rows; SR: a review evaluation per measurement group and the AI's original values; FHIR:
observation status and notes; JSON: the ``review`` block).  Nothing here knows about HTTP or a store.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .load import MaskGrid
from .model import Finding, FindingReview, Location, Measurement, Provenance, Report, Review

__all__ = ["ADDED_PREFIX", "EDIT_FIELDS", "Decision", "Reviewer", "apply_review", "iso", "signed_context",
           "validate_added",
           "validate_edit"]

#: Ids of findings a radiologist adds: R1, R2, ...
ADDED_PREFIX = "R"
#: What an edit may change (the keys of ``Decision.data`` for ``edited``).
EDIT_FIELDS = ("bbox_patient", "center_patient", "diameter_mm", "short_axis_mm", "characterisation")
_KINDS = ("nodule", "mass", "lesion", "consolidation", "effusion", "pneumothorax", "other")


@dataclass(frozen=True)
class Reviewer:
    username: str
    name: str  # display name
    role: str = "radiologist"


@dataclass
class Decision:
    """The current decision on one finding, as the server keeps it.

    ``status``: ``accepted`` / ``rejected`` / ``edited`` / ``added``.  ``data`` holds, for ``edited``,
    the edited fields (:data:`EDIT_FIELDS`); for ``added``, the new finding (``kind``,
    ``center_patient``, ``diameter_mm``, ``series_uid``, optionally ``characterisation``).
    """

    finding_id: str
    status: str
    by: str
    by_name: str
    at: float  # seconds since the epoch
    comment: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def iso(at: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC (seconds)."""
    if at is None:
        return None
    return _dt.datetime.fromtimestamp(at, _dt.UTC).isoformat(timespec="seconds")


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        msg = f"{what} must be [x, y, z] in patient coordinates (LPS, mm)"
        raise ValueError(msg)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        msg = f"{what} must hold three numbers"
        raise ValueError(msg) from None
    if not all(math.isfinite(v) and abs(v) < 1e5 for v in out):
        msg = f"{what} must hold finite coordinates (mm)"
        raise ValueError(msg)
    return out  # type: ignore[return-value]


def _size(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        msg = f"{what} must be a number of millimetres"
        raise ValueError(msg) from None
    if not (math.isfinite(v) and 0 < v <= 1000):
        msg = f"{what} must be more than 0 and at most 1000 mm, not {value!r}"
        raise ValueError(msg)
    return v


def _characterisation(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        value = {"call": value}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        msg = "characterisation must be text or an object of text values, e.g. {\"type\": \"part-solid\"}"
        raise ValueError(msg)
    if len(value) > 16 or any(len(k) > 64 or len(v) > 500 for k, v in value.items()):
        msg = "characterisation is too long (at most 16 entries, keys of 64 and values of 500 characters)"
        raise ValueError(msg)
    return {k.strip(): " ".join(v.split()) for k, v in value.items() if k.strip()}


def validate_edit(data: dict[str, Any]) -> dict[str, Any]:
    """The checked, normalised fields of an edit (``ValueError``, one line, naming the bad one)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key == "center_patient":
            out[key] = list(_triple(value, key))
        elif key == "bbox_patient":
            if not isinstance(value, (list, tuple)) or len(value) != 6:
                msg = "bbox_patient must be [x0, y0, z0, x1, y1, z1] in patient coordinates (LPS, mm)"
                raise ValueError(msg)
            lo, hi = _triple(value[:3], key), _triple(value[3:], key)
            out[key] = [min(a, b) for a, b in zip(lo, hi, strict=True)] + \
                       [max(a, b) for a, b in zip(lo, hi, strict=True)]
        elif key in ("diameter_mm", "short_axis_mm"):
            out[key] = _size(value, key)
        elif key == "characterisation":
            out[key] = _characterisation(value)
        else:
            msg = f"{key!r} cannot be edited; edit one of {', '.join(EDIT_FIELDS)}"
            raise ValueError(msg)
    return out


def validate_added(data: dict[str, Any]) -> dict[str, Any]:
    """The checked fields of a finding a radiologist adds."""
    kind = str(data.get("kind") or "").strip().lower()
    if kind not in _KINDS:
        msg = f"kind {data.get('kind')!r} is not known; use one of {', '.join(_KINDS)}"
        raise ValueError(msg)
    out: dict[str, Any] = {"kind": kind, "center_patient": list(_triple(data.get("center_patient"), "center_patient")),
                           "diameter_mm": _size(data.get("diameter_mm"), "diameter_mm"),
                           "series_uid": str(data.get("series_uid") or "")}
    if data.get("characterisation") is not None:
        out["characterisation"] = _characterisation(data["characterisation"])
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.1f} {unit}"


def _set_measurement(f: Finding, name: str, value: float, unit: str, method: str,
                     original: dict[str, Any], changes: list[str]) -> None:
    old = f.measurement(name)
    label = name.replace("_", " ")
    if old is not None:
        original.setdefault(name, {"value": float(old.value), "unit": old.unit})
        changes.append(f"{label}: {_fmt(float(old.value), old.unit)} (AI) -> {_fmt(value, unit)}")
        old.value, old.unit, old.method = value, unit, method
    else:
        original.setdefault(name, None)
        changes.append(f"{label}: {_fmt(value, unit)} (not measured by the AI)")
        f.measurements.append(Measurement(name, value, unit, method))


def _drop_measurement(f: Finding, name: str, why: str, original: dict[str, Any], changes: list[str]) -> None:
    old = f.measurement(name)
    if old is None:
        return
    original.setdefault(name, {"value": float(old.value), "unit": old.unit})
    changes.append(f"{name.replace('_', ' ')}: {_fmt(float(old.value), old.unit)} (AI) -> not reported ({why})")
    f.measurements = [m for m in f.measurements if m.name != name]


def _edit(f: Finding, data: dict[str, Any], grid: MaskGrid | None, who: str) -> tuple[dict[str, Any], list[str]]:
    original: dict[str, Any] = {}
    changes: list[str] = []
    method = f"measured by {who} (radiologist) on the workstation"
    if "center_patient" in data:
        new = tuple(float(v) for v in data["center_patient"])
        old = f.location.centroid_patient
        original["centroid_patient"] = list(old) if old is not None else None
        changes.append("centre moved: " + (f"({', '.join(f'{v:.1f}' for v in old)}) mm (AI) -> " if old else "")
                       + f"({', '.join(f'{v:.1f}' for v in new)}) mm")
        f.location.centroid_patient = new  # type: ignore[assignment]
        if grid is not None:
            f.location.centroid_index = tuple(float(v) for v in grid.patient_to_index(new))  # type: ignore[assignment]
    if "bbox_patient" in data:
        box = [float(v) for v in data["bbox_patient"]]
        if f.location.bbox_index is not None and grid is not None:
            z0, y0, x0, z1, y1, x1 = f.location.bbox_index
            corners = grid.index_to_patient([[z0, y0, x0], [z1 - 1, y1 - 1, x1 - 1]])
            original["bbox_patient"] = [float(v) for v in np.minimum(corners[0], corners[1])] + \
                                       [float(v) for v in np.maximum(corners[0], corners[1])]
        else:
            original["bbox_patient"] = None
        changes.append("box: (" + ", ".join(f"{v:.1f}" for v in box) + ") mm")
        if grid is not None:
            idx = grid.patient_to_index([box[:3], box[3:]])
            lo = np.maximum(np.floor(idx.min(axis=0) + 0.5), 0).astype(int)
            hi = np.minimum(np.floor(idx.max(axis=0) + 0.5) + 1, grid.shape).astype(int)
            original.setdefault("bbox_index", list(f.location.bbox_index) if f.location.bbox_index else None)
            f.location.bbox_index = (int(lo[0]), int(lo[1]), int(lo[2]), int(hi[0]), int(hi[1]), int(hi[2]))
    if "diameter_mm" in data:
        _set_measurement(f, "long_axis_diameter", float(data["diameter_mm"]), "mm", method, original, changes)
    if "short_axis_mm" in data:
        _set_measurement(f, "short_axis_diameter", float(data["short_axis_mm"]), "mm", method, original, changes)
    if "diameter_mm" in data or "short_axis_mm" in data:
        long_m, short_m = f.measurement("long_axis_diameter"), f.measurement("short_axis_diameter")
        if (long_m is not None and short_m is not None and "short_axis_mm" not in data
                and float(short_m.value) > float(long_m.value)):
            _drop_measurement(f, "short_axis_diameter", "longer than the radiologist's long axis", original, changes)
            short_m = None
        if f.measurement("mean_diameter") is not None:
            if long_m is not None and short_m is not None:
                mean = round((float(long_m.value) + float(short_m.value)) / 2, 1)
                _set_measurement(f, "mean_diameter", mean, "mm",
                                 "mean of the long and short axis diameters after the radiologist's edit",
                                 original, changes)
            else:
                _drop_measurement(f, "mean_diameter", "no short axis to average with", original, changes)
    if "characterisation" in data:
        new_c = {**f.characterisation, **data["characterisation"]}
        if new_c != f.characterisation:
            original["characterisation"] = dict(f.characterisation)
            diff = [f"{k}: {f.characterisation.get(k, '-')} (AI) -> {v}" for k, v in data["characterisation"].items()
                    if f.characterisation.get(k) != v]
            changes.extend(diff)
            f.characterisation = new_c
    return original, changes


def _added(d: Decision, grid: MaskGrid | None) -> Finding:
    data = d.data
    center = tuple(float(v) for v in data["center_patient"])
    index = tuple(float(v) for v in grid.patient_to_index(center)) if grid is not None else None
    diameter = float(data["diameter_mm"])
    bbox = None
    if grid is not None and data.get("bbox_patient"):
        box = [float(v) for v in data["bbox_patient"]]
        idx = grid.patient_to_index([box[:3], box[3:]])
        lo = np.maximum(np.floor(idx.min(axis=0) + 0.5), 0).astype(int)
        hi = np.minimum(np.floor(idx.max(axis=0) + 0.5) + 1, grid.shape).astype(int)
        bbox = (int(lo[0]), int(lo[1]), int(lo[2]), int(hi[0]), int(hi[1]), int(hi[2]))
    return Finding(
        id=d.finding_id, kind=str(data["kind"]), code=None,
        location=Location(centroid_patient=center, centroid_index=index, bbox_index=bbox),  # type: ignore[arg-type]
        measurements=[Measurement("long_axis_diameter", diameter, "mm",
                                  f"measured by {d.by_name or d.by} (radiologist) on the workstation")],
        probability=float("nan"),
        provenance=Provenance("radiologist", d.by, {"marked_on_series": data.get("series_uid", "")}),
        characterisation=dict(data.get("characterisation") or {}),
        status="added",
    )


def apply_review(ai: Report, decisions: Sequence[Decision], *, impression: str | None = None,
                 impression_by: str = "", signer: Reviewer | None = None, signed_at: float | None = None,
                 grid: MaskGrid | None = None) -> Report:
    """The reviewed report: ``ai`` (left unchanged) with ``decisions`` applied, the impression replaced
    when ``impression`` is given, and signed by ``signer`` at ``signed_at`` when both are given."""
    out = copy.copy(ai)
    out.findings = []
    by_id = {d.finding_id: d for d in decisions}
    entries: list[FindingReview] = []
    for f0 in ai.findings:
        f = copy.copy(f0)
        f.location = copy.copy(f0.location)
        f.measurements = [copy.copy(m) for m in f0.measurements]
        f.characterisation = dict(f0.characterisation)
        d = by_id.get(f.id)
        if d is not None and d.status in ("accepted", "rejected", "edited"):
            original: dict[str, Any] | None = None
            changes: list[str] = []
            if d.status == "edited":
                original, changes = _edit(f, d.data, grid, d.by_name or d.by)
            f.status = d.status
            entries.append(FindingReview(f.id, d.status, d.by, d.by_name, iso(d.at) or "", d.comment,
                                         original, changes))
        out.findings.append(f)
    for d in sorted((d for d in decisions if d.status == "added"), key=lambda d: _added_order(d.finding_id)):
        f = _added(d, grid)
        out.findings.append(f)
        size = f.measurement("long_axis_diameter")
        entries.append(FindingReview(d.finding_id, "added", d.by, d.by_name, iso(d.at) or "", d.comment, None,
                                     [f"added by the radiologist: {f.kind}, {_fmt(size.value if size else None, 'mm')}"],
                                     str(d.data.get("series_uid", ""))))
    if ai.recommendations:  # the guidelines again, from what the radiologist kept, edited and added
        from ..decide.reassess import reassess

        edited = {f.id for f in out.findings if f.status == "edited"}
        redo = reassess(ai.recommendations, [f for f in out.findings if f.status != "rejected"],
                        ai.comparisons, ai.triage, {f.id: f for f in ai.findings if f.id in edited})
        out.recommendations, out.triage = redo.recommendations, redo.triage
        if redo.changes:
            out.steps = [*ai.steps, Provenance("review_reassessment", "1", {"changes": redo.changes})]
            if impression is None:
                out.impression = (ai.impression + " After the radiologist's review: "
                                  + "; ".join(redo.changes) + ".").strip()
    signed = signer is not None and signed_at is not None
    review = Review(state="signed" if signed else "draft", findings=entries, impression_ai=ai.impression,
                    impression_edited=impression is not None, impression_by=impression_by if impression else "")
    if impression is not None:
        out.impression = impression
    if signed:
        assert signer is not None
        review.signed_by, review.signed_by_name, review.signed_by_role = signer.username, signer.name, signer.role
        review.signed_at = iso(signed_at)
        day = (review.signed_at or "")[:10]
        out.disclaimer = (f"Computer-assisted analysis reviewed and signed by {signer.name} ({signer.role}) on "
                          f"{day}. Findings marked AI were made by software; the radiologist's decisions and "
                          "changes are marked against them.")
    out.review = review
    return out


def signed_context(report: Report, seg: Any | None) -> Any:
    """The DICOM UIDs for rewriting ``report``'s SR: a new SR series and instance, the SEG's identity
    and, for every object that is a segment of ``seg`` (the analysis's SEG), its tracking UID there, so
    that the signed SR names the same objects; new tracking UIDs for the others."""
    from highdicom import UID

    from ._dicom_common import DicomContext, tracking_keys
    from .dicom_seg import segments_of

    ctx = DicomContext.new(tracking_keys(report.structures, report.findings))
    ctx.sr_series_number = 992
    if seg is None:
        return ctx
    ctx.seg_series_uid, ctx.seg_sop_uid = str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID)
    items = list(getattr(seg, "SegmentSequence", []))
    for obj, item in zip(segments_of(report), items, strict=False):
        key = f"finding:{obj.id}" if isinstance(obj, Finding) else f"structure:{obj.name}"
        label = obj.id if isinstance(obj, Finding) else obj.name
        if str(getattr(item, "TrackingID", "")) == label and getattr(item, "TrackingUID", None):
            ctx.tracking_uids[key] = str(item.TrackingUID)
    for key in list(ctx.tracking_uids):
        ctx.tracking_uids.setdefault(key, str(UID()))
    return ctx


def _added_order(finding_id: str) -> tuple[int, str]:
    digits = finding_id[len(ADDED_PREFIX):]
    return (int(digits) if digits.isdigit() else 1 << 30, finding_id)
