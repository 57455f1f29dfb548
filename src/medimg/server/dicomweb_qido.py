"""QIDO-RS (PS3.18 10.6): search for studies, series and instances, answered in DICOM JSON.

Matching is the store's (:func:`medimg.store.find`, shared with C-FIND): keys by keyword or tag,
wildcards, date and time ranges, UID lists (backslash or comma).  ``includefield`` adds attributes: those
the index holds, else read from the instance (or the first instance of the series or study); ``all``
adds every indexed one.  ``limit`` is capped by ``limits.max_query_results`` (a ``Warning`` header says
so when results were cut), ``offset`` pages; ``fuzzymatching=true`` is accepted with a ``Warning``
(matching stays literal, person names case-insensitive).  An unknown key is a 400 that names it.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import pydicom
from fastapi import Request
from starlette.responses import Response

from ..store import QueryError, find, supported_keys
from . import dicom_json as dj
from .dicomweb_http import (
    WebError,
    accept_of,
    instance_url,
    int_param,
    json_response,
    printable,
    require_json,
    service_base,
    uid_param,
)

if TYPE_CHECKING:
    from .app import MedimgServer

__all__ = ["QidoService"]

log = logging.getLogger("medimg.server.dicomweb")

# ---------------------------------------------------------------------------------- QIDO tables
_STUDY_KEYS = ("StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
               "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
               "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
               "NumberOfStudyRelatedInstances")
_SERIES_KEYS = ("Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber", "SeriesDate",
                "SeriesTime", "BodyPartExamined", "NumberOfSeriesRelatedInstances", "StudyInstanceUID")
_INSTANCE_KEYS = ("SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "InstanceNumber", "Rows",
                  "Columns", "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID")
# keys with a value are matched; counts are computed, never matched
_MATCHABLE = frozenset(k for k in supported_keys("IMAGE") + ["ModalitiesInStudy"] if not k.startswith("NumberOf"))
_CONTROL = {"limit", "offset", "fuzzymatching", "includefield", "accept", "charset"}


class QidoService:
    """QIDO-RS for one server."""

    def __init__(self, server: MedimgServer) -> None:
        self.store = server.store
        self.limits = server.config.limits

    def search(self, request: Request, level: str, study: str | None = None,
               series: str | None = None) -> Response:
        if study is not None:
            uid_param(study, "study")
        if series is not None:
            uid_param(series, "series")
        require_json(accept_of(request))
        query: dict[str, str] = {}
        include: list[str] = []
        include_all = False
        limit: int | None = None
        offset = 0
        warnings_: list[str] = []
        for key, value in request.query_params.multi_items():
            low = key.lower()
            if low == "includefield":
                for field_ in value.split(","):
                    field_ = field_.strip()
                    if field_.lower() == "all":
                        include_all = True
                    elif field_:
                        kw = dj.keyword_of(field_)
                        if kw is None:
                            raise WebError(400, f"includefield {printable(field_, 80)!r} is not a DICOM "
                                           "keyword or tag")
                        include.append(kw)
            elif low == "limit":
                limit = int_param(key, value, 1)
            elif low == "offset":
                offset = int_param(key, value, 0)
            elif low == "fuzzymatching":
                if value.lower() not in ("true", "false"):
                    raise WebError(400, f"fuzzymatching={printable(value, 40)!r} is not true or false")
                if value.lower() == "true":
                    warnings_.append("299 medimg: fuzzy matching is not supported; only literal matching "
                                     "has been performed (person names match case-insensitively)")
            elif low in _CONTROL:
                continue
            else:
                kw = dj.keyword_of(key)
                if kw is None:
                    raise WebError(400, f"query key {printable(key, 80)!r} is not a DICOM keyword or tag "
                                   "(nested keys are not supported)")
                if kw in query:
                    raise WebError(400, f"query key {kw} is given twice")
                if kw not in _MATCHABLE:
                    if value.strip():
                        raise WebError(400, f"{kw} cannot be matched here (matching keys: "
                                       f"{', '.join(sorted(_MATCHABLE))}); give it as includefield to have "
                                       "it returned")
                    include.append(kw)  # an empty key asks for the attribute to be returned
                    continue
                if kw.endswith("UID") and kw != "AvailableTransferSyntaxUID":
                    value = value.replace(",", "\\")
                query[kw] = value
        if study is not None:
            query["StudyInstanceUID"] = study
        if series is not None:
            query["SeriesInstanceUID"] = series
        cap = self.limits.max_query_results
        effective = min(limit or cap, cap)
        try:
            rows = find(self.store.engine, level, query, limit=effective + 1, offset=offset)
        except QueryError as exc:
            raise WebError(400, f"unsupported query: {exc}") from None
        if len(rows) > effective:
            rows = rows[:effective]
            if limit is None or limit > cap:
                warnings_.append(f"299 medimg: the results were limited to {cap} "
                                 "(limits.max_query_results); page with offset")
        base = service_base(request)
        keys = self._return_keys(level, study is not None, series is not None)
        answers = [self._qido_answer(level, row, keys, include, include_all, query, base) for row in rows]
        response = json_response(answers)
        for w in warnings_:
            response.headers.append("Warning", w)
        return response

    @staticmethod
    def _return_keys(level: str, by_study: bool, by_series: bool) -> list[str]:
        if level == "STUDY":
            return list(_STUDY_KEYS)
        if level == "SERIES":
            return list(_SERIES_KEYS) + ([] if by_study else list(_STUDY_KEYS))
        keys = list(_INSTANCE_KEYS)
        if not by_series:
            keys += _SERIES_KEYS
        if not by_study:
            keys += _STUDY_KEYS
        return keys

    def _qido_answer(self, level: str, row: dict[str, Any], keys: list[str], include: list[str],
                     include_all: bool, query: dict[str, str], base: str) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys + list(query) + include + (list(row) if include_all else [])))
        out: dict[str, Any] = {}
        missing = []
        for kw in wanted:
            if kw in row:
                value = row[kw]
            elif kw == "InstanceAvailability":
                value = "ONLINE"
            elif kw in ("RetrieveURL", "RetrieveURI", "QueryRetrieveLevel"):
                continue
            else:
                if kw in include:
                    missing.append(kw)
                continue
            try:
                tag, element = dj.attribute(kw, value)
            except (KeyError, TypeError, ValueError):
                continue
            out[tag] = element
        url = f"{base}/studies/{row['StudyInstanceUID']}"
        if level in ("SERIES", "IMAGE"):
            url += f"/series/{row['SeriesInstanceUID']}"
        if level == "IMAGE":
            url += f"/instances/{row['SOPInstanceUID']}"
        out["00081190"] = {"vr": "UR", "Value": [url]}
        if missing:
            out.update(self._header_attributes(level, row, missing, base))
        return dict(sorted(out.items()))

    def _header_attributes(self, level: str, row: dict[str, Any], keywords: list[str],
                           base: str) -> dict[str, Any]:
        """includefield attributes the index does not hold, read from a representative instance
        (the instance itself, or the first instance of the series or study)."""
        if level == "IMAGE":
            found = self.store.instances(sop_uid=row["SOPInstanceUID"])
        elif level == "SERIES":
            found = self.store.instances(series_uid=row["SeriesInstanceUID"])
        else:
            found = self.store.instances(study_uid=row["StudyInstanceUID"])
        if not found:
            return {}
        inst = found[0]
        tags = [pydicom.datadict.tag_for_keyword(k) for k in keywords]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(inst.path, stop_before_pixels=True,
                                     specific_tags=[t for t in tags if t is not None])
        except Exception as exc:
            log.warning("cannot read %s for includefield: %s", inst.path, exc)
            return {}
        url = instance_url(base, inst)
        encoded = dj.dataset_to_json(ds, lambda p: f"{url}/bulkdata/{p}")
        return {dj.tag_hex(t): encoded[dj.tag_hex(t)] for t in tags if t is not None and dj.tag_hex(t) in encoded}
