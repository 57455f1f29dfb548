"""Breast ultrasound: input check -> quality -> malignancy probability (with Grad-CAM) -> report.

Takes one 2-D ultrasound image (DICOM US, or a PNG/JPEG export with ``modality="US"``); colour is
converted to grey and recorded.  The shipped ``us-breast`` model (docs/models/us-breast.md) was
trained on 28x28 BreastMNIST images, which are whole ultrasound images reduced to 28x28; a region of
interest can be given as ``roi=(y0, x0, y1, x1)`` to :func:`medimg.protocols.learned.analyze_image`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..report.model import Code, Triage
from .learned import check_quality, classify, record, to_grey

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import Case

__all__ = ["STEPS", "check_input", "malignancy", "quality", "report"]

PROTOCOL = "breast_us"
MALIGNANT = Code("254837009", "SCT", "Malignant neoplasm of breast")


def check_input(case: Case) -> Case:
    assert case.image is not None
    img = case.image
    if img.modality != "US":
        return case.stop("input", f"modality {img.modality} is not ultrasound (US); for an exported "
                                  "ultrasound image pass modality US")
    if img.spatial_shape[0] != 1:
        return case.stop("input", f"{img.spatial_shape[0]} frames; choose one frame of the cine "
                                  "(medimg.io.read(path, frame=...))")
    if img.array.ndim == 4:
        case.image = to_grey(img)
    record(case, PROTOCOL, "check_input", shape=list(img.shape), converted_to_grey=img.array.ndim == 4)
    return case


def quality(case: Case) -> Case:
    # no quality protocol for breast ultrasound: the checks for the image's kind only
    return check_quality(case, PROTOCOL, None, "ultrasound")


def malignancy(case: Case) -> Case:
    assert case.image is not None
    roi = case.notes.get("roi")
    classify(case, PROTOCOL, "us-breast", "breast_lesion_malignancy", MALIGNANT, case.image,
             words=("malignancy suspected", "malignancy not suspected"),
             roi=tuple(roi) if roi else None,
             caveat="28x28 model trained on BreastMNIST (one public dataset); not for diagnosis")
    return case


def report(case: Case) -> Case:
    f = next((f for f in case.findings if f.kind == "breast_lesion_malignancy"), None)
    if f is not None:
        thr = f.measurement("operating_point")
        case.impression = (f"Malignancy probability {f.probability:.2f} (operating point "
                           f"{thr.value if thr else float('nan'):.2f}): {f.characterisation['call']}; "
                           "Grad-CAM heatmap attached.")
        pos = f.characterisation["call"] == "malignancy suspected"
        case.triage = Triage("soon" if pos else "routine",
                             "software suspects malignancy" if pos else "no malignancy suspected by software")
    record(case, PROTOCOL, "report", findings=len(case.findings))
    return case


STEPS: list[Callable[[Case], Case]] = [check_input, quality, malignancy, report]
