"""Retinal fundus: input check -> quality -> field of view -> vessel map (U-Net) -> vessel measures
-> report.

Takes one colour fundus photograph (DICOM OP/XC, or a PNG/JPEG/TIFF with ``modality="OP"``).  The
field of view is found classically (or given as ``fov=`` mask); the vessel map comes from the shipped
``retina-vessels`` model (docs/models/retina-vessels.md: trained on DRIVE, sliding-window
inference), thresholded at its operating point; density and tortuosity are measured inside the field
of view (:mod:`medimg.quantify.vessels`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..report.model import Code, Measurement, Provenance, Structure
from .learned import _version, check_quality, output_dir, record

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import Case

__all__ = ["STEPS", "check_input", "field_of_view", "quality", "report", "vessels"]

PROTOCOL = "retina"
MODALITIES = ("OP", "XC")
VESSELS = Code("181160009", "SCT", "Structure of retinal blood vessel")


def check_input(case: Case) -> Case:
    assert case.image is not None
    img = case.image
    if img.modality not in MODALITIES:
        return case.stop("input", f"modality {img.modality} is not a fundus photograph "
                                  f"({'/'.join(MODALITIES)}); for an image file pass modality OP")
    if img.spatial_shape[0] != 1 or img.array.ndim != 4:
        return case.stop("input", f"shape {img.shape}: a fundus photograph is one 2-D colour image")
    record(case, PROTOCOL, "check_input", shape=list(img.shape))
    return case


def quality(case: Case) -> Case:
    return check_quality(case, PROTOCOL, PROTOCOL, "fundus")


def field_of_view(case: Case) -> Case:
    from ..quantify.vessels import field_of_view as fov_of

    assert case.image is not None
    given = case.notes.get("fov")
    fov = np.asarray(given, dtype=bool) if given is not None else fov_of(case.image.array[0])
    if fov.shape != case.image.array.shape[1:3]:
        return case.stop("input", f"the field-of-view mask is {fov.shape}, the image "
                                  f"{case.image.array.shape[1:3]}")
    case.notes["fov_mask"] = fov
    record(case, PROTOCOL, "field_of_view", source="given" if given is not None else "classical",
           fraction=round(float(fov.mean()), 4))
    if fov.mean() < 0.2:
        case.stop("input", f"the field of view covers {fov.mean():.0%} of the image; this does not "
                           "look like a fundus photograph")
    return case


def vessels(case: Case) -> Case:
    from PIL import Image as PILImage

    from ..models import load
    from ..models.contract import prepare
    from ..quantify.vessels import vessel_measures

    assert case.image is not None
    model = load("retina-vessels")
    arr = model.contract.check_image(case.image, case.study.source or "image")
    prob = model.segment_proba(prepare(arr, model.contract))
    fov = case.notes["fov_mask"]
    vmask = (prob >= model.threshold) & fov
    m = vessel_measures(vmask, fov)
    out = output_dir(case)
    prob_png = out / "vessel_probability.png"
    PILImage.fromarray((np.clip(prob * fov, 0, 1) * 255).astype(np.uint8)).save(prob_png)
    known = "source_format" not in case.image.meta
    ms = [Measurement("vessel_density", m.density, "1", "vessel pixels / field-of-view pixels"),
          Measurement("tortuosity_mean", m.tortuosity_mean, "1",
                      f"length-weighted mean arc/chord of {m.segments} centre-line segments >= 20 px"),
          Measurement("tortuosity_median", m.tortuosity_median, "1", "median arc/chord of the same segments"),
          Measurement("centreline_length", m.skeleton_length_px * (float(case.image.spacing[2]) if known else 1.0),
                      "mm" if known else "{pixel}", "skeleton length (orthogonal steps 1, diagonal sqrt 2)"),
          Measurement("field_of_view_fraction", float(fov.mean()), "1", "field-of-view pixels / image pixels")]
    case.structures.append(Structure(
        "retinal_vessels", VESSELS, ms,
        Provenance(f"medimg.models.{model.name}", _version(),
                   {"threshold": model.threshold, "roi_size": model.info.get("roi_size"),
                    "probability_map": str(prob_png)}, model_card=model.card_path),
        mask=vmask[None]))
    case.notes["vessel_probability"] = prob
    record(case, PROTOCOL, "vessels", model=model.name, threshold=round(model.threshold, 4),
           density=round(m.density, 4), tortuosity=round(m.tortuosity_mean, 4))
    return case


def report(case: Case) -> Case:
    s = next((s for s in case.structures if s.name == "retinal_vessels"), None)
    if s is not None:
        d = {m.name: m.value for m in s.measurements}
        case.impression = (f"Retinal vessels segmented inside the field of view: density "
                           f"{d['vessel_density']:.3f}, tortuosity (arc/chord, length-weighted) "
                           f"{d['tortuosity_mean']:.3f}. Measures for review; not a diagnosis.")
    record(case, PROTOCOL, "report", structures=len(case.structures))
    return case


STEPS: list[Callable[[Case], Case]] = [check_input, quality, field_of_view, vessels, report]
