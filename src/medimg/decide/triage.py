"""Reading-list priority of a study: routine, soon or urgent, with the reason.

This is medimg's own rule, not a published guideline: it orders the worklist so that studies with a
finding that needs prompt work-up are read first.  The size limits are the guidelines' own (a mass of
30 mm or more, Fleischner's "consider CT at 3 months, PET/CT or tissue sampling" row, Lung-RADS 4A
and above):

* urgent -- a lesion of 30 mm or more (a mass), a solid nodule or solid component of 15 mm or more
  (Lung-RADS 4B size), or an applicable Lung-RADS 4B / 4X category;
* soon -- a solid nodule over 8 mm (Fleischner: CT at 3 months, PET/CT or tissue sampling), a
  part-solid nodule of 6 mm or more, an applicable Lung-RADS 4A, or no automated analysis at all
  (the study must then be read without it);
* routine -- everything else, including nodules whose guideline follow-up is 6 months or later.

The priority says how soon a radiologist should read the study; it is not a diagnosis.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..report.model import Finding, Recommendation, Triage
from .facts import NoduleFacts, round_half_up

__all__ = ["MASS_MM", "SOLID_URGENT_MM", "triage", "triage_refused"]

MASS_MM = 30.0
SOLID_URGENT_MM = 15.0


def triage(findings: Sequence[Finding], recommendations: Sequence[Recommendation] = ()) -> Triage:
    """The priority of an analysed study and the rule that set it."""
    urgent: list[str] = []
    soon: list[str] = []
    for f in findings:
        n = NoduleFacts.from_finding(f)
        d = round_half_up(n.mean_diameter_mm, 1)
        ntype = n.type or "solid"
        if n.kind == "mass" or n.long_axis_mm >= MASS_MM:
            urgent.append(f"{f.id} is a {n.long_axis_mm:.0f} mm lesion (30 mm or more: a mass)")
        elif ntype == "solid" and d >= SOLID_URGENT_MM:
            urgent.append(f"{f.id} is a solid nodule of {d:.1f} mm (15 mm or more)")
        elif (ntype == "part-solid" and n.solid_component_mm is not None
              and n.solid_component_mm >= SOLID_URGENT_MM):
            urgent.append(f"{f.id} has a solid component of {n.solid_component_mm:.1f} mm")
        elif ntype == "solid" and round_half_up(n.mean_diameter_mm) > 8:
            soon.append(f"{f.id} is a solid nodule of {d:.1f} mm (over 8 mm)")
        elif ntype == "part-solid" and round_half_up(n.mean_diameter_mm) >= 6:
            soon.append(f"{f.id} is a part-solid nodule of {d:.1f} mm (6 mm or more)")
    for r in recommendations:
        if not r.applicable:
            continue
        if r.guideline.startswith("Lung-RADS") and r.category in ("4B", "4X"):
            urgent.append(f"Lung-RADS category {r.category}")
        elif r.guideline.startswith("Lung-RADS") and r.category == "4A":
            soon.append("Lung-RADS category 4A")
    if urgent:
        return Triage("urgent", "; ".join(urgent) + ": prompt work-up is needed")
    if soon:
        return Triage("soon", "; ".join(soon) + ": short-interval follow-up or work-up is advised")
    if findings:
        return Triage("routine", f"{len(findings)} nodule(s), none at a work-up size (solid over "
                                 f"8 mm, part-solid 6 mm or more, 30 mm or more): follow-up as "
                                 f"recommended")
    return Triage("routine", "no nodule or mass was detected")


def triage_refused(reason: str) -> Triage:
    """The priority of a study the software could not analyse: it must be read without help."""
    return Triage("soon", f"no automated analysis was done ({reason}); the study must be read "
                          f"without it")
