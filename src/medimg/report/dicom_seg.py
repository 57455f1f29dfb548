"""``seg.dcm``: a DICOM Segmentation (highdicom) of the report's structures and findings.

* BINARY, one segment per :class:`~medimg.report.model.Structure` with a mask, then one per
  :class:`~medimg.report.model.Finding` with a mask, numbered from 1 in that order.
* Anatomy: category SCT 91723000 "Anatomical Structure", type the structure's SNOMED CT code (a "left
  lung"/"right lung" concept is written the way DICOM prefers: Lung + a Left/Right type modifier).
* Findings: category SCT 49755003 "Morphologically Abnormal Structure", type the finding's code
  (Nodule, Mass, or Lesion by default), anatomic region Lung with the side as a modifier -- so a
  reader can tell lesions from anatomy by the category alone.
* Each segment's Tracking ID is the structure's name / the finding's id and its Tracking UID is the one
  the SR uses for the same object.
* Aligned with the source frames: when the analysed image is the source series' own grid, frame ``z``
  of a segment refers to source image ``meta["sop_instance_uids"][z]`` (Derivation Image Sequence);
  otherwise (a resampled or cropped image) the planes are written with their own positions in the
  same Frame of Reference.  Only frames that contain a segment are stored (highdicom's
  ``omit_empty_frames``), which keeps both the file and the writing time small.
* Patient and study attributes come from :func:`~medimg.report._dicom_common.clean_header`, never
  verbatim from the source files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ..image import Image
from ._dicom_common import (
    DEVICE,
    SCT_ABNORMAL_STRUCTURE,
    SCT_ANATOMICAL_STRUCTURE,
    DicomContext,
    SourceFrames,
    algorithm_parameters,
    finding_codes,
    finding_site,
    load_sources,
    medimg_version,
    short,
    structure_codes,
    to_code,
    tracking_keys,
)
from .model import Finding, Provenance, Report, Structure
from .render import FINDING_COLOUR, STRUCTURE_COLOURS

__all__ = ["build_segmentation", "segments_of", "write_seg"]


def segments_of(report: Report) -> list[Structure | Finding]:
    """The objects that become segments, in segment-number order (structures, then findings)."""
    items: list[Structure | Finding] = [s for s in report.structures if s.mask is not None and s.mask.any()]
    items += [f for f in report.findings if f.mask is not None and f.mask.any()]
    return items


def _algorithm(prov: Provenance):  # -> highdicom AlgorithmIdentificationSequence
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(
        name=short(prov.algorithm), family=codes.cid7162.ArtificialIntelligence,
        version=short(prov.version), source="medimg",
        parameters=algorithm_parameters(prov.parameters) or None,
    )


def _colour(rgb: tuple[int, int, int]):  # -> highdicom CIELabColor
    import highdicom as hd

    return hd.color.CIELabColor.from_rgb(*rgb)


def _modifier(item: Dataset, sequence: str, code) -> None:
    """Add a laterality modifier (a nested code sequence) to a segment description's code item."""
    import highdicom as hd

    item_ds = getattr(item, sequence)[0]
    setattr(item_ds, sequence.replace("CodeSequence", "ModifierCodeSequence"), [hd.sr.CodedConcept(
        code.value, code.scheme, code.meaning)])


