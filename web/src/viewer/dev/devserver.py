"""Development server for the viewer (not shipped): the browser tests' workstation (tests/web/browser_env.py:
a medimg server with users, the analysed chest CT of two series, a prior CT and a chest radiograph with
a Grad-CAM heatmap) plus the viewer's development page built by vite.dev.config.js ($MV_OUT) at /mvdev/.
Writes the address, the study UIDs and the users to STATE (JSON) and runs until killed.

    .venv/bin/python web/src/viewer/dev/devserver.py /tmp/mv/state.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "tests" / "web"))

import browser_env  # noqa: E402


def main() -> None:
    state = Path(sys.argv[1])
    dev = Path(os.environ.get("MV_OUT", "/tmp/medimg-viewer-dev"))
    dev.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, browser_env.workstation(Path(tmp)) as ws:
        from starlette.staticfiles import StaticFiles

        ws.server._http.config.app.mount("/mvdev", StaticFiles(directory=dev, html=True), name="viewer-dev")
        info = {"url": ws.base, "study": ws.ct_uid, "prior": ws.prior_uid, "cr": ws.cr_uid,
                "user": browser_env.RADIOLOGIST, "password": browser_env.PASSWORD, "pid": os.getpid()}
        state.write_text(json.dumps(info))
        print(json.dumps(info), flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
