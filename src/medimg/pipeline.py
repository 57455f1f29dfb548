"""The analysis engine: route a study to a protocol, choose its series, run the steps, make a Report.

>>> report, image = analyze("study/")                 # routed by the DICOM headers
>>> report.status, report.protocol, report.study.series_choice
>>> report, image = analyze("study/", protocol="chest_ct", priors=["prior-study/"])

A protocol is a plain list of steps (:data:`medimg.protocols.PROTOCOLS`); a step is a function
``(Case) -> Case`` that adds results to the :class:`Case`.  The engine runs the steps in order, times
each, and stops at the first step that calls :meth:`Case.stop` (a failed quality check, an image that
does not fit the protocol).  Whatever happens to the input, :func:`analyze` returns a
:class:`~medimg.report.model.Report`: ``status="complete"``, or ``status="refused"`` with ``refusal``
saying what was wrong and why no analysis was done.  Only a path that does not exist raises
(:class:`~medimg.errors.InputError`).  Routing rules, steps and refusals: docs/pipeline.md.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .decide import ClinicalContext, triage_refused
from .errors import InputError, MedimgError, NotDicomError
from .image import Image
from .protocols import (
    PROTOCOLS,
    SINGLE_IMAGE,
    SeriesFacts,
    compare_reason,
    orientation_of,
    rank_key,
    route,
    usable,
)
from .quality.report import QualityReport
from .report.model import (
    Comparison,
    Finding,
    Provenance,
    Recommendation,
    Report,
    Structure,
    StudyInfo,
    Triage,
)

__all__ = ["CONTEXTS", "Case", "Prior", "StopKind", "analyze", "case_report", "choose_series",
           "context_for", "refusal_kind", "run_steps", "series_facts"]

PathLike = str | os.PathLike[str]
#: Why a case stopped: ``"input"`` nothing in the input can be analysed (no usable series, the
#: image does not fit the protocol); ``"quality"`` the chosen image failed the quality check.
StopKind = Literal["input", "quality"]

#: Words for ``--context``: what the user states about why the CT was done.
CONTEXTS: dict[str, dict[str, bool]] = {
    "incidental": {"screening": False},
    "screening": {"screening": True},
    "known-cancer": {"screening": False, "known_cancer": True},
    "immunocompromised": {"screening": False, "immunocompromised": True},
}

#: The modality given to a non-DICOM image file analysed with a 2-D protocol.
_FILE_MODALITY = {"chest_xray": "DX", "breast_us": "US", "retina": "OP"}


@dataclass
class Prior:
    """A prior study to compare with: what it is and its image."""

    study: StudyInfo
    image: Image


@dataclass
class Case:
    """Everything one analysis knows; each step adds to it.

    ``segmentation`` holds the protocol's segmentation object for later steps (e.g. the chest CT
    ``ChestSegmentation``); ``notes`` holds small facts one step leaves for another (e.g.
    ``lungs_complete``).
    """

    protocol: str
    study: StudyInfo
    image: Image | None = None
    context: ClinicalContext = field(default_factory=ClinicalContext)
    priors: list[Prior] = field(default_factory=list)
    quality: QualityReport | None = None
    segmentation: Any = None
    structures: list[Structure] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    triage: Triage | None = None
    impression: str = ""
    steps: list[Provenance] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None  # why the analysis stopped (a sentence)
    stop_kind: StopKind | None = None

    def stop(self, kind: StopKind, reason: str) -> Case:
        """Stop the analysis: no further step runs and the report says ``reason``."""
        self.stop_kind = kind
        self.stopped = reason
        return self


def run_steps(case: Case, steps: Sequence[Any]) -> Case:
    """Run ``steps`` in order, timing each (``case.timings[step name]``), until one stops the case.

    A step that raises a :class:`~medimg.errors.MedimgError` (e.g. ``StepError``: the image is not
    what the step works on) stops the case with that message; any other exception is a bug and
    propagates.
    """
    for step in steps:
        if case.stopped:
            break
        t0 = time.perf_counter()
        try:
            case = step(case)
        except MedimgError as exc:  # the step says this input does not fit it: refuse, not crash
            case.stop("input", f"the {step.__name__} step cannot work on this image: {exc}")
        case.timings[step.__name__] = time.perf_counter() - t0
    return case


# ---------------------------------------------------------------------------------------- headers
def series_facts(entry: Any) -> SeriesFacts:
    """What routing needs of one indexed series, from its headers (no pixel is read)."""
    from .io.dicom import summarize

    first = entry.instances[0]
    meta = first.meta
    problem = ""
    slices = 0
    spacing = None
    codes: tuple[str, ...] = ()
    try:
        summary = summarize(entry)
        slices = int(summary.shape[0]) if len(summary.shape) >= 3 else 1
        spacing = float(summary.spacing[0]) if slices > 1 else None
        codes = tuple(str(w.get("code")) for w in summary.warnings)
    except InputError as exc:
        problem = exc.problem
    kernel = meta.get("convolution_kernel", "")
    if isinstance(kernel, list):
        kernel = kernel[0] if kernel else ""
    orientation = first.frame_geometry[0].orientation if first.frame_geometry else None
    return SeriesFacts(
        key=entry.key,
        series_number=entry.series_number,
        modality=entry.modality,
        series_description=str(meta.get("series_description", "")),
        study_description=str(meta.get("study_description", "")),
        protocol_name=str(meta.get("protocol_name", "")),
        body_part=str(meta.get("body_part_examined", "")),
        orientation=orientation_of(orientation),
        slices=slices,
        slice_spacing=spacing,
        kernel=str(kernel),
        localizer=all(r.is_localizer for r in entry.instances),
        derived="DERIVED" in first.image_type,
        warnings=codes,
        problem=problem,
        study_date=str(meta.get("study_date", "")),
        study_instance_uid=entry.study_instance_uid,
        colour=int(getattr(first, "samples_per_pixel", 1) or 1) > 1,
    )


@dataclass
class SeriesChoice:
    """The series chosen for analysis (or why none was), with the reason in words."""

    entry: Any | None
    facts: SeriesFacts | None
    protocol: str | None
    reason: str


def _listing(items: list[tuple[SeriesFacts, str]], limit: int = 8) -> str:
    shown = [f"{f.label} ({f.summary}): {why}" for f, why in items[:limit]]
    if len(items) > limit:
        shown.append(f"and {len(items) - limit} more")
    return "; ".join(shown)


def choose_series(index: Any, protocol: str | None = None, series: str | None = None) -> SeriesChoice:
    """The series of ``index`` to analyse and its protocol, or the reason there is none.

    Every series is routed from its headers (or given ``protocol``), checked for use
    (:func:`medimg.protocols.usable`), and the usable ones are ranked
    (:func:`medimg.protocols.rank_key`).  With several studies the most recent is analysed.
    """
    entries = list(index.series)
    if series is not None:
        entries = [e for e in entries if series in (e.key, e.series_instance_uid)]
        if not entries:
            return SeriesChoice(None, None, protocol,
                                f"no series {series!r} in the input; run `medimg info` to list them")
    facts = [(e, series_facts(e)) for e in entries]
    good: list[tuple[Any, SeriesFacts, str, str]] = []
    rejected: list[tuple[SeriesFacts, str]] = []
    routed_to: list[str | None] = []
    for e, f in facts:
        if protocol is not None:
            proto, why = protocol, f"protocol {protocol} was given"
        else:
            proto, why = route(f)  # type: ignore[assignment]
        routed_to.append(proto)
        if proto is None:
            rejected.append((f, f"no protocol: {why}"))
            continue
        problem = usable(f, proto)
        if problem is not None:
            rejected.append((f, f"not usable for {proto}: {problem}"))
            continue
        good.append((e, f, proto, why))
    if not good:
        routed = {p for p in routed_to if p is not None}
        named = protocol or (routed.pop() if len(routed) == 1 else None)
        return SeriesChoice(None, facts[0][1] if facts else None, named,
                            f"no usable series among {len(facts)}: {_listing(rejected)}")
    order = list(PROTOCOLS)
    proto = min((g[2] for g in good), key=order.index)
    good = [g for g in good if g[2] == proto]
    studies = sorted({g[1].study_instance_uid for g in good})
    study_note = ""
    if len(studies) > 1:
        latest = max(good, key=lambda g: g[1].study_date)[1]
        good = [g for g in good if g[1].study_instance_uid == latest.study_instance_uid]
        study_note = (f" The input holds {len(studies)} studies with usable series; the most "
                      f"recent ({latest.study_date or 'date unknown'}) is analysed (give older ones "
                      f"as priors).")
    good.sort(key=lambda g: rank_key(g[1], proto))
    entry, best, _, why = good[0]
    reason = f"{best.label} ({best.summary}) for {proto}: {why}."
    if len(good) > 1:
        others = [(g[1], compare_reason(best, g[1], proto)) for g in good[1:]]
        reason += (f" Chosen from {len(good)} usable series (axial, no gaps, thinnest, sharp kernel "
                   f"for lung, original, most slices); not chosen: {_listing(others)}.")
    elif series is not None:
        reason += " It was the series asked for."
    else:
        reason += " It is the only usable series."
    if rejected:
        reason += f" Not usable: {_listing(rejected)}."
    reason += study_note
    return SeriesChoice(entry, best, proto, reason)


# ---------------------------------------------------------------------------------------- context
_SCREENING = re.compile(r"SCREEN|\bLDCT\b|\bLCS\b", re.IGNORECASE)


def _age_years(value: str) -> float | None:
    m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", value or "")
    if not m:
        return None
    n, unit = float(m.group(1)), m.group(2).upper()
    return {"D": n / 365.25, "W": n * 7 / 365.25, "M": n / 12.0, "Y": n}[unit]


def _age_from_dates(birth: str, study: str) -> float | None:
    import datetime as dt

    try:
        b = dt.datetime.strptime(birth.strip(), "%Y%m%d").date()
        s = dt.datetime.strptime(study.strip(), "%Y%m%d").date()
    except ValueError:
        return None
    years = (s - b).days / 365.25
    return years if years >= 0 else None


def context_for(entry: Any, given: ClinicalContext | str | None = None) -> ClinicalContext:
    """The clinical context of a series: patient age and screening from its DICOM header, overridden
    by what was ``given`` (a :class:`ClinicalContext` or one of :data:`CONTEXTS`)."""
    import pydicom

    tags = ["PatientAge", "PatientBirthDate", "StudyDate", "StudyDescription", "ProtocolName",
            "RequestedProcedureDescription", "SeriesDescription"]
    sources: dict[str, str] = {}
    age = None
    screening = None
    try:
        ds = pydicom.dcmread(entry.instances[0].path, stop_before_pixels=True, specific_tags=tags)
        raw_age = str(ds.get("PatientAge", "") or "")
        age = _age_years(raw_age)
        if age is not None:
            sources["age_years"] = f"DICOM Patient's Age {raw_age}"
        else:
            age = _age_from_dates(str(ds.get("PatientBirthDate", "") or ""),
                                  str(ds.get("StudyDate", "") or ""))
            if age is not None:
                age = float(int(age))
                sources["age_years"] = "DICOM Patient's Birth Date and Study Date"
        words = " ".join(str(ds.get(t, "") or "") for t in tags[3:])
        m = _SCREENING.search(words)
        if m:
            screening = True
            sources["screening"] = f"the word {m.group(0)!r} in the study/series/procedure description"
    except Exception:  # a header we cannot re-read only means: nothing known from it
        pass
    ctx = ClinicalContext(age_years=age, screening=screening, sources=sources)
    if isinstance(given, str):
        if given not in CONTEXTS:
            msg = f"unknown context {given!r}; use one of {', '.join(CONTEXTS)}"
            raise ValueError(msg)
        stated = CONTEXTS[given]
        srcs = {**sources, **{k: f"--context {given}" for k in stated}}
        ctx = replace(ctx, **stated, sources=srcs)  # type: ignore[arg-type]
    elif given is not None:
        changes = {k: v for k, v in given.__dict__.items() if v is not None and k != "sources"}
        srcs = {**sources, **{k: given.sources.get(k, "given by the caller") for k in changes}}
        ctx = replace(ctx, **changes, sources=srcs)
    return ctx


def _study_info(entry: Any | None, source: str, choice: str = "") -> StudyInfo:
    if entry is None:
        return StudyInfo(source=source, series_choice=choice)
    meta = entry.instances[0].meta
    return StudyInfo(
        study_instance_uid=entry.study_instance_uid,
        series_instance_uid=entry.series_instance_uid,
        modality=entry.modality,
        study_date=str(meta.get("study_date", "")),
        study_description=str(meta.get("study_description", "")),
        series_description=str(meta.get("series_description", "")),
        patient_id=str(meta.get("patient_id", "")),
        accession_number=str(meta.get("accession_number", "")),
        body_part_examined=str(meta.get("body_part_examined", "")),
        series_choice=choice,
        source=source,
    )


# ---------------------------------------------------------------------------------------- reports
def _version() -> str:
    from . import __version__

    return __version__


def case_report(case: Case) -> Report:
    """The :class:`Report` of a case whose steps have run (refused when a step stopped it)."""
    refused = case.stopped is not None
    triage = triage_refused(_short(case.stopped)) if refused and case.stopped else case.triage
    return Report(
        study=case.study,
        protocol=case.protocol,
        status="refused" if refused else "complete",
        quality=case.quality,
        structures=[] if refused else case.structures,
        findings=[] if refused else case.findings,
        comparisons=[] if refused else case.comparisons,
        recommendations=[] if refused else case.recommendations,
        triage=triage,
        refusal=case.stopped,
        impression=(f"No analysis was done: {case.stopped}." if refused else case.impression),
        preprocessing=list(case.image.history) if case.image is not None else [],
        steps=case.steps,
        timings={k: round(v, 4) for k, v in case.timings.items()},
        medimg_version=_version(),
    )


_report = case_report  # the name other protocol runners first used


def _short(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]


def refusal_kind(report: Report) -> Literal["quality", "input"] | None:
    """Why a report was refused: ``"quality"`` when its quality check failed, ``"input"`` for
    anything else (no usable series, an image that does not fit the protocol); ``None`` when the
    analysis ran."""
    if report.status != "refused":
        return None
    if report.quality is not None and report.quality.verdict == "fail":
        return "quality"
    return "input"


def _routing_provenance(choice: SeriesChoice, protocol: str | None) -> Provenance:
    return Provenance("medimg.pipeline.choose_series", _version(),
                      {"protocol_given": protocol, "protocol": choice.protocol,
                       "series": choice.facts.key if choice.facts else None})


def _load_prior(path: PathLike, protocol: str) -> Prior | str:
    """A prior study's chosen series, or why it cannot be used."""
    from .io.dicom import index, load_series

    try:
        idx = index(path)
        choice = choose_series(idx, protocol=protocol)
        if choice.entry is None:
            return f"{path}: {choice.reason}"
        return Prior(_study_info(choice.entry, str(path), choice.reason), load_series(choice.entry))
    except InputError as exc:
        return str(exc)


