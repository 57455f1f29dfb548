"""Chest X-ray: input check -> quality -> lung fields -> pneumonia probability (with Grad-CAM) ->
report.

Takes one frontal chest radiograph: a DICOM CR/DX image, or a photograph or export of one (PNG/JPEG;
give ``modality="DX"`` to :func:`medimg.protocols.learned.analyze_image`; colour is converted to grey
and the conversion recorded).  The lung fields are found classically (:mod:`medimg.segment.cxr`);
the pneumonia probability comes from the shipped ``cxr-pneumonia`` model (docs/models/cxr-pneumonia.md:
28x28 input, trained on paediatric PneumoniaMNIST), with the operating point chosen on its
validation split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..report.model import Code, Measurement, Provenance, Structure, Triage
from .learned import _version, check_quality, classify, record, to_grey

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import Case

__all__ = ["STEPS", "check_input", "lung_fields", "pneumonia", "quality", "report"]

PROTOCOL = "chest_xray"
MODALITIES = ("CR", "DX", "DR")
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
LUNG_CODES = {"lung_right": Code("3341006", "SCT", "Right lung"),
              "lung_left": Code("44029006", "SCT", "Left lung")}
MIN_LUNG_FRACTION = 0.03


def check_input(case: Case) -> Case:
    """One 2-D radiograph (CR/DX); colour photographs are converted to grey."""
    assert case.image is not None
    img = case.image
    if img.modality not in MODALITIES:
        return case.stop("input", f"modality {img.modality} is not a radiograph "
                                  f"({'/'.join(MODALITIES)}); for a photograph of one pass modality DX")
    if img.spatial_shape[0] != 1:
        return case.stop("input", f"{img.spatial_shape[0]} frames/slices; a chest X-ray is one 2-D image")
    if img.array.ndim == 4:
        case.image = to_grey(img)
    record(case, PROTOCOL, "check_input", modality=img.modality, shape=list(img.shape),
           converted_to_grey=img.array.ndim == 4)
    return case


def quality(case: Case) -> Case:
    return check_quality(case, PROTOCOL, PROTOCOL, "chest X-ray")


def lung_fields(case: Case) -> Case:
    """Classical lung fields; their areas (mm2 when the pixel spacing is known)."""
    from ..segment.cxr import lung_fields as segment

    assert case.image is not None
    img = case.image
    fields = segment(img.array[0])
    known = bool(img.meta.get("pixel_spacing_known", True)) and "source_format" not in img.meta
    px_area = float(img.spacing[1] * img.spacing[2])
    for name, mask in (("lung_right", fields.right), ("lung_left", fields.left)):
        n = int(mask.sum())
        ms = [Measurement("area_fraction", n / mask.size, "1", "share of the image's pixels")]
        if known:
            ms.append(Measurement("area", n * px_area, "mm2", "pixel count x pixel area"))
        case.structures.append(Structure(name, LUNG_CODES[name], ms,
                                         Provenance("medimg.segment.cxr.lung_fields", _version(),
                                                    {"threshold": fields.threshold}),
                                         mask=mask[None]))
    case.segmentation = fields
    found = float(fields.mask.mean()) >= MIN_LUNG_FRACTION
    case.notes["lungs_found"] = found
    record(case, PROTOCOL, "lung_fields", lung_fraction=round(float(fields.mask.mean()), 4),
           found=found, method="classical (Otsu, border air removed, two largest regions)")
    return case


def pneumonia(case: Case) -> Case:
    """Pneumonia probability and heatmap; how much of the heatmap lies in the lung fields (if found)."""
    assert case.image is not None
    fields = case.segmentation if case.notes.get("lungs_found") else None
    classify(case, PROTOCOL, "cxr-pneumonia", "pneumonia", PNEUMONIA, case.image,
             words=("pneumonia suspected", "pneumonia not suspected"),
             caveat="28x28 model trained on paediatric chest X-rays (PneumoniaMNIST); not for diagnosis",
             region=("lung_fields", fields.mask) if fields is not None else None)
    return case


def report(case: Case) -> Case:
    f = next((f for f in case.findings if f.kind == "pneumonia"), None)
    lines = []
    if not case.notes.get("lungs_found", True):
        lines.append("The lung fields could not be found by the classical method; check the image.")
    if f is not None:
        thr = f.measurement("operating_point")
        lines.append(f"Pneumonia probability {f.probability:.2f} (operating point "
                     f"{thr.value if thr else float('nan'):.2f}): {f.characterisation['call']}; "
                     f"Grad-CAM heatmap attached.")
        if f.characterisation.get("explanation_caveat"):
            lines.append(f"Heatmap: {f.characterisation['explanation_caveat']}.")
        positive = f.characterisation["call"] == "pneumonia suspected"
        case.triage = Triage("soon" if positive else "routine",
                             "software suspects pneumonia" if positive else "no pneumonia suspected by software")
    if case.quality is not None and case.quality.verdict == "warn":
        lines.append("Image quality warnings: " + "; ".join(
            f"{c.name}: {c.reason}" for c in case.quality.problems) + ".")
    case.impression = " ".join(lines)
    record(case, PROTOCOL, "report", findings=len(case.findings))
    return case


STEPS: list[Callable[[Case], Case]] = [check_input, quality, lung_fields, pneumonia, report]
