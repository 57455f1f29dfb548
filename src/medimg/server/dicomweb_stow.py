"""STOW-RS (PS3.18 10.5): ``POST /studies`` and ``POST /studies/{study}`` with
``multipart/related; type="application/dicom"``, one DICOM Part 10 file per part.

The body is written to a file in the store's ``tmp/`` as it arrives, counted against
``limits.max_body_bytes`` (413 beyond it, the file removed), then split into parts; a body whose framing
is broken (no boundary, a part without its end, no close delimiter) is refused whole (400) before any
part is stored.  Each part goes through :meth:`Store.put_file_bytes` and, once stored, to
``server.instance_stored``.  Answer: 200 all stored, 202 some, 409 none, with the Store Instances
Response (Referenced / Failed SOP Sequence) in DICOM JSON and one ``Warning`` header per failure.
"""

from __future__ import annotations

import logging
import mmap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..store import InstanceRejected, StoreResult
from ..store.part10 import inspect_dataset, is_valid_uid, split_part10
from ..store.validate import StructureError
from .dicomweb_http import WebError, json_response, printable, service_base, uid_param
from .multipart import MultipartError, parse_media_type, split_parts

if TYPE_CHECKING:
    from .app import MedimgServer

__all__ = ["STATUS_STUDY_MISMATCH", "StowService"]

log = logging.getLogger("medimg.server.dicomweb")

#: Failure Reason for an instance whose Study Instance UID differs from the STOW-RS target study
#: (a Cxxx "cannot understand" code; PS3.18 I.2.2 allows implementation codes, see docs/dicomweb.md)
STATUS_STUDY_MISMATCH = 0xC409
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_CANNOT_UNDERSTAND = 0xC000


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


class StowService:
    """STOW-RS for one server."""

    def __init__(self, server: MedimgServer) -> None:
        self.server = server
        self.store = server.store
        self.limits = server.config.limits

    async def stow(self, request: Request, study: str | None = None) -> Response:
        if study is not None:
            uid_param(study, "study")
        ctype = request.headers.get("content-type", "")
        try:
            mt = parse_media_type(ctype)
        except MultipartError:
            raise WebError(415, f"Content-Type {printable(ctype)!r} is not a media type; send "
                           'multipart/related; type="application/dicom"') from None
        if mt.type != "multipart/related":
            raise WebError(415, f"Content-Type {mt.type} is not supported; send "
                           'multipart/related; type="application/dicom" with one DICOM file per part')
        root_type = mt.param("type", "application/dicom").lower()
        if root_type != "application/dicom":
            raise WebError(415, f"parts of type {printable(root_type)} are not supported (the metadata + "
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
                raise WebError(400, f"Content-Length {printable(declared)!r} is not a number") from None
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
                                           service_base(request))
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
                                reason=f"part {n}: media type {printable(ptype, 80)} is not application/dicom")
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
                                    reason=f"part {n}: Study Instance UID {printable(header.study_uid, 80)} "
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
        response = json_response(body, status)
        for o in failed[:10]:
            log.warning("STOW-RS refused %s", o.reason)
            response.headers.append("Warning", f'299 medimg "{printable(o.reason).replace(chr(34), chr(39))}"')
        return response


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
