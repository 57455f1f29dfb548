"""The command line as a user runs it: a real process, real data, exit codes and output checked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest


def run(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "medimg", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"medimg {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def test_info_json_lists_both_ct_series(data_dir: Path) -> None:
    folder = data_dir / "ct" / "lung-pet-ct-dx-A0001"
    proc = run("info", folder, "--json", check=True)
    listing = json.loads(proc.stdout)
    series = listing["series"]
    assert len(series) == 2
    expected_uids = set()
    for sub in ("series-2", "series-3"):
        first = sorted((folder / sub).glob("*.dcm"))[0]
        expected_uids.add(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)
    assert {s["series_instance_uid"] for s in series} == expected_uids
    for s in series:
        assert s["modality"] == "CT"
        assert s["instances"] == 64
        assert s["shape"] == [64, 512, 512]
        assert s["spacing"][0] == pytest.approx(5.0, abs=1e-3)
        assert s["spacing"][1] == pytest.approx(s["spacing"][2])
        assert s["transfer_syntaxes"] == ["1.2.840.10008.1.2"]
        assert s["warnings"] == []
        assert s["study_instance_uid"]
    # the licence and the XML annotations are not DICOM: skipped, not errors
    assert listing["skipped_non_dicom"] == 21
    assert listing["errors"] == []


def test_info_table_is_readable(ct_series: Path) -> None:
    proc = run("info", ct_series, check=True)
    assert "CT" in proc.stdout and "64 x 512 x 512" in proc.stdout
    assert "Implicit VR Little Endian" in proc.stdout


def test_info_reports_integrity_warning(ct_series: Path, tmp_path: Path) -> None:
    files = sorted(ct_series.glob("*.dcm"))
    positions = {f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
                 for f in files}
    ordered = sorted(files, key=positions.__getitem__)
    for i, f in enumerate(ordered[:12]):
        if i != 5:  # drop one slice from the middle
            shutil.copy(f, tmp_path / f"{i:03d}.dcm")
    listing = json.loads(run("info", tmp_path, "--json", check=True).stdout)
    (series,) = listing["series"]
    assert series["instances"] == 11
    assert series["shape"][0] == 12  # the gap is filled on the regular grid
    assert [w["code"] for w in series["warnings"]] == ["missing_slices"]


def test_convert_writes_nifti_with_the_series_geometry(ct_series: Path, tmp_path: Path) -> None:
    out = tmp_path / "ct.nii.gz"
    run("convert", ct_series, out, check=True)
    img = nib.load(out)
    assert img.shape == (512, 512, 64)
    data = np.asanyarray(img.dataobj)
    # the lowest slice is the first voxel plane: compare to that file's HU
    files = sorted(ct_series.glob("*.dcm"))
    dss = [pydicom.dcmread(f) for f in files]
    low = min(dss, key=lambda d: float(d.ImagePositionPatient[2]))
    hu = low.pixel_array * float(low.RescaleSlope) + float(low.RescaleIntercept)
    assert np.array_equal(data[:, :, 0].T, hu)
    # voxel (0, 0, 0) is at the lowest slice's Image Position (Patient), in RAS
    ipp = np.array(low.ImagePositionPatient, dtype=float)
    assert np.allclose(img.affine[:3, 3], ipp * [-1, -1, 1], atol=1e-4)


def test_convert_png_with_window(ct_series: Path, tmp_path: Path) -> None:
    out = tmp_path / "slice.png"
    run("convert", ct_series, out, "--slice", "32", "--window=-1000,400", check=True)
    from PIL import Image as PILImage

    with PILImage.open(out) as im:
        assert im.size == (512, 512)
        arr = np.asarray(im)
    assert arr.dtype == np.uint8
    assert arr.min() == 0 and arr.max() == 255  # air below -1000 and bone above 400


def test_convert_needs_series_when_ambiguous(data_dir: Path, tmp_path: Path) -> None:
    folder = data_dir / "ct" / "lung-pet-ct-dx-A0001"
    out = tmp_path / "x.nii"
    proc = run("convert", folder, out)
    assert_one_line_error(proc, 2, "2 series found", "--series")
    assert not out.exists()
    uid = json.loads(run("info", folder, "--json", check=True).stdout)["series"][1]["series_key"]
    run("convert", folder, out, "--series", uid, check=True)
    assert nib.load(out).shape == (512, 512, 64)


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (("info", "/no/such/place"), 2, ("/no/such/place", "no such file")),
        (("convert", "/no/such/place", "/tmp/x.nii"), 2, ("/no/such/place",)),
    ],
)
def test_errors_are_one_line(args: tuple[str, ...], code: int, needles: tuple[str, ...]) -> None:
    assert_one_line_error(run(*args), code, *needles)


def test_unreadable_file_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x40\x00garbage")
    proc = run("convert", bad, tmp_path / "out.nii")
    assert_one_line_error(proc, 2, str(bad))
    assert not (tmp_path / "out.nii").exists()


def test_convert_to_missing_folder_is_exit_3(ct_series: Path, tmp_path: Path) -> None:
    out = tmp_path / "nowhere" / "ct.nii"
    assert_one_line_error(run("convert", ct_series, out), 3, str(out), "does not exist")


def test_version() -> None:
    proc = run("--version", check=True)
    import medimg

    assert proc.stdout.strip() == f"medimg {medimg.__version__}"
