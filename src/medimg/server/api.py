"""The HTTP service: DICOMweb under ``/dicomweb`` and the REST API (worklist, studies, reports, events)
under ``/api``.  Built per server by :func:`build_app`.

REST API (JSON; every error is ``{"error": "one line"}`` with its status code):

==========================================  ===================================================
``GET  /api/health``                        liveness, version, ports, store counts, analysis
``GET  /api/worklist``                      studies by priority then arrival (filters, paging)
``GET  /api/studies/{uid}``                 study, series (instance counts), analyses, events
``GET  /api/studies/{uid}/report``          report.json of the latest finished analysis
``GET  /api/studies/{uid}/report.html``     ... report.html, ``report.pdf``, ``sr``, ``seg``, ``fhir``
``POST /api/studies/{uid}/analyze``         queue an analysis again (202; 409 if one is pending)
``GET  /api/events``                        the audit trail (``study``, ``action``, ``after``)
==========================================  ===================================================

A UID in a path or query must be digits and dots (at most 64 characters), else 400; an unknown
study is 404.  The handlers only validate, call :mod:`.worklist` or the analysis service, and shape
the answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import worklist as wl

if TYPE_CHECKING:
    from .app import MedimgServer

__all__ = ["REPORT_FILES", "build_app", "check_uid"]

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")

#: ``/api/studies/{uid}/<name>`` -> (file of the analysis folder, media type)
REPORT_FILES = {
    "report": ("report.json", "application/json"),
    "report.json": ("report.json", "application/json"),
    "report.html": ("report.html", "text/html; charset=utf-8"),
    "report.pdf": ("report.pdf", "application/pdf"),
    "sr": ("sr.dcm", "application/dicom"),
    "seg": ("seg.dcm", "application/dicom"),
    "fhir": ("fhir.json", "application/fhir+json"),
}


def check_uid(value: str, what: str = "UID") -> str:
    """``value`` if it is a DICOM UID, else an HTTP 400."""
    if len(value) > 64 or not _UID.fullmatch(value):
        raise HTTPException(400, f"{what} {value[:80]!r} is not a DICOM UID (digits and dots, at most 64 "
                                 "characters)")
    return value


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:500]


def _split(values: list[str] | None) -> list[str]:
    """Query values given repeated (``?a=x&a=y``) or comma-separated (``?a=x,y``)."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


# ---------------------------------------------------------------------------------------- dependencies
def _server(request: Request) -> Any:
    return request.app.state.server


def _study_uid(uid: str) -> str:
    return check_uid(uid, "Study Instance UID")


def _known_study(uid: Annotated[str, Depends(_study_uid)], server: Annotated[Any, Depends(_server)]) -> str:
    if not wl.study_exists(server.store, uid):
        raise HTTPException(404, f"study {uid} is not in the store")
    return uid


#: A Study Instance UID from the path: 400 unless digits and dots, 404 unless stored.
KnownStudy = Annotated[str, Depends(_known_study)]


