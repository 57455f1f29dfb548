"""The result of quality assessment: one :class:`Check` per measured property, and a verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ..jsonable import plain

__all__ = ["STATUSES", "Check", "QualityReport", "Status"]

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail")
_RANK = {"pass": 0, "warn": 1, "fail": 2}


def _plain(value: Any) -> Any:
    return plain(value, digits=6)


@dataclass
class Check:
    """One quality check.

    Parameters
    ----------
    name:
        Stable identifier (documented in docs/quality.md), e.g. ``"noise"``, ``"sharpness"``.
    status:
        ``"pass"``, ``"warn"`` or ``"fail"``.
    value:
        The measured metric (``None`` when it could not be measured).
    threshold:
        What the value was compared with: a number, or ``{"warn": ..., "fail": ...}``; ``None`` for
        yes/no checks.
    reason:
        One sentence a radiographer would understand: what was found and why it matters.
    unit:
        Unit or kind of the value (``"HU"``, ``"ratio"``, ``"fraction"``, ...).
    """

    name: str
    status: Status
    value: Any
    threshold: Any
    reason: str
    unit: str = ""

    def __post_init__(self) -> None:
        if self.status not in _RANK:
            msg = f"Check {self.name!r}: status must be one of {STATUSES}, got {self.status!r}"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "value": _plain(self.value),
                "threshold": _plain(self.threshold), "reason": self.reason, "unit": self.unit}


@dataclass
class QualityReport:
    """Verdict and checks of one image; the verdict is the worst status of the checks."""

    checks: list[Check] = field(default_factory=list)
    kind: str = ""
    protocol: str | None = None
    source: str | None = None

    @property
    def verdict(self) -> Status:
        if not self.checks:
            return "fail"
        return max((c.status for c in self.checks), key=lambda s: _RANK[s])

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    @property
    def problems(self) -> list[Check]:
        """The checks that did not pass, worst first."""
        return sorted((c for c in self.checks if c.status != "pass"),
                      key=lambda c: -_RANK[c.status])

    def to_dict(self) -> dict[str, Any]:
        """``{"verdict", "checks": [{"name", "status", "value", "threshold", "reason", "unit"}], ...}``."""
        return {"verdict": self.verdict, "checks": [c.to_dict() for c in self.checks],
                "kind": self.kind, "protocol": self.protocol, "source": self.source}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        head = f"quality: {self.verdict.upper()}"
        if self.source:
            head += f"  {self.source}"
        if self.kind:
            head += f"  ({self.kind}{', protocol ' + self.protocol if self.protocol else ''})"
        lines = [head]
        width = max((len(c.name) for c in self.checks), default=4)
        for c in self.checks:
            value = _plain(c.value)
            shown = "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
            lines.append(f"  {c.status.upper():4}  {c.name:<{width}}  {shown:>10} {c.unit:<8}  {c.reason}")
        return "\n".join(lines)
