"""Automatic analysis of what arrives: wait for a study to go quiet, run the pipeline on it in a worker
process, store the results back as new series and tell whoever needs to know.

Life of a study (``studies.status``) and of one analysis (``analyses.status``)::

    study     received ──► analysing ──► ready     (analysis done)
                                     ├─► skipped   (analysis refused: no protocol fits, quality fail)
                                     └─► failed    (every attempt ended in an error)
    analysis  queued ──► running ──► done | refused | failed
                 ▲          │
                 └──────────┘  an error with attempts left: back to queued, after a back-off

* **Complete study.**  :meth:`AnalysisService.notify` (called from the network threads for every
  instance stored) only notes the time.  A study is complete when ``quiet_seconds`` have passed
  without a new instance; then an ``analyses`` row is queued.  On start the service also picks up
  studies left ``received`` without an analysis (timed from ``studies.last_received``), analyses left
  ``running`` by a server that died (queued again; that attempt counts) and the queued ones.
* **Worker processes.**  The pipeline runs in a :class:`~concurrent.futures.ProcessPoolExecutor`
  (``analysis_workers`` processes, spawn context), never in the server's process: a crash or a kill
  of a worker breaks only the pool, which is replaced, and the analysis is tried again.  The worker
  links the study's stored files (not the derived series) into a work folder under server-generated
  names, calls :func:`medimg.pipeline.analyze` and :func:`medimg.report.outputs.write_report` into
  ``STORE/reports/<analysis id>/`` and returns a small summary.
* **Results.**  ``seg.dcm`` and ``sr.dcm`` are checked to carry the study's Study Instance UID and
  stored with ``source="medimg:analysis"`` (derived series of the same study), then, when
  ``destination`` is set, sent to that peer (C-STORE, up to three tries; statuses recorded as events).
* **Refusals** (no protocol fits, no image, quality failure) are final: ``refused`` / ``skipped``.
  **Time limit**: an analysis still running ``analysis_timeout`` seconds after it was handed to a
  worker has that worker killed; it fails for good (a pipeline that hung once would hang again),
  and any other analysis of the same pool is queued again without counting the try.
  **Errors** (an exception, a missing stored file, a dead worker) are recorded on the analysis
  (``error``, one line) and retried after ``retry_seconds``, doubling, until ``max_attempts`` tries
  have been made; then ``failed``.
* **Urgent findings** are posted to ``webhook`` (:mod:`.notify`) without waiting for the answer.
* Every step is an event of the study (actor ``"system"``, or who asked).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update

from ..errors import InputError, MedimgError
from ..store import schema as t
from .notify import WebhookNotifier

if TYPE_CHECKING:
    from ..report.model import Report
    from ..store import StoreResult
    from .app import MedimgServer

__all__ = ["PRIORITY_RANK", "RESULT_SOURCE", "AnalysisService", "key_finding", "run_job"]

log = logging.getLogger("medimg.server.analysis")

#: The ``source`` of the instances an analysis stores back (their series are marked derived).
RESULT_SOURCE = "medimg:analysis"
PRIORITY_RANK = {"urgent": 0, "soon": 1, "routine": 2}
NO_PRIORITY_RANK = 9
MAX_BACKOFF = 3600.0
SEND_TRIES = 3
#: Outputs stored back and sent on, in this order (the SR refers to the SEG).
DICOM_OUTPUTS = (("seg", "seg.dcm"), ("sr", "sr.dcm"))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, MedimgError) and first:
        return first[:500]
    return (f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:500]


def _clip(text: str, n: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------------------- worker side
def key_finding(report: Report) -> str:
    """The worklist's one line about a report: its most important finding (the largest, then the
    most probable), or why nothing was analysed."""
    from ..pipeline import refusal_kind

    if report.status != "complete":
        what = "quality check failed" if refusal_kind(report) == "quality" else "not analysed"
        return _clip(f"{what}: {report.refusal or 'no reason given'}")
    if not report.findings:
        first = report.impression.split(". ")[0].strip().rstrip(".")
        return _clip(first or "no finding")

    def size(f: Any) -> float:
        m = f.measurement("long_axis_diameter")
        return float(m.value) if m is not None else -1.0

    f = max(report.findings, key=lambda f: (size(f), float(f.probability)))
    label = f.characterisation.get("call") or " ".join(
        x for x in (f.characterisation.get("type"), f.kind) if x)
    parts = [f"{f.id}: {label}"]
    long_axis = f.measurement("long_axis_diameter")
    if long_axis is not None:
        parts.append(f"{float(long_axis.value):.1f} {long_axis.unit} long axis")
    where = " ".join(x for x in (f.location.side, f.location.zone, f.location.structure) if x)
    if where:
        parts.append(where)
    text = ", ".join(parts) + f" (probability {float(f.probability):.2f})"
    if len(report.findings) > 1:
        text += f"; {len(report.findings) - 1} more finding(s)"
    return _clip(text)


def _link_all(files: list[str], folder: Path) -> None:
    """Hard-link (or, across file systems, symlink) ``files`` into ``folder`` as 00001.dcm, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(files, 1):
        if not os.path.isfile(src):
            raise InputError(src, "a stored file of this study is missing",
                             "run `medimg store verify` on the store")
        dst = folder / f"{i:05d}.dcm"
        try:
            os.link(src, dst)
        except OSError:
            os.symlink(src, dst)


