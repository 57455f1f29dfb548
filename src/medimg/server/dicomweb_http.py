"""HTTP plumbing shared by the DICOMweb modules (:mod:`.dicomweb`, :mod:`.dicomweb_stow`,
:mod:`.dicomweb_qido`): the error type and the route class that turns it into ``{"error": "..."}``,
checks of path and query parameters, content negotiation, and the service's base URL."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..store import StoredInstance
from ..store.part10 import is_valid_uid
from .multipart import (
    MediaType,
    MultipartError,
    close_delimiter,
    new_boundary,
    parse_accept,
    part_header,
)

__all__ = [
    "DICOM_JSON",
    "DicomWebRoute",
    "WebError",
    "accept_of",
    "error_response",
    "instance_url",
    "int_param",
    "json_response",
    "multipart_response",
    "printable",
    "require_json",
    "service_base",
    "uid_param",
]

log = logging.getLogger("medimg.server.dicomweb")

DICOM_JSON = "application/dicom+json"


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


class DicomWebRoute(APIRoute):
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


def uid_param(value: str, what: str) -> str:
    if not is_valid_uid(value):
        shown = value[:80].encode("unicode_escape").decode("ascii")
        raise WebError(400, f"{what} '{shown}' is not a UID (digits and dots, at most 64 characters)")
    return value


def printable(text: str, limit: int = 300) -> str:
    return text[:limit].encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")


def service_base(request: Request) -> str:
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


def accept_of(request: Request) -> list[MediaType]:
    text = request.query_params.get("accept") or request.headers.get("accept")
    try:
        return parse_accept(text)
    except MultipartError as exc:
        raise WebError(400, f"Accept {printable(text or '')!r}: {exc}") from None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type=DICOM_JSON,
                    headers=headers)


def require_json(accept: list[MediaType]) -> None:
    for m in accept:
        if m.type in ("*/*", "application/*", DICOM_JSON, "application/json"):
            return
    offered = ", ".join(m.type for m in accept)
    raise WebError(406, f"this resource is served as {DICOM_JSON} only (accepted: {offered})")


def int_param(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise WebError(400, f"{name}={printable(value, 40)!r} is not an integer") from None
    if number < minimum:
        raise WebError(400, f"{name} must be at least {minimum}")
    return number


def multipart_response(content_types: Sequence[str], parts: Sequence[bytes]) -> Response:
    boundary = new_boundary()
    chunks = []
    for i, (ctype, data) in enumerate(zip(content_types, parts, strict=True)):
        chunks.append(part_header(boundary, ctype, first=(i == 0)))
        chunks.append(data)
    chunks.append(close_delimiter(boundary))
    root = content_types[0].split(";")[0] if content_types else "application/octet-stream"
    return Response(b"".join(chunks), media_type=f'multipart/related; type="{root}"; boundary={boundary}')


def instance_url(base: str, inst: StoredInstance) -> str:
    return f"{base}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"
