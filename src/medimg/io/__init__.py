"""Reading and writing images: DICOM, NIfTI/NRRD/MHA, PNG/JPEG/TIFF, NPZ datasets."""

from __future__ import annotations

from .dicom import index, read_dicom
from .formats import read, write

__all__ = ["index", "read", "read_dicom", "write"]
