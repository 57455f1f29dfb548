"""The one result model: what an analysis found, how sure it is, and where each piece came from.

Every writer (JSON, HTML/PDF, DICOM SR, DICOM SEG, FHIR) turns one :class:`Report` into its format;
nothing else formats reports.  Everything carries :class:`Provenance` (algorithm, version,
parameters).  Masks live on the analysed image's grid and are not serialised to JSON (the SEG writer
stores them); JSON carries boxes, centroids and measurements instead.

Schema version: :data:`SCHEMA_VERSION` (bump the minor for additions, the major for changes).  A
report reviewed by a radiologist carries a :class:`Review` and is written as :data:`REVIEW_SCHEMA_VERSION`
(1.1: 1.0 plus the optional ``review`` block); an unreviewed report stays valid 1.0.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..jsonable import plain as _plain
from ..quality.report import QualityReport

__all__ = [
    "REVIEW_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "Code",
    "Comparison",
    "Finding",
    "FindingReview",
    "Location",
    "Measurement",
    "Provenance",
    "Recommendation",
    "Report",
    "Review",
    "StudyInfo",
    "Structure",
    "Triage",
]

SCHEMA_VERSION = "1.0"
REVIEW_SCHEMA_VERSION = "1.1"

Priority = Literal["routine", "soon", "urgent"]
Status = Literal["complete", "refused"]


@dataclass(frozen=True)
class Code:
    """A coded concept (SNOMED CT ``"SCT"``, RadLex ``"RADLEX"``, DICOM ``"DCM"``, LOINC ``"LN"``)."""

    value: str
    scheme: str
    meaning: str

    def to_dict(self) -> dict[str, str]:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}


@dataclass
class Provenance:
    """Who made a result: algorithm name, its version, the parameters it ran with, a model card."""

    algorithm: str
    version: str
    parameters: dict[str, Any] = field(default_factory=dict)
    model_card: str | None = None  # path or name of the model card for learned models

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "version": self.version,
                "parameters": _plain(self.parameters), "model_card": self.model_card}


@dataclass
class Measurement:
    """One number with its unit and how it was measured (``method``: a short sentence)."""

    name: str  # e.g. "long_axis_diameter", "volume", "mean_hu"
    value: float
    unit: str  # UCUM: "mm", "mm3", "mL", "[hnsf'U]" for HU, "1" for ratios
    method: str
    code: Code | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": _plain(self.value), "unit": self.unit,
                "method": self.method, "code": self.code.to_dict() if self.code else None}


@dataclass
class Location:
    """Where a finding is: anatomical words and coordinates on the analysed image."""

    side: str | None = None  # "left" / "right" / None
    zone: str | None = None  # e.g. "upper" / "middle" / "lower"
    structure: str | None = None  # e.g. "lung"
    centroid_index: tuple[float, float, float] | None = None  # (z, y, x) voxel
    centroid_patient: tuple[float, float, float] | None = None  # LPS mm
    bbox_index: tuple[int, int, int, int, int, int] | None = None  # z0, y0, x0, z1, y1, x1 (exclusive)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self.__dict__)


@dataclass
class Finding:
    """Something found in the image, with its measurements, confidence and provenance."""

    id: str
    kind: str  # "nodule", "mass", ...
    code: Code | None
    location: Location
    measurements: list[Measurement]
    probability: float  # confidence in [0, 1] that this is a real finding of this kind
    provenance: Provenance
    characterisation: dict[str, str] = field(default_factory=dict)  # e.g. {"type": "solid"}
    evidence: list[dict[str, Any]] = field(default_factory=list)  # e.g. heatmaps: {"kind", "path"}
    mask: np.ndarray | None = field(default=None, repr=False)  # bool, on the analysed image's grid
    status: str = "ai"  # "ai" | "accepted" | "rejected" | "edited" | "added" (radiologist review)

    def measurement(self, name: str) -> Measurement | None:
        return next((m for m in self.measurements if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "code": self.code.to_dict() if self.code else None,
            "location": self.location.to_dict(),
            "measurements": [m.to_dict() for m in self.measurements],
            "probability": _plain(self.probability), "characterisation": dict(self.characterisation),
            "evidence": _plain(self.evidence), "provenance": self.provenance.to_dict(),
            "status": self.status,
        }


@dataclass
class Structure:
    """A segmented anatomical structure (e.g. left lung) with its measurements."""

    name: str  # "body", "lung_left", "lung_right", "airways", ...
    code: Code | None
    measurements: list[Measurement]
    provenance: Provenance
    mask: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "code": self.code.to_dict() if self.code else None,
                "measurements": [m.to_dict() for m in self.measurements],
                "provenance": self.provenance.to_dict()}


@dataclass
class Recommendation:
    """What a guideline says for this study, quoting the rule that produced it."""

    guideline: str  # "Fleischner 2017", "Lung-RADS v2022"
    category: str  # e.g. "4A", or a short label
    text: str  # the recommendation in words
    rule: str  # the rule applied, quoted/paraphrased with its condition
    finding_ids: list[str]
    provenance: Provenance
    applicable: bool = True  # False: out of the guideline's scope (the text says why)

    def to_dict(self) -> dict[str, Any]:
        return {"guideline": self.guideline, "category": self.category, "text": self.text,
                "rule": self.rule, "finding_ids": list(self.finding_ids),
                "applicable": self.applicable, "provenance": self.provenance.to_dict()}


@dataclass
class Triage:
    priority: Priority
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"priority": self.priority, "reason": self.reason}


@dataclass
class Comparison:
    """A finding compared with its match in a prior study."""

    finding_id: str
    prior_study_uid: str
    prior_finding_id: str | None
    changes: list[Measurement]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"finding_id": self.finding_id, "prior_study_uid": self.prior_study_uid,
                "prior_finding_id": self.prior_finding_id,
                "changes": [m.to_dict() for m in self.changes], "summary": self.summary}


@dataclass
class StudyInfo:
    """Which study and series were analysed, and why that series."""

    study_instance_uid: str = ""
    series_instance_uid: str = ""
    modality: str = ""
    study_date: str = ""
    study_description: str = ""
    series_description: str = ""
    patient_id: str = ""
    accession_number: str = ""
    body_part_examined: str = ""
    series_choice: str = ""  # why this series was chosen
    source: str = ""  # the path given

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class FindingReview:
    """What a radiologist did with one finding; the :class:`Finding` itself holds the result (its
    ``status`` and, when edited, the new values), this holds who, when and the AI's original."""

    finding_id: str
    status: str  # "accepted" | "rejected" | "edited" | "added"
    by: str  # user name
    by_name: str  # display name, as reports print it
    at: str  # ISO 8601 date-time (UTC)
    comment: str = ""
    #: the AI's values of what was edited: measurement name -> {"value", "unit"}, and "centroid_patient",
    #: "bbox_patient", "characterisation" when those changed; None when nothing was edited
    original: dict[str, Any] | None = None
    changes: list[str] = field(default_factory=list)  # in words: "long axis diameter: 81.0 mm (AI) -> 38.0 mm"
    series_uid: str = ""  # the series an added finding was marked on

    def to_dict(self) -> dict[str, Any]:
        return {"finding_id": self.finding_id, "status": self.status, "by": self.by, "by_name": self.by_name,
                "at": self.at, "comment": self.comment, "original": _plain(self.original),
                "changes": list(self.changes), "series_uid": self.series_uid}


