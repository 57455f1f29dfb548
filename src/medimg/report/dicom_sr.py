"""``sr.dcm``: a DICOM Comprehensive 3D SR holding a TID 1500 Measurement Report (highdicom).

Content (one Imaging Measurement Report, LOINC "CT Chest" as the procedure for the chest CT protocol):

* observer: the device "medimg" (a stable Device Observer UID per medimg version);
* one measurement group per finding, then one per anatomical structure:

  - a finding with a location on the analysed image (mask, box or centre; the image on the source
    images' pixel grid): a **planar ROI group (TID 1410)** whose Image Region is a 2-D SCOORD, a closed
    POLYLINE (5 points) round the finding's box on its key slice -- the slice where its mask is largest,
    the box the mask's bounding box there -- in pixel coordinates (column, row; (0, 0) the top-left
    corner of the top-left pixel) of that slice's source image, which it references (SOP Class and
    Instance UID).  That is what viewers such as OHIF (cornerstone-dicom-sr) draw.  After review, an
    edited finding whose box the radiologist moved or resized gets the radiologist's box, an added one
    its box (or a square of its long axis round its centre) on the slice nearest its centre.  The
    tracking UID stays the SEG segment's, so the group still names that segment's object;
  - otherwise, with the SEG written alongside (structures, the normal case): a **volumetric ROI group
    (TID 1411)** whose region is the SEG segment of that object (Referenced Segment, with the source CT
    images the segment covers), tracking identifier and UID shared with the SEG segment;
  - without a SEG: an image-level group (TID 1501) listing the source CT images the object covers;

  each with finding category (Morphologically Abnormal Structure / Anatomical Structure), finding
  type (the finding's or structure's code), finding site (lung, with laterality), algorithm
  identification, and its measurements: long axis (SCT 103339001), short axis (SCT 103340004),
  volume (SCT 118565006), mean attenuation (DCM 112031 with derivation Mean), in UCUM units
  (``mm``, ``mm3``/``mL``, ``[hnsf'U]``).  A measurement without a standard concept gets a local
  ``99MEDIMG`` code named after it; a non-finite value is left out (SR numbers must be numbers).

* evidence: every source CT image (and the SEG); patient and study attributes from checked copies of
  the source headers (:func:`~medimg.report._dicom_common.clean_header`); the SR is marked complete,
  preliminary (computer output) and unverified.

Not carried: a finding's probability, characterisation and free-text method (report.json has them).

A report signed by a radiologist (``report.review.state == "signed"``, :mod:`medimg.report.signoff`)
becomes a verified SR: final, VerificationFlag ``VERIFIED`` with the radiologist as Verifying Observer,
the radiologist as person observer next to the device, and the review marked in every finding's
measurement group: a qualitative evaluation "Radiologist review" (local ``99MEDIMG`` codes accepted /
edited / rejected / added / not reviewed), for an edited measurement the AI's original value beside the
radiologist's (concept "AI original <name>"), no measurements for a rejected finding, and a group per
finding the radiologist added (planar, on the slice nearest its centre).  The impression stands
in a TEXT item (DCM 121073 "Impression") under "Qualitative Evaluations" (UMLS C0034375), as TID 1500
allows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ..image import Image
from ._dicom_common import (
    DEVICE,
    LOCAL_SCHEME,
    SCT_ABNORMAL_STRUCTURE,
    SCT_ANATOMICAL_STRUCTURE,
    DicomContext,
    SourceFrames,
    finding_codes,
    finding_site,
    load_sources,
    measurement_concept,
    medimg_version,
    short,
    structure_codes,
    to_code,
    tracking_keys,
    unit_code,
)
from .dicom_seg import segments_of
from .model import Code, Finding, FindingReview, Measurement, Provenance, Report, Review, Structure

__all__ = ["build_sr", "procedure_code", "write_sr"]

_PROCEDURES = {
    "chest_ct": Code("24627-2", "LN", "CT Chest"),
}
_MAX_LISTED = 16  # source images listed per segment reference; more: the source series instead
_BY_MODALITY = {"CT": Code("25045-6", "LN", "CT unspecified body region")}


def procedure_code(report: Report) -> Code:
    """The reported procedure: LOINC by protocol, else by modality."""
    if report.protocol in _PROCEDURES:
        return _PROCEDURES[report.protocol]
    return _BY_MODALITY.get(report.study.modality, Code("25045-6", "LN", "CT unspecified body region"))


def _algorithm(prov: Provenance):
    import highdicom as hd

    params = [short(f"{k}={v}") for k, v in prov.parameters.items()] or None
    return hd.sr.AlgorithmIdentification(name=short(prov.algorithm), version=short(prov.version),
                                         parameters=params)


def _measurements(items: list[Measurement]) -> list:
    import highdicom as hd

    out = []
    for m in items:
        if m.value is None or not np.isfinite(m.value):
            continue
        concept, derivation = measurement_concept(m.name, m.code)
        out.append(hd.sr.Measurement(
            name=to_code(concept), value=float(m.value), unit=to_code(unit_code(m.unit)),
            derivation=to_code(derivation) if derivation is not None else None,
        ))
    return out


def _covered_frames(mask: np.ndarray, sources: SourceFrames) -> list[Dataset]:
    """The source headers of the planes the mask touches (all planes when not aligned)."""
    if not sources.aligned:
        return sources.headers
    return [sources.headers[z] for z in np.flatnonzero(mask.any(axis=(1, 2)))]


REVIEW_CONCEPT = Code("review", LOCAL_SCHEME, "Radiologist review")
REVIEW_VALUES = {
    "ai": Code("not-reviewed", LOCAL_SCHEME, "Not reviewed (AI finding)"),
    "accepted": Code("accepted", LOCAL_SCHEME, "Accepted by radiologist"),
    "edited": Code("edited", LOCAL_SCHEME, "Edited by radiologist"),
    "rejected": Code("rejected", LOCAL_SCHEME, "Rejected by radiologist"),
    "added": Code("added", LOCAL_SCHEME, "Added by radiologist"),
}


def _reviewed_measurements(f: Finding, entry: FindingReview | None) -> tuple[list, list]:
    """(measurements, qualitative evaluations) of a reviewed finding's group."""
    import highdicom as hd

    if f.status == "rejected":
        measured: list = []
    else:
        measured = _measurements(f.measurements)
        for name, old in ((entry.original or {}) if entry is not None else {}).items():
            if isinstance(old, dict) and "value" in old and old["value"] is not None:
                label = f"AI original {name.replace('_', ' ')}"
                measured += _measurements([Measurement(name, float(old["value"]), old["unit"], "",
                                                       Code(f"ai-{name}"[:16], LOCAL_SCHEME, label))])
    status = REVIEW_VALUES.get(f.status, REVIEW_VALUES["ai"])
    evaluations = [hd.sr.QualitativeEvaluation(name=to_code(REVIEW_CONCEPT), value=to_code(status))]
    return measured, evaluations


