"""A report's guideline recommendations and triage made again from a radiologist's reviewed findings.

The analysis applied Fleischner 2017 and Lung-RADS v2022 to the software's findings.  Once a
radiologist rejects, edits or adds findings those recommendations can be wrong: a rejected 9 mm
"nodule" would still ask for CT at 3 months, a nodule the reader re-measured could move to another
row.  :func:`reassess` applies each guideline again to the reviewed findings, with the clinical
context and inputs that its provenance recorded when the analysis ran, then the triage rule, and
says in words what changed.  A recommendation whose provenance does not record its inputs (a report
written before medimg recorded them) is kept as the analysis made it, and the change list says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..report.model import Comparison, Finding, Recommendation, Triage
from .facts import ClinicalContext, NoduleFacts
from .fleischner import GUIDELINE as FLEISCHNER
from .fleischner import fleischner
from .lung_rads import GUIDELINE as LUNG_RADS
from .lung_rads import lung_rads
from .triage import triage

__all__ = ["BASIS", "GUIDELINE_KINDS", "Reassessment", "reassess"]

#: The finding kinds the nodule guidelines and the triage read (others, e.g. an effusion a reader
#: added, are left out of them).
GUIDELINE_KINDS = ("nodule", "mass")

#: ``provenance.parameters["basis"]`` of a recommendation made again from reviewed findings.
BASIS = "the radiologist's reviewed findings"

_RULES: dict[str, Callable[[Sequence[Finding], ClinicalContext, Sequence[Comparison], dict[str, Any]],
                           Recommendation]] = {
    FLEISCHNER: lambda f, ctx, cmp, p: fleischner(f, ctx, cmp),
    LUNG_RADS: lambda f, ctx, cmp, p: lung_rads(f, ctx, cmp, lungs_complete=p.get("lungs_complete")),
}


@dataclass
class Reassessment:
    """The recommendations and triage that stand after review, and what changed against the AI's."""

    recommendations: list[Recommendation]
    triage: Triage | None
    changes: list[str] = field(default_factory=list)  # one sentence per change, for the report


def _mean_mm(f: Finding) -> float | None:
    try:
        return NoduleFacts.from_finding(f).mean_diameter_mm
    except ValueError:
        return None


def _comparisons(comparisons: Sequence[Comparison], findings: Sequence[Finding],
                 originals: Mapping[str, Finding]) -> list[Comparison]:
    """The comparisons with each re-measured finding's change against its prior shifted by the
    difference between the reader's and the software's mean diameter."""
    by_id = {f.id: f for f in findings}
    out = []
    for c in comparisons:
        f, o = by_id.get(c.finding_id), originals.get(c.finding_id)
        now, before = (_mean_mm(f) if f else None), (_mean_mm(o) if o else None)
        if now is None or before is None or abs(now - before) < 1e-9:
            out.append(c)
            continue
        changes = [dataclasses.replace(m, value=float(m.value) + now - before,
                                       method=m.method + " (re-measured by the radiologist)")
                   if m.name == "mean_diameter_change" else m for m in c.changes]
        out.append(dataclasses.replace(c, changes=changes))
    return out


def reassess(recommendations: Sequence[Recommendation], findings: Sequence[Finding],
             comparisons: Sequence[Comparison] = (), triage_ai: Triage | None = None,
             originals: Mapping[str, Finding] | None = None) -> Reassessment:
    """Each of ``recommendations`` made again by its guideline from ``findings`` (the reviewed ones,
    rejected findings left out; only nodules and masses are read), and the triage with them.

    ``originals`` maps the id of each finding the radiologist edited to the software's version of it,
    so that the growth against a prior study uses the reader's size.  The new recommendations'
    provenance records ``basis`` (:data:`BASIS`) and, when the text changed, the AI's category and
    text (``ai_category``, ``ai_text``).  The triage is made again only when a recommendation was (it
    is the nodule triage that reads them); otherwise ``triage_ai`` stands.
    """
    findings = [f for f in findings if f.kind in GUIDELINE_KINDS]
    cmp = _comparisons(comparisons, findings, originals or {})
    out: list[Recommendation] = []
    changes: list[str] = []
    redone = False
    for rec in recommendations:
        rule = _RULES.get(rec.guideline)
        params = rec.provenance.parameters
        if rule is None or not isinstance(params.get("context"), dict):
            out.append(rec)
            if rule is not None:
                changes.append(f"{rec.guideline}: kept as the analysis made it (its inputs were not recorded); "
                               "check it against the reviewed findings")
            continue
        new = rule(findings, ClinicalContext.from_dict(params["context"]), cmp, params)
        redone = True
        new.provenance.parameters["basis"] = BASIS
        if (new.category, new.text) != (rec.category, rec.text):
            new.provenance.parameters.update(ai_category=rec.category, ai_text=rec.text)
            changes.append(f"{rec.guideline} changed from '{rec.category}' to '{new.category}': {new.text}")
        out.append(new)
    tri = triage_ai
    if redone and triage_ai is not None:
        tri = triage(findings, out)
        if tri.priority != triage_ai.priority:
            changes.append(f"priority changed from {triage_ai.priority} to {tri.priority}: {tri.reason}")
    return Reassessment(out, tri, changes)
