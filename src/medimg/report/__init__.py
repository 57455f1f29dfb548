"""Reports: one result model (:mod:`medimg.report.model`) and one writer per output format."""

from __future__ import annotations

from .model import (
    REVIEW_SCHEMA_VERSION,
    SCHEMA_VERSION,
    Code,
    Comparison,
    Finding,
    FindingReview,
    Location,
    Measurement,
    Provenance,
    Recommendation,
    Report,
    Review,
    Structure,
    StudyInfo,
    Triage,
)

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
