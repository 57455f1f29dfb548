"""The DICOM node of ``medimg serve``: a pynetdicom SCP (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) in front
of the :class:`~medimg.store.Store`, and the SCU functions the rest of the server uses to talk to other
nodes (:func:`send_instances`, :func:`find`, :func:`retrieve`, :func:`fetch_priors`).

Storing
    A C-STORE data set is handed to :meth:`Store.put_dataset` as the bytes that arrived, in the
    negotiated transfer syntax; success is answered only after it returned, that is after the file and
    its index row are durable.  A refused instance gets the store's failure status (0x0111 duplicate with
    different bytes, 0xA900 data set does not match, 0xA700 out of resources, 0xC000 cannot understand)
    with an Error Comment; nothing of it is left on disk.

Sending
    Stored instances leave as they are stored: pynetdicom's ``STORE_SEND_CHUNKED_DATASET`` is switched
    on (process-wide; it only changes what ``send_c_store`` does with a *file path*: the data set is
    streamed from the file instead of being decoded and re-encoded by pydicom), so C-MOVE, C-GET and
    :func:`send_instances` deliver byte-identical data sets.  Files are always read through
    ``StoredInstance.path`` from the index, never from a path built out of a received UID.

Latency (what was changed in pynetdicom's polling, and why)
    pynetdicom polls: its DUL thread sleeps ``dul._run_loop_delay`` (1 ms) whenever the socket had
    nothing, and the association reactor sleeps a hard-coded 1 ms before each look at its message queue.
    With one storescu association that is up to ~2 ms of idle waiting per instance, on top of the
    work.  Per association, when the connection opens (``EVT_CONN_OPEN``), and without touching the
    library's code or any global:

    * *reactor*: the association's DIMSE message queue is replaced by :class:`_WakingQueue`, whose
      non-blocking ``get`` (called only by the reactor loop) waits up to ``_REACTOR_WAIT`` for a message
      instead of returning at once.  A message that arrives while the reactor waits is served
      immediately, the 1 ms sleep overlaps with the peer's round trip, and an idle reactor wakes ~20
      times a second instead of ~1000.  The DUL's queue towards the user (release/abort requests) wakes
      the waiting reactor too, so a release is answered at once.  Only for associations we accept:
      an association we request runs its operations with blocking waits of its own.
    * *DUL*: ``_run_loop_delay`` is set to ``_DUL_FAST`` (0.1 ms) while the association is busy and
      back to ``_DUL_IDLE`` (2 ms) after ``_BUSY_WINDOW`` without incoming data (the reactor, which
      wakes anyway, makes the switch), so an idle association costs less CPU than pynetdicom's default
      and a busy one answers within a fraction of a millisecond.  Associations we request are short
      and busy: they keep ``_DUL_FAST``.
    * TCP_NODELAY is set on every socket (``tcp_nodelay`` in the config), and the maximum PDU we
      receive is ``limits.max_pdu`` (1 MiB by default) so a CT slice arrives in one PDU.

Limits
    ``limits.max_associations`` concurrent associations (more are rejected, transient, local limit
    exceeded); a PDU whose declared length exceeds ``limits.max_pdu`` (1 MiB for association PDUs)
    aborts that association before it is read; a C-STORE data set larger than
    ``limits.max_instance_bytes`` aborts the association while it is still arriving.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from ..store import InstanceRejected

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.transport import ThreadedAssociationServer

    from .app import MedimgServer

__all__ = ["TRANSFER_SYNTAXES", "DicomNode"]

log = logging.getLogger("medimg.server.dicom")

# stored files leave as stored (see the module docstring)
_config.STORE_SEND_CHUNKED_DATASET = True

#: Transfer syntaxes accepted for storage: every syntax pydicom knows whose data set is an ordinary
#: encoded data set (native, deflated, encapsulated JPEG / JPEG-LS / JPEG 2000 / HTJ2K / RLE / MPEG /
#: H.264 / HEVC).  JPIP referenced (pixel data elsewhere) and SMPTE ST 2110 (real-time video) are not.
TRANSFER_SYNTAXES: list[UID] = [ts for ts in AllTransferSyntaxes
                                if "JPIP" not in ts.name and "SMPTE" not in ts.name]

_REACTOR_WAIT = 0.05  # s: longest wait of an idle reactor for a message (see module docstring)
_DUL_FAST = 0.0001  # s: DUL poll interval while busy
_DUL_IDLE = 0.002  # s: DUL poll interval when idle
_BUSY_WINDOW = 0.5  # s without incoming data after which an association counts as idle
_MAX_ASSOC_PDU = 1 << 20  # bytes: bound on association-control PDUs (A-ASSOCIATE-RQ ...)
_PDATA = 0x04

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


def _comment(text: str) -> str:
    """An Error Comment (LO: at most 64 characters, no backslash)."""
    text = text.replace("\\", "/").replace("\n", " ")
    return text if len(text) <= 64 else text[:61] + "..."


def _status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = _comment(comment)
    return ds


# ---------------------------------------------------------------------------------- latency, limits
class _WakingQueue(queue.Queue[Any]):
    """The DIMSE message queue of an association we accept.  A non-blocking ``get`` (only the reactor
    loop calls it) waits up to ``_REACTOR_WAIT`` for a message; :meth:`wake` ends the wait early."""

    def __init__(self, assoc: Association) -> None:
        super().__init__()
        self._assoc = assoc

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block:
            return super().get(block, timeout)
        with self.not_empty:
            if not self._qsize():
                self._tune_dul()
                self.not_empty.wait(_REACTOR_WAIT)
            if not self._qsize():
                raise queue.Empty
            item = self._get()
            self.not_full.notify()
            return item

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        _PduGuard.message_done(self._assoc)
        super().put(item, block, timeout)

    def wake(self) -> None:
        with self.not_empty:
            self.not_empty.notify_all()

    def _tune_dul(self) -> None:
        dul = self._assoc.dul
        started = getattr(dul._idle_timer, "_start_time", None)
        busy = started is None or time.time() - started < _BUSY_WINDOW
        dul._run_loop_delay = _DUL_FAST if busy else _DUL_IDLE


class _UserQueue(queue.Queue[Any]):
    """The DUL's queue of primitives for the user (release and abort requests ...): wakes the
    reactor when something arrives."""

    def __init__(self, wake: _WakingQueue) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake.wake()


class _PduGuard:
    """Wraps the association socket's ``recv`` to refuse, before reading it, a PDU whose declared length
    exceeds our maximum, and a C-STORE data set that grows past the instance limit."""

    def __init__(self, assoc: Association, max_pdu: int, max_message: int) -> None:
        self.assoc = assoc
        self.sock = assoc.dul.socket
        self.recv = self.sock.recv  # type: ignore[union-attr]
        self.max_pdu = max_pdu
        self.max_message = max_message
        self.pdu_type = 0
        self.message_bytes = 0

    @staticmethod
    def message_done(assoc: Association) -> None:
        guard = getattr(assoc, "_medimg_guard", None)
        if guard is not None:
            guard.message_bytes = 0

    def __call__(self, nr_bytes: int) -> bytearray:
        if nr_bytes == 6:  # pynetdicom reads the PDU header (type, reserved, length) first
            data = self.recv(6)
            if len(data) == 6:
                self.pdu_type = data[0]
            return data
        limit = self.max_pdu if self.pdu_type == _PDATA else max(self.max_pdu, _MAX_ASSOC_PDU)
        if nr_bytes > limit:
            return self._refuse(f"a PDU of {nr_bytes} bytes exceeds the maximum of {limit}")
        if self.pdu_type == _PDATA:
            self.message_bytes += nr_bytes
            if self.message_bytes > self.max_message:
                return self._refuse(f"a message of more than {self.max_message} bytes (max_instance_bytes)")
        return self.recv(nr_bytes)

    def _refuse(self, why: str) -> bytearray:
        requestor = self.assoc.requestor
        log.warning("association from %s (%s:%s) aborted: %s", requestor.ae_title, requestor.address,
                    requestor.port, why)
        abort = A_ABORT_RQ()
        abort.source = 0x02  # service provider
        abort.reason_diagnostic = 0x06  # invalid PDU parameter value
        with contextlib.suppress(OSError):
            self.sock.send(abort.encode())  # type: ignore[union-attr]
        # pynetdicom treats a short read as a closed connection: the association ends (Evt17)
        raise OSError(why)


def _set_nodelay(assoc: Association) -> None:
    sock = getattr(assoc.dul.socket, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ---------------------------------------------------------------------------------- the SCP
class DicomNode:
    """The DICOM side of a :class:`~medimg.server.app.MedimgServer`: ``start()`` returns once the SCP
    listens on ``server.config.host``/``dicom_port`` (0: any free port; see :attr:`port`)."""

    def __init__(self, server: MedimgServer) -> None:
        self.server = server
        self.config = server.config
        lim = self.config.limits
        ae = AE(ae_title=self.config.aet)
        ae.maximum_pdu_size = lim.max_pdu
        ae.maximum_associations = lim.max_associations
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
        ae.network_timeout = 60
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            # SCU role too: a C-GET sends over the requestor's association (role selection)
            ae.add_supported_context(str(cx.abstract_syntax), TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        self.ae = ae
        self._server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The TCP port the SCP listens on (the configured one, or the one chosen for port 0)."""
        if self._server is None:
            return self.config.dicom_port
        return int(self._server.server_address[1])

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_C_STORE, self._on_store),
        ]
        try:
            self._server = self.ae.start_server((self.config.host, self.config.dicom_port), block=False,
                                                evt_handlers=handlers)
        except OSError as exc:
            raise RuntimeError(f"the DICOM node cannot listen on {self.config.host}:{self.config.dicom_port} "
                               f"({exc.strerror}); choose another dicom_port") from None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.ae.shutdown()

    # ------------------------------------------------------------------------------ events
    def _on_open(self, event: Any) -> None:
        assoc: Association = event.assoc
        if self.config.tcp_nodelay:
            _set_nodelay(assoc)
        lim = self.config.limits
        guard = _PduGuard(assoc, lim.max_pdu, lim.max_instance_bytes + lim.max_pdu + 65536)
        assoc._medimg_guard = guard  # type: ignore[attr-defined]
        assoc.dul.socket.recv = guard  # type: ignore[method-assign,union-attr]
        waking = _WakingQueue(assoc)
        assoc.dimse.msg_queue = waking
        assoc.dul.to_user_queue = _UserQueue(waking)
        assoc.dul._run_loop_delay = _DUL_FAST

    def _on_store(self, event: Any) -> Dataset:
        assoc = event.assoc
        aet = assoc.requestor.ae_title.strip()
        source = f"dimse:{aet}"
        req = event.request
        try:
            result = self.server.store.put_dataset(
                req.DataSet.getvalue(), event.context.transfer_syntax,
                sop_class_uid=str(req.AffectedSOPClassUID or ""),
                sop_instance_uid=str(req.AffectedSOPInstanceUID or ""), source=source, source_aet=aet)
        except InstanceRejected as exc:
            log.warning("C-STORE from %s refused (0x%04X): %s", aet, exc.status, exc)
            return _status(exc.status, exc.problem)
        except Exception as exc:  # never answer success for what was not stored
            log.exception("C-STORE from %s failed", aet)
            return _status(STATUS_OUT_OF_RESOURCES, f"internal error: {type(exc).__name__}")
        if result.outcome == "conflict":
            log.warning("C-STORE from %s: %s (%s)", aet, result.reason, result.sop_instance_uid)
        try:
            self.server.instance_stored(result, source)
        except Exception:
            log.exception("after storing %s from %s", result.sop_instance_uid, aet)
        if result.status != STATUS_SUCCESS:
            return _status(result.status, result.reason)
        return _status(STATUS_SUCCESS)
