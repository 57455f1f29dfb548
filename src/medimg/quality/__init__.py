"""Automatic image-quality assessment: is an image fit to read?

>>> from medimg.quality import assess
>>> report = assess(image, protocol="chest_ct")
>>> report.verdict, [(c.name, c.status) for c in report.checks]

Check names, what they measure and how their thresholds were calibrated: docs/quality.md.
"""

from __future__ import annotations

from .assess import assess
from .protocols import PROTOCOLS, Requirements
from .regions import image_kind
from .report import STATUSES, Check, QualityReport

__all__ = ["PROTOCOLS", "STATUSES", "Check", "QualityReport", "Requirements", "assess",
           "image_kind"]
