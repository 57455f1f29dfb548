"""Time the whole chest CT analysis of one series, step by step, and measure its peak memory.

    python benchmarks/analyze.py [--data DIR] [--runs N] [--series REL]

Each run is a fresh Python process (spawned, so nothing is shared with the others): it imports medimg
(timed apart, not in the total), runs ``medimg.pipeline.analyze`` on the series and writes the six
outputs (``medimg.report.outputs.write_report``), as ``medimg analyze`` does.  The table shows every
step's median and minimum wall-clock time over the runs, the total (analysis + writing), the time to
just load the series (header index + pixels, medimg's reader, median of N loads in another fresh
process) and the total as a multiple of that load time.  Peak memory is the peak resident set size
(``getrusage`` ``ru_maxrss``) of the analysing process and of its largest child process (DICOM
reader workers, Chromium printing the PDF); their sum bounds the peak of the whole analysis.
Goals printed beside the figures: total under 30 s on the project's 2-core machine, peak under 4 GB.
Nothing is asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_root, print_table  # noqa: E402

SERIES = "ct/lung-pet-ct-dx-A0001/series-2"
GOAL_TOTAL_S = 30.0
GOAL_PEAK_GB = 4.0


def _analyse_once(folder: str, conn: Any) -> None:
    """Body of one run's process: import, analyse, write; send back times and peak memory."""
    import resource
    import warnings

    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    from medimg.pipeline import analyze
    from medimg.report.outputs import write_report

    imports = time.perf_counter() - t0

    def cpu() -> float:
        me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    c0 = cpu()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report, image = analyze(folder)
        t_analyze = time.perf_counter() - t0
        t0 = time.perf_counter()
        written = write_report(report, image, Path(out))
        t_write = time.perf_counter() - t0
    cpu_s = cpu() - c0
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    conn.send({
        "imports": imports, "analyze": t_analyze, "write": t_write, "steps": dict(report.timings),
        "status": report.status, "refusal": report.refusal, "findings": len(report.findings),
        "outputs": sorted(written), "shape": image.spatial_shape if image is not None else None,
        "peak_kib": me, "children_peak_kib": kids, "cpu": cpu_s,
    })
    conn.close()


def _load_times(folder: str, runs: int, conn: Any) -> None:
    """Body of the load-only process: one warm-up load, then ``runs`` timed loads."""
    from medimg.io.dicom import index, load_series

    load_series(index(folder).series[0])
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        load_series(index(folder).series[0])
        times.append(time.perf_counter() - t0)
    conn.send(times)
    conn.close()


def _in_process(target: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child))
    proc.start()
    result = parent.recv()
    proc.join(timeout=60)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="data folder (default: $MEDIMG_DATA or ../shared/data)")
    parser.add_argument("--runs", type=int, default=3, help="analysis runs (default 3)")
    parser.add_argument("--series", default=SERIES, help=f"series folder under the data (default {SERIES})")
    args = parser.parse_args(argv)
    folder = data_root(args.data) / args.series
    if not folder.is_dir():
        print(f"benchmarks/analyze.py: {folder}: no such folder; give --data", file=sys.stderr)
        return 2

    loads = _in_process(_load_times, str(folder), max(args.runs, 5))
    load_s = statistics.median(loads)
    runs = []
    for i in range(args.runs):
        res = _in_process(_analyse_once, str(folder))
        runs.append(res)
        print(f"run {i + 1}/{args.runs}: {res['analyze'] + res['write']:.2f} s, {res['status']}, "
              f"{res['findings']} finding(s), peak {res['peak_kib'] / 1024:.0f} MiB", flush=True)
    first = runs[0]
    if first["status"] != "complete":
        print(f"the analysis was refused: {first['refusal']}")

    steps = list(first["steps"])
    rows = []
    for name in steps:
        vals = [r["steps"].get(name, float("nan")) for r in runs]
        rows.append([name, f"{statistics.median(vals):.3f}", f"{min(vals):.3f}"])
    writes = [r["write"] for r in runs]
    rows.append(["write outputs", f"{statistics.median(writes):.3f}", f"{min(writes):.3f}"])
    totals = [r["analyze"] + r["write"] for r in runs]
    total = statistics.median(totals)
    rows.append(["TOTAL (analyze + write)", f"{total:.3f}", f"{min(totals):.3f}"])
    cpus = [r["cpu"] for r in runs]
    rows.append(["  CPU time of the total", f"{statistics.median(cpus):.3f}", f"{min(cpus):.3f}"])
    rows.append(["load only (index + pixels)", f"{load_s:.3f}", f"{min(loads):.3f}"])
    imports = [r["imports"] for r in runs]
    rows.append(["imports (not in total)", f"{statistics.median(imports):.3f}", f"{min(imports):.3f}"])

    print()
    print(f"chest CT analysis of {args.series}: shape {first['shape']}, {args.runs} run(s), each in "
          f"a fresh process; outputs {', '.join(first['outputs'])}")
    print_table(["step", "median s", "min s"], rows)
    peak_mib = max(r["peak_kib"] for r in runs) / 1024
    child_mib = max(r["children_peak_kib"] for r in runs) / 1024
    bound_gb = (peak_mib + child_mib) * 1024**2 / 1e9
    print()
    print(f"total / load time:  {total / load_s:.1f} x  (total {total:.2f} s, load {load_s:.3f} s)")
    print(f"peak memory (RSS):  {peak_mib:.0f} MiB analysing process; {child_mib:.0f} MiB largest child "
          f"process (DICOM reader workers, Chromium for the PDF); {bound_gb:.2f} GB at most together")
    print(f"goals: total < {GOAL_TOTAL_S:g} s: {'met' if total < GOAL_TOTAL_S else 'NOT met'}; "
          f"peak < {GOAL_PEAK_GB:g} GB: {'met' if bound_gb < GOAL_PEAK_GB else 'NOT met'}")
    print("(wall time well above CPU time means the machine was busy with other work: run again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
