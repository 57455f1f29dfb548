"""sr.dcm: a TID 1500 Comprehensive 3D SR that dciodvfy accepts and dcmtk and highdicom read back."""

from __future__ import annotations

import re
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_check import check_regions, dciodvfy, dsrdump
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes

from medimg.image import Image
from medimg.report._dicom_common import clean_header
from medimg.report.model import Report
from medimg.report.outputs import write_report

LONG, SHORT, VOLUME = codes.SCT.LongAxis, codes.SCT.ShortAxis, codes.SCT.Volume
ATTENUATION = codes.DCM.AttenuationCoefficient


@pytest.fixture(scope="module")
def source_errors(ct_image: Image) -> set[str]:
    _, errors = dciodvfy(Path(ct_image.meta["source_paths"][0]))
    return errors


def test_dciodvfy_finds_no_new_errors(written: dict[str, Path], source_errors: set[str]) -> None:
    text, errors = dciodvfy(written["sr"])
    assert "Comprehensive3DSR" in text  # validated against the right IOD
    assert errors <= source_errors, f"errors not in the source CT: {errors - source_errors}"
    assert errors == set()  # the source's own error (Referenced Study Sequence) is not copied


def test_dsrdump_shows_the_measurements(written: dict[str, Path], ct_report: Report) -> None:
    dump = dsrdump(written["sr"])
    assert '"Imaging Measurement Report"' in dump and "(24627-2,LN,\"CT Chest\")" in dump
    f = ct_report.findings[0]
    for concept, name, unit in (("Long axis", "long_axis_diameter", "mm"), ("Short axis", "short_axis_diameter", "mm"),
                                ("Volume", "volume", "mm3"), ("Attenuation Coefficient", "mean_hu", "[hnsf'U]")):
        m = re.search(rf'NUM:\(,,"{concept}"\)="([-0-9.eE+]+)" \(([^,]+),UCUM', dump)
        assert m, f"{concept} missing from dsrdump output"
        assert float(m.group(1)) == pytest.approx(f.measurement(name).value, rel=1e-12)  # type: ignore[union-attr]
        assert m.group(2) == unit
    assert '(7771000,SCT,"Left")' in dump and '(27925004,SCT,"Nodule")' in dump


def _measurement_report(path: Path) -> hd.sr.MeasurementReport:
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    return sr.content


def _value(group, concept) -> tuple[float, str]:
    [m] = group.get_measurements(name=concept)
    return m.value, m.unit.value


def test_highdicom_reads_back_the_groups(written: dict[str, Path], ct_report: Report, ct_image: Image) -> None:
    content = _measurement_report(written["sr"])
    groups = content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(ct_report.structures)  # findings: planar groups (an image region OHIF draws)
    assert len(content.get_planar_roi_measurement_groups()) == len(ct_report.findings)
    seg = pydicom.dcmread(written["seg"], stop_before_pixels=True)

    f = ct_report.findings[0]
    [g] = content.get_planar_roi_measurement_groups(finding_type=codes.SCT.Nodule)
    assert g.finding_category == codes.SCT.MorphologicallyAbnormalStructure
    assert g.tracking_identifier.startswith("F1 nodule")
    [site] = g.finding_sites
    assert site.value == codes.SCT.Lung and site.laterality == codes.SCT.Left
    assert _value(g, LONG) == pytest.approx((f.measurement("long_axis_diameter").value, "mm"))  # type: ignore[union-attr]
    assert _value(g, SHORT) == pytest.approx((f.measurement("short_axis_diameter").value, "mm"))  # type: ignore[union-attr]
    assert _value(g, VOLUME) == pytest.approx((f.measurement("volume").value, "mm3"))  # type: ignore[union-attr]
    [mean] = g.get_measurements(name=ATTENUATION)
    assert mean.value == pytest.approx(f.measurement("mean_hu").value)  # type: ignore[union-attr]
    assert mean.unit.value == "[hnsf'U]" and mean.derivation == codes.SCT.Mean
    # The region is a box on the finding's key slice (test_finding_groups_have_an_image_region); the
    # finding is still segment 3 of seg.dcm: the same tracking UID.
    assert isinstance(g.roi, hd.sr.ImageRegion)
    seg_f1 = next(s for s in seg.SegmentSequence if s.SegmentNumber == 3)
    assert g.tracking_uid == seg_f1.TrackingUID

    for n, s in enumerate(ct_report.structures, start=1):
        [g] = [x for x in groups if x.tracking_identifier == s.name]
        assert g.finding_category == codes.SCT.AnatomicalStructure
        assert _value(g, VOLUME) == pytest.approx((s.measurements[0].value, "mL"))
        assert g.referenced_segment.referenced_segment_numbers == [n]
        series_uid = g.referenced_segment.source_series_for_segmentation.UID
        assert series_uid == ct_image.meta["series_instance_uid"]
        side = codes.SCT.Right if s.name.endswith("right") else codes.SCT.Left
        assert g.finding_sites[0].laterality == side


