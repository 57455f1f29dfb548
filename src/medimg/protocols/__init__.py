"""Clinical protocols: a dict of step lists, and the rules that route a DICOM series to one.

A protocol is a plain list of steps; a step is a function ``(Case) -> Case`` that adds results
(:class:`medimg.pipeline.Case`).  :data:`PROTOCOLS` maps a protocol name to its steps.

Routing reads only DICOM headers (:class:`SeriesFacts`, built from the header index): modality, Body
Part Examined, study/series descriptions and protocol name, image orientation, slice count and
spacing.  :func:`route` says which protocol a series is for and why; :func:`usable` says whether a
series can be analysed by a protocol and why not; :func:`rank_key` orders the usable series of a
study (axial, no gaps, thinnest, preferred kernel, original, most slices).  The image itself is checked
by the protocol's first steps (quality, and e.g. lungs present for chest CT).  Rules and their
reasons: docs/pipeline.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..quality import PROTOCOLS as QUALITY_REQUIREMENTS
from ..quality.checks import sharp_kernel
from . import chest_ct

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..pipeline import Case

__all__ = ["PROTOCOLS", "ROUTES", "Route", "SeriesFacts", "Step", "rank_key", "route", "usable"]

Step = Callable[["Case"], "Case"]

#: Protocol name -> its steps, in order.
PROTOCOLS: dict[str, list[Step]] = {
    "chest_ct": chest_ct.STEPS,
}


@dataclass(frozen=True)
class Route:
    """What a series needs, from its headers, to be routed to a protocol.

    Parameters
    ----------
    modalities:
        DICOM Modality values accepted.
    region_words:
        Words that name the protocol's region in Body Part Examined, Study/Series Description or
        Protocol Name (upper case, matched as substrings of the upper-cased text).
    other_region_words:
        Words that name another region; a series that names only another region is not routed.
    min_slices, max_slices:
        Slices a usable volume has (the minimum is the quality requirement of the same protocol).
    orientation:
        The orientation analysed (``"axial"``): other reformats of the same data are not chosen.
    prefer_sharp_kernel:
        Prefer a sharp (lung) reconstruction kernel among otherwise equal series.
    """

    modalities: tuple[str, ...]
    region_words: tuple[str, ...]
    other_region_words: tuple[str, ...]
    min_slices: int
    max_slices: int
    orientation: str = "axial"
    prefer_sharp_kernel: bool = False


ROUTES: dict[str, Route] = {
    "chest_ct": Route(
        modalities=("CT",),
        region_words=("CHEST", "THORAX", "THORAC", "LUNG", "PULM", "TORAX", "THX"),
        other_region_words=("HEAD", "BRAIN", "SKULL", "NECK", "ABDOMEN", "ABD", "PELVIS",
                            "LIVER", "KIDNEY", "SPINE", "KNEE", "HIP", "EXTREMIT", "ANKLE",
                            "SHOULDER", "SINUS", "ORBIT", "CARDIAC", "CORONARY"),
        min_slices=QUALITY_REQUIREMENTS["chest_ct"].min_slices,
        max_slices=2000,  # about 1.6 GB of float32 at 512 x 512: the memory budget of one analysis
        prefer_sharp_kernel=True,  # a lung kernel shows nodule margins best
    ),
}


@dataclass(frozen=True)
class SeriesFacts:
    """What routing knows of one series, from its headers only."""

    key: str
    series_number: int | None
    modality: str
    series_description: str = ""
    study_description: str = ""
    protocol_name: str = ""
    body_part: str = ""
    orientation: str = "unknown"  # axial / coronal / sagittal / oblique / unknown
    slices: int = 0
    slice_spacing: float | None = None  # mm between slices (z spacing of the volume)
    kernel: str = ""
    localizer: bool = False
    derived: bool = False  # ImageType DERIVED (a reformat or processed copy)
    warnings: tuple[str, ...] = ()  # reader warning codes (missing_slices, uneven_spacing, ...)
    problem: str = ""  # why the series cannot be loaded at all ("" when it can)
    study_date: str = ""
    study_instance_uid: str = ""

    @property
    def label(self) -> str:
        number = f"series {self.series_number}" if self.series_number is not None else "series"
        desc = f" '{self.series_description}'" if self.series_description else ""
        return f"{number}{desc}"

    @property
    def summary(self) -> str:
        spacing = f" at {self.slice_spacing:g} mm" if self.slice_spacing else ""
        kernel = f", kernel {self.kernel}" if self.kernel else ""
        return f"{self.modality}, {self.orientation}, {self.slices} slice(s){spacing}{kernel}"

    @property
    def text(self) -> str:
        """All the words that may name a region, upper-cased."""
        return " ".join((self.body_part, self.study_description, self.series_description,
                         self.protocol_name)).upper()


def orientation_of(cosines: tuple[float, ...] | None) -> str:
    """Axial, coronal or sagittal from Image Orientation (Patient) (row and column cosines)."""
    if not cosines or len(cosines) != 6:
        return "unknown"
    row, col = cosines[:3], cosines[3:]
    normal = (row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2],
              row[0] * col[1] - row[1] * col[0])
    axis = max(range(3), key=lambda i: abs(normal[i]))
    if abs(normal[axis]) < 0.8:  # more than ~37 degrees off every main plane
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _words(text: str, words: tuple[str, ...]) -> list[str]:
    return [w for w in words if w in text]


def route(facts: SeriesFacts) -> tuple[str | None, str]:
    """The protocol a series is for, from its headers, and why (``None``: no protocol fits)."""
    reasons = []
    for name, r in ROUTES.items():
        if facts.modality.upper() not in r.modalities:
            reasons.append(f"{name} needs {'/'.join(r.modalities)}, this is {facts.modality}")
            continue
        ours = _words(facts.text, r.region_words)
        others = _words(facts.text, r.other_region_words)
        if ours:
            return name, (f"{facts.modality} with {', '.join(ours).lower()} in its body part or "
                          f"descriptions")
        if others:
            reasons.append(f"{name}: the headers name another region "
                           f"({', '.join(others).lower()}) and not the chest")
            continue
        return name, (f"{facts.modality}; the headers name no region (body part "
                      f"'{facts.body_part or 'none'}'), so the image itself must confirm {name}")
    return None, "; ".join(reasons) or "no protocol is defined for this series"


def usable(facts: SeriesFacts, protocol: str) -> str | None:
    """Why ``facts`` cannot be analysed by ``protocol``, or ``None`` when it can."""
    r = ROUTES[protocol]
    if facts.problem:
        return f"cannot be loaded: {facts.problem}"
    if facts.modality.upper() not in r.modalities:
        return f"{facts.modality}, not {'/'.join(r.modalities)}"
    if facts.localizer:
        return "a localizer (scout) image"
    if facts.slices < 2:
        return f"a single slice, not a volume ({protocol} needs at least {r.min_slices} slices)"
    if facts.slices < r.min_slices:
        return f"{facts.slices} slices ({protocol} needs at least {r.min_slices} to cover the region)"
    if facts.slices > r.max_slices:
        return f"{facts.slices} slices (more than the {r.max_slices} one analysis can hold in memory)"
    if facts.orientation != r.orientation:
        return f"{facts.orientation} orientation ({protocol} analyses {r.orientation} series)"
    return None


def rank_key(facts: SeriesFacts, protocol: str) -> tuple[Any, ...]:
    """Sort key of usable series, best first: no gaps, thinnest, preferred kernel, original, most
    slices, lowest series number."""
    r = ROUTES[protocol]
    gaps = "missing_slices" in facts.warnings
    spacing = round(facts.slice_spacing, 2) if facts.slice_spacing else 99.0
    kernel_rank = 0 if (r.prefer_sharp_kernel and sharp_kernel(facts.kernel)) else 1
    return (gaps, spacing, kernel_rank, facts.derived, -facts.slices,
            facts.series_number if facts.series_number is not None else 10**9, facts.key)


def compare_reason(best: SeriesFacts, other: SeriesFacts, protocol: str) -> str:
    """Why ``best`` was preferred to ``other``: the first rank criterion that differs."""
    r = ROUTES[protocol]
    a, b = rank_key(best, protocol), rank_key(other, protocol)
    if a[0] != b[0]:
        return "it has missing slices"
    if a[1] != b[1]:
        return f"its slices are thicker ({other.slice_spacing:g} mm vs {best.slice_spacing:g} mm)"
    if a[2] != b[2] and r.prefer_sharp_kernel:
        return (f"same slice spacing, but kernel {other.kernel or 'unknown'} is a soft-tissue "
                f"kernel and {best.kernel} a sharp (lung) kernel, which shows nodule margins best")
    if a[3] != b[3]:
        return "it is a derived (reformatted or processed) series"
    if a[4] != b[4]:
        return f"it has fewer slices ({other.slices} vs {best.slices})"
    return "otherwise equal: the lower series number was taken"
