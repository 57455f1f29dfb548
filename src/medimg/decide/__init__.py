"""Clinical decision rules: Fleischner 2017, Lung-RADS v2022, reading-list triage.

Every rule reads findings (never images) and a :class:`ClinicalContext`, and returns a
:class:`~medimg.report.model.Recommendation` that quotes the rule it applied and the scope it assumed,
or a :class:`~medimg.report.model.Triage` with its reason.  Sources and scope: docs/pipeline.md.
"""

from __future__ import annotations

from .facts import ClinicalContext, NoduleFacts, round_half_up
from .fleischner import fleischner, fleischner_row
from .lung_rads import lung_rads, nodule_category
from .triage import triage, triage_refused

__all__ = ["ClinicalContext", "NoduleFacts", "fleischner", "fleischner_row", "lung_rads",
           "nodule_category", "round_half_up", "triage", "triage_refused"]
