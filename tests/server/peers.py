"""Real peers for the server tests: free loopback ports, an Orthanc started on them, a medimg server
started in-process, dcmtk command lines.  Imported by tests/server/conftest.py and the benchmarks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

T = TypeVar("T")

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
ORTHANC_PLUGINS = Path("/usr/share/orthanc/plugins")

# dcmtk and Orthanc stall ~40 ms per message on delayed ACKs without this (PITFALLS.md)
PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def dcmtk(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk tool (echoscu, storescu, findscu, movescu, getscu ...) with TCP_NODELAY=1."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=PEER_ENV)


def wait_for(condition: Callable[[], T], timeout: float = 240.0, what: str = "the condition",
             interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s", pytrace=False)
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], grace: float) -> None:
    """Ask a peer process to end (SIGTERM); kill it if it has not ended within ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class StoreSCP:
    """dcmtk's storescp (any storage SOP class, data sets kept exactly as received: ``+B``) writing
    into ``folder`` on a free port."""

    def __init__(self, folder: Path, aet: str = "DEST") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.aet, self.port = folder, aet, free_port()
        self.proc = subprocess.Popen(["storescp", "-aet", aet, "-od", str(folder), "+B", "-pm", "+xa",
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     env=PEER_ENV)
        wait_port(self.port, 30, self.proc)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def stop(self) -> None:
        stop_process(self.proc, 10)


class Orthanc:
    """An Orthanc (Debian package, with its DICOMweb plugin) on free loopback ports, storage in
    ``folder``.  ``modalities`` maps a name to (AET, port) on 127.0.0.1; more can be added at run time
    with :meth:`add_modality`."""

    def __init__(self, folder: Path, aet: str = "ORTHANC",
                 modalities: dict[str, tuple[str, int]] | None = None, dicomweb: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        cfg: dict[str, Any] = {
            "Name": "medimg-test-orthanc",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowEcho": True,
            "StorageCompression": False,
            "OverwriteInstances": False,
            "DicomModalities": {k: [a, "127.0.0.1", p] for k, (a, p) in (modalities or {}).items()},
            "DicomModalitiesInDatabase": True,
            "Plugins": [str(ORTHANC_PLUGINS / "libOrthancDicomWeb.so")] if dicomweb else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
            "HttpTimeout": 60,
            "DicomScuTimeout": 30,
            "StableAge": 1,
            "SaveJobs": False,
        }
        self.config = self.folder / "orthanc.json"
        self.config.write_text(json.dumps(cfg, indent=1))
        self.log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([ORTHANC, str(self.config)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=PEER_ENV)
        try:
            wait_port(self.http_port, 60, self.proc)
            wait_port(self.dicom_port, 60, self.proc)
        except Exception:
            self.stop()
            raise

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, self.url + path, timeout=120, **kw)
        r.raise_for_status()
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r.content

    def add_modality(self, name: str, aet: str, port: int, host: str = "127.0.0.1") -> None:
        self.api("PUT", f"/modalities/{name}", json={"AET": aet, "Host": host, "Port": port})

    def upload(self, paths: list[Path]) -> list[str]:
        """Upload files over its REST API; returns the Orthanc instance ids."""
        ids = []
        for p in paths:
            ids.append(self.api("POST", "/instances", content=Path(p).read_bytes())["ID"])
        return ids

    def instances(self) -> list[str]:
        return list(self.api("GET", "/instances"))

    def instance_file(self, orthanc_id: str) -> bytes:
        return bytes(self.api("GET", f"/instances/{orthanc_id}/file"))

    def stop(self) -> None:
        stop_process(self.proc, 20)
        self.log.close()


def dataset_bytes(part10: bytes) -> bytes:
    """The data set of a Part 10 file (everything after the file meta group): what DIMSE transfers,
    and what "byte-identical" compares."""
    from medimg.store.part10 import split_part10

    _, offset = split_part10(part10)
    return part10[offset:]


def start_medimg(store: Path, **overrides: Any) -> Any:
    """A started :class:`~medimg.server.app.MedimgServer` on free ports (analysis and the session guard
    of /api off unless asked)."""
    from medimg.server.app import MedimgServer
    from medimg.server.config import load_config

    overrides.setdefault("analysis", False)
    overrides.setdefault("auth", False)  # the workstation tests (test_auth, test_review) turn it on
    ours = [k for k in ("dicom_port", "http_port") if k not in overrides]
    for attempt in range(3):
        # a free port can be taken by another test process before the server binds it: pick again
        overrides.update({k: free_port() for k in ours})
        cfg = load_config(None, store=store, **overrides)
        try:
            return MedimgServer(cfg).start()
        except (RuntimeError, OSError) as exc:
            in_use = "port in use" in str(exc) or getattr(exc, "errno", 0) == 98
            if not ours or attempt == 2 or not in_use:
                raise
    raise AssertionError("unreachable")
