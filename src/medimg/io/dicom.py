"""DICOM files and folders: index them from headers, load a series as an :class:`Image`.

>>> idx = index("study/")                      # headers only; every series listed
>>> image = read_dicom("study/", series=idx.series[0].key)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..image import Image
from .dicom_index import DicomIndex, SeriesEntry, index_paths
from .dicom_series import SeriesSummary, build_image, summarize

__all__ = ["DicomIndex", "SeriesEntry", "SeriesSummary", "index", "is_dicom_path", "load_series", "read_dicom",
           "summarize"]

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
    image = build_image(entry, workers=workers, progress=progress)
    assert isinstance(image, Image)
    return image


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
    return load_series(idx.find(series), workers=workers, progress=progress)


def is_dicom_path(path: PathLike) -> bool:
    """Whether ``path`` is for the DICOM reader: a folder, or a file that looks like DICOM.

    A file is DICOM if it has the 'DICM' marker at byte 128, or (old exports without a preamble) if
    pydicom can read an image header from it.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        return True
    try:
        with open(p, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    lower = p.lower()
    if lower.endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg",
                       ".jpeg", ".tif", ".tiff", ".npz", ".gif", ".bmp")):
        return False
    from .dicom_index import read_record

    try:
        read_record(p)
    except Exception:
        return False
    return True
