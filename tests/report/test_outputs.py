"""write_report: the one entry point -- which files, all or nothing, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import medimg.report.fhir
from medimg.image import Image
from medimg.report.model import Report
from medimg.report.outputs import ReportWriteError, default_formats, write_report


def test_complete_analysis_writes_every_output(written: dict[str, Path]) -> None:
    assert list(written) == ["json", "html", "pdf", "seg", "sr", "fhir"]
    folder = written["json"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["report.json", "report.html", "report.pdf", "seg.dcm", "sr.dcm", "fhir.json"])
    assert all(p.stat().st_size > 0 for p in written.values())


def test_refused_analysis_writes_no_dicom(refused_report: Report, ct_image: Image, tmp_path: Path) -> None:
    assert default_formats(refused_report, ct_image) == ["json", "html", "pdf", "fhir"]
    with pytest.raises(ReportWriteError, match="cannot write sr: the analysis was refused"):
        write_report(refused_report, ct_image, tmp_path, formats=["json", "sr"])
    assert list(tmp_path.iterdir()) == []


def test_no_image_means_no_dicom_and_no_key_images(ct_report: Report, tmp_path: Path) -> None:
    assert default_formats(ct_report, None) == ["json", "html", "pdf", "fhir"]
    written = write_report(ct_report, None, tmp_path, formats=["json", "html", "fhir"])
    html = written["html"].read_text(encoding="utf-8")
    assert "<img" not in html and "17.9 mm" in html
    with pytest.raises(ReportWriteError, match="no analysed image"):
        write_report(ct_report, None, tmp_path, formats=["seg"])


def test_a_failing_writer_changes_nothing(ct_report: Report, ct_image: Image, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "report.json").write_text("previous run\n")

    def broken(report: Report, path: Path, tracking_uids: object = None) -> Path:
        Path(path).write_text('{"resourceType": "Bund')  # half a file
        raise ValueError("fhir.json: disk quota exceeded; free some space")

    monkeypatch.setattr(medimg.report.fhir, "write_fhir", broken)
    with pytest.raises(ReportWriteError) as info:
        write_report(ct_report, ct_image, tmp_path, formats=["json", "html", "fhir"])
    message = str(info.value)
    assert message == f"{tmp_path / 'fhir.json'}: cannot write fhir: disk quota exceeded; free some space"
    assert info.value.format == "fhir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no half file, no staging folder
    assert (tmp_path / "report.json").read_text() == "previous run\n"  # the old output is untouched


def test_unknown_format_is_refused(ct_report: Report, ct_image: Image, tmp_path: Path) -> None:
    with pytest.raises(ReportWriteError, match="unknown format 'docx'; choose from json, html, pdf"):
        write_report(ct_report, ct_image, tmp_path, formats=["json", "docx"])


def test_out_dir_is_created_and_subset_order_kept(ct_report: Report, ct_image: Image, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    written = write_report(ct_report, ct_image, out, formats=["fhir", "json"])
    assert list(written) == ["fhir", "json"]
    assert sorted(p.name for p in out.iterdir()) == ["fhir.json", "report.json"]


def test_duplicate_finding_ids_are_refused(ct_report: Report, ct_image: Image, tmp_path: Path) -> None:
    import copy

    twice = copy.copy(ct_report)
    twice.findings = [ct_report.findings[0], copy.copy(ct_report.findings[0])]
    with pytest.raises(ReportWriteError, match="the finding id 'F1' occurs twice"):
        write_report(twice, ct_image, tmp_path)
    assert list(tmp_path.iterdir()) == []
