"""Store maintenance used by ``medimg store ...``: import files, list contents."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from .store import Store

__all__ = ["import_paths", "iter_files"]


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Every file under the given files and folders (recursively, sorted, hidden files skipped)."""
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if not f.startswith("."):
                        yield Path(root) / f
        elif p.exists():
            yield p
        else:
            raise InputError(p, "no such file or folder")


def import_paths(store: Store, paths: Iterable[str | os.PathLike[str]],
                 on_error: Callable[[InputError], None] | None = None) -> dict[str, Any]:
    """Store every DICOM Part 10 file found.  Files without the Part 10 ``DICM`` marker (licences, XML,
    images) are counted as ``skipped``; DICOM files that cannot be stored are reported through
    ``on_error`` (one line each) and counted as ``rejected``.  Returns counts per outcome."""
    counts: dict[str, Any] = {"stored": 0, "duplicate": 0, "conflict": 0, "kept": 0, "replaced": 0,
                              "rejected": 0, "skipped": 0}
    for f in iter_files(paths):
        try:
            with open(f, "rb") as fh:
                head = fh.read(132)
        except OSError as exc:
            counts["rejected"] += 1
            if on_error:
                on_error(InputError(f, f"cannot read ({exc.strerror})"))
            continue
        if head[128:132] != b"DICM":
            counts["skipped"] += 1
            continue
        try:
            result = store.put_path(f, source=f"import:{f}")
        except InputError as exc:
            counts["rejected"] += 1
            if on_error:
                on_error(exc)
            continue
        counts[result.outcome] += 1
    return counts
