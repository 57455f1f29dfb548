"""The DICOM node of ``medimg serve``: a pynetdicom SCP (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) in front
of the :class:`~medimg.store.Store`, and the SCU functions the rest of the server uses to talk to other
nodes (:func:`send_instances`, :func:`find`, :func:`retrieve`, :func:`fetch_priors`).

Storing
    A C-STORE data set is handed to :meth:`Store.put_dataset` as the bytes that arrived, in the
    negotiated transfer syntax; success is answered only after it returned, that is after the file and
    its index row are durable.  A refused instance gets the store's failure status (0x0111 duplicate
    with different bytes, 0xA900 data set does not match, 0xA700 out of resources, 0xC000 cannot
    understand) with an Error Comment; nothing of it is left on disk.  Accepted: every storage SOP
    class pynetdicom knows plus the retired ones pydicom knows (:data:`STORAGE_CLASSES`), in every
    transfer syntax of :data:`TRANSFER_SYNTAXES`.  Of the syntaxes proposed in one presentation
    context we accept explicit VR little endian, implicit VR little endian, explicit VR big endian, in
    that order, unless the requestor put a compressed syntax (or deflate) first: then that one, which
    it holds.  Nothing is compressed on the sender's behalf, nor decompressed when it offered its own.

Querying and retrieving
    C-FIND (Patient Root and Study Root; PATIENT, STUDY, SERIES, IMAGE) answers from
    :func:`medimg.store.find`, the matcher QIDO-RS shares.  At most ``limits.max_query_results``
    matches are sent; beyond that the first N are sent as pending responses and the final status is
    0xA700 with the Error Comment "more than N matches; the first N were sent; narrow the query".
    Matching on a key the store does not know is refused (0xA900); a return key it cannot fill is
    answered empty with pending status 0xFF01.  C-MOVE and C-GET take the unique keys of the level
    (lists allowed); C-MOVE opens a new association to the move destination, looked up by AE title
    in ``[peers]`` (unknown: 0xA801); C-GET sends over the requestor's association (SCP/SCU role
    selection).

Sending
    Stored instances leave as they are stored: pynetdicom's ``STORE_SEND_CHUNKED_DATASET`` is switched
    on (process-wide; it only changes what ``send_c_store`` does with a *file path*: the data set is
    streamed from the file instead of being decoded and re-encoded by pydicom), so C-MOVE, C-GET and
    :func:`send_instances` deliver byte-identical data sets.  Only when the peer accepted no context in
    the file's own transfer syntax is an uncompressed file converted (by pydicom) into an uncompressed
    syntax it accepted; compressed data is never transcoded.  Files are always read through
    ``StoredInstance.path`` from the index, never from a path built out of a received UID.

Latency (what was changed in pynetdicom's polling, and why)
    pynetdicom polls: its DUL thread sleeps ``dul._run_loop_delay`` (1 ms) whenever the socket had
    nothing, and the association reactor sleeps a hard-coded 1 ms before each look at its message
    queue.  With one storescu association that is ~2 ms of waiting per instance on top of the work
    (a no-op handler took 0.46 s for the 128 CT files), and every idle association wakes two threads
    1000 times a second.  Per association, when the connection opens (``EVT_CONN_OPEN``), without
    changing the library's code or globals:

    * the DUL waits instead of polling (:class:`_WaitingSocket`): the socket's ``ready`` (which the
      DUL loop asks every turn) waits in ``poll`` for data from the peer *or* a primitive to send
      (the provider queue's ``put`` writes to a socket pair), at most ``_DUL_WAIT`` (50 ms), so the
      DUL reacts at once to either and an idle one wakes 20 times a second;
    * the reactor's request handling is wrapped (:class:`_Burst`, accepted associations): after
      serving a request it serves the requests that follow at once, instead of going back through
      the reactor loop and its fixed sleep for each;
    * the reactor's non-blocking look at its message queue (:class:`_WakingQueue`) waits up to
      ``_REACTOR_WAIT`` (50 ms) for a message and is woken early when the DUL has a release or abort
      request for it (:class:`_UserQueue`), so a release is answered at once;
    * PDUs are read with a few ``recv_into`` calls instead of pynetdicom's 4 KiB ``recv`` loop, and
      pynetdicom's standard log handlers (which format every message and PDU) are unbound unless
      its logger is at DEBUG;
    * TCP_NODELAY is set (``tcp_nodelay``), and our maximum PDU is ``limits.max_pdu`` (1 MiB), so a
      512x512 CT slice arrives in one or a few PDUs.

    And the supported presentation contexts copy cheaply (:class:`_Context`): pynetdicom deep-copies
    them for every association it accepts, which took ~35 ms for ~190 SOP classes x 37 transfer
    syntaxes; an association is now set up in a few milliseconds.  Associations medimg requests (the
    SCU functions, C-MOVE sub-operations) get the waiting DUL, TCP_NODELAY, the PDU bound and a
    message queue whose responses only the waiting sender can take (:class:`_ResponsesToSender`:
    pynetdicom's own reactor could take one, about once in a thousand quick requests).

    Measured here (2 shared cores): the no-op handler takes ~0.28 s for the 128 CT files instead of
    0.46 s; four idle associations cost the process ~1 % of a core instead of ~12 %.

Limits
    ``limits.max_associations`` concurrent associations (more are rejected: transient, local limit
    exceeded); a PDU whose declared length exceeds ``limits.max_pdu`` (1 MiB for association-control
    PDUs) aborts that association before its body is read; a C-STORE message that grows past
    ``limits.max_instance_bytes`` (+ one PDU) aborts the association while it is still arriving.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    UID_dictionary,
)
from pynetdicom import AE, AllStoragePresentationContexts, _config, build_context, evt, register_uid
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import ServiceClass, StorageServiceClass
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
    uid_to_service_class,
)
from pynetdicom.transport import AssociationSocket

from ..errors import InputError
from ..store import LEVELS, InstanceRejected, QueryError, StoredInstance, supported_keys
from ..store import find as store_find
from ..store.part10 import is_valid_uid
from .config import Peer

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.transport import ThreadedAssociationServer

    from .app import MedimgServer

__all__ = ["STORAGE_CLASSES", "TRANSFER_SYNTAXES", "DicomNode", "fetch_priors", "find", "retrieve", "send_instances"]

log = logging.getLogger("medimg.server.dicom")

# stored files leave as stored (see the module docstring)
_config.STORE_SEND_CHUNKED_DATASET = True

_PLAIN = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)

#: Transfer syntaxes accepted for storage, in our order of preference: every syntax pydicom knows whose
#: data set is an ordinary encoded data set (native, deflated, encapsulated JPEG / JPEG-LS / JPEG 2000 /
#: HTJ2K / RLE / MPEG / H.264 / HEVC); JPIP referenced (pixel data elsewhere) and SMPTE ST 2110
#: (real-time video) are not.  Uncompressed ones first: of a context proposing several, we never pick
#: a compression the sender did not put first (see :meth:`DicomNode._on_requested`).
TRANSFER_SYNTAXES: list[UID] = [*_PLAIN, *(ts for ts in AllTransferSyntaxes if ts not in _PLAIN
                                          and "JPIP" not in ts.name and "SMPTE" not in ts.name)]


def _retired_storage_classes() -> list[str]:
    """Storage SOP classes pydicom knows and pynetdicom does not route (mostly retired ones: Ultrasound
    Image Storage (Retired), Nuclear Medicine Image Storage (Retired), standalone curves ...), registered
    with pynetdicom's storage service (``register_uid``, its documented way) so old modalities can store.
    """
    found = []
    for uid, entry in UID_dictionary.items():
        name, kind, keyword = entry[0], entry[1], entry[4]
        if kind != "SOP Class" or not name.endswith("Storage") or uid == MediaStorageDirectoryStorage:
            continue
        if uid_to_service_class(uid) is ServiceClass and keyword.isidentifier():
            register_uid(uid, keyword, StorageServiceClass)
        if uid_to_service_class(uid) is StorageServiceClass:
            found.append(uid)
    return found


#: SOP classes accepted for storage: pynetdicom's storage classes and the retired ones pydicom knows
STORAGE_CLASSES: list[str] = sorted({str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
                                    | set(_retired_storage_classes()))

_REACTOR_WAIT = 0.05  # s: longest wait of an idle reactor for a message (see module docstring)
_DUL_FAST = 0.0001  # s: the DUL's sleep after a turn with nothing to do (it then waits in select)
_DUL_WAIT = 0.05  # s: longest wait of a DUL for its socket or an outgoing primitive
_MAX_ASSOC_PDU = 1 << 20  # bytes: bound on association-control PDUs (A-ASSOCIATE-RQ ...)
_PDATA = 0x04

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700


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
        item = self.next_message(_REACTOR_WAIT)
        if item is None:
            raise queue.Empty
        return item

    def next_message(self, wait: float) -> Any:
        """The next (context ID, message), waiting up to ``wait`` seconds; None if none came or
        :meth:`wake` was called."""
        with self.not_empty:
            # a release or abort request waiting for the reactor: return at once (wake() may have
            # been called before this wait began)
            if not self._qsize() and not self._assoc.dul.to_user_queue.qsize():
                self.not_empty.wait(wait)
            if not self._qsize():
                return None
            item = self._get()
            self.not_full.notify()
            return item

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        _PduGuard.message_done(self._assoc)
        super().put(item, block, timeout)

    def wake(self) -> None:
        with self.not_empty:
            self.not_empty.notify_all()


class _WaitingSocket(AssociationSocket):
    """An association's socket whose ``ready`` (asked by the DUL loop on each turn) waits up to
    ``_DUL_WAIT`` for data from the peer or for a primitive to send (the provider queue's ``put``
    writes to a wake-up socket pair), instead of answering at once and letting the loop sleep and ask
    again.  The DUL then reacts at once to either, and an idle one wakes 20 times a second.  ``poll``,
    not ``select``: no limit on descriptor numbers."""

    _medimg_poll: Any
    _medimg_wake: socket.socket

    @property
    def ready(self) -> bool:
        if self.socket is None or self._is_connected is False:
            return False
        pending = getattr(self.socket, "pending", None)  # TLS: decrypted data poll cannot see
        if pending is not None and pending():
            return True
        # events still queued (a PDU read on this turn is handled after it): only look, do not wait
        wait = 0 if self.event_queue.qsize() else int(_DUL_WAIT * 1000)
        try:
            events = self._medimg_poll.poll(wait)
            fileno = self.socket.fileno()
        except (OSError, ValueError):
            events, fileno = [(-1, select.POLLNVAL)], -2
        readable = False
        for fd, flags in events:
            if fd == fileno:
                readable = True  # data, or the peer closed / an error: the read finds out which
            elif fd == self._medimg_wake.fileno():
                with contextlib.suppress(OSError):
                    self._medimg_wake.recv(4096)
            if flags & select.POLLNVAL:
                self.event_queue.put("Evt17")  # as pynetdicom does: the connection is gone
                return False
        return readable


def _wait_for_events(assoc: Association) -> None:
    """Make the DUL of ``assoc`` wait for its socket or an outgoing primitive (:class:`_WaitingSocket`)
    instead of polling; the wake-up pair is closed with the connection."""
    sock = assoc.dul.socket
    if sock is None or type(sock) is not AssociationSocket or sock.socket is None:
        return
    wake, waker = socket.socketpair()
    wake.setblocking(False)
    waker.setblocking(False)
    poller = select.poll()
    poller.register(sock.socket, select.POLLIN | select.POLLPRI)
    poller.register(wake, select.POLLIN)
    sock.__class__ = _WaitingSocket
    sock._medimg_poll, sock._medimg_wake = poller, wake  # type: ignore[attr-defined]
    provider = assoc.dul.to_provider_queue
    put = provider.put

    def put_and_wake(item: Any, block: bool = True, timeout: float | None = None) -> None:
        put(item, block, timeout)
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            waker.send(b"\0")

    provider.put = put_and_wake  # type: ignore[method-assign]
    assoc.dul._run_loop_delay = _DUL_FAST

    def close(_event: Any) -> None:
        wake.close()
        waker.close()

    assoc.bind(evt.EVT_CONN_CLOSE, close)


class _UserQueue(queue.Queue[Any]):
    """The DUL's queue of primitives for the user (release and abort requests ...): wakes the
    reactor when something arrives."""

    def __init__(self, wake: _WakingQueue) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake.wake()


class _Burst:
    """Replaces an accepted association's ``_serve_request``: after serving a request, serve the
    requests that follow within ``_REACTOR_WAIT`` at once, instead of going back through the reactor
    loop (and its fixed 1 ms sleep) for each.  The burst ends when the queue stays empty, the DUL has
    something for the user (a release or abort request wakes the queue), or the association ends."""

    def __init__(self, assoc: Association, messages: _WakingQueue) -> None:
        self.assoc = assoc
        self.messages = messages
        self.serve = assoc._serve_request

    def __call__(self, msg: Any, context_id: int) -> None:
        assoc = self.assoc
        self.serve(msg, context_id)
        while assoc.is_established and not assoc._kill and not assoc.dul.to_user_queue.qsize():
            item = self.messages.next_message(_REACTOR_WAIT)
            if item is None or item[1] is None:
                return
            self.serve(item[1], item[0])


class _PduGuard:
    """Replaces the association socket's ``recv``: refuses, before reading it, a PDU whose declared
    length exceeds our maximum and a C-STORE message that grows past the instance limit, and reads a
    PDU with a few large ``recv_into`` calls instead of pynetdicom's 4 KiB ``recv`` loop.

    pynetdicom reads each PDU as ``recv(6)`` (type, reserved, length) then ``recv(length)``."""

    def __init__(self, assoc: Association, max_pdu: int, max_message: int) -> None:
        self.assoc = assoc
        self.sock: Any = assoc.dul.socket
        self.max_pdu = max_pdu
        self.max_message = max_message
        self.pdu_type = 0
        self.body_next = False
        self.message_bytes = 0

    @staticmethod
    def message_done(assoc: Association) -> None:
        guard = getattr(assoc, "_medimg_guard", None)
        if guard is not None:
            guard.message_bytes = 0

    def __call__(self, nr_bytes: int) -> bytearray:
        if not self.body_next:
            data = self._read(nr_bytes)
            if len(data) == 6 and 0x01 <= data[0] <= 0x07:
                self.pdu_type, self.body_next = data[0], True
            return data
        self.body_next = False
        limit = self.max_pdu if self.pdu_type == _PDATA else max(self.max_pdu, _MAX_ASSOC_PDU)
        if nr_bytes > limit:
            return self._refuse(f"a PDU of {nr_bytes} bytes exceeds the maximum of {limit}")
        if self.pdu_type == _PDATA and self.max_message:
            self.message_bytes += nr_bytes
            if self.message_bytes > self.max_message:
                return self._refuse(f"a message of more than {self.max_message} bytes (max_instance_bytes)")
        return self._read(nr_bytes)

    def _read(self, nr_bytes: int) -> bytearray:
        """``nr_bytes`` from the socket, or fewer if the peer closed the connection."""
        buf = bytearray(nr_bytes)
        view = memoryview(buf)
        got = 0
        sock = self.sock.socket
        while got < nr_bytes:
            n = sock.recv_into(view[got:], nr_bytes - got)
            if not n:
                del view
                del buf[got:]
                return buf
            got += n
        return buf

    def _refuse(self, why: str) -> bytearray:
        peer = self.assoc.requestor if self.assoc.is_acceptor else self.assoc.acceptor
        log.warning("association with %s (%s:%s) aborted: %s", peer.ae_title, peer.address, peer.port, why)
        abort = A_ABORT_RQ()
        abort.source = 0x02  # service provider
        abort.reason_diagnostic = 0x06  # invalid PDU parameter value
        with contextlib.suppress(OSError):
            self.sock.send(abort.encode())
        # pynetdicom treats a short read as a closed connection: the association ends (Evt17)
        raise OSError(why)


class _ResponsesToSender(queue.Queue[Any]):
    """The DIMSE message queue of an association we request: the reactor's non-blocking ``get`` takes
    requests only; a response stays for the ``send_*`` call waiting for it (a blocking ``get``).

    pynetdicom pauses the reactor while a ``send_*`` call waits, but the pause can come too late: the
    reactor, just let go by the previous call, may still be about to look at the queue when the next
    request is sent, and with a quick peer it takes that request's response (logged "Received
    unexpected C-STORE service message"; the sender then times out).  Seen under load with C-MOVE
    sub-operations and :func:`send_instances`."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block:
            return super().get(block, timeout)
        with self.mutex:
            if self._qsize():
                _context_id, msg = self.queue[0]
                if msg is not None and msg.is_valid_request:
                    item = self._get()
                    self.not_full.notify()
                    return item
        raise queue.Empty


