"""Shared helpers of the benchmark scripts: where the data is, CPU time, tool processes, tables."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def data_root(arg: str | None) -> Path:
    """``--data``, else ``$MEDIMG_DATA``, else ``../shared/data`` beside the checkout."""
    if arg:
        return Path(arg)
    env = os.environ.get("MEDIMG_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (worker pools), user + system."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def _serve(conn: Any, fn: Callable[[Any], Any], arg: Any) -> None:
    """Body of a tool process: run ``fn(arg)`` when asked, send back its times or its result."""
    import time
    import warnings

    warnings.filterwarnings("ignore")  # MONAI and nibabel are chatty on import
    result: Any = None
    while True:
        command = conn.recv()
        if command == "run":
            try:
                c0 = cpu_seconds()
                t0 = time.perf_counter()
                result = fn(arg)
                conn.send((time.perf_counter() - t0, cpu_seconds() - c0, None))
            except Exception as exc:  # reported, not fatal: a peer may not read a series
                conn.send((None, None, f"{type(exc).__name__}: {exc}"))
        elif command == "result":
            conn.send(result)
        else:
            conn.close()
            return


class ToolProcess:
    """One tool in its own fresh interpreter (spawned, not forked), so each tool pays only for its
    own imports: e.g. medimg's worker processes are not forked from a process that MONAI has filled
    with torch.  Calls are made one at a time, so timings never overlap."""

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, fn, arg))
        self.proc.start()

    def run(self) -> tuple[float | None, float | None, str | None]:
        """Wall seconds, CPU seconds, error text (None when it worked) of one call."""
        self.conn.send("run")
        return self.conn.recv()

    def result(self) -> Any:
        self.conn.send("result")
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(timeout=30)
