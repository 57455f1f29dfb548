"""Running the DICOM peers on written objects: dciodvfy (dicom3tools) and dsrdump (dcmtk)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
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


def check_regions(path: Path, boxes: dict[str, tuple[int, ...] | None],
                  uids: list[str]) -> dict[str, tuple[str, np.ndarray]]:
    """Check the image regions of an SR's finding groups, by tracking identifier (its first word): each
    finding in ``boxes`` has one SCOORD, a closed POLYLINE on one image of ``uids`` (the analysed
    series, plane z = ``uids[z]``), with its points (column, row) inside the finding's box
    (z0, y0, x0, z1, y1, x1; ends exclusive, so x1 is the right edge) on that plane.  Returns
    {finding id: (referenced SOP Instance UID, points)}."""
    ds = pydicom.dcmread(path)
    measurements = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    out: dict[str, tuple[str, np.ndarray]] = {}
    for group in measurements.ContentSequence:
        items = list(group.ContentSequence)
        tracking = next(i.TextValue for i in items if i.ConceptNameCodeSequence[0].CodeValue == "112039")
        key = str(tracking).split()[0]
        scoords = [i for i in items if i.ValueType == "SCOORD"]
        assert not [i for i in items if i.ValueType == "SCOORD3D"]
        if key not in boxes:
            continue
        assert len(scoords) == 1, f"{key}: {len(scoords)} SCOORD items"
        sc = scoords[0]
        assert sc.ConceptNameCodeSequence[0].CodeValue == "111030"  # Image Region
        assert sc.GraphicType == "POLYLINE"
        points = np.asarray(sc.GraphicData, dtype=float).reshape(-1, 2)
        assert len(points) >= 4 and points[0].tolist() == points[-1].tolist(), "not a closed polyline"
        [image] = [i for i in sc.ContentSequence if i.ValueType == "IMAGE"]
        assert image.RelationshipType == "SELECTED FROM"
        [ref] = image.ReferencedSOPSequence
        uid = str(ref.ReferencedSOPInstanceUID)
        assert uid in uids, f"{key}: {uid} is not an image of the analysed series"
        box = boxes[key]
        if box is not None:
            z0, y0, x0, z1, y1, x1 = box
            assert z0 <= uids.index(uid) < z1, f"{key}: slice {uids.index(uid)} outside the box"
            assert (points[:, 0] >= x0).all() and (points[:, 0] <= x1).all(), f"{key}: columns outside the box"
            assert (points[:, 1] >= y0).all() and (points[:, 1] <= y1).all(), f"{key}: rows outside the box"
        out[key] = (uid, points)
    assert set(out) == set(boxes), f"groups without an image region: {set(boxes) - set(out)}"
    return out
