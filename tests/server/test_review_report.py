"""The report side of review and sign-off, without a server: report.json + masks.npz read back into the
same Report (medimg.report.load), a review applied (medimg.report.signoff) and written by the real
writers -- here with the AI's finding *rejected* and a finding added, the case test_review.py (which
edits it) does not cover: struck through in the HTML, no measurements but the decision in the SR,
cancelled and left out of the FHIR report's results.  The real chest CT is analysed once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medimg.image import Image
from medimg.pipeline import analyze
from medimg.report.json_writer import validate_report_dict
from medimg.report.load import load_masks, read_report, save_masks
from medimg.report.model import Report
from medimg.report.outputs import write_report
from medimg.report.render import key_images
from medimg.report.signoff import (
    Decision,
    Reviewer,
    apply_review,
    signed_context,
    validate_added,
    validate_edit,
)

pytestmark = [pytest.mark.slow]
AT = 1_700_000_000.0  # a fixed time: these tests never read the clock


@dataclass
class Analysed:
    report: Report
    image: Image
    folder: Path


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, ct_study_dir: Path) -> Iterator[Analysed]:
    folder = tmp_path_factory.mktemp("analysis")
    report, image = analyze(ct_study_dir, evidence_dir=folder / "evidence")
    assert image is not None and [f.id for f in report.findings] == ["F1"]
    write_report(report, image, folder)
    assert save_masks(report, image, folder) == folder / "masks.npz"
    yield Analysed(report, image, folder)


def sr_groups(ds: pydicom.Dataset) -> dict[str, list[tuple[str, str, Any]]]:
    """Measurement groups of a TID 1500 SR by tracking identifier: (value type, concept, value) items."""
    out: dict[str, list[tuple[str, str, Any]]] = {}
    measurements = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    for group in measurements.ContentSequence:
        items = []
        for it in group.ContentSequence:
            name = it.ConceptNameCodeSequence[0].CodeMeaning
            value: Any = None
            if it.ValueType == "NUM":
                value = float(it.MeasuredValueSequence[0].NumericValue)
            elif it.ValueType == "CODE":
                value = str(it.ConceptCodeSequence[0].CodeMeaning)
            elif it.ValueType == "TEXT":
                value = str(it.TextValue)
            elif it.ValueType == "UIDREF":
                value = str(it.UID)
            items.append((str(it.ValueType), str(name), value))
        tracking = next(v for t, n, v in items if n == "Tracking Identifier")
        out[str(tracking).split()[0]] = items
    return out


def test_report_json_and_masks_read_back_into_the_same_report(analysed: Analysed) -> None:
    back = read_report(analysed.folder)
    assert back.to_dict() == json.loads((analysed.folder / "report.json").read_text())
    assert back.to_dict() == json.loads(json.dumps(analysed.report.to_dict()))
    masks, grid = load_masks(analysed.folder) or ({}, None)
    assert grid is not None and grid.shape == analysed.image.spatial_shape
    assert np.allclose(grid.index_to_patient([[3, 40, 50]]), analysed.image.index_to_patient([[3, 40, 50]]))
    assert np.allclose(grid.patient_to_index(analysed.image.index_to_patient([[3, 40, 50]])), [[3, 40, 50]])
    for s in analysed.report.structures:
        assert s.mask is not None
        assert np.array_equal(masks[f"structure:{s.name}"], s.mask)
        assert np.array_equal(next(b for b in back.structures if b.name == s.name).mask, s.mask)
    assert np.array_equal(back.findings[0].mask, analysed.report.findings[0].mask)


def test_a_rejected_finding_and_an_added_one_in_every_format(analysed: Analysed, tmp_path: Path) -> None:
    ai = read_report(analysed.folder)
    grid = (load_masks(analysed.folder) or ({}, None))[1]
    series = ai.study.series_instance_uid
    decisions = [Decision("F1", "rejected", "bea", "Dr Bea Rad", AT, "atelectasis, not a mass"),
                 Decision("R1", "added", "bea", "Dr Bea Rad", AT, "", validate_added(
                     {"kind": "Nodule", "center_patient": [-60, 180, -150], "diameter_mm": 7,
                      "series_uid": series}))]
    signed = apply_review(ai, decisions, impression="No mass; a 7 mm right nodule.", impression_by="bea",
                          signer=Reviewer("bea", "Dr Bea Rad"), signed_at=AT + 60, grid=grid)
    assert ai.findings[0].status == "ai" and ai.impression != signed.impression  # the AI's report is unchanged
    assert [(f.id, f.status) for f in signed.findings] == [("F1", "rejected"), ("R1", "added")]
    r1 = signed.findings[1]
    assert r1.location.centroid_index is not None and grid is not None
    assert np.allclose(grid.index_to_patient(r1.location.centroid_index), [-60, 180, -150])
    seg = pydicom.dcmread(analysed.folder / "seg.dcm")
    written = write_report(signed, analysed.image, tmp_path, formats=["json", "html", "sr", "fhir"],
                           context=signed_context(signed, seg), seg=seg, images=key_images(ai, analysed.image))
    doc = json.loads(written["json"].read_text())
    validate_report_dict(doc)
    assert doc["review"]["signed_at"] == "2023-11-14T22:14:20+00:00"
    assert [(e["finding_id"], e["status"], e["comment"]) for e in doc["review"]["findings"]] == [
        ("F1", "rejected", "atelectasis, not a mass"), ("R1", "added", "")]

    html = written["html"].read_text()
    assert '<tr class="review-rejected">' in html and "<b>rejected by Dr Bea Rad</b>" in html
    assert "&ldquo;atelectasis, not a mass&rdquo;" in html
    assert "0 accepted, 0 edited, 1 rejected, 1 added." in " ".join(html.split())

    sr = pydicom.dcmread(written["sr"])
    assert sr.VerificationFlag == "VERIFIED"
    groups = sr_groups(sr)
    assert not [i for i in groups["F1"] if i[0] == "NUM"]  # a rejected finding reports no measurement
    assert ("CODE", "Radiologist review", "Rejected by radiologist") in groups["F1"]
    assert ("NUM", "Long axis", 7.0) in groups["R1"]
    assert not [i for i in groups["R1"] if i[1] == "Algorithm Name"]  # measured by a person
    seg_segments = {str(s.TrackingID): str(s.TrackingUID) for s in seg.SegmentSequence}
    assert ("UIDREF", "Tracking Unique Identifier", seg_segments["F1"]) in groups["F1"]  # the same object
    impression = next(i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "C0034375")
    assert impression.ContentSequence[0].TextValue == "No mass; a 7 mm right nodule."

    bundle = json.loads(written["fhir"].read_text())
    resources = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    report = next(r for r in resources.values() if r["resourceType"] == "DiagnosticReport")
    f1 = next(u for u, r in resources.items() if r["resourceType"] == "Observation" and r["code"]["text"].startswith("F1"))
    assert resources[f1]["status"] == "cancelled"
    assert "rejected by Dr Bea Rad (radiologist); comment: atelectasis, not a mass" in \
        [n["text"] for n in resources[f1]["note"]]
    assert f1 not in [x["reference"] for x in report["result"]]
    assert report["status"] == "final"


def test_the_signed_sr_keeps_the_analysis_tracking_uids(analysed: Analysed) -> None:
    ai = read_report(analysed.folder)
    seg = pydicom.dcmread(analysed.folder / "seg.dcm", stop_before_pixels=True)
    ctx = signed_context(ai, seg)
    by_label = {str(s.TrackingID): str(s.TrackingUID) for s in seg.SegmentSequence}
    assert ctx.tracking_uids["finding:F1"] == by_label["F1"]
    assert ctx.tracking_uids["structure:lung_left"] == by_label["lung_left"]
    assert ctx.seg_sop_uid == seg.SOPInstanceUID and ctx.sr_series_number == 992


def test_resizing_below_the_short_axis_drops_what_no_longer_holds(analysed: Analysed) -> None:
    ai = read_report(analysed.folder)
    short = ai.findings[0].measurement("short_axis_diameter")
    assert short is not None and short.value > 30
    edit = validate_edit({"diameter_mm": 30, "center_patient": [40, 200, -210]})
    reviewed = apply_review(ai, [Decision("F1", "edited", "bea", "Dr Bea Rad", AT, "", edit)])
    f1 = reviewed.findings[0]
    assert f1.measurement("long_axis_diameter").value == 30  # type: ignore[union-attr]
    assert f1.measurement("short_axis_diameter") is None and f1.measurement("mean_diameter") is None
    assert reviewed.review is not None and reviewed.review.state == "draft"
    entry = reviewed.review.of("F1")
    assert entry is not None and entry.original is not None
    assert entry.original["short_axis_diameter"] == {"value": short.value, "unit": "mm"}
    assert entry.original["centroid_patient"] == list(ai.findings[0].location.centroid_patient or ())
    assert any(c.startswith("short axis diameter") and "not reported" in c for c in entry.changes)
    assert f1.location.centroid_patient == (40.0, 200.0, -210.0)


def test_edits_are_checked(analysed: Analysed) -> None:
    with pytest.raises(ValueError, match="center_patient must hold finite"):
        validate_edit({"center_patient": [1, float("nan"), 2]})
    with pytest.raises(ValueError, match="'probability' cannot be edited"):
        validate_edit({"probability": 1})
    with pytest.raises(ValueError, match="characterisation must be text"):
        validate_edit({"characterisation": {"type": 3}})
    assert validate_edit({"bbox_patient": [5, 5, 5, 1, 1, 1]}) == {"bbox_patient": [1.0, 1.0, 1.0, 5.0, 5.0, 5.0]}
    assert validate_edit({"characterisation": "benign-looking"}) == {"characterisation": {"call": "benign-looking"}}
