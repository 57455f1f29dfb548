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

import hashlib
import io
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from ..store import StoredInstance
from . import dicom_json as dj
from .dicomweb_http import (
    DicomWebRoute,
    WebError,
    accept_of,
    instance_url,
    int_param,
    json_response,
    multipart_response,
    printable,
    require_json,
    service_base,
    uid_param,
)
from .dicomweb_qido import QidoService
from .dicomweb_stow import StowService
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
from .multipart import MediaType, close_delimiter, new_boundary, part_header

if TYPE_CHECKING:
    from .app import MedimgServer

__all__ = ["WadoService", "WebError", "router"]

log = logging.getLogger("medimg.server.dicomweb")

CHUNK = 1 << 20
THUMBNAIL_VIEWPORT = (128, 128)
MAX_VIEWPORT = 4096
MAX_FRAMES_PER_REQUEST = 10000
METADATA_CACHE_SIZE = 4096  # instances (a CT instance's DICOM JSON is ~10 kB)


class WadoService:
    """WADO-RS for one server: retrieve, metadata, bulk data, frames, rendered, thumbnails."""

    def __init__(self, server: MedimgServer) -> None:
        self.store = server.store
        # DICOM JSON per (instance bytes, base URL): a stored instance never changes under its
        # SHA-256, so a viewer reopening a series is answered without re-reading every file
        self._metadata_cache: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()
        self._metadata_lock = threading.Lock()

    def _instances(self, study: str, series: str | None = None, sop: str | None = None) -> list[StoredInstance]:
        uid_param(study, "study")
        if series is not None:
            uid_param(series, "series")
        if sop is not None:
            uid_param(sop, "instance")
        found = self.store.instances(study_uid=study, series_uid=series, sop_uid=sop)
        if not found:
            what = (f"instance {sop} of series {series} of study {study}" if sop else
                    f"series {series} of study {study}" if series else f"study {study}")
            raise WebError(404, f"{what} is not stored here")
        return found

    def retrieve(self, request: Request, study: str, series: str | None = None,
                 sop: str | None = None) -> Response:
        instances = self._instances(study, series, sop)
        multipart, plan = self._dicom_plan(accept_of(request), instances, single_allowed=sop is not None)
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
                                   f"cannot be given as {printable(wanted, 70)}")
                    break
            else:
                return multipart, plan
        hint = "; ".join(reasons[:1]) or "accepted: " + ", ".join(m.type for m in accept)
        raise WebError(406, f"cannot answer in an accepted media type ({hint}); ask for "
                       'multipart/related; type="application/dicom"; transfer-syntax=*')

    def metadata(self, request: Request, study: str, series: str | None = None,
                 sop: str | None = None) -> Response:
        instances = self._instances(study, series, sop)
        require_json(accept_of(request))
        base = service_base(request)
        return revalidated(request, instances, lambda: json_response(
            [self._instance_metadata(inst, base) for inst in instances]))

    def _instance_metadata(self, inst: StoredInstance, base: str) -> dict[str, Any]:
        key = (inst.sop_uid, inst.sha256, base)
        with self._metadata_lock:
            hit = self._metadata_cache.get(key)
            if hit is not None:
                self._metadata_cache.move_to_end(key)
                return hit
        encoded = self._read_metadata(inst, base)
        with self._metadata_lock:
            self._metadata_cache[key] = encoded
            while len(self._metadata_cache) > METADATA_CACHE_SIZE:
                self._metadata_cache.popitem(last=False)
        return encoded

    def _read_metadata(self, inst: StoredInstance, base: str) -> dict[str, Any]:
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
        accept = accept_of(request)
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
            raise WebError(404, f"instance {sop} has no bulk data at {printable(path, 80)!r}")
        data = bytes(elem.value)
        if inst.transfer_syntax == "1.2.840.10008.1.2.2":  # bulk data is little endian (PS3.18 8.7.3.3)
            size = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}.get(elem.VR, 1)
            if size > 1 and len(data) % size == 0:
                import numpy as np

                data = np.frombuffer(data, dtype=f">u{size}").astype(f"<u{size}").tobytes()
        own = "application/octet-stream"
        if path == "00420011":  # Encapsulated Document: its own media type (e.g. application/pdf) too
            own = str(ds.get("MIMETypeOfEncapsulatedDocument", "") or own).strip().lower()
        offered = {"application/octet-stream", own, "*/*", "application/*"}
        for m in accept:
            if m.type in offered:
                return Response(data, media_type=own if m.type == own else "application/octet-stream")
            if m.type in ("multipart/related", "multipart/*"):
                kind = m.param("type", "application/octet-stream").lower()
                if kind in offered:
                    return multipart_response([own if kind == own else "application/octet-stream"], [data])
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
        return revalidated(request, [inst], lambda: self._frames_response(src, indices, accept_of(request)))

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
        return multipart_response([content_type] * len(data), data)

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
        media, multipart = _rendered_media(accept_of(request))
        try:
            window = parse_window(params["window"]) if params.get("window") else None
        except ValueError as exc:
            raise WebError(400, str(exc)) from None
        viewport = _viewport(params.get("viewport")) or (THUMBNAIL_VIEWPORT if thumbnail else None)
        quality = int_param("quality", params["quality"], 1) if params.get("quality") else 90
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
        return multipart_response([media], [data]) if multipart else Response(data, media_type=media)

    # ------------------------------------------------------------------------------ fallback
    def unknown(self, request: Request, rest: str) -> Response:
        raise WebError(404, f"no DICOMweb resource at {printable(request.url.path, 120)!r} "
                       f"for {request.method}; see docs/dicomweb.md")


