"""Calibrate and validate the quality checks on real images and degraded copies of them.

    python -m medimg.quality.calibrate [--data DIR] [--write docs/quality.md] [--json FILE] [--quick]

Every clean image in the catalogue below must pass; every degraded copy must be flagged (warn or
fail) by the check that names the degradation.  The script prints, and with ``--write`` puts into
docs/quality.md between the ``calibration-table`` markers, the detection rate per degradation and
level and the false-alarm rate on the clean images.  ``--quick`` uses a few images per kind (what
the fast tests use).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..image import Image
from . import degrade
from .assess import assess
from .regions import image_kind

__all__ = ["DEGRADATIONS", "Degradation", "Entry", "Outcome", "catalog", "clean_images", "evaluate",
           "main", "run", "summarise"]


@dataclass(frozen=True)
class Entry:
    """One clean image: where it is, what it is (the file may not say), how to assess it."""

    path: str
    modality: str | None = None  # set when the file does not record it (NIfTI, NRRD, JPEG ...)
    protocol: str | None = None
    dicom_series: bool = False
    quick: bool = False
    note: str = ""
    #: Checks that rightly flag a real artefact of this image (not counted as false alarms).
    expect: tuple[str, ...] = ()


def _ny_sbu(data: Path) -> list[Entry]:
    folder = data / "registration" / "ny-sbu"
    files = sorted(folder.glob("*/*.dcm"))
    return [Entry(str(p.relative_to(data)), quick=(i == 0)) for i, p in enumerate(files)]


def _glob(data: Path, pattern: str, modality: str, quick_first: int = 0) -> list[Entry]:
    files = sorted(data.glob(pattern))
    return [Entry(str(p.relative_to(data)), modality, quick=i < quick_first)
            for i, p in enumerate(files)]


def catalog(data: Path) -> list[Entry]:
    """The clean images used for calibration (see docs/quality.md for what was left out and why)."""
    ct = [
        Entry("ct/lung-pet-ct-dx-A0001/series-2", protocol="chest_ct", dicom_series=True),
        Entry("ct/lung-pet-ct-dx-A0001/series-3", protocol="chest_ct", dicom_series=True),
        Entry("ct/totalseg-example/dicom", dicom_series=True, quick=True),
        Entry("ct/totalseg-example/example_ct.nii.gz", "CT", quick=True),
    ]
    mr = [
        Entry("mr/pyradiomics/brain1_image.nrrd", "MR", protocol="brain_mri", quick=True),
        Entry("mr/pyradiomics/brain2_image.nrrd", "MR", protocol="brain_mri"),
        Entry("mr/pyradiomics/breast1_image.nrrd", "MR", protocol="roi",
              note="a crop around a tumour"),
        Entry("mr/pyradiomics/prostate_phantom_subvolume.nrrd", "MR", protocol="roi",
              note="a crop of a phantom"),
        Entry("mr/voxelmorph-t1/test_scan.npz", "MR"),
        Entry("registration/ants/ch2.nii.gz", "MR"),
        Entry("registration/ants/mni.nii.gz", "MR"),
        Entry("registration/ants/oasis_mni.nii.gz", "MR"),
        Entry("ct/totalseg-example/example_mr_sm.nii.gz", "MR"),
        Entry("mr/dcm-qa-ts/In/1.dcm", quick=True, expect=("ghosting",),
              note="echo-planar: a real Nyquist (N/2) ghost shows above and below the head"),
    ]
    return (ct + _ny_sbu(data) + mr
            + _glob(data, "registration/ants/r*slice.jpg", "MR", quick_first=1)
            + _glob(data, "xray/lung-seg-2d/?.jpg", "DX", quick_first=1)
            + _glob(data, "retina/drive/*/images/*.tif", "OP", quick_first=2))



def load(data: Path, entry: Entry) -> Image:
    from ..io import read

    image = read(data / entry.path)
    if entry.modality:
        image = image.replace(modality=entry.modality)
    return image


def clean_images(data: Path, quick: bool = False) -> Iterator[tuple[Entry, Image]]:
    for entry in catalog(data):
        if quick and not entry.quick:
            continue
        yield entry, load(data, entry)


# ---------------------------------------------------------------------------------------- degradations
@dataclass
class Degradation:
    """One kind of degradation at one level.

    ``make(entry, image, seed)`` returns the degraded image and the protocol to assess it with (or
    ``None`` when it does not apply to that image); it is flagged when any of ``checks`` is not
    ``pass``, and counted as not measurable when none of ``measured_by`` (default: ``checks``) has
    a value for it (no background to look for ghosts in, say).  ``reject`` marks levels a
    radiographer would send back.
    """

    name: str
    level: str
    checks: tuple[str, ...]
    make: Callable[[Entry, Image, int, Path], tuple[Image, str | None] | None]
    reject: bool
    measured_by: tuple[str, ...] = ()


def _kind(image: Image) -> str:
    return image_kind(image)


def _noise(level_ct: float, level_rel: float) -> Callable[..., Any]:
    def make(entry: Entry, image: Image, seed: int, data: Path) -> tuple[Image, str | None]:
        if _kind(image) == "ct":
            return degrade.add_noise(image, level_ct, seed=seed, relative=False), entry.protocol
        return degrade.add_noise(image, level_rel, seed=seed), entry.protocol
    return make


def _simple(fn: Callable[[Image], Image], kinds: tuple[str, ...],
            coverage: bool = False) -> Callable[..., Any]:
    def make(entry: Entry, image: Image, seed: int, data: Path) -> tuple[Image, str | None] | None:
        if _kind(image) not in kinds:
            return None
        if coverage and entry.protocol == "roi":
            return None
        return fn(image), entry.protocol
    return make


def _seeded(fn: Callable[[Image, int], Image], kinds: tuple[str, ...],
            volumes_only: bool = False) -> Callable[..., Any]:
    def make(entry: Entry, image: Image, seed: int, data: Path) -> tuple[Image, str | None] | None:
        if _kind(image) not in kinds or (volumes_only and image.is_2d):
            return None
        return fn(image, seed), entry.protocol
    return make


def _drop(count: int) -> Callable[..., Any]:
    def make(entry: Entry, image: Image, seed: int, data: Path) -> tuple[Image, str | None] | None:
        if not entry.dicom_series:
            return None
        return degrade.drop_slices(data / entry.path, count, seed=seed), entry.protocol
    return make


def _not_hu(how: str) -> Callable[..., Any]:
    def make(entry: Entry, image: Image, seed: int, data: Path) -> tuple[Image, str | None] | None:
        kind = _kind(image)
        if how == "stored" and kind == "ct":
            return image.replace(array=image.array.astype(np.int32) + 1024), None
        if how == "screenshot" and kind == "ct":
            from ..preprocess import window

            return window(image, "abdomen", dtype="uint8"), None
        if how == "mr_as_ct" and kind == "mr":
            return image.replace(modality="CT"), None
        return None
    return make


def _wrong_part(entry: Entry, image: Image, seed: int, data: Path) -> tuple[Image, str | None] | None:
    if _kind(image) != "ct" or image.is_2d or image.spatial_shape[0] < 30:
        return None
    from .checks import estimate_body_part
    from .protocols import body_part_from_term
    from .regions import regions

    part = body_part_from_term(image.meta.get("body_part_examined")) or estimate_body_part(
        image, "ct", regions(image))
    return image, ("head_ct" if part != "head" else "chest_ct")


def _few_slices(entry: Entry, image: Image, seed: int, data: Path) -> tuple[Image, str | None] | None:
    if entry.protocol not in ("chest_ct", "brain_mri"):
        return None
    from ..preprocess import crop

    z = image.spatial_shape[0]
    keep = 5
    start = (z - keep) // 2
    return crop(image, (start, 0, 0), (start + keep, *image.spatial_shape[1:])), entry.protocol


def _spacing(factor: float) -> Callable[..., Any]:
    def make(entry: Entry, image: Image, seed: int, data: Path) -> tuple[Image, str | None] | None:
        if _kind(image) not in ("ct", "mr", "xray") or str(image.meta.get("source_format", "")).upper() in (
                "JPEG", "PNG", "TIFF", "GIF"):
            return None
        sp = image.spacing.copy()
        sp[1:] *= factor
        return image.replace(spacing=sp), entry.protocol
    return make


IMAGING = ("ct", "mr", "xray", "photo")

DEGRADATIONS: list[Degradation] = [
    Degradation("noise", "CT 10 HU / others 2%", ("noise", "snr", "cnr"), _noise(10, 0.02), False),
    Degradation("noise", "CT 25 HU / others 5%", ("noise", "snr", "cnr"), _noise(25, 0.05), False),
    Degradation("noise", "CT 50 HU / others 10%", ("noise", "snr", "cnr"), _noise(50, 0.10), True),
    Degradation("noise", "CT 100 HU / others 20%", ("noise", "snr", "cnr"), _noise(100, 0.20), True),
    Degradation("blur", "sigma 1 px", ("sharpness",), _simple(lambda i: degrade.blur(i, 1.0), IMAGING), False),
    Degradation("blur", "sigma 2 px", ("sharpness",), _simple(lambda i: degrade.blur(i, 2.0), IMAGING), True),
    Degradation("blur", "sigma 3 px", ("sharpness",), _simple(lambda i: degrade.blur(i, 3.0), IMAGING), True),
    Degradation("fov_cut", "3% of width", ("fov_cut",),
                _simple(lambda i: degrade.crop_fov(i, 0.03), ("ct", "mr", "photo"), True), False),
    Degradation("fov_cut", "10% of width", ("fov_cut",),
                _simple(lambda i: degrade.crop_fov(i, 0.10), ("ct", "mr", "photo"), True), True),
    Degradation("fov_cut", "20% of width", ("fov_cut",),
                _simple(lambda i: degrade.crop_fov(i, 0.20), ("ct", "mr", "photo"), True), True),
    Degradation("missing_slices", "1 slice", ("missing_slices",), _drop(1), True),
    Degradation("missing_slices", "3 slices", ("missing_slices",), _drop(3), True),
    Degradation("few_slices", "5 slices for a 3-D protocol", ("slice_count",), _few_slices, True),
    Degradation("saturation", "2% burnt out", ("clipping",),
                _simple(lambda i: degrade.saturate(i, 0.02), ("xray", "photo")), False),
    Degradation("saturation", "10% burnt out", ("clipping",),
                _simple(lambda i: degrade.saturate(i, 0.10), ("xray", "photo")), True),
    Degradation("saturation", "25% burnt out", ("clipping",),
                _simple(lambda i: degrade.saturate(i, 0.25), ("xray", "photo")), True),
    Degradation("low_contrast", "range x0.5", ("dynamic_range",),
                _simple(lambda i: degrade.compress_contrast(i, 0.5), ("xray", "photo")), False),
    Degradation("low_contrast", "range x0.25", ("dynamic_range",),
                _simple(lambda i: degrade.compress_contrast(i, 0.25), ("xray", "photo")), True),
    Degradation("low_contrast", "range x0.1", ("dynamic_range",),
                _simple(lambda i: degrade.compress_contrast(i, 0.1), ("xray", "photo")), True),
    Degradation("motion", "2 deg / 2 mm, 1 move", ("ghosting", "sharpness"),
                _seeded(lambda i, s: degrade.motion(i, 2, 2, 1, seed=s), ("mr",), True), False,
                ("ghosting",)),
    Degradation("motion", "5 deg / 5 mm, 2 moves", ("ghosting", "sharpness"),
                _seeded(lambda i, s: degrade.motion(i, 5, 5, 2, seed=s), ("mr",), True), False,
                ("ghosting",)),
    Degradation("motion", "10 deg / 10 mm, 3 moves", ("ghosting", "sharpness"),
                _seeded(lambda i, s: degrade.motion(i, 10, 10, 3, seed=s), ("mr",), True), True,
                ("ghosting",)),
    Degradation("ghosting", "intensity 0.2", ("ghosting",),
                _seeded(lambda i, s: degrade.ghosting(i, 0.2, seed=s), ("mr",)), False),
    Degradation("ghosting", "intensity 0.5", ("ghosting",),
                _seeded(lambda i, s: degrade.ghosting(i, 0.5, seed=s), ("mr",)), True),
    Degradation("ghosting", "intensity 0.8", ("ghosting",),
                _seeded(lambda i, s: degrade.ghosting(i, 0.8, seed=s), ("mr",)), True),
    Degradation("not_hu", "stored values (+1024)", ("modality_values",), _not_hu("stored"), True),
    Degradation("not_hu", "8-bit screenshot", ("modality_values",), _not_hu("screenshot"), True),
    Degradation("wrong_modality", "MR labelled CT", ("modality_values",), _not_hu("mr_as_ct"), True),
    Degradation("wrong_body_part", "protocol for another part", ("body_part",), _wrong_part, True),
    Degradation("spacing", "pixel size x10", ("spacing",), _spacing(10.0), True),
    Degradation("spacing", "pixel size x0.02", ("spacing",), _spacing(0.02), True),
]


# ---------------------------------------------------------------------------------------- running
@dataclass
class Outcome:
    image: str
    kind: str
    degradation: str
    level: str
    reject: bool
    flagged: bool
    verdict: str
    measurable: bool = True
    statuses: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


def _outcome(entry: Entry, kind: str, name: str, level: str, reject: bool, checks: tuple[str, ...],
             image: Image, protocol: str | None, measured_by: tuple[str, ...] = ()) -> Outcome:
    rep = assess(image, protocol=protocol)
    statuses: dict[str, str] = {c.name: c.status for c in rep.checks}
    values = {c.name: c.to_dict()["value"] for c in rep.checks}
    measurable = True
    if name == "clean":
        flagged = any(v != "pass" for k, v in statuses.items() if k not in entry.expect)
    else:
        flagged = any(statuses.get(c, "pass") != "pass" for c in checks)
        # The named check could not measure this image at all (e.g. no background beside a crop).
        measurable = flagged or any(values.get(c) is not None for c in (measured_by or checks))
    return Outcome(entry.path, kind, name, level, reject, flagged, rep.verdict,
                   measurable=measurable, statuses=statuses, values=values)


def evaluate(deg: Degradation, entry: Entry, image: Image, seed: int, data: Path) -> Outcome | None:
    """Degrade one clean image as ``deg`` says and assess it (``None`` when it does not apply,
    or when the clean image already shows that artefact: a detection could not be told apart)."""
    if set(deg.checks) & set(entry.expect):
        return None
    made = deg.make(entry, image, seed, data)
    if made is None:
        return None
    bad, protocol = made
    return _outcome(entry, image_kind(image), deg.name, deg.level, deg.reject, deg.checks, bad,
                    protocol, deg.measured_by)


def run(data: Path, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[Outcome]:
    """Assess every clean image and every applicable degraded copy of it."""
    outcomes = []
    extra = [Entry("registration/ct-2d-head/CT_2D_head_fixed.mha", "CT"),
             Entry("registration/ct-2d-head/CT_2D_head_moving.mha", "CT")]
    for idx, (entry, image) in enumerate(clean_images(data, quick)):
        kind = image_kind(image)
        if progress:
            progress(entry.path)
        outcomes.append(_outcome(entry, kind, "clean", "-", False, (), image, entry.protocol))
        for deg in DEGRADATIONS:
            outcome = evaluate(deg, entry, image, idx, data)
            if outcome is not None:
                outcomes.append(outcome)
    if not quick:
        # Real CT images whose values are not HU (8-bit exports of head CT), labelled CT.
        for entry in extra:
            image = load(data, entry)
            outcomes.append(_outcome(entry, "ct", "not_hu", "real 8-bit head CT", True,
                                     ("modality_values",), image, None))
    return outcomes


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    """Detection per degradation and level; false alarms on the clean images."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for o in outcomes:
        if o.degradation == "clean":
            continue
        row = rows.setdefault((o.degradation, o.level), {"degradation": o.degradation,
                                                         "level": o.level, "reject": o.reject,
                                                         "n": 0, "flagged": 0, "unmeasurable": 0,
                                                         "kinds": set()})
        if not o.measurable:
            row["unmeasurable"] += 1
            continue
        row["n"] += 1
        row["flagged"] += int(o.flagged)
        row["kinds"].add(o.kind)
    clean = [o for o in outcomes if o.degradation == "clean"]
    by_kind: dict[str, list[int]] = {}
    for o in clean:
        by_kind.setdefault(o.kind, [0, 0])
        by_kind[o.kind][0] += 1
        by_kind[o.kind][1] += int(o.flagged)
    alarms = [{"image": o.image, "verdict": o.verdict,
               "checks": {k: v for k, v in o.statuses.items() if v != "pass"}}
              for o in clean if o.flagged]
    reject = [r for r in rows.values() if r["reject"]]
    return {
        "rows": [dict(r, kinds=sorted(r["kinds"])) for r in rows.values()],
        "clean": {"n": len(clean), "flagged": sum(o.flagged for o in clean),
                  "by_kind": {k: {"n": v[0], "flagged": v[1]} for k, v in by_kind.items()},
                  "alarms": alarms},
        "reject_detection": {"n": sum(r["n"] for r in reject),
                             "flagged": sum(r["flagged"] for r in reject)},
    }