def test_patient_and_study_come_from_checked_headers(written: dict[str, Path], ct_image: Image) -> None:
    sr = pydicom.dcmread(written["sr"])
    src = pydicom.dcmread(ct_image.meta["source_paths"][0], stop_before_pixels=True)
    assert sr.StudyInstanceUID == src.StudyInstanceUID
    assert sr.PatientID == src.PatientID and sr.StudyDate == src.StudyDate
    assert str(sr.PatientName) == str(src.PatientName) + "^"
    assert "ReferencedStudySequence" not in sr  # the source's item lacks its SOP Class UID
    assert sr.SeriesInstanceUID != src.SeriesInstanceUID and sr.SOPInstanceUID != src.SOPInstanceUID
    evidence = {i.ReferencedSOPInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert set(ct_image.meta["sop_instance_uids"]) <= evidence
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"


def test_clean_header_drops_what_is_not_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    # Build the broken header the way a tolerant reader would hold it (no warnings while we do).
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.IGNORE)
    monkeypatch.setattr(pydicom.config.settings, "reading_validation_mode", pydicom.config.IGNORE)
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "P1"
    ds.PatientSex = "X"  # not M/F/O
    ds.PatientBirthDate = "1950-01-01"  # not DA
    ds.StudyDate = "20200101"
    ds.SliceThickness = "-5"
    ds.StudyInstanceUID = "1.2.03"  # leading zero in a component
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    ds.ReferencedStudySequence = Sequence([item])
    out = clean_header(ds)
    assert out.PatientName == "Doe^John" and out.PatientID == "P1" and out.StudyDate == "20200101"
    assert out.PatientSex == "" and out.PatientBirthDate == ""  # Type 2: kept, emptied
    assert "SliceThickness" not in out and "StudyInstanceUID" not in out
    assert "ReferencedStudySequence" not in out
    assert out.StudyTime == "" and out.AccessionNumber == ""


def test_sr_without_seg_lists_source_images(ct_report: Report, ct_image: Image, tmp_path: Path,
                                            source_errors: set[str]) -> None:
    written = write_report(ct_report, ct_image, tmp_path, formats=["sr"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.dcm"]
    _, errors = dciodvfy(written["sr"])
    assert errors <= source_errors and errors == set()
    content = _measurement_report(written["sr"])
    assert content.get_volumetric_roi_measurement_groups() == []
    groups = content.get_image_measurement_groups()
    assert len(groups) == 2  # the structures; the finding has its image region
    [s] = [x for x in groups if x.tracking_identifier == "lung_right"]
    planes = np.flatnonzero(ct_report.structures[0].mask.any(axis=(1, 2)))  # type: ignore[union-attr]
    assert ct_report.structures[0].name == "lung_right"
    assert [i.referenced_sop_instance_uid for i in s.source_images] == \
        [ct_image.meta["sop_instance_uids"][z] for z in planes]
    [g] = content.get_planar_roi_measurement_groups(finding_type=codes.SCT.Nodule)
    f = ct_report.findings[0]
    assert _value(g, LONG) == pytest.approx((f.measurement("long_axis_diameter").value, "mm"))  # type: ignore[union-attr]
    check_regions(written["sr"], {f.id: f.location.bbox_index for f in ct_report.findings},  # type: ignore[misc]
                  ct_image.meta["sop_instance_uids"])


def test_finding_groups_have_an_image_region(written: dict[str, Path], ct_report: Report, ct_image: Image) -> None:
    """What OHIF's cornerstone-dicom-sr needs to draw a finding: a 2-D SCOORD in its measurement group,
    a closed POLYLINE on one source image (Referenced SOP Sequence), inside the finding's box, on the slice
    where its mask is largest."""
    uids = ct_image.meta["sop_instance_uids"]
    regions = check_regions(written["sr"], {f.id: f.location.bbox_index for f in ct_report.findings},
                            uids)
    f = ct_report.findings[0]
    assert f.mask is not None and f.location.bbox_index is not None
    z = int(np.argmax(f.mask.sum(axis=(1, 2))))
    uid, points = regions[f.id]
    assert uid == uids[z]
    rows, cols = np.flatnonzero(f.mask[z].any(axis=1)), np.flatnonzero(f.mask[z].any(axis=0))
    # the mask's bounding box on that slice, pixel edges (column, row)
    assert points.min(axis=0).tolist() == [cols[0], rows[0]]
    assert points.max(axis=0).tolist() == [cols[-1] + 1, rows[-1] + 1]
    sr = hd.sr.srread(written["sr"])
    [g] = sr.content.get_planar_roi_measurement_groups(finding_type=codes.SCT.Nodule)
    assert g.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    assert g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPClassUID == pydicom.dcmread(
        ct_image.meta["source_paths"][0], stop_before_pixels=True).SOPClassUID
