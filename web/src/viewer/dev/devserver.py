"""Dev harness for the viewer (not shipped): a medimg server on a store holding the 64-slice chest CT
(analysed: SEG + SR), with the viewer's development build (vite.dev.config.js, $MV_OUT) mounted at /mvdev/.  Writes the port and UIDs to STATE (JSON) and runs until killed.

    .venv/bin/python web/src/viewer/dev/devserver.py /tmp/mv/store /tmp/mv/state.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "tests" / "server"))
sys.path.insert(0, str(ROOT / "src"))

from peers import start_medimg  # noqa: E402

CT = ROOT.parent / "shared" / "data" / "ct" / "lung-pet-ct-dx-A0001" / "series-2"


def main() -> None:
    store_dir, state_path = Path(sys.argv[1]), Path(sys.argv[2])
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    fresh = not (store_dir / "index.sqlite").exists()
    kw = {"http_port": port} if port else {}
    s = start_medimg(store_dir, analysis=True, quiet_seconds=2, **kw)
    if fresh:
        for f in sorted(CT.glob("*.dcm")):
            s.instance_stored(s.store.put_path(f), "dev")
    from starlette.staticfiles import StaticFiles

    dev = Path(os.environ.get("MV_OUT", "/tmp/medimg-viewer-dev"))
    dev.mkdir(parents=True, exist_ok=True)
    s._http.config.app.mount("/mvdev", StaticFiles(directory=dev, html=True), name="viewer-dev")
    state = {"url": f"http://127.0.0.1:{s.config.http_port}", "pid": os.getpid()}
    state_path.write_text(json.dumps(state))
    print(json.dumps(state), flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        s.stop()


if __name__ == "__main__":
    main()
