"""Anatomy segmentation: classical CT chest (body, lungs, airways); more organs to come."""

from __future__ import annotations

from .ct import ChestSegmentation, lung_zone, segment_chest

__all__ = ["ChestSegmentation", "lung_zone", "segment_chest"]
