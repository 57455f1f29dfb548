"""Fleischner Society 2017 recommendations for incidental pulmonary nodules found on CT.

Source: MacMahon H, Naidich DP, Goo JM, et al. "Guidelines for Management of Incidental Pulmonary
Nodules Detected on CT Images: From the Fleischner Society 2017." Radiology 2017;284(1):228-243,
Table 1 (the management table) and its notes.  The facts used here, in our own words:

* Size is the average of the long and short axis diameters, rounded to the nearest whole millimetre
  (Bankier AA et al., "Recommendations for Measuring Pulmonary Nodules at CT: A Statement from the
  Fleischner Society", Radiology 2017;285(2):584-600).  So "<6 mm" is a rounded size of 5 or less,
  "6-8 mm" is 6, 7 or 8 and ">8 mm" is 9 or more.
* Solid nodules have three size bands (<6, 6-8, >8 mm), each for a single nodule or several, with a
  low-risk and a high-risk patient option; subsolid nodules (ground-glass, part-solid) have two bands
  (<6, >=6 mm).  With several nodules, the most suspicious one guides management.
* Scope: incidental nodules in adults aged 35 or older; not for lung-cancer screening, not for
  patients with a known cancer (metastases) or with immunosuppression (infection).  A lesion of 30 mm
  or more is a mass, not a nodule, and is outside the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..report.model import Comparison, Finding, Provenance, Recommendation
from .facts import ClinicalContext, NoduleFacts, round_half_up

__all__ = ["GUIDELINE", "MASS_MM", "MIN_AGE", "Row", "ROWS", "fleischner", "fleischner_row"]

GUIDELINE = "Fleischner 2017"
SOURCE = "MacMahon et al., Radiology 2017;284:228-243, Table 1"
#: A lesion this size or larger is a mass, not a nodule (outside the Fleischner table).
MASS_MM = 30.0
#: The guideline is for adults of this age or older.
MIN_AGE = 35.0
_VERSION = "1"

SCOPE = ("Fleischner 2017 covers nodules under 30 mm found incidentally on CT in adults aged 35 or "
         "older; it does not apply to lung-cancer screening, to patients with a known cancer or to "
         "immunosuppressed patients")


@dataclass(frozen=True)
class Row:
    """One row of the Fleischner 2017 table."""

    key: str
    nodule: str  # "solid", "ground-glass", "part-solid" or "subsolid" (several subsolid nodules)
    multiple: bool
    size: str  # the size band as the table writes it
    low: str  # management for a low-risk patient (or any patient, where the table has one text)
    high: str  # management for a high-risk patient
    rank: int  # how close and invasive the follow-up is: picks the most suspicious nodule

    @property
    def condition(self) -> str:
        count = "multiple" if self.multiple else "single"
        return f"{self.nodule} nodule, {count}, {self.size}"


# Table 1 of the 2017 guideline, row by row (management texts paraphrased, intervals exact).
ROWS: dict[str, Row] = {r.key: r for r in (
    # Solid, single.
    Row("solid-single-lt6", "solid", False, "<6 mm (<100 mm3)",
        "no routine follow-up", "optional CT at 12 months", 0),
    Row("solid-single-6to8", "solid", False, "6-8 mm (100-250 mm3)",
        "CT at 6-12 months, then consider CT at 18-24 months",
        "CT at 6-12 months, then CT at 18-24 months", 2),
    Row("solid-single-gt8", "solid", False, ">8 mm (>250 mm3)",
        "consider CT at 3 months, PET/CT or tissue sampling",
        "consider CT at 3 months, PET/CT or tissue sampling", 4),
    # Solid, multiple: the most suspicious nodule guides management.
    Row("solid-multiple-lt6", "solid", True, "<6 mm (<100 mm3)",
        "no routine follow-up", "optional CT at 12 months", 0),
    Row("solid-multiple-6to8", "solid", True, "6-8 mm (100-250 mm3)",
        "CT at 3-6 months, then consider CT at 18-24 months",
        "CT at 3-6 months, then CT at 18-24 months", 3),
    Row("solid-multiple-gt8", "solid", True, ">8 mm (>250 mm3)",
        "CT at 3-6 months, then consider CT at 18-24 months",
        "CT at 3-6 months, then consider CT at 18-24 months", 3),
    # Subsolid, single ground-glass.
    Row("ggn-single-lt6", "ground-glass", False, "<6 mm (<100 mm3)",
        "no routine follow-up", "no routine follow-up", 0),
    Row("ggn-single-ge6", "ground-glass", False, ">=6 mm (>=100 mm3)",
        "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years",
        "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years", 2),
    # Subsolid, single part-solid.
    Row("partsolid-single-lt6", "part-solid", False, "<6 mm (<100 mm3)",
        "no routine follow-up", "no routine follow-up", 0),
    Row("partsolid-single-ge6", "part-solid", False, ">=6 mm (>=100 mm3)",
        "CT at 3-6 months to confirm persistence; if unchanged and the solid component stays "
        "under 6 mm, CT every year for 5 years",
        "CT at 3-6 months to confirm persistence; if unchanged and the solid component stays "
        "under 6 mm, CT every year for 5 years", 3),
    # Subsolid, multiple.
    Row("subsolid-multiple-lt6", "subsolid", True, "<6 mm (<100 mm3)",
        "CT at 3-6 months; if stable, consider CT at 2 and 4 years",
        "CT at 3-6 months; if stable, consider CT at 2 and 4 years", 1),
    Row("subsolid-multiple-ge6", "subsolid", True, ">=6 mm (>=100 mm3)",
        "CT at 3-6 months; then manage by the most suspicious nodule",
        "CT at 3-6 months; then manage by the most suspicious nodule", 3),
)}


def fleischner_row(nodule_type: str, size_mm: float, multiple: bool) -> Row:
    """The table row for one nodule.

    Parameters
    ----------
    nodule_type:
        ``"solid"``, ``"part-solid"`` or ``"ground-glass"``.
    size_mm:
        Mean of long and short axis in mm (rounded here to the nearest whole mm, halves up).
    multiple:
        Whether the patient has more than one nodule.
    """
    size = round_half_up(size_mm)
    if size >= MASS_MM:
        msg = f"a lesion of {size_mm:g} mm is a mass (>= {MASS_MM:g} mm), outside the Fleischner table"
        raise ValueError(msg)
    if nodule_type == "solid":
        band = "lt6" if size < 6 else ("6to8" if size <= 8 else "gt8")
        return ROWS[f"solid-{'multiple' if multiple else 'single'}-{band}"]
    if nodule_type not in ("part-solid", "ground-glass"):
        msg = f"unknown nodule type {nodule_type!r}; use solid, part-solid or ground-glass"
        raise ValueError(msg)
    band = "lt6" if size < 6 else "ge6"
    if multiple:
        return ROWS[f"subsolid-multiple-{band}"]
    prefix = "ggn" if nodule_type == "ground-glass" else "partsolid"
    return ROWS[f"{prefix}-single-{band}"]


def _management(row: Row, risk: str | None) -> str:
    if row.low == row.high:
        return row.low
    if risk == "low":
        return row.low
    if risk == "high":
        return row.high
    return f"low-risk patient: {row.low}; high-risk patient: {row.high}"


def _out_of_scope(context: ClinicalContext) -> str | None:
    if context.screening:
        return "this is a lung-cancer screening CT (use Lung-RADS)"
    if context.age_years is not None and context.age_years < MIN_AGE:
        return f"the patient is {context.age_years:g} years old (the guideline is for {MIN_AGE:g} or older)"
    if context.known_cancer:
        return "the patient has a known cancer (nodules may be metastases)"
    if context.immunocompromised:
        return "the patient is immunosuppressed (nodules may be infection)"
    return None


def _assumptions(context: ClinicalContext) -> str:
    assumed = []
    if context.age_years is None:
        assumed.append("an adult aged 35 or older")
    if context.screening is None:
        assumed.append("not a screening CT")
    if context.known_cancer is None:
        assumed.append("no known cancer")
    if context.immunocompromised is None:
        assumed.append("not immunosuppressed")
    if context.risk is None:
        assumed.append("cancer risk unknown, so both risk options are given")
    known = context.describe()
    text = f"Known: {known}."
    if assumed:
        text += " Assumed (not stated in the study): " + ", ".join(assumed) + "."
    return text


def _provenance(context: ClinicalContext, **parameters: object) -> Provenance:
    from .. import __version__

    return Provenance("fleischner_2017", f"{__version__}+rules{_VERSION}",
                      {"source": SOURCE, "context": context.to_dict(), **parameters})


def fleischner(
    findings: Sequence[Finding],
    context: ClinicalContext | None = None,
    comparisons: Sequence[Comparison] = (),
) -> Recommendation:
    """The Fleischner 2017 recommendation for the study, quoting the row and the scope it assumed.

    ``applicable`` is False (and the text says why) when the study or a finding is outside the
    guideline's scope.  With several nodules the most suspicious row (closest, most invasive
    follow-up; then the largest nodule) guides the recommendation, as the guideline says.
    """
    context = context or ClinicalContext()
    del comparisons  # Fleischner's table is for a nodule seen once; priors change nothing here
    ids = [f.id for f in findings]
    scope = f"Scope: {SCOPE}. {_assumptions(context)}"
    reason = _out_of_scope(context)
    if reason is not None:
        return Recommendation(GUIDELINE, "not applicable",
                              f"Fleischner 2017 does not apply: {reason}.",
                              scope, ids, _provenance(context), applicable=False)
    facts = [NoduleFacts.from_finding(f) for f in findings]
    masses = [n for n in facts if n.kind == "mass" or round_half_up(n.mean_diameter_mm) >= MASS_MM
              or n.long_axis_mm >= MASS_MM]
    if masses:
        sizes = ", ".join(f"{n.finding_id} ({n.long_axis_mm:.0f} mm long axis)" for n in masses)
        return Recommendation(
            GUIDELINE, "not applicable",
            f"Fleischner 2017 does not apply: {sizes} is 30 mm or larger, a mass rather than a "
            f"nodule; it needs clinical work-up, and any other nodule is managed in that context.",
            f"A lesion of 30 mm or more is not a Fleischner nodule. {scope}", ids,
            _provenance(context, mass_mm=MASS_MM), applicable=False)
    if not facts:
        return Recommendation(GUIDELINE, "no nodule",
                              "No pulmonary nodule was detected: no Fleischner follow-up is "
                              "triggered.", scope, [], _provenance(context))
    multiple = len(facts) > 1
    scored = []
    for n in facts:
        ntype = n.type or "solid"
        row = fleischner_row(ntype, n.mean_diameter_mm, multiple)
        scored.append((row.rank, n.mean_diameter_mm, n, row))
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    _, _, guide, row = scored[0]
    size = round_half_up(guide.mean_diameter_mm)
    text = _management(row, context.risk)
    notes = []
    if guide.type is None:
        notes.append("the nodule type was not characterised; the solid row was applied")
    if guide.type == "part-solid":
        if guide.solid_component_mm is None:
            notes.append("the solid component was not measured; a radiologist should measure it")
        elif round_half_up(guide.solid_component_mm) >= 6:
            notes.append("a persistent part-solid nodule with a solid component of 6 mm or more is "
                         "highly suspicious (guideline note)")
    if multiple:
        notes.append(f"{len(facts)} nodules: the most suspicious ({guide.finding_id}) guides "
                     f"management")
    sentence = text[0].upper() + text[1:] + "."
    if notes:
        sentence += " " + "; ".join(n[0].upper() + n[1:] for n in notes) + "."
    rule = (f"Row '{row.condition}' ({SOURCE}): size = mean of long and short axes "
            f"({guide.long_axis_mm:.1f} and {guide.short_axis_mm:.1f} mm) rounded to {size:.0f} mm. "
            f"{scope}")
    return Recommendation(GUIDELINE, row.condition, sentence, rule, ids,
                          _provenance(context, row=row.key, size_mm=size, multiple=multiple,
                                      risk=context.risk, guiding_finding=guide.finding_id))
