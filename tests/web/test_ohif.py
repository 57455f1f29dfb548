"""The stock OHIF viewer (v3, @ohif/app's prebuilt dist/ pinned in web/ohif) against a running medimg:
OHIF served from its own port with the app-config.js of docs/dicomweb.md, medimg with ``cors_origins``
set to OHIF's origin.  In Chromium: OHIF's study list lists the real chest CT (analysed, so the study
also holds medimg's SEG and SR series), the study opens in OHIF's basic viewer, an image renders (the
canvas is not blank) and every DICOMweb request OHIF made was answered 2xx (or 304 to a
revalidation).

OHIF is installed by scripts/setup.sh (``cd web/ohif && npm ci --ignore-scripts``); without it the test
fails saying so (no skip).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from browser_env import (
    ARTIFACTS,
    VIEWPORT,
    OhifServer,
    analysed,
    ct_files,
    ohif_app_config,
    wait_until,
)
from peers import free_port, start_medimg
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from workstation_helpers import put_study

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("browser")]

T_OHIF = 120_000  # ms: OHIF's bundle is large, and two shared cores are slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, OhifServer, str]]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    server = start_medimg(tmp_path_factory.mktemp("ohif") / "store", analysis=True, quiet_seconds=1.0,
                          cors_origins=(origin,))
    ohif = None
    try:
        uid = put_study(server, ct_files())
        wait_until(lambda: analysed(server, uid), 900, "the analysis of the CT")
        ohif = OhifServer(port, ohif_app_config(f"http://127.0.0.1:{server.config.http_port}/dicomweb"))
        yield server, ohif, uid
    finally:
        if ohif is not None:
            ohif.stop()
        server.stop()


def test_stock_ohif_lists_and_shows_the_ct_from_medimg(browser: Any, setup: tuple[Any, OhifServer, str]) -> None:
    server, ohif, uid = setup
    medimg = f"http://127.0.0.1:{server.config.http_port}"
    dicomweb: list[dict[str, Any]] = []
    problems: list[str] = []
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.set_default_timeout(T_OHIF)

        def on_response(r: Any) -> None:
            if r.url.startswith(medimg + "/dicomweb"):
                dicomweb.append({"status": r.status, "method": r.request.method, "url": r.url[len(medimg):],
                                 "type": r.headers.get("content-type", "")})

        page.on("response", on_response)
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.method} {r.url} {r.failure}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text[:400]}"))

        # the study list
        page.goto(ohif.url + "/")
        row = page.locator("tr, [data-cy=study-list-results] > *").filter(has_text="Lung_Dx-A0001").first
        row.wait_for()
        assert "CT\\SEG\\SR" in row.inner_text()
        shot(page, "20-ohif-study-list")
        assert any("/dicomweb/studies?" in d["url"] for d in dicomweb), dicomweb

        # open it in the basic viewer: expand the row, then the mode's button
        row.click()
        page.get_by_role("button", name="Basic Viewer").first.click()
        page.wait_for_url("**/viewer**")
        assert uid in page.url
        canvas = page.locator("canvas.cornerstone-canvas").first
        canvas.wait_for()
        img = wait_until(lambda: not_blank(canvas), T_OHIF / 1000, "an image in OHIF's viewport")
        # OHIF's first-visit tour dims the viewer: skip it for the screenshot
        with contextlib.suppress(PlaywrightTimeout):
            page.get_by_text("Skip all").first.click(timeout=5000)
        time.sleep(2)
        shot(page, "21-ohif-viewer")
        browser_panel = page.locator("body").inner_text()
        assert "SEG" in browser_panel and "SR" in browser_panel  # medimg's derived series are listed too
        frames = [d for d in dicomweb if "/frames/" in d["url"]]
        assert frames, "OHIF fetched no frames from medimg"
    finally:
        ctx.close()
        write_requests(dicomweb, problems)
    # 2xx, or 304 for a revalidation of what the browser cached (medimg sends entity tags)
    bad = [d for d in dicomweb if not (200 <= d["status"] < 300 or d["status"] == 304)]
    assert not bad, bad
    assert img


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def not_blank(canvas: Any) -> bool:
    png = canvas.screenshot()
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L")).astype(float)
    return bool(grey.std() > 20 and 0.05 < (grey > 30).mean() < 0.98)


def write_requests(dicomweb: list[dict[str, Any]], problems: list[str]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    summary: dict[str, int] = {}
    for d in dicomweb:
        key = f"{d['method']} {d['status']} {shape(d['url'])}"
        summary[key] = summary.get(key, 0) + 1
    out = {"requests": len(dicomweb), "by_shape": summary, "problems": problems[:100],
           "first_requests": dicomweb[:40]}
    (ARTIFACTS / "ohif-requests.json").write_text(json.dumps(out, indent=1) + "\n")
    print("\nOHIF's DICOMweb requests to medimg:\n" + json.dumps(summary, indent=1))
    if problems:
        print("OHIF problems:\n" + "\n".join(problems[:30]))


def shape(url: str) -> str:
    """A request's URL with the UIDs and frame numbers replaced, to count requests by kind."""
    import re

    path, _, query = url.partition("?")
    path = re.sub(r"/[0-9]+(\.[0-9]+)+", "/{uid}", path)
    path = re.sub(r"/frames/[0-9,]+", "/frames/{n}", path)
    keys = ",".join(sorted(k.split("=", 1)[0] for k in query.split("&") if k)) if query else ""
    return path + (f"?{keys}" if keys else "")
