"""``report.pdf``: the HTML report printed to A4 by headless Chromium (Debian package ``chromium``).

The page's own ``@page`` CSS sets the paper and margins; Chromium's header and footer are turned off.
Chromium runs with a fresh, throw-away profile and with its network features off; the HTML is
self-contained so nothing is fetched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["CHROMIUM_NAMES", "find_chromium", "html_to_pdf"]

#: Executables tried in order (``MEDIMG_CHROMIUM`` overrides).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str:
    """Path of the Chromium executable; ``FileNotFoundError`` (one line, with the fix) if none."""
    override = os.environ.get("MEDIMG_CHROMIUM")
    if override:
        if shutil.which(override):
            return str(shutil.which(override))
        msg = f"report.pdf: MEDIMG_CHROMIUM={override!r} is not an executable; point it at chromium"
        raise FileNotFoundError(msg)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    msg = ("report.pdf: chromium is not installed (it prints the HTML report to PDF); "
           "install it with 'apt-get install -y chromium' or set MEDIMG_CHROMIUM")
    raise FileNotFoundError(msg)


def html_to_pdf(html_path: str | Path, pdf_path: str | Path, *, timeout: float = 120.0) -> Path:
    """Print the HTML file at ``html_path`` to ``pdf_path`` with headless Chromium.

    Raises ``RuntimeError`` (one line) when Chromium fails, times out or writes no PDF.
    """
    exe = find_chromium()
    src = Path(html_path).resolve()
    dst = Path(pdf_path).resolve()
    with tempfile.TemporaryDirectory(prefix="medimg-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--disable-dev-shm-usage", "--no-pdf-header-footer",
               f"--user-data-dir={profile}", f"--print-to-pdf={dst}", src.as_uri()]
        env = dict(os.environ, HOME=profile)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            msg = f"report.pdf: chromium did not finish within {timeout:.0f} s; the machine may be overloaded, try again"
            raise RuntimeError(msg) from None
    if not dst.is_file() or dst.stat().st_size == 0 or dst.read_bytes()[:5] != b"%PDF-":
        lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "no message"
        msg = f"report.pdf: chromium (exit {proc.returncode}) wrote no PDF: {last}"
        raise RuntimeError(msg)
    return dst