def build_app(server: MedimgServer) -> FastAPI:
    from .. import __version__
    from .dashboard import router as dashboard_router
    from .dicomweb import router as dicomweb_router
    from .web import router as web_router

    app = FastAPI(title="medimg", version=__version__)
    if server.config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(server.config.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
                           expose_headers=["Content-Type", "Content-Length"])
    app.include_router(dicomweb_router(server), prefix="/dicomweb")
    from . import auth, live, meshes, review

    auth.install(app, server)  # sessions: 401 on /api/* without one, except login and health (server/auth.py)
    app.include_router(auth.router(server))  # login, logout, me, users
    app.include_router(review.router(server))  # review, sign-off, history, evidence (server/review.py)
    app.include_router(live.router(server))  # GET /api/events/stream (server/live.py)
    app.include_router(meshes.router(server))  # GET /api/studies/{uid}/mesh/{name}.stl (server/meshes.py)
    app.include_router(dashboard_router(server))  # GET /api/dashboard (server/dashboard.py)
    app.include_router(web_router())  # the workstation UI at /ui/ (server/web.py)
    _error_handlers(app)
    app.state.server = server
    store = server.store

    # ------------------------------------------------------------------------------ routes
    @app.get("/api/health")
    def health() -> dict[str, Any]:
        analysis = server.analysis.status() if server.analysis is not None else {"enabled": False}
        return {"status": "ok", "version": __version__, "aet": server.config.aet,
                "dicom_port": server.node.port, "http_port": server.config.http_port,
                **store.count(), "analysis": analysis}

    @app.get("/api/worklist")
    def worklist(status: Annotated[list[str] | None, Query()] = None,
                 modality: Annotated[list[str] | None, Query()] = None,
                 priority: Annotated[list[str] | None, Query()] = None,
                 q: Annotated[str, Query(max_length=200)] = "",
                 limit: Annotated[int, Query(ge=1, le=wl.MAX_PAGE)] = 50,
                 offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        statuses, priorities = _split(status), _split(priority)
        known = set(wl.STUDY_STATUSES) | set(wl.ANALYSIS_STATUSES)
        bad = [s for s in statuses if s not in known]
        if bad:
            raise HTTPException(400, f"status {bad[0]!r} is unknown; use one of {', '.join(sorted(known))}")
        bad = [p for p in priorities if p not in wl.PRIORITIES]
        if bad:
            raise HTTPException(400, f"priority {bad[0]!r} is unknown; use one of {', '.join(wl.PRIORITIES)}")
        query = wl.WorklistQuery(status=statuses, modality=_split(modality), priority=priorities,
                                 q=q.strip(), limit=limit, offset=offset)
        return wl.worklist(store, query)

    @app.get("/api/studies/{uid}")
    def study(uid: KnownStudy) -> dict[str, Any]:
        detail = wl.study_detail(store, uid)
        if detail is None:  # removed in between
            raise HTTPException(404, f"study {uid} is not in the store")
        return detail

    def file_route(name: str, filename: str, media_type: str) -> None:
        def serve(uid: KnownStudy) -> Response:
            found = wl.finished_analysis(store, uid)
            if found is None:
                raise HTTPException(404, f"study {uid} has no finished analysis yet (study status: "
                                         f"{store.study_status(uid)})")
            analysis_id, folder = found
            path = folder / filename
            if not path.is_file():
                raise HTTPException(404, f"the latest finished analysis of study {uid} (id {analysis_id}) "
                                         f"has no {filename}")
            if media_type == "application/dicom":
                return FileResponse(path, media_type=media_type, filename=_download_name(filename, analysis_id))
            return FileResponse(path, media_type=media_type)

        serve.__name__ = f"study_{name.replace('.', '_')}"
        app.get(f"/api/studies/{{uid}}/{name}", response_class=Response, name=serve.__name__)(serve)

    for name, (filename, media_type) in REPORT_FILES.items():
        file_route(name, filename, media_type)

    @app.post("/api/studies/{uid}/analyze", status_code=202)
    def analyze(uid: KnownStudy) -> Any:
        if server.analysis is None:
            raise HTTPException(409, "automatic analysis is off on this server (analysis = false)")
        try:
            analysis_id, queued = server.analysis.request(uid, actor="api", reason="asked over the REST API")
        except KeyError:
            raise HTTPException(404, f"study {uid} is not in the store") from None
        if not queued:
            return JSONResponse({"error": f"an analysis of study {uid} is already queued or running "
                                          f"(id {analysis_id})", "analysis_id": analysis_id}, status_code=409)
        return {"analysis_id": analysis_id, "status": "queued"}

    @app.get("/api/events")
    def events(study: Annotated[str | None, Query()] = None,
               action: Annotated[str | None, Query(max_length=64)] = None,
               after: Annotated[int | None, Query(ge=0)] = None,
               limit: Annotated[int, Query(ge=1, le=10 * wl.MAX_PAGE)] = 100) -> dict[str, Any]:
        if study is not None:
            check_uid(study, "Study Instance UID")
        return wl.events(store, study_uid=study, action=action, after=after, limit=limit)

    return app


def _download_name(filename: str, analysis_id: int) -> str:
    p = Path(filename)
    return f"{p.stem}-{analysis_id}{p.suffix}"


def _error_handlers(app: FastAPI) -> None:
    """One-line JSON errors (``{"error": ...}``) under /api; other paths keep FastAPI's own format
    (DICOMweb answers as its router decides)."""
    from fastapi.exception_handlers import (
        http_exception_handler,
        request_validation_exception_handler,
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/api/"):
            return await http_exception_handler(request, exc)
        return JSONResponse({"error": _one_line(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if not request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body"))
        text = f"{where}: {first.get('msg', 'invalid request')}" if where else str(first.get("msg", "invalid request"))
        return JSONResponse({"error": _one_line(text)}, status_code=400)
