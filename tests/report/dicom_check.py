"""Running the DICOM peers on written objects: dciodvfy (dicom3tools) and dsrdump (dcmtk)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest


def _tool(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed: apt-get install -y {package} (scripts/setup.sh does)",
                    pytrace=False)
    return exe


def dciodvfy(path: Path) -> tuple[str, set[str]]:
    """dciodvfy's whole output and its normalised error messages (values and offsets removed)."""
    proc = subprocess.run([_tool("dciodvfy", "dicom3tools"), str(path)], capture_output=True,
                          text=True, timeout=120, check=False)
    text = proc.stdout + proc.stderr
    errors = {_normalise(line) for line in text.splitlines() if line.startswith("Error")}
    return text, errors


def _normalise(line: str) -> str:
    line = re.sub(r"\s+", " ", line.strip())
    line = re.sub(r"\[\d+\]", "[n]", line)  # value indices
    line = re.sub(r"= <[^>]*> -", "= <value> -", line)  # quoted values
    return re.sub(r"\b0x[0-9a-fA-F]+\b", "0x?", line) if "offset" in line.lower() else line


def dsrdump(path: Path) -> str:
    proc = subprocess.run([_tool("dsrdump", "dcmtk"), str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"dsrdump failed on {path}: {proc.stderr}"
    return proc.stdout
