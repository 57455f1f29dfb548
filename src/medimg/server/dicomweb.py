"""DICOMweb (PS3.18) over the study store: STOW-RS, QIDO-RS and WADO-RS, mounted at ``/dicomweb``.

========================================================  =====================================
``POST /studies``, ``POST /studies/{study}``              STOW-RS (``multipart/related;
                                                          type="application/dicom"``)
``GET /studies``, ``/series``, ``/instances``,             QIDO-RS (DICOM JSON)
``/studies/{study}/series``, ``/studies/{study}/instances``,
``/studies/{study}/series/{series}/instances``
``GET /studies/{study}[/series/{series}[/instances/{sop}]]``  WADO-RS retrieve (Part 10 files)
``GET .../metadata``                                      WADO-RS metadata (DICOM JSON)
``GET .../instances/{sop}/frames/{list}``                 frames (uncompressed or as stored)
``GET .../instances/{sop}/bulkdata/{path}``               bulk data named in the metadata
``GET .../instances/{sop}[/frames/{n}]/rendered``          PNG / JPEG with windowing
``GET .../thumbnail`` (study, series, instance, frame)      a small rendered image
========================================================  =====================================

Every path parameter is checked to be a UID before anything else; files are only found through the
index.  Errors are ``{"error": "..."}`` with a 4xx status; nothing a client sends stops the service.
docs/dicomweb.md is the conformance statement.
"""

from __future__ import annotations

import io
import json
import logging
import mmap
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from ..store import InstanceRejected, QueryError, StoredInstance, StoreResult, find
from ..store.part10 import inspect_dataset, is_valid_uid, split_part10
from ..store.validate import StructureError
from . import dicom_json as dj
from .frames import (
    EXPLICIT_LE,
    IMPLICIT_LE,
    MEDIA_ALIASES,
    FrameError,
    PixelSource,
    media_type_of,
    parse_window,
    render,
)
from .multipart import (
    MediaType,
    MultipartError,
    close_delimiter,
    new_boundary,
    parse_accept,
    parse_media_type,
    part_header,
    split_parts,
)

if TYPE_CHECKING:
    from .app import MedimgServer

__all__ = ["STATUS_STUDY_MISMATCH", "WebError", "router"]

log = logging.getLogger("medimg.server.dicomweb")

DICOM_JSON = "application/dicom+json"
#: Failure Reason for an instance whose Study Instance UID differs from the STOW-RS target study
#: (a Cxxx "cannot understand" code; PS3.18 I.2.2 allows implementation codes, see docs/dicomweb.md)
STATUS_STUDY_MISMATCH = 0xC409
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_CANNOT_UNDERSTAND = 0xC000
CHUNK = 1 << 20
THUMBNAIL_VIEWPORT = (128, 128)
MAX_VIEWPORT = 4096
MAX_FRAMES_PER_REQUEST = 10000


class WebError(Exception):
    """An answer other than success: HTTP ``status`` and a one-line ``message`` for ``{"error": ...}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    one_line = " ".join(message.split())
    return Response(json.dumps({"error": one_line}), status_code=status, media_type="application/json",
                    headers=headers)


class _Route(APIRoute):
    """Turns :class:`WebError` (and any unexpected exception) into a JSON error answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except WebError as exc:
                return error_response(exc.status, exc.message, exc.headers)
            except StarletteHTTPException:
                raise
            except Exception as exc:  # a bug or an unforeseen input: log it, answer, keep serving
                log.exception("DICOMweb %s %s failed", request.method, request.url.path)
                return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

        return answer


def _uid(value: str, what: str) -> str:
    if not is_valid_uid(value):
        shown = value[:80].encode("unicode_escape").decode("ascii")
        raise WebError(400, f"{what} '{shown}' is not a UID (digits and dots, at most 64 characters)")
    return value


def _ascii(text: str, limit: int = 300) -> str:
    return text[:limit].encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")


