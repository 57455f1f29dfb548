"""The committed training references are what the script makes from the real data today."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimg.monitoring.reference import (
    FORMAT,
    REFERENCES,
    build,
    load_reference,
    main,
    reference_dir,
)


def test_committed_references_are_up_to_date(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", "--data", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("up to date") == len(REFERENCES) == 4


def test_reference_contents() -> None:
    for protocol, n, model in (("chest_ct", 2, "medimg.detect.lung_nodules"), ("chest_xray", 4708, "cxr-pneumonia"),
                               ("breast_us", 624, "us-breast"), ("retina", 20, "retina-vessels")):
        ref = load_reference(protocol)
        assert ref is not None and ref["format"] == FORMAT and ref["n"] == n and ref["model"] == model
        for name, f in ref["features"].items():
            assert f["n"] in (0, n), (protocol, name)
            assert ("note" in f) == (f["n"] == 0), (protocol, name)
        assert (reference_dir() / f"{protocol}.json").stat().st_size < 16_000  # small enough to commit
    ct = load_reference("chest_ct")
    assert ct is not None
    assert ct["features"]["scanner"]["counts"] == {"Philips Brilliance16": 2}
    assert ct["features"]["kernel"]["counts"] == {"B": 1, "L": 1}
    assert ct["features"]["slice_thickness"]["values"] == [5.0, 5.0]
    assert len(load_reference("chest_xray")["features"]["px_mean"]["quantiles"]) == 101  # type: ignore[index]


def test_unknown_protocols(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert load_reference("brain_mri") is None
    with pytest.raises(ValueError, match="no drift reference is defined for protocol 'brain_mri'"):
        build("brain_mri")
    assert main(["brain_mri"]) == 2
    assert "unknown protocol 'brain_mri'" in capsys.readouterr().err
    (tmp_path / "chest_ct.json").write_text('{"format": "other/9"}')
    with pytest.raises(ValueError, match="regenerate it"):
        load_reference("chest_ct", tmp_path)
