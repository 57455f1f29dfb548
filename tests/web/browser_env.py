"""What the browser tests share: Debian's Chromium under Playwright, a medimg server (sessions,
analysis, a short quiet period) with the users of tests/server/workstation_helpers.py, and the real
studies it serves:

* the chest CT lung-pet-ct-dx-A0001 (2 x 64 slices; the analysis finds the large mass F1: urgent);
* a *prior* CT of the same patient a year earlier: series 3 of that study copied with new UIDs and an
  earlier date, stored first, so the CT's analysis compares with it (the viewer's Compare layout);
* the chest radiograph RG1_UNCR of pydicom-data (a CR with a Grad-CAM heatmap).

Used by conftest.py (the fixtures) and runnable on its own to keep a server up while looking at the UI
(``.venv/bin/python tests/web/browser_env.py``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
if str(TESTS / "server") not in sys.path:  # peers.py and workstation_helpers.py
    sys.path.insert(0, str(TESTS / "server"))

from peers import start_medimg  # noqa: E402
from peers import wait_for as wait_until  # noqa: E402,F401 (the browser tests' name for it)
from workstation_helpers import PASSWORD, USERS, add_users, put_study  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-default-apps", "--disable-sync",
                 "--no-first-run"]
#: a diagnostic reading screen is at least this big; the viewer shows its layer panel from 1800 px
VIEWPORT = {"width": 1920, "height": 1080}
ARTIFACTS = HERE / "artifacts"
STATIC_INDEX = REPO / "src" / "medimg" / "web" / "static" / "index.html"
RADIOLOGIST = "ada"
TECHNOLOGIST = "tom"
PRIOR_DATE = "20060404"


def data_dir() -> Path:
    """../shared/data or $MEDIMG_DATA, as tests/conftest.py finds it."""
    env = os.environ.get("MEDIMG_DATA")
    DATA = Path(env) if env else REPO.parent / "shared" / "data"
    if not (DATA / "MANIFEST.md").is_file():
        raise AssertionError(f"real data not found at {DATA}: put ../shared/data beside the checkout "
                             "or set MEDIMG_DATA")
    return DATA


def pydicom_data_file(name: str) -> Path:
    import data_store  # the pydicom-data distribution

    return Path(data_store.__file__).parent / "data" / name


def ct_files() -> list[Path]:
    files = sorted((data_dir() / "ct" / "lung-pet-ct-dx-A0001").glob("series-*/*.dcm"))
    assert len(files) == 128, len(files)
    return files


def write_prior(ct: list[Path], folder: Path) -> list[Path]:
    """Series 3 of the CT as a study of its own one year earlier (new study, series, instance and
    frame-of-reference UIDs; the pixel data untouched)."""
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for path in [p for p in ct if p.parent.name == "series-3"]:
        ds = pydicom.dcmread(path)
        sop = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.FrameOfReferenceUID = frame
        for tag in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            if tag in ds:
                setattr(ds, tag, PRIOR_DATE)
        ds.AccessionNumber = "PRIOR-2006"
        ds.StudyDescription = "CT CHEST (prior)"
        target = folder / path.name
        ds.save_as(target, enforce_file_format=True)
        out.append(target)
    return out


def check_ui_build() -> None:
    """The UI build the server serves exists and is not older than its sources (else the tests would
    test yesterday's UI)."""
    if not STATIC_INDEX.is_file():
        raise AssertionError(f"the workstation UI is not built ({STATIC_INDEX} missing): run "
                             "scripts/setup.sh or `cd web && npm ci && npm run build`")
    built = STATIC_INDEX.stat().st_mtime
    sources = [REPO / "web" / "index.html", *(p for p in (REPO / "web" / "src").rglob("*") if p.is_file())]
    newer = [p for p in sources if p.stat().st_mtime > built]
    if newer:
        raise AssertionError(f"the workstation UI build is older than {newer[0].relative_to(REPO)} (and "
                             f"{len(newer) - 1} more): run `cd web && npm run build` (or scripts/setup.sh)")


@dataclass
class Workstation:
    server: Any
    base: str
    ct_uid: str
    prior_uid: str
    cr_uid: str
    ct_series_uids: list[str] = field(default_factory=list)
    analysis_seconds: float = 0.0

    def url(self, path: str = "/ui/") -> str:
        return self.base + path


def analysed(server: Any, uid: str) -> bool:
    status = server.store.study_status(uid)
    if status in ("failed", "skipped"):
        raise AssertionError(f"the analysis of {uid} ended {status}: {server.store.events(uid)[-3:]}")
    return status == "ready"


@contextmanager
def workstation(folder: Path) -> Iterator[Workstation]:
    """A running server with the three studies analysed (about 30 s on two busy cores)."""
    check_ui_build()
    ct = ct_files()
    prior = write_prior(ct, folder / "prior")
    server = start_medimg(folder / "store", analysis=True, auth=True, quiet_seconds=2.0)
    try:
        add_users(server)
        t0 = time.monotonic()
        prior_uid = put_study(server, prior)  # first: the CT's analysis compares with it
        wait_until(lambda: analysed(server, prior_uid), 900, "the analysis of the prior CT")
        ct_uid = put_study(server, ct)
        cr_uid = put_study(server, [pydicom_data_file("RG1_UNCR.dcm")])
        wait_until(lambda: analysed(server, ct_uid) and analysed(server, cr_uid), 900,
                   "the analysis of the CT and the CR")
        ws = Workstation(server, f"http://127.0.0.1:{server.config.http_port}", ct_uid, prior_uid, cr_uid,
                         analysis_seconds=time.monotonic() - t0)
        yield ws
    finally:
        server.stop()


@contextmanager
def workstation_for_tests(folder: Path) -> Iterator[Workstation]:
    """:func:`workstation`, or the server that ``python tests/web/browser_env.py`` keeps running when
    $MEDIMG_WEB_TEST_SERVER names the JSON file it wrote (to iterate on the tests without waiting for
    the analyses each time; signing works once per server)."""
    reuse = os.environ.get("MEDIMG_WEB_TEST_SERVER")
    if reuse:
        info = json.loads(Path(reuse).read_text())
        yield Workstation(None, info["base"], info["ct"], info["prior"], info["cr"])
        return
    with workstation(folder) as ws:
        yield ws


OHIF_DIR = REPO / "web" / "ohif"
OHIF_DIST = OHIF_DIR / "node_modules" / "@ohif" / "app" / "dist"


def ohif_app_config(dicomweb: str) -> str:
    """OHIF's app-config.js with one DICOMweb data source: medimg at ``dicomweb`` (the configuration
    of docs/dicomweb.md)."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "medimg",
        "configuration": {
            "friendlyName": "medimg", "name": "medimg",
            "qidoRoot": dicomweb, "wadoRoot": dicomweb, "wadoUriRoot": dicomweb,
            "qidoSupportsIncludeField": True, "imageRendering": "wadors", "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True, "supportsFuzzyMatching": False, "supportsWildcard": True,
            "supportsReject": False, "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True}, "dicomUploadEnabled": True,
        },
    }
    config = {"routerBasename": "/", "showStudyList": True, "extensions": [], "modes": [],
              "defaultDataSourceName": "medimg", "dataSources": [source],
              "showWarningMessageForCrossOrigin": False, "showCPUFallbackMessage": False,
              "investigationalUseDialog": {"option": "never"}}
    return f"window.config = {json.dumps(config, indent=1)};\n"


class OhifServer:
    """OHIF's prebuilt dist/ (web/ohif, npm ci) on a free loopback port: plain files, index.html for
    the app's routes, and our app-config.js instead of the one shipped."""

    TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".wasm": "application/wasm",
             ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
             ".html": "text/html; charset=utf-8", ".woff2": "font/woff2", ".woff": "font/woff",
             ".map": "application/json", ".onnx": "application/octet-stream"}

    def __init__(self, port: int, app_config: str, dist: Path = OHIF_DIST) -> None:
        import http.server
        import threading

        if not (dist / "index.html").is_file():
            raise AssertionError(f"OHIF is not installed ({dist} missing): run scripts/setup.sh or "
                                 "`cd web/ohif && npm ci --ignore-scripts`")
        root, types, config = dist.resolve(), self.TYPES, app_config.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0].split("#", 1)[0]
                if path == "/app-config.js":
                    body, ctype = config, types[".js"]
                else:
                    f = (root / path.lstrip("/")).resolve()
                    if not f.is_relative_to(root) or not f.is_file():
                        f = root / "index.html"  # an app route
                    body, ctype = f.read_bytes(), types.get(f.suffix.lower(), "application/octet-stream")
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def sign_in_context(browser: Any, ws: Workstation, username: str) -> Any:
    """A browser context (1920 x 1080) whose cookie jar holds a session of ``username`` (signed in
    over the API; the sign-in page itself is tested once)."""
    ctx = browser.new_context(viewport=VIEWPORT, base_url=ws.base)
    r = ctx.request.post("/api/login", data={"username": username, "password": PASSWORD})
    assert r.status == 200, r.text()
    # the UI asks GET /api/me only when its sign-in flag is in localStorage (web/src/app/session.js),
    # as the sign-in page would have left it
    state = ctx.storage_state()
    ctx.close()
    state["origins"] = [{"origin": ws.base.rstrip("/"), "localStorage": [{"name": "medimg.session", "value": "1"}]}]
    return browser.new_context(viewport=VIEWPORT, base_url=ws.base, storage_state=state)


if __name__ == "__main__":  # a server to look at: writes its address to the JSON file named, runs until Ctrl+C
    import tempfile

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "medimg-browser-env.json").resolve()
    with tempfile.TemporaryDirectory() as tmp, workstation(Path(tmp)) as w:
        info = {"base": w.base, "ct": w.ct_uid, "prior": w.prior_uid, "cr": w.cr_uid,
                "users": {u: PASSWORD for u in USERS}, "analysis_s": round(w.analysis_seconds, 1)}
        out.write_text(json.dumps(info))
        print(json.dumps(info), flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