def _tune_requestor(event: Any, nodelay: bool, max_pdu: int) -> None:
    """EVT_CONN_OPEN of an association we request: TCP_NODELAY, quiet logging, the PDU bound, a DUL
    that waits for events, responses left to the sender (before any message can arrive)."""
    assoc: Association = event.assoc
    if nodelay:
        _set_nodelay(assoc)
    _quiet(assoc)
    assoc.dul.socket.recv = _PduGuard(assoc, max_pdu, 0)  # type: ignore[method-assign,union-attr]
    assoc.dimse.msg_queue = _ResponsesToSender()
    _wait_for_events(assoc)


_STANDARD_LOG_HANDLERS = ((evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
                          (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
                          (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
                          (evt.EVT_PDU_SENT, standard_pdu_sent_handler))


def _quiet(assoc: Association) -> None:
    """Unbind pynetdicom's standard logging handlers from ``assoc`` (they format every message and PDU;
    ~0.2 ms a C-STORE) unless the ``pynetdicom`` logger is at DEBUG, where they are what one wants."""
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
        for event, handler in _STANDARD_LOG_HANDLERS:
            with contextlib.suppress(ValueError, KeyError):
                assoc.unbind(event, handler)


def _set_nodelay(assoc: Association) -> None:
    sock = getattr(assoc.dul.socket, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ---------------------------------------------------------------------------------- sending files
class _StoredRef(Dataset):
    """What the C-MOVE / C-GET handlers yield for a stored instance: pynetdicom wants a Dataset, the
    patched ``send_c_store`` (:func:`_send_stored`) sends the file behind it as stored."""

    def __init__(self, instance: StoredInstance) -> None:
        super().__init__()
        self.SOPInstanceUID = instance.sop_uid  # pynetdicom lists failed sub-operations by it
        self.medimg_file = (instance.path, instance.sop_class_uid, instance.transfer_syntax)


def _uncompressed(ts: str) -> bool:
    return ts in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                  DeflatedExplicitVRLittleEndian)


def _send_file(assoc: Association, send: Any, path: Path, sop_class: str, ts: str, **kw: Any) -> int:
    """C-STORE the file at ``path`` over ``assoc`` with the pynetdicom ``send`` (the association's own
    ``send_c_store``): as stored if a context for its transfer syntax was accepted, else converted by
    pydicom between uncompressed transfer syntaxes.  Returns the peer's status; raises ValueError if no
    accepted context fits."""
    accepted = {str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
                if cx.abstract_syntax == sop_class and cx.as_scu}
    if ts in accepted:
        rsp = send(path, **kw)
    elif _uncompressed(ts) and any(map(_uncompressed, accepted)):
        rsp = send(dcmread(path), **kw)  # pynetdicom re-encodes in an accepted uncompressed syntax
    else:
        raise ValueError(f"{path.name}: the peer accepted no context for {UID(sop_class).name} in "
                         f"{UID(ts).name} (medimg does not transcode compressed data)")
    status = rsp.get("Status") if rsp is not None else None
    if status is None:
        raise ConnectionError("no C-STORE response (the association was aborted or timed out)")
    return int(status)


def _send_stored(assoc: Association) -> None:
    """Make ``assoc.send_c_store`` send :class:`_StoredRef` datasets as the files they stand for."""
    original = assoc.send_c_store
    if getattr(original, "medimg", False):
        return

    def send_c_store(dataset: Any, msg_id: int = 1, priority: int = 2, originator_aet: str | None = None,
                     originator_id: int | None = None) -> Dataset:
        kw = {"msg_id": msg_id, "priority": priority, "originator_aet": originator_aet,
              "originator_id": originator_id}
        if isinstance(dataset, _StoredRef):
            path, sop_class, ts = dataset.medimg_file
            status = _send_file(assoc, original, path, sop_class, ts, **kw)
            return _status(status)
        return original(dataset, **kw)  # type: ignore[arg-type]

    send_c_store.medimg = True  # type: ignore[attr-defined]
    assoc.send_c_store = send_c_store  # type: ignore[method-assign]


def _storage_contexts(files: list[tuple[str, str]]) -> list[PresentationContext]:
    """Presentation contexts to send (SOP Class UID, transfer syntax) pairs: one per pair, plus one
    offering both uncompressed little-endian syntaxes per SOP class with an uncompressed file (so a
    peer that refuses e.g. big endian can still get the instance, converted)."""
    contexts: list[PresentationContext] = []
    fallback: set[str] = set()
    for sop_class, ts in sorted(set(files)):
        contexts.append(build_context(sop_class, [ts]))
        if _uncompressed(ts):
            fallback.add(sop_class)
    for sop_class in sorted(fallback):
        contexts.append(build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    return contexts


# ---------------------------------------------------------------------------------- queries
class _Refused(Exception):
    """A request we answer with a failure status."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


#: every keyword the store can match on or compute, at some level
_KNOWN_KEYS = frozenset(k for level in LEVELS for k in supported_keys(level))
_UNIQUE_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "IMAGE": "SOPInstanceUID"}
_CONTROL_KEYS = ("QueryRetrieveLevel", "SpecificCharacterSet")


def _query_value(elem: DataElement) -> str:
    """The query string of an identifier element (multiple values joined by backslashes)."""
    value = elem.value
    if value is None or elem.VR == "SQ":
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").strip(" \x00")
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _level(identifier: Dataset, root: str) -> str:
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS:
        raise _Refused(0xA900, f"Query/Retrieve Level {level!r} is not one of {', '.join(LEVELS)}")
    if root == "STUDY" and level == "PATIENT":
        raise _Refused(0xA900, "the Study Root model has no PATIENT level")
    return level


def _answer_value(ds: Dataset, keyword: str, value: Any) -> None:
    if value is None or value == "":
        value = None  # an empty value of whatever VR
    elif isinstance(value, list | tuple):
        value = [str(v) for v in value]
    setattr(ds, keyword, value)


def _non_ascii(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_non_ascii(v) for v in value)
    return isinstance(value, str) and not value.isascii()


# ---------------------------------------------------------------------------------- the SCP
class _Context(PresentationContext):
    """A supported presentation context that copies cheaply: pynetdicom deep-copies the server's ~190
    contexts (x 37 transfer syntaxes) for every association it accepts, ~35 ms; UIDs are immutable
    strings, so a copy needs only its own list of them (which :meth:`DicomNode._on_requested` may
    reorder)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Context:
        new = copy.copy(self)
        new._transfer_syntax = list(self._transfer_syntax)
        return new


def _context(abstract_syntax: str, transfer_syntaxes: list[UID] | None = None, roles: bool = False) -> _Context:
    cx = _Context()
    cx.abstract_syntax = abstract_syntax
    cx.transfer_syntax = list(transfer_syntaxes or _PLAIN)
    if roles:
        cx.scu_role = cx.scp_role = True
    return cx


_FIND_MODELS = {PatientRootQueryRetrieveInformationModelFind: "PATIENT",
                StudyRootQueryRetrieveInformationModelFind: "STUDY"}
_MOVE_MODELS = {PatientRootQueryRetrieveInformationModelMove: "PATIENT",
                StudyRootQueryRetrieveInformationModelMove: "STUDY"}
_GET_MODELS = {PatientRootQueryRetrieveInformationModelGet: "PATIENT",
               StudyRootQueryRetrieveInformationModelGet: "STUDY"}


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
        self.contexts: list[PresentationContext] = [_context(Verification)]
        self.contexts += [_context(model) for model in (*_FIND_MODELS, *_MOVE_MODELS, *_GET_MODELS)]
        # SCU role too: a C-GET sends over the requestor's association (role selection)
        self.contexts += [_context(sop_class, TRANSFER_SYNTAXES, True) for sop_class in STORAGE_CLASSES]
        self.ae = ae
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The TCP port the SCP listens on (the configured one, or the one chosen for port 0)."""
        if self._server is None:
            return self.config.dicom_port
        return int(self._server.server_address[1])

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_GET, self._on_get),
        ]
        try:
            self._server = self.ae.start_server((self.config.host, self.config.dicom_port), block=False,
                                                evt_handlers=handlers, contexts=self.contexts)
        except OSError as exc:
            raise RuntimeError(f"the DICOM node cannot listen on {self.config.host}:{self.config.dicom_port} "
                               f"({exc.strerror}); choose another dicom_port") from None
        log.info("DICOM node %s listening on %s:%d", self.config.aet, self.config.host, self.port)

    def stop(self) -> None:
        """Stop listening and abort the associations still open."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.ae.shutdown()

    # ------------------------------------------------------------------------------ association
    def _on_open(self, event: Any) -> None:
        assoc: Association = event.assoc
        if self.config.tcp_nodelay:
            _set_nodelay(assoc)
        _quiet(assoc)
        lim = self.config.limits
        guard = _PduGuard(assoc, lim.max_pdu, lim.max_instance_bytes + lim.max_pdu + 65536)
        assoc._medimg_guard = guard  # type: ignore[attr-defined]
        assoc.dul.socket.recv = guard  # type: ignore[method-assign,union-attr]
        messages = _WakingQueue(assoc)
        assoc.dimse.msg_queue = messages
        assoc.dul.to_user_queue = _UserQueue(messages)
        assoc._serve_request = _Burst(assoc, messages)  # type: ignore[method-assign]
        _wait_for_events(assoc)

    def _on_requested(self, event: Any) -> None:
        """Before negotiation: choose transfer syntaxes so that data sets arrive as the sender holds
        them.  pynetdicom accepts, in a presentation context, the first syntax of *our* list that was
        proposed; our list puts explicit VR, implicit VR, big endian first, so an uncompressed sender
        is never asked to compress.  A sender that proposes several syntaxes and puts a compressed one
        (or deflate) first holds it: that syntax moves to the front of our list for its SOP class,
        for this association only."""
        assoc: Association = event.assoc
        first: dict[str, str] = {}
        for cx in assoc.requestor.primitive.presentation_context_definition_list:  # type: ignore[union-attr]
            syntaxes = [str(ts) for ts in cx.transfer_syntax]
            if len(syntaxes) > 1 and syntaxes[0] not in _PLAIN:
                first.setdefault(str(cx.abstract_syntax), syntaxes[0])
        if not first:
            return
        for cx in assoc.acceptor.supported_contexts:  # this association's own copies
            ts = first.get(str(cx.abstract_syntax))
            if ts is not None and ts in cx.transfer_syntax:  # in place: the list the negotiation reads
                cx.transfer_syntax.remove(UID(ts))
                cx.transfer_syntax.insert(0, UID(ts))

    # ------------------------------------------------------------------------------ C-STORE
    def _on_store(self, event: Any) -> Dataset:
        aet = event.assoc.requestor.ae_title.strip()
        source = f"dimse:{aet}"
        req = event.request
        data = req.DataSet.getbuffer()  # no copy; the buffer goes with the request
        try:
            result = self.server.store.put_dataset(
                data, event.context.transfer_syntax, sop_class_uid=str(req.AffectedSOPClassUID or ""),
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

    # ------------------------------------------------------------------------------ C-FIND
    def _on_find(self, event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        aet = event.assoc.requestor.ae_title.strip()
        try:
            identifier = event.identifier
            level = _level(identifier, _FIND_MODELS.get(event.request.AffectedSOPClassUID, "STUDY"))
            query, returned, warn = self._find_keys(identifier, level)
            limit = self.config.limits.max_query_results
            matches = store_find(self.server.store.engine, level, query, limit=limit + 1)
        except _Refused as exc:
            log.warning("C-FIND from %s refused (0x%04X): %s", aet, exc.status, exc.comment)
            yield _status(exc.status, exc.comment), None
            return
        except QueryError as exc:
            status = 0xA900 if "supported" in str(exc) or "cannot be matched" in str(exc) else 0xC000
            log.warning("C-FIND from %s refused (0x%04X): %s", aet, status, exc)
            yield _status(status, str(exc)), None
            return
        except Exception as exc:
            log.exception("C-FIND from %s failed", aet)
            yield _status(0xC000, f"internal error: {type(exc).__name__}"), None
            return
        pending = 0xFF01 if warn else 0xFF00
        for match in matches[:limit]:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield pending, self._find_answer(match, level, returned)
        if len(matches) > limit:
            comment = f"more than {limit} matches; the first {limit} were sent; narrow the query"
            log.warning("C-FIND from %s: %s", aet, comment)
            yield _status(STATUS_OUT_OF_RESOURCES, comment), None

    def _find_keys(self, identifier: Dataset, level: str) -> tuple[dict[str, str], list[str], bool]:
        """(the query for the store, the keywords to return, whether some key is not supported)."""
        at_level = set(supported_keys(level))
        query: dict[str, str] = {}
        returned: list[str] = []
        warn = False
        for elem in identifier:
            keyword = elem.keyword
            if keyword in _CONTROL_KEYS:
                continue
            value = _query_value(elem)
            if not keyword or elem.tag.is_private:
                if value:
                    raise _Refused(0xA900, f"{elem.tag} is not a supported matching key")
                continue
            returned.append(keyword)
            if elem.VR == "SQ":
                warn = True  # sequence matching is not supported: returned empty
                continue
            if keyword in ("RetrieveAETitle", "InstanceAvailability"):
                continue  # answered by the node
            if not value:
                if keyword in at_level:
                    query[keyword] = ""
                else:
                    warn = True  # returned empty
                continue
            if keyword not in _KNOWN_KEYS:
                warn = True  # accepted by the store without matching (or refused: QueryError)
            query[keyword] = value
        unique = _UNIQUE_KEY[level]
        if unique not in returned:
            returned.append(unique)
            query.setdefault(unique, "")
        return query, returned, warn

    def _find_answer(self, match: dict[str, Any], level: str, returned: list[str]) -> Dataset:
        ds = Dataset()
        if any(_non_ascii(match.get(k)) for k in returned):
            ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = level
        for keyword in returned:
            if keyword == "RetrieveAETitle":
                value: Any = self.config.aet
            elif keyword == "InstanceAvailability":
                value = "ONLINE"
            else:
                value = match.get(keyword)
            try:
                _answer_value(ds, keyword, value)
            except (TypeError, ValueError):
                _answer_value(ds, keyword, None)
        return ds

    # ------------------------------------------------------------------------------ C-MOVE, C-GET
    def _retrieve_set(self, identifier: Dataset, root: str) -> list[StoredInstance]:
        """The stored instances a C-MOVE / C-GET identifier names (by the unique keys of its level)."""
        level = _level(identifier, root)
        keyword = _UNIQUE_KEY[level]
        values = [v for v in _query_value(identifier[keyword]).split("\\") if v] if keyword in identifier else []
        if not values:
            raise _Refused(0xA900, f"a {level} retrieve needs {keyword}")
        store = self.server.store
        found: list[StoredInstance] = []
        for value in values:
            if level == "PATIENT":
                if "*" in value or "?" in value:
                    raise _Refused(0xA900, "PatientID must be a value, not a wildcard")
                studies = store_find(store.engine, "STUDY", {"PatientID": value})
                for study in studies:
                    found.extend(store.instances(study_uid=study["StudyInstanceUID"]))
            elif not is_valid_uid(value):
                raise _Refused(0xA900, f"{keyword} {value[:40]!r} is not a UID")
            elif level == "STUDY":
                found.extend(store.instances(study_uid=value))
            elif level == "SERIES":
                found.extend(store.instances(series_uid=value))
            else:
                found.extend(store.instances(sop_uid=value))
        unique: dict[str, StoredInstance] = {}
        for inst in found:  # a UID listed twice is sent once
            unique.setdefault(inst.sop_uid, inst)
        return list(unique.values())

    def _peer_by_aet(self, aet: str) -> Peer | None:
        for peer in self.config.peers.values():
            if peer.aet == aet:
                return peer
        return None

    def _on_move(self, event: Any) -> Iterator[Any]:
        aet = event.assoc.requestor.ae_title.strip()
        destination = str(event.move_destination or "").strip()
        peer = self._peer_by_aet(destination)
        if peer is None:
            log.warning("C-MOVE from %s: move destination %r is not a configured peer (0xA801)", aet,
                        destination)
            yield None, None
            return
        try:
            instances = self._retrieve_set(event.identifier, _MOVE_MODELS.get(event.request.AffectedSOPClassUID,
                                                                                "STUDY"))
        except _Refused as exc:
            log.warning("C-MOVE from %s refused: %s", aet, exc.comment)
            raise  # pynetdicom answers a failure (0xC514: unable to process)
        contexts = _storage_contexts([(i.sop_class_uid, i.transfer_syntax) for i in instances])[:128]
        lim = self.config.limits

        def on_open(ev: Any) -> None:
            _tune_requestor(ev, self.config.tcp_nodelay, lim.max_pdu)
            _send_stored(ev.assoc)

        log.info("C-MOVE from %s: %d instances to %s (%s:%d)", aet, len(instances), peer.aet, peer.host,
                 peer.port)
        yield peer.host, peer.port, {"contexts": contexts or [build_context(Verification)],
                                     "evt_handlers": [(evt.EVT_CONN_OPEN, on_open)]}
        yield len(instances)
        for inst in instances:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, _StoredRef(inst)

    def _on_get(self, event: Any) -> Iterator[Any]:
        aet = event.assoc.requestor.ae_title.strip()
        try:
            instances = self._retrieve_set(event.identifier, _GET_MODELS.get(event.request.AffectedSOPClassUID,
                                                                               "STUDY"))
        except _Refused as exc:
            log.warning("C-GET from %s refused: %s", aet, exc.comment)
            raise  # pynetdicom answers a failure (0xC413: unable to process)
        _send_stored(event.assoc)
        log.info("C-GET from %s: %d instances", aet, len(instances))
        yield len(instances)
        for inst in instances:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, _StoredRef(inst)


# ---------------------------------------------------------------------------------- the SCU
def _peer_label(name: str, peer: Peer) -> str:
    return f"peer {name} ({peer.aet}@{peer.host}:{peer.port})"


def _reject_of(assoc: Association) -> str | None:
    """``'<result>, <reason>'`` if the peer sent an A-ASSOCIATE-RJ, else None.

    pynetdicom's requestor can miss a reject: when the DUL thread connects, sends the request, reads
    the reject and closes the connection before the requesting thread checks that the connection is
    open, that thread aborts without reading the reject, which is left in the DUL's queue for the
    user (seen under load with a peer at its association limit).  Look there too."""
    candidates = [assoc.acceptor.primitive] if assoc.is_rejected else []
    with contextlib.suppress(AttributeError):
        candidates += list(assoc.dul.to_user_queue.queue)
    for primitive in candidates:
        if isinstance(primitive, A_ASSOCIATE) and primitive.result in (0x01, 0x02):
            return f"{primitive.result_str.lower()}, {primitive.reason_str.lower()}"
    return None


def _associate(server: MedimgServer, peer_name: str, contexts: list[PresentationContext],
               handlers: list[Any] | None = None) -> tuple[Association, str]:
    """An established association with a configured peer, or an InputError naming it."""
    cfg = server.config
    peer = cfg.peer(peer_name)
    label = _peer_label(peer_name, peer)
    ae = AE(ae_title=cfg.aet)
    ae.maximum_pdu_size = cfg.limits.max_pdu
    ae.acse_timeout = 30
    ae.dimse_timeout = 120
    ae.network_timeout = 60

    connected: list[bool] = []

    def on_open(event: Any) -> None:
        connected.append(True)
        _tune_requestor(event, cfg.tcp_nodelay, cfg.limits.max_pdu)

    assoc = ae.associate(peer.host, peer.port, contexts=contexts, ae_title=peer.aet,
                         evt_handlers=[(evt.EVT_CONN_OPEN, on_open), *(handlers or [])])
    if assoc.is_established:
        return assoc, label
    reject = _reject_of(assoc)
    if reject is not None:
        todo = ("try again later" if "transient" in reject
                else f"check that it knows the AE title {cfg.aet} and accepts these SOP classes")
        raise InputError(label, f"rejected the association ({reject})", todo)
    if connected:
        raise InputError(label, "aborted the association request", f"check that it accepts {cfg.aet}")
    raise InputError(label, "cannot be reached (connection refused or timed out)",
                     "check that it runs and the host and port in [peers]")


def send_instances(server: MedimgServer, peer_name: str, paths: list[Path]) -> list[tuple[str, int]]:
    """C-STORE the DICOM Part 10 files ``paths`` to the configured peer ``peer_name`` (its key in
    [peers] or its AE title), in one association; returns (SOP Instance UID, status) per file, in order.

    Files are sent as they are (their data set bytes unchanged) in their own transfer syntax; an
    uncompressed file the peer accepts only in another uncompressed syntax is converted by pydicom; a
    file the peer accepts in no syntax gets status 0x0122 (SOP class not supported).  Raises
    :class:`InputError` if a file is not readable DICOM, or the peer cannot be reached, refuses the
    association or aborts it."""
    files: list[tuple[Path, str, str, str]] = []
    for path in map(Path, paths):
        try:
            meta = read_file_meta_info(path)
            files.append((path, str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID),
                          str(meta.TransferSyntaxUID)))
        except (OSError, InvalidDicomError, AttributeError) as exc:
            raise InputError(path, f"cannot be sent: not a readable DICOM Part 10 file ({exc})",
                             "send only DICOM files with a file meta group") from None
    if not files:
        return []
    results: list[tuple[str, int]] = []
    # one association holds at most 128 presentation contexts: split by SOP class if needed
    batches: list[list[tuple[Path, str, str, str]]] = []
    current: list[tuple[Path, str, str, str]] = []
    for f in sorted(files, key=lambda f: (f[1], f[3])):
        trial = current + [f]
        if current and len(_storage_contexts([(x[1], x[3]) for x in trial])) > 128:
            batches.append(current)
            trial = [f]
        current = trial
    batches.append(current)
    statuses: dict[int, int] = {}
    order = {id(f): i for i, f in enumerate(files)}
    for batch in batches:
        assoc, label = _associate(server, peer_name, _storage_contexts([(f[1], f[3]) for f in batch]))
        try:
            for f in batch:
                path, sop_class, sop_uid, ts = f
                try:
                    statuses[order[id(f)]] = _send_file(assoc, assoc.send_c_store, path, sop_class, ts)
                except ValueError as exc:
                    log.warning("%s: %s", label, exc)
                    statuses[order[id(f)]] = 0x0122
                except ConnectionError:
                    done = len(statuses)
                    raise InputError(label, f"aborted the association after {done} of {len(files)} "
                                     "instances", "see the peer's log") from None
        finally:
            if assoc.is_established:
                assoc.release()
    for i, f in enumerate(files):
        results.append((f[2], statuses[i]))
    return results


def _identifier(level: str, query: dict[str, str], label: str) -> Dataset:
    level = level.upper()
    if level not in LEVELS:
        raise InputError(label, f"query level {level!r} is not one of {', '.join(LEVELS)}")
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in query.items():
        try:
            setattr(ds, keyword, value)
        except (TypeError, ValueError) as exc:
            raise InputError(label, f"query key {keyword}={value!r} cannot be sent ({exc})") from None
        if keyword not in ds:
            raise InputError(label, f"{keyword!r} is not a DICOM keyword")
    if any(_non_ascii(v) for v in query.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _failure(status: Dataset | None) -> str:
    if status is None or "Status" not in status:
        return "no response (the association was aborted or timed out)"
    comment = status.get("ErrorComment", "")
    return f"status 0x{int(status.Status):04X}" + (f" ({comment})" if comment else "")


def find(server: MedimgServer, peer_name: str, level: str, query: dict[str, str]) -> list[Dataset]:
    """C-FIND at the configured peer ``peer_name``: Study Root information model (Patient Root for the
    PATIENT level); ``query`` maps DICOM keywords to values (empty: return key).  Returns the matches'
    identifiers; raises :class:`InputError` naming the peer on a failure status."""
    cfg = server.config
    label = _peer_label(peer_name, cfg.peer(peer_name))
    ident = _identifier(level, query, label)
    model = PatientRootQueryRetrieveInformationModelFind if ident.QueryRetrieveLevel == "PATIENT" \
        else StudyRootQueryRetrieveInformationModelFind
    assoc, label = _associate(server, peer_name, [build_context(model)])
    matches: list[Dataset] = []
    try:
        for status, identifier in assoc.send_c_find(ident, model):
            code = int(status.Status) if status is not None and "Status" in status else None
            if code in (0xFF00, 0xFF01):
                if identifier is not None:
                    matches.append(identifier)
                continue
            if code == 0x0000:
                break
            raise InputError(label, f"C-FIND {ident.QueryRetrieveLevel} failed: {_failure(status)}",
                             "check the query keys")
    finally:
        if assoc.is_established:
            assoc.release()
    return matches


def retrieve(server: MedimgServer, peer_name: str, level: str, query: dict[str, str]) -> int:
    """C-MOVE from the configured peer ``peer_name`` to this node (our AE title as move destination;
    the instances arrive through our C-STORE SCP, so the node must be running and the peer must know
    our AE title).  Study Root (Patient Root for PATIENT); ``query`` holds the unique keys.  Returns the
    number of completed sub-operations; raises :class:`InputError` naming the peer on failure."""
    cfg = server.config
    label = _peer_label(peer_name, cfg.peer(peer_name))
    ident = _identifier(level, query, label)
    model = PatientRootQueryRetrieveInformationModelMove if ident.QueryRetrieveLevel == "PATIENT" \
        else StudyRootQueryRetrieveInformationModelMove
    assoc, label = _associate(server, peer_name, [build_context(model)])
    completed = 0
    final: Dataset | None = None
    try:
        for status, _identifier_ds in assoc.send_c_move(ident, cfg.aet, model):
            final = status
            if status is None or "Status" not in status:
                break
            completed = int(status.get("NumberOfCompletedSuboperations", completed) or completed)
            if int(status.Status) not in (0xFF00, 0xFF01):
                break
    finally:
        if assoc.is_established:
            assoc.release()
    code = int(final.Status) if final is not None and "Status" in final else None
    if code == 0xA801:
        raise InputError(label, f"does not know the move destination {cfg.aet}",
                         f"add {cfg.aet} at {cfg.host}:{server.node.port} as a DICOM modality on the peer")
    if code not in (0x0000, 0xB000):
        raise InputError(label, f"C-MOVE {ident.QueryRetrieveLevel} failed: {_failure(final)}")
    return completed


def fetch_priors(server: MedimgServer, patient_id: str, peer_name: str | None = None) -> list[str]:
    """Find the studies of ``patient_id`` at ``peer_name`` (default: ``priors_from`` in the config) and
    C-MOVE here those the store does not hold completely; returns the Study Instance UIDs fetched."""
    name = peer_name or server.config.priors_from
    if not name:
        raise InputError("fetch_priors", "no peer to fetch priors from",
                         "set priors_from in the config or pass a peer name")
    if not patient_id or any(c in patient_id for c in "*?\\"):
        raise InputError("fetch_priors", f"patient ID {patient_id!r} is empty or holds * ? or \\",
                         "give one exact Patient ID")
    studies = find(server, name, "STUDY", {"PatientID": patient_id, "StudyInstanceUID": "", "StudyDate": "",
                                           "NumberOfStudyRelatedInstances": ""})
    fetched: list[str] = []
    engine = server.store.engine
    for ds in studies:
        uid = str(ds.get("StudyInstanceUID", "") or "")
        if not is_valid_uid(uid):
            log.warning("fetch_priors: %s answered a study without a valid UID (%r)", name, uid[:80])
            continue
        if str(ds.get("PatientID", patient_id) or patient_id) != patient_id:
            continue  # a peer that matched loosely
        remote = ds.get("NumberOfStudyRelatedInstances")
        local = store_find(engine, "STUDY", {"StudyInstanceUID": uid})
        have = local[0]["NumberOfStudyRelatedInstances"] if local else 0
        if have and (remote in (None, "") or have >= int(remote)):
            continue
        if retrieve(server, name, "STUDY", {"StudyInstanceUID": uid}) > 0:
            fetched.append(uid)
    return fetched