@dataclass
class Review:
    """A radiologist's review of a report: decisions per finding, the impression, the signature."""

    state: Literal["draft", "signed"]
    findings: list[FindingReview] = field(default_factory=list)
    impression_ai: str = ""  # the AI's impression (Report.impression holds the one that stands)
    impression_edited: bool = False
    impression_by: str = ""
    signed_by: str = ""  # user name
    signed_by_name: str = ""
    signed_by_role: str = ""
    signed_at: str | None = None  # ISO 8601 date-time (UTC)

    def of(self, finding_id: str) -> FindingReview | None:
        return next((r for r in self.findings if r.finding_id == finding_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "signed_by": self.signed_by, "signed_by_name": self.signed_by_name,
                "signed_by_role": self.signed_by_role, "signed_at": self.signed_at,
                "impression": {"ai": self.impression_ai, "edited": self.impression_edited,
                               "by": self.impression_by},
                "findings": [r.to_dict() for r in self.findings]}


@dataclass
class Report:
    """The result of one analysis."""

    study: StudyInfo
    protocol: str
    status: Status
    quality: QualityReport | None = None
    structures: list[Structure] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    triage: Triage | None = None
    refusal: str | None = None  # why no analysis was done (status "refused")
    impression: str = ""  # a short summary in words (not a diagnosis)
    preprocessing: list[dict[str, Any]] = field(default_factory=list)  # Image.history
    steps: list[Provenance] = field(default_factory=list)  # every step that ran, in order
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    medimg_version: str = ""
    disclaimer: str = ("Computer-generated analysis for review by a qualified radiologist. "
                       "It is not a diagnosis.")
    review: Review | None = None  # set once a radiologist has reviewed (and signed) the report

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "schema_version": REVIEW_SCHEMA_VERSION if self.review is not None else SCHEMA_VERSION,
            "medimg_version": self.medimg_version,
            "created": self.created,
            "status": self.status,
            "refusal": self.refusal,
            "protocol": self.protocol,
            "study": self.study.to_dict(),
            "quality": self.quality.to_dict() if self.quality is not None else None,
            "structures": [s.to_dict() for s in self.structures],
            "findings": [f.to_dict() for f in self.findings],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "recommendations": [r.to_dict() for r in self.recommendations],
            "triage": self.triage.to_dict() if self.triage else None,
            "impression": self.impression,
            "preprocessing": _plain(self.preprocessing),
            "steps": [p.to_dict() for p in self.steps],
            "timings": _plain(self.timings),
            "disclaimer": self.disclaimer,
        }
        if self.review is not None:
            doc["review"] = self.review.to_dict()
        return doc

