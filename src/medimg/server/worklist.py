"""Read-side queries of the server: the worklist, one study in detail, the finished analyses whose files
the REST API serves, and the audit trail.

The worklist has one entry per study: the study joined with its latest analysis (a study that has
none yet is listed too, with no priority).  Entries are ordered by triage priority (urgent, soon,
routine, none) and then by arrival, oldest first, so that the study waiting longest at the highest
priority is read first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select

from ..store import Store
from ..store import schema as t

__all__ = ["ANALYSIS_STATUSES", "PRIORITIES", "STUDY_STATUSES", "WorklistQuery", "events",
           "finished_analysis", "study_detail", "study_exists", "worklist"]

PRIORITIES = ("urgent", "soon", "routine")
STUDY_STATUSES = ("received", "analysing", "ready", "failed", "signed", "skipped")
ANALYSIS_STATUSES = ("queued", "running", "done", "failed", "refused")
MAX_PAGE = 500


@dataclass(frozen=True)
class WorklistQuery:
    """Filters and page of :func:`worklist`.  ``status`` matches a study status or the status of the
    study's latest analysis; ``modality`` a modality of one of its acquired (not derived) series;
    ``q`` is a case-insensitive substring of the patient name, patient ID, study description or
    accession number."""

    status: Sequence[str] = ()
    modality: Sequence[str] = ()
    priority: Sequence[str] = ()
    q: str = ""
    limit: int = 50
    offset: int = 0


def _latest_analysis() -> Any:
    """Subquery: the id of each study's latest analysis."""
    return (select(t.analyses.c.study_pk, func.max(t.analyses.c.id).label("analysis_id"))
            .group_by(t.analyses.c.study_pk).subquery("latest"))


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _analysis_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "status": row.status, "attempts": row.attempts, "protocol": row.protocol,
        "priority": row.priority or None, "priority_rank": row.priority_rank,
        "key_finding": row.key_finding, "quality": row.quality or None, "error": row.error or None,
        "created": row.created, "started": row.started, "finished": row.finished,
        "retry_after": row.not_before if row.status == "queued" and row.not_before else None,
    }


def _study_dict(row: Any) -> dict[str, Any]:
    return {
        "study_uid": row.study_uid, "patient_id": row.patient_id, "patient_name": row.patient_name,
        "patient_birth_date": row.patient_birth_date, "patient_sex": row.patient_sex,
        "study_date": row.study_date, "study_time": row.study_time,
        "accession_number": row.accession_number, "study_id": row.study_id,
        "study_description": row.study_description, "referring_physician": row.referring_physician,
        "first_received": row.first_received, "last_received": row.last_received, "status": row.status,
    }


