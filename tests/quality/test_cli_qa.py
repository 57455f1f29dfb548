"""`medimg qa PATH [--protocol NAME] [--json]`: the report, its JSON and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimg.cli import main


def test_qa_json_on_a_clean_ct(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["qa", str(data_dir / "ct" / "totalseg-example" / "dicom"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["verdict"] == "pass"
    names = [c["name"] for c in out["checks"]]
    assert {"noise", "sharpness", "missing_slices", "fov_cut"} <= set(names)
    for c in out["checks"]:
        assert set(c) >= {"name", "status", "value", "threshold", "reason"}
        assert c["status"] in ("pass", "warn", "fail")


def test_qa_text_report(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = data_dir / "xray" / "lung-seg-2d" / "1.jpg"
    assert main(["qa", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("quality: PASS") and "sharpness" in text


def test_qa_fail_verdict_exits_5(data_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    import pydicom

    src = data_dir / "ct" / "totalseg-example" / "dicom"
    files = sorted(src.iterdir(), key=lambda p: float(
        pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    for i, f in enumerate(files):
        if i != 10:  # one slice missing in the middle
            shutil.copy(f, tmp_path / f.name)
    code = main(["qa", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "fail" and code == 5
    missing = next(c for c in out["checks"] if c["name"] == "missing_slices")
    assert missing["status"] == "fail" and "missing" in missing["reason"]


def test_qa_unreadable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "broken.nii.gz"
    junk.write_bytes(b"not a nifti file")
    code = main(["qa", str(junk), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    out = json.loads(captured.out)
    assert out["verdict"] == "fail" and out["checks"][0]["name"] == "readable"
    err = captured.err.strip()
    assert err.startswith("medimg: ") and "\n" not in err and "Traceback" not in err


def test_qa_missing_path_and_bad_protocol(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qa", str(tmp_path / "nothing-here")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["qa", str(tmp_path), "--protocol", "knee"])
    assert exc.value.code == 2
    assert "unknown protocol 'knee'" in capsys.readouterr().err
