"""The report side of review and sign-off, without a server: report.json + masks.npz read back into the
same Report (medimg.report.load), a review applied (medimg.report.signoff) and written by the real
writers -- here with the AI's finding *rejected* and a finding added, the case test_review.py (which
edits it) does not cover: struck through in the HTML, no measurements but the decision in the SR,
cancelled and left out of the FHIR report's results.  The real chest CT is analysed once."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from workstation_helpers import sr_value

from medimg.decide.reassess import BASIS
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

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_review_report")]
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
        items = [(str(it.ValueType), str(it.ConceptNameCodeSequence[0].CodeMeaning), sr_value(it))
                 for it in group.ContentSequence]
        tracking = next(v for t, n, v in items if n == "Tracking Identifier")
        out[str(tracking).split()[0]] = items
    return out


def dciodvfy_errors(path: Path) -> set[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy is not installed: apt-get install -y dicom3tools", pytrace=False)
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120, check=False)
    return {line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")}


def sr_regions(path: Path, uids: list[str]) -> dict[str, tuple[str, np.ndarray]]:
    """The image regions of a TID 1500 SR's groups by tracking identifier (first word): (referenced SOP
    Instance UID, points (column, row)); each a closed POLYLINE on one image of ``uids``."""
    ds = pydicom.dcmread(path)
    measurements = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    out: dict[str, tuple[str, np.ndarray]] = {}
    for group in measurements.ContentSequence:
        items = list(group.ContentSequence)
        tracking = str(next(i.TextValue for i in items if i.ConceptNameCodeSequence[0].CodeValue == "112039"))
        scoords = [i for i in items if i.ValueType == "SCOORD"]
        if not scoords:
            continue
        [sc] = scoords
        assert sc.GraphicType == "POLYLINE" and sc.ConceptNameCodeSequence[0].CodeValue == "111030"
        points = np.asarray(sc.GraphicData, dtype=float).reshape(-1, 2)
        assert len(points) >= 4 and points[0].tolist() == points[-1].tolist(), f"{tracking}: not closed"
        [ref] = next(i for i in sc.ContentSequence if i.ValueType == "IMAGE").ReferencedSOPSequence
        assert str(ref.ReferencedSOPInstanceUID) in uids
        out[tracking.split()[0]] = (str(ref.ReferencedSOPInstanceUID), points)
    return out


def assert_inside(region: tuple[str, np.ndarray], box: tuple[int, ...], uids: list[str]) -> None:
    uid, points = region
    z0, y0, x0, z1, y1, x1 = box
    assert z0 <= uids.index(uid) < z1
    assert (points[:, 0] >= x0).all() and (points[:, 0] <= x1).all()
    assert (points[:, 1] >= y0).all() and (points[:, 1] <= y1).all()


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

    # The guidelines are applied again to what the radiologist kept and added: the AI's mass (outside
    # Fleischner, urgent) is gone, the added 7 mm nodule (untyped, so the solid row) sets the follow-up.
    assert ai.triage is not None and ai.triage.priority == "urgent"
    assert ai.recommendations[0].category == "not applicable"
    fl = signed.recommendations[0]
    assert fl.category == "solid nodule, single, 6-8 mm (100-250 mm3)" and fl.finding_ids == ["R1"]
    assert fl.provenance.parameters["basis"] == BASIS
    assert fl.provenance.parameters["ai_text"] == ai.recommendations[0].text
    assert signed.triage is not None and signed.triage.priority == "routine"
    assert doc["recommendations"][0]["category"] == fl.category and doc["triage"]["priority"] == "routine"
    assert doc["steps"][-1]["algorithm"] == "review_reassessment"
    assert doc["impression"] == "No mass; a 7 mm right nodule."  # the radiologist's own impression stands

    html = written["html"].read_text()
    assert f"from the software's findings it was: <del>{escape(ai.recommendations[0].text)}</del>" in html
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
    assert dciodvfy_errors(written["sr"]) == set()
    # Both groups have an image region OHIF can draw: F1 its mask's box on its largest slice, R1 (no box)
    # a square of its 7 mm long axis round its centre, on the slice through its centre.
    uids = analysed.image.meta["sop_instance_uids"]
    regions = sr_regions(written["sr"], uids)
    assert set(regions) == {"F1", "R1"}
    f1 = signed.findings[0]
    assert f1.mask is not None and f1.location.bbox_index is not None
    assert_inside(regions["F1"], f1.location.bbox_index, uids)
    assert regions["F1"][0] == uids[int(np.argmax(f1.mask.sum(axis=(1, 2))))]
    uid, points = regions["R1"]
    assert uid == uids[int(round(r1.location.centroid_index[0]))]
    spacing = float(analysed.image.spacing[2])
    width = points[:, 0].max() - points[:, 0].min()
    assert 7 / spacing <= width <= 7 / spacing + 2
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    assert np.allclose(centre, [r1.location.centroid_index[2] + 0.5, r1.location.centroid_index[1] + 0.5], atol=1)

    bundle = json.loads(written["fhir"].read_text())
    resources = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    report = next(r for r in resources.values() if r["resourceType"] == "DiagnosticReport")
    f1 = next(u for u, r in resources.items() if r["resourceType"] == "Observation" and r["code"]["text"].startswith("F1"))
    assert resources[f1]["status"] == "cancelled"
    assert "rejected by Dr Bea Rad (radiologist); comment: atelectasis, not a mass" in \
        [n["text"] for n in resources[f1]["note"]]
    assert f1 not in [x["reference"] for x in report["result"]]
    assert report["status"] == "final"


def test_an_unedited_impression_says_what_the_review_changed(analysed: Analysed) -> None:
    ai = read_report(analysed.folder)
    reviewed = apply_review(ai, [Decision("F1", "rejected", "bea", "Dr Bea Rad", AT, "")])
    assert [r.category for r in reviewed.recommendations] == ["no nodule", "not applicable"]
    assert reviewed.triage is not None and reviewed.triage.priority == "routine"
    assert reviewed.impression.startswith(ai.impression + " After the radiologist's review: Fleischner 2017 "
                                          "changed from 'not applicable' to 'no nodule'")
    assert "priority changed from urgent to routine" in reviewed.impression
    assert ai.triage is not None and ai.triage.priority == "urgent" and ai.steps == read_report(analysed.folder).steps


def test_the_signed_sr_draws_the_radiologists_boxes(analysed: Analysed, tmp_path: Path) -> None:
    """An edited finding whose box the radiologist moved and an added one with a box: the signed SR's
    groups draw the radiologist's boxes (closed POLYLINEs on a source image), and dciodvfy accepts it."""
    ai = read_report(analysed.folder)
    grid = (load_masks(analysed.folder) or ({}, None))[1]
    assert grid is not None
    f1 = ai.findings[0]
    assert f1.location.bbox_index is not None and f1.mask is not None
    z0, y0, x0, z1, y1, x1 = f1.location.bbox_index
    # the box shifted 6 voxels to the right (column +6) and shrunk by 2 voxels at its bottom row
    new_index = np.array([[z0, y0, x0 + 6], [z1 - 1, y1 - 3, x1 - 1 + 6]], dtype=float)
    corners = grid.index_to_patient(new_index)
    box = [*np.minimum(corners[0], corners[1]).tolist(), *np.maximum(corners[0], corners[1]).tolist()]
    series = ai.study.series_instance_uid
    added_centre = grid.index_to_patient([[z0 + 2, 200, 150]])[0]
    added_box = grid.index_to_patient([[z0 + 1, 195, 145], [z0 + 3, 205, 155]])
    decisions = [
        Decision("F1", "edited", "bea", "Dr Bea Rad", AT, "", validate_edit({"bbox_patient": box})),
        Decision("R1", "added", "bea", "Dr Bea Rad", AT, "", {
            **validate_added({"kind": "nodule", "center_patient": added_centre.tolist(), "diameter_mm": 8,
                              "series_uid": series}),
            "bbox_patient": [*np.minimum(*added_box).tolist(), *np.maximum(*added_box).tolist()]}),
    ]
    signed = apply_review(ai, decisions, signer=Reviewer("bea", "Dr Bea Rad"), signed_at=AT + 60, grid=grid)
    e1, r1 = signed.findings
    assert e1.location.bbox_index == (z0, y0, x0 + 6, z1, y1 - 2, x1 + 6)
    assert r1.location.bbox_index == (z0 + 1, 195, 145, z0 + 4, 206, 156)
    seg = pydicom.dcmread(analysed.folder / "seg.dcm")
    written = write_report(signed, analysed.image, tmp_path, formats=["sr"], context=signed_context(signed, seg),
                           seg=seg)
    assert dciodvfy_errors(written["sr"]) == set()
    uids = analysed.image.meta["sop_instance_uids"]
    regions = sr_regions(written["sr"], uids)
    assert set(regions) == {"F1", "R1"}
    for f in (e1, r1):
        assert_inside(regions[f.id], f.location.bbox_index, uids)  # type: ignore[arg-type]
    # F1: exactly the radiologist's box, on the slice of it where the AI's mask is largest
    uid, points = regions["F1"]
    assert points.min(axis=0).tolist() == [x0 + 6, y0] and points.max(axis=0).tolist() == [x1 + 6, y1 - 2]
    assert uid == uids[int(np.argmax(f1.mask.sum(axis=(1, 2))))]
    # R1: its box, on the slice nearest its centre
    uid, points = regions["R1"]
    assert points.min(axis=0).tolist() == [145, 195] and points.max(axis=0).tolist() == [156, 206]
    assert uid == uids[z0 + 2]
    groups = sr_groups(pydicom.dcmread(written["sr"]))
    assert ("CODE", "Radiologist review", "Edited by radiologist") in groups["F1"]
    assert [i for i in groups["F1"] if i[1] == "Long axis"]  # the measurements are kept
    assert ("NUM", "Long axis", 8.0) in groups["R1"]


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
