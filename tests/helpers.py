"""Assertions shared by test modules (import as ``from helpers import assert_same_geometry``).

pytest puts ``tests/`` on ``sys.path`` (rootdir conftest, no ``__init__.py``), so this plain module is
importable from every test folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medimg.image import Image


def assert_same_geometry(a: Image, b: Image, atol: float = 1e-9, rtol: float = 0.0) -> None:
    """Assert two images lie on the same voxel grid in the patient frame.

    Compares the spatial shape exactly and spacing, origin and direction within ``atol`` (plus
    ``rtol`` times the expected value: use ``rtol=1e-6`` for formats that store float32, whose error
    grows with the size of the numbers).  ``b`` is the expected image.
    """
    assert a.spatial_shape == b.spatial_shape, (
        f"spatial shape {a.spatial_shape} != expected {b.spatial_shape}"
    )
    for name in ("spacing", "origin", "direction"):
        got, want = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(
            got, want, rtol=rtol, atol=atol,
            err_msg=f"{name} differs: got {np.asarray(got).tolist()}, "
                    f"expected {np.asarray(want).tolist()}",
        )


def part10_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively, sorted) that is a DICOM Part 10 file: it has the
    ``DICM`` marker after the 128-byte preamble."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                if fh.read(132)[128:132] == b"DICM":
                    out.append(p)
    return out


def put_concurrently(store: Any, study: list[tuple[bytes, str]], senders: int = 10) -> tuple[list[Any], list[BaseException]]:
    """``senders`` threads each offer every (data set, transfer syntax) of ``study`` to
    ``store.put_dataset`` at once, each in its own (seeded) order.  Returns every result and every
    exception raised."""
    import random
    import threading

    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def sender(seed: int) -> None:
        order = list(study)
        random.Random(seed).shuffle(order)
        for ds, ts in order:
            try:
                r = store.put_dataset(ds, ts)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:
                results.append(r)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results, errors
