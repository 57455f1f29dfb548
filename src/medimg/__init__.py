"""medimg: medical image analysis from DICOM and research formats to checked, measured reports."""

from __future__ import annotations

from .errors import InputError, MedimgError, SeriesError, SeriesSelectionError
from .image import Image
from .io import read, write

__version__ = "0.1.0"

__all__ = [
    "Image",
    "InputError",
    "MedimgError",
    "SeriesError",
    "SeriesSelectionError",
    "__version__",
    "read",
    "write",
]
