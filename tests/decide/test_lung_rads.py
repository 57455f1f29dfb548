"""Lung-RADS v2022 categories at their size boundaries, for solid, part-solid and ground-glass nodules.

Facts checked (American College of Radiology, Lung-RADS v2022 assessment categories, November 2022),
in our words:

* size = mean of long and short axis, to one decimal place; growth = more than 1.5 mm in 12 months;
* solid baseline: <6 -> 2, 6 to <8 -> 3, 8 to <15 -> 4A, >=15 -> 4B;
  solid new: <4 -> 2, 4 to <6 -> 3, 6 to <8 -> 4A, >=8 -> 4B; growing: <8 -> 4A, >=8 -> 4B;
* part-solid baseline: total <6 -> 2; total >=6 with solid <6 -> 3; solid 6 to <8 -> 4A; solid >=8
  -> 4B; new total <6 -> 3; new or growing solid component <4 -> 4A, >=4 -> 4B;
* ground-glass: <30 -> 2; >=30 at baseline or new -> 3; >=30 stable -> 2;
* 1: no nodules; 4X: category 3 or 4 with features that raise suspicion (e.g. spiculation);
* the examination takes its most suspicious nodule's category;
* scope: lung-cancer screening CT only.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from medimg.decide import ClinicalContext, NoduleFacts, lung_rads, nodule_category
from medimg.report.model import Comparison, Finding, Measurement

SCREENING = ClinicalContext(age_years=64, screening=True)

MakeFinding = Callable[..., Finding]  # the make_finding fixture (tests/decide/conftest.py)


def _nodule(ntype: str, size: float, solid: float | None = None, new: bool | None = None,
            growing: bool | None = None, features: tuple[str, ...] = ()) -> NoduleFacts:
    return NoduleFacts("n", ntype, size, size, solid_component_mm=solid,  # type: ignore[arg-type]
                       new=new, growing=growing, suspicious_features=features)


SOLID_BASELINE = [(5.94, "2"), (5.95, "3"), (6.0, "3"), (7.9, "3"), (8.0, "4A"), (14.9, "4A"),
                  (15.0, "4B"), (40.0, "4B")]
SOLID_NEW = [(3.9, "2"), (4.0, "3"), (5.9, "3"), (6.0, "4A"), (7.9, "4A"), (8.0, "4B")]
SOLID_GROWING = [(5.0, "4A"), (7.9, "4A"), (8.0, "4B")]


@pytest.mark.parametrize(("size", "cat"), SOLID_BASELINE)
def test_solid_baseline(size: float, cat: str) -> None:
    assert nodule_category(_nodule("solid", size)).category == cat


@pytest.mark.parametrize(("size", "cat"), SOLID_NEW)
def test_solid_new(size: float, cat: str) -> None:
    assert nodule_category(_nodule("solid", size, new=True)).category == cat


@pytest.mark.parametrize(("size", "cat"), SOLID_GROWING)
def test_solid_growing(size: float, cat: str) -> None:
    assert nodule_category(_nodule("solid", size, new=False, growing=True)).category == cat


# (total mm, solid component mm, new, growing) -> category
PART_SOLID = [
    (5.9, 2.0, None, None, "2"),
    (6.0, 5.9, None, None, "3"),
    (12.0, 6.0, None, None, "4A"),
    (12.0, 7.9, None, None, "4A"),
    (12.0, 8.0, None, None, "4B"),
    (5.9, 2.0, True, False, "3"),  # new, total < 6 mm
    (8.0, 3.9, True, False, "4A"),  # new solid component < 4 mm
    (8.0, 4.0, True, False, "4B"),  # new solid component >= 4 mm
    (9.0, 3.0, False, True, "4A"),  # growing, solid < 4 mm
    (9.0, 4.5, False, True, "4B"),
]


@pytest.mark.parametrize(("total", "solid", "new", "growing", "cat"), PART_SOLID)
def test_part_solid(total: float, solid: float, new: bool | None, growing: bool | None,
                    cat: str) -> None:
    assert nodule_category(_nodule("part-solid", total, solid, new, growing)).category == cat


def test_part_solid_without_solid_measure_is_not_final() -> None:
    res = nodule_category(_nodule("part-solid", 10.0))
    assert res.category == "3"
    assert "4A if 6 to <8 mm" in res.undetermined and "4B if 8 mm or more" in res.undetermined


GROUND_GLASS = [(5.0, None, "2"), (29.9, None, "2"), (30.0, None, "3"), (30.0, True, "3"),
                (35.0, False, "2"), (10.0, True, "2")]


@pytest.mark.parametrize(("size", "new", "cat"), GROUND_GLASS)
def test_ground_glass(size: float, new: bool | None, cat: str) -> None:
    assert nodule_category(_nodule("ground-glass", size, new=new)).category == cat


@pytest.mark.parametrize(("ntype", "size", "solid", "cat"), [
    ("solid", 7.0, None, "4X"),  # 3 -> 4X
    ("solid", 10.0, None, "4X"),  # 4A -> 4X
    ("solid", 20.0, None, "4X"),  # 4B -> 4X
    ("solid", 5.0, None, "2"),  # category 2 stays 2: 4X is for 3 and 4 only
    ("ground-glass", 10.0, None, "2"),
])
def test_4x_needs_category_3_or_4(ntype: str, size: float, solid: float | None, cat: str) -> None:
    res = nodule_category(_nodule(ntype, size, solid, features=("spiculated margin",)))
    assert res.category == cat
    if cat == "4X":
        assert "spiculated margin" in res.condition


def test_rounding_to_one_decimal(make_finding: MakeFinding) -> None:
    # 6.2 x 5.7 -> mean 5.95 -> 6.0 mm (one decimal, halves up): category 3.
    assert nodule_category(NoduleFacts.from_finding(make_finding("n", 6.2, 5.7))).category == "3"
    # 6.2 x 5.68 -> 5.94 -> 5.9 mm: category 2.
    assert nodule_category(NoduleFacts.from_finding(make_finding("n", 6.2, 5.68))).category == "2"


def test_exam_category_is_most_suspicious(make_finding: MakeFinding) -> None:
    findings = [make_finding("a", 5.0), make_finding("b", 9.0), make_finding("c", 6.5)]
    rec = lung_rads(findings, SCREENING)
    assert rec.applicable and rec.category == "4A"
    assert "b" in rec.rule and "8 to <15 mm" in rec.rule
    assert rec.text.startswith("Category 4A: low-dose CT in 3 months")
    assert rec.provenance.parameters["nodules"] == {"a": "2", "b": "4A", "c": "3"}


def test_no_nodule_is_category_1() -> None:
    rec = lung_rads([], SCREENING)
    assert rec.category == "1" and "12 months" in rec.text


def test_incomplete_lungs_is_category_0(make_finding: MakeFinding) -> None:
    rec = lung_rads([make_finding("a", 5.0)], SCREENING, lungs_complete=False)
    assert rec.category == "0"


@pytest.mark.parametrize("screening", [None, False])
def test_not_screening_is_not_applicable(make_finding: MakeFinding, screening: bool | None) -> None:
    rec = lung_rads([make_finding("a", 9.0)], ClinicalContext(screening=screening))
    assert not rec.applicable and rec.category == "not applicable"
    assert "would give category 4A" in rec.text and "do not use it for management" in rec.text
    assert "screen for lung cancer" in rec.rule


def test_comparison_makes_nodules_new_or_growing(make_finding: MakeFinding) -> None:
    grown = Comparison("a", "prior", "p1", [Measurement("mean_diameter_change", 1.6, "mm", "x")], "")
    stable = Comparison("a", "prior", "p1", [Measurement("mean_diameter_change", 1.5, "mm", "x")], "")
    new = Comparison("a", "prior", None, [], "")
    finding = [make_finding("a", 7.0)]
    assert lung_rads(finding, SCREENING, [grown]).category == "4A"  # growing < 8 mm
    assert lung_rads(finding, SCREENING, [stable]).category == "3"  # 1.5 mm is not growth
    assert lung_rads(finding, SCREENING, [new]).category == "4A"  # new 6 to < 8 mm
    same_day = Comparison("a", "prior", "p1", [Measurement("mean_diameter_change", 3.0, "mm", "x"),
                                               Measurement("interval", 0.0, "d", "x")], "")
    assert lung_rads(finding, SCREENING, [same_day]).category == "3"  # no growth in 0 days
