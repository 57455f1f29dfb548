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
from . import breast_us, chest_ct, chest_xray, retina

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..pipeline import Case

__all__ = ["PROTOCOLS", "ROUTES", "Route", "SeriesFacts", "Step", "rank_key", "route", "usable"]

Step = Callable[["Case"], "Case"]

#: Protocol name -> its steps, in order.
PROTOCOLS: dict[str, list[Step]] = {
    "chest_ct": chest_ct.STEPS,
    "chest_xray": chest_xray.STEPS,  # 2-D protocols with learned models (docs/protocols-2d.md)
    "breast_us": breast_us.STEPS,
    "retina": retina.STEPS,
}

#: The protocols that analyse one 2-D image (not a volume).
SINGLE_IMAGE = ("chest_xray", "breast_us", "retina")


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
    single_image:
        The protocol analyses one 2-D image (one frame), not a volume; orientation is not checked.
    region_required:
        Modalities whose series are routed only when a region word is present (an ultrasound that
        does not say breast is never given to the breast model).
    grey_when_unnamed:
        With no region named, route only a single-frame grey image.
    """

    modalities: tuple[str, ...]
    region_words: tuple[str, ...]
    other_region_words: tuple[str, ...]
    min_slices: int
    max_slices: int
    orientation: str = "axial"
    prefer_sharp_kernel: bool = False
    single_image: bool = False
    region_required: tuple[str, ...] = ()
    grey_when_unnamed: bool = False


_NOT_CHEST = ("HEAD", "BRAIN", "SKULL", "NECK", "ABDOMEN", "ABD", "PELVIS", "LIVER", "KIDNEY",
              "SPINE", "KNEE", "HIP", "EXTREMIT", "ANKLE", "SHOULDER", "SINUS", "ORBIT", "HAND",
              "WRIST", "FOOT", "ELBOW", "FEMUR", "HUMERUS", "BREAST", "MAMM")

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
    "chest_xray": Route(
        modalities=("CR", "DX", "DR"),
        region_words=("CHEST", "THORAX", "THORAC", "LUNG", "PULM", "TORAX", "THX", "CXR"),
        other_region_words=_NOT_CHEST,
        min_slices=1, max_slices=1, orientation="", single_image=True, grey_when_unnamed=True,
    ),
    "breast_us": Route(
        modalities=("US",),
        region_words=("BREAST", "MAMM"),
        other_region_words=(),
        min_slices=1, max_slices=1, orientation="", single_image=True, region_required=("US",),
    ),
    "retina": Route(
        modalities=("OP", "XC"),
        region_words=("FUNDUS", "RETINA", "RETINAL", "EYE", "OPHTHALM"),
        other_region_words=("SKIN", "WOUND", "DERM", "ORAL", "DENT", "ENDOSC"),
        # OP is ophthalmic photography; XC (any external camera) must say it is a fundus photograph
        min_slices=1, max_slices=1, orientation="", single_image=True, region_required=("XC",),
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
    colour: bool = False  # more than one sample per pixel (RGB, YBR)

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
    wrong_modality = []
    modality = facts.modality.upper()
    for name, r in ROUTES.items():
        if modality not in r.modalities:
            wrong_modality.append(f"{name} needs {'/'.join(r.modalities)}, this is {facts.modality}")
            continue
        region = r.region_words[0].lower()
        ours = _words(facts.text, r.region_words)
        others = _words(facts.text, r.other_region_words)
        if ours:
            return name, (f"{facts.modality} with {', '.join(ours).lower()} in its body part or "
                          f"descriptions")
        if others:
            reasons.append(f"{name}: the headers name another region "
                           f"({', '.join(others).lower()}) and not the {region}")
            continue
        if modality in r.region_required:
            reasons.append(f"{name}: a {facts.modality} image is given to the {name} model only when "
                           f"Body Part Examined or a description says {region} (body part "
                           f"'{facts.body_part or 'none'}', no description names it); pass "
                           f"--protocol {name} if it is one")
            continue
        if r.grey_when_unnamed and (facts.slices != 1 or facts.colour):
            what = "a colour image" if facts.colour else f"{facts.slices} frames"
            reasons.append(f"{name}: the headers name no region and this is {what}, not one grey "
                           f"radiograph; pass --protocol {name} if it is a chest radiograph")
            continue
        return name, (f"{facts.modality}; the headers name no region (body part "
                      f"'{facts.body_part or 'none'}'), so the image itself must confirm {name}")
    return None, "; ".join(reasons or wrong_modality) or "no protocol is defined for this series"


def usable(facts: SeriesFacts, protocol: str) -> str | None:
    """Why ``facts`` cannot be analysed by ``protocol``, or ``None`` when it can."""
    r = ROUTES[protocol]
    if facts.problem:
        return f"cannot be loaded: {facts.problem}"
    if facts.modality.upper() not in r.modalities:
        return f"{facts.modality}, not {'/'.join(r.modalities)}"
    if facts.localizer:
        return "a localizer (scout) image"
    if r.single_image:
        if facts.slices != 1:
            return f"{facts.slices} frames/slices ({protocol} analyses one 2-D image)"
        return None
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
