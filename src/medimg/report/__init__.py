"""Reports: one result model (:mod:`medimg.report.model`) and one writer per output format."""

from __future__ import annotations

from .model import (
    SCHEMA_VERSION,
    Code,
    Comparison,
    Finding,
    Location,
    Measurement,
    Provenance,
    Recommendation,
    Report,
    Structure,
    StudyInfo,
    Triage,
)

__all__ = [
    "SCHEMA_VERSION",
    "Code",
    "Comparison",
    "Finding",
    "Location",
    "Measurement",
    "Provenance",
    "Recommendation",
    "Report",
    "StudyInfo",
    "Structure",
    "Triage",
]