def _base(request: Request) -> str:
    """The service root (``http://host:port/dicomweb``) as the client addressed it."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", "") or ""
    path = request.url.path
    try:
        suffix = template.format(**request.path_params)
    except (KeyError, IndexError, ValueError):
        suffix = ""
    prefix = path[:len(path) - len(suffix)] if suffix and path.endswith(suffix) else ""
    if not prefix.startswith("/"):  # not derivable: fall back to the mount point under the root path
        prefix = str(request.base_url.path).rstrip("/") + "/dicomweb"
    return f"{request.url.scheme}://{request.url.netloc}{prefix.rstrip('/')}"


def _accept(request: Request) -> list[MediaType]:
    text = request.query_params.get("accept") or request.headers.get("accept")
    try:
        return parse_accept(text)
    except MultipartError as exc:
        raise WebError(400, f"Accept {_ascii(text or '')!r}: {exc}") from None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type=DICOM_JSON,
                    headers=headers)


def _want_json(accept: list[MediaType]) -> None:
    for m in accept:
        if m.type in ("*/*", "application/*", DICOM_JSON, "application/json"):
            return
    offered = ", ".join(m.type for m in accept)
    raise WebError(406, f"this resource is served as {DICOM_JSON} only (accepted: {offered})")


@dataclass
class _Outcome:
    """What happened to one STOW-RS part."""

    ok: bool
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""
    status: int = 0
    reason: str = ""
    path: str = ""  # /studies/.../series/... of a stored instance


# ---------------------------------------------------------------------------------- QIDO tables
_STUDY_KEYS = ("StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
               "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
               "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
               "NumberOfStudyRelatedInstances")
_SERIES_KEYS = ("Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber", "SeriesDate",
                "SeriesTime", "BodyPartExamined", "NumberOfSeriesRelatedInstances", "StudyInstanceUID")
_INSTANCE_KEYS = ("SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "InstanceNumber", "Rows",
                  "Columns", "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID")
_CONTROL = {"limit", "offset", "fuzzymatching", "includefield", "accept", "charset"}


class DicomWebService:
    """The handlers; one per server (``router(server)`` builds it)."""

    def __init__(self, server: MedimgServer) -> None:
        self.server = server
        self.store = server.store
        self.limits = server.config.limits

    # ============================================================================== STOW-RS
    async def stow(self, request: Request, study: str | None = None) -> Response:
        if study is not None:
            _uid(study, "study")
        ctype = request.headers.get("content-type", "")
        try:
            mt = parse_media_type(ctype)
        except MultipartError:
            raise WebError(415, f"Content-Type {_ascii(ctype)!r} is not a media type; send "
                           'multipart/related; type="application/dicom"') from None
        if mt.type != "multipart/related":
            raise WebError(415, f"Content-Type {mt.type} is not supported; send "
                           'multipart/related; type="application/dicom" with one DICOM file per part')
        root_type = mt.param("type", "application/dicom").lower()
        if root_type != "application/dicom":
            raise WebError(415, f"parts of type {_ascii(root_type)} are not supported (the metadata + "
                           "bulk data form); send DICOM Part 10 files as application/dicom")
        boundary = mt.param("boundary")
        if not boundary:
            raise WebError(400, "Content-Type has no boundary parameter")
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise WebError(400, f"Content-Length {_ascii(declared)!r} is not a number") from None
            if length > limit:
                raise WebError(413, f"the body of {length} bytes exceeds the limit of {limit} bytes "
                               "(limits.max_body_bytes); send fewer instances per request")
        tmp = self.store.root / "tmp" / f"stow-{uuid.uuid4().hex}.body"
        try:
            size = 0
            try:
                fh = open(tmp, "xb")  # noqa: SIM115 (closed below, also on errors)
            except OSError as exc:
                raise WebError(507, f"cannot buffer the request in the store ({exc.strerror})") from None
            with fh:
                try:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > limit:
                            raise WebError(413, f"the body exceeds the limit of {limit} bytes "
                                           "(limits.max_body_bytes); send fewer instances per request")
                        fh.write(chunk)
                except ClientDisconnect:
                    raise WebError(400, "the client closed the connection before the body ended") from None
            source = f"stow-rs:{request.client.host if request.client else 'unknown'}"
            return await run_in_threadpool(self._stow_body, tmp, size, boundary, study, source,
                                           _base(request))
        finally:
            tmp.unlink(missing_ok=True)

    def _stow_body(self, tmp: Path, size: int, boundary: str, study: str | None, source: str,
                   base: str) -> Response:
        if size == 0:
            raise WebError(400, "the request body is empty")
        with open(tmp, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                parts = split_parts(mm, boundary)
            except MultipartError as exc:
                raise WebError(400, f"malformed multipart body: {exc}; nothing was stored") from None
            if not parts:
                raise WebError(400, "the multipart body has no parts")
            outcomes = [self._stow_part(n, part.content_type, mm[part.start:part.end], study, source)
                        for n, part in enumerate(parts, 1)]
        return self._stow_response(outcomes, study, base)

    def _stow_part(self, n: int, content_type: str, data: bytes, study: str | None,
                   source: str) -> _Outcome:
        if content_type:
            try:
                ptype = parse_media_type(content_type).type
            except MultipartError:
                ptype = content_type
            if ptype != "application/dicom":
                return _Outcome(False, status=STATUS_CANNOT_UNDERSTAND,
                                reason=f"part {n}: media type {_ascii(ptype, 80)} is not application/dicom")
        cls, sop = self._meta_uids(data)
        if study is not None:
            try:
                meta, offset = split_part10(data)
                header = inspect_dataset(memoryview(data)[offset:], meta["TransferSyntaxUID"],
                                         max_depth=self.store.max_depth,
                                         max_inflated=self.store.max_instance_bytes)
            except (StructureError, KeyError):
                pass  # the store refuses it below, with its own reason
            else:
                if header.study_uid != study:
                    return _Outcome(False, header.sop_class_uid or cls, header.sop_instance_uid or sop,
                                    status=STATUS_STUDY_MISMATCH,
                                    reason=f"part {n}: Study Instance UID {_ascii(header.study_uid, 80)} "
                                    f"is not the target study {study}")
        try:
            result = self.store.put_file_bytes(data, source=source)
        except InstanceRejected as exc:
            return _Outcome(False, cls, sop, status=exc.status,
                            reason=f"part {n}: {exc.problem}" + (f"; {exc.hint}" if exc.hint else ""))
        except Exception as exc:
            log.exception("STOW-RS part %d could not be stored", n)
            return _Outcome(False, cls, sop, status=STATUS_PROCESSING_FAILURE,
                            reason=f"part {n}: processing failure ({type(exc).__name__})")
        if not result.ok:
            return _Outcome(False, result.sop_class_uid, result.sop_instance_uid, result.study_uid,
                            result.status, f"part {n}: {result.reason}")
        self._notify(result, source)
        return _Outcome(True, result.sop_class_uid, result.sop_instance_uid, result.study_uid,
                        path=series_url(result))

    @staticmethod
    def _meta_uids(data: bytes) -> tuple[str, str]:
        """SOP Class / Instance UIDs from the file meta group, to name a refused part (best effort)."""
        try:
            meta, _ = split_part10(data)
        except StructureError:
            return "", ""
        cls = meta.get("MediaStorageSOPClassUID", "")
        sop = meta.get("MediaStorageSOPInstanceUID", "")
        return (cls if is_valid_uid(cls) else ""), (sop if is_valid_uid(sop) else "")

    def _notify(self, result: StoreResult, source: str) -> None:
        try:
            self.server.instance_stored(result, source)
        except Exception:  # the instance is stored; a failing listener must not turn that into an error
            log.exception("instance_stored listener failed for %s", result.sop_instance_uid)

    def _stow_response(self, outcomes: list[_Outcome], study: str | None, base: str) -> Response:
        ok = [o for o in outcomes if o.ok]
        failed = [o for o in outcomes if not o.ok]
        body: dict[str, Any] = {}
        studies = {o.study_uid for o in ok}
        target = study or (next(iter(studies)) if len(studies) == 1 else None)
        if target:
            body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": [_sop_item(o, {"00081197": {"vr": "US",
                                                                                 "Value": [o.status]}})
                                                      for o in failed]}
        if ok:
            body["00081199"] = {"vr": "SQ", "Value": [_sop_item(o, {"00081190": {
                "vr": "UR", "Value": [f"{base}{o.path}/instances/{o.sop_instance_uid}"]}}) for o in ok]}
        status = 200 if not failed else (202 if ok else 409)
        response = _json(body, status)
        for o in failed[:10]:
            log.warning("STOW-RS refused %s", o.reason)
            response.headers.append("Warning", f'299 medimg "{_ascii(o.reason).replace(chr(34), chr(39))}"')
        return response

    # ============================================================================== QIDO-RS
    def search(self, request: Request, level: str, study: str | None = None,
               series: str | None = None) -> Response:
        if study is not None:
            _uid(study, "study")
        if series is not None:
            _uid(series, "series")
        _want_json(_accept(request))
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
                            raise WebError(400, f"includefield {_ascii(field_, 80)!r} is not a DICOM "
                                           "keyword or tag")
                        include.append(kw)
            elif low == "limit":
                limit = _int_param(key, value, 1)
            elif low == "offset":
                offset = _int_param(key, value, 0)
            elif low == "fuzzymatching":
                if value.lower() not in ("true", "false"):
                    raise WebError(400, f"fuzzymatching={_ascii(value, 40)!r} is not true or false")
                if value.lower() == "true":
                    warnings_.append("299 medimg: fuzzy matching is not supported; only literal matching "
                                     "has been performed (person names match case-insensitively)")
            elif low in _CONTROL:
                continue
            else:
                kw = dj.keyword_of(key)
                if kw is None:
                    raise WebError(400, f"query key {_ascii(key, 80)!r} is not a DICOM keyword or tag "
                                   "(nested keys are not supported)")
                if kw in query:
                    raise WebError(400, f"query key {kw} is given twice")
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
        base = _base(request)
        keys = self._return_keys(level, study is not None, series is not None)
        answers = [self._qido_answer(level, row, keys, include, include_all, query, base) for row in rows]
        response = _json(answers)
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

    # ============================================================================== WADO-RS
    def _instances(self, study: str, series: str | None = None, sop: str | None = None) -> list[StoredInstance]:
        _uid(study, "study")
        if series is not None:
            _uid(series, "series")
        if sop is not None:
            _uid(sop, "instance")
        found = self.store.instances(study_uid=study, series_uid=series, sop_uid=sop)
        if not found:
            what = (f"instance {sop} of series {series} of study {study}" if sop else
                    f"series {series} of study {study}" if series else f"study {study}")
            raise WebError(404, f"{what} is not stored here")
        return found

    def retrieve(self, request: Request, study: str, series: str | None = None,
                 sop: str | None = None) -> Response:
        instances = self._instances(study, series, sop)
        multipart, plan = self._dicom_plan(_accept(request), instances, single_allowed=sop is not None)
        sizes = []
        for inst in instances:
            try:
                sizes.append(inst.path.stat().st_size)
            except OSError:
                raise WebError(500, f"the stored file of instance {inst.sop_uid} is missing; "
                               "run 'medimg store verify'") from None
        if not multipart:
            inst, ts = instances[0], plan[0]
            if ts is None:
                return StreamingResponse(_file_chunks(inst.path), media_type="application/dicom",
                                         headers={"Content-Length": str(sizes[0])})
            return Response(_transcode(inst, ts), media_type="application/dicom")
        boundary = new_boundary()
        headers = [part_header(boundary, f"application/dicom; transfer-syntax={ts or inst.transfer_syntax}",
                               first=(i == 0)) for i, (inst, ts) in enumerate(zip(instances, plan, strict=True))]
        media = f'multipart/related; type="application/dicom"; boundary={boundary}'
        extra: dict[str, str] = {}
        if all(ts is None for ts in plan):
            total = sum(len(h) for h in headers) + sum(sizes) + len(close_delimiter(boundary))
            extra["Content-Length"] = str(total)

        def body() -> Iterator[bytes]:
            for inst, ts, head in zip(instances, plan, headers, strict=True):
                yield head
                if ts is None:
                    yield from _file_chunks(inst.path)
                else:
                    yield _transcode(inst, ts)
            yield close_delimiter(boundary)

        return StreamingResponse(body(), media_type=media, headers=extra)

    def _dicom_plan(self, accept: list[MediaType], instances: list[StoredInstance],
                    single_allowed: bool) -> tuple[bool, list[str | None]]:
        """(multipart?, per instance: None = as stored, or the transfer syntax to transcode to)."""
        reasons = []
        for m in accept:
            if m.type in ("*/*", "multipart/*", "application/*"):
                return True, [None] * len(instances)
            if m.type == "multipart/related":
                if m.param("type", "application/dicom").lower() not in ("application/dicom", "application/*"):
                    continue
                multipart = True
            elif m.type == "application/dicom":
                multipart = not single_allowed
            else:
                continue
            wanted = m.param("transfer-syntax")
            plan: list[str | None] = []
            for inst in instances:
                if wanted in ("", "*", inst.transfer_syntax):
                    plan.append(None)
                elif wanted in (EXPLICIT_LE,) and _can_transcode(inst.transfer_syntax):
                    plan.append(wanted)
                else:
                    reasons.append(f"instance {inst.sop_uid} is stored as {inst.transfer_syntax} and "
                                   f"cannot be given as {_ascii(wanted, 70)}")
                    break
            else:
                return multipart, plan
        hint = "; ".join(reasons[:1]) or "accepted: " + ", ".join(m.type for m in accept)
        raise WebError(406, f"cannot answer in an accepted media type ({hint}); ask for "
                       'multipart/related; type="application/dicom"; transfer-syntax=*')

    def metadata(self, request: Request, study: str, series: str | None = None,
                 sop: str | None = None) -> Response:
        instances = self._instances(study, series, sop)
        _want_json(_accept(request))
        base = _base(request)
        return _json([self._instance_metadata(inst, base) for inst in instances])

    def _instance_metadata(self, inst: StoredInstance, base: str) -> dict[str, Any]:
        url = instance_url(base, inst)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(inst.path, defer_size=1024)
                encoded = dj.dataset_to_json(ds, lambda p: f"{url}/bulkdata/{p}")
        except Exception as exc:
            log.warning("metadata of %s: %s", inst.sop_uid, exc)
            raise WebError(500, f"the stored file of instance {inst.sop_uid} cannot be read") from None
        encoded.setdefault("00083002", {"vr": "UI", "Value": [inst.transfer_syntax]})
        return dict(sorted(encoded.items()))

    def bulkdata(self, request: Request, study: str, series: str, sop: str, path: str) -> Response:
        inst = self._instances(study, series, sop)[0]
        accept = _accept(request)
        if path == "7FE00010" and not _native(inst.transfer_syntax):
            src = _pixel_source(inst)
            return self._frames_response(src, list(range(src.frames)), accept)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(inst.path)
            except Exception:
                raise WebError(500, f"the stored file of instance {inst.sop_uid} cannot be read") from None
            elem = dj.find_bulk(ds, path)
        if elem is None or elem.VR not in dj.BINARY_VRS or not isinstance(elem.value, bytes | bytearray):
            raise WebError(404, f"instance {sop} has no bulk data at {_ascii(path, 80)!r}")
        data = bytes(elem.value)
        if inst.transfer_syntax == "1.2.840.10008.1.2.2":  # bulk data is little endian (PS3.18 8.7.3.3)
            size = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}.get(elem.VR, 1)
            if size > 1 and len(data) % size == 0:
                import numpy as np

                data = np.frombuffer(data, dtype=f">u{size}").astype(f"<u{size}").tobytes()
        for m in accept:
            if m.type in ("*/*", "application/*", "application/octet-stream"):
                return Response(data, media_type="application/octet-stream")
            if m.type in ("multipart/related", "multipart/*") and \
                    m.param("type", "application/octet-stream").lower() in ("application/octet-stream", "*/*"):
                return _multipart_response(["application/octet-stream"], [data])
        raise WebError(406, "bulk data is served as application/octet-stream or multipart/related; "
                       'type="application/octet-stream"')

    # ------------------------------------------------------------------------------ frames
    def frames(self, request: Request, study: str, series: str, sop: str, frame_list: str) -> Response:
        inst = self._instances(study, series, sop)[0]
        numbers = _frame_numbers(frame_list)
        src = _pixel_source(inst)
        try:
            indices = [src.check(n) for n in numbers]
        except FrameError as exc:
            raise WebError(exc.status, str(exc)) from None
        return self._frames_response(src, indices, _accept(request))

    def _frames_response(self, src: PixelSource, indices: list[int], accept: list[MediaType]) -> Response:
        multipart, stored, content_type = _frame_plan(accept, src.transfer_syntax, src.is_native)
        if not multipart and len(indices) != 1:
            raise WebError(406, "a single-part answer holds one frame; ask for multipart/related to get "
                           f"{len(indices)} frames")
        try:
            data = [src.stored_frame(i) if stored else src.uncompressed_frame(i) for i in indices]
        except FrameError as exc:
            raise WebError(exc.status, str(exc)) from None
        if not multipart:
            return Response(data[0], media_type=content_type)
        return _multipart_response([content_type] * len(data), data)

    # ------------------------------------------------------------------------------ rendered
    def rendered(self, request: Request, study: str, series: str, sop: str,
                 frame_list: str | None = None, thumbnail: bool = False) -> Response:
        inst = self._instances(study, series, sop)[0]
        return self._render(request, inst, frame_list, thumbnail)

    def thumbnail(self, request: Request, study: str, series: str | None = None) -> Response:
        instances = [i for i in self._instances(study, series) if i.rows]
        if not instances:
            raise WebError(404, f"{'series ' + series if series else 'study ' + study} has no image to "
                           "make a thumbnail of")
        first_series = instances[0].series_uid
        in_series = [i for i in instances if i.series_uid == first_series]
        return self._render(request, in_series[len(in_series) // 2], None, True)

    def _render(self, request: Request, inst: StoredInstance, frame_list: str | None,
                thumbnail: bool) -> Response:
        params = request.query_params
        media = _rendered_media(_accept(request))
        try:
            window = parse_window(params["window"]) if params.get("window") else None
        except ValueError as exc:
            raise WebError(400, str(exc)) from None
        viewport = _viewport(params.get("viewport")) or (THUMBNAIL_VIEWPORT if thumbnail else None)
        quality = _int_param("quality", params["quality"], 1) if params.get("quality") else 90
        if quality > 100:
            raise WebError(400, "quality must be 1 to 100")
        number = 1
        if frame_list is not None:
            numbers = _frame_numbers(frame_list)
            if len(numbers) != 1:
                raise WebError(400, "rendered frames are given one at a time")
            number = numbers[0]
        src = _pixel_source(inst)
        try:
            index = src.check(number)
            data = render(src, index, media_type=media, window=window, viewport=viewport, quality=quality)
        except FrameError as exc:
            raise WebError(exc.status, str(exc)) from None
        return Response(data, media_type=media)

    # ------------------------------------------------------------------------------ fallback
    def unknown(self, request: Request, rest: str) -> Response:
        raise WebError(404, f"no DICOMweb resource at {_ascii(request.url.path, 120)!r} "
                       f"for {request.method}; see docs/dicomweb.md")


# ---------------------------------------------------------------------------------- helpers
def instance_url(base: str, inst: StoredInstance) -> str:
    return f"{base}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"


def series_url(result: StoreResult) -> str:
    return f"/studies/{result.study_uid}/series/{result.series_uid}"


def _sop_item(o: _Outcome, extra: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"00081150": {"vr": "UI"}, "00081155": {"vr": "UI"}}
    if o.sop_class_uid:
        item["00081150"]["Value"] = [o.sop_class_uid]
    if o.sop_instance_uid:
        item["00081155"]["Value"] = [o.sop_instance_uid]
    item.update(extra)
    return dict(sorted(item.items()))


def _int_param(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise WebError(400, f"{name}={_ascii(value, 40)!r} is not an integer") from None
    if number < minimum:
        raise WebError(400, f"{name} must be at least {minimum}")
    return number


def _frame_numbers(text: str) -> list[int]:
    pieces = [p.strip() for p in text.split(",")]
    if not pieces or len(pieces) > MAX_FRAMES_PER_REQUEST:
        raise WebError(400, f"a frame list holds 1 to {MAX_FRAMES_PER_REQUEST} frame numbers")
    numbers = []
    for p in pieces:
        if not p.isdigit() or len(p) > 9 or int(p) < 1:
            raise WebError(400, f"frame number {_ascii(p, 20)!r} is not a positive integer")
        numbers.append(int(p))
    return numbers


def _viewport(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    pieces = text.split(",")
    try:
        w, h = (int(p) for p in pieces[:2]) if len(pieces) >= 2 else (int(pieces[0]), int(pieces[0]))
    except ValueError:
        raise WebError(400, f"viewport={_ascii(text, 40)!r} is not 'width,height'") from None
    if not (1 <= w <= MAX_VIEWPORT and 1 <= h <= MAX_VIEWPORT):
        raise WebError(400, f"viewport sizes must be 1 to {MAX_VIEWPORT}")
    return w, h


def _rendered_media(accept: list[MediaType]) -> str:
    for m in accept:
        if m.type in ("*/*", "image/*", "image/jpeg"):
            return "image/jpeg"
        if m.type == "image/png":
            return "image/png"
    raise WebError(406, "rendered images are served as image/jpeg or image/png")


def _native(ts: str) -> bool:
    return not pydicom.uid.UID(ts).is_encapsulated


def _can_transcode(ts: str) -> bool:
    if ts == IMPLICIT_LE:
        return True
    uid = pydicom.uid.UID(ts)
    if not uid.is_encapsulated:
        return False
    try:
        return bool(pydicom.pixels.get_decoder(uid).is_available)
    except Exception:
        return False


def _transcode(inst: StoredInstance, ts: str) -> bytes:
    """The instance re-encoded in ``ts`` (Explicit VR Little Endian: decompressed if need be)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(inst.path)
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            ds.decompress(generate_instance_uid=False)  # the same instance, losslessly
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(ts)
        buf = io.BytesIO()
        ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _pixel_source(inst: StoredInstance) -> PixelSource:
    try:
        return PixelSource.open(inst.path, inst.transfer_syntax)
    except FrameError as exc:
        raise WebError(exc.status, f"instance {inst.sop_uid}: {exc}") from None