def _group(obj: Structure | Finding, seg: Dataset | None, segment_number: int | None,
           ctx: DicomContext, sources: SourceFrames, review: Review | None = None):
    import highdicom as hd

    if isinstance(obj, Finding):
        base, side = finding_codes(obj)
        category = SCT_ABNORMAL_STRUCTURE
        site = hd.sr.FindingSite(anatomic_location=to_code(finding_site(obj)),
                                 laterality=to_code(side) if side else None)
        zone = f" {obj.location.side or ''} {obj.location.zone or ''}".rstrip()
        label = short(f"{obj.id} {obj.kind}{zone}")
        key = f"finding:{obj.id}"
    else:
        base, side = structure_codes(obj)
        category = SCT_ANATOMICAL_STRUCTURE
        site = hd.sr.FindingSite(anatomic_location=to_code(base),
                                 laterality=to_code(side) if side else None)
        label = short(obj.name)
        key = f"structure:{obj.name}"
    if key not in ctx.tracking_uids:  # e.g. a finding a radiologist added
        from highdicom import UID

        ctx.tracking_uids[key] = str(UID())
    tracking = hd.sr.TrackingIdentifier(uid=ctx.tracking_uids[key], identifier=label)
    common = {
        "tracking_identifier": tracking, "finding_type": to_code(base),
        "finding_category": to_code(category), "finding_sites": [site],
        "algorithm_id": _algorithm(obj.provenance),
        "measurements": _measurements(obj.measurements),
    }
    if review is not None and isinstance(obj, Finding):
        common["measurements"], common["qualitative_evaluations"] = _reviewed_measurements(obj, review.of(obj.id))
        if obj.status == "added":
            del common["algorithm_id"]  # measured by a person, not an algorithm
    if isinstance(obj, Finding):
        region = _key_region(obj, sources, review.of(obj.id) if review is not None else None)
        if region is not None:
            z, (y0, x0, y1, x1) = region
            h = sources.headers[z]
            # A closed polyline (5 points, last == first) round the box, in pixel coordinates (column, row)
            # of the key slice with the top-left corner of its top-left pixel at (0, 0): OHIF's
            # cornerstone-dicom-sr draws it on that image.
            outline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)
            drawn = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=outline,
                                      source_image=hd.sr.SourceImageForRegion(h.SOPClassUID, h.SOPInstanceUID))
            return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=drawn, **common)
    frames = _covered_frames(obj.mask, sources) if obj.mask is not None else _nearest_frames(obj, sources)
    if seg is not None and segment_number is not None:
        # A few images are listed one by one; a large structure refers to the source series.
        listed = len(frames) <= _MAX_LISTED
        ref = hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
            segment_number=segment_number,
            source_images=[hd.sr.SourceImageForSegmentation(h.SOPClassUID, h.SOPInstanceUID)
                           for h in frames] if listed else None,
            source_series=None if listed else hd.sr.SourceSeriesForSegmentation(
                sources.first.SeriesInstanceUID))
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=ref, **common)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        source_images=[hd.sr.SourceImageForMeasurementGroup(h.SOPClassUID, h.SOPInstanceUID)
                       for h in frames], **common)


