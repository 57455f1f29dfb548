"""``fhir.json``: the report as FHIR R4 resources in one **transaction Bundle**.

Why a transaction Bundle (not a DiagnosticReport with contained Observations): the measurements are
results in their own right (a server can search them, trend a nodule's diameter over time), and a
transaction Bundle can be POSTed as it is to a FHIR server, which creates every resource at once and
rewrites the ``urn:uuid:`` references between them.

Content:

* ``DiagnosticReport`` -- status ``preliminary`` (computer output awaiting a radiologist) or
  ``cancelled`` when the analysis was refused (``conclusion`` then says why); category RAD; code LOINC
  24627-2 "CT Chest" for the chest CT protocol; subject by identifier (the DICOM Patient ID, when
  known); the DICOM study as an ``imagingStudy`` reference by identifier (``urn:dicom:uid``);
  ``conclusion`` = impression, triage and disclaimer; ``result`` = every Observation below.
* one ``Observation`` per finding: code = the finding's SNOMED CT concept, bodySite = the organ with
  its side (e.g. SCT 44029006 "Left lung structure"), one ``component`` per measurement with a
  UCUM ``valueQuantity`` (long axis SCT 103339001, short axis SCT 103340004, volume SCT 118565006,
  mean attenuation DCM 112031 in ``[hnsf'U]``), the probability as a component (unit ``1``), the
  DICOM tracking UID of the finding (shared with sr.dcm and seg.dcm) as identifier.
* one ``Observation`` per structure measurement (e.g. the volume of each lung), bodySite = structure.
* one ``Device`` (medimg and its version) that the Observations name as ``device``.

A report signed by a radiologist (``report.review``, :mod:`medimg.report.signoff`): the
DiagnosticReport is ``final`` with the radiologist as ``performer`` and ``resultsInterpreter`` (a
``Practitioner`` in the bundle, identified by the user name), the impression is the radiologist's
(the AI's follows, marked as replaced), and each finding's Observation says what the radiologist did:
``final`` with a note "accepted by ..." / "edited by ...: long axis diameter: 81.0 mm (AI) -> 38.0 mm"
(the values are the radiologist's), ``final`` with no device for a finding the radiologist added, and
``cancelled`` for a rejected finding, which is then left out of the report's ``result``.

R4 and R4B do not differ for these resources; the ``fhir.resources`` package ships R4B (its R4), and
the bundle is validated with it before it is written.  fhir.resources checks structure and data
types, not value-set bindings, so the codes used here are fixed in this module.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ._dicom_common import (
    finding_codes,
    finding_site,
    measurement_concept,
    structure_codes,
)
from .model import Code, Finding, Measurement, Report, Review, Structure

__all__ = ["SYSTEMS", "build_bundle", "report_to_fhir_json", "write_fhir"]

#: Coding scheme designators (DICOM) -> FHIR code system URIs.
SYSTEMS = {
    "SCT": "http://snomed.info/sct",
    "LN": "http://loinc.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    "RADLEX": "http://radlex.org",
    "99MEDIMG": "urn:medimg:measurement",
}
_UCUM = "http://unitsofmeasure.org"
_UNIT_DISPLAY = {"[hnsf'U]": "HU", "mm3": "mm3", "mL": "mL", "mm": "mm", "1": "1"}
_PROCEDURES = {"chest_ct": Code("24627-2", "LN", "CT Chest")}
# (organ, side) -> precoordinated SNOMED CT body site.
_SIDED_SITES = {
    ("39607008", "7771000"): Code("44029006", "SCT", "Left lung structure"),
    ("39607008", "24028007"): Code("3341006", "SCT", "Right lung structure"),
}
_MEANINGS = {"long_axis_diameter": "Long axis diameter", "short_axis_diameter": "Short axis diameter",
             "volume": "Volume", "mean_hu": "Mean attenuation", "max_hu": "Maximum attenuation",
             "min_hu": "Minimum attenuation", "std_hu": "Standard deviation of attenuation",
             "mean_diameter": "Mean diameter"}
_MEAN = "373098007"


def _coding(code: Code) -> dict[str, str]:
    system = SYSTEMS.get(code.scheme.upper(), f"urn:medimg:scheme:{code.scheme}")
    return {"system": system, "code": code.value, "display": code.meaning}


def _concept(code: Code | None, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"text": text}
    if code is not None:
        out["coding"] = [_coding(code)]
    return out


def _quantity(m: Measurement) -> dict[str, Any] | None:
    if m.value is None or not np.isfinite(m.value):
        return None
    return {"value": float(m.value), "unit": _UNIT_DISPLAY.get(m.unit, m.unit), "system": _UCUM,
            "code": m.unit}


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _site(organ: Code, side: Code | None) -> Code:
    if side is not None and (organ.value, side.value) in _SIDED_SITES:
        return _SIDED_SITES[(organ.value, side.value)]
    return organ


def _study_ref(report: Report) -> dict[str, Any] | None:
    uid = report.study.study_instance_uid
    if not uid:
        return None
    return {"type": "ImagingStudy",
            "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"},
            "display": report.study.study_description or "imaging study"}


def _patient_and_date(report: Report) -> dict[str, Any]:
    """``subject`` and ``effectiveDateTime`` (from the DICOM Study Date), where known."""
    fields: dict[str, Any] = {}
    subject = _subject(report)
    if subject:
        fields["subject"] = subject
    d = report.study.study_date
    if d and len(d) == 8:
        fields["effectiveDateTime"] = f"{d[:4]}-{d[4:6]}-{d[6:]}"
    return fields


def _subject(report: Report) -> dict[str, Any] | None:
    pid = report.study.patient_id
    if not pid:
        return None
    return {"type": "Patient", "identifier": {"value": pid}, "display": f"Patient {pid}"}


def _common(report: Report, device_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "imaging", "display": "Imaging"}]}],
        "issued": report.created,
        "device": {"reference": device_url, "display": "medimg"},
    }
    out.update(_patient_and_date(report))
    if _study_ref(report):
        out["derivedFrom"] = [_study_ref(report)]
    return out


def _finding_observation(report: Report, f: Finding, device_url: str,
                         tracking_uid: str | None) -> dict[str, Any]:
    base, side = finding_codes(f)
    components = []
    for m in f.measurements:
        q = _quantity(m)
        if q is None:
            continue
        concept, derivation = measurement_concept(m.name, m.code)
        # FHIR has no place for a DICOM derivation: a concept derived other than by the mean (maximum
        # attenuation, ...) is given as text only, so it is never read as the plain concept.
        coded = concept if derivation is None or derivation.value == _MEAN else None
        components.append({"code": _concept(coded, _MEANINGS.get(m.name, m.name.replace("_", " "))),
                           "valueQuantity": q})
    if f.probability is not None and np.isfinite(f.probability):
        components.append({"code": {"text": "probability (algorithm confidence)"},
                           "valueQuantity": {"value": float(f.probability), "unit": "1", "system": _UCUM,
                                             "code": "1"}})
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        **_common(report, device_url),
        "code": _concept(base, f"{f.id}: {f.kind}"),
        "bodySite": _concept(_site(finding_site(f), side),
                             " ".join(w for w in (f.location.side, f.location.zone, f.location.structure) if w)
                             or "lung"),
        "component": components,
    }
    if tracking_uid:
        obs["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{tracking_uid}"}]
    notes = [f"{m.name.replace('_', ' ')}: {m.method}" for m in f.measurements if m.method]
    notes += [f"{k}: {v}" for k, v in f.characterisation.items()]
    notes.append(f"algorithm {f.provenance.algorithm} {f.provenance.version}; review status {f.status}")
    obs["note"] = [{"text": n} for n in notes]
    return obs


def _structure_observations(report: Report, s: Structure, device_url: str) -> list[dict[str, Any]]:
    organ, side = structure_codes(s)
    out = []
    for m in s.measurements:
        q = _quantity(m)
        if q is None:
            continue
        concept, _ = measurement_concept(m.name, m.code)
        out.append({
            "resourceType": "Observation",
            **_common(report, device_url),
            "code": _concept(concept, f"{s.name} {_MEANINGS.get(m.name, m.name.replace('_', ' ')).lower()}"),
            "bodySite": _concept(_site(organ, side), s.name),
            "valueQuantity": q,
            "note": [{"text": f"{m.method}; algorithm {s.provenance.algorithm} {s.provenance.version}"}],
        })
    return out


def _practitioner(review: Review) -> dict[str, Any]:
    return {"resourceType": "Practitioner",
            "identifier": [{"system": "urn:medimg:user", "value": review.signed_by}],
            "name": [{"text": review.signed_by_name or review.signed_by}]}


def _reviewed(obs: dict[str, Any], f: Finding, review: Review, practitioner_url: str | None) -> dict[str, Any]:
    """Mark one finding's Observation with the radiologist's decision."""
    entry = review.of(f.id)
    signed = review.state == "signed"
    who = (entry.by_name or entry.by) if entry is not None else ""
    if f.status == "rejected":
        obs["status"] = "cancelled"
        text = f"rejected by {who} (radiologist)"
    elif f.status == "added":
        obs["status"] = "final" if signed else "preliminary"
        obs.pop("device", None)
        text = f"added by {who} (radiologist); not an AI finding"
    elif f.status in ("accepted", "edited"):
        obs["status"] = "final" if signed else "preliminary"
        text = f"{f.status} by {who} (radiologist)"
        if entry is not None and entry.changes:
            text += ": " + "; ".join(entry.changes)
    else:
        text = "not reviewed by the radiologist (AI finding as reported)"
    if entry is not None and entry.comment:
        text += f"; comment: {entry.comment}"
    obs.setdefault("note", []).append({"text": text})
    if practitioner_url and f.status != "rejected" and entry is not None:
        obs["performer"] = [{"reference": practitioner_url, "display": review.signed_by_name or review.signed_by}]
    return obs


def build_bundle(report: Report, tracking_uids: dict[str, str] | None = None) -> dict[str, Any]:
    """The transaction Bundle as a JSON-ready dict, validated with fhir.resources (R4B = R4 here)."""
    from fhir.resources.R4B.bundle import Bundle

    tracking_uids = tracking_uids or {}
    device_url = _urn()
    device = {"resourceType": "Device",
              "deviceName": [{"name": "medimg", "type": "manufacturer-name"}],
              "manufacturer": "medimg",
              "version": [{"value": report.medimg_version or __version__}]}
    review = report.review
    signed = review is not None and review.state == "signed"
    practitioner_url = _urn() if signed else None
    observations: list[dict[str, Any]] = []
    if report.status == "complete":
        for f in report.findings:
            obs = _finding_observation(report, f, device_url, tracking_uids.get(f"finding:{f.id}"))
            if review is not None:
                obs = _reviewed(obs, f, review, practitioner_url)
            observations.append(obs)
        for s in report.structures:
            observations.extend(_structure_observations(report, s, device_url))
    if signed:
        for o in observations:
            if o["status"] == "preliminary":
                o["status"] = "final"
    obs_urls = [_urn() for _ in observations]
    procedure = _PROCEDURES.get(report.protocol, Code("18748-4", "LN", "Diagnostic imaging study"))
    conclusion = []
    if report.status != "complete":
        conclusion.append(f"No analysis was done: {report.refusal or 'reason not given'}")
    if review is not None and signed:
        conclusion.append(f"Reviewed and signed by {review.signed_by_name or review.signed_by} "
                          f"({review.signed_by_role or 'radiologist'}) on {review.signed_at}.")
    if report.impression:
        edited = review is not None and review.impression_edited
        conclusion.append(f"Impression (radiologist): {report.impression}" if edited else report.impression)
        if edited and review is not None and review.impression_ai:
            conclusion.append(f"AI impression (replaced by the radiologist): {review.impression_ai}")
    if report.quality is not None:
        problems = "; ".join(f"{c.name} {c.status}: {c.reason}" for c in report.quality.problems)
        conclusion.append(f"Image quality: {report.quality.verdict}" + (f" ({problems})" if problems else ""))
    if report.triage:
        conclusion.append(f"Triage: {report.triage.priority} ({report.triage.reason})")
    for r in report.recommendations:
        conclusion.append(f"{r.guideline} {r.category}: {r.text} [rule: {r.rule}]")
    conclusion.append(report.disclaimer)
    diag: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": ("final" if signed else "preliminary") if report.status == "complete" else "cancelled",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                  "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [_coding(procedure)], "text": f"{procedure.meaning} (medimg {report.protocol})"},
        "issued": report.created,
        "conclusion": "\n".join(conclusion),
    }
    diag.update(_patient_and_date(report))
    if _study_ref(report):
        diag["imagingStudy"] = [_study_ref(report)]
    results = [u for u, o in zip(obs_urls, observations, strict=True) if o["status"] != "cancelled"]
    if results:
        diag["result"] = [{"reference": u} for u in results]
    if signed and review is not None and practitioner_url is not None:
        ref = {"reference": practitioner_url, "display": review.signed_by_name or review.signed_by}
        diag["performer"] = [ref]
        diag["resultsInterpreter"] = [ref]
    entries = [{"fullUrl": _urn(), "resource": diag,
                "request": {"method": "POST", "url": "DiagnosticReport"}},
               {"fullUrl": device_url, "resource": device, "request": {"method": "POST", "url": "Device"}}]
    if signed and review is not None and practitioner_url is not None:
        entries.append({"fullUrl": practitioner_url, "resource": _practitioner(review),
                        "request": {"method": "POST", "url": "Practitioner"}})
    entries += [{"fullUrl": u, "resource": o, "request": {"method": "POST", "url": "Observation"}}
                for u, o in zip(obs_urls, observations, strict=True)]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    try:
        Bundle.model_validate(bundle)
    except Exception as exc:  # pydantic.ValidationError: many lines; keep the first problem
        first = str(exc).splitlines()
        msg = f"fhir.json: the bundle is not valid FHIR ({' '.join(first[:3])}); this is a bug in medimg"
        raise ValueError(msg) from None
    return bundle


def report_to_fhir_json(report: Report, tracking_uids: dict[str, str] | None = None) -> str:
    return json.dumps(build_bundle(report, tracking_uids), indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"


def write_fhir(report: Report, path: str | Path, tracking_uids: dict[str, str] | None = None) -> Path:
    """Write ``fhir.json`` to ``path`` (not atomic: :func:`write_report` is)."""
    target = Path(path)
    target.write_text(report_to_fhir_json(report, tracking_uids), encoding="utf-8")
    return target
