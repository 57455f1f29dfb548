"""Browser check of the viewer's development page (not shipped): opens it in headless Chromium,
waits for the first image, runs the named scenarios and writes screenshots and the timings.

    .venv/bin/python web/src/viewer/dev/check.py STATE.json OUTDIR [scenario ...]

Scenarios: single (default), scroll, presets, seg, findings, edit, mpr, mip, compare, 3d.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    state = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    scenarios = sys.argv[3:] or ["single"]
    base = state["url"]
    study = state.get("study") or ""
    query = state.get("query", "")
    if state.get("prior") and "&noprior" not in scenarios:
        query += f"&prior={state['prior']}"
    for arg in list(scenarios):
        if arg.startswith("&"):
            query += arg
            scenarios.remove(arg)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=base)
        if state.get("user"):
            r = ctx.request.post("/api/login", data={"username": state["user"], "password": state["password"]})
            assert r.status == 200, r.text()
        page = ctx.new_page()
        logs: list[str] = []
        page.on("console", lambda m: logs.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: logs.append(f"pageerror: {e} {e.stack}"))
        page.on("response", lambda r: logs.append(f"http {r.status} {r.url}") if r.status >= 400 else None)
        url = f"{base}/mvdev/viewer-dev.html?study={study}{query}"
        t0 = time.monotonic()
        page.goto(url)
        try:
            page.wait_for_function("window.__medimgViewerTimings && window.__medimgViewerTimings.latest && "
                                   "window.__medimgViewerTimings.latest.firstImage", timeout=30000)
        except Exception:
            page.screenshot(path=str(out / "failed.png"))
            for line in logs[:40]:
                print("LOG", line[:600])
            raise
        print("page+first image wall", round(time.monotonic() - t0, 2), "s")
        timings = page.evaluate("window.__medimgViewerTimings.latest")
        print("timings", json.dumps(timings))
        for sc in scenarios:
            fn = globals().get(f"sc_{sc}")
            if fn is None:
                print("unknown scenario", sc)
                continue
            t = time.monotonic()
            try:
                fn(page, out)
            except Exception as exc:  # keep going: report and look at the screen
                print(f"scenario {sc} FAILED: {str(exc).splitlines()[0]}")
                page.screenshot(path=str(out / f"failed-{sc}.png"))
            print(f"scenario {sc}: {time.monotonic() - t:.1f} s")
        timings = page.evaluate("window.__medimgViewerTimings.latest")
        (out / "timings.json").write_text(json.dumps(timings, indent=1))
        print("timings", json.dumps(timings))
        print("events", json.dumps(page.evaluate("window.__viewerEvents || []"))[:2000])
        for line in logs[:40]:
            print("LOG", line[:400])
        browser.close()


def wait_loaded(page, timeout=60000):
    page.wait_for_function("window.__medimgViewerTimings.latest.allImagesLoaded", timeout=timeout)


def shot(page, out, name):
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / f"{name}.png"))
    print("screenshot", out / f"{name}.png")


def sc_single(page, out):
    wait_loaded(page)
    page.wait_for_timeout(1500)
    shot(page, out, "single")


def sc_scroll(page, out):
    wait_loaded(page)
    canvas = page.get_by_test_id("viewer-canvas")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(40):
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(16)
    for _ in range(40):
        page.mouse.wheel(0, -120)
        page.wait_for_timeout(16)
    page.wait_for_timeout(400)
    print("state", json.dumps(page.evaluate("window.viewer.getState().slice")))


def sc_spin(page, out):
    """63 notches as fast as they go from the first slice: the viewer must end on the last one."""
    wait_loaded(page)
    page.get_by_test_id("viewer-canvas").click()
    page.keyboard.press("Home")
    page.wait_for_timeout(500)
    box = page.get_by_test_id("viewer-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    t0 = time.monotonic()
    for _ in range(63):
        page.mouse.wheel(0, 100)
    page.wait_for_function("window.viewer.getState().slice === 64", timeout=20000)
    print(f"spin: 63 notches -> slice 64 in {time.monotonic() - t0:.2f} s")


def sc_presets(page, out):
    page.keyboard.press("1")
    shot(page, out, "preset-lung")
    page.get_by_test_id("viewer-preset-bone").click()
    shot(page, out, "preset-bone")
    page.keyboard.press("2")


def sc_seg(page, out):
    page.wait_for_function("window.viewer.getSegments().length > 0", timeout=60000)
    print("segments", json.dumps(page.evaluate("window.viewer.getSegments().map(s => [s.label, s.voxels])")))
    page.evaluate("window.viewer.jumpToFinding('F1')")
    page.wait_for_timeout(800)
    shot(page, out, "seg-on")
    page.evaluate("window.viewer.toggleSegment('body', false)")
    page.get_by_test_id("viewer-seg-opacity").fill("70")
    shot(page, out, "seg-nobody-70")


def sc_findings(page, out):
    page.wait_for_function("window.viewer.getState().findings.length > 0", timeout=30000)
    page.get_by_test_id("viewer-finding-F1").click()
    page.wait_for_timeout(800)
    shot(page, out, "finding-F1")


def sc_edit(page, out):
    """Resize the F1 outline by dragging a corner, then mark a new finding with the Mark tool."""
    page.wait_for_function("window.viewer.getState().findings.length > 0", timeout=30000)
    page.evaluate("window.viewer.jumpToFinding('F1')")
    page.wait_for_timeout(800)
    canvas = page.get_by_test_id("viewer-canvas")
    box = canvas.bounding_box()
    pts = page.evaluate("window.viewer._internal.findingHandles('F1')")
    print("F1 handles", pts)
    drag(page, box["x"] + pts[3][0], box["y"] + pts[3][1], 3, 2, 8)
    shot(page, out, "edit-resized")
    page.get_by_test_id("viewer-tool-mark").click()
    drag(page, box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.45, 2.5, 2.0, 10)
    shot(page, out, "edit-marked")
    page.get_by_test_id("viewer-tool-wl").click()


def drag(page, x, y, dx, dy, steps):
    """Press at (x, y), move ``steps`` times by (dx, dy) as a hand would, release, let it settle."""
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, steps + 1):
        page.mouse.move(x + dx * k, y + dy * k)
        page.wait_for_timeout(20)
    page.mouse.up()
    page.wait_for_timeout(700)


def sc_mpr(page, out):
    page.get_by_test_id("viewer-layout-mpr").click()
    page.wait_for_function("window.__medimgViewerTimings.latest.volumeLoadedMs", timeout=60000)
    page.wait_for_timeout(2500)
    shot(page, out, "mpr")


def sc_mip(page, out):
    page.get_by_test_id("viewer-mip").click()
    page.wait_for_timeout(1500)
    shot(page, out, "mpr-mip")
    page.get_by_test_id("viewer-mip").click()


def slices(page):
    return [page.get_by_test_id(f"viewer-viewport-{i}").get_attribute("data-slice") for i in range(2)]


def wheel(page, testid, n, delta):
    box = page.get_by_test_id(testid).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(n):
        page.mouse.wheel(0, delta)
        page.wait_for_timeout(60)
    page.wait_for_timeout(600)


def sc_compare(page, out):
    page.get_by_test_id("viewer-layout-compare").click()
    page.wait_for_timeout(2500)
    before = slices(page)
    wheel(page, "viewer-canvas", 3, -100)
    after = slices(page)
    wheel(page, "viewer-canvas-1", 2, 100)
    back = slices(page)
    print(f"compare: {before} -> current up 3 -> {after} -> prior down 2 -> {back}")
    shot(page, out, "compare")


def sc_remount(page, out):
    """Open the radiograph, then the CT again, five times over, in the same element."""
    state = json.loads(Path(sys.argv[1]).read_text())
    for k in range(5):
        for uid in (state["cr"], state["study"]):
            page.evaluate("(uid) => window.remount(uid)", uid)
            page.wait_for_function("window.__medimgViewerTimings.latest.firstImage", timeout=60000)
    t = page.evaluate("window.__medimgViewerTimings.latest")
    print("after remounts: firstImage", t.get("firstImage"), "viewers", page.evaluate("Object.keys(window.__medimgViewerTimings).length - 1"))
    page.wait_for_timeout(1500)
    shot(page, out, "remounted")


def sc_keys(page, out):
    """Keyboard: slices, presets, tools, invert, reset."""
    wait_loaded(page)
    page.get_by_test_id("viewer-canvas").click()
    s0 = page.evaluate("window.viewer.getState().slice")
    for key in ["ArrowDown", "ArrowDown", "PageDown", "ArrowUp"]:
        page.keyboard.press(key)
        page.wait_for_timeout(150)
    s1 = page.evaluate("window.viewer.getState().slice")
    page.keyboard.press("3")
    page.wait_for_timeout(200)
    w = page.evaluate("window.viewer.getState().window")
    page.keyboard.press("z")
    tool = page.evaluate("window.viewer.getState().tool")
    page.keyboard.press("i")
    page.wait_for_timeout(200)
    inv = page.evaluate("window.viewer.getState().invert")
    shot(page, out, "keys-bone-inverted")
    page.keyboard.press("i")
    page.keyboard.press("w")
    page.keyboard.press("End")
    page.wait_for_timeout(300)
    s2 = page.evaluate("window.viewer.getState().slice")
    page.keyboard.press("r")
    print(f"keys: slice {s0} -> {s1} (expect +11), bone window {w}, tool {tool}, invert {inv}, End -> {s2}")


def sc_mprjump(page, out):
    """MPR, then jump to F1: every pane through the finding's centre, crosshairs there."""
    page.get_by_test_id("viewer-layout-mpr").click()
    page.wait_for_function("window.__medimgViewerTimings.latest.volumeLoadedMs", timeout=60000)
    page.wait_for_timeout(1500)
    page.evaluate("window.viewer.jumpToFinding('F1')")
    page.wait_for_timeout(2000)
    print("mpr slices", [page.get_by_test_id(f"viewer-viewport-{i}").get_attribute("data-slice") for i in range(3)])
    shot(page, out, "mpr-jump-F1")


