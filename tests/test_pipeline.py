"""The analysis engine on real data: routing, series choice, refusals with their exit codes, and the
whole chest CT analysis end to end (``medimg analyze`` writing all six outputs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg.decide import ClinicalContext
from medimg.io.dicom import index, load_series
from medimg.pipeline import Case, analyze, choose_series, context_for, refusal_kind, series_facts
from medimg.protocols import SeriesFacts, orientation_of, route, usable
from medimg.protocols import chest_ct as chest_steps
from medimg.report.model import StudyInfo

OUTPUTS = ("report.json", "report.html", "report.pdf", "sr.dcm", "seg.dcm", "fhir.json")


@pytest.fixture(scope="module")
def lung_study(data_dir: Path) -> Path:
    return data_dir / "ct" / "lung-pet-ct-dx-A0001"


@pytest.fixture(scope="module")
def abdomen_ct(data_dir: Path) -> Path:
    return data_dir / "ct" / "totalseg-example" / "dicom"


def medimg(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medimg", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------------------- routing
def test_routing_picks_chest_ct_and_the_lung_kernel_series(lung_study: Path) -> None:
    choice = choose_series(index(lung_study))
    assert choice.protocol == "chest_ct"
    assert choice.entry is not None and choice.entry.series_number == 2
    assert choice.facts is not None and choice.facts.kernel == "L"
    # Both series are axial 64 x 5 mm: the reason names the other series and the deciding rule.
    assert "series 3" in choice.reason
    assert "kernel B is a soft-tissue kernel" in choice.reason
    assert "chest" in choice.reason.lower()


def test_series_facts_from_headers(lung_study: Path) -> None:
    facts = {f.series_number: f for f in (series_facts(e) for e in index(lung_study).series)}
    assert set(facts) == {2, 3}
    f = facts[3]
    assert (f.modality, f.orientation, f.slices, f.slice_spacing, f.kernel) == (
        "CT", "axial", 64, 5.0, "B")
    assert f.study_description == "Chest" and not f.localizer and not f.problem


def test_abdominal_ct_is_not_routed_to_chest_ct(abdomen_ct: Path) -> None:
    choice = choose_series(index(abdomen_ct))
    assert choice.entry is None
    assert "20 slices" in choice.reason and "at least 30" in choice.reason
    # Forcing the protocol does not make a 20-slice series usable.
    forced = choose_series(index(abdomen_ct), protocol="chest_ct")
    assert forced.entry is None and "20 slices" in forced.reason


def test_image_check_refuses_a_ct_without_lungs(abdomen_ct: Path) -> None:
    """Headers can lie or say nothing: the localisation step checks for lungs in the image."""
    image = load_series(index(abdomen_ct).series[0])
    case = chest_steps.localisation(Case("chest_ct", StudyInfo(), image))
    assert case.stop_kind == "input"
    assert case.stopped is not None and "no lungs in the image" in case.stopped
    assert case.notes["lung_air_ml"] < chest_steps.MIN_LUNG_ML


def test_image_check_finds_the_lungs_of_the_chest_ct(data_dir: Path) -> None:
    image = load_series(index(data_dir / "ct" / "lung-pet-ct-dx-A0001" / "series-2").series[0])
    case = chest_steps.localisation(Case("chest_ct", StudyInfo(), image))
    assert case.stopped is None
    assert case.notes["lung_air_ml"] > 2000  # two adult lungs hold litres of air
    assert case.notes["lungs_complete"] is True


@pytest.mark.parametrize(("body_part", "description", "protocol"), [
    ("CHEST", "", "chest_ct"),
    ("", "CT THORAX C-", "chest_ct"),
    ("CHEST_ABDOMEN_PELVIS", "", "chest_ct"),  # the chest is in it
    ("ABDOMEN", "CT ABDOMEN", None),
    ("HEAD", "", None),
    ("", "", "chest_ct"),  # no region named: the image decides (localisation step)
])
def test_route_by_region_words(body_part: str, description: str, protocol: str | None) -> None:
    facts = SeriesFacts("k", 1, "CT", series_description=description, body_part=body_part)
    assert route(facts)[0] == protocol


def test_route_needs_ct() -> None:
    name, why = route(SeriesFacts("k", 1, "MR", body_part="CHEST"))
    assert name is None and "needs CT" in why


@pytest.mark.parametrize(("changes", "needle"), [
    ({"slices": 1}, "single slice"),
    ({"slices": 20}, "20 slices"),
    ({"localizer": True}, "localizer"),
    ({"orientation": "coronal"}, "coronal orientation"),
    ({"problem": "mixed geometry"}, "cannot be loaded"),
])
def test_unusable_series(changes: dict[str, object], needle: str) -> None:
    base = dict(key="k", series_number=1, modality="CT", orientation="axial", slices=64,
                slice_spacing=5.0)
    problem = usable(SeriesFacts(**{**base, **changes}), "chest_ct")  # type: ignore[arg-type]
    assert problem is not None and needle in problem
    assert usable(SeriesFacts(**base), "chest_ct") is None  # type: ignore[arg-type]


def test_orientation_from_cosines() -> None:
    assert orientation_of((1, 0, 0, 0, 1, 0)) == "axial"
    assert orientation_of((1, 0, 0, 0, 0, -1)) == "coronal"
    assert orientation_of((0, 1, 0, 0, 0, -1)) == "sagittal"
    assert orientation_of((1, 0, 0, 0, 0.7071, 0.7071)) == "oblique"
    assert orientation_of(None) == "unknown"


def test_context_reads_age_and_states_sources(lung_study: Path) -> None:
    entry = index(lung_study / "series-2").series[0]
    ctx = context_for(entry)
    assert ctx.age_years == 58  # Patient's Age 058Y
    assert ctx.screening is None  # "Chest" does not say screening
    assert "058Y" in ctx.sources["age_years"]
    given = context_for(entry, "screening")
    assert given.screening is True and given.sources["screening"] == "--context screening"
    explicit = context_for(entry, ClinicalContext(known_cancer=True))
    assert explicit.known_cancer is True and explicit.age_years == 58


# ---------------------------------------------------------------------------------------- refusals
def _copy(files: list[Path], dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in files:
        shutil.copy(f, dest / f.name)
    return dest


def _series_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "ct" / "lung-pet-ct-dx-A0001" / "series-2").glob("*.dcm"))


@pytest.fixture(scope="module")
def noisy_series(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of series-2 with Gaussian noise of 200 HU added (stored values, slope 1)."""
    dest = tmp_path_factory.mktemp("noisy") / "series-2-noisy"
    dest.mkdir()
    rng = np.random.default_rng(7)
    for f in _series_files(data_dir):
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array.astype(np.float32)
        arr += rng.normal(0.0, 200.0, arr.shape).astype(np.float32)
        top = 2 ** int(ds.BitsStored) - 1
        ds.PixelData = np.clip(np.rint(arr), 0, top).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(dest / f.name)
    return dest


