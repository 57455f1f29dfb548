"""Every row of the Fleischner 2017 table, at its size boundaries, and the guideline's scope.

Facts checked (MacMahon et al., "Guidelines for Management of Incidental Pulmonary Nodules Detected
on CT Images: From the Fleischner Society 2017", Radiology 2017;284:228-243, Table 1; measuring
rules from Bankier et al., Radiology 2017;285:584-600), in our words:

* size = mean of long and short axis, rounded to the nearest millimetre;
* solid: <6 mm -> no routine follow-up (low risk) / optional CT at 12 months (high risk);
  6-8 mm single -> CT at 6-12 months then (consider) 18-24 months; 6-8 mm multiple -> CT at 3-6
  months then (consider) 18-24 months; >8 mm single -> consider CT at 3 months, PET/CT or tissue
  sampling; >8 mm multiple -> CT at 3-6 months then consider 18-24 months;
* single ground-glass: <6 mm none; >=6 mm CT at 6-12 months, then every 2 years to 5 years;
* single part-solid: <6 mm none; >=6 mm CT at 3-6 months, then yearly for 5 years if unchanged with a
  solid part under 6 mm;
* multiple subsolid: <6 mm CT at 3-6 months, then consider 2 and 4 years; >=6 mm CT at 3-6 months,
  then by the most suspicious nodule;
* scope: adults >= 35, incidental, not screening, no known cancer, not immunosuppressed; >= 30 mm is
  a mass.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from medimg.decide import ClinicalContext, fleischner, fleischner_row
from medimg.report.model import Finding

MakeFinding = Callable[..., Finding]  # the make_finding fixture (tests/decide/conftest.py)

# (type, mean size mm, multiple) -> row key.  Sizes straddle each boundary after rounding.
ROW_CASES = [
    ("solid", 3.0, False, "solid-single-lt6"),
    ("solid", 5.49, False, "solid-single-lt6"),
    ("solid", 5.5, False, "solid-single-6to8"),  # rounds half up to 6
    ("solid", 8.0, False, "solid-single-6to8"),
    ("solid", 8.49, False, "solid-single-6to8"),
    ("solid", 8.5, False, "solid-single-gt8"),  # rounds to 9
    ("solid", 29.4, False, "solid-single-gt8"),
    ("solid", 5.4, True, "solid-multiple-lt6"),
    ("solid", 6.0, True, "solid-multiple-6to8"),
    ("solid", 8.4, True, "solid-multiple-6to8"),
    ("solid", 9.0, True, "solid-multiple-gt8"),
    ("ground-glass", 5.49, False, "ggn-single-lt6"),
    ("ground-glass", 5.5, False, "ggn-single-ge6"),
    ("ground-glass", 20.0, False, "ggn-single-ge6"),
    ("part-solid", 5.0, False, "partsolid-single-lt6"),
    ("part-solid", 6.0, False, "partsolid-single-ge6"),
    ("ground-glass", 5.0, True, "subsolid-multiple-lt6"),
    ("part-solid", 5.4, True, "subsolid-multiple-lt6"),
    ("ground-glass", 6.0, True, "subsolid-multiple-ge6"),
    ("part-solid", 12.0, True, "subsolid-multiple-ge6"),
]


@pytest.mark.parametrize(("ntype", "size", "multiple", "key"), ROW_CASES)
def test_table_row(ntype: str, size: float, multiple: bool, key: str) -> None:
    assert fleischner_row(ntype, size, multiple).key == key


# Row key -> (low-risk management, high-risk management): the intervals of Table 1.
MANAGEMENT = {
    "solid-single-lt6": ("no routine follow-up", "optional CT at 12 months"),
    "solid-single-6to8": ("CT at 6-12 months, then consider CT at 18-24 months",
                          "CT at 6-12 months, then CT at 18-24 months"),
    "solid-single-gt8": ("consider CT at 3 months, PET/CT or tissue sampling",) * 2,
    "solid-multiple-lt6": ("no routine follow-up", "optional CT at 12 months"),
    "solid-multiple-6to8": ("CT at 3-6 months, then consider CT at 18-24 months",
                            "CT at 3-6 months, then CT at 18-24 months"),
    "solid-multiple-gt8": ("CT at 3-6 months, then consider CT at 18-24 months",) * 2,
    "ggn-single-lt6": ("no routine follow-up",) * 2,
    "ggn-single-ge6": ("CT at 6-12 months to confirm persistence, then CT every 2 years until "
                       "5 years",) * 2,
    "partsolid-single-lt6": ("no routine follow-up",) * 2,
    "partsolid-single-ge6": ("CT at 3-6 months to confirm persistence; if unchanged and the solid "
                             "component stays under 6 mm, CT every year for 5 years",) * 2,
    "subsolid-multiple-lt6": ("CT at 3-6 months; if stable, consider CT at 2 and 4 years",) * 2,
    "subsolid-multiple-ge6": ("CT at 3-6 months; then manage by the most suspicious nodule",) * 2,
}


@pytest.mark.parametrize("key", sorted(MANAGEMENT))
def test_row_management_texts(key: str) -> None:
    from medimg.decide.fleischner import ROWS

    assert (ROWS[key].low, ROWS[key].high) == MANAGEMENT[key]


def test_every_row_is_reachable() -> None:
    from medimg.decide.fleischner import ROWS

    assert {key for *_, key in ROW_CASES} == set(ROWS)


@pytest.mark.parametrize("risk", ["low", "high"])
def test_recommendation_uses_risk_and_quotes_row(make_finding: MakeFinding, risk: str) -> None:
    # 7 x 5 mm: mean 6.0 -> the single solid 6-8 mm row.
    ctx = ClinicalContext(age_years=60, screening=False, known_cancer=False,
                          immunocompromised=False, risk=risk)  # type: ignore[arg-type]
    rec = fleischner([make_finding("n1", 7.0, 5.0)], ctx)
    assert rec.applicable
    assert rec.category == "solid nodule, single, 6-8 mm (100-250 mm3)"
    low, high = MANAGEMENT["solid-single-6to8"]
    assert rec.text.lower().startswith((low if risk == "low" else high).lower())
    assert "rounded to 6 mm" in rec.rule and "Table 1" in rec.rule
    assert rec.provenance.parameters["row"] == "solid-single-6to8"
    assert "Assumed" not in rec.rule  # everything was stated


def test_unknown_risk_gives_both_options_and_states_assumptions(make_finding: MakeFinding) -> None:
    rec = fleischner([make_finding("n1", 4.0)])
    assert rec.applicable
    assert "Low-risk patient: no routine follow-up" in rec.text
    assert "high-risk patient: optional CT at 12 months" in rec.text
    for assumed in ("an adult aged 35 or older", "not a screening CT", "no known cancer",
                    "not immunosuppressed"):
        assert assumed in rec.rule


def test_multiple_nodules_most_suspicious_guides(make_finding: MakeFinding) -> None:
    findings = [make_finding("small", 4.0), make_finding("ggn", 7.0, type_="ground-glass"),
                make_finding("solid9", 9.0)]
    rec = fleischner(findings)
    # Solid >8 mm multiple (CT at 3-6 months) is as close as multiple subsolid >=6, and larger.
    assert rec.provenance.parameters["row"] == "solid-multiple-gt8"
    assert rec.provenance.parameters["guiding_finding"] == "solid9"
    assert rec.finding_ids == ["small", "ggn", "solid9"]
    assert "3 nodules" in rec.text


def test_multiple_subsolid_small_is_closer_than_small_solid(make_finding: MakeFinding) -> None:
    rec = fleischner([make_finding("s", 5.0), make_finding("g", 4.0, type_="ground-glass")])
    assert rec.provenance.parameters["row"] == "subsolid-multiple-lt6"


def test_mass_is_out_of_scope(make_finding: MakeFinding) -> None:
    rec = fleischner([make_finding("m", 30.0, 22.0), make_finding("n", 5.0)])
    assert not rec.applicable
    assert rec.category == "not applicable"
    assert "mass" in rec.text and "30 mm" in rec.rule
    # 29.9 x 29.9 rounds to 30 mm: a mass too; 29.4 mm stays a nodule (>8 mm row).
    assert not fleischner([make_finding("m", 29.9)]).applicable
    assert fleischner([make_finding("n", 29.4)]).applicable


def test_mass_kind_is_out_of_scope_whatever_the_size(make_finding: MakeFinding) -> None:
    assert not fleischner([make_finding("m", 25.0, kind="mass")]).applicable


@pytest.mark.parametrize(("ctx", "why"), [
    (ClinicalContext(screening=True), "screening"),
    (ClinicalContext(age_years=34), "34 years"),
    (ClinicalContext(known_cancer=True), "known cancer"),
    (ClinicalContext(immunocompromised=True), "immunosuppressed"),
])
def test_scope_exclusions(make_finding: MakeFinding, ctx: ClinicalContext, why: str) -> None:
    rec = fleischner([make_finding("n", 7.0)], ctx)
    assert not rec.applicable
    assert why in rec.text


def test_age_35_is_in_scope(make_finding: MakeFinding) -> None:
    assert fleischner([make_finding("n", 7.0)], ClinicalContext(age_years=35)).applicable


def test_no_nodule(make_finding: MakeFinding) -> None:
    rec = fleischner([])
    assert rec.applicable and rec.category == "no nodule" and rec.finding_ids == []


def test_part_solid_notes(make_finding: MakeFinding) -> None:
    unmeasured = fleischner([make_finding("p", 10.0, type_="part-solid")])
    assert "solid component was not measured" in unmeasured.text
    suspicious = fleischner([make_finding("p", 10.0, type_="part-solid", solid_mm=6.0)])
    assert "highly suspicious" in suspicious.text


def test_untyped_nodule_uses_solid_row_and_says_so(make_finding: MakeFinding) -> None:
    rec = fleischner([make_finding("u", 7.0, type_=None)])
    assert rec.provenance.parameters["row"] == "solid-single-6to8"
    assert "not characterised" in rec.text


def test_fleischner_row_refuses_mass_and_unknown_type() -> None:
    with pytest.raises(ValueError, match="mass"):
        fleischner_row("solid", 30.0, False)
    with pytest.raises(ValueError, match="unknown nodule type"):
        fleischner_row("calcified", 5.0, False)