# ---------------------------------------------------------------------------------- helpers
def revalidated(request: Request, instances: list[StoredInstance], make: Callable[[], Response]) -> Response:
    """Answer with an entity tag derived from the instances' SHA-256 and the request (URL, Accept), so
    a browser that has the answer revalidates it (304, no body) instead of downloading it again.
    ``no-cache``: with the ``replace`` conflict policy an instance can change, and the tag with it."""
    key = "|".join(i.sha256 for i in instances) + "|" + str(request.url) + "|" + request.headers.get("accept", "")
    tag = '"' + hashlib.sha256(key.encode()).hexdigest()[:40] + '"'
    headers = {"ETag": tag, "Cache-Control": "private, no-cache", "Vary": "Accept"}
    wanted = [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]
    if tag in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    response = make()
    if response.status_code == 200:
        response.headers.update(headers)
    return response


def _frame_numbers(text: str) -> list[int]:
    pieces = [p.strip() for p in text.split(",")]
    if not pieces or len(pieces) > MAX_FRAMES_PER_REQUEST:
        raise WebError(400, f"a frame list holds 1 to {MAX_FRAMES_PER_REQUEST} frame numbers")
    numbers = []
    for p in pieces:
        if not p.isdigit() or len(p) > 9 or int(p) < 1:
            raise WebError(400, f"frame number {printable(p, 20)!r} is not a positive integer")
        numbers.append(int(p))
    return numbers


def _viewport(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    pieces = text.split(",")
    try:
        w, h = (int(p) for p in pieces[:2]) if len(pieces) >= 2 else (int(pieces[0]), int(pieces[0]))
    except ValueError:
        raise WebError(400, f"viewport={printable(text, 40)!r} is not 'width,height'") from None
    if not (1 <= w <= MAX_VIEWPORT and 1 <= h <= MAX_VIEWPORT):
        raise WebError(400, f"viewport sizes must be 1 to {MAX_VIEWPORT}")
    return w, h


def _rendered_media(accept: list[MediaType]) -> tuple[str, bool]:
    """(image/jpeg or image/png, in a multipart/related answer?)"""
    for m in accept:
        multipart = m.type == "multipart/related"
        kind = m.param("type", "image/jpeg").lower() if multipart else m.type
        if kind in ("*/*", "image/*", "image/jpeg"):
            return "image/jpeg", multipart
        if kind == "image/png":
            return "image/png", multipart
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
    raise WebError(406, f"frames stored as {ts} cannot be given in an accepted media type ({printable(offered, 200)}); "
                   'ask for multipart/related; type="application/octet-stream" (uncompressed) or add '
                   "transfer-syntax=* (as stored)")


# ---------------------------------------------------------------------------------- the router
def router(server: MedimgServer) -> APIRouter:
    """The DICOMweb routes of ``server``, to mount at ``/dicomweb``."""
    svc = WadoService(server)
    stow = StowService(server)
    qido = QidoService(server)
    r = APIRouter(route_class=DicomWebRoute)
    study_path = "/studies/{study}"
    series_path = study_path + "/series/{series}"
    instance_path = series_path + "/instances/{sop}"

    # STOW-RS
    @r.post("/studies")
    async def stow_studies(request: Request) -> Response:
        return await stow.stow(request)

    @r.post(study_path)
    async def stow_study(request: Request, study: str) -> Response:
        return await stow.stow(request, study)

    # QIDO-RS
    @r.get("/studies")
    def search_studies(request: Request) -> Response:
        return qido.search(request, "STUDY")

    @r.get("/series")
    def search_series(request: Request) -> Response:
        return qido.search(request, "SERIES")

    @r.get("/instances")
    def search_instances(request: Request) -> Response:
        return qido.search(request, "IMAGE")

    @r.get(study_path + "/series")
    def search_study_series(request: Request, study: str) -> Response:
        return qido.search(request, "SERIES", study)

    @r.get(study_path + "/instances")
    def search_study_instances(request: Request, study: str) -> Response:
        return qido.search(request, "IMAGE", study)

    @r.get(series_path + "/instances")
    def search_series_instances(request: Request, study: str, series: str) -> Response:
        return qido.search(request, "IMAGE", study, series)

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
