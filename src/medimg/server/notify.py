"""Webhook notifications: a JSON POST to ``config.webhook`` when an analysis finds something urgent.

Delivery never blocks the analysis: :meth:`WebhookNotifier.post` puts the message on a bounded queue
and returns; one background thread sends it.  Each message is tried up to ``attempts`` times, each try
with a timeout, with a doubling pause between tries.  A 2xx answer is success; anything else (another
status, a refused connection, a timeout) is a failed try.  Every outcome is an audit event of the
study: ``webhook_sent`` (status, attempt), ``webhook_failed`` (attempt, error, whether it was the last
try) or ``webhook_dropped`` (the queue was full).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import InputError

__all__ = ["EventLogger", "WebhookNotifier"]

log = logging.getLogger("medimg.server.notify")

#: ``log_event(actor, action, study_uid, detail)``, e.g. :meth:`medimg.store.Store.log_event`.
EventLogger = Callable[[str, str, "str | None", Mapping[str, Any]], None]

_STOP = object()


class WebhookNotifier:
    """Sends JSON messages to ``url`` from a background thread (see the module docstring)."""

    def __init__(self, url: str, log_event: EventLogger, *, attempts: int = 3, timeout: float = 5.0,
                 backoff: float = 1.0, max_queued: int = 1000) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(url, "is not an http:// or https:// URL", "set webhook to the listener's URL")
        self.url = url
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self.backoff = backoff
        self._log_event = log_event
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="medimg-webhook", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the message being sent (waits at most ``timeout`` seconds); queued messages
        that were not sent yet are dropped."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def post(self, payload: Mapping[str, Any], study_uid: str | None = None) -> None:
        """Queue ``payload`` for sending; returns at once."""
        try:
            self._queue.put_nowait((dict(payload), study_uid))
        except queue.Full:
            self._event("webhook_dropped", study_uid, {"url": self.url, "reason": "the queue is full"})

    # ------------------------------------------------------------------------------ internals
    def _event(self, action: str, study_uid: str | None, detail: Mapping[str, Any]) -> None:
        try:
            self._log_event("system", action, study_uid, detail)
        except Exception:  # the audit trail must not stop notifications (e.g. database busy)
            log.exception("cannot record %s for study %s", action, study_uid)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._stopping.is_set():
                return
            payload, study_uid = item
            self._deliver(payload, study_uid)

    def _deliver(self, payload: dict[str, Any], study_uid: str | None) -> bool:
        import httpx

        for attempt in range(1, self.attempts + 1):
            try:
                r = httpx.post(self.url, json=payload, timeout=self.timeout)
                error = "" if 200 <= r.status_code < 300 else f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            if not error:
                self._event("webhook_sent", study_uid,
                            {"url": self.url, "status": r.status_code, "attempt": attempt,
                             "event": payload.get("event")})
                return True
            last = attempt == self.attempts
            log.warning("webhook %s: try %d of %d failed: %s", self.url, attempt, self.attempts, error)
            self._event("webhook_failed", study_uid,
                        {"url": self.url, "attempt": attempt, "error": error, "final": last})
            if last or self._stopping.wait(self.backoff * 2 ** (attempt - 1)):
                return False
        return False
