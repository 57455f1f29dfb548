"""Reading-list priority: each rule of medimg.decide.triage at its limits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from medimg.decide import ClinicalContext, lung_rads, triage, triage_refused
from medimg.report.model import Finding

MakeFinding = Callable[..., Finding]  # the make_finding fixture (tests/decide/conftest.py)


@pytest.mark.parametrize(("long_mm", "short_mm", "type_", "kind", "solid_mm", "priority"), [
    (30.0, 20.0, "solid", "nodule", None, "urgent"),  # 30 mm long axis: a mass
    (25.0, 20.0, "solid", "mass", None, "urgent"),  # called a mass by the detector
    (15.0, 15.0, "solid", "nodule", None, "urgent"),  # Lung-RADS 4B size
    (14.9, 14.9, "solid", "nodule", None, "soon"),
    (9.0, 8.0, "solid", "nodule", None, "soon"),  # rounds to 9 mm: Fleischner > 8 mm
    (8.4, 8.4, "solid", "nodule", None, "routine"),  # rounds to 8 mm
    (6.0, 6.0, "part-solid", "nodule", None, "soon"),
    (5.0, 5.0, "part-solid", "nodule", None, "routine"),
    (20.0, 20.0, "part-solid", "nodule", 15.0, "urgent"),
    (25.0, 25.0, "ground-glass", "nodule", None, "routine"),
])
def test_priority_by_finding(make_finding: MakeFinding, long_mm: float, short_mm: float,
                             type_: str, kind: str, solid_mm: float | None, priority: str) -> None:
    f = make_finding("f1", long_mm, short_mm, type_=type_, kind=kind, solid_mm=solid_mm)
    t = triage([f])
    assert t.priority == priority
    if priority != "routine":
        assert "f1" in t.reason


def test_no_finding_is_routine() -> None:
    t = triage([])
    assert t.priority == "routine" and "no nodule" in t.reason


def test_applicable_lung_rads_4b_is_urgent_but_not_applicable_is_ignored(
        make_finding: MakeFinding) -> None:
    # A new 8 mm solid nodule is 4B only through the comparison: the size alone says "routine".
    from medimg.report.model import Comparison

    f = make_finding("a", 8.0)
    new = [Comparison("a", "prior", None, [], "")]
    screening = lung_rads([f], ClinicalContext(screening=True), new)
    assert screening.category == "4B"
    assert triage([f], [screening]).priority == "urgent"
    incidental = lung_rads([f], ClinicalContext(screening=False), new)
    assert not incidental.applicable
    assert triage([f], [incidental]).priority == "routine"


def test_refused_study_must_be_read_soon() -> None:
    t = triage_refused("image noise too high")
    assert t.priority == "soon" and "image noise too high" in t.reason
