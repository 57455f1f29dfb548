"""Live updates: an in-process publish/subscribe hub and ``GET /api/events/stream`` (server-sent events).

Publishers (any thread): the server when instances are stored (:meth:`EventHub.instance_stored`, from
:meth:`MedimgServer.instance_stored`: the DICOM node and STOW-RS), the analysis service for every
step it records (:meth:`EventHub.study_event`), and review and sign-off.  Subscribers are the open
event streams, each an :class:`asyncio.Queue` on the HTTP event loop, fed with
``loop.call_soon_threadsafe``; a publisher never waits for a subscriber.

Each event is one ``study`` message::

    id: 42
    event: study
    data: {"study_uid": "1.2...", "status": "analysing", "action": "analysis_started",
           "actor": "system", "at": 1760000000.0, "detail": {...}}

``status`` is the study's status after the change (``received``, ``analysing``, ``ready``,
``signed``, ``failed``, ``skipped``).  Instances arriving in a burst give one ``instances_arrived``
event per study per :data:`ARRIVAL_INTERVAL` seconds (the first one at once), with the count stored
since the last one.  The last :data:`HISTORY` events are kept: a client that reconnects with
``Last-Event-ID`` gets those it missed.  A subscriber that falls :data:`QUEUE_SIZE` events behind gets
an ``overflow`` event and is closed (reload the worklist, then reconnect).  A comment line is sent every
:data:`KEEPALIVE` seconds to keep proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from .auth import CurrentUser

if TYPE_CHECKING:
    from ..store import Store, StoreResult
    from .app import MedimgServer

__all__ = ["ARRIVAL_INTERVAL", "HISTORY", "KEEPALIVE", "QUEUE_SIZE", "EventHub", "router"]

log = logging.getLogger("medimg.server.live")

ARRIVAL_INTERVAL = 1.0
HISTORY = 512
QUEUE_SIZE = 1000
KEEPALIVE = 15.0


@dataclass(eq=False)
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[int, dict[str, Any]] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE + 2))
    overflow: bool = False

    def put(self, item: tuple[int, dict[str, Any]] | None) -> None:  # on the subscriber's loop
        if self.overflow:
            return
        if item is not None and self.queue.qsize() >= QUEUE_SIZE:
            self.overflow = True
            self.queue.put_nowait((-1, {"action": "overflow"}))
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(item)


@dataclass
class _Burst:
    last: float
    count: int = 0


class EventHub:
    """Thread-safe fan-out of study events to the open streams (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._history: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=HISTORY)
        self._next = 1
        self._closed = False
        self._bursts: dict[str, _Burst] = {}

    # ------------------------------------------------------------------------------ publishing
    def publish(self, event: Mapping[str, Any]) -> int:
        """Send ``event`` to every subscriber; returns its id (0 once the hub is closed)."""
        with self._lock:
            if self._closed:
                return 0
            eid = self._next
            self._next += 1
            item = (eid, dict(event))
            self._history.append(item)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(sub.put, item)
            except RuntimeError:  # its loop is closed: the stream is gone
                self.unsubscribe(sub)
        return eid

    def study_event(self, store: Store | None, study_uid: str | None, action: str, actor: str = "system",
                    detail: Mapping[str, Any] | None = None, status: str | None = None) -> int:
        """Publish a change of ``study_uid``; ``status`` is read from ``store`` unless given.  Never
        raises (a publisher's work must not fail because of a listener)."""
        if not study_uid:
            return 0
        try:
            if status is None and store is not None:
                status = store.study_status(study_uid)
            return self.publish({"study_uid": study_uid, "status": status, "action": action, "actor": actor,
                                 "at": time.time(), "detail": dict(detail or {})})
        except Exception:
            log.exception("cannot publish %s of %s", action, study_uid)
            return 0

    def instance_stored(self, store: Store, result: StoreResult, source: str) -> None:
        """An instance was stored: one ``instances_arrived`` event per study per ARRIVAL_INTERVAL."""
        if result.outcome not in ("stored", "replaced"):
            return
        now = time.monotonic()
        with self._lock:
            burst = self._bursts.get(result.study_uid)
            if burst is None:
                burst = self._bursts[result.study_uid] = _Burst(now - 2 * ARRIVAL_INTERVAL)
            burst.count += 1
            if now - burst.last < ARRIVAL_INTERVAL:
                return
            count, burst.count, burst.last = burst.count, 0, now
            if len(self._bursts) > 10000:  # forget studies that went quiet long ago
                self._bursts = {k: v for k, v in self._bursts.items() if now - v.last < 60}
        self.study_event(store, result.study_uid, "instances_arrived", source or "unknown",
                         {"instances": count, "series_uid": result.series_uid})

    # ------------------------------------------------------------------------------ subscribing
    def subscribe(self, loop: asyncio.AbstractEventLoop, last_id: int | None = None) -> _Subscriber:
        """A new subscriber on ``loop``; with ``last_id``, the kept events after it are queued first."""
        sub = _Subscriber(loop)
        with self._lock:
            if self._closed:
                sub.queue.put_nowait(None)
                return sub
            if last_id is not None:
                for item in self._history:
                    if item[0] > last_id:
                        sub.put(item)
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        """End every stream (the server is stopping); later publications are dropped."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):  # its loop is closed: the stream is gone
                sub.loop.call_soon_threadsafe(sub.put, None)


def _message(eid: int, event: dict[str, Any]) -> str:
    kind = "overflow" if event.get("action") == "overflow" else "study"
    head = f"id: {eid}\n" if eid > 0 else ""
    return f"{head}event: {kind}\ndata: {json.dumps(event, separators=(',', ':'), default=str)}\n\n"


def router(server: MedimgServer) -> APIRouter:
    """``GET /api/events/stream``: server-sent ``study`` events (signed-in users)."""
    r = APIRouter(prefix="/api")
    hub: EventHub = server.hub

    @r.get("/events/stream", response_class=StreamingResponse)
    async def stream(user: CurrentUser,
                     study: Annotated[str | None, Query(max_length=64)] = None,
                     last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
                     ) -> StreamingResponse:
        last = int(last_event_id) if last_event_id and last_event_id.isdigit() else None

        async def events() -> AsyncIterator[str]:
            sub = hub.subscribe(asyncio.get_running_loop(), last)
            try:
                yield f"retry: 3000\n: signed in as {user.username}\n\n"
                while True:
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if item is None:
                        return
                    eid, event = item
                    if study and event.get("study_uid") not in (None, study) and eid > 0:
                        continue
                    yield _message(eid, event)
            finally:
                hub.unsubscribe(sub)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return r
