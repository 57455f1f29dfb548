"""fhir.json: a FHIR R4 transaction Bundle that fhir.resources parses, with the right values and UCUM units."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from medimg.image import Image
from medimg.report.model import Report
from medimg.report.outputs import write_report

UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
# Required bindings fhir.resources does not check (R4 value sets).
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}
REPORT_STATUS = {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                 "cancelled", "entered-in-error", "unknown"}


def _bundle(path: Path) -> Bundle:
    bundle = Bundle.model_validate_json(path.read_text(encoding="utf-8"))
    assert bundle.type == "transaction"
    urls = [e.fullUrl for e in bundle.entry]
    assert len(set(urls)) == len(urls)
    for e in bundle.entry:
        assert e.request.method == "POST" and e.request.url == e.resource.get_resource_type()
    return bundle


def _resources(bundle: Bundle, kind: type) -> list:
    return [e.resource for e in bundle.entry if isinstance(e.resource, kind)]


def test_bundle_parses_and_references_resolve(written: dict[str, Path]) -> None:
    bundle = _bundle(written["fhir"])
    [report] = _resources(bundle, DiagnosticReport)
    assert report.status == "preliminary" and report.status in REPORT_STATUS
    assert (report.code.coding[0].system, report.code.coding[0].code) == ("http://loinc.org", "24627-2")
    assert report.category[0].coding[0].code == "RAD"
    urls = {e.fullUrl: e.resource for e in bundle.entry}
    results = [urls[r.reference] for r in report.result]
    assert all(isinstance(r, Observation) for r in results)
    assert len(results) == 3  # one finding, two lung volumes
    for obs in results:
        assert obs.status in OBSERVATION_STATUS
        assert obs.device.reference in urls and urls[obs.device.reference].get_resource_type() == "Device"
    assert "It is not a diagnosis." in report.conclusion
    assert report.imagingStudy[0].identifier.value.startswith("urn:oid:1.3.6.1.4.1.14519")


def test_finding_observation_values_and_units(written: dict[str, Path], ct_report: Report) -> None:
    bundle = _bundle(written["fhir"])
    [obs] = [o for o in _resources(bundle, Observation) if o.component]
    f = ct_report.findings[0]
    assert (obs.code.coding[0].system, obs.code.coding[0].code) == (SNOMED, "27925004")
    assert (obs.bodySite.coding[0].system, obs.bodySite.coding[0].code) == (SNOMED, "44029006")  # left lung
    by_code = {c.code.coding[0].code: c.valueQuantity for c in obs.component if c.code.coding}
    expected = {"103339001": ("long_axis_diameter", "mm"), "103340004": ("short_axis_diameter", "mm"),
                "118565006": ("volume", "mm3"), "112031": ("mean_hu", "[hnsf'U]")}
    assert set(by_code) == set(expected)
    for code, (name, unit) in expected.items():
        q = by_code[code]
        assert float(q.value) == pytest.approx(f.measurement(name).value, rel=1e-12)  # type: ignore[union-attr]
        assert (q.system, q.code) == (UCUM, unit)
    [p] = [c for c in obs.component if not c.code.coding]
    assert float(p.valueQuantity.value) == pytest.approx(0.87) and p.valueQuantity.code == "1"
    # The identifier is the finding's DICOM tracking UID, the same one seg.dcm and sr.dcm carry.
    seg = pydicom.dcmread(written["seg"], stop_before_pixels=True)
    tracking = next(s.TrackingUID for s in seg.SegmentSequence if s.TrackingID == "F1")
    assert obs.identifier[0].value == f"urn:oid:{tracking}"


def test_structure_volume_observations(written: dict[str, Path], ct_report: Report) -> None:
    bundle = _bundle(written["fhir"])
    volumes = {o.bodySite.coding[0].code: o.valueQuantity for o in _resources(bundle, Observation)
               if o.valueQuantity is not None}
    sites = {"lung_right": "3341006", "lung_left": "44029006"}
    for s in ct_report.structures:
        q = volumes[sites[s.name]]
        assert float(q.value) == pytest.approx(s.measurements[0].value, rel=1e-12)
        assert (q.system, q.code) == (UCUM, "mL")


def test_refused_report_is_a_cancelled_diagnostic_report(refused_report: Report, ct_image: Image,
                                                          tmp_path: Path) -> None:
    written = write_report(refused_report, ct_image, tmp_path, formats=["fhir"])
    bundle = _bundle(written["fhir"])
    [report] = _resources(bundle, DiagnosticReport)
    assert report.status == "cancelled"
    assert "No analysis was done" in report.conclusion and "not fully covered" in report.conclusion
    assert not report.result and _resources(bundle, Observation) == []
    json.loads(written["fhir"].read_text(encoding="utf-8"))  # plain JSON as well
