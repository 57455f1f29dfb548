"""Time loading one DICOM series into a 3-D array: medimg against SimpleITK, pydicom and MONAI.

    python benchmarks/series_load.py [--data DIR] [--runs N]

Each tool runs in its own fresh Python process (only its own imports loaded: medimg's worker processes
are not forked from a process that MONAI has filled with torch), is warmed up once (file cache,
imports, lazy set-up), then timed N times, the tools taking turns run by run.  The table shows the
median wall-clock time and the median CPU time (the tool's process and its worker processes).  The
ratio is medimg's median divided by the fastest peer's: below 1.0 medimg is the fastest.  Every
tool's voxels are compared with medimg's (allowing for another axis order or direction, since the
tools orient arrays differently); a mismatch is printed loudly.  No assertion is made on time: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ToolProcess, data_root, median, print_table  # noqa: E402

SERIES = {
    "CT 64 slices, uncompressed": "ct/lung-pet-ct-dx-A0001/series-2",
    "CT 20 slices, JPEG 2000": "ct/totalseg-example/dicom",
}


# ---------------------------------------------------------------------------------------- loaders
def load_medimg(folder: Path) -> np.ndarray:
    import medimg

    return medimg.read(folder).array


def load_medimg_one_worker(folder: Path) -> np.ndarray:
    import medimg

    return medimg.read(folder, workers=1).array


def load_simpleitk(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(names)
    return sitk.GetArrayFromImage(reader.Execute())


def load_pydicom(folder: Path) -> np.ndarray:
    """The plain loop: read every file, sort along the slice normal, stack, apply rescale."""
    import pydicom

    slices = []
    for name in os.listdir(folder):
        ds = pydicom.dcmread(folder / name)
        ori = np.asarray(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(ori[:3], ori[3:])
        slices.append((float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))), ds))
    slices.sort(key=lambda s: s[0])
    planes = []
    for _, ds in slices:
        arr = ds.pixel_array.astype(np.float32)
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        planes.append(arr * slope + intercept)
    return np.stack(planes)


_MONAI_LOADER: Any = None


def load_monai(folder: Path) -> np.ndarray:
    """MONAI's LoadImage with its PydicomReader named explicitly (what LoadImage picks for a DICOM
    folder when no reader is given and nvImageCodec is absent)."""
    global _MONAI_LOADER
    if _MONAI_LOADER is None:
        from monai.transforms import LoadImage

        _MONAI_LOADER = LoadImage(reader="PydicomReader", image_only=True)
    return np.asarray(_MONAI_LOADER(str(folder)))


TOOLS: dict[str, tuple[str, Callable[[Path], np.ndarray]]] = {
    "medimg": ("medimg.read, default workers (processes, min(cores, 4))", load_medimg),
    "medimg 1 worker": ("medimg.read(workers=1): for reference, not in the ratio", load_medimg_one_worker),
    "SimpleITK": ("ImageSeriesReader: GetGDCMSeriesFileNames + Execute", load_simpleitk),
    "pydicom loop": ("dcmread each file, sort by IPP on normal, stack, rescale", load_pydicom),
    "MONAI": ("LoadImage(reader='PydicomReader')", load_monai),
}


# ------------------------------------------------------------------------------------ comparison
def same_voxels(reference: np.ndarray, other: np.ndarray) -> str | None:
    """How ``other`` matches ``reference`` up to axis order and direction, or None when it does not.

    Tries the axis permutations that give the reference's shape, then every combination of flips.
    """
    other = np.squeeze(other)
    if other.ndim != reference.ndim:
        return None
    for perm in itertools.permutations(range(other.ndim)):
        moved = np.transpose(other, perm)
        if moved.shape != reference.shape:
            continue
        for flips in itertools.product((False, True), repeat=other.ndim):
            axes = tuple(a for a, f in enumerate(flips) if f)
            candidate = np.flip(moved, axes) if axes else moved
            if np.array_equal(candidate, reference):
                how = []
                if perm != tuple(range(other.ndim)):
                    how.append(f"axes {perm}")
                if axes:
                    how.append(f"flipped {axes}")
                return ", ".join(how) or "as is"
    return None


def run_round_robin(
    folder: Path, runs: int
) -> tuple[dict[str, tuple[Any, list[float], str]], dict[str, list[float]]]:
    """Start every tool in its own process and warm it up once, then time the tools in turn,
    ``runs`` rounds: on a shared machine a burst of load from elsewhere then falls on all tools
    alike instead of on whichever ran at that moment.  Returns, by tool, (array, wall times, error)
    and the CPU times."""
    procs = {tool: ToolProcess(fn, folder) for tool, (_, fn) in TOOLS.items()}
    errors: dict[str, str] = {}
    times: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    cpu: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    try:
        for tool, proc in procs.items():
            _, _, error = proc.run()
            if error:
                errors[tool] = error
        for _ in range(runs):
            for tool, proc in procs.items():
                if tool in errors:
                    continue
                wall, cpu_s, error = proc.run()
                if error:
                    errors[tool] = error
                    continue
                times[tool].append(wall)
                cpu[tool].append(cpu_s)
        results = {
            tool: (None if tool in errors else proc.result(), times[tool], errors.get(tool, ""))
            for tool, proc in procs.items()
        }
    finally:
        for proc in procs.values():
            proc.close()
    return results, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="data folder (default: $MEDIMG_DATA or ../shared/data)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per tool (default 7)")
    args = parser.parse_args(argv)
    root = data_root(args.data)
    warnings.filterwarnings("ignore")  # MONAI and nibabel are chatty on import

    print(f"data: {root}   runs: {args.runs} (median; one untimed warm-up each)   "
          f"cores: {os.cpu_count()}")
    for tool, (how, _) in TOOLS.items():
        print(f"  {tool:16s} {how}")
    mismatches = 0
    for label, rel in SERIES.items():
        folder = root / rel
        n_files = len(os.listdir(folder))
        print(f"\n{label}: {rel} ({n_files} files)")
        results, cpu = run_round_robin(folder, args.runs)
        reference = results["medimg"][0]
        peers = {t: median(r[1]) for t, r in results.items()
                 if not t.startswith("medimg") and r[1]}
        fastest_peer = min(peers, key=peers.__getitem__) if peers else None
        rows = []
        for tool, (arr, times, error) in results.items():
            if error:
                rows.append([tool, "failed", "", "", "", "", error[:60]])
                continue
            med = median(times)
            if tool == "medimg":
                check = "reference"
            elif reference is None:
                check = "medimg failed"
            else:
                how = same_voxels(reference, arr)
                check = f"same ({how})" if how else "MISMATCH"
                if how is None:
                    mismatches += 1
                    print(f"!!! MISMATCH: {tool} voxels differ from medimg's on {rel}: "
                          f"shape {np.shape(arr)} vs {reference.shape}, dtype {arr.dtype} vs "
                          f"{reference.dtype}")
            rows.append([tool, f"{med * 1000:8.1f}", f"{min(times) * 1000:8.1f}",
                         f"{median(cpu[tool]) * 1000:8.1f}", f"{n_files / med:7.0f}",
                         str(arr.dtype), check])
        print_table(["tool", "median ms", "min ms", "cpu ms", "files/s", "dtype",
                     "voxels vs medimg"], rows)
        if results["medimg"][1] and fastest_peer:
            ratio = median(results["medimg"][1]) / peers[fastest_peer]
            verdict = "medimg is fastest" if ratio < 1.0 else f"{fastest_peer} is faster"
            print(f"medimg / fastest peer ({fastest_peer}): {ratio:.2f}  ({verdict})")
    if mismatches:
        print(f"\n!!! {mismatches} tool/series combination(s) gave voxels different from medimg's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
