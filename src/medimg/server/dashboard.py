"""The quality dashboard: how the AI does in use, per protocol and model (``GET /api/dashboard``).

Per protocol (chest_ct, chest_xray, breast_us, retina, and any other that has analyses):

* **analyses** by status (queued, running, done, refused, failed) in the period;
* **findings**: the AI's findings and what radiologists did with them -- accepted, rejected, edited,
  added (missed by the AI), pending (not reviewed yet) -- as counts and as shares of all findings
  (AI findings + added ones; the shares sum to 1).  Read from the review records (tables ``reviews``
  and ``review_findings`` of :mod:`medimg.server.review`: the current decision per finding; an added
  finding the radiologist withdrew again is not counted).  One analysis per study counts: the latest
  reviewed one, else the latest done one;
* **scores**: the distribution of the AI score (finding probability) per ISO week (UTC) of the
  analysis, in ten bins of 0.1, with the mean, median and the share at or above the operating point;
* **drift**: each input feature of the recent analyses compared with the model's training reference
  (:mod:`medimg.monitoring.drift`), with ``alert: true`` and a one-line reason where a shift passes
  its threshold.

Where the numbers come from: the analysis worker records each analysis's input features and the
score of each finding when it runs (:func:`medimg.monitoring.describe`,
:func:`medimg.monitoring.finding_scores`; stored by :func:`record_inputs` in ``analysis_inputs``).
A done analysis without that record (made before this existed) has its scores read back once from
its ``report.json`` (``source = "report"``); its input features stay unknown.

Query: ``weeks`` (the period: this ISO week and the ``weeks - 1`` before it; default 12), ``days``
and ``limit`` (the drift window: analyses of the last ``days`` days, at most the ``limit`` latest;
defaults 30 and 200).  The session guard of :mod:`medimg.server.auth` applies as to every ``/api``
path.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from ..jsonable import plain
from ..monitoring import drift as dr
from ..monitoring.features import PROTOCOL_MODELS
from ..monitoring.reference import REFERENCES, load_reference
from ..store import schema as t

if TYPE_CHECKING:
    from ..store import Store
    from .app import MedimgServer

__all__ = ["REVIEW_STATUSES", "SCORE_BINS", "STATUSES", "dashboard", "iso_week", "record_inputs", "router"]

log = logging.getLogger("medimg.server.dashboard")

DAY = 86400.0
WEEK = 7 * DAY
#: Edges of the score histogram: ten bins of 0.1 (the last one includes 1.0).
SCORE_BINS = tuple(round(i / 10, 1) for i in range(11))
STATUSES = ("queued", "running", "done", "refused", "failed")
REVIEW_STATUSES = ("accepted", "rejected", "edited", "added", "pending")


# ---------------------------------------------------------------------------------------- recording
def record_inputs(db: Engine, analysis_id: int, result: Mapping[str, Any]) -> None:
    """Store the input features and finding scores the worker returned for one analysis (``result``:
    its summary, keys ``inputs`` and ``scores``).  Never raises: monitoring must not fail an analysis."""
    try:
        features = dict(result.get("inputs") or {})
        scores = list(result.get("scores") or [])
        values = {"analysis_pk": analysis_id, "protocol": str(result.get("protocol") or "")[:64],
                  "features": json.dumps(plain(features)), "scores": json.dumps(plain(scores)),
                  "source": "analysis", "recorded": time.time()}
        with db.begin() as conn:  # an analysis run again after an interruption keeps its id
            conn.execute(delete(t.analysis_inputs).where(t.analysis_inputs.c.analysis_pk == analysis_id))
            conn.execute(insert(t.analysis_inputs).values(**values))
    except Exception:
        log.exception("analysis %s: input features not recorded", analysis_id)


def _scores_from_report(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for f in doc.get("findings") or []:
        if f.get("status") == "added":  # a radiologist's finding in a reviewed report, not the AI's
            continue
        op = next((m for m in f.get("measurements") or [] if m.get("name") == "operating_point"), None)
        out.append({"finding": f.get("id"), "kind": f.get("kind"), "probability": f.get("probability"),
                    "algorithm": (f.get("provenance") or {}).get("algorithm"),
                    "threshold": op.get("value") if op else None})
    return out


def _backfill(store: Store, rows: Iterable[Any]) -> None:
    """Scores of done analyses that have no ``analysis_inputs`` row, read from their report.json."""
    for a in rows:
        folder = store.root / (a.report_dir or f"reports/{a.id}")
        # once signed, the AI's own report is kept in ai/ (server/review.py, AI_FOLDER)
        path = folder / "ai" / "report.json"
        if not path.is_file():
            path = folder / "report.json"
        try:
            scores = _scores_from_report(path)
        except (OSError, ValueError) as exc:
            log.warning("analysis %d: scores not read from %s (%s)", a.id, path, exc)
            scores = []
        try:
            with store.engine.execution_options(immediate=True).begin() as conn:
                conn.execute(insert(t.analysis_inputs).values(
                    analysis_pk=a.id, protocol=a.protocol or "", features="{}", scores=json.dumps(plain(scores)),
                    source="report", recorded=time.time()))
        except IntegrityError:  # recorded meanwhile (the worker, or another request)
            pass


# ---------------------------------------------------------------------------------------- time
def iso_week(ts: float) -> str:
    """``"2025-W03"``: the ISO week (UTC) of a POSIX time."""
    y, w, _ = _dt.datetime.fromtimestamp(ts, _dt.UTC).isocalendar()
    return f"{y}-W{w:02d}"


def _week_start(ts: float) -> float:
    d = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    monday = (d - _dt.timedelta(days=d.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return monday.timestamp()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------- aggregation
@dataclass
class _Protocol:
    name: str
    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    ai: int = 0
    review: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REVIEW_STATUSES, 0))
    scores: list[tuple[float, float, float | None]] = field(default_factory=list)  # (time, p, threshold)
    algorithms: set[str] = field(default_factory=set)
    drift_rows: list[tuple[float, dict[str, Any]]] = field(default_factory=list)


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _histogram(scores: list[tuple[float, float, float | None]], start: float, weeks: int) -> list[dict[str, Any]]:
    out = []
    for i in range(weeks):
        w0 = start + i * WEEK
        # one ISO week: from Monday 00:00 UTC to the next (a DST-free clock)
        ps = [(p, thr) for ts, p, thr in scores if w0 <= ts < w0 + WEEK]
        probs = np.array([p for p, _ in ps], dtype=np.float64)
        counts = np.histogram(np.clip(probs, 0.0, 1.0), bins=np.array(SCORE_BINS))[0] if probs.size else np.zeros(10)
        with_thr = [(p, thr) for p, thr in ps if thr is not None]
        out.append({
            "week": iso_week(w0 + DAY), "start": _iso(w0), "n": int(probs.size),
            "counts": [int(c) for c in counts],
            "mean": round(float(probs.mean()), 4) if probs.size else None,
            "median": round(float(np.median(probs)), 4) if probs.size else None,
            "at_or_above_operating_point": _share(sum(p >= thr for p, thr in with_thr), len(with_thr)),
        })
    return out


def _findings(p: _Protocol) -> dict[str, Any]:
    total = p.ai + p.review["added"]
    reviewed = p.review["accepted"] + p.review["rejected"] + p.review["edited"]
    return {"total": total, "ai": p.ai, "added": p.review["added"], "reviewed": reviewed,
            "counts": dict(p.review), "shares": {k: _share(v, total) for k, v in p.review.items()}}


def _drift(p: _Protocol, days: int, limit: int) -> dict[str, Any]:
    ref = load_reference(p.name)
    latest = sorted(p.drift_rows, key=lambda r: -r[0])[:limit]
    rows = [f for _, f in latest]
    window = {"days": days, "limit": limit, "n": len(rows),
              "from": _iso(min(ts for ts, _ in latest)) if latest else None,
              "to": _iso(max(ts for ts, _ in latest)) if latest else None}
    if ref is None:
        return {"reference": None, "window": window, "alert": False, "alerts": [],
                "features": [], "note": f"no training reference for protocol {p.name}"}
    features = [d.to_dict() for d in dr.compare(ref, rows)]
    alerts = [f["reason"] for f in features if f["alert"]]
    return {
        "reference": {k: ref.get(k) for k in ("model", "data", "split", "description", "n",
                                               "pixel_statistics_of")},
        "window": window, "alert": bool(alerts), "alerts": alerts, "features": features,
    }


def _review_tables() -> tuple[Any, Any] | None:
    reviews = t.metadata.tables.get("reviews")
    findings = t.metadata.tables.get("review_findings")
    return (reviews, findings) if reviews is not None and findings is not None else None


def dashboard(store: Store, *, weeks: int = 12, days: int = 30, limit: int = 200,
              now: float | None = None) -> dict[str, Any]:
    """The dashboard (module docstring) as a JSON-able dict.  ``now`` (POSIX time) is for tests."""
    now = time.time() if now is None else float(now)
    weeks, days, limit = max(1, int(weeks)), max(1, int(days)), max(1, int(limit))
    start = _week_start(now) - (weeks - 1) * WEEK
    drift_start = now - days * DAY
    a = t.analyses
    when = a.c.finished
    with store.engine.connect() as conn:
        rows = conn.execute(select(a.c.id, a.c.study_pk, a.c.status, a.c.protocol, a.c.created, a.c.finished,
                                   a.c.report_dir)
                            .where(((when.is_(None)) & (a.c.created >= min(start, drift_start)))
                                   | (when >= min(start, drift_start)))
                            .where(a.c.created <= now)).all()
        tables = _review_tables()
        reviewed_ids: set[int] = set()
        if tables is not None:
            reviews = tables[0]
            reviewed_ids = {int(row[0]) for row in conn.execute(select(reviews.c.analysis_pk))}

    protocols: dict[str, _Protocol] = {}

    def proto(name: str) -> _Protocol:
        if name not in protocols:
            protocols[name] = _Protocol(name)
        return protocols[name]

    for name in REFERENCES:
        proto(name)
    overall = dict.fromkeys(STATUSES, 0)
    in_period = [r for r in rows if (r.finished if r.finished is not None else r.created) >= start]
    for r in in_period:
        overall[r.status] = overall.get(r.status, 0) + 1
        if r.protocol:
            st = proto(r.protocol).statuses
            st[r.status] = st.get(r.status, 0) + 1

    # one analysis per study: the latest reviewed done one, else the latest done one
    chosen: dict[int, Any] = {}
    for r in sorted((r for r in in_period if r.status == "done" and r.protocol), key=lambda r: (r.finished, r.id)):
        prev = chosen.get(r.study_pk)
        if prev is None or r.id in reviewed_ids or prev.id not in reviewed_ids:
            chosen[r.study_pk] = r
    # drift: the latest finished analysis per study in the drift window (refusals too: an input
    # refused for its quality is still an input)
    drift_pick: dict[int, Any] = {}
    for r in sorted((r for r in rows if r.status in ("done", "refused") and r.protocol
                     and r.finished is not None and drift_start <= r.finished <= now),
                    key=lambda r: (r.finished, r.id)):
        drift_pick[r.study_pk] = r

    wanted = {r.id: r for r in [*chosen.values(), *drift_pick.values()]}
    ai = t.analysis_inputs
    inputs: dict[int, Any] = {}
    with store.engine.connect() as conn:
        ids = list(wanted)
        for i in range(0, len(ids), 500):
            for row in conn.execute(select(ai.c.analysis_pk, ai.c.features, ai.c.scores)
                                    .where(ai.c.analysis_pk.in_(ids[i:i + 500]))):
                inputs[int(row.analysis_pk)] = row
    missing = [wanted[i] for i in ids if i not in inputs and wanted[i].status == "done"]
    if missing:
        _backfill(store, missing)
        with store.engine.connect() as conn:
            for row in conn.execute(select(ai.c.analysis_pk, ai.c.features, ai.c.scores)
                                    .where(ai.c.analysis_pk.in_([m.id for m in missing]))):
                inputs[int(row.analysis_pk)] = row

    review_status = _review_status(store, tables, [r.id for r in chosen.values()])
    for r in chosen.values():
        p = proto(r.protocol)
        rec = inputs.get(r.id)
        scores = _loads(rec.scores, []) if rec is not None else []
        ai_ids: set[str] = set()
        for s in scores:
            ai_ids.add(str(s.get("finding")))
            if s.get("algorithm"):
                p.algorithms.add(str(s["algorithm"]))
            prob = s.get("probability")
            if isinstance(prob, (int, float)) and math.isfinite(prob):
                thr = s.get("threshold")
                p.scores.append((float(r.finished), float(prob),
                                 float(thr) if isinstance(thr, (int, float)) else None))
        p.ai += len(scores)
        decided = review_status.get(r.id, {})
        for fid in ai_ids:
            status = decided.get(fid)
            p.review[status if status in ("accepted", "rejected", "edited") else "pending"] += 1
        p.review["added"] += sum(1 for fid, s in decided.items() if s == "added" and fid not in ai_ids)
    for r in drift_pick.values():
        rec = inputs.get(r.id)
        features = _loads(rec.features, {}) if rec is not None else {}
        if features:
            proto(r.protocol).drift_rows.append((float(r.finished), features))

    order = [*REFERENCES, *sorted(n for n in protocols if n not in REFERENCES)]
    out_protocols: list[dict[str, Any]] = []
    for name in order:
        p = protocols[name]
        out_protocols.append({
            "protocol": name,
            "model": PROTOCOL_MODELS.get(name) or (sorted(p.algorithms)[0] if p.algorithms else None),
            "algorithms": sorted(p.algorithms),
            "analyses": {"total": sum(p.statuses.values()), "by_status": p.statuses},
            "findings": _findings(p),
            "scores": {"n": len(p.scores), "weeks": _histogram(p.scores, start, weeks)},
            "drift": _drift(p, days, limit),
        })
    return plain({
        "generated_at": _iso(now),
        "period": {"weeks": weeks, "from": _iso(start), "to": _iso(now)},
        "score_bins": list(SCORE_BINS),
        "thresholds": {"unseen_share": dr.UNSEEN_SHARE_ALERT, "outside_share": dr.OUTSIDE_SHARE_ALERT,
                       "range_tolerance": dr.RANGE_TOLERANCE, "ks_p": dr.KS_P_ALERT, "ks_d": dr.KS_D_ALERT,
                       "min_recent_share": dr.MIN_RECENT_SHARE, "min_recent_ks": dr.MIN_RECENT_KS,
                       "min_reference_ks": dr.MIN_REFERENCE_KS},
        "analyses": {"total": sum(overall.values()), "by_status": overall},
        "alert": any(p["drift"]["alert"] for p in out_protocols),
        "protocols": out_protocols,
    })


def _loads(text: str | None, default: Any) -> Any:
    try:
        value = json.loads(text or "")
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def _review_status(store: Store, tables: tuple[Any, Any] | None, analysis_ids: list[int]) -> dict[int, dict[str, str]]:
    """analysis id -> {finding id: accepted | rejected | edited | added} from the review records."""
    if tables is None or not analysis_ids:
        return {}
    reviews, findings = tables
    out: dict[int, dict[str, str]] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(analysis_ids), 500):
            q = (select(reviews.c.analysis_pk, findings.c.finding_id, findings.c.status)
                 .join(findings, findings.c.review_pk == reviews.c.id)
                 .where(reviews.c.analysis_pk.in_(analysis_ids[i:i + 500])))
            for row in conn.execute(q):
                out.setdefault(int(row[0]), {})[str(row[1])] = str(row[2])
    return out


# ---------------------------------------------------------------------------------------- HTTP
def router(server: MedimgServer) -> APIRouter:
    """``GET /api/dashboard``."""
    r = APIRouter(prefix="/api")
    store = server.store

    @r.get("/dashboard")
    def get_dashboard(weeks: Annotated[int, Query(ge=1, le=104)] = 12,
                      days: Annotated[int, Query(ge=1, le=365)] = 30,
                      limit: Annotated[int, Query(ge=10, le=5000)] = 200) -> dict[str, Any]:
        result: dict[str, Any] = dashboard(store, weeks=weeks, days=days, limit=limit)
        return result

    return r
