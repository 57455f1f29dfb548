"""``report.html``: one self-contained page a clinician can read (and Chromium can print to PDF).

Layout (Jinja2 templates ``templates/report.html.j2`` and ``report.css``, shipped as package data):
disclaimer, (refusal), summary and triage, image quality table, findings table, segmented structures,
key images (overview, and for each finding the slice through it with outlines and its long/short axis
drawn and labelled in mm), recommendations quoting the rule applied, comparisons, provenance.

Self-contained: the CSS is inline and every image is a ``data:image/png;base64`` URI; the page loads
nothing from anywhere.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..image import Image
from .model import SCHEMA_VERSION, Finding, FindingReview, Measurement, Report, Review
from .render import KeyImage, key_images

__all__ = ["format_measurement", "render_html", "write_html"]

_UNITS = {"mm3": "mm³", "mm2": "mm²", "[hnsf'U]": "HU", "1": "", "%": "%", "mL": "mL", "mm": "mm",
          "cm3": "cm³", "L": "L"}
_DECIMALS = {"mm": 1, "mm3": 0, "mL": 0, "cm3": 1, "[hnsf'U]": 0, "mm2": 0}
_STANDARD = ("long_axis_diameter", "short_axis_diameter", "volume", "mean_hu")


def format_measurement(m: Measurement | None) -> str:
    """``"17.9 mm"``, ``"2973 mm³"``, ``"-878 HU"``: the number as the HTML and PDF show it."""
    if m is None:
        return "-"
    if m.value is None or not np.isfinite(m.value):
        return "not measured"
    decimals = _DECIMALS.get(m.unit, 2)
    unit = _UNITS.get(m.unit, m.unit)
    return f"{m.value:.{decimals}f} {unit}".strip()


def _title(report: Report) -> str:
    protocol = {"chest_ct": "Chest CT"}.get(report.protocol, report.protocol or "Image")
    return f"{protocol} analysis report"


def _date(value: str) -> str:
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "-"


def _where(f: Finding) -> str:
    loc = f.location
    words = " ".join(w for w in (loc.side, loc.zone, loc.structure) if w)
    if loc.centroid_patient is not None:
        x, y, z = loc.centroid_patient
        words = f"{words} (LPS {x:.0f}, {y:.0f}, {z:.0f} mm)".strip()
    return words or "-"


def _plain_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain_text(v)}" for k, v in value.items())
    return str(value)


def _review_cell(f: Finding, entry: FindingReview | None) -> dict[str, Any]:
    """The review column: who decided what (``head``), each change against the AI's original
    (``changes``, arrows pointing to the radiologist's value) and the radiologist's comment."""
    if entry is None:
        return {"head": {"ai": "not reviewed"}.get(f.status, f.status), "changes": [], "comment": ""}
    who = entry.by_name or entry.by
    head = {"accepted": f"accepted by {who}", "rejected": f"rejected by {who}",
            "edited": f"edited by {who}", "added": f"Added by radiologist {who}"}.get(entry.status, entry.status)
    changes = [c.replace(" -> ", " \u2192 ") for c in entry.changes] if entry.status == "edited" else []
    return {"head": head, "changes": changes, "comment": entry.comment}


def _ai_value(entry: FindingReview | None, name: str) -> str:
    """The AI's original of an edited measurement, as shown (empty when it was not edited)."""
    if entry is None or not entry.original or not entry.original.get(name):
        return ""
    old = entry.original[name]
    return format_measurement(Measurement(name, float(old["value"]), old["unit"], ""))


def _finding_row(f: Finding, review: Review | None = None) -> dict[str, Any]:
    other = [f"{m.name.replace('_', ' ')} {format_measurement(m)}" for m in f.measurements
             if m.name not in _STANDARD]
    other += [f"{k}: {v}" for k, v in f.characterisation.items()]
    entry = review.of(f.id) if review is not None else None
    what = f.code.meaning if f.code else f.kind
    if f.code and f.kind and f.kind.lower() not in what.lower():
        what = f"{f.kind} ({what})"
    return {
        "id": f.id, "what": what, "where": _where(f),
        "long": format_measurement(f.measurement("long_axis_diameter")),
        "short": format_measurement(f.measurement("short_axis_diameter")),
        "volume": format_measurement(f.measurement("volume")),
        "mean_hu": format_measurement(f.measurement("mean_hu")),
        "other": "; ".join(other) or "-",
        "probability": "-" if f.probability is None or not np.isfinite(f.probability)
        else f"{100 * f.probability:.0f}%",
        "status": _review_cell(f, entry), "review": f.status,
        "long_ai": _ai_value(entry, "long_axis_diameter"), "short_ai": _ai_value(entry, "short_axis_diameter"),
    }


_OPTIONAL_COLUMNS = ("where", "long", "short", "volume", "mean_hu")


def _shown_columns(rows: Sequence[dict[str, Any]]) -> set[str]:
    """The optional columns of the findings table that at least one finding fills."""
    return {c for c in _OPTIONAL_COLUMNS if any(r[c] != "-" for r in rows)}


def _image_groups(report: Report, images: Sequence[KeyImage]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    by_id: dict[str | None, list[dict[str, Any]]] = {}
    for k in images:
        item = {"kind": k.kind, "title": k.title, "caption": k.caption, "width": k.size[0],
                "height": k.size[1], "legend": k.legend,
                "b64": base64.b64encode(k.png).decode("ascii")}
        by_id.setdefault(k.finding_id, []).append(item)
    if None in by_id:
        groups.append({"title": "Overview", "images": by_id[None]})
    for f in report.findings:
        if f.id in by_id:
            groups.append({"title": f"{f.id}: {f.kind}", "images": by_id[f.id]})
    return groups


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("medimg.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )


def render_html(report: Report, image: Image | None, *,
                images: Sequence[KeyImage] | None = None) -> str:
    """The HTML text of ``report``; key images are rendered from ``image`` unless given."""
    if images is None:
        images = key_images(report, image) if image is not None else []
    quality = None
    if report.quality is not None:
        quality = {"verdict": report.quality.verdict,
                   "checks": [{"name": c.name, "status": c.status,
                               "value": f"{_plain_text(c.value)} {c.unit}".strip(),
                               "threshold": _plain_text(c.threshold), "reason": c.reason}
                              for c in report.quality.checks]}
    structures = [{"name": s.name, "code": f"{s.code.meaning} ({s.code.scheme} {s.code.value})" if s.code else "-",
                   "measurements": "; ".join(f"{m.name.replace('_', ' ')} {format_measurement(m)}"
                                             for m in s.measurements) or "-"}
                  for s in report.structures]
    comparisons = [{"finding_id": c.finding_id, "prior_study_uid": c.prior_study_uid,
                    "prior_finding_id": c.prior_finding_id,
                    "changes": "; ".join(f"{m.name.replace('_', ' ')} {format_measurement(m)}" for m in c.changes),
                    "summary": c.summary} for c in report.comparisons]
    steps = [{"algorithm": p.algorithm, "version": p.version,
              "parameters": json.dumps(p.to_dict()["parameters"], sort_keys=True) if p.parameters else "-",
              "model_card": p.model_card} for p in report.steps]
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items() if v is not None)
    preprocessing = "; ".join(
        op.get("name", "?") + (f" ({_plain_text(op.get('params'))})" if op.get("params") else "")
        for op in report.preprocessing)
    rows = [_finding_row(f, report.review) for f in report.findings]
    return str(_environment().get_template("report.html.j2").render(
        r=report, title=_title(report), study_date=_date(report.study.study_date),
        refused=report.status != "complete", quality=quality,
        findings=rows, shown=_shown_columns(rows), structures=structures,
        images=_image_groups(report, images), recommendations=report.recommendations,
        comparisons=comparisons, steps=steps, timings=timings, preprocessing=preprocessing,
        schema_version=SCHEMA_VERSION, review=_review_summary(report),
    ))


def _review_summary(report: Report) -> dict[str, Any] | None:
    """The sign-off box: state, who signed and when, counts of decisions, the AI's impression if replaced."""
    rv = report.review
    if rv is None:
        return None
    counts = {s: sum(1 for f in report.findings if f.status == s)
              for s in ("accepted", "edited", "rejected", "added", "ai")}
    return {"state": rv.state, "signed_by": rv.signed_by_name or rv.signed_by, "role": rv.signed_by_role,
            "signed_at": (rv.signed_at or "").replace("T", " ").replace("+00:00", " UTC"),
            "counts": counts, "impression_ai": rv.impression_ai if rv.impression_edited else "",
            "impression_by": (rv.signed_by_name or rv.impression_by) if rv.impression_by == rv.signed_by
            else rv.impression_by}


def write_html(report: Report, image: Image | None, path: str | Path, *,
               images: Sequence[KeyImage] | None = None) -> Path:
    """Write ``report.html`` to ``path`` (not atomic: :func:`write_report` is)."""
    target = Path(path)
    target.write_text(render_html(report, image, images=images), encoding="utf-8")
    return target
