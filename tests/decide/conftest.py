"""Stand-in findings for the decision-rule tests: only the numbers the rules read."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from medimg.report.model import Finding, Location, Measurement, Provenance

MakeFinding = Callable[..., Finding]


def _finding(fid: str = "n1", long_mm: float = 5.0, short_mm: float | None = None,
             type_: str | None = "solid", kind: str = "nodule", solid_mm: float | None = None,
             **characterisation: str) -> Finding:
    short = long_mm if short_mm is None else short_mm
    ms = [Measurement("long_axis_diameter", long_mm, "mm", "stand-in"),
          Measurement("short_axis_diameter", short, "mm", "stand-in")]
    if solid_mm is not None:
        ms.append(Measurement("solid_component_diameter", solid_mm, "mm", "stand-in"))
    ch = dict(characterisation)
    if type_ is not None:
        ch["type"] = type_
    return Finding(fid, kind, None, Location(side="right", zone="upper"), ms, 0.9,
                   Provenance("stand-in", "0"), ch)


@pytest.fixture
def make_finding() -> MakeFinding:
    """``make_finding(fid, long_mm, short_mm=None, type_="solid", kind="nodule", solid_mm=None)``."""
    return _finding