def _modalities(conn: Any, study_pks: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {pk: [] for pk in study_pks}
    if not study_pks:
        return out
    rows = conn.execute(select(t.series.c.study_pk, t.series.c.modality).distinct()
                        .where(t.series.c.study_pk.in_(study_pks), t.series.c.derived.is_(False))
                        .order_by(t.series.c.study_pk, t.series.c.modality))
    for pk, modality in rows:
        if modality:
            out[pk].append(modality)
    return out


def _instance_counts(conn: Any, study_pks: list[int]) -> dict[int, int]:
    if not study_pks:
        return {}
    rows = conn.execute(select(t.series.c.study_pk, func.count(t.instances.c.id))
                        .join(t.instances, t.instances.c.series_pk == t.series.c.id)
                        .where(t.series.c.study_pk.in_(study_pks), t.series.c.derived.is_(False))
                        .group_by(t.series.c.study_pk))
    return {int(pk): int(n) for pk, n in rows}


def worklist(store: Store, query: WorklistQuery = WorklistQuery()) -> dict[str, Any]:
    """One page of the worklist: ``{"total", "limit", "offset", "items": [entry, ...]}``."""
    latest = _latest_analysis()
    a, s = t.analyses, t.studies
    base = (select(s, a.c.id.label("analysis_id"), a.c.status.label("analysis_status"), a.c.attempts,
                   a.c.protocol, a.c.priority, func.coalesce(a.c.priority_rank, 9).label("rank"),
                   a.c.key_finding, a.c.quality, a.c.error, a.c.finished)
            .outerjoin(latest, latest.c.study_pk == s.c.id)
            .outerjoin(a, a.c.id == latest.c.analysis_id))
    conditions = []
    if query.status:
        conditions.append(or_(s.c.status.in_(query.status), a.c.status.in_(query.status)))
    if query.priority:
        conditions.append(a.c.priority.in_(query.priority))
    if query.modality:
        conditions.append(s.c.id.in_(select(t.series.c.study_pk).where(
            t.series.c.modality.in_([m.upper() for m in query.modality]), t.series.c.derived.is_(False))))
    if query.q:
        pattern = _like(query.q)
        conditions.append(or_(*(func.lower(c).like(pattern, escape="\\") for c in (
            s.c.patient_name, s.c.patient_id, s.c.study_description, s.c.accession_number))))
    if conditions:
        base = base.where(and_(*conditions))
    limit = max(1, min(query.limit, MAX_PAGE))
    offset = max(0, query.offset)
    with store.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
        rows = conn.execute(base.order_by(func.coalesce(a.c.priority_rank, 9), s.c.first_received, s.c.id)
                            .limit(limit).offset(offset)).all()
        modalities = _modalities(conn, [r.id for r in rows])
        counts = _instance_counts(conn, [r.id for r in rows])
    items = []
    for r in rows:
        entry = _study_dict(r)
        entry.update({
            "modalities": modalities.get(r.id, []), "instances": counts.get(r.id, 0),
            "received": r.first_received,
            "analysis_id": r.analysis_id, "analysis_status": r.analysis_status,
            "protocol": r.protocol or None, "priority": r.priority or None, "priority_rank": r.rank,
            "key_finding": r.key_finding or None, "quality": r.quality or None,
            "error": r.error or None, "attempts": r.attempts, "analysed": r.finished,
        })
        items.append(entry)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


def study_detail(store: Store, study_uid: str, event_limit: int = 1000) -> dict[str, Any] | None:
    """The study, its series (with instance counts), its analyses (newest first) and its events;
    ``None`` for an unknown study."""
    with store.engine.connect() as conn:
        study = conn.execute(select(t.studies).where(t.studies.c.study_uid == study_uid)).first()
        if study is None:
            return None
        counts = (select(t.instances.c.series_pk, func.count().label("n"))
                  .group_by(t.instances.c.series_pk).subquery("counts"))
        series = conn.execute(
            select(t.series, func.coalesce(counts.c.n, 0).label("instances"))
            .outerjoin(counts, counts.c.series_pk == t.series.c.id)
            .where(t.series.c.study_pk == study.id)
            .order_by(t.series.c.derived, t.series.c.series_number, t.series.c.id)).all()
        analyses = conn.execute(select(t.analyses).where(t.analyses.c.study_pk == study.id)
                                .order_by(t.analyses.c.id.desc())).all()
    return {
        "study": _study_dict(study),
        "series": [{"series_uid": r.series_uid, "modality": r.modality, "series_number": r.series_number,
                    "series_description": r.series_description, "body_part": r.body_part,
                    "derived": bool(r.derived), "instances": int(r.instances)} for r in series],
        "analyses": [_analysis_dict(r) for r in analyses],
        "events": events(store, study_uid=study_uid, limit=event_limit)["items"],
    }


def finished_analysis(store: Store, study_uid: str) -> tuple[int, Path] | None:
    """The id and output folder of the study's latest finished analysis (done or refused), or
    ``None`` when it has none."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(t.analyses.c.id, t.analyses.c.report_dir)
            .join(t.studies, t.analyses.c.study_pk == t.studies.c.id)
            .where(t.studies.c.study_uid == study_uid, t.analyses.c.status.in_(("done", "refused")),
                   t.analyses.c.report_dir != "")
            .order_by(t.analyses.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return int(row[0]), store.root / row[1]


def study_exists(store: Store, study_uid: str) -> bool:
    return store.study_status(study_uid) is not None


def events(store: Store, study_uid: str | None = None, action: str | None = None,
           after: int | None = None, limit: int = 100) -> dict[str, Any]:
    """Audit events in order of occurrence: those after event id ``after`` (to follow the trail), or
    without it the latest ``limit`` ones."""
    e, s = t.events, t.studies
    q = select(e.c.id, e.c.at, e.c.actor, e.c.action, e.c.detail, s.c.study_uid).outerjoin(
        s, e.c.study_pk == s.c.id)
    if study_uid:
        q = q.where(s.c.study_uid == study_uid)
    if action:
        q = q.where(e.c.action == action)
    limit = max(1, min(limit, 10 * MAX_PAGE))
    with store.engine.connect() as conn:
        if after is not None:
            rows = conn.execute(q.where(e.c.id > after).order_by(e.c.id).limit(limit)).all()
        else:
            rows = list(reversed(conn.execute(q.order_by(e.c.id.desc()).limit(limit)).all()))
    items = []
    for r in rows:
        try:
            detail = json.loads(r.detail or "{}")
        except ValueError:
            detail = {"text": r.detail}
        items.append({"id": r.id, "at": r.at, "actor": r.actor, "action": r.action,
                      "study_uid": r.study_uid, "detail": detail})
    return {"items": items, "last_id": items[-1]["id"] if items else after}
