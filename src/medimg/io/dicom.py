"""DICOM files and folders: index them from headers, load a series as an :class:`Image`.

>>> idx = index("study/")                      # headers only; every series listed
>>> image = read_dicom("study/", series=idx.series[0].key)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..image import Image
from .dicom_index import DicomIndex, SeriesEntry, index_paths
from .dicom_series import build_image

__all__ = ["DicomIndex", "SeriesEntry", "index", "load_series", "read_dicom"]

PathLike = str | os.PathLike[str]


def index(
    paths: PathLike | Sequence[PathLike],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DicomIndex:
    """Index files and folders (recursively) from their headers; see :func:`index_paths`."""
    return index_paths(paths, workers=workers, progress=progress)


def load_series(entry: SeriesEntry, *, workers: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> Image:
    """The Image of one series of an index."""
    return build_image(entry, workers=workers, progress=progress)


def read_dicom(
    paths: PathLike | Sequence[PathLike],
    series: str | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Image:
    """Read the one series in ``paths`` (a folder, a file or a list of files), or the one named.

    Raises :class:`~medimg.errors.SeriesSelectionError` when there is no series or several and none was
    chosen, :class:`~medimg.errors.SeriesError` when no honest volume can be built, and
    :class:`~medimg.errors.InputError` for unreadable files of the chosen series.
    """
    idx = index_paths(paths, workers=workers)
    entry = idx.find(series)
    return build_image(entry, workers=workers, progress=progress)
