"""Finding things: candidate detection, false-positive reduction and characterisation."""

from __future__ import annotations

from .lung_nodules import detect_lung_lesions

__all__ = ["detect_lung_lesions"]
