"""The one entry point that turns a :class:`~medimg.report.model.Report` into files.

``write_report(report, image, out_dir)`` writes, by default:

=========  ==============  ====================================================================
format     file            when
=========  ==============  ====================================================================
json       report.json     always
html       report.html     always
pdf        report.pdf      always (needs Chromium)
seg        seg.dcm         complete analyses with at least one mask
sr         sr.dcm          complete analyses (points into seg.dcm when that is written too)
fhir       fhir.json       always
=========  ==============  ====================================================================

The 2-D protocols (``chest_xray``, ``breast_us``, ``retina``) get report.json, report.html,
report.pdf and fhir.json only: the SEG and SR writers place results in the source's Frame of
Reference, which a single CR/DX/US/OP image or a photograph does not have (they refuse it), so these
are skipped on purpose rather than failing the whole write.

A refused analysis (``report.status == "refused"``) gets report.json, report.html, report.pdf and
fhir.json, each saying why no analysis was done; no SR or SEG, since nothing was measured or
segmented (asking for them explicitly is an error).

All or nothing: every file is first written into a hidden staging folder inside ``out_dir``; only when
all writers have succeeded are they moved into place with :func:`os.replace` (same file system, so each
move is atomic).  If a writer fails, the staging folder is removed, files already in ``out_dir`` are
left as they were, and :class:`ReportWriteError` says in one line which format failed and why.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OutputError
from ..image import Image
from .model import Report

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from ._dicom_common import DicomContext
    from .render import KeyImage

__all__ = ["FILENAMES", "FORMATS", "ReportWriteError", "default_formats", "write_report"]

FORMATS = ("json", "html", "pdf", "seg", "sr", "fhir")
#: Protocols whose reports have no SEG/SR by default (one 2-D image, no Frame of Reference).
NO_DICOM_OUTPUTS = ("chest_xray", "breast_us", "retina")
FILENAMES = {"json": "report.json", "html": "report.html", "pdf": "report.pdf", "seg": "seg.dcm",
             "sr": "sr.dcm", "fhir": "fhir.json"}


class ReportWriteError(OutputError):
    """A report output could not be written; ``format`` and ``path`` name it."""

    def __init__(self, fmt: str, path: Path, problem: str) -> None:
        self.format = fmt
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: cannot write {fmt}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, Path, str]]:
        return (type(self), (self.format, self.path, self.problem))


def _has_masks(report: Report) -> bool:
    masks = [s.mask for s in report.structures] + [f.mask for f in report.findings]
    return any(m is not None and bool(m.any()) for m in masks)


def default_formats(report: Report, image: Image | None = None) -> list[str]:
    """The formats written when none are asked for (see the module docstring)."""
    if report.status != "complete" or image is None or report.protocol in NO_DICOM_OUTPUTS:
        return ["json", "html", "pdf", "fhir"]
    out = ["json", "html", "pdf"]
    if _has_masks(report):
        out.append("seg")
    return [*out, "sr", "fhir"]


def _one_line(exc: BaseException, fmt: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in (f"{FILENAMES[fmt]}: ", f"{fmt}: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if not isinstance(exc, (ValueError, FileNotFoundError, RuntimeError, OSError)):
        text = f"{type(exc).__name__}: {text}"
    return text


def write_report(report: Report, image: Image | None, out_dir: Path, *,
                 formats: Iterable[str] | None = None, context: DicomContext | None = None,
                 seg: Dataset | None = None, images: Sequence[KeyImage] | None = None) -> dict[str, Path]:
    """Write every output (json, html, pdf, sr, seg, fhir) atomically into out_dir; returns {format: path}.

    ``formats`` picks a subset (any order); ``None`` means :func:`default_formats`.  ``image`` is
    the analysed image (``None`` when no usable series was found: then only json, html, pdf and fhir
    can be written).  ``out_dir`` is created if missing.  Raises :class:`ReportWriteError` (one line) if any output fails; then no file
    in ``out_dir`` has been created or changed.

    Rewriting a reviewed report (:mod:`medimg.report.signoff`): ``context`` gives the DICOM UIDs to use
    (the tracking UIDs of the analysis, a new SR series), ``seg`` the SEG already written that a new
    SR points into, and ``images`` the key images to show (those of the AI's report, so that each
    outline is drawn with the values it was measured with).
    """
    out = Path(out_dir)
    wanted = default_formats(report, image) if formats is None else list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FILENAMES]
    if unknown:
        msg = f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}"
        raise ReportWriteError(unknown[0], out, msg)
    for kind, names in (("finding id", [f.id for f in report.findings]),
                        ("structure name", [s.name for s in report.structures])):
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            msg = (f"the {kind} {dup!r} occurs twice; each must be unique (outputs refer to them by it), "
                   "this is a bug in the step that filled the report")
            raise ReportWriteError(wanted[0] if wanted else "json", out, msg)
    if report.status != "complete":
        for fmt in ("sr", "seg"):
            if fmt in wanted:
                msg = ("the analysis was refused, so nothing was measured or segmented; "
                       "leave sr and seg out (report.json/html/pdf and fhir.json say why)")
                raise ReportWriteError(fmt, out / FILENAMES[fmt], msg)
    if image is None:
        for fmt in ("sr", "seg"):
            if fmt in wanted:
                msg = "there is no analysed image to reference; leave sr and seg out"
                raise ReportWriteError(fmt, out / FILENAMES[fmt], msg)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".medimg-report-", suffix=".partial", dir=out))
    except OSError as exc:
        msg = f"cannot create or write the folder ({exc.strerror}); choose a writable folder"
        raise ReportWriteError(wanted[0] if wanted else "json", out, msg) from None
    try:
        staged = _write_all(report, image, stage, [f for f in FORMATS if f in wanted], context, seg, images)
        result: dict[str, Path] = {}
        for fmt, tmp in staged.items():
            final = out / FILENAMES[fmt]
            try:
                os.replace(tmp, final)
            except OSError as exc:
                msg = f"cannot move the file into place ({exc.strerror}); check that it is not a folder"
                raise ReportWriteError(fmt, final, msg) from None
            result[fmt] = final
        return {f: result[f] for f in wanted}
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_all(report: Report, image: Image | None, stage: Path, order: list[str],
               context: DicomContext | None = None, seg: Dataset | None = None,
               images: Sequence[KeyImage] | None = None) -> dict[str, Path]:
    """Write the outputs into ``stage``; the first failure raises :class:`ReportWriteError`."""
    from ._dicom_common import DicomContext, SourceFrames, load_sources, tracking_keys

    staged: dict[str, Path] = {}
    state: dict[str, object] = {} if seg is None else {"seg": seg}
    ctx = context or DicomContext.new(tracking_keys(report.structures, report.findings))
    sources: list[SourceFrames] = []

    def dicom_sources(fmt: str) -> SourceFrames:
        assert image is not None  # write_report refuses sr/seg without an image
        if not sources:
            sources.append(load_sources(image, FILENAMES[fmt]))
        return sources[0]

    def html_text() -> str:
        if "html" not in state:
            from .html import render_html

            state["html"] = render_html(report, image, images=images)
        return str(state["html"])

    def do_json(path: Path) -> None:
        from .json_writer import write_json

        write_json(report, path)

    def do_html(path: Path) -> None:
        path.write_text(html_text(), encoding="utf-8")

    def do_pdf(path: Path) -> None:
        from .pdf import html_to_pdf

        source = staged.get("html")
        if source is None:
            source = stage / "print-source.html"
            source.write_text(html_text(), encoding="utf-8")
        html_to_pdf(source, path)

    def do_seg(path: Path) -> None:
        from .dicom_seg import build_segmentation

        src = dicom_sources("seg")
        assert image is not None
        seg = build_segmentation(report, image, ctx, src)
        seg.save_as(path, enforce_file_format=True)
        state["seg"] = seg

    def do_sr(path: Path) -> None:
        from .dicom_sr import build_sr

        src = dicom_sources("sr")
        assert image is not None
        sr = build_sr(report, image, state.get("seg"), ctx, src)  # type: ignore[arg-type]
        sr.save_as(path, enforce_file_format=True)

    def do_fhir(path: Path) -> None:
        from .fhir import write_fhir

        write_fhir(report, path, ctx.tracking_uids)

    writers: dict[str, Callable[[Path], None]] = {
        "json": do_json, "html": do_html, "pdf": do_pdf, "seg": do_seg, "sr": do_sr, "fhir": do_fhir}
    for fmt in order:
        path = stage / FILENAMES[fmt]
        try:
            writers[fmt](path)
        except ReportWriteError:
            raise
        except Exception as exc:  # every writer's failure becomes one line naming the format
            raise ReportWriteError(fmt, stage.parent / FILENAMES[fmt], _one_line(exc, fmt)) from exc
        staged[fmt] = path
    return staged
