"""Conformance with dcm2niix: every CT and MR DICOM series of the real data, converted to NIfTI by
dcm2niix and by ``medimg convert``, must describe the same voxels at the same place in the patient.

Series are discovered by walking the data folder (headers only, read with pydicom, grouped by folder,
Series Instance UID and Series Number), so a series added to the data later is covered without
editing this file.  For each one:

* dcm2niix converts it (``-z n -b n``; ``-s y`` for a single file, otherwise dcm2niix converts the
  whole folder around the file);
* ``python -m medimg convert IN OUT.nii`` converts it;
* both files are loaded with nibabel and brought to the closest canonical (RAS+) orientation; the
  affines must agree within 1e-3 mm and the voxel values (header scaling applied) must be equal:
  exactly for integer data, to float32 rounding for float data.

Where the installed dcm2niix cannot decode a transfer syntax (Debian's build has no JPEG-LS), it says
so ("Unsupported transfer syntax") and writes a meaningless 1x1x1 file; the series is then compared
with the reference NIfTI that ships beside it (``mr/dcm-qa-ts/Ref/N.nii`` for ``In/N.dcm``, made by
dcm2niix built with JPEG-LS support).  Without such a reference the test fails: an unchecked series
must not pass silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

pytestmark = pytest.mark.peer

REPO = Path(__file__).resolve().parents[2]
_env = os.environ.get("MEDIMG_DATA")
DATA = Path(_env) if _env else REPO.parent / "shared" / "data"

MODALITIES = {"CT", "MR"}
AFFINE_ATOL_MM = 1e-3
# dcm2niix's resampled extra outputs: `_Tilt_N` (gantry-tilt corrected) and `_Eq_N` (equidistant
# slices).  They are interpolated copies; the main file is the one with the acquired voxels.
_RESAMPLED_VARIANT = re.compile(r"_(Tilt|Eq)_\d+$")
_UNSUPPORTED_SYNTAX = re.compile(r"unsupported transfer syntax", re.IGNORECASE)


@dataclass(frozen=True)
class Series:
    """One CT/MR series found in the data: its files and how to hand it to the converters."""

    name: str  # test id: folder relative to the data, plus the file name or series number
    files: tuple[Path, ...]
    whole_folder: bool  # the files are every DICOM file in their folder


def _discover(root: Path) -> list[Series]:
    groups: dict[tuple[Path, str, str], list[Path]] = {}
    dicom_per_folder: dict[Path, int] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # not DICOM (NIfTI, PNG, CSV, ...): not a series
                continue
            dicom_per_folder[path.parent] = dicom_per_folder.get(path.parent, 0) + 1
            if str(ds.get("Modality", "")).upper() not in MODALITIES or "Rows" not in ds:
                continue
            key = (path.parent, str(ds.get("SeriesInstanceUID", "")), str(ds.get("SeriesNumber", "")))
            groups.setdefault(key, []).append(path)
    found = []
    for (folder, _uid, number), files in sorted(groups.items()):
        rel = folder.relative_to(root).as_posix()
        whole = len(files) == dicom_per_folder[folder]
        if whole:
            name = rel
        elif len(files) == 1:
            name = f"{rel}/{files[0].name}"
        else:
            name = f"{rel}#series{number}"
        found.append(Series(name, tuple(sorted(files)), whole))
    return found


SERIES = _discover(DATA) if (DATA / "MANIFEST.md").is_file() else []


def test_discovery_finds_the_known_series(data_dir: Path) -> None:
    """The walk finds at least the series this test was written for (guards against finding none)."""
    names = {s.name for s in _discover(data_dir)}
    expected = {
        "ct/lung-pet-ct-dx-A0001/series-2",
        "ct/lung-pet-ct-dx-A0001/series-3",
        "ct/totalseg-example/dicom",
        *(f"mr/dcm-qa-ts/In/{n}.dcm" for n in range(1, 10)),
    }
    assert expected <= names, f"not discovered: {sorted(expected - names)}"


def _input_for(series: Series, tmp_path: Path) -> Path:
    """What both converters get: the folder, the one file, or a folder of links to the files."""
    if series.whole_folder:
        return series.files[0].parent
    if len(series.files) == 1:
        return series.files[0]
    subset = tmp_path / "in"
    subset.mkdir()
    for f in series.files:
        (subset / f.name).symlink_to(f)
    return subset


def _run_dcm2niix(inp: Path, out_dir: Path) -> tuple[str, list[Path]]:
    out_dir.mkdir()
    cmd = ["dcm2niix", "-z", "n", "-b", "n", "-f", "d2n", "-o", str(out_dir)]
    if inp.is_file():
        cmd += ["-s", "y"]  # single-file mode; without it dcm2niix converts the whole folder
    proc = subprocess.run(cmd + [str(inp)], capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"dcm2niix failed on {inp} (exit {proc.returncode}):\n{log}"
    return log, sorted(out_dir.glob("*.nii"))


def _main_output(files: list[Path], log: str) -> Path:
    """The one dcm2niix output to compare with medimg's single volume.

    dcm2niix may write several files for one series: resampled copies (`_Tilt_N`, `_Eq_N`), which are
    left out because medimg keeps the acquired grid, and separate images it split off the series
    (a localizer, another echo or orientation, named with a suffix), which medimg leaves out of the
    volume.  Of what remains, the main image is the one with the most voxels: a localizer or a split
    part is always smaller than the volume medimg builds from the majority of the slices.
    """
    assert files, f"dcm2niix wrote no NIfTI file:\n{log}"
    acquired = [f for f in files if not _RESAMPLED_VARIANT.search(f.name.removesuffix(".nii"))]
    assert acquired, f"dcm2niix wrote only resampled variants {[f.name for f in files]}:\n{log}"
    return max(acquired, key=lambda f: (int(np.prod(nib.load(f).shape)), f.name == "d2n.nii"))


def _reference_beside(inp: Path) -> Path | None:
    """dcm_qa style layout: In/N.dcm has its reference conversion in ../Ref/N.nii."""
    if not inp.is_file() or inp.parent.name != "In":
        return None
    ref = inp.parent.parent / "Ref" / f"{inp.stem}.nii"
    return ref if ref.is_file() else None


def _run_medimg(inp: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "medimg", "convert", str(inp), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"`medimg convert {inp} {out.name}` failed (exit {proc.returncode}):\n"
        f"{proc.stdout}{proc.stderr}"
    )
    assert out.is_file(), f"`medimg convert` exited 0 but wrote no {out}"


def _is_integer_data(img: nib.Nifti1Image) -> bool:
    slope, inter = img.header.get_slope_inter()
    integral = all(v is None or float(v).is_integer() for v in (slope, inter))
    return bool(np.issubdtype(img.get_data_dtype(), np.integer) and integral)


def _compare(reference: Path, ours: Path, what: str) -> None:
    ref = nib.as_closest_canonical(nib.load(reference))
    got = nib.as_closest_canonical(nib.load(ours))
    both = (
        f"{what}\n  reference ({reference.name}) affine (RAS, canonical):\n{np.array2string(ref.affine, precision=5)}"
        f"\n  medimg ({ours.name}) affine (RAS, canonical):\n{np.array2string(got.affine, precision=5)}"
    )
    ref_shape, got_shape = ref.shape, got.shape
    # A trailing singleton 4th axis (one volume) is the same image as a 3-D one.
    while len(ref_shape) > 3 and ref_shape[-1] == 1:
        ref_shape = ref_shape[:-1]
    while len(got_shape) > 3 and got_shape[-1] == 1:
        got_shape = got_shape[:-1]
    assert ref_shape == got_shape, f"shapes differ: reference {ref.shape}, medimg {got.shape}\n{both}"
    diff = float(np.abs(ref.affine - got.affine).max())
    assert np.allclose(ref.affine, got.affine, rtol=0, atol=AFFINE_ATOL_MM), (
        f"affines differ by up to {diff:.6f} mm (allowed {AFFINE_ATOL_MM} mm)\n{both}"
    )
    a = np.asarray(ref.get_fdata()).reshape(ref_shape)
    b = np.asarray(got.get_fdata()).reshape(got_shape)
    if _is_integer_data(ref) and _is_integer_data(got):
        bad = a != b
        assert not bad.any(), (
            f"{int(bad.sum())} of {a.size} voxels differ (integer data must be equal); first at "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}: reference {a[bad][0]}, medimg {b[bad][0]}"
            f"\n{both}"
        )
    else:  # float data: the same real values up to float32 rounding
        scale = max(float(np.abs(a).max()), 1.0)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * scale, err_msg=both)


def _dcm2niix_available() -> bool:
    return shutil.which("dcm2niix") is not None


@pytest.mark.parametrize("series", SERIES or [None], ids=[s.name for s in SERIES] or ["no-data"])
def test_medimg_convert_matches_dcm2niix(series: Series | None, data_dir: Path, tmp_path: Path) -> None:
    assert series is not None, f"no CT or MR DICOM series found under {data_dir}"
    assert _dcm2niix_available(), "dcm2niix is not installed (apt-get install -y dcm2niix)"
    inp = _input_for(series, tmp_path)

    log, outputs = _run_dcm2niix(inp, tmp_path / "dcm2niix")
    if _UNSUPPORTED_SYNTAX.search(log):
        # This dcm2niix cannot decode the transfer syntax and its output is meaningless (1x1x1).
        # Compare with the reference conversion shipped with the data instead, and say so.
        reference = _reference_beside(inp)
        assert reference is not None, (
            f"dcm2niix cannot decode {series.name} and there is no reference NIfTI beside it; "
            f"the series cannot be checked:\n{log}"
        )
        what = (
            f"{series.name}: this dcm2niix cannot decode its transfer syntax; compared with the "
            f"shipped reference {reference.relative_to(data_dir)}"
        )
        warnings.warn(what, UserWarning, stacklevel=1)
    else:
        reference = _main_output(outputs, log)
        what = f"{series.name}: compared with dcm2niix's {reference.name}"
        if len(outputs) > 1:
            what += f" (it wrote {[f.name for f in outputs]})"

    ours = tmp_path / "medimg.nii"
    _run_medimg(inp, ours)
    _compare(reference, ours, what)
