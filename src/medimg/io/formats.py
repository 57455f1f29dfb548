"""Dispatch: pick the reader or writer for a path (placeholder, completed with the format modules)."""

from __future__ import annotations

import os

from ..image import Image
from .dicom import read_dicom


def read(path, series=None, **kwargs) -> Image:
    return read_dicom(path, series=series, **kwargs)


def write(image: Image, path: str | os.PathLike[str]) -> None:
    raise NotImplementedError
