"""report.pdf: printed by headless Chromium from the same HTML, with the same text."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medimg.image import Image
from medimg.report.model import Report
from medimg.report.outputs import ReportWriteError, write_report
from medimg.report.pdf import find_chromium


def _poppler(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed: apt-get install -y poppler-utils", pytrace=False)
    return exe


def _text(pdf: Path) -> str:
    proc = subprocess.run([_poppler("pdftotext"), "-layout", str(pdf), "-"], capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout


def test_pdf_has_the_reports_text(written: dict[str, Path], ct_report: Report) -> None:
    pdf = written["pdf"]
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = _text(pdf)
    f = ct_report.findings[0]
    for name, fmt in (("long_axis_diameter", "{:.1f} mm"), ("volume", "{:.0f} mm³"), ("mean_hu", "{:.0f} HU")):
        assert fmt.format(f.measurement(name).value) in text  # type: ignore[union-attr]
    assert "It is not a diagnosis." in text
    assert "Fleischner 2017" in text and "Rule applied" in text
    assert ct_report.study.patient_id in text
    for s in ct_report.structures:
        assert f"{s.measurements[0].value:.0f} mL" in text


def test_pdf_first_page_renders(written: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "page"
    subprocess.run([_poppler("pdftoppm"), "-r", "50", "-png", "-f", "1", "-l", "1", str(written["pdf"]), str(out)],
                   check=True, timeout=60)
    [png] = list(tmp_path.glob("page*.png"))
    page = np.asarray(PILImage.open(png).convert("L"))
    assert page.shape[0] > page.shape[1]  # portrait A4
    dark = (page < 128).mean()
    assert 0.005 < dark < 0.5  # text on a white page, not blank and not black


def test_refused_pdf(refused_report: Report, ct_image: Image, tmp_path: Path) -> None:
    written = write_report(refused_report, ct_image, tmp_path, formats=["pdf"])
    text = _text(written["pdf"])
    assert "No analysis was done" in text and "not fully covered" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf"]  # no print source left over


def test_missing_chromium_is_one_clear_line(ct_report: Report, ct_image: Image, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIMG_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
        find_chromium()
    out = tmp_path / "out"
    with pytest.raises(ReportWriteError) as info:
        write_report(ct_report, ct_image, out, formats=["json", "pdf"])
    message = str(info.value)
    assert "\n" not in message and "cannot write pdf" in message and "chromium is not installed" in message
    assert list(out.iterdir()) == []  # json was staged, never moved in; the staging folder is gone