def _multipart_response(content_types: Sequence[str], parts: Sequence[bytes]) -> Response:
    boundary = new_boundary()
    chunks = []
    for i, (ctype, data) in enumerate(zip(content_types, parts, strict=True)):
        chunks.append(part_header(boundary, ctype, first=(i == 0)))
        chunks.append(data)
    chunks.append(close_delimiter(boundary))
    root = content_types[0].split(";")[0] if content_types else "application/octet-stream"
    return Response(b"".join(chunks), media_type=f'multipart/related; type="{root}"; boundary={boundary}')


def _frame_plan(accept: list[MediaType], ts: str, native: bool) -> tuple[bool, bool, str]:
    """(multipart?, as stored?, part Content-Type) for frames stored in ``ts``, or 406."""
    uncompressed = f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    stored_media = media_type_of(ts)
    for m in accept:
        if m.type in ("*/*", "multipart/*"):
            return True, native, uncompressed
        if m.type == "multipart/related":
            multipart, kind = True, m.param("type", "application/octet-stream").lower()
        else:
            multipart, kind = False, m.type
        kind = MEDIA_ALIASES.get(kind, kind)
        wanted = m.param("transfer-syntax")
        if kind in ("application/octet-stream", "application/*"):
            if wanted in ("", EXPLICIT_LE) or native and wanted in ("*", ts):
                return multipart, native, uncompressed
            if wanted in ("*", ts):
                return multipart, True, f"application/octet-stream; transfer-syntax={ts}"
        elif (kind.startswith("image/") or kind.startswith("video/")) and not native:
            covers = kind == stored_media or (kind.endswith("/*") and stored_media.startswith(kind[:-1]))
            if covers and wanted in ("", "*", ts):
                return multipart, True, f"{stored_media}; transfer-syntax={ts}"
    offered = ", ".join(m.type + (f" ({m.param('type')})" if m.param("type") else "") for m in accept)
    raise WebError(406, f"frames stored as {ts} cannot be given in an accepted media type ({_ascii(offered, 200)}); "
                   'ask for multipart/related; type="application/octet-stream" (uncompressed) or add '
                   "transfer-syntax=* (as stored)")


