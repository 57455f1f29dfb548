"""Group commit of index rows: the hot path of :meth:`medimg.store.Store.put_dataset`.

Every sender thread (one per DICOM association, one per STOW-RS request) writes and fsyncs its own
file, then hands the index row to :meth:`IndexWriter.commit`.  The first thread to arrive while no
commit is running becomes the *leader*: it takes every row waiting at that moment (its own and those
of the threads that arrived while the previous commit ran), fsyncs their folders once each, writes the
rows in one transaction, commits, and wakes the others.  A thread whose row was committed by another
leader returns as soon as it is woken.  With one sender this is one transaction per instance, as
before; with N concurrent senders the commit (the fsync of the write-ahead log) is shared.

Nothing is acknowledged early: :meth:`IndexWriter.commit` returns only after the transaction holding
the row has committed (SQLite ``synchronous=FULL``; PostgreSQL's durable commit), and the rows'
folders were fsynced before it began.

The statements are plain SQL on one DB-API connection kept for the writer (SQLAlchemy Core costs
about 0.1 ms per statement, more than the statements themselves); the same text runs on SQLite and
PostgreSQL (``INSERT ... ON CONFLICT DO NOTHING RETURNING``).  Everything else in the store keeps
using SQLAlchemy.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from .part10 import Header

__all__ = ["IndexWriter", "PendingRow"]


@dataclass
class PendingRow:
    """One instance whose file is written and fsynced, waiting for its index row."""

    header: Header
    transfer_syntax: str
    rel: str  # path of the file, relative to the store root
    size: int
    digest: str
    source: str
    # set by the writer
    outcome: str = ""  # "stored" | "replaced" | "raced" (the SOP Instance UID was stored meanwhile)
    old: str | None = None  # file of the replaced row
    existing: tuple[int, str, str] | None = None  # (id, sha256, path) of the row that won a race
    error: BaseException | None = None
    done: bool = False


_SELECT_INSTANCE = 'SELECT "id", "sha256", "path" FROM "instances" WHERE "sop_uid" = ?'
_SELECT_STUDY = 'SELECT "id" FROM "studies" WHERE "study_uid" = ?'
_SELECT_SERIES = 'SELECT "id" FROM "series" WHERE "series_uid" = ?'
_INSERT_STUDY = (
    'INSERT INTO "studies" ("study_uid", "patient_id", "patient_name", "patient_birth_date", '
    '"patient_sex", "study_date", "study_time", "accession_number", "study_id", "study_description", '
    '"referring_physician", "first_received", "last_received", "status") '
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("study_uid") DO NOTHING RETURNING "id"'
)
_INSERT_SERIES = (
    'INSERT INTO "series" ("series_uid", "study_pk", "modality", "series_number", "series_description", '
    '"body_part", "series_date", "series_time", "derived", "first_received") '
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("series_uid") DO NOTHING RETURNING "id"'
)
_INSERT_INSTANCE = (
    'INSERT INTO "instances" ("sop_uid", "series_pk", "sop_class_uid", "instance_number", '
    '"transfer_syntax", "rows", "columns", "frames", "path", "size", "sha256", "received", "source") '
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("sop_uid") DO NOTHING RETURNING "id"'
)
_DELETE_INSTANCE = 'DELETE FROM "instances" WHERE "id" = ?'
_TOUCH_STUDY = 'UPDATE "studies" SET "last_received" = ? WHERE "id" = ? AND "last_received" < ?'
_INSERT_EVENT = 'INSERT INTO "events" ("at", "actor", "action", "study_pk", "detail") VALUES (?, ?, ?, ?, ?)'


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexWriter:
    """Writes index rows for one :class:`~medimg.store.Store`, many threads' rows per transaction.

    ``root`` is the store folder (rows' paths are relative to it); ``replace`` is True under the
    conflict policy 'replace'; ``fsync`` False skips the folder fsyncs (tests of speed only)."""

    def __init__(self, engine: Engine, root: str | os.PathLike[str], *, replace: bool, fsync: bool = True,
                 max_batch: int = 64) -> None:
        self.engine = engine
        self.root = os.fspath(root)
        self.replace = replace
        self.fsync = fsync
        self.max_batch = max_batch
        self._sqlite = engine.dialect.name == "sqlite"
        self._sql = self._dialect_sql if not self._sqlite else (lambda s: s)
        self._cv = threading.Condition()
        self._queue: list[PendingRow] = []
        self._busy = False
        self._conn: Any = None  # the writer's DB-API connection, opened on first use
        self._readers: list[Any] = []  # idle DB-API connections for existence checks
        self._readers_lock = threading.Lock()
        self._pk_cache: dict[str, int] = {}  # "study:UID" / "series:UID" -> row id
        self._touched: dict[str, float] = {}  # study UID -> when last_received was last written
        self.batches = 0  # transactions committed
        self.rows = 0  # instance rows written by them (rows / batches: how much group commit shared)

    @staticmethod
    def _dialect_sql(sql: str) -> str:
        return sql.replace("?", "%s")  # psycopg's placeholders; no literal '?' in these statements

    # ------------------------------------------------------------------------------ reading
    def existing(self, sop_uid: str) -> tuple[int, str, str] | None:
        """(id, sha256, path) of the stored instance ``sop_uid``, or None."""
        with self._readers_lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(self._sql(_SELECT_INSTANCE), (sop_uid,))
            row = cur.fetchone()
            cur.close()
            conn.rollback()  # PostgreSQL: end the implicit read transaction; SQLite: nothing open
        except BaseException:
            conn.close()
            raise
        with self._readers_lock:
            if len(self._readers) < 8:
                self._readers.append(conn)
                conn = None
        if conn is not None:
            conn.close()
        return None if row is None else (row[0], row[1], row[2])

    # ------------------------------------------------------------------------------ writing
    def commit(self, row: PendingRow) -> PendingRow:
        """Index ``row`` durably (alone or with other threads' rows); returns it with ``outcome`` set.

        Raises the database's exception if its transaction failed (the caller removes its file)."""
        with self._cv:
            self._queue.append(row)
        while True:
            with self._cv:
                while self._busy and not row.done:
                    self._cv.wait()
                if row.done:
                    break
                self._busy = True
                batch = self._queue[:self.max_batch]
                del self._queue[:self.max_batch]
            try:
                self._run(batch)
            finally:
                with self._cv:
                    for r in batch:
                        if not r.outcome and r.error is None:
                            r.error = RuntimeError("the index transaction was interrupted")
                        r.done = True
                    self._busy = False
                    self._cv.notify_all()
        if row.error is not None:
            raise row.error
        return row

    def _run(self, batch: list[PendingRow]) -> None:
        if self.fsync:
            try:
                for folder in sorted({os.path.dirname(r.rel) for r in batch}):
                    fsync_dir(os.path.join(self.root, folder))
            except OSError as exc:
                for r in batch:
                    r.error = exc
                return
        try:
            self._transaction(batch)
            return
        except Exception as exc:
            self._abandon()
            if len(batch) == 1:
                batch[0].error = exc
                return
        for r in batch:  # the batch failed as a whole: each row alone, so one bad row fails alone
            try:
                self._transaction([r])
            except Exception as exc:
                self._abandon()
                r.error = exc

    def _abandon(self) -> None:
        """After a failed transaction: roll back, forget cached row ids (a cached study or series
        may have been deleted by another process)."""
        self._pk_cache.clear()
        if self._conn is not None:
            try:
                self._conn.rollback()
            except Exception:
                self._conn.close()
                self._conn = None

    def _transaction(self, batch: list[PendingRow]) -> None:
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        conn = self._conn
        cur = conn.cursor()
        sql = self._sql
        touched: dict[str, float] = {}
        now = time.time()
        if self._sqlite:
            cur.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock later
        for r in batch:
            r.outcome, r.old, r.existing = "", None, None
        try:
            for r in batch:
                self._one(cur, sql, r, now, touched)
            conn.commit()
        except BaseException:
            for r in batch:
                r.outcome, r.old, r.existing = "", None, None
            raise
        finally:
            cur.close()
        self._touched.update(touched)
        if len(self._touched) > 20000:
            self._touched.clear()
        if len(self._pk_cache) > 20000:
            self._pk_cache.clear()
        self.batches += 1
        self.rows += sum(r.outcome != "raced" for r in batch)

    def _one(self, cur: Any, sql: Any, r: PendingRow, now: float, touched: dict[str, float]) -> None:
        h, v = r.header, r.header.values
        cache = self._pk_cache
        cur.execute(sql(_SELECT_INSTANCE), (h.sop_instance_uid,))
        found = cur.fetchone()
        if found is not None:
            if found[1] == r.digest or not self.replace:
                r.outcome, r.existing = "raced", (found[0], found[1], found[2])
                return
            r.old = found[2]
            cur.execute(sql(_DELETE_INSTANCE), (found[0],))

        study_pk = cache.get("study:" + h.study_uid)
        if study_pk is None:
            cur.execute(sql(_INSERT_STUDY), (
                h.study_uid, v["PatientID"][:64], v["PatientName"][:324], v["PatientBirthDate"][:8],
                v["PatientSex"][:16], v["StudyDate"][:8], v["StudyTime"][:16], v["AccessionNumber"][:16],
                v["StudyID"][:16], v["StudyDescription"][:64], v["ReferringPhysicianName"][:324],
                now, now, "received"))
            got = cur.fetchall()
            if got:
                study_pk = got[0][0]
                touched[h.study_uid] = now
            else:
                cur.execute(sql(_SELECT_STUDY), (h.study_uid,))
                study_pk = cur.fetchone()[0]
        if study_pk is not None and h.study_uid not in touched and \
                now - self._touched.get(h.study_uid, 0.0) > 1.0:
            # last_received drives the analysis' quiet period; once a second per study is enough
            cur.execute(sql(_TOUCH_STUDY), (now, study_pk, now))
            touched[h.study_uid] = now
        cache["study:" + h.study_uid] = study_pk

        series_pk = cache.get("series:" + h.series_uid)
        if series_pk is None:
            cur.execute(sql(_INSERT_SERIES), (
                h.series_uid, study_pk, v["Modality"][:16], v["SeriesNumber"], v["SeriesDescription"][:64],
                v["BodyPartExamined"][:16], v["SeriesDate"][:8], v["SeriesTime"][:16],
                r.source.startswith("medimg:"), now))
            got = cur.fetchall()
            if got:
                series_pk = got[0][0]
            else:
                cur.execute(sql(_SELECT_SERIES), (h.series_uid,))
                series_pk = cur.fetchone()[0]
            cache["series:" + h.series_uid] = series_pk

        cur.execute(sql(_INSERT_INSTANCE), (
            h.sop_instance_uid, series_pk, h.sop_class_uid, v["InstanceNumber"], r.transfer_syntax,
            v["Rows"], v["Columns"], v["NumberOfFrames"], r.rel, r.size, r.digest, now, r.source[:96]))
        if not cur.fetchall():  # PostgreSQL: another process committed the same instance meanwhile
            cur.execute(sql(_SELECT_INSTANCE), (h.sop_instance_uid,))
            found = cur.fetchone()
            # r.old stays: if its row was deleted above, its file goes too
            r.outcome, r.existing = "raced", (found[0], found[1], found[2])
            return
        if r.old:
            cur.execute(sql(_INSERT_EVENT), (
                now, r.source[:128] or "unknown", "replaced", study_pk,
                json.dumps({"sop_instance_uid": h.sop_instance_uid, "sha256": r.digest})))
        r.outcome = "replaced" if r.old else "stored"

    def close(self) -> None:
        with self._cv:
            while self._busy:
                self._cv.wait()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