def test_refuses_a_folder_without_dicom_images(lung_study: Path) -> None:
    report, image = analyze(lung_study / "annotations")
    assert image is None
    assert report.status == "refused" and refusal_kind(report) == "input"
    assert report.refusal is not None and "no DICOM image series" in report.refusal
    assert "20 file(s) seen" in report.refusal
    assert report.triage is not None and report.triage.priority == "soon"
    assert report.impression.startswith("No analysis was done")
    assert report.findings == [] and report.recommendations == []


def test_refuses_a_single_slice(data_dir: Path, tmp_path: Path) -> None:
    one = _copy(_series_files(data_dir)[30:31], tmp_path / "one")
    report, image = analyze(one)
    assert image is None and refusal_kind(report) == "input"
    assert report.refusal is not None and "single slice" in report.refusal
    assert report.study.series_choice == report.refusal  # the routing said why, in the study too


def test_refuses_the_abdominal_ct(abdomen_ct: Path) -> None:
    report, _ = analyze(abdomen_ct)
    assert refusal_kind(report) == "input"
    assert report.protocol == "chest_ct"  # routed there (no region named), then found unusable
    assert report.refusal is not None and "20 slices" in report.refusal


def test_refuses_a_series_with_a_gap(data_dir: Path, tmp_path: Path) -> None:
    """A missing slice in the lungs is refused, not analysed with a warning: the reader fills the gap
    by interpolation, and a nodule smaller than the gap could be missed or measured on made-up
    planes.  The refusal comes from the quality check, so the report shows that check."""
    files = _series_files(data_dir)
    gap = _copy(files[:32] + files[33:], tmp_path / "gap")
    report, image = analyze(gap)
    assert image is not None  # loaded, then refused by the quality step
    assert refusal_kind(report) == "quality"
    assert report.quality is not None and report.quality["missing_slices"].status == "fail"
    assert report.refusal is not None and "missing_slices" in report.refusal
    assert [s.algorithm.rsplit(".", 1)[-1] for s in report.steps] == ["choose_series", "quality"]
    assert "segmentation" not in report.timings


def test_refuses_a_noisy_series(noisy_series: Path) -> None:
    report, _ = analyze(noisy_series)
    assert refusal_kind(report) == "quality"
    assert report.quality is not None and report.quality["noise"].status == "fail"
    assert report.refusal is not None and "noise" in report.refusal
    assert report.findings == [] and report.triage is not None


