"""``medimg serve``: the store, the DICOM node, the HTTP service (DICOMweb + REST API) and the automatic
analysis, wired together in one process.

Data flows one way: the DICOM node and STOW-RS put instances into the :class:`~medimg.store.Store`
and tell the server (:meth:`MedimgServer.instance_stored`); the analysis service waits for a study to
go quiet, runs the pipeline in a worker process through its public function and stores the results
back as new series.  Nothing in :mod:`medimg.pipeline` knows about the server.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from ..store import Store, StoreResult
from .config import ServerConfig

__all__ = ["MedimgServer"]

log = logging.getLogger("medimg.server")


class MedimgServer:
    """One medimg node.  ``start()`` returns once both services accept connections; ``stop()`` ends them.

    Usable as a context manager (tests start one per module)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        lim = config.limits
        self.store = Store(config.store, config.database or None, conflict=config.conflict,  # type: ignore[arg-type]
                           max_instance_bytes=lim.max_instance_bytes, max_depth=lim.max_sequence_depth)
        from .dicom_node import DicomNode
        from .live import EventHub

        self.hub = EventHub()  # live study events for the workstation (server/live.py)
        self.node = DicomNode(self)
        self.analysis: Any = None
        if config.analysis:
            from .analysis import AnalysisService

            self.analysis = AnalysisService(self)
        self._http: Any = None
        self._http_thread: threading.Thread | None = None
        self.started = 0.0

    # ------------------------------------------------------------------------------ events
    def instance_stored(self, result: StoreResult, source: str) -> None:
        """Called by the DICOM node and STOW-RS after each instance is durably stored."""
        self.hub.instance_stored(self.store, result, source)
        if self.analysis is not None and result.outcome in ("stored", "replaced"):
            self.analysis.notify(result.study_uid, source)

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> MedimgServer:
        import uvicorn

        from .api import build_app

        self.node.start()
        app = build_app(self)
        cfg = uvicorn.Config(app, host=self.config.host, port=self.config.http_port, log_level="warning",
                             access_log=False, lifespan="off",
                             limit_concurrency=max(64, self.config.limits.max_associations * 4))
        self._http = uvicorn.Server(cfg)
        self._http_thread = threading.Thread(target=self._http.run, name="medimg-http", daemon=True)
        self._http_thread.start()
        deadline = time.monotonic() + 30
        while not self._http.started:
            if not self._http_thread.is_alive() or time.monotonic() > deadline:
                self.node.stop()
                raise RuntimeError(f"the HTTP service could not start on {self.config.host}:"
                                   f"{self.config.http_port} (port in use?)")
            time.sleep(0.02)
        if self.analysis is not None:
            self.analysis.start()
        self.started = time.time()
        log.info("medimg serving: DICOM %s@%s:%d, HTTP http://%s:%d (store %s)", self.config.aet,
                 self.config.host, self.node.port, self.config.host, self.config.http_port, self.store.root)
        return self

    def stop(self) -> None:
        if self.analysis is not None:
            self.analysis.stop()
        self.hub.close()  # ends the open event streams, which would otherwise hold the HTTP shutdown
        if self._http is not None:
            self._http.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(timeout=10)
        self.node.stop()
        self.store.close()

    def __enter__(self) -> MedimgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start, then block until SIGINT/SIGTERM; stop cleanly."""
        done = threading.Event()

        def _stop(signum: int, _frame: Any) -> None:
            done.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        self.start()
        try:
            done.wait()
        finally:
            self.stop()
