"""report.json: valid against the shipped schema, and every number comes back exactly."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from medimg.image import Image
from medimg.report.json_writer import load_schema, validate_report_dict
from medimg.report.model import Report
from medimg.report.outputs import write_report


def _doc(written: dict[str, Path]) -> dict:
    return json.loads(written["json"].read_text(encoding="utf-8"))


def test_report_json_follows_the_schema(written: dict[str, Path]) -> None:
    doc = _doc(written)
    assert doc["schema_version"] == "1.0"
    jsonschema.Draft202012Validator.check_schema(load_schema("1.0"))
    jsonschema.Draft202012Validator(load_schema("1.0")).validate(doc)


def test_numbers_round_trip_exactly(written: dict[str, Path], ct_report: Report) -> None:
    doc = _doc(written)
    assert doc["status"] == "complete"
    [f] = doc["findings"]
    finding = ct_report.findings[0]
    assert f["id"] == "F1"
    assert f["code"] == {"value": "27925004", "scheme": "SCT", "meaning": "Nodule"}
    got = {m["name"]: (m["value"], m["unit"]) for m in f["measurements"]}
    want = {m.name: (m.value, m.unit) for m in finding.measurements}
    assert got == want  # floats compared exactly: JSON keeps Python's shortest round-trip repr
    assert f["probability"] == finding.probability
    assert tuple(f["location"]["centroid_patient"]) == finding.location.centroid_patient
    assert tuple(f["location"]["bbox_index"]) == finding.location.bbox_index
    assert f["location"]["side"] == "left"
    vols = {s["name"]: s["measurements"][0]["value"] for s in doc["structures"]}
    assert vols == {s.name: s.measurements[0].value for s in ct_report.structures}
    checks = {c["name"]: c for c in doc["quality"]["checks"]}
    assert doc["quality"]["verdict"] == "warn"
    assert checks["slice_thickness"]["value"] == 5.0
    assert checks["noise"]["threshold"] == {"warn": 25, "fail": 40}
    assert doc["recommendations"][0]["rule"] == ct_report.recommendations[0].rule
    assert doc["triage"] == {"priority": "soon", "reason": ct_report.triage.reason}  # type: ignore[union-attr]
    assert "not a diagnosis" in doc["disclaimer"]


def test_refused_report_says_why(refused_report: Report, ct_image: Image, tmp_path: Path) -> None:
    written = write_report(refused_report, ct_image, tmp_path, formats=["json"])
    doc = json.loads(written["json"].read_text(encoding="utf-8"))
    validate_report_dict(doc)
    assert doc["status"] == "refused"
    assert "coverage" in doc["refusal"]
    assert doc["findings"] == [] and doc["structures"] == []
    assert doc["quality"]["verdict"] == "fail"


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d.pop("status"), "(top level)"),
    (lambda d: d.__setitem__("status", "done"), "status"),
    (lambda d: d["findings"][0].__setitem__("probability", 1.5), "findings/0/probability"),
    (lambda d: d["findings"][0]["measurements"][0].__setitem__("value", "17.9"),
     "findings/0/measurements/0/value"),
    (lambda d: d["findings"][0]["location"].__setitem__("bbox_index", [1, 2, 3]),
     "findings/0/location/bbox_index"),
    (lambda d: (d.__setitem__("status", "refused"), d.__setitem__("refusal", None)), "refusal"),
    (lambda d: d.__setitem__("surprise", 1), "(top level)"),
])
def test_schema_rejects_broken_documents(written: dict[str, Path], change, where: str) -> None:
    doc = copy.deepcopy(_doc(written))
    change(doc)
    with pytest.raises(ValueError, match="does not follow schema 1.0") as info:
        validate_report_dict(doc)
    assert f" at {where}:" in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_schema_version_is_a_clear_error(written: dict[str, Path]) -> None:
    doc = _doc(written)
    doc["schema_version"] = "9.0"
    with pytest.raises(FileNotFoundError, match="report-9.0.json is not installed"):
        validate_report_dict(doc)