def _key_region(f: Finding, sources: SourceFrames,
                entry: FindingReview | None) -> tuple[int, tuple[int, int, int, int]] | None:
    """A finding's key slice and its box there: ``(z, (y0, x0, y1, x1))``, ends exclusive, on the
    analysed grid (= the source images' pixel grid, which ``sources.aligned`` guarantees); ``None`` when
    the finding has no location on that grid.

    The key slice is the one where the finding's mask has the largest area (within the box, when the
    finding has one), the box the mask's bounding box there -- unless a radiologist drew the box (an
    edited finding whose box was moved or resized, or an added finding): then the box is theirs, on the
    slice of the box where the mask is largest, else the slice nearest the finding's centre.  An added
    finding with a centre but no box gets a square of its long axis round its centre."""
    if not sources.aligned or not sources.headers:
        return None
    nz = len(sources.headers)
    ny, nx = int(sources.first.Rows), int(sources.first.Columns)
    loc = f.location
    mask = f.mask if f.mask is not None and f.mask.shape == (nz, ny, nx) and f.mask.any() else None
    drawn = f.status == "added" or (f.status == "edited" and entry is not None
                                    and "bbox_patient" in (entry.original or {}))
    box = None
    if loc.bbox_index is not None:
        z0, y0, x0, z1, y1, x1 = (int(v) for v in loc.bbox_index)
        z0, y0, x0 = max(z0, 0), max(y0, 0), max(x0, 0)
        z1, y1, x1 = min(z1, nz), min(y1, ny), min(x1, nx)
        if z0 < z1 and y0 < y1 and x0 < x1:
            box = (z0, y0, x0, z1, y1, x1)

    def nearest(lo: int, hi: int) -> int:
        c = loc.centroid_index
        z = int(round(float(c[0]))) if c is not None and np.isfinite(c[0]) else (lo + hi - 1) // 2
        return min(max(z, lo), hi - 1)

    if box is not None:
        z0, y0, x0, z1, y1, x1 = box
        inside = None
        if mask is not None:
            inside = np.zeros_like(mask)
            inside[z0:z1, y0:y1, x0:x1] = mask[z0:z1, y0:y1, x0:x1]
            inside = inside if inside.any() else None
        if drawn or inside is None:
            z = int(np.argmax(inside.sum(axis=(1, 2)))) if inside is not None else nearest(z0, z1)
            return z, (y0, x0, y1, x1)
        mask = inside
    if mask is not None:
        z = int(np.argmax(mask.sum(axis=(1, 2))))
        rows = np.flatnonzero(mask[z].any(axis=1))
        cols = np.flatnonzero(mask[z].any(axis=0))
        return z, (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    c = loc.centroid_index
    if c is None or not all(np.isfinite(v) for v in c):
        return None
    z = int(round(float(c[0])))
    if not 0 <= z < nz:
        return None
    size = f.measurement("long_axis_diameter")
    spacing = [float(v) for v in sources.first.PixelSpacing]  # row, column spacing (mm)
    diameter = float(size.value) if size is not None and np.isfinite(size.value) and size.value > 0 else 0.0
    half_r, half_c = max(diameter / 2 / spacing[0], 0.5), max(diameter / 2 / spacing[1], 0.5)
    cy, cx = float(c[1]) + 0.5, float(c[2]) + 0.5  # the centre of the centre pixel
    y0, y1 = max(int(np.floor(cy - half_r)), 0), min(int(np.ceil(cy + half_r)), ny)
    x0, x1 = max(int(np.floor(cx - half_c)), 0), min(int(np.ceil(cx + half_c)), nx)
    if y0 >= y1 or x0 >= x1:
        return None
    return z, (y0, x0, y1, x1)


def _nearest_frames(obj: Structure | Finding, sources: SourceFrames) -> list[Dataset]:
    """The source image through a mask-less finding's centre (all images when that is unknown)."""
    if isinstance(obj, Finding) and sources.aligned and obj.location.centroid_index is not None:
        z = int(round(obj.location.centroid_index[0]))
        if 0 <= z < len(sources.headers):
            return [sources.headers[z]]
    return sources.headers


def _person_name(name: str) -> str:
    """A display name as a DICOM PN value (one family-name component unless it already has carets)."""
    clean = "".join(ch for ch in name if ch >= " " and ch not in "\\=")
    return clean[:64] if "^" in clean else f"{clean[:63]}^"


def _impression_item(text: str) -> Dataset:
    import highdicom as hd
    from pydicom.sr.coding import Code as PydicomCode

    container = hd.sr.ContainerContentItem(
        name=PydicomCode("C0034375", "UMLS", "Qualitative Evaluations"),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence([hd.sr.TextContentItem(
        name=PydicomCode("121073", "DCM", "Impression"), value=text[:10240],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)])
    return container


def build_sr(report: Report, image: Image, seg: Dataset | None = None, ctx: DicomContext | None = None,
             sources: SourceFrames | None = None) -> Dataset:
    """The highdicom ``Comprehensive3DSR`` of ``report``; ``seg`` is the SEG its groups point into."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if report.status != "complete":
        msg = "sr.dcm: the analysis was refused, so nothing was measured; do not request sr"
        raise ValueError(msg)
    if ctx is None:
        ctx = DicomContext.new(tracking_keys(report.structures, report.findings))
    if sources is None:
        sources = load_sources(image, "sr.dcm")
    numbers: dict[int, int] = {}
    if seg is not None:
        numbers = {id(obj): n for n, obj in enumerate(segments_of(report), start=1)}
    groups = []
    objects: list[Structure | Finding] = [*report.findings, *report.structures]
    review = report.review
    signed = review is not None and review.state == "signed"
    for obj in objects:
        groups.append(_group(obj, seg, numbers.get(id(obj)), ctx, sources, review))
    version = medimg_version()
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["medimg device observer", version]),
            name="medimg", manufacturer_name=DEVICE.manufacturer, model_name=DEVICE.model_name))
    person = None
    if signed:
        assert review is not None
        person = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=_person_name(review.signed_by_name or review.signed_by), login_name=short(review.signed_by),
                organization_name=DEVICE.manufacturer))
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person,
                                                     observer_device_context=observer),
        procedure_reported=to_code(procedure_code(report)),
        imaging_measurements=groups or None,
    )
    if review is not None and report.impression:
        content[0].ContentSequence.append(_impression_item(report.impression))
    evidence = list(sources.headers) + ([seg] if seg is not None else [])
    verification: dict = {}
    if signed:
        assert review is not None
        verification = {"verifying_observer_name": _person_name(review.signed_by_name or review.signed_by),
                        "verifying_organization": DEVICE.manufacturer}
    local = hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME, name="medimg measurement names", responsible_organization="medimg")
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=content[0],
        series_instance_uid=ctx.sr_series_uid, series_number=ctx.sr_series_number,
        sop_instance_uid=ctx.sr_sop_uid, instance_number=1,
        manufacturer=DEVICE.manufacturer, is_complete=True, is_final=signed, is_verified=signed,
        series_description=short(f"medimg {report.protocol} measurements"
                                 + (f", signed by {review.signed_by}" if signed and review else "")),
        manufacturer_model_name=DEVICE.model_name, software_versions=version,
        device_serial_number=DEVICE.serial_number, coding_schemes=[local], **verification,
    )
    if signed and review is not None and review.signed_at and "VerifyingObserverSequence" in sr:
        import datetime as _dt

        at = _dt.datetime.fromisoformat(review.signed_at)
        sr.VerifyingObserverSequence[0].VerificationDateTime = at.strftime("%Y%m%d%H%M%S+0000")
    return sr


def write_sr(report: Report, image: Image, path: str | Path, seg: Dataset | None = None,
             ctx: DicomContext | None = None, sources: SourceFrames | None = None) -> Path:
    """Write ``sr.dcm`` to ``path`` (not atomic: :func:`write_report` is)."""
    target = Path(path)
    build_sr(report, image, seg, ctx, sources).save_as(target, enforce_file_format=True)
    return target
