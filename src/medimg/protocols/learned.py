"""Shared pieces of the 2-D protocols that use learned models (chest X-ray, breast ultrasound,
retina): running one on an image file or an Image, and a classification step that adds a
:class:`~medimg.report.model.Finding` with the calibrated probability, the operating point used and
a Grad-CAM heatmap as evidence.

These protocols take one 2-D image (a DICOM CR/DX/US/OP file, or a PNG/JPEG/TIFF photograph); they
are run with :func:`analyze_image` (``medimg.protocols.learned.analyze_image(path, "chest_xray")``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..report.model import Code, Finding, Location, Measurement, Provenance

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Image
    from ..pipeline import Case
    from ..report.model import Report

__all__ = ["MIN_HEAT_SHARE", "analyze_image", "classify", "heat_share", "record", "to_grey"]


def _version() -> str:
    from .. import __version__

    return __version__


def record(case: Case, protocol: str, name: str, **parameters: Any) -> None:
    case.steps.append(Provenance(f"medimg.protocols.{protocol}.{name}", _version(), parameters))


def to_grey(image: Image) -> Image:
    """An RGB image as one luminance channel (ITU-R BT.601 weights), recorded in its history."""
    if image.array.ndim != 4:
        return image
    rgb = image.array[..., :3].astype(np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if image.array.dtype == np.uint8:
        grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
    return image.replace(array=grey).with_step("to_grey", weights="BT.601")


def check_quality(case: Case, protocol: str, quality_protocol: str | None, what: str) -> Case:
    """The quality step of a 2-D protocol: assess, record, and stop the case on a failure.

    ``quality_protocol`` is the :mod:`medimg.quality` protocol to check against (None: checks for
    the image's kind only); ``what`` names the image in the stop reason ("chest X-ray", ...).
    """
    from ..quality import assess

    assert case.image is not None
    case.quality = assess(case.image, protocol=quality_protocol)
    record(case, protocol, "quality", verdict=case.quality.verdict)
    if case.quality.verdict == "fail":
        failed = "; ".join(f"{c.name}: {c.reason}" for c in case.quality.checks if c.status == "fail")
        case.stop("quality", f"the image failed the {what} quality check ({failed})")
    return case


def output_dir(case: Case) -> Path:
    """Where evidence images go: ``case.notes["output_dir"]`` or a fresh temporary folder."""
    d = case.notes.get("output_dir")
    if not d:
        d = tempfile.mkdtemp(prefix="medimg-evidence-")
        case.notes["output_dir"] = d
    p = Path(d)
    p.mkdir(parents=True, exist_ok=True)
    return p


MIN_HEAT_SHARE = 0.5  # below this share of the heatmap inside the finding's anatomy, say so


def heat_share(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of a heatmap's mass (resampled to ``mask``'s grid) inside ``mask``; 0 for an empty map."""
    from ..models.explain import heatmap_for_image

    h = np.clip(heatmap_for_image(heat, mask.shape), 0, None)
    total = float(h.sum())
    return float(h[mask.astype(bool)].sum()) / total if total > 0 else 0.0


def classify(case: Case, protocol: str, model_name: str, kind: str, code: Code,
             image: Image, *, words: tuple[str, str], roi: tuple[int, int, int, int] | None = None,
             caveat: str = "", region: tuple[str, np.ndarray] | None = None) -> Finding:
    """Apply a shipped classifier to ``image`` and add a finding with probability and heatmap.

    ``words``: how to say the call above and below the operating point. ``region``: (name, mask on
    the image's grid) of the anatomy the finding is about; the share of the heatmap inside it is
    measured, and below :data:`MIN_HEAT_SHARE` the finding says the model's evidence lies elsewhere.
    """
    from ..models import load
    from ..models.explain import evidence_entry, gradcam, save_overlay

    model = load(model_name)
    arr = model.contract.check_image(image, case.study.source or "image")
    if roi is not None:
        y0, x0, y1, x1 = roi
        arr = arr[y0:y1, x0:x1]
        model.contract.check_array(arr, f"{case.study.source or 'image'} (region {roi})")
    from ..models.contract import prepare

    x = prepare(arr, model.contract)
    prob = float(model.positive_proba(x[None])[0])
    heat = gradcam(model, x)
    path = save_overlay(arr, heat, output_dir(case) / f"{kind}_gradcam.png")
    positive = prob >= model.threshold
    extra: list[Measurement] = []
    explanation_caveat = ""
    if region is not None and roi is None and region[1].shape == arr.shape[:2]:
        share = heat_share(heat, region[1])
        where = region[0].replace("_", " ")
        extra.append(Measurement(f"gradcam_share_in_{region[0]}", share, "1",
                                 f"share of the Grad-CAM heatmap's mass inside the {where}"))
        if share < MIN_HEAT_SHARE:
            explanation_caveat = (f"{100 * (1 - share):.0f}% of the heatmap lies outside the {where}: "
                                  "the probability may rest on cues outside them")
    op = model.info.get("operating_point", {})
    val = model.info.get("val_metrics", {})
    params = {"model": model.name, "threshold": model.threshold, "temperature": model.temperature,
              "operating_point_rule": op.get("rule"), "operating_point_chosen_on": op.get("chosen_on"),
              "validation_sensitivity": val.get("sensitivity"),
              "validation_specificity": val.get("specificity"), "input_size": list(model.contract.size or ()),
              "roi": list(roi) if roi else None, "test_time_augmentation": model.tta}
    finding = Finding(
        id=f"{kind}-1", kind=kind, code=code,
        location=Location(bbox_index=(0, roi[0], roi[1], 1, roi[2], roi[3]) if roi else None),
        measurements=[
            Measurement(f"{kind}_probability", prob, "1",
                        f"calibrated ensemble probability of model {model.name} "
                        f"(temperature {model.temperature:.3f} fitted on "
                        f"{'out-of-fold predictions' if model.info.get('folds') else 'validation data'}"
                        f"{', test-time views ' + model.tta if model.tta != 'none' else ''})"),
            Measurement("operating_point", model.threshold, "1",
                        f"decision threshold ({op.get('rule', 'fixed')}, chosen on the "
                        f"{op.get('chosen_on', 'validation split')})"),
            *extra,
        ],
        probability=prob,
        provenance=Provenance(f"medimg.models.{model.name}", _version(), params,
                              model_card=model.card_path),
        characterisation={"call": words[0] if positive else words[1],
                          **({"caveat": caveat} if caveat else {}),
                          **({"explanation_caveat": explanation_caveat} if explanation_caveat else {})},
        evidence=[evidence_entry(path, model, {"class": model.contract.classes[
            model.contract.positive_class] if model.contract.classes else None})],
    )
    case.findings.append(finding)
    record(case, protocol, "classify", model=model.name, probability=round(prob, 4),
           threshold=round(model.threshold, 4), call=finding.characterisation["call"])
    return finding


def analyze_image(source: str | os.PathLike[str] | Image, protocol: str, *,
                  output_dir: str | os.PathLike[str] | None = None,
                  modality: str | None = None, **notes: Any) -> tuple[Report, Image | None]:
    """Run a 2-D protocol (``chest_xray``, ``breast_us``, ``retina``) on one image.

    ``modality`` sets the modality of a non-DICOM file (a photograph of a radiograph: ``"DX"``; a
    fundus photograph: ``"OP"``); DICOM files keep their own.  Returns the report (complete or
    refused) and the analysed image.
    """
    from ..image import Image as ImageType
    from ..io import read
    from ..pipeline import Case, _report, run_steps
    from ..report.model import StudyInfo
    from .breast_us import STEPS as BREAST_US
    from .chest_xray import STEPS as CHEST_XRAY
    from .retina import STEPS as RETINA

    steps = {"chest_xray": CHEST_XRAY, "breast_us": BREAST_US, "retina": RETINA}
    if protocol not in steps:
        msg = f"unknown 2-D protocol {protocol!r}; use one of {', '.join(steps)}"
        raise ValueError(msg)
    t0 = time.perf_counter()
    if isinstance(source, ImageType):
        image, src = source, str(source.meta.get("source_path", "image"))
    else:
        src = os.fspath(source)
        if not Path(src).exists():
            raise InputError(src, "no such file", "give a DICOM file or a PNG/JPEG/TIFF image")
        image = read(src)
    if modality and not image.meta.get("sop_instance_uids"):
        image = image.replace(modality=modality)
    meta = image.meta
    study = StudyInfo(study_instance_uid=str(meta.get("study_instance_uid", "")),
                      series_instance_uid=str(meta.get("series_instance_uid", "")),
                      modality=image.modality, study_date=str(meta.get("study_date", "")),
                      study_description=str(meta.get("study_description", "")),
                      patient_id=str(meta.get("patient_id", "")),
                      body_part_examined=str(meta.get("body_part_examined", "")),
                      series_choice="one image given", source=src)
    case = Case(protocol, study, image, timings={"load": time.perf_counter() - t0})
    case.notes.update(notes)
    if output_dir is not None:
        case.notes["output_dir"] = os.fspath(output_dir)
    case = run_steps(case, steps[protocol])
    return _report(case), case.image
