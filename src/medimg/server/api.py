"""The HTTP service: DICOMweb under ``/dicomweb`` and the REST API (worklist, reports, studies) under
``/api``.  Built per server by :func:`build_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

if TYPE_CHECKING:
    from .app import MedimgServer

__all__ = ["build_app"]


def build_app(server: MedimgServer) -> FastAPI:
    from .. import __version__
    from .dicomweb import router as dicomweb_router

    app = FastAPI(title="medimg", version=__version__)
    if server.config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(server.config.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
                           expose_headers=["Content-Type", "Content-Length"])
    app.include_router(dicomweb_router(server), prefix="/dicomweb")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "aet": server.config.aet,
                "dicom_port": server.node.port, **server.store.count()}

    return app
