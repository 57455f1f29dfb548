"""Header indexing rate: medimg's DICOM index against a plain pydicom header-reading loop.

    python benchmarks/header_index.py [--data DIR] [--runs N]

The files are every DICOM file under the data folder (``--data``, ``$MEDIMG_DATA`` or
``../shared/data``) plus, when no ``--data`` is given, the files of the pydicom-data package.  Which
files are DICOM is decided once, untimed, so both contenders read the same list:

* medimg: ``medimg.io.dicom.index(files)`` -- headers only, one record per file (geometry, rescale,
  pixel data location checked), grouped into series; its default worker processes, and one worker;
* pydicom: ``pydicom.dcmread(f, stop_before_pixels=True)`` for each file, nothing else.

One untimed warm-up each, then N timed runs taking turns; the table shows the median wall-clock time,
the median CPU time (this process and its worker processes) and the rate in files per second.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, data_root, median, print_table  # noqa: E402


def dicom_files(folders: list[Path]) -> list[str]:
    """Files under the folders that pydicom reads as DICOM (with a 'DICM' preamble)."""
    import pydicom

    out = []
    for folder in folders:
        for root, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                path = os.path.join(root, name)
                try:
                    pydicom.dcmread(path, stop_before_pixels=True)
                except Exception:
                    continue
                out.append(path)
    return out


def pydicom_loop(files: list[str]) -> int:
    import pydicom

    read = 0
    for f in files:
        try:
            pydicom.dcmread(f, stop_before_pixels=True)
            read += 1
        except Exception:
            pass
    return read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder to index (default: $MEDIMG_DATA or ../shared/data, "
                        "plus the pydicom-data files)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs (default 7)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from medimg.io.dicom import index

    folders = [data_root(args.data)]
    if not args.data:
        try:
            import data_store  # the import name of the pydicom-data distribution

            folders.append(Path(data_store.__file__).parent / "data")
        except ImportError:
            print("(pydicom-data is not installed: indexing the data folder only)")
    files = dicom_files(folders)
    result = index(files)
    print(f"folders: {', '.join(str(f) for f in folders)}")
    print(f"{len(files)} DICOM files; medimg finds {len(result.series)} series, "
          f"{len(result.errors)} file(s) it refuses; runs: {args.runs} (median, one warm-up each); "
          f"cores: {os.cpu_count()}")

    contenders: dict[str, Callable[[], object]] = {
        "medimg index (default workers)": lambda: index(files),
        "medimg index (workers=1)": lambda: index(files, workers=1),
        "pydicom dcmread loop": lambda: pydicom_loop(files),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()
    for _ in range(args.runs):
        for name, fn in contenders.items():
            c0 = cpu_seconds()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(cpu_seconds() - c0)
    rows = []
    for name, ts in times.items():
        med = median(ts)
        rows.append([name, f"{med * 1000:8.1f}", f"{min(ts) * 1000:8.1f}",
                     f"{median(cpu[name]) * 1000:8.1f}", f"{len(files) / med:8.0f}"])
    print()
    print_table(["", "median ms", "min ms", "cpu ms", "files/s"], rows)
    peer = median(times["pydicom dcmread loop"])
    for name in ("medimg index (default workers)", "medimg index (workers=1)"):
        ratio = median(times[name]) / peer
        print(f"{name} time / pydicom loop time: {ratio:.2f}  "
              f"(below 1.0: medimg indexes faster; medimg also extracts and checks every record)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