# ---------------------------------------------------------------------------------- the router
def router(server: MedimgServer) -> APIRouter:
    """The DICOMweb routes of ``server``, to mount at ``/dicomweb``."""
    svc = DicomWebService(server)
    r = APIRouter(route_class=_Route)
    study_path = "/studies/{study}"
    series_path = study_path + "/series/{series}"
    instance_path = series_path + "/instances/{sop}"

    # STOW-RS
    @r.post("/studies")
    async def stow_studies(request: Request) -> Response:
        return await svc.stow(request)

    @r.post(study_path)
    async def stow_study(request: Request, study: str) -> Response:
        return await svc.stow(request, study)

    # QIDO-RS
    @r.get("/studies")
    def search_studies(request: Request) -> Response:
        return svc.search(request, "STUDY")

    @r.get("/series")
    def search_series(request: Request) -> Response:
        return svc.search(request, "SERIES")

    @r.get("/instances")
    def search_instances(request: Request) -> Response:
        return svc.search(request, "IMAGE")

    @r.get(study_path + "/series")
    def search_study_series(request: Request, study: str) -> Response:
        return svc.search(request, "SERIES", study)

    @r.get(study_path + "/instances")
    def search_study_instances(request: Request, study: str) -> Response:
        return svc.search(request, "IMAGE", study)

    @r.get(series_path + "/instances")
    def search_series_instances(request: Request, study: str, series: str) -> Response:
        return svc.search(request, "IMAGE", study, series)

    # WADO-RS
    @r.get(study_path)
    def retrieve_study(request: Request, study: str) -> Response:
        return svc.retrieve(request, study)

    @r.get(series_path)
    def retrieve_series(request: Request, study: str, series: str) -> Response:
        return svc.retrieve(request, study, series)

    @r.get(instance_path)
    def retrieve_instance(request: Request, study: str, series: str, sop: str) -> Response:
        return svc.retrieve(request, study, series, sop)

    @r.get(study_path + "/metadata")
    def study_metadata(request: Request, study: str) -> Response:
        return svc.metadata(request, study)

    @r.get(series_path + "/metadata")
    def series_metadata(request: Request, study: str, series: str) -> Response:
        return svc.metadata(request, study, series)

    @r.get(instance_path + "/metadata")
    def instance_metadata(request: Request, study: str, series: str, sop: str) -> Response:
        return svc.metadata(request, study, series, sop)

    @r.get(instance_path + "/bulkdata/{path}")
    def bulkdata(request: Request, study: str, series: str, sop: str, path: str) -> Response:
        return svc.bulkdata(request, study, series, sop, path)

    @r.get(instance_path + "/frames/{frames}")
    def frames(request: Request, study: str, series: str, sop: str, frames: str) -> Response:
        return svc.frames(request, study, series, sop, frames)

    @r.get(instance_path + "/rendered")
    def rendered(request: Request, study: str, series: str, sop: str) -> Response:
        return svc.rendered(request, study, series, sop)

    @r.get(instance_path + "/frames/{frames}/rendered")
    def frames_rendered(request: Request, study: str, series: str, sop: str, frames: str) -> Response:
        return svc.rendered(request, study, series, sop, frames)

    @r.get(instance_path + "/thumbnail")
    def instance_thumbnail(request: Request, study: str, series: str, sop: str) -> Response:
        return svc.rendered(request, study, series, sop, thumbnail=True)

    @r.get(instance_path + "/frames/{frames}/thumbnail")
    def frame_thumbnail(request: Request, study: str, series: str, sop: str, frames: str) -> Response:
        return svc.rendered(request, study, series, sop, frames, thumbnail=True)

    @r.get(series_path + "/thumbnail")
    def series_thumbnail(request: Request, study: str, series: str) -> Response:
        return svc.thumbnail(request, study, series)

    @r.get(study_path + "/thumbnail")
    def study_thumbnail(request: Request, study: str) -> Response:
        return svc.thumbnail(request, study)

    @r.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    def unknown(request: Request, rest: str) -> Response:
        return svc.unknown(request, rest)

    return r
