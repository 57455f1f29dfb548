"""Measurements of segmented things: lesion diameters, volumes and intensity statistics."""

from __future__ import annotations

from .lesion import (
           AxialDiameters,
           axial_diameters,
           intensity_stats,
           lesion_measurements,
           volume_mm3,
)

__all__ = ["AxialDiameters", "axial_diameters", "intensity_stats", "lesion_measurements",
           "volume_mm3"]
