"""The durable study store: instance files on disk, their index in a database.

Layout of a store folder::

    DIR/index.sqlite        the index (unless a database URL is given)
    DIR/files/ab/<32 hex>.dcm   one Part 10 file per instance, under a random server-generated name
    DIR/tmp/                files being written (removed by recovery)
    DIR/open/<pid>          one marker per process that has the store open

Storing one instance:

1. the data set is checked (:mod:`.validate`: every length fits, sequences end, nesting is bounded) and
   the indexed attributes are read; UIDs must be UIDs;
2. if the SOP Instance UID is already stored, the result is ``duplicate`` (same SHA-256 of the data set)
   or the conflict policy applies (different bytes), without writing anything;
3. the file is written to ``tmp/``, renamed into ``files/``, fsynced, and its folder fsynced;
4. study, series and instance rows are written in one transaction (SQLite: WAL, ``synchronous=FULL``);
   concurrent senders share it (group commit, :mod:`.writer`: the folders of all the rows waiting are
   fsynced, then their rows are committed together);
5. only then does :meth:`Store.put_dataset` return, and only then may a caller acknowledge the instance.

A crash between 3 and 4 leaves a file without a row: it was never acknowledged, and the recovery that
runs when a store is opened after an unclean stop (a marker in ``open/`` whose process is gone) removes
it, with everything in ``tmp/``.  Rows are never written before their file is durable, so a row
without a file can only come from damage outside medimg; :meth:`Store.verify` reports it.

Conflict policy (same SOP Instance UID, different data set bytes): ``reject`` (default: the stored copy
stays, the sender gets failure 0x0111 "duplicate SOP instance" / HTTP 409), ``keep`` (the stored copy
stays, the sender gets success; the event is logged) or ``replace`` (the new copy replaces the old one,
atomically, and the event is logged).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, func, insert, select, update

from ..errors import InputError
from . import schema as t
from .content import same_content
from .database import make_engine
from .part10 import Header, build_meta, inspect_dataset, is_valid_uid, sha256, split_part10
from .validate import StructureError
from .writer import IndexWriter, PendingRow

__all__ = ["ConflictPolicy", "InstanceRejected", "Store", "StoreResult", "StoredInstance", "VerifyReport"]

log = logging.getLogger("medimg.store")

ConflictPolicy = Literal["reject", "keep", "replace"]

# DICOM status codes used in results (PS3.4 Annex B / PS3.7 C)
STATUS_SUCCESS = 0x0000
STATUS_DUPLICATE = 0x0111  # Duplicate SOP Instance
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DOES_NOT_MATCH = 0xA900  # Data Set does not match SOP Class
STATUS_CANNOT_UNDERSTAND = 0xC000


class InstanceRejected(InputError):
    """A received instance cannot be stored.  ``status`` is the DICOM failure status to answer,
    ``http_status`` the HTTP status (STOW-RS)."""

    def __init__(self, source: str | None, problem: str, hint: str | None = None,
                 status: int = STATUS_CANNOT_UNDERSTAND, http_status: int = 400) -> None:
        super().__init__(source, problem, hint)
        self.status = status
        self.http_status = http_status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.problem, self.hint, self.status, self.http_status))


@dataclass(frozen=True)
class StoreResult:
    """What happened to one instance offered to the store."""

    outcome: Literal["stored", "duplicate", "conflict", "replaced", "kept"]
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    sha256: str
    path: Path | None  # the stored file (the existing one for duplicate/conflict/kept)
    reason: str = ""

    @property
    def status(self) -> int:
        """The DICOM status to answer: success, or 0x0111 for a rejected conflict."""
        return STATUS_DUPLICATE if self.outcome == "conflict" else STATUS_SUCCESS

    @property
    def ok(self) -> bool:
        return self.outcome != "conflict"


@dataclass(frozen=True)
class StoredInstance:
    """One instance as the index knows it."""

    sop_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    transfer_syntax: str
    instance_number: int | None
    path: Path
    size: int
    sha256: str
    frames: int | None = None
    rows: int | None = None
    columns: int | None = None


@dataclass
class VerifyReport:
    """The result of :meth:`Store.verify`."""

    checked: int = 0
    ok: int = 0
    missing: list[str] = field(default_factory=list)  # SOP Instance UIDs whose file is gone
    corrupt: list[str] = field(default_factory=list)  # SOP Instance UIDs whose bytes changed
    orphans: list[str] = field(default_factory=list)  # files (relative paths) without a row

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt or self.orphans)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """A study store in the folder ``root``; the index in ``url`` (default: SQLite in the folder).

    Thread-safe: the DICOM node and the web service share one instance.
    """

    def __init__(self, root: str | os.PathLike[str], url: str | None = None, *,
                 conflict: ConflictPolicy = "reject", max_instance_bytes: int = 2 << 30,
                 max_depth: int = 32, fsync: bool = True) -> None:
        if conflict not in ("reject", "keep", "replace"):
            raise ValueError(f"conflict policy must be reject, keep or replace, not {conflict!r}")
        self.root = Path(root).resolve()
        self.conflict = conflict
        self.max_instance_bytes = max_instance_bytes
        self.max_depth = max_depth
        self.fsync = fsync
        try:
            for sub in ("files", "tmp", "open"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            for i in range(256):
                (self.root / "files" / f"{i:02x}").mkdir(exist_ok=True)
        except OSError as exc:
            raise InputError(self.root, f"cannot create the store folder ({exc.strerror})",
                             "choose a writable folder") from None
        self.url = url or f"sqlite:///{self.root / 'index.sqlite'}"
        self.engine: Engine = make_engine(self.url)
        self._writer = self.engine.execution_options(immediate=True)
        self._sqlite = self.url.startswith("sqlite")
        self._lock = threading.Lock()  # one Core writer at a time per process (SQLite has one anyway)
        # instances' index rows: group commit across threads (see .writer)
        self._index_writer = IndexWriter(self.engine, self.root, replace=conflict == "replace", fsync=fsync)
        self._marker = self.root / "open" / str(os.getpid())
        stale = self._stale_markers()
        self._marker.write_text(str(time.time()))
        self.recovered: dict[str, int] | None = None
        if stale is not None:
            self.recovered = self.recover()
            for m in stale:
                m.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ lifecycle
    def _stale_markers(self) -> list[Path] | None:
        """Markers of processes that died with the store open; None if recovery must not run (none
        died, or another live process has the store open)."""
        stale, alive = [], False
        for m in (self.root / "open").iterdir():
            try:
                pid = int(m.name)
            except ValueError:
                continue
            if pid == os.getpid():
                continue
            if _pid_alive(pid):
                alive = True
            else:
                stale.append(m)
        if alive or not stale:
            if stale and alive:
                log.warning("%s: a process died with the store open, but another one still has it open; "
                            "recovery postponed", self.root)
            return None
        return stale

    def close(self) -> None:
        self._index_writer.close()
        self._marker.unlink(missing_ok=True)
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recover(self) -> dict[str, int]:
        """Remove what an unclean stop left: files in ``tmp/`` and files without an index row (neither
        was ever acknowledged).  Returns the counts."""
        tmp_removed = 0
        for p in (self.root / "tmp").iterdir():
            p.unlink(missing_ok=True)
            tmp_removed += 1
        orphans = self._orphans()
        for rel in orphans:
            (self.root / rel).unlink(missing_ok=True)
        if tmp_removed or orphans:
            log.warning("%s: recovery removed %d partial and %d unindexed files (never acknowledged)",
                        self.root, tmp_removed, len(orphans))
        return {"tmp": tmp_removed, "orphans": len(orphans)}

    def _orphans(self, settle: float = 0.0) -> list[str]:
        """Files under ``files/`` without an index row.  The folders are listed before the index is
        read, so a file whose row is committed in between is not counted.  With ``settle`` > 0 (a
        store that a running server may be writing to), files younger than 10 s are looked up again
        after ``settle`` seconds: a file between its rename and its commit is not an orphan."""
        on_disk: list[str] = []
        for sub in sorted((self.root / "files").iterdir()):
            if sub.is_dir():
                on_disk.extend(f"files/{sub.name}/{f.name}" for f in sub.iterdir())
        with self.engine.connect() as conn:
            known: set[str] = set(conn.execute(select(t.instances.c.path)).scalars())
        found = [rel for rel in on_disk if rel not in known]
        if settle > 0:
            now = time.time()
            young = []
            for rel in found:
                try:
                    if now - (self.root / rel).stat().st_mtime < 10:
                        young.append(rel)
                except FileNotFoundError:  # removed meanwhile (a lost race, a replaced copy)
                    young.append(rel)
            if young:
                time.sleep(settle)
                with self.engine.connect() as conn:
                    late: set[str] = set(conn.execute(select(t.instances.c.path)
                                            .where(t.instances.c.path.in_(young))).scalars())
                found = [rel for rel in found
                         if rel not in late and (rel not in young or (self.root / rel).exists())]
        return found

    # ------------------------------------------------------------------------------ storing
    def put_dataset(self, dataset: bytes | memoryview, transfer_syntax: str, *, sop_class_uid: str = "",
                    sop_instance_uid: str = "", source: str = "", source_aet: str = "") -> StoreResult:
        """Store a data set received over the network (C-STORE): ``dataset`` is the encoded data set
        in ``transfer_syntax``; ``sop_class_uid``/``sop_instance_uid`` are the request's Affected SOP
        Class/Instance UIDs and must match the data set's."""
        label = source or "received data set"
        if len(dataset) > self.max_instance_bytes:
            raise InstanceRejected(label, f"instance of {len(dataset)} bytes exceeds the limit of "
                                   f"{self.max_instance_bytes}", "raise max_instance_bytes",
                                   status=STATUS_OUT_OF_RESOURCES, http_status=413)
        header = self._check(dataset, transfer_syntax, label)
        if sop_instance_uid and sop_instance_uid != header.sop_instance_uid:
            raise InstanceRejected(label, f"the request's SOP Instance UID {sop_instance_uid} differs from "
                                   f"the data set's {header.sop_instance_uid}", "fix the sender",
                                   status=STATUS_CANNOT_UNDERSTAND)
        if sop_class_uid and sop_class_uid != header.sop_class_uid:
            raise InstanceRejected(label, f"the request's SOP Class UID {sop_class_uid} differs from the "
                                   f"data set's {header.sop_class_uid}", "fix the sender",
                                   status=STATUS_DOES_NOT_MATCH)
        meta = build_meta(header.sop_class_uid, header.sop_instance_uid, transfer_syntax, source_aet)
        return self._store(meta, dataset, transfer_syntax, header, source)

    def put_file_bytes(self, data: bytes | memoryview, *, source: str = "") -> StoreResult:
        """Store a DICOM Part 10 file given as bytes (STOW-RS, import); kept byte for byte."""
        label = source or "received file"
        if len(data) > self.max_instance_bytes:
            raise InstanceRejected(label, f"file of {len(data)} bytes exceeds the limit of "
                                   f"{self.max_instance_bytes}", "raise max_instance_bytes",
                                   status=STATUS_OUT_OF_RESOURCES, http_status=413)
        try:
            meta, offset = split_part10(data)
        except StructureError as exc:
            raise InstanceRejected(label, str(exc), "send a DICOM Part 10 file",
                                   status=STATUS_CANNOT_UNDERSTAND) from None
        view = memoryview(data)
        header = self._check(view[offset:], meta["TransferSyntaxUID"], label)
        ms = meta.get("MediaStorageSOPInstanceUID")
        if ms and ms != header.sop_instance_uid:
            raise InstanceRejected(label, f"the file meta's SOP Instance UID {ms} differs from the data "
                                   f"set's {header.sop_instance_uid}", "fix the file")
        return self._store(view[:offset], view[offset:], meta["TransferSyntaxUID"], header, source)

    def put_path(self, path: str | os.PathLike[str], *, source: str = "") -> StoreResult:
        """Store a DICOM Part 10 file from disk (``medimg store import``)."""
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > self.max_instance_bytes:
                raise InstanceRejected(str(p), f"file of {size} bytes exceeds the limit of "
                                       f"{self.max_instance_bytes}", "raise max_instance_bytes",
                                       status=STATUS_OUT_OF_RESOURCES, http_status=413)
            data = p.read_bytes()
        except OSError as exc:
            raise InputError(p, f"cannot read ({exc.strerror})") from None
        try:
            return self.put_file_bytes(data, source=source or f"import:{p}")
        except InstanceRejected as exc:  # name the file, not the source label
            raise InstanceRejected(str(p), exc.problem, exc.hint, exc.status, exc.http_status) from None

    def _check(self, dataset: bytes | memoryview, transfer_syntax: str, label: str) -> Header:
        if not is_valid_uid(transfer_syntax):
            raise InstanceRejected(label, f"transfer syntax {transfer_syntax!r} is not a UID")
        try:
            header = inspect_dataset(dataset, transfer_syntax, max_depth=self.max_depth,
                                     max_inflated=self.max_instance_bytes)
        except StructureError as exc:
            raise InstanceRejected(label, f"malformed data set: {exc}", "the instance was not stored; "
                                   "check the sender's file") from None
        for name, uid in (("SOP Class UID", header.sop_class_uid),
                          ("SOP Instance UID", header.sop_instance_uid),
                          ("Study Instance UID", header.study_uid),
                          ("Series Instance UID", header.series_uid)):
            if not uid:
                raise InstanceRejected(label, f"the data set has no {name}", "the instance was not stored",
                                       status=STATUS_DOES_NOT_MATCH)
            if not is_valid_uid(uid):
                raise InstanceRejected(label, f"the {name} {uid[:80]!r} is not a valid UID "
                                       "(digits and dots, at most 64 characters)",
                                       "the instance was not stored", status=STATUS_DOES_NOT_MATCH)
        return header

    def _existing(self, sop_uid: str) -> tuple[int, str, str] | None:
        return self._index_writer.existing(sop_uid)

    def _write_file(self, meta: bytes | memoryview, dataset: bytes | memoryview) -> str:
        """Write a new file: into ``tmp/``, renamed into ``files/``, then fsynced.  The rename comes
        before the fsync so that one journal commit makes both the data and the new name durable
        (ext4); the folder's own fsync, which POSIX asks for and the index writer does before the
        commit, then has nothing left to write.  A crash before the commit leaves a file without a
        row, which recovery removes."""
        name = uuid.uuid4().hex
        rel = f"files/{name[:2]}/{name}.dcm"
        tmp = self.root / "tmp" / f"{name}.part"
        final = self.root / rel
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            for chunk in (meta, dataset):
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            os.rename(tmp, final)
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise
        os.close(fd)
        return rel

    def _store(self, meta: bytes | memoryview, dataset: bytes | memoryview, transfer_syntax: str,
               header: Header, source: str) -> StoreResult:
        digest = sha256(dataset)
        existing = self._existing(header.sop_instance_uid)
        if existing is not None:
            # other bytes: compared by content once (the rare path), and the answer reused below
            same = existing[1] == digest or self._same_content(existing, dataset, transfer_syntax)
            if same or self.conflict != "replace":
                return self._duplicate_result(header, digest, existing, source, dataset, transfer_syntax, same)
        try:
            rel = self._write_file(meta, dataset)
        except OSError as exc:
            raise InstanceRejected(source or header.sop_instance_uid,
                                   f"cannot write to the store ({exc.strerror})",
                                   "free disk space or fix permissions", status=STATUS_OUT_OF_RESOURCES,
                                   http_status=507) from None
        row = PendingRow(header, transfer_syntax, rel, len(meta) + len(dataset), digest, source)
        try:
            self._index_writer.commit(row)
        except BaseException as exc:
            (self.root / rel).unlink(missing_ok=True)
            if isinstance(exc, OSError):  # the folder fsync failed
                raise InstanceRejected(source or header.sop_instance_uid,
                                       f"cannot write to the store ({exc.strerror})",
                                       "check the disk", status=STATUS_OUT_OF_RESOURCES,
                                       http_status=507) from None
            raise
        if row.old:
            (self.root / row.old).unlink(missing_ok=True)
        if row.outcome == "raced":  # another thread or process stored the same SOP Instance UID first
            (self.root / rel).unlink(missing_ok=True)
            assert row.existing is not None
            return self._duplicate_result(header, digest, row.existing, source, dataset, transfer_syntax)
        return StoreResult("replaced" if row.old else "stored", header.sop_instance_uid,
                           header.sop_class_uid, header.study_uid, header.series_uid, digest, self.root / rel)

    def _same_content(self, existing: tuple[int, str, str], dataset: bytes | memoryview,
                      transfer_syntax: str) -> bool:
        with self.engine.connect() as conn:
            stored_ts = conn.execute(select(t.instances.c.transfer_syntax)
                                     .where(t.instances.c.id == existing[0])).scalar()
        return stored_ts is not None and same_content(self.root / existing[2], stored_ts, dataset,
                                                      transfer_syntax, self.max_instance_bytes)

    def _duplicate_result(self, header: Header, digest: str, existing: tuple[int, str, str],
                          source: str, dataset: bytes | memoryview, transfer_syntax: str,
                          same: bool | None = None) -> StoreResult:
        args = (header.sop_instance_uid, header.sop_class_uid, header.study_uid, header.series_uid,
                digest, self.root / existing[2])
        if existing[1] == digest:
            return StoreResult("duplicate", *args, reason="already stored with the same bytes")
        if same if same is not None else self._same_content(existing, dataset, transfer_syntax):
            return StoreResult("duplicate", *args, reason="already stored: the same content in "
                               "another encoding (the stored copy is kept)")
        self.log_event(source or "unknown", "conflict", header.study_uid,
                       {"sop_instance_uid": header.sop_instance_uid, "policy": self.conflict,
                        "stored_sha256": existing[1], "offered_sha256": digest})
        if self.conflict == "keep":
            return StoreResult("kept", *args, reason="different bytes for a stored SOP Instance UID; "
                               "the stored copy was kept (policy 'keep')")
        return StoreResult("conflict", *args, reason="different bytes for a stored SOP Instance UID; "
                           "the stored copy was kept (policy 'reject')")

    # ------------------------------------------------------------------------------ events
    def log_event(self, actor: str, action: str, study_uid: str | None = None,
                  detail: Mapping[str, Any] | None = None, conn: Any = None) -> None:
        """Append to the audit trail (who did what, when).  With ``conn`` (an open transaction) the row
        is written in that transaction, so it becomes visible together with the change it records."""
        if conn is None:
            with self._lock, self._writer.begin() as own:
                self.log_event(actor, action, study_uid, detail, conn=own)
            return
        study_pk = None
        if study_uid:
            study_pk = conn.execute(select(t.studies.c.id).where(t.studies.c.study_uid == study_uid)).scalar()
        conn.execute(insert(t.events).values(at=time.time(), actor=actor[:128], action=action[:64],
                                             study_pk=study_pk, detail=json.dumps(dict(detail or {}))))

    def events(self, study_uid: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        q = select(t.events.c.at, t.events.c.actor, t.events.c.action, t.events.c.detail,
                   t.studies.c.study_uid).outerjoin(t.studies, t.events.c.study_pk == t.studies.c.id)
        if study_uid:
            q = q.where(t.studies.c.study_uid == study_uid)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.events.c.id).limit(limit)).all()
        return [{"at": r[0], "actor": r[1], "action": r[2], "detail": json.loads(r[3] or "{}"),
                 "study_uid": r[4]} for r in rows]

    # ------------------------------------------------------------------------------ reading
    def _instance_query(self) -> Any:
        return (select(t.instances.c.sop_uid, t.instances.c.sop_class_uid, t.series.c.series_uid,
                       t.studies.c.study_uid, t.instances.c.transfer_syntax, t.instances.c.instance_number,
                       t.instances.c.path, t.instances.c.size, t.instances.c.sha256, t.instances.c.frames,
                       t.instances.c.rows, t.instances.c.columns)
                .join(t.series, t.instances.c.series_pk == t.series.c.id)
                .join(t.studies, t.series.c.study_pk == t.studies.c.id))

    def _stored(self, r: Any) -> StoredInstance:
        return StoredInstance(r[0], r[1], r[2], r[3], r[4], r[5], self.root / r[6], r[7], r[8], r[9], r[10], r[11])

    def instances(self, study_uid: str | None = None, series_uid: str | None = None,
                  sop_uid: str | None = None) -> list[StoredInstance]:
        """Stored instances of a study / series / one instance, in series then instance order."""
        q = self._instance_query()
        if study_uid:
            q = q.where(t.studies.c.study_uid == study_uid)
        if series_uid:
            q = q.where(t.series.c.series_uid == series_uid)
        if sop_uid:
            q = q.where(t.instances.c.sop_uid == sop_uid)
        q = q.order_by(t.series.c.series_number, t.series.c.id, t.instances.c.instance_number, t.instances.c.id)
        with self.engine.connect() as conn:
            return [self._stored(r) for r in conn.execute(q)]

    def instance(self, sop_uid: str) -> StoredInstance | None:
        found = self.instances(sop_uid=sop_uid)
        return found[0] if found else None

    def iter_all(self) -> Iterator[StoredInstance]:
        with self.engine.connect() as conn:
            for r in conn.execute(self._instance_query().order_by(t.instances.c.id)):
                yield self._stored(r)

    def count(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "studies": conn.execute(select(func.count()).select_from(t.studies)).scalar_one(),
                "series": conn.execute(select(func.count()).select_from(t.series)).scalar_one(),
                "instances": conn.execute(select(func.count()).select_from(t.instances)).scalar_one(),
            }

    def study_status(self, study_uid: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(t.studies.c.status).where(t.studies.c.study_uid == study_uid)).scalar()

    def set_study_status(self, study_uid: str, status: str) -> None:
        with self._lock, self._writer.begin() as conn:
            conn.execute(update(t.studies).where(t.studies.c.study_uid == study_uid).values(status=status))

    # ------------------------------------------------------------------------------ checking
    def verify(self) -> VerifyReport:
        """Re-read every stored file: it must exist, have the indexed size and the indexed SHA-256 of its
        data set; and every file must have a row."""
        report = VerifyReport()
        for inst in self.iter_all():
            report.checked += 1
            try:
                data = inst.path.read_bytes()
            except OSError:
                report.missing.append(inst.sop_uid)
                continue
            try:
                _, offset = split_part10(data)
                good = len(data) == inst.size and sha256(memoryview(data)[offset:]) == inst.sha256
            except StructureError:
                good = False
            if good:
                report.ok += 1
            else:
                report.corrupt.append(inst.sop_uid)
        report.orphans = self._orphans(settle=1.0)
        return report