def _analyse(job: Mapping[str, Any]) -> dict[str, Any]:
    import pydicom

    from ..monitoring import describe, finding_scores
    from ..pipeline import analyze, refusal_kind
    from ..report.load import save_masks
    from ..report.outputs import FILENAMES, write_report

    work = Path(job["work_dir"])
    out = Path(job["out_dir"])
    if work.exists():
        shutil.rmtree(work)
    study_dir = work / "study"
    _link_all(list(job["files"]), study_dir)
    prior_dirs = []
    for i, files in enumerate(job.get("priors") or [], 1):
        d = work / f"prior-{i}"
        _link_all(list(files), d)
        prior_dirs.append(d)
    evidence = out / "evidence"  # the folder holds one analysis: nothing left from an earlier try
    if evidence.is_dir():
        shutil.rmtree(evidence)
    report, image = analyze(study_dir, priors=prior_dirs or None, evidence_dir=evidence)
    out.mkdir(parents=True, exist_ok=True)
    written = write_report(report, image, out)
    save_masks(report, image, out)  # masks.npz: review/sign-off and meshes read the masks back (report/load.py)
    for fmt, name in FILENAMES.items():
        if fmt not in written and (out / name).is_file():
            (out / name).unlink()
    dicom = {}
    for fmt, _name in DICOM_OUTPUTS:
        if fmt in written:
            ds = pydicom.dcmread(written[fmt], stop_before_pixels=True)
            dicom[fmt] = {"study_uid": str(ds.StudyInstanceUID), "series_uid": str(ds.SeriesInstanceUID),
                          "sop_uid": str(ds.SOPInstanceUID)}
    triage = report.triage
    return {
        "status": report.status,
        "refusal": report.refusal or "",
        "refusal_kind": refusal_kind(report) or "",
        "protocol": "" if report.protocol == "none" else report.protocol,
        "priority": triage.priority if triage is not None else "",
        "priority_reason": triage.reason if triage is not None else "",
        "key_finding": key_finding(report),
        "quality": report.quality.verdict if report.quality is not None else "",
        "findings": len(report.findings),
        "files": sorted(p.name for p in written.values()),
        "dicom": dicom,
        "priors_given": len(prior_dirs),
        "inputs": describe(report, image),  # input features and AI scores for drift monitoring
        "scores": finding_scores(report),  # (medimg.monitoring; recorded by dashboard.record_inputs)
    }


