"""seg.dcm: one binary segment per structure and per finding, on the source CT frames, valid DICOM."""

from __future__ import annotations

import copy
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_check import dciodvfy
from pydicom.sr.codedict import codes

from medimg.image import Image
from medimg.report.model import Report
from medimg.report.outputs import write_report


@pytest.fixture(scope="module")
def seg(written: dict[str, Path]) -> hd.seg.Segmentation:
    return hd.seg.segread(written["seg"])


def test_dciodvfy_finds_no_new_errors(written: dict[str, Path], ct_image: Image) -> None:
    _, source_errors = dciodvfy(Path(ct_image.meta["source_paths"][0]))
    text, errors = dciodvfy(written["seg"])
    assert "Segmentation" in text
    assert errors <= source_errors, f"errors not in the source CT: {errors - source_errors}"
    assert errors == set()


def test_one_segment_per_structure_and_finding(seg: hd.seg.Segmentation, ct_report: Report) -> None:
    assert seg.SegmentationType == "BINARY"
    assert seg.number_of_segments == len(ct_report.structures) + len(ct_report.findings) == 3
    descs = {d.SegmentNumber: d for d in seg.SegmentSequence}
    for n, s in enumerate(ct_report.structures, start=1):
        d = descs[n]
        assert d.SegmentLabel == s.name
        assert d.SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes.SCT.AnatomicalStructure.value
        t = d.SegmentedPropertyTypeCodeSequence[0]
        assert (t.CodeValue, t.CodingSchemeDesignator) == (codes.SCT.Lung.value, "SCT")
        side = codes.SCT.Right if s.name.endswith("right") else codes.SCT.Left
        assert t.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == side.value
        assert d.SegmentAlgorithmType == "AUTOMATIC"
    d = descs[3]
    assert d.SegmentLabel == "F1 nodule" and d.TrackingID == "F1"
    # A reader tells the lesion from anatomy by its category.
    assert d.SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes.SCT.MorphologicallyAbnormalStructure.value
    assert d.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Nodule.value
    assert d.AnatomicRegionSequence[0].CodeValue == codes.SCT.Lung.value


def test_segment_pixels_equal_the_masks_on_the_source_frames(seg: hd.seg.Segmentation, ct_report: Report,
                                                             ct_image: Image) -> None:
    uids = ct_image.meta["sop_instance_uids"]
    got = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 3], assert_missing_frames_are_empty=True)
    assert got.shape == (*ct_image.spatial_shape, 3)
    masks = [s.mask for s in ct_report.structures] + [f.mask for f in ct_report.findings]
    for k, mask in enumerate(masks):
        assert np.array_equal(got[..., k].astype(bool), mask), f"segment {k + 1} differs from its mask"
    # Only frames holding a segment are stored.
    assert seg.NumberOfFrames == sum(int(m.any(axis=(1, 2)).sum()) for m in masks)  # type: ignore[union-attr]


def test_frames_point_at_the_right_source_images(written: dict[str, Path], ct_report: Report,
                                                  ct_image: Image) -> None:
    ds = pydicom.dcmread(written["seg"])
    finding = ct_report.findings[0].mask
    planes = set(np.flatnonzero(finding.any(axis=(1, 2))))  # type: ignore[union-attr]
    uids = ct_image.meta["sop_instance_uids"]
    seen = set()
    for frame in ds.PerFrameFunctionalGroupsSequence:
        if frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber != 3:
            continue
        src = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z = uids.index(src)
        pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(pos, ct_image.index_to_patient([z, 0, 0]), atol=1e-3)
        seen.add(z)
    assert seen == planes


def test_seg_of_a_cropped_image_keeps_its_positions(ct_report: Report, ct_image: Image, tmp_path: Path) -> None:
    # A grid that is not the source's (here a crop): frames carry their own positions, same frame of reference.
    finding = ct_report.findings[0]
    z0, y0, x0, z1, y1, x1 = finding.location.bbox_index  # type: ignore[misc]
    box = (slice(z0 - 1, z1 + 1), slice(y0 - 20, y1 + 20), slice(x0 - 20, x1 + 20))
    crop = ct_image.replace(array=ct_image.array[box],
                            origin=ct_image.index_to_patient([b.start for b in box]))
    crop.meta["sop_instance_uids"] = ct_image.meta["sop_instance_uids"][box[0]]
    small = copy.copy(ct_report)
    small.structures = []
    small.findings = [copy.copy(finding)]
    small.findings[0].mask = finding.mask[box]  # type: ignore[index]
    written = write_report(small, crop, tmp_path, formats=["seg"])
    _, errors = dciodvfy(written["seg"])
    assert errors == set()
    out = hd.seg.segread(written["seg"])
    ds = pydicom.dcmread(written["seg"])
    assert (ds.Rows, ds.Columns) == crop.spatial_shape[1:]
    assert ds.FrameOfReferenceUID == ct_image.meta["frame_of_reference_uid"]
    mask = small.findings[0].mask
    planes = set(np.flatnonzero(mask.any(axis=(1, 2))))  # type: ignore[union-attr]
    seen = set()
    for number, frame in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
        pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        z = int(round(crop.patient_to_index(pos)[0]))
        assert np.allclose(pos, crop.index_to_patient([z, 0, 0]), atol=1e-3)  # on the crop's grid
        assert np.array_equal(out.get_stored_frame(number).astype(bool), mask[z])  # type: ignore[index]
        seen.add(z)
    assert seen == planes
    referenced = {i.ReferencedSOPInstanceUID for se in ds.ReferencedSeriesSequence for i in se.ReferencedInstanceSequence}
    assert referenced == set(crop.meta["sop_instance_uids"])
