"""Attribute matching for C-FIND and QIDO-RS, one implementation for both (PS3.4 C.2.2.2).

:func:`find` takes a query level (``PATIENT``, ``STUDY``, ``SERIES``, ``IMAGE``) and a mapping of DICOM
keywords to query strings, and returns one dict per match, keyed by keyword.  Matching:

* empty value: universal (matches everything);
* UID attributes: single value or a backslash-separated list (list of UID matching);
* strings: ``*`` and ``?`` wildcards, otherwise exact; person names match case-insensitively;
* dates and times: single value or a range ``A-B``, ``A-`` or ``-B``;
* integers: exact.

Keys of a higher level restrict a lower-level query (Study Root relational keys: a SERIES query may give
``StudyInstanceUID``, ``PatientID`` ...).  Unknown keywords raise :class:`QueryError`, so a client learns
that its key is not supported instead of getting silently unfiltered results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, and_, distinct, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from . import schema as t

__all__ = ["LEVELS", "QueryError", "find", "supported_keys"]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


class QueryError(ValueError):
    """A query that cannot be answered (unknown key, bad range, bad level)."""


# keyword -> (level, column, kind)
_ATTRS: dict[str, tuple[str, Any, str]] = {
    "PatientID": ("PATIENT", t.studies.c.patient_id, "str"),
    "PatientName": ("PATIENT", t.studies.c.patient_name, "pn"),
    "PatientBirthDate": ("PATIENT", t.studies.c.patient_birth_date, "date"),
    "PatientSex": ("PATIENT", t.studies.c.patient_sex, "str"),
    "StudyInstanceUID": ("STUDY", t.studies.c.study_uid, "uid"),
    "StudyDate": ("STUDY", t.studies.c.study_date, "date"),
    "StudyTime": ("STUDY", t.studies.c.study_time, "time"),
    "AccessionNumber": ("STUDY", t.studies.c.accession_number, "str"),
    "StudyID": ("STUDY", t.studies.c.study_id, "str"),
    "StudyDescription": ("STUDY", t.studies.c.study_description, "str"),
    "ReferringPhysicianName": ("STUDY", t.studies.c.referring_physician, "pn"),
    "SeriesInstanceUID": ("SERIES", t.series.c.series_uid, "uid"),
    "Modality": ("SERIES", t.series.c.modality, "str"),
    "SeriesNumber": ("SERIES", t.series.c.series_number, "int"),
    "SeriesDescription": ("SERIES", t.series.c.series_description, "str"),
    "BodyPartExamined": ("SERIES", t.series.c.body_part, "str"),
    "SeriesDate": ("SERIES", t.series.c.series_date, "date"),
    "SeriesTime": ("SERIES", t.series.c.series_time, "time"),
    "SOPInstanceUID": ("IMAGE", t.instances.c.sop_uid, "uid"),
    "SOPClassUID": ("IMAGE", t.instances.c.sop_class_uid, "uid"),
    "InstanceNumber": ("IMAGE", t.instances.c.instance_number, "int"),
    "Rows": ("IMAGE", t.instances.c.rows, "int"),
    "Columns": ("IMAGE", t.instances.c.columns, "int"),
    "NumberOfFrames": ("IMAGE", t.instances.c.frames, "int"),
    "AvailableTransferSyntaxUID": ("IMAGE", t.instances.c.transfer_syntax, "uid"),
}
# computed return keys, per level (answered, never matched except ModalitiesInStudy)
_COMPUTED = {
    "PATIENT": ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                "NumberOfPatientRelatedInstances"),
    "STUDY": ("ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "SERIES": ("NumberOfSeriesRelatedInstances",),
    "IMAGE": (),
}
# keys that are accepted and ignored (returned empty when asked): query-control and optional attributes
_IGNORED = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability",
            "TimezoneOffsetFromUTC", "IssuerOfPatientID", "OtherPatientIDs", "PatientAge",
            "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances",
            "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances",
            "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "RequestAttributesSequence",
            "InstitutionName", "StationName", "Manufacturer", "SOPClassesInStudy", "RetrieveURL",
            "RetrieveURI", "ContentDate", "ContentTime", "PhotometricInterpretation", "BitsAllocated"}
_LEVEL_RANK = {lvl: i for i, lvl in enumerate(LEVELS)}


def supported_keys(level: str) -> list[str]:
    """The keywords a query at ``level`` can match on and return."""
    rank = _LEVEL_RANK[level]
    keys = [k for k, (lvl, _, _) in _ATTRS.items() if _LEVEL_RANK[lvl] <= rank]
    if level == "PATIENT":
        keys = [k for k, (lvl, _, _) in _ATTRS.items() if lvl == "PATIENT"]
    return keys + list(_COMPUTED[level])


def _like(value: str) -> str:
    out = []
    for ch in value:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _range(col: Any, value: str, kind: str) -> ColumnElement[bool]:
    def norm(v: str) -> str:
        v = v.strip().replace("-", "") if kind == "date" else v.strip().replace(":", "")
        if kind == "date" and v and (len(v) != 8 or not v.isdigit()):
            raise QueryError(f"date {v!r} is not YYYYMMDD")
        return v

    if "-" in value and kind == "date" or (kind == "time" and "-" in value):
        lo, _, hi = value.partition("-")
        lo, hi = norm(lo), norm(hi)
        if not lo and not hi:
            raise QueryError(f"range {value!r} has no bounds")
        cond = []
        if lo:
            cond.append(col >= lo)
        if hi:
            # a time upper bound "1200" includes 120059.999
            cond.append(col <= (hi + "~" if kind == "time" else hi))
        cond.append(col != "")
        return and_(*cond)
    v = norm(value)
    if kind == "time":
        return col.like(_like(v) + "%", escape="\\")
    return col == v


def _condition(keyword: str, value: str) -> ColumnElement[bool]:
    _, col, kind = _ATTRS[keyword]
    value = value.strip()
    if kind == "uid":
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        if not uids:
            raise QueryError(f"{keyword}: empty UID list")
        return col.in_(uids) if len(uids) > 1 else col == uids[0]
    if kind in ("date", "time"):
        return _range(col, value, kind)
    if kind == "int":
        try:
            return col == int(value)
        except ValueError:
            raise QueryError(f"{keyword}: {value!r} is not an integer") from None
    if kind == "pn":
        if value in ("*",):
            return col.is_not(None)
        return func.lower(col).like(_like(value.lower()), escape="\\")
    if "*" in value or "?" in value:
        return col.like(_like(value), escape="\\")
    return col == value


def _check_keys(level: str, query: Mapping[str, str]) -> None:
    if level not in LEVELS:
        raise QueryError(f"query level {level!r} is not one of {', '.join(LEVELS)}")
    for k in query:
        if k in _IGNORED or k in _COMPUTED[level]:
            continue
        if k not in _ATTRS:
            raise QueryError(f"{k!r} is not a supported query key")
        if level == "PATIENT" and _ATTRS[k][0] != "PATIENT":
            raise QueryError(f"{k!r} cannot be matched at the PATIENT level")


def find(engine: Engine, level: str, query: Mapping[str, str], *, limit: int | None = None,
         offset: int = 0, include_derived: bool = True) -> list[dict[str, Any]]:
    """Match ``query`` at ``level``; returns up to ``limit`` dicts keyed by DICOM keyword."""
    _check_keys(level, query)
    conds: list[ColumnElement[bool]] = []
    modalities: str | None = None
    for k, v in query.items():
        if v is None or str(v).strip() == "" or k in _IGNORED:
            continue
        if k == "ModalitiesInStudy":
            modalities = str(v)
            continue
        if k in _COMPUTED[level]:
            continue
        conds.append(_condition(k, str(v)))
    if modalities:
        mods = [m for m in modalities.split("\\") if m]
        sub = select(t.series.c.study_pk).where(or_(*[_condition("Modality", m) for m in mods]))
        conds.append(t.studies.c.id.in_(sub))
    if not include_derived:
        conds.append(t.series.c.derived.is_(False))

    joins_series = level in ("SERIES", "IMAGE") or any(
        _ATTRS.get(k, ("",))[0] in ("SERIES", "IMAGE") for k, v in query.items() if v)
    joins_image = level == "IMAGE" or any(
        _ATTRS.get(k, ("",))[0] == "IMAGE" for k, v in query.items() if v)
    if not include_derived:
        joins_series = True

    if level == "PATIENT":
        cols = [_ATTRS[k][1] for k in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")]
        q = select(*cols).select_from(t.studies).group_by(*cols).order_by(t.studies.c.patient_id)
    elif level == "STUDY":
        q = select(t.studies).order_by(t.studies.c.study_date, t.studies.c.study_time, t.studies.c.id)
        if joins_series or joins_image:
            q = select(t.studies).where(t.studies.c.id.in_(_scoped_pks(conds, joins_image, "study")))
            conds = []
            q = q.order_by(t.studies.c.study_date, t.studies.c.study_time, t.studies.c.id)
    elif level == "SERIES":
        q = (select(t.series, t.studies).join(t.studies, t.series.c.study_pk == t.studies.c.id)
             .order_by(t.studies.c.id, t.series.c.series_number, t.series.c.id))
        if joins_image:
            q = q.where(t.series.c.id.in_(_scoped_pks(conds, True, "series")))
            conds = []
    else:
        q = (select(t.instances, t.series, t.studies)
             .join(t.series, t.instances.c.series_pk == t.series.c.id)
             .join(t.studies, t.series.c.study_pk == t.studies.c.id)
             .order_by(t.studies.c.id, t.series.c.id, t.instances.c.instance_number, t.instances.c.id))
    if conds:
        q = q.where(and_(*conds))
    if limit is not None:
        q = q.limit(limit)
    if offset:
        q = q.offset(offset)
    with engine.connect() as conn:
        rows = [r._mapping for r in conn.execute(q)]
        return _answers(conn, level, rows)


def _scoped_pks(conds: list[ColumnElement[bool]], with_image: bool, what: str) -> Any:
    col = t.studies.c.id if what == "study" else t.series.c.id
    q = select(col).distinct().select_from(t.studies).join(t.series, t.series.c.study_pk == t.studies.c.id)
    if with_image:
        q = q.join(t.instances, t.instances.c.series_pk == t.series.c.id)
    return q.where(and_(*conds)) if conds else q


def _answers(conn: Any, level: str, rows: list[Any]) -> list[dict[str, Any]]:
    rank = _LEVEL_RANK[level]
    out: list[dict[str, Any]] = []
    for m in rows:
        d: dict[str, Any] = {}
        for k, (lvl, col, _) in _ATTRS.items():
            if level == "PATIENT":
                if lvl == "PATIENT":
                    d[k] = m[col.name]
            elif _LEVEL_RANK[lvl] <= rank:
                d[k] = m[col]
        out.append(d)
    if not out:
        return out
    if level == "PATIENT":
        ids = [d["PatientID"] for d in out]
        q = (select(t.studies.c.patient_id, func.count(distinct(t.studies.c.id)),
                    func.count(distinct(t.series.c.id)), func.count(t.instances.c.id))
             .select_from(t.studies).outerjoin(t.series, t.series.c.study_pk == t.studies.c.id)
             .outerjoin(t.instances, t.instances.c.series_pk == t.series.c.id)
             .where(t.studies.c.patient_id.in_(ids)).group_by(t.studies.c.patient_id))
        counts = {r[0]: r[1:] for r in conn.execute(q)}
        for d in out:
            c = counts.get(d["PatientID"], (0, 0, 0))
            d["NumberOfPatientRelatedStudies"], d["NumberOfPatientRelatedSeries"], \
                d["NumberOfPatientRelatedInstances"] = c
    elif level == "STUDY":
        uids = [d["StudyInstanceUID"] for d in out]
        q = (select(t.studies.c.study_uid, t.series.c.modality, func.count(t.instances.c.id))
             .select_from(t.studies).join(t.series, t.series.c.study_pk == t.studies.c.id)
             .outerjoin(t.instances, t.instances.c.series_pk == t.series.c.id)
             .where(t.studies.c.study_uid.in_(uids)).group_by(t.studies.c.study_uid, t.series.c.id,
                                                               t.series.c.modality))
        per: dict[str, list[tuple[str, int]]] = {}
        for uid, modality, n in conn.execute(q):
            per.setdefault(uid, []).append((modality, n))
        for d in out:
            series_rows = per.get(d["StudyInstanceUID"], [])
            d["ModalitiesInStudy"] = sorted({m for m, _ in series_rows if m})
            d["NumberOfStudyRelatedSeries"] = len(series_rows)
            d["NumberOfStudyRelatedInstances"] = sum(n for _, n in series_rows)
    elif level == "SERIES":
        uids = [d["SeriesInstanceUID"] for d in out]
        q = (select(t.series.c.series_uid, func.count(t.instances.c.id)).select_from(t.series)
             .outerjoin(t.instances, t.instances.c.series_pk == t.series.c.id)
             .where(t.series.c.series_uid.in_(uids)).group_by(t.series.c.series_uid))
        counts = {r[0]: r[1] for r in conn.execute(q)}
        for d in out:
            d["NumberOfSeriesRelatedInstances"] = counts.get(d["SeriesInstanceUID"], 0)
    return out