def test_missing_path_raises(tmp_path: Path) -> None:
    from medimg.errors import InputError

    with pytest.raises(InputError, match="no such file or folder"):
        analyze(tmp_path / "nothing")


def test_cli_refusals_exit_codes_and_reports(lung_study: Path, noisy_series: Path,
                                             tmp_path: Path) -> None:
    for src, code, needle in ((lung_study / "annotations", 4, "no DICOM image series"),
                              (noisy_series, 5, "quality check")):
        out = tmp_path / src.name
        out.mkdir()
        (out / "seg.dcm").write_bytes(b"from an older analysis")
        proc = medimg("analyze", src, "-o", out)
        assert proc.returncode == code, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "analysis refused" in lines[0] and needle in lines[0]
        doc = json.loads((out / "report.json").read_text())
        assert doc["status"] == "refused" and needle in doc["refusal"]
        assert (out / "report.html").is_file() and (out / "fhir.json").is_file()
        assert not (out / "seg.dcm").exists()  # nothing segmented: an older SEG must not stay


def test_cli_rejects_unknown_protocol(lung_study: Path, tmp_path: Path) -> None:
    proc = medimg("analyze", lung_study, "-o", tmp_path, "--protocol", "knee_mri")
    assert proc.returncode == 2 and "unknown protocol 'knee_mri'" in proc.stderr


# ---------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_analyze_end_to_end_on_series_2(lung_study: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = medimg("analyze", lung_study / "series-2", "-o", out)
    assert proc.returncode == 0, proc.stderr
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    doc = json.loads((out / "report.json").read_text())
    assert doc["status"] == "complete" and doc["protocol"] == "chest_ct"
    assert doc["quality"]["verdict"] in ("pass", "warn")
    steps = [s["algorithm"] for s in doc["steps"]]
    assert steps[0] == "medimg.pipeline.choose_series"
    for name in ("quality", "localisation", "characterisation", "quantification", "comparison",
                 "decision_support", "report"):
        assert f"medimg.protocols.chest_ct.{name}" in steps
    assert {"index", "load", "quality", "segmentation", "detection"} <= set(doc["timings"])
    names = {s["name"] for s in doc["structures"]}
    assert {"lung_left", "lung_right"} <= names
    # The patient has a known lung tumour of several centimetres (boxes of the collection's
    # annotations are about 58 x 77 mm): it must be found, called a mass and sent urgently.
    masses = [f for f in doc["findings"] if f["kind"] == "mass"]
    assert masses, [(f["kind"], f["measurements"]) for f in doc["findings"]]
    long_axes = [m["value"] for f in masses for m in f["measurements"]
                 if m["name"] == "long_axis_diameter"]
    assert max(long_axes) >= 30.0
    for f in doc["findings"]:
        assert f["provenance"]["algorithm"] and f["provenance"]["version"]
        assert any(m["name"] == "mean_diameter" for m in f["measurements"])
    recs = {r["guideline"]: r for r in doc["recommendations"]}
    assert not recs["Fleischner 2017"]["applicable"] and "mass" in recs["Fleischner 2017"]["text"]
    assert not recs["Lung-RADS v2022"]["applicable"]  # a diagnostic "Chest" CT, not screening
    assert "screen for lung cancer" in recs["Lung-RADS v2022"]["rule"]
    assert doc["triage"]["priority"] == "urgent" and "mass" in doc["triage"]["reason"]
    assert "series 2" in doc["study"]["series_choice"]
    assert "not a diagnosis" in doc["disclaimer"]


@pytest.mark.slow
def test_comparison_with_a_prior(lung_study: Path) -> None:
    """Series 3 is the same acquisition reconstructed with another kernel: as a 'prior' the mass
    must be matched (not new), with about the same volume, and never called growing (same day)."""
    report, _ = analyze(lung_study / "series-2", priors=[lung_study / "series-3"])
    assert report.status == "complete"
    assert report.findings and len(report.comparisons) == len(report.findings)
    masses = [f.id for f in report.findings if f.kind == "mass"]
    for c in report.comparisons:
        if c.finding_id in masses:
            assert c.prior_finding_id is not None, c.summary
            # The volume is the stable measure across kernels (diameters depend on the slice the
            # long axis is drawn on and moved by several mm between the two reconstructions).
            volume = next(m for m in c.changes if m.name == "volume_change")
            assert abs(volume.value) < 15.0, c.summary
            interval = next(m for m in c.changes if m.name == "interval")
            assert interval.value == 0
            assert "same study date" in c.summary and "not growth" in c.summary