def sc_mprtwice(page, out):
    """MPR, Stack, MPR again: the crosshairs come back; then W/L as the tool, Stack, MPR."""
    for name in ("mpr", "single", "mpr"):
        page.get_by_test_id(f"viewer-layout-{name}").click()
        page.wait_for_timeout(2500)
    shot(page, out, "mpr-again")
    page.get_by_test_id("viewer-tool-wl").click()
    for name in ("single", "mpr"):
        page.get_by_test_id(f"viewer-layout-{name}").click()
        page.wait_for_timeout(2500)
    shot(page, out, "mpr-again-wl")


def sc_3d(page, out):
    page.get_by_test_id("viewer-layout-3d").click()
    page.wait_for_timeout(6000)
    shot(page, out, "3d")


def sc_carry(page, out):
    """Stack at slice 48 -> MPR -> Stack -> Compare (scroll) -> MPR: the slice carries over each way."""
    wait_loaded(page)
    page.evaluate("window.viewer.scroll(48 - window.viewer.getState().slice)")
    page.wait_for_timeout(800)
    seen = [("single", page.evaluate("window.viewer.getState().slice"))]
    for name in ("mpr", "single", "compare", "mpr", "single"):
        page.get_by_test_id(f"viewer-layout-{name}").click()
        page.wait_for_function("window.viewer.getLayout() === '%s'" % name)
        page.wait_for_timeout(3000)
        seen.append((name, page.evaluate("window.viewer.getState().slice")))
        if name == "compare":
            page.evaluate("window.viewer.scroll(-3)")
            page.wait_for_timeout(800)
            seen.append(("compare-3", page.evaluate("window.viewer.getState().slice")))
        if name == "mpr":
            shot(page, out, f"carry-mpr-{len(seen)}")
    print("carry", seen)


def sc_labels(page, out):
    """F1 and a nodule R1 drawn just to its left (as in the review test): the labels cover no outline."""
    page.wait_for_function("window.viewer.getState().findings.length > 0", timeout=30000)
    page.evaluate("""() => {
      const layer = window.viewer._internal ? null : null;
      const f1 = window.__devReview.findings.find((f) => f.id === 'F1');
      const b = f1.bbox_patient || f1.location.bbox_patient;
      const c = f1.center_patient || f1.location.centroid_patient;
      const r1 = {id: 'R1', kind: 'nodule', status: 'added', diameter_mm: 30.9, series_uid: f1.series_uid,
                  center_patient: [c[0] - 60, c[1] - 25, -204]};
      window.viewer.setFindings([f1, r1]);
      window.viewer.jumpToFinding('F1');
    }""")
    page.wait_for_timeout(1200)
    shot(page, out, "labels")


if __name__ == "__main__":
    main()