def _descriptions(report: Report, items: list[Structure | Finding], ctx: DicomContext) -> list:
    import highdicom as hd

    out = []
    colour_index = {id(s): i for i, s in enumerate(report.structures)}  # same colours as the key images
    for number, obj in enumerate(items, start=1):
        if isinstance(obj, Structure):
            base, side = structure_codes(obj)
            i = colour_index[id(obj)]
            desc = hd.seg.SegmentDescription(
                segment_number=number, segment_label=short(obj.name),
                segmented_property_category=to_code(SCT_ANATOMICAL_STRUCTURE),
                segmented_property_type=to_code(base),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=_algorithm(obj.provenance),
                tracking_id=short(obj.name), tracking_uid=ctx.tracking_uids[f"structure:{obj.name}"],
                display_color=_colour(STRUCTURE_COLOURS[i % len(STRUCTURE_COLOURS)]),
            )
            if side is not None:
                _modifier(desc, "SegmentedPropertyTypeCodeSequence", side)
        else:
            base, side = finding_codes(obj)
            desc = hd.seg.SegmentDescription(
                segment_number=number, segment_label=short(f"{obj.id} {obj.kind}"),
                segmented_property_category=to_code(SCT_ABNORMAL_STRUCTURE),
                segmented_property_type=to_code(base),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=_algorithm(obj.provenance),
                tracking_id=short(obj.id), tracking_uid=ctx.tracking_uids[f"finding:{obj.id}"],
                anatomic_regions=[to_code(finding_site(obj))],
                display_color=_colour(FINDING_COLOUR),
            )
            if side is not None:
                _modifier(desc, "AnatomicRegionSequence", side)
        out.append(desc)
    return out


def _plane_geometry(image: Image) -> dict:
    """Plane positions, orientation and pixel measures of the analysed image (non-aligned case)."""
    import highdicom as hd

    nz = image.spatial_shape[0]
    positions = [hd.PlanePositionSequence(
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        image_position=[float(v) for v in image.index_to_patient([z, 0, 0])]) for z in range(nz)]
    orientation = hd.PlaneOrientationSequence(
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        image_orientation=[float(v) for v in (*image.direction[:, 2], *image.direction[:, 1])])
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=[float(image.spacing[1]), float(image.spacing[2])],
        slice_thickness=float(image.spacing[0]), spacing_between_slices=float(image.spacing[0]))
    return {"plane_positions": positions, "plane_orientation": orientation, "pixel_measures": measures}


def build_segmentation(report: Report, image: Image, ctx: DicomContext | None = None,
                       sources: SourceFrames | None = None) -> Dataset:
    """The highdicom ``Segmentation`` of ``report`` (raises ``ValueError`` when there is nothing to store)."""
    import highdicom as hd

    items = segments_of(report)
    if report.status != "complete":
        msg = "seg.dcm: the analysis was refused, so there is nothing segmented to store; do not request seg"
        raise ValueError(msg)
    if not items:
        msg = "seg.dcm: no structure or finding of the report has a mask; nothing to store"
        raise ValueError(msg)
    shape = image.spatial_shape
    for obj in items:
        assert obj.mask is not None
        if obj.mask.shape != shape:
            name = obj.name if isinstance(obj, Structure) else obj.id
            msg = f"seg.dcm: the mask of {name} has shape {obj.mask.shape}, the image {shape}; masks must lie on the image grid"
            raise ValueError(msg)
    if ctx is None:
        ctx = DicomContext.new(tracking_keys(report.structures, report.findings))
    if sources is None:
        sources = load_sources(image, "seg.dcm")
    pixels = np.zeros((*shape, len(items)), dtype=np.uint8)
    for k, obj in enumerate(items):
        assert obj.mask is not None
        pixels[..., k] = obj.mask
    geometry = {} if sources.aligned else _plane_geometry(image)
    seg = hd.seg.Segmentation(
        source_images=sources.headers,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_descriptions(report, items, ctx),
        series_instance_uid=ctx.seg_series_uid, series_number=ctx.seg_series_number,
        sop_instance_uid=ctx.seg_sop_uid, instance_number=1,
        manufacturer=DEVICE.manufacturer, manufacturer_model_name=DEVICE.model_name,
        software_versions=medimg_version(), device_serial_number=DEVICE.serial_number,
        content_label="MEDIMG", content_description=short(f"{report.protocol} segmentation"),
        series_description=short(f"medimg {report.protocol} segmentation"),
        omit_empty_frames=True, **geometry,
    )
    return seg


def write_seg(report: Report, image: Image, path: str | Path, ctx: DicomContext | None = None,
              sources: SourceFrames | None = None) -> Path:
    """Write ``seg.dcm`` to ``path`` (not atomic: :func:`write_report` is)."""
    target = Path(path)
    build_segmentation(report, image, ctx, sources).save_as(target, enforce_file_format=True)
    return target
