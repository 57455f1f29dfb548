"""What the decision rules read: the clinical context of the study and the facts of each nodule.

The rules never look at images.  They read a :class:`ClinicalContext` (who the patient is and why the
CT was done, as far as anyone told us) and one :class:`NoduleFacts` per finding (type, sizes, whether
it is new or growing against a prior).  Both are built from the report model, so the rules can be
tested with plain numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ..report.model import Comparison, Finding

__all__ = [
    "ClinicalContext",
    "NoduleFacts",
    "GROWTH_MM",
    "NoduleType",
    "round_half_up",
]

NoduleType = Literal["solid", "part-solid", "ground-glass"]
_TYPES: tuple[str, ...] = ("solid", "part-solid", "ground-glass")
# Words detectors and readers use for the same three types.
_TYPE_ALIASES = {
    "solid": "solid", "part-solid": "part-solid", "part_solid": "part-solid",
    "partsolid": "part-solid", "semi-solid": "part-solid", "mixed": "part-solid",
    "ground-glass": "ground-glass", "ground_glass": "ground-glass", "groundglass": "ground-glass",
    "ggn": "ground-glass", "ggo": "ground-glass", "non-solid": "ground-glass",
    "nonsolid": "ground-glass",
}


#: Lung-RADS v2022: growth is an increase of more than this (mm) in mean diameter within 12 months.
GROWTH_MM = 1.5


def round_half_up(value: float, decimals: int = 0) -> float:
    """Round like a radiologist, halves away from zero (5.5 -> 6), not Python's to-even."""
    scale = 10.0**decimals
    return math.floor(value * scale + 0.5) / scale


@dataclass(frozen=True)
class ClinicalContext:
    """The clinical facts the guidelines' scope depends on.  ``None`` means: nobody said.

    Parameters
    ----------
    age_years:
        Patient age (from DICOM Patient's Age or Birth Date, or given).
    screening:
        Whether the CT is a lung-cancer screening examination.
    known_cancer:
        Whether the patient has a known cancer (nodules may be metastases).
    immunocompromised:
        Whether the patient is immunosuppressed (nodules may be infection).
    risk:
        Fleischner's patient risk of lung cancer (``"low"`` / ``"high"``); ``None`` gives both options.
    sources:
        Where each stated fact came from, e.g. ``{"age_years": "DICOM Patient's Age 058Y"}``.
    """

    age_years: float | None = None
    screening: bool | None = None
    known_cancer: bool | None = None
    immunocompromised: bool | None = None
    risk: Literal["low", "high"] | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The context as plain values (recorded in each recommendation's provenance)."""
        return {"age_years": self.age_years, "screening": self.screening, "known_cancer": self.known_cancer,
                "immunocompromised": self.immunocompromised, "risk": self.risk, "sources": dict(self.sources)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClinicalContext:
        """The context :meth:`to_dict` recorded."""
        age = d.get("age_years")
        return cls(age_years=float(age) if age is not None else None, screening=d.get("screening"),
                   known_cancer=d.get("known_cancer"), immunocompromised=d.get("immunocompromised"),
                   risk=d.get("risk"), sources={str(k): str(v) for k, v in (d.get("sources") or {}).items()})

    def describe(self) -> str:
        """One sentence of what is known, and from where."""
        parts = []
        if self.age_years is not None:
            parts.append(f"age {self.age_years:g} years")
        for name, label in (("screening", "screening CT"), ("known_cancer", "known cancer"),
                            ("immunocompromised", "immunosuppressed")):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{label}: {'yes' if value else 'no'}")
        if self.risk is not None:
            parts.append(f"{self.risk} risk")
        if not parts:
            return "no clinical information was given"
        srcs = "; ".join(f"{k} from {v}" for k, v in self.sources.items())
        return ", ".join(parts) + (f" ({srcs})" if srcs else "")


@dataclass(frozen=True)
class NoduleFacts:
    """The facts of one nodule that the size tables use (millimetres)."""

    finding_id: str
    type: NoduleType | None  # None: the detector did not say
    long_axis_mm: float
    short_axis_mm: float
    solid_component_mm: float | None = None  # part-solid: mean diameter of the solid part
    volume_mm3: float | None = None
    kind: str = "nodule"
    new: bool | None = None  # None: no prior to compare with
    growing: bool | None = None
    suspicious_features: tuple[str, ...] = ()

    @property
    def mean_diameter_mm(self) -> float:
        """Average of the long and short axes (the size both guidelines use)."""
        return (self.long_axis_mm + self.short_axis_mm) / 2.0

    @classmethod
    def from_finding(cls, finding: Finding, comparison: Comparison | None = None) -> NoduleFacts:
        """The facts of a :class:`Finding`; measurements ``long_axis_diameter`` and
        ``short_axis_diameter`` are required, ``solid_component_diameter`` and ``volume`` used when
        present."""
        long_m = finding.measurement("long_axis_diameter")
        if long_m is None:
            msg = (f"finding {finding.id}: no long_axis_diameter measurement; the size rules need "
                   f"the long and short axis diameters")
            raise ValueError(msg)
        short_m = finding.measurement("short_axis_diameter")
        long_mm = float(long_m.value)
        short_mm = float(short_m.value) if short_m is not None else long_mm
        raw_type = str(finding.characterisation.get("type", "")).strip().lower()
        ntype = _TYPE_ALIASES.get(raw_type)
        solid = finding.measurement("solid_component_diameter")
        volume = finding.measurement("volume")
        features = _suspicious_features(finding)
        new = growing = None
        if comparison is not None:
            new = comparison.prior_finding_id is None
            change = next((m for m in comparison.changes if m.name == "mean_diameter_change"), None)
            interval = next((m for m in comparison.changes if m.name == "interval"), None)
            # Growth (Lung-RADS v2022): more than 1.5 mm in mean diameter; studies of the same day
            # differ only by measurement, so they never show growth.
            same_day = interval is not None and float(interval.value) <= 0
            growing = ((not new) and not same_day and change is not None
                       and float(change.value) > GROWTH_MM)
        return cls(
            finding_id=finding.id,
            type=ntype,  # type: ignore[arg-type]
            long_axis_mm=long_mm,
            short_axis_mm=short_mm,
            solid_component_mm=float(solid.value) if solid is not None else None,
            volume_mm3=float(volume.value) if volume is not None else None,
            kind=finding.kind,
            new=new,
            growing=growing,
            suspicious_features=features,
        )


def _suspicious_features(finding: Finding) -> tuple[str, ...]:
    """Features that raise suspicion of cancer (Lung-RADS 4X), as the characterisation states them:
    ``{"margin": "spiculated"}`` or ``{"suspicious_features": "spiculation, lymphadenopathy"}``."""
    ch = finding.characterisation
    out = []
    if str(ch.get("margin", "")).lower() == "spiculated":
        out.append("spiculated margin")
    extra = str(ch.get("suspicious_features", "")).strip()
    if extra:
        out.extend(s.strip() for s in extra.split(",") if s.strip())
    return tuple(out)
