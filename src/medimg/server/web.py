"""The workstation UI at ``/ui/``: the single-page app that ``web/`` builds (``npm run build``, run by
``scripts/setup.sh``) into ``medimg/web/static``.

==================================  ====================================================================
``GET /``                           redirect to ``/ui/``
``GET /ui/assets/<file>``           the bundle's files (content-hashed names: cached for a year)
``GET /ui/<file>``                  another file at the top of the build (icons), cached for an hour
``GET /ui/<anything else>``         ``index.html`` (the app's own routes: worklist, studies, dashboard)
==================================  ====================================================================

``index.html`` is never cached, so a new build is picked up on the next page load.  When the UI has not
been built, every ``/ui/`` page answers 503 with one line saying how to build it; the REST API and
DICOMweb work without it.  Files are looked up by name in the build folder only (no ``..``, no
hidden files, nothing outside it).
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

__all__ = ["STATIC_DIR", "router"]

#: Where ``web/vite.config.js`` writes the build.
STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"

ASSET_CACHE = "public, max-age=31536000, immutable"
FILE_CACHE = "public, max-age=3600"
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
NOT_BUILT = ("<!doctype html><meta charset=utf-8><title>medimg: UI not built</title>"
             "<p>The medimg workstation UI is not built: run scripts/setup.sh "
             "(or <code>npm ci &amp;&amp; npm run build</code> in web/).</p>\n")

# one path segment of a built file: no leading dot, no separators
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*")
_TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".wasm": "application/wasm", ".svg": "image/svg+xml",
          ".json": "application/json", ".map": "application/json", ".woff2": "font/woff2"}


def _media_type(path: Path) -> str:
    return _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _built_file(root: Path, relative: str) -> Path | None:
    """The file ``relative`` (``/``-separated) under ``root``, or ``None`` when the name is not a plain
    relative name or no such file exists."""
    parts = relative.split("/")
    if not parts or len(parts) > 8 or not all(_SEGMENT.fullmatch(p) for p in parts):
        return None
    path = root.joinpath(*parts)
    try:
        path.resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return None
    return path if path.is_file() else None


def router(static_dir: Path | None = None) -> APIRouter:
    """The UI's routes, serving the build in ``static_dir`` (default :data:`STATIC_DIR`).  Whether the
    UI is built is checked per request, so building it while the server runs works."""
    root = Path(static_dir) if static_dir is not None else STATIC_DIR
    r = APIRouter(include_in_schema=False)

    def index() -> Response:
        page = root / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT, status_code=503, headers={"Cache-Control": "no-store",
                                                                     "Retry-After": "60"})
        return FileResponse(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @r.api_route("/", methods=["GET", "HEAD"])
    def home() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @r.api_route("/ui", methods=["GET", "HEAD"])
    def ui_bare() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @r.api_route("/ui/assets/{name:path}", methods=["GET", "HEAD"])
    def asset(name: str) -> Response:
        path = _built_file(root / "assets", name)
        if path is None:
            if not (root / "index.html").is_file():
                return index()  # not built: the one-line 503
            raise HTTPException(404, "no such file in the workstation build")
        return FileResponse(path, media_type=_media_type(path),
                            headers={"Cache-Control": ASSET_CACHE, "X-Content-Type-Options": "nosniff"})

    @r.api_route("/ui/{route:path}", methods=["GET", "HEAD"])
    def page(route: str) -> Response:
        if route and route != "index.html" and "/" not in route and "." in route:
            path = _built_file(root, route)
            if path is not None:
                return FileResponse(path, media_type=_media_type(path),
                                    headers={"Cache-Control": FILE_CACHE, "X-Content-Type-Options": "nosniff"})
            if (root / "index.html").is_file():
                raise HTTPException(404, "no such file in the workstation build")
        return index()

    return r