def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Analyse one study (in a worker process).  ``job``: ``files`` (stored files of the study),
    ``priors`` (lists of files of prior studies), ``work_dir`` (scratch, may be removed) and
    ``out_dir`` (the outputs).  Returns the summary, or ``{"error": one line, "traceback": ...}``."""
    try:
        if job.get("pid_file"):  # the scheduler stops this process when the analysis runs too long
            Path(job["pid_file"]).write_text(str(os.getpid()))
        return _analyse(job)
    except Exception as exc:
        return {"error": _one_line(exc), "traceback": traceback.format_exc()[-4000:]}


def _worker_init() -> None:
    # Ctrl-C in a terminal reaches the whole process group; the server decides when workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------- service
@dataclass
class _Run:
    analysis_id: int
    study_uid: str
    attempt: int
    work_dir: Path
    out_dir: Path
    future: Future[dict[str, Any]] | None = None
    executor: ProcessPoolExecutor | None = None
    started: float = 0.0  # time.monotonic() when it was handed to the pool
    timed_out: bool = False  # its worker was stopped for running past analysis_timeout

    @property
    def pid_file(self) -> Path:
        return self.work_dir.with_name(self.work_dir.name + ".pid")


@dataclass
class _Arrivals:
    last: float  # time.monotonic() of the last instance
    sources: set[str] = field(default_factory=set)


class AnalysisService:
    """The automatic analysis of one :class:`~medimg.server.app.MedimgServer` (module docstring)."""

    def __init__(self, server: MedimgServer) -> None:
        cfg = server.config
        self.server = server
        self.config = cfg
        self.store = server.store
        self.quiet = max(0.0, float(cfg.quiet_seconds))
        self.workers = max(1, int(cfg.analysis_workers))
        self.max_attempts = max(1, int(cfg.max_attempts))
        self.retry_seconds = max(0.0, float(getattr(cfg, "retry_seconds", 30.0)))
        self.timeout = max(0.0, float(getattr(cfg, "analysis_timeout", 0.0)))  # 0: no limit
        # pools broken by stopping a late worker (weak: a later pool never inherits the mark)
        self._timed_out_pools: weakref.WeakSet[ProcessPoolExecutor] = weakref.WeakSet()
        self.reports = self.store.root / "reports"
        self.work = self.store.root / "work"
        self.notifier = WebhookNotifier(cfg.webhook, self.store.log_event) if cfg.webhook else None
        self._db = self.store.engine.execution_options(immediate=True)
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._arrivals: dict[str, _Arrivals] = {}
        self._rerun: set[str] = set()
        self._running: dict[int, _Run] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._poke = True  # look for queued analyses at the next tick
        self._next_poll = 0.0
        self._thread: threading.Thread | None = None
        self._executor: ProcessPoolExecutor | None = None
        self._deliveries: list[threading.Thread] = []
        self._tick = min(0.5, max(0.05, self.quiet / 4))

    # ------------------------------------------------------------------------------ public
    def notify(self, study_uid: str, source: str) -> None:
        """An instance of ``study_uid`` was stored (cheap; called from network threads)."""
        if source.startswith("medimg:") or self._stopping.is_set():
            return
        now = time.monotonic()
        with self._lock:
            entry = self._arrivals.get(study_uid)
            if entry is None:
                self._arrivals[study_uid] = _Arrivals(now, {source} if source else set())
            else:
                entry.last = now
                if source and len(entry.sources) < 16:
                    entry.sources.add(source)

    def start(self) -> None:
        for d in (self.reports, self.work):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in self.work.iterdir():  # scratch (folders, pid files) of analyses of an earlier run
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        self._recover()
        self._executor = self._new_executor()
        if self.notifier is not None:
            self.notifier.start()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="medimg-analysis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop: running analyses are interrupted and queued again (the try does not count)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        with self._lock:
            interrupted = list(self._running.values())
            self._running.clear()
        executor, self._executor = self._executor, None
        if executor is not None:
            procs = list((getattr(executor, "_processes", None) or {}).values())
            for p in procs:
                p.terminate()
            executor.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.join(10)
        for run in interrupted:
            shutil.rmtree(run.work_dir, ignore_errors=True)
            run.pid_file.unlink(missing_ok=True)
            self._requeue(run, "the server stopped")
        deadline = time.monotonic() + 30
        for th in self._deliveries:
            th.join(max(0.0, deadline - time.monotonic()))
        if self.notifier is not None:
            self.notifier.stop()

    def request(self, study_uid: str, actor: str = "api", reason: str = "asked again") -> tuple[int, bool]:
        """Queue an analysis of a stored study; returns ``(analysis id, True)``, or the id of the
        analysis already queued or running and ``False``.  Raises ``KeyError`` for an unknown study."""
        return self._queue(study_uid, actor, reason)

    def worker_pids(self) -> list[int]:
        """The process ids of the live worker processes."""
        executor = self._executor
        procs = (getattr(executor, "_processes", None) or {}) if executor is not None else {}
        return sorted(p.pid for p in list(procs.values()) if p.pid is not None and p.is_alive())

    def status(self) -> dict[str, Any]:
        """For the health endpoint: workers, running analyses, studies waiting for quiet, queued."""
        with self._lock:
            running = sorted(self._running)
            waiting = len(self._arrivals)
        with self.store.engine.connect() as conn:
            queued = conn.execute(select(func.count()).select_from(t.analyses)
                                  .where(t.analyses.c.status == "queued")).scalar_one()
        return {"enabled": True, "workers": self.workers, "running": running, "queued": int(queued),
                "waiting_for_quiet": waiting, "quiet_seconds": self.quiet}

    # ------------------------------------------------------------------------------ loop
    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._tick)
            self._wake.clear()
            if self._stopping.is_set():
                break
            for step in (self._stop_late, self._collect, self._complete_quiet_studies, self._dispatch):
                try:
                    step()
                except Exception:  # a database hiccup must not end automatic analysis
                    log.exception("analysis service: %s failed", step.__name__)

    def _event(self, action: str, study_uid: str | None, detail: Mapping[str, Any],
               actor: str = "system", record: bool = True) -> None:
        """Record an event in the store (unless already written with the change it records) and
        publish it to live clients."""
        if record:
            try:
                self.store.log_event(actor, action, study_uid, detail)
            except Exception:
                log.exception("cannot record event %s of %s", action, study_uid)
        hub = getattr(self.server, "hub", None)  # live updates (server/live.py)
        if hub is not None:
            hub.study_event(self.store, study_uid, action, actor, detail)

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init)

    def _replace_executor(self, broken: ProcessPoolExecutor | None) -> None:
        current = self._executor
        if broken is None or current is None or broken is not current or self._stopping.is_set():
            return
        log.warning("analysis worker pool broken (a worker died); starting a new one")
        current.shutdown(wait=False, cancel_futures=False)
        self._executor = self._new_executor()

    # ------------------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        a, s = t.analyses, t.studies
        now = time.time()
        with self._db.begin() as conn:
            left: Any = conn.execute(select(a.c.id, a.c.attempts, s.c.study_uid).join(s, a.c.study_pk == s.c.id)
                                .where(a.c.status == "running")).all()
            for aid, attempts, uid in left:
                if attempts >= self.max_attempts:
                    error = (f"the server stopped during attempt {attempts} of {self.max_attempts}; "
                             "no attempt is left")
                    conn.execute(update(a).where(a.c.id == aid).values(status="failed", error=error, finished=now))
                    conn.execute(update(s).where(s.c.study_uid == uid).values(status="failed"))
                else:
                    conn.execute(update(a).where(a.c.id == aid).values(status="queued", not_before=0.0))
            has_analysis = select(a.c.id).where(a.c.study_pk == s.c.id).exists()
            waiting: Any = conn.execute(select(s.c.study_uid, s.c.last_received)
                                   .where(s.c.status == "received", ~has_analysis)).all()
        for aid, attempts, uid in left:
            self._event("analysis_interrupted", uid, {"analysis_id": aid, "attempt": attempts,
                                                      "reason": "the server stopped during the analysis"})
        mono = time.monotonic()
        with self._lock:
            for uid, last_received in waiting:
                since = max(0.0, now - float(last_received))
                self._arrivals.setdefault(uid, _Arrivals(mono - since, {"store"}))
        self._poke = True

    # ------------------------------------------------------------------------------ completion
    def _complete_quiet_studies(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [(uid, e) for uid, e in self._arrivals.items() if now - e.last >= self.quiet]
            for uid, _e in due:
                del self._arrivals[uid]
            running_studies = {r.study_uid for r in self._running.values()}
        for uid, entry in due:
            detail: dict[str, Any] = {"sources": sorted(entry.sources), "quiet_seconds": self.quiet}
            if uid in running_studies:
                self._rerun.add(uid)
                detail["note"] = "an analysis is running; the study is analysed again after it"
                self._event("study_complete", uid, detail)
                continue
            self._event("study_complete", uid, detail)
            try:
                self._queue(uid, "system", "the study is complete")
            except KeyError:
                log.warning("study %s is gone from the store; not analysed", uid)

    def _queue(self, study_uid: str, actor: str, reason: str) -> tuple[int, bool]:
        a, s = t.analyses, t.studies
        with self._queue_lock, self._db.begin() as conn:
            pk = conn.execute(select(s.c.id).where(s.c.study_uid == study_uid)).scalar()
            if pk is None:
                raise KeyError(study_uid)
            active = conn.execute(select(a.c.id).where(a.c.study_pk == pk, a.c.status.in_(("queued", "running")))
                                  .order_by(a.c.id.desc()).limit(1)).scalar()
            if active is not None:
                return int(active), False
            key = conn.execute(insert(a).values(study_pk=pk, status="queued", attempts=0, created=time.time(),
                                                not_before=0.0)).inserted_primary_key
            assert key is not None
            aid = int(key[0])
            conn.execute(update(s).where(s.c.id == pk).values(status="analysing"))
        self._event("analysis_queued", study_uid, {"analysis_id": aid, "reason": reason}, actor=actor)
        self._poke = True
        self._wake.set()
        return aid, True

    def _after_terminal(self, study_uid: str) -> None:
        if study_uid in self._rerun:
            self._rerun.discard(study_uid)
            with contextlib.suppress(KeyError):
                self._queue(study_uid, "system", "new instances arrived during the analysis")

    # ------------------------------------------------------------------------------ dispatch
    def _dispatch(self) -> None:
        now = time.time()
        with self._lock:
            free = self.workers - len(self._running)
            busy = {r.study_uid for r in self._running.values()}
        if free <= 0 or (not self._poke and now < self._next_poll):
            return
        self._poke = False
        a, s = t.analyses, t.studies
        with self.store.engine.connect() as conn:
            rows: Any = conn.execute(select(a.c.id, a.c.attempts, s.c.study_uid).join(s, a.c.study_pk == s.c.id)
                                .where(a.c.status == "queued", a.c.not_before <= now)
                                .order_by(a.c.id).limit(free + len(busy))).all()
            later = conn.execute(select(func.min(a.c.not_before))
                                 .where(a.c.status == "queued", a.c.not_before > now)).scalar()
        self._next_poll = min(now + 2.0, float(later)) if later is not None else now + 2.0
        for aid, attempts, uid in rows:
            if free <= 0 or self._stopping.is_set():
                break
            if uid in busy:
                continue
            if self._start(int(aid), uid, int(attempts) + 1):
                free -= 1
                busy.add(uid)

    def _start(self, aid: int, study_uid: str, attempt: int) -> bool:
        a, s = t.analyses, t.studies
        with self._db.begin() as conn:
            taken = conn.execute(update(a).where(a.c.id == aid, a.c.status == "queued")
                                 .values(status="running", attempts=attempt, started=time.time(),
                                         finished=None)).rowcount
            if taken != 1:
                return False
            conn.execute(update(s).where(s.c.study_uid == study_uid).values(status="analysing"))
        self._event("analysis_started", study_uid, {"analysis_id": aid, "attempt": attempt,
                                                    "max_attempts": self.max_attempts})
        run = _Run(aid, study_uid, attempt, self.work / f"{aid}-{attempt}", self.reports / str(aid))
        try:
            job = {"analysis_id": aid, "files": self._study_files(study_uid),
                   "priors": self._prior_files(study_uid), "work_dir": str(run.work_dir),
                   "out_dir": str(run.out_dir), "pid_file": str(run.pid_file)}
            run.pid_file.unlink(missing_ok=True)
            run.started = time.monotonic()
            run.future, run.executor = self._submit(job)
        except Exception as exc:
            self._attempt_failed(run, _one_line(exc))
            return True
        with self._lock:
            self._running[aid] = run
        run.future.add_done_callback(lambda _f: self._wake.set())
        return True

    def _submit(self, job: dict[str, Any]) -> tuple[Future[dict[str, Any]], ProcessPoolExecutor]:
        for _ in range(2):
            executor = self._executor
            if executor is None:
                raise RuntimeError("the analysis service is stopping")
            try:
                return executor.submit(run_job, job), executor
            except BrokenProcessPool:
                self._replace_executor(executor)
        raise RuntimeError("the analysis worker pool cannot be started")

    def _study_files(self, study_uid: str) -> list[str]:
        """The stored files of the study's acquired (not derived) series, in series order."""
        i, se, s = t.instances, t.series, t.studies
        with self.store.engine.connect() as conn:
            rel: Any = conn.execute(select(i.c.path).join(se, i.c.series_pk == se.c.id).join(s, se.c.study_pk == s.c.id)
                               .where(s.c.study_uid == study_uid, se.c.derived.is_(False))
                               .order_by(se.c.series_number, se.c.id, i.c.instance_number, i.c.id)).scalars().all()
        return [str(self.store.root / r) for r in rel]

    def _prior_files(self, study_uid: str, most: int = 2) -> list[list[str]]:
        """Files of the patient's earlier studies in the store (after fetching them from
        ``priors_from`` when it is set): the ``most`` latest before this study's date.  Studies fetched
        as priors are not analysed themselves."""
        s = t.studies
        with self.store.engine.connect() as conn:
            row = conn.execute(select(s.c.patient_id, s.c.study_date).where(s.c.study_uid == study_uid)).first()
        if row is None or not row.patient_id or not row.study_date:
            return []
        if self.config.priors_from:
            try:
                from .dicom_node import fetch_priors

                fetched = fetch_priors(self.server, row.patient_id, self.config.priors_from)
                with self._lock:  # fetched to compare with, not to be analysed themselves
                    for uid in fetched:
                        self._arrivals.pop(uid, None)
                self._event("priors_fetched", study_uid, {"peer": self.config.priors_from,
                                                          "studies": list(fetched)})
            except Exception as exc:  # analyse without priors rather than not at all
                self._event("priors_failed", study_uid, {"peer": self.config.priors_from,
                                                         "error": _one_line(exc)})
        with self.store.engine.connect() as conn:
            earlier: Any = conn.execute(select(s.c.study_uid).where(
                s.c.patient_id == row.patient_id, s.c.study_uid != study_uid, s.c.study_date != "",
                s.c.study_date < row.study_date).order_by(s.c.study_date.desc()).limit(most)).scalars().all()
        return [files for files in (self._study_files(uid) for uid in earlier) if files]

    # ------------------------------------------------------------------------------ results
    def _stop_late(self) -> None:
        """Kill the worker of every analysis running longer than ``analysis_timeout`` seconds (a hung
        or runaway pipeline would hold its slot for ever).  The pool breaks and is replaced; the
        analysis fails for good (:meth:`_collect`), others in the same pool are queued again."""
        if self.timeout <= 0:
            return
        now = time.monotonic()
        with self._lock:
            late = [r for r in self._running.values() if not r.timed_out and r.future is not None
                    and not r.future.done() and now - r.started > self.timeout]
        for run in late:
            try:
                pid = int(run.pid_file.read_text())
            except (OSError, ValueError):
                continue  # not in a worker yet
            run.timed_out = True
            if run.executor is not None:
                self._timed_out_pools.add(run.executor)
            log.warning("analysis %d of %s ran past its time limit (%g s): stopping worker %d",
                        run.analysis_id, run.study_uid, self.timeout, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _collect(self) -> None:
        with self._lock:
            done = [r for r in self._running.values() if r.future is not None and r.future.done()]
            for r in done:
                del self._running[r.analysis_id]
        for run in done:
            self._poke = True
            shutil.rmtree(run.work_dir, ignore_errors=True)
            run.pid_file.unlink(missing_ok=True)
            assert run.future is not None
            try:
                result = run.future.result()
            except BrokenProcessPool:
                self._replace_executor(run.executor)
                if run.timed_out:
                    result = {"error": f"the analysis ran longer than its time limit ({self.timeout:g} s, "
                                       "analysis_timeout): its worker was stopped; the server kept running",
                              "final": True}
                elif run.executor is not None and run.executor in self._timed_out_pools:
                    self._requeue(run, "another analysis in the same worker pool was stopped for its time limit")
                    continue
                else:
                    result = {"error": "the worker process running the analysis ended abruptly (killed or "
                                       "crashed); the server kept running"}
            except Exception as exc:
                result = {"error": _one_line(exc)}
            try:
                if "error" in result:
                    self._attempt_failed(run, result["error"], result.get("traceback", ""),
                                         final=bool(result.get("final")))
                else:
                    self._finish(run, result)
            except Exception as exc:
                log.exception("analysis %d of %s: results could not be recorded", run.analysis_id, run.study_uid)
                self._attempt_failed(run, _one_line(exc))

    def _requeue(self, run: _Run, reason: str) -> None:
        """Queue ``run`` again without counting the try (it was interrupted, not at fault)."""
        with self._db.begin() as conn:
            conn.execute(update(t.analyses).where(t.analyses.c.id == run.analysis_id,
                                                  t.analyses.c.status == "running")
                         .values(status="queued", attempts=run.attempt - 1, not_before=0.0))
        self._event("analysis_interrupted", run.study_uid, {"analysis_id": run.analysis_id, "reason": reason})

    def _attempt_failed(self, run: _Run, error: str, trace: str = "", final: bool = False) -> None:
        a, s = t.analyses, t.studies
        now = time.time()
        final = final or run.attempt >= self.max_attempts
        log.warning("analysis %d of %s, attempt %d of %d: %s", run.analysis_id, run.study_uid, run.attempt,
                    self.max_attempts, error)
        if trace:
            log.debug("%s", trace)
        failed = {"analysis_id": run.analysis_id, "attempts": run.attempt, "error": error}
        with self._db.begin() as conn:
            if final:
                conn.execute(update(a).where(a.c.id == run.analysis_id)
                             .values(status="failed", error=error, finished=now))
                conn.execute(update(s).where(s.c.study_uid == run.study_uid).values(status="failed"))
                # in the same transaction: whoever sees the study failed also sees why
                self.store.log_event("system", "analysis_failed", run.study_uid, failed, conn=conn)
            else:
                delay = min(MAX_BACKOFF, self.retry_seconds * 2 ** (run.attempt - 1))
                conn.execute(update(a).where(a.c.id == run.analysis_id)
                             .values(status="queued", error=error, not_before=now + delay))
        if final:
            self._event("analysis_failed", run.study_uid, failed, record=False)
            self._after_terminal(run.study_uid)
        else:
            self._event("analysis_error", run.study_uid,
                        {"analysis_id": run.analysis_id, "attempt": run.attempt, "error": error,
                         "retry_in_seconds": round(delay, 3)})
            self._rerun.discard(run.study_uid)  # the next try sees every instance stored by then
            self._poke = True

    def _finish(self, run: _Run, result: dict[str, Any]) -> None:
        complete = result["status"] == "complete"
        stored: list[StoreResult] = []
        if complete:
            for fmt, name in DICOM_OUTPUTS:
                info = result["dicom"].get(fmt)
                if not info:
                    continue
                if info["study_uid"] != run.study_uid:
                    msg = (f"{name} carries Study Instance UID {info['study_uid']}, not the analysed "
                           f"study's {run.study_uid}; it was not stored")
                    raise RuntimeError(msg)
                res = self.store.put_path(run.out_dir / name, source=RESULT_SOURCE)
                stored.append(res)
                self._event("result_stored", run.study_uid,
                            {"analysis_id": run.analysis_id, "kind": fmt, "sop_instance_uid": res.sop_instance_uid,
                             "series_instance_uid": res.series_uid, "outcome": res.outcome})
        status = "done" if complete else "refused"
        priority = result.get("priority") or ""
        a, s = t.analyses, t.studies
        detail = {"analysis_id": run.analysis_id, "attempt": run.attempt, "protocol": result.get("protocol"),
                  "priority": priority, "key_finding": result.get("key_finding"),
                  "quality": result.get("quality"), "outputs": result.get("files", []),
                  "priors_given": result.get("priors_given", 0)}
        if not complete:
            detail.update(refusal=result.get("refusal_kind"), reason=_clip(result.get("refusal", ""), 500))
        action = "analysis_done" if complete else "analysis_refused"
        with self._db.begin() as conn:
            conn.execute(update(a).where(a.c.id == run.analysis_id).values(
                status=status, protocol=result.get("protocol", "")[:64], priority=priority[:16],
                priority_rank=PRIORITY_RANK.get(priority, NO_PRIORITY_RANK),
                key_finding=result.get("key_finding", ""), quality=(result.get("quality") or "")[:16],
                report_dir=f"reports/{run.analysis_id}", error="", finished=time.time()))
            conn.execute(update(s).where(s.c.study_uid == run.study_uid)
                         .values(status="ready" if complete else "skipped"))
            # in the same transaction: whoever sees the study finished also sees why
            self.store.log_event("system", action, run.study_uid, detail, conn=conn)
        self._event(action, run.study_uid, detail, record=False)
        from .dashboard import record_inputs

        record_inputs(self._db, run.analysis_id, result)  # for the quality dashboard; never raises
        if stored and self.config.destination:
            th = threading.Thread(target=self._send_results, args=(run, stored), name="medimg-deliver",
                                  daemon=True)
            self._deliveries = [d for d in self._deliveries if d.is_alive()] + [th]
            th.start()
        if complete and priority == "urgent" and self.notifier is not None:
            self.notifier.post(self._urgent_message(run, result), run.study_uid)
        self._after_terminal(run.study_uid)

    def _urgent_message(self, run: _Run, result: dict[str, Any]) -> dict[str, Any]:
        s = t.studies
        with self.store.engine.connect() as conn:
            row = conn.execute(select(s.c.patient_id, s.c.accession_number, s.c.study_date,
                                      s.c.study_description).where(s.c.study_uid == run.study_uid)).first()
        path = f"/api/studies/{run.study_uid}/report.html"
        return {
            "event": "urgent_finding",
            "server": self.config.aet,
            "study_uid": run.study_uid,
            "patient_id": row.patient_id if row else "",
            "accession_number": row.accession_number if row else "",
            "study_date": row.study_date if row else "",
            "study_description": row.study_description if row else "",
            "analysis_id": run.analysis_id,
            "protocol": result.get("protocol", ""),
            "priority": result.get("priority", ""),
            "reason": result.get("priority_reason", ""),
            "key_finding": result.get("key_finding", ""),
            "report": path,
            "report_url": f"http://{self.config.host}:{self.config.http_port}{path}",
            "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }

    def _send_results(self, run: _Run, stored: list[StoreResult]) -> None:
        """C-STORE the stored results to ``destination`` (up to SEND_TRIES tries for those that fail)."""
        peer = self.config.destination
        pending = {r.sop_instance_uid: r.path for r in stored if r.path is not None}
        for attempt in range(1, SEND_TRIES + 1):
            try:
                from .dicom_node import send_instances

                answers = send_instances(self.server, peer, [p for p in pending.values() if p is not None])
            except Exception as exc:
                error = _one_line(exc)
                self._event("results_send_failed", run.study_uid, {"analysis_id": run.analysis_id, "peer": peer,
                                                                   "attempt": attempt, "error": error})
            else:
                ok = {uid for uid, st in answers if st == 0 or (st & 0xF000) == 0xB000}
                self._event("results_sent", run.study_uid, {
                    "analysis_id": run.analysis_id, "peer": peer, "attempt": attempt,
                    "results": [{"sop_instance_uid": uid, "status": f"0x{st:04X}"} for uid, st in answers]})
                pending = {uid: p for uid, p in pending.items() if uid not in ok}
            if not pending or self._stopping.wait(2.0 * attempt):
                return