def markdown(summary: dict[str, Any]) -> str:
    """The calibration table for docs/quality.md."""
    lines = ["| degradation | level | reject? | images (kinds) | flagged by the named check | "
             "detection | not measurable |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        rate = f"{r['flagged'] / r['n']:.0%}" if r["n"] else "-"
        lines.append(f"| {r['degradation']} | {r['level']} | {'yes' if r['reject'] else 'no'} | "
                     f"{r['n']} ({', '.join(r['kinds'])}) | {r['flagged']} | {rate} | "
                     f"{r['unmeasurable'] or ''} |")
    c = summary["clean"]
    rd = summary["reject_detection"]
    lines += ["", f"Clean images: {c['n']}; false alarms (verdict not `pass`): {c['flagged']} "
                  f"({c['flagged'] / max(c['n'], 1):.1%}).  By kind: "
                  + ", ".join(f"{k} {v['flagged']}/{v['n']}" for k, v in sorted(c["by_kind"].items()))
                  + ".",
              f"Detection at the levels marked `reject`: {rd['flagged']}/{rd['n']} "
              f"({rd['flagged'] / max(rd['n'], 1):.1%})."]
    for a in c["alarms"]:
        lines.append(f"- false alarm: `{a['image']}` {a['verdict']}: {a['checks']}")
    return "\n".join(lines)


BEGIN = "<!-- calibration-table:begin -->"
END = "<!-- calibration-table:end -->"


def write_table(doc: Path, table: str) -> None:
    text = doc.read_text() if doc.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def _data_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("MEDIMG_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medimg.quality.calibrate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="real data folder (default $MEDIMG_DATA or ../shared/data)")
    parser.add_argument("--write", help="markdown file to put the table into (between markers)")
    parser.add_argument("--json", help="write every outcome (statuses and values) here")
    parser.add_argument("--quick", action="store_true", help="a few images per kind only")
    args = parser.parse_args(argv)
    data = _data_root(args.data)
    outcomes = run(data, quick=args.quick,
                   progress=lambda p: print(f"  {p}", file=sys.stderr, flush=True))
    summary = summarise(outcomes)
    table = markdown(summary)
    print(table)
    if args.write:
        write_table(Path(args.write), table)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary,
                                               "outcomes": [o.__dict__ for o in outcomes]},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
