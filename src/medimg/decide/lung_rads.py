"""Lung-RADS v2022 assessment categories for lung-cancer screening CT.

Source: American College of Radiology, "Lung CT Screening Reporting & Data System (Lung-RADS)
v2022", assessment-categories table (released November 2022).  The facts used here, in our own words:

* Nodules are measured as the mean of the long and short axis diameters, to one decimal place.
* Growth is an increase in mean diameter of more than 1.5 mm within 12 months (the comparison step
  marks a nodule ``growing``; without a prior every nodule is a baseline nodule).
* Solid nodule: baseline <6 mm -> 2; 6 to <8 mm -> 3; 8 to <15 mm -> 4A; 15 mm or more -> 4B.  New:
  <4 mm -> 2; 4 to <6 mm -> 3; 6 to <8 mm -> 4A; 8 mm or more -> 4B.  Growing: <8 mm -> 4A; 8 mm or
  more -> 4B.
* Part-solid nodule: baseline total <6 mm -> 2; total >=6 mm with solid component <6 mm -> 3; solid
  component 6 to <8 mm -> 4A; solid component 8 mm or more -> 4B.  New with total <6 mm -> 3; a new or
  growing solid component <4 mm -> 4A, 4 mm or more -> 4B.
* Ground-glass (non-solid) nodule: <30 mm (baseline, new or growing) -> 2; 30 mm or more at baseline
  or new -> 3; 30 mm or more, stable or slowly growing -> 2.
* 1: no nodule (or only benign calcified or fat-containing ones).  4X: a category 3 or 4 nodule with
  additional features or findings that raise the suspicion of cancer (e.g. spiculation).  0: part or
  all of the lungs cannot be evaluated, or a prior CT is being located.
* The examination's category is that of its most suspicious nodule.
* Management: 1 and 2 -> 12-month screening low-dose CT; 3 -> 6-month low-dose CT; 4A -> 3-month
  low-dose CT (PET/CT may be considered for a solid nodule or component of 8 mm or more); 4B and 4X
  -> diagnostic chest CT with or without contrast, PET/CT if the solid part is 8 mm or more, tissue
  sampling and/or referral, depending on clinical evaluation; 0 -> complete the examination or
  comparison (1-3 months for suspected infection).
* Scope: Lung-RADS is for CT examinations done to screen for lung cancer, not for diagnostic or
  incidental CT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..report.model import Comparison, Finding, Provenance, Recommendation
from .facts import ClinicalContext, NoduleFacts, round_half_up

__all__ = ["CATEGORIES", "GUIDELINE", "MANAGEMENT", "NoduleCategory", "lung_rads",
           "nodule_category"]

GUIDELINE = "Lung-RADS v2022"
SOURCE = "ACR Lung-RADS v2022 assessment categories"
_VERSION = "1"

#: Categories from least to most suspicious (0 is handled apart: the exam is incomplete).
CATEGORIES: tuple[str, ...] = ("1", "2", "3", "4A", "4B", "4X")

MANAGEMENT: dict[str, str] = {
    "0": "complete the examination or find the prior CT for comparison before categorising",
    "1": "continue annual screening with low-dose CT in 12 months",
    "2": "continue annual screening with low-dose CT in 12 months",
    "3": "low-dose CT in 6 months",
    "4A": "low-dose CT in 3 months; PET/CT may be considered when there is a solid nodule or solid "
          "component of 8 mm or more",
    "4B": "diagnostic chest CT with or without contrast; PET/CT may be considered when there is a "
          "solid nodule or solid component of 8 mm or more; tissue sampling and/or referral for "
          "clinical evaluation, depending on the probability of malignancy and the patient",
    "4X": "diagnostic chest CT with or without contrast; PET/CT may be considered when there is a "
          "solid nodule or solid component of 8 mm or more; tissue sampling and/or referral for "
          "clinical evaluation, depending on the probability of malignancy and the patient",
}

SCOPE = "Lung-RADS v2022 applies to CT examinations done to screen for lung cancer"


@dataclass(frozen=True)
class NoduleCategory:
    """The category of one nodule and the table condition that gave it."""

    finding_id: str
    category: str
    condition: str
    size_mm: float  # mean diameter, one decimal
    undetermined: str = ""  # what a reader must measure before the category is final

    @property
    def rank(self) -> int:
        return CATEGORIES.index(self.category)


def _solid(d: float, new: bool | None, growing: bool | None) -> tuple[str, str]:
    if growing:
        return ("4A", f"solid, growing, <8 mm ({d:.1f} mm)") if d < 8 else (
            "4B", f"solid, growing, >=8 mm ({d:.1f} mm)")
    if new:
        for limit, cat in ((4.0, "2"), (6.0, "3"), (8.0, "4A")):
            if d < limit:
                return cat, f"solid, new, {_band(limit)} ({d:.1f} mm)"
        return "4B", f"solid, new, >=8 mm ({d:.1f} mm)"
    for limit, cat in ((6.0, "2"), (8.0, "3"), (15.0, "4A")):
        if d < limit:
            return cat, f"solid, baseline, {_band(limit, base=True)} ({d:.1f} mm)"
    return "4B", f"solid, baseline, >=15 mm ({d:.1f} mm)"


def _band(limit: float, base: bool = False) -> str:
    bands_new = {4.0: "<4 mm", 6.0: "4 to <6 mm", 8.0: "6 to <8 mm"}
    bands_base = {6.0: "<6 mm", 8.0: "6 to <8 mm", 15.0: "8 to <15 mm"}
    return (bands_base if base else bands_new)[limit]


def _part_solid(d: float, solid: float | None, new: bool | None,
                growing: bool | None) -> tuple[str, str, str]:
    """(category, condition, what is undetermined).  "New or growing" is judged on the whole
    nodule (the comparison step matches nodules, not their solid parts)."""
    word = "new" if new else "growing"
    if (new or growing) and solid is not None and solid >= 4:
        return "4B", f"part-solid, {word} solid component >=4 mm ({solid:.1f} mm)", ""
    if d < 6:
        if new:
            return "3", f"part-solid, new, total <6 mm ({d:.1f} mm)", ""
        return "2", f"part-solid, baseline, total <6 mm ({d:.1f} mm)", ""
    if (new or growing) and solid is not None and 0 < solid < 4:
        return "4A", f"part-solid, total >=6 mm, {word} solid component <4 mm ({solid:.1f} mm)", ""
    if solid is None:
        return ("3", f"part-solid, total >=6 mm ({d:.1f} mm), solid component not measured",
                "the solid component was not measured: 3 if it is under 6 mm, 4A if 6 to <8 mm, "
                "4B if 8 mm or more; a radiologist must measure it")
    if solid < 6:
        return "3", f"part-solid, total >=6 mm ({d:.1f} mm), solid component <6 mm ({solid:.1f} mm)", ""
    if solid < 8:
        return "4A", f"part-solid, solid component 6 to <8 mm ({solid:.1f} mm)", ""
    return "4B", f"part-solid, solid component >=8 mm ({solid:.1f} mm)", ""


def _ground_glass(d: float, new: bool | None, growing: bool | None) -> tuple[str, str]:
    if d < 30:
        return "2", f"ground-glass, <30 mm ({d:.1f} mm)"
    if new or new is None:  # no prior: a baseline nodule
        return "3", f"ground-glass, >=30 mm at baseline or new ({d:.1f} mm)"
    return "2", f"ground-glass, >=30 mm, stable or slowly growing ({d:.1f} mm)"


def nodule_category(nodule: NoduleFacts) -> NoduleCategory:
    """The Lung-RADS v2022 category of one nodule (mean diameter rounded to one decimal)."""
    d = round_half_up(nodule.mean_diameter_mm, 1)
    solid = (round_half_up(nodule.solid_component_mm, 1)
             if nodule.solid_component_mm is not None else None)
    ntype = nodule.type or "solid"
    undetermined = ""
    if ntype == "solid":
        cat, cond = _solid(d, nodule.new, nodule.growing)
    elif ntype == "part-solid":
        cat, cond, undetermined = _part_solid(d, solid, nodule.new, nodule.growing)
    elif ntype == "ground-glass":
        cat, cond = _ground_glass(d, nodule.new, nodule.growing)
    else:
        msg = f"unknown nodule type {ntype!r}; use solid, part-solid or ground-glass"
        raise ValueError(msg)
    if nodule.type is None:
        cond += "; type not characterised, solid rule applied"
    if nodule.suspicious_features and cat in ("3", "4A", "4B"):
        cond += f"; raised to 4X for {', '.join(nodule.suspicious_features)} (was {cat})"
        cat = "4X"
    return NoduleCategory(nodule.finding_id, cat, cond, d, undetermined)


def _provenance(context: ClinicalContext, **parameters: object) -> Provenance:
    from .. import __version__

    return Provenance("lung_rads_v2022", f"{__version__}+rules{_VERSION}",
                      {"source": SOURCE, "context": context.to_dict(), **parameters})


def lung_rads(
    findings: Sequence[Finding],
    context: ClinicalContext | None = None,
    comparisons: Sequence[Comparison] = (),
    lungs_complete: bool | None = None,
) -> Recommendation:
    """The Lung-RADS v2022 category of the examination, with the nodule and condition that set it.

    Parameters
    ----------
    findings:
        The nodules and masses found.
    context:
        ``context.screening`` must be True for the category to apply; otherwise the recommendation
        is marked not applicable and says which category the table would give, for reference only.
    comparisons:
        Matches with a prior study (make nodules new or growing); none: every nodule is baseline.
    lungs_complete:
        False when part of the lungs is outside the scan: category 0.
    """
    context = context or ClinicalContext()
    by_id = {c.finding_id: c for c in comparisons}
    ids = [f.id for f in findings]
    cats = [nodule_category(NoduleFacts.from_finding(f, by_id.get(f.id))) for f in findings]
    baseline = "no prior given: every nodule is assessed as at baseline" if not comparisons else (
        "compared with the prior study given")
    if lungs_complete is False:
        category, condition, guide = "0", "part of the lungs is outside the scanned volume", None
    elif not cats:
        category, condition, guide = "1", "no lung nodule detected", None
    else:
        guide = max(cats, key=lambda c: (c.rank, c.size_mm))
        category, condition = guide.category, guide.condition
    text = f"Category {category}: {MANAGEMENT[category]}."
    if guide is not None and guide.undetermined:
        text += f" Not final: {guide.undetermined}."
    rule = (f"'{condition}' ({SOURCE}); "
            + (f"most suspicious of {len(cats)} nodules: {guide.finding_id}; " if guide and len(cats) > 1
               else "")
            + f"{baseline}. Not assessed by this software: calcification and fat (category 1), "
              f"juxtapleural and airway nodules, cysts, the S modifier. Scope: {SCOPE}.")
    params = {"category": category, "nodules": {c.finding_id: c.category for c in cats},
              "lungs_complete": lungs_complete,
              "screening": context.screening}
    if not context.screening:
        why = ("the study is not identified as a lung-cancer screening CT"
               if context.screening is None else "this is not a lung-cancer screening CT")
        return Recommendation(
            GUIDELINE, "not applicable",
            f"Lung-RADS does not apply: {why}. For reference only, its table would give category "
            f"{category} ({condition}); do not use it for management.",
            rule + f" Context: {context.describe()}.", ids, _provenance(context, **params),
            applicable=False)
    return Recommendation(GUIDELINE, category, text, rule, ids, _provenance(context, **params))
