"""Recommendations and triage made again from reviewed findings (medimg.decide.reassess), with the
clinical context each recommendation's provenance recorded when the analysis ran."""

from __future__ import annotations

import copy
from collections.abc import Callable

from medimg.decide import ClinicalContext, fleischner, lung_rads, triage
from medimg.decide.reassess import BASIS, reassess
from medimg.report.model import Comparison, Finding, Measurement

MakeFinding = Callable[..., Finding]  # the make_finding fixture (tests/decide/conftest.py)


def _ai(findings: list, context: ClinicalContext, comparisons: list | None = None) -> tuple[list, object]:
    recs = [fleischner(findings, context, comparisons or []),
            lung_rads(findings, context, comparisons or [], lungs_complete=True)]
    return recs, triage(findings, recs)


def test_context_round_trips_through_the_provenance() -> None:
    ctx = ClinicalContext(age_years=61.0, screening=True, risk="high", sources={"age_years": "DICOM 061Y"})
    assert ClinicalContext.from_dict(ctx.to_dict()) == ctx
    rec = lung_rads([], ctx, lungs_complete=False)
    assert rec.category == "0"
    assert rec.provenance.parameters["context"] == ctx.to_dict()
    assert rec.provenance.parameters["lungs_complete"] is False


def test_rejecting_the_nodule_withdraws_its_follow_up(make_finding: MakeFinding) -> None:
    ctx = ClinicalContext(age_years=58.0, risk="high")
    nodule = make_finding("F1", 10.0)
    recs, tri = _ai([nodule], ctx)
    assert recs[0].category == "solid nodule, single, >8 mm (>250 mm3)" and tri.priority == "soon"  # type: ignore[attr-defined]
    redo = reassess(recs, [], [], tri)  # type: ignore[arg-type]
    fl, lr = redo.recommendations
    assert fl.category == "no nodule" and fl.finding_ids == []
    assert fl.provenance.parameters["basis"] == BASIS
    assert fl.provenance.parameters["ai_text"] == recs[0].text
    assert fl.provenance.parameters["context"] == ctx.to_dict()  # the context is carried, not reset
    assert lr.category == "not applicable" and "category 1" in lr.text  # not a screening CT, as before
    assert redo.triage is not None and redo.triage.priority == "routine"
    assert len(redo.changes) == 3 and redo.changes[-1].startswith("priority changed from soon to routine")


def test_a_re_measured_nodule_moves_row_and_its_growth_follows(make_finding: MakeFinding) -> None:
    ctx = ClinicalContext(screening=True)
    ai_f = make_finding("F1", 9.0)  # mean 9 mm; the prior's was 8.0
    grown = Comparison("F1", "prior", "P1", [Measurement("mean_diameter_change", 1.0, "mm", "x"),
                                             Measurement("interval", 365.0, "d", "x")], "")
    recs, tri = _ai([ai_f], ctx, [grown])
    assert recs[1].category == "4A"  # 8-15 mm solid at baseline size, not growing (1.0 mm)
    edited = copy.deepcopy(ai_f)
    edited.measurements[0].value = edited.measurements[1].value = 10.0  # the reader: 10 mm, +2.0 mm
    redo = reassess(recs, [edited], [grown], tri, {"F1": ai_f})  # type: ignore[arg-type]
    assert redo.recommendations[1].category == "4B"  # growing and 8 mm or more
    assert redo.triage is not None and redo.triage.priority == "urgent"
    # Unchanged numbers: the same recommendations, marked as made again, with no AI text kept.
    same = reassess(recs, [ai_f], [grown], tri, {"F1": ai_f})  # type: ignore[arg-type]
    assert [r.text for r in same.recommendations] == [r.text for r in recs] and same.changes == []
    assert "ai_text" not in same.recommendations[0].provenance.parameters


def test_only_nodules_and_masses_are_read_and_unrecorded_inputs_are_kept(make_finding: MakeFinding) -> None:
    recs, tri = _ai([], ClinicalContext())
    effusion = make_finding("R1", 40.0, kind="effusion")
    redo = reassess(recs, [effusion], [], tri)  # type: ignore[arg-type]
    assert redo.recommendations[0].category == "no nodule" and redo.changes == []
    old = copy.deepcopy(recs[0])
    del old.provenance.parameters["context"]  # a report written before the inputs were recorded
    kept = reassess([old], [make_finding("R2", 12.0)], [], tri)  # type: ignore[arg-type]
    assert kept.recommendations == [old] and kept.triage is tri
    assert kept.changes == ["Fleischner 2017: kept as the analysis made it (its inputs were not recorded); "
                            "check it against the reviewed findings"]