def analyze(
    path: PathLike,
    protocol: str | None = None,
    priors: Sequence[PathLike] | None = None,
    series: str | None = None,
    context: ClinicalContext | str | None = None,
    workers: int | None = None,
    evidence_dir: PathLike | None = None,
) -> tuple[Report, Image | None]:
    """Analyse the study at ``path``: route, choose the series, run the protocol's steps.

    Parameters
    ----------
    path:
        A DICOM folder (one or more studies) or file.
    protocol:
        A name of :data:`~medimg.protocols.PROTOCOLS`; overrides the routing by headers (the image
        is still checked).
    priors:
        Earlier studies of the same patient to compare findings with.
    series:
        A series key or Series Instance UID (from ``medimg info``) to analyse instead of choosing.
    context:
        What is known of the patient and why the CT was done: a
        :class:`~medimg.decide.ClinicalContext` or one of :data:`CONTEXTS`; decides which
        guidelines apply (their scope).  Age is also read from the DICOM header.
    workers:
        Processes for reading DICOM (default: the reader's).
    evidence_dir:
        Where protocols save evidence images (Grad-CAM heatmaps, probability maps) that findings
        point to; default: a new temporary folder.  ``medimg analyze`` uses ``OUT/evidence``.

    Returns
    -------
    (Report, Image or None)
        The report (``status`` ``"complete"`` or ``"refused"``) and the analysed image (``None``
        when no image was loaded).

    Raises
    ------
    InputError
        Only when ``path`` does not exist.
    ValueError
        For an unknown ``protocol`` or ``context`` name.
    """
    from .io.dicom import index, is_dicom_path, load_series

    source = os.fspath(path)
    if not Path(source).exists():
        raise InputError(source, "no such file or folder", "give a DICOM study folder or file")
    if protocol is not None and protocol not in PROTOCOLS:
        msg = f"unknown protocol {protocol!r}; use one of {', '.join(sorted(PROTOCOLS))}"
        raise ValueError(msg)
    if isinstance(context, str) and context not in CONTEXTS:
        msg = f"unknown context {context!r}; use one of {', '.join(CONTEXTS)}"
        raise ValueError(msg)
    timings: dict[str, float] = {}
    name = protocol or "none"

    def refused(reason: str, entry: Any = None, choice: str = "",
                steps: list[Provenance] | None = None) -> tuple[Report, Image | None]:
        case = Case(name, _study_info(entry, source, choice), timings=timings, steps=steps or [])
        case.stop("input", reason)
        return case_report(case), None

    if not is_dicom_path(source):
        if protocol in SINGLE_IMAGE:  # a photograph (PNG/JPEG/TIFF) said to be this kind of image
            from .protocols.learned import analyze_image

            return analyze_image(source, protocol, modality=_FILE_MODALITY[protocol],
                                 output_dir=evidence_dir)
        return refused(f"{source} is not DICOM: medimg analyze routes a study by its DICOM "
                       f"attributes, and an image file has none; give the DICOM study it came "
                       f"from, or for a 2-D photograph (PNG/JPEG/TIFF) pass --protocol "
                       f"{', '.join(SINGLE_IMAGE)} to say what it shows")
    t0 = time.perf_counter()
    idx = index(source, workers=workers)
    timings["index"] = time.perf_counter() - t0
    if not idx.series:
        problems = [e for e in idx.errors if not isinstance(e, NotDicomError)]
        detail = f"; {len(problems)} unreadable, first: {problems[0]}" if problems else ""
        return refused(f"no DICOM image series in {source} ({idx.files_seen} file(s) seen"
                       f"{detail}); give a folder that holds the study's images")
    t0 = time.perf_counter()
    choice = choose_series(idx, protocol=protocol, series=series)
    timings["route"] = time.perf_counter() - t0
    steps = [_routing_provenance(choice, protocol)]
    if choice.entry is None or choice.protocol is None:
        entry = idx.series[0] if len(idx.series) == 1 else None
        name = choice.protocol or name
        return refused(choice.reason, entry, choice.reason, steps)
    name = choice.protocol
    study = _study_info(choice.entry, source, choice.reason)
    t0 = time.perf_counter()
    try:
        image = load_series(choice.entry, workers=workers)
    except InputError as exc:
        return refused(f"the chosen series cannot be loaded: {exc}", choice.entry, choice.reason,
                       steps)
    timings["load"] = time.perf_counter() - t0
    case = Case(name, study, image, context_for(choice.entry, context), steps=steps,
                timings=timings)
    if evidence_dir is not None:
        case.notes["output_dir"] = os.fspath(evidence_dir)
    if priors:
        t0 = time.perf_counter()
        for p in priors:
            loaded = _load_prior(p, name)
            if isinstance(loaded, Prior):
                case.priors.append(loaded)
            else:
                case.notes.setdefault("priors_not_used", []).append(loaded)
        timings["load_priors"] = time.perf_counter() - t0
    case = run_steps(case, PROTOCOLS[name])
    return case_report(case), image
