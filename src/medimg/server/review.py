"""Review and sign-off of an analysis by a radiologist, the study's history, and evidence images.

==============================================  =================  ==========================================
``GET   /api/studies/{uid}/review``             signed in          the review: report, findings with their
                                                                   decisions, impression, state, history
``POST  /api/studies/{uid}/findings/{id}/decision``  radiologist   ``{"action": "accept"|"reject", "comment"?}``
``PATCH /api/studies/{uid}/findings/{id}``      radiologist        edit: ``bbox_patient``, ``center_patient``,
                                                                   ``diameter_mm``, ``short_axis_mm``,
                                                                   ``characterisation``, ``comment``
``POST  /api/studies/{uid}/findings``           radiologist        add a finding the AI missed (201)
``PUT   /api/studies/{uid}/impression``         radiologist        ``{"text"}``
``POST  /api/studies/{uid}/sign``               radiologist        regenerate every output, signed (below)
``GET   /api/studies/{uid}/history``            signed in          every event of the study: who, what, when
``GET   /api/studies/{uid}/evidence/{name}``    signed in          an evidence image the report lists
==============================================  =================  ==========================================

A review belongs to one analysis: the study's latest finished (``done``) analysis.  Decisions are kept
in ``reviews`` / ``review_findings`` (current state) and every action is also an event of the study
(``store.log_event``), published live (:mod:`.live`).  Once signed the review is closed: any change is
409.  Signing needs a decision on every AI finding (409 names the first without one).

**Sign** (:func:`sign`): the AI's outputs are kept in ``reports/<analysis>/ai/`` (once); the AI report
is read back (report.json + masks.npz), the analysed series is read from the store, the review is
applied (:func:`medimg.report.signoff.apply_review`) and report.json, report.html, report.pdf, sr.dcm
(verified, a new series of the study, pointing into the analysis's SEG) and fhir.json (final) are
written together and replace the analysis's files, so ``/api/studies/{uid}/report*`` serve the signed
version.  The SR is stored (``source="medimg:review"``) and, when ``destination`` is configured, sent
there in the background.  The study's status becomes ``signed``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, select, update

from ..report.signoff import (
    ADDED_PREFIX,
    Decision,
    Reviewer,
    apply_review,
    iso,
    validate_added,
    validate_edit,
)
from ..store import Store
from ..store import schema as t
from . import worklist as wl
from .api import KnownStudy
from .auth import CurrentUser, User, list_users
from .auth import RadiologistUser as Radiologist

if TYPE_CHECKING:
    from ..report.model import Report
    from .app import MedimgServer

__all__ = ["AI_FOLDER", "REVIEW_ACTIONS", "REVIEW_SOURCE", "ReviewClosed", "router", "sign"]

log = logging.getLogger("medimg.server.review")

#: The ``source`` of the signed SR stored back (its series is marked derived).
REVIEW_SOURCE = "medimg:review"
#: Where the AI's original outputs are kept inside an analysis folder once a report is signed.
AI_FOLDER = "ai"
#: The outputs a signature rewrites (seg.dcm, masks.npz and evidence/ stay the AI's).
SIGNED_FILES = ("report.json", "report.html", "report.pdf", "sr.dcm", "fhir.json")
REVIEW_ACTIONS = ("finding_accepted", "finding_rejected", "finding_edited", "finding_added", "finding_withdrawn",
                  "impression_edited", "signed", "signed_sr_stored", "signed_sr_sent", "signed_sr_send_failed")
_FINDING_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_EVIDENCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SIGN_LOCK = threading.Lock()


class ReviewClosed(Exception):
    """The review was signed: no more changes."""


@dataclass
class _Target:
    """The analysis under review."""

    study_uid: str
    analysis_id: int
    folder: Path

    @property
    def ai_dir(self) -> Path:
        """Where the AI's report.json etc. are: ``ai/`` once signed, else the folder itself."""
        return self.folder / AI_FOLDER if (self.folder / AI_FOLDER / "report.json").is_file() else self.folder


# ---------------------------------------------------------------------------------------- state
def _target(store: Store, study_uid: str) -> _Target:
    a, s = t.analyses, t.studies
    with store.engine.connect() as conn:
        row = conn.execute(select(a.c.id, a.c.status, a.c.report_dir).join(s, a.c.study_pk == s.c.id)
                           .where(s.c.study_uid == study_uid, a.c.status.in_(("done", "refused")),
                                  a.c.report_dir != "")
                           .order_by(a.c.id.desc()).limit(1)).first()
    if row is None:
        raise HTTPException(409, f"study {study_uid} has no finished analysis to review yet (status "
                                 f"{store.study_status(study_uid)})")
    if row.status != "done":
        raise HTTPException(409, f"the analysis of study {study_uid} was refused (analysis {row.id}): there "
                                 "are no findings to review")
    folder = store.root / row.report_dir
    if not (folder / "report.json").is_file():
        raise HTTPException(409, f"analysis {row.id} of study {study_uid} has no report.json")
    return _Target(study_uid, int(row.id), folder)


def _review_row(conn: Any, analysis_id: int, create: bool) -> Any:
    r = t.reviews
    row = conn.execute(select(r).where(r.c.analysis_pk == analysis_id)).first()
    if row is None and create:
        conn.execute(insert(r).values(analysis_pk=analysis_id, state="draft", created=time.time()))
        row = conn.execute(select(r).where(r.c.analysis_pk == analysis_id)).first()
    return row


def _names(store: Store) -> dict[str, str]:
    return {u.username: u.name for u in list_users(store)}


def _decisions(conn: Any, review_pk: int, names: dict[str, str]) -> list[Decision]:
    f = t.review_findings
    rows = conn.execute(select(f).where(f.c.review_pk == review_pk).order_by(f.c.id)).all()
    return [Decision(r.finding_id, r.status, r.by, names.get(r.by, r.by), float(r.at), r.comment,
                     json.loads(r.data or "{}")) for r in rows]


def _ai_doc(target: _Target) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((target.ai_dir / "report.json").read_text(encoding="utf-8"))
    return doc


def _ai_report(target: _Target, with_masks: bool = False) -> Report:
    from ..report.load import read_report, report_from_dict

    if with_masks:
        report = read_report(target.ai_dir)
        if target.ai_dir != target.folder:  # masks.npz stays in the analysis folder
            from ..report.load import load_masks

            loaded = load_masks(target.folder)
            if loaded is not None:
                for s in report.structures:
                    s.mask = loaded[0].get(f"structure:{s.name}")
                for f in report.findings:
                    f.mask = loaded[0].get(f"finding:{f.id}")
        return report
    return report_from_dict(_ai_doc(target))


def _grid(target: _Target) -> Any:
    from ..report.load import load_grid

    loaded = load_grid(target.folder)
    return loaded[1] if loaded is not None else None


class _Mutation:
    """One change of a draft review, in one write transaction: the review row (created when needed),
    409 once it is signed."""

    def __init__(self, store: Store, target: _Target) -> None:
        self.store = store
        self.target = target

    def __enter__(self) -> tuple[Any, Any]:
        self._ctx = self.store.engine.execution_options(immediate=True).begin()
        conn = self._ctx.__enter__()
        row = _review_row(conn, self.target.analysis_id, create=True)
        if row.state == "signed":
            self._ctx.__exit__(None, None, None)
            raise ReviewClosed
        return conn, row

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def _closed(uid: str) -> HTTPException:
    return HTTPException(409, f"the report of study {uid} is signed; it cannot be changed any more")


def _event(server: MedimgServer, user: User, action: str, uid: str, detail: dict[str, Any],
           status: str | None = None) -> None:
    try:
        server.store.log_event(user.username, action, uid, detail)
    except Exception:
        log.exception("cannot record event %s of %s", action, uid)
    hub = getattr(server, "hub", None)
    if hub is not None:
        hub.study_event(server.store, uid, action, user.username, detail, status=status)


# ---------------------------------------------------------------------------------------- views
def review_state(store: Store, uid: str) -> dict[str, Any]:
    """The ``GET /review`` document (see docs/workstation-api.md)."""
    target = _target(store, uid)
    names = _names(store)
    with store.engine.connect() as conn:
        row = _review_row(conn, target.analysis_id, create=False)
        decisions = _decisions(conn, row.id, names) if row is not None else []
    ai = _ai_report(target)
    impression = row.impression if row is not None else None
    reviewed = apply_review(ai, [d for d in decisions if d.status != "withdrawn"], impression=impression,
                            impression_by=row.impression_by if row is not None else "", grid=_grid(target))
    assert reviewed.review is not None
    by_id = {e.finding_id: e for e in reviewed.review.findings}
    findings = []
    for f in reviewed.findings:
        entry = by_id.get(f.id)
        item = f.to_dict()
        item["review"] = ({"status": "ai", "by": None, "by_name": None, "at": None, "comment": "", "original": None,
                           "changes": []} if entry is None else
                          {"status": entry.status, "by": entry.by, "by_name": entry.by_name, "at": entry.at,
                           "comment": entry.comment, "original": entry.original, "changes": entry.changes,
                           **({"series_uid": entry.series_uid} if entry.status == "added" else {})})
        findings.append(item)
    signed = row is not None and row.state == "signed"
    history = [e for e in history_items(store, uid, names) if e["action"] in REVIEW_ACTIONS]
    return {
        "study_uid": uid, "analysis_id": target.analysis_id,
        "report": _ai_doc(target),
        "findings": findings,
        "impression": {"ai": ai.impression, "text": reviewed.impression, "edited": impression is not None,
                       "by": (row.impression_by or None) if row is not None and impression is not None else None,
                       "at": iso(row.impression_at) if row is not None and impression is not None else None},
        "recommendations": [r.to_dict() for r in reviewed.recommendations],
        "triage": reviewed.triage.to_dict() if reviewed.triage is not None else None,
        "state": "signed" if signed else "draft",
        "signed_by": row.signed_by if signed else None,
        "signed_by_name": names.get(row.signed_by, row.signed_by) if signed else None,
        "signed_at": iso(row.signed_at) if signed else None,
        "signed_sr_uid": row.signed_sr_uid or None if signed else None,
        "undecided": [f.id for f in reviewed.findings if f.status == "ai"],
        "history": history,
    }


def history_items(store: Store, uid: str, names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every event of the study, oldest first, with who (user name and display name) and when."""
    names = _names(store) if names is None else names
    items = wl.events(store, study_uid=uid, limit=10 * wl.MAX_PAGE)["items"]
    return [{"id": e["id"], "at": iso(e["at"]), "at_epoch": e["at"], "actor": e["actor"],
             "actor_name": names.get(e["actor"], e["actor"]), "action": e["action"], "detail": e["detail"]}
            for e in items]


# ---------------------------------------------------------------------------------------- changes
def _finding_ids(target: _Target) -> set[str]:
    return {str(f["id"]) for f in _ai_doc(target)["findings"]}


def decide(server: MedimgServer, user: User, uid: str, finding_id: str, action: str, comment: str) -> dict[str, Any]:
    store = server.store
    target = _target(store, uid)
    ai_ids = _finding_ids(target)
    f = t.review_findings
    try:
        with _Mutation(store, target) as (conn, row):
            current = conn.execute(select(f).where(f.c.review_pk == row.id, f.c.finding_id == finding_id)).first()
            if finding_id not in ai_ids and (current is None or current.status not in ("added",)):
                raise HTTPException(404, f"study {uid} has no finding {finding_id} to decide on")
            now = time.time()
            if current is not None and current.status == "added":
                if action == "accept":
                    status, event = "added", "finding_accepted"
                else:  # a radiologist's own finding that is rejected is withdrawn
                    status, event = "withdrawn", "finding_withdrawn"
                conn.execute(update(f).where(f.c.id == current.id).values(
                    status=status, by=user.username, at=now, comment=comment or current.comment))
            else:
                edits = json.loads(current.data or "{}") if current is not None else {}
                status = "rejected" if action == "reject" else ("edited" if edits else "accepted")
                event = "finding_rejected" if action == "reject" else "finding_accepted"
                if current is None:
                    conn.execute(insert(f).values(review_pk=row.id, finding_id=finding_id, status=status,
                                                  by=user.username, at=now, comment=comment, data="{}"))
                else:
                    conn.execute(update(f).where(f.c.id == current.id).values(
                        status=status, by=user.username, at=now, comment=comment or current.comment))
    except ReviewClosed:
        raise _closed(uid) from None
    _event(server, user, event, uid, {"analysis_id": target.analysis_id, "finding_id": finding_id,
                                      "status": status, "comment": comment})
    return {"finding_id": finding_id, "status": status, "by": user.username, "comment": comment}


def edit(server: MedimgServer, user: User, uid: str, finding_id: str, fields: dict[str, Any],
         comment: str | None) -> dict[str, Any]:
    store = server.store
    target = _target(store, uid)
    try:
        changes = validate_edit(fields)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    if not changes and comment is None:
        raise HTTPException(400, "nothing to change: give bbox_patient, center_patient, diameter_mm, "
                                 "short_axis_mm, characterisation or comment")
    ai_ids = _finding_ids(target)
    f = t.review_findings
    try:
        with _Mutation(store, target) as (conn, row):
            current = conn.execute(select(f).where(f.c.review_pk == row.id, f.c.finding_id == finding_id)).first()
            added = current is not None and current.status == "added"
            if finding_id not in ai_ids and not added:
                raise HTTPException(404, f"study {uid} has no finding {finding_id} to edit")
            if current is None and not changes:
                raise HTTPException(400, f"finding {finding_id} has no decision yet; send the comment with a "
                                         "decision (POST .../decision) or with an edit")
            data = json.loads(current.data or "{}") if current is not None else {}
            if added:
                unknown = [k for k in changes if k not in ("center_patient", "diameter_mm", "characterisation",
                                                           "bbox_patient")]
                if unknown:
                    raise HTTPException(400, f"{unknown[0]} cannot be set on a finding the radiologist added")
            if "characterisation" in changes and "characterisation" in data:
                changes["characterisation"] = {**data["characterisation"], **changes["characterisation"]}
            data.update(changes)
            status = "added" if added else ("edited" if data else "accepted")
            if current is not None and not changes:
                status = current.status  # a comment alone keeps the decision
            values = {"status": status, "by": user.username, "at": time.time(), "data": json.dumps(data)}
            if comment is not None:
                values["comment"] = comment
            if current is None:
                conn.execute(insert(f).values(review_pk=row.id, finding_id=finding_id, comment=comment or "",
                                              **values))
            else:
                conn.execute(update(f).where(f.c.id == current.id).values(**values))
    except ReviewClosed:
        raise _closed(uid) from None
    _event(server, user, "finding_edited", uid, {"analysis_id": target.analysis_id, "finding_id": finding_id,
                                                 "changes": changes, "comment": comment or ""})
    return {"finding_id": finding_id, "status": status, "edits": data, "by": user.username}


def add(server: MedimgServer, user: User, uid: str, fields: dict[str, Any], comment: str) -> dict[str, Any]:
    store = server.store
    target = _target(store, uid)
    try:
        data = validate_added(fields)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    series = data["series_uid"]
    with store.engine.connect() as conn:
        known = conn.execute(select(t.series.c.series_uid).join(t.studies, t.series.c.study_pk == t.studies.c.id)
                             .where(t.studies.c.study_uid == uid, t.series.c.series_uid == series)).first()
    if known is None:
        raise HTTPException(400, f"series_uid {series[:80]!r} is not a series of study {uid}")
    f = t.review_findings
    try:
        with _Mutation(store, target) as (conn, row):
            ids = conn.execute(select(f.c.finding_id).where(f.c.review_pk == row.id)).scalars().all()
            numbers = [int(i[len(ADDED_PREFIX):]) for i in ids
                       if i.startswith(ADDED_PREFIX) and i[len(ADDED_PREFIX):].isdigit()]
            taken = _finding_ids(target)
            n = max(numbers, default=0) + 1
            while f"{ADDED_PREFIX}{n}" in taken:
                n += 1
            finding_id = f"{ADDED_PREFIX}{n}"
            conn.execute(insert(f).values(review_pk=row.id, finding_id=finding_id, status="added", by=user.username,
                                          at=time.time(), comment=comment, data=json.dumps(data)))
    except ReviewClosed:
        raise _closed(uid) from None
    _event(server, user, "finding_added", uid, {"analysis_id": target.analysis_id, "finding_id": finding_id,
                                                "finding": data, "comment": comment})
    return {"id": finding_id, "finding_id": finding_id, "status": "added", **data}


def set_impression(server: MedimgServer, user: User, uid: str, text: str) -> dict[str, Any]:
    store = server.store
    target = _target(store, uid)
    text = text.strip()
    if not text:
        raise HTTPException(400, "text: the impression cannot be empty")
    try:
        with _Mutation(store, target) as (conn, row):
            conn.execute(update(t.reviews).where(t.reviews.c.id == row.id)
                         .values(impression=text, impression_by=user.username, impression_at=time.time()))
    except ReviewClosed:
        raise _closed(uid) from None
    _event(server, user, "impression_edited", uid, {"analysis_id": target.analysis_id, "text": text})
    return {"text": text, "edited": True, "by": user.username}


# ---------------------------------------------------------------------------------------- signing
def _keep_ai_outputs(folder: Path) -> None:
    """Copy the AI's outputs into ``folder/ai`` once (atomically: a staged folder renamed)."""
    target = folder / AI_FOLDER
    if (target / "report.json").is_file():
        return
    stage = Path(tempfile.mkdtemp(prefix=".ai-", dir=folder))
    try:
        for name in SIGNED_FILES:
            if (folder / name).is_file():
                shutil.copy2(folder / name, stage / name)
        if target.exists():  # an incomplete copy from an interrupted signature
            shutil.rmtree(target)
        os.replace(stage, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _series_files(store: Store, study_uid: str, series_uid: str) -> list[Path]:
    i, se, s = t.instances, t.series, t.studies
    with store.engine.connect() as conn:
        rel: list[str] = list(conn.execute(select(i.c.path).join(se, i.c.series_pk == se.c.id).join(s, se.c.study_pk == s.c.id)
                           .where(s.c.study_uid == study_uid, se.c.series_uid == series_uid)).scalars())
    return [store.root / r for r in rel]


def sign(server: MedimgServer, user: User, uid: str) -> dict[str, Any]:
    """Sign the review of study ``uid`` (module docstring); returns what was written."""
    import pydicom

    from ..io.dicom import read_dicom
    from ..report.outputs import ReportWriteError, write_report
    from ..report.render import key_images
    from ..report.signoff import signed_context

    store = server.store
    with _SIGN_LOCK:
        target = _target(store, uid)
        names = _names(store)
        with store.engine.execution_options(immediate=True).begin() as conn:
            row = _review_row(conn, target.analysis_id, create=True)
            if row.state == "signed":
                raise _closed(uid)
            decisions = [d for d in _decisions(conn, row.id, names) if d.status != "withdrawn"]
        ai = _ai_report(target, with_masks=True)
        decided = {d.finding_id for d in decisions}
        undecided = [f.id for f in ai.findings if f.id not in decided]
        if undecided:
            raise HTTPException(409, f"finding {undecided[0]} has no decision yet ({len(undecided)} undecided): "
                                     "accept, reject or edit every AI finding before signing")
        now = time.time()
        signed = apply_review(ai, decisions, impression=row.impression, impression_by=row.impression_by,
                              signer=Reviewer(user.username, user.name, user.role), signed_at=now,
                              grid=_grid(target))
        image = None
        formats = ["json", "html", "pdf", "fhir"]
        if (target.ai_dir / "sr.dcm").is_file():
            files = _series_files(store, uid, ai.study.series_instance_uid)
            if not files:
                raise HTTPException(409, f"the analysed series {ai.study.series_instance_uid} of study {uid} is no "
                                         "longer in the store; the SR cannot be signed")
            image = read_dicom(files, series=ai.study.series_instance_uid)
            formats = ["json", "html", "pdf", "sr", "fhir"]
        seg_path = target.folder / "seg.dcm"
        seg = pydicom.dcmread(seg_path) if image is not None and seg_path.is_file() else None
        images = key_images(ai, image) if image is not None else None
        _keep_ai_outputs(target.folder)
        stage = Path(tempfile.mkdtemp(prefix=".signing-", dir=target.folder))
        try:
            try:
                written = write_report(signed, image, stage, formats=formats, context=signed_context(signed, seg),
                                       seg=seg, images=images)
            except ReportWriteError as exc:
                raise HTTPException(500, f"the signed report could not be written: {exc}") from None
            sr = None
            if "sr" in written:
                sr = store.put_path(written["sr"], source=REVIEW_SOURCE)
            for path in written.values():
                os.replace(path, target.folder / path.name)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        with store.engine.execution_options(immediate=True).begin() as conn:
            done = conn.execute(update(t.reviews).where(t.reviews.c.id == row.id, t.reviews.c.state == "draft")
                                .values(state="signed", signed_by=user.username, signed_at=now,
                                        signed_sr_uid=sr.sop_instance_uid if sr is not None else "")).rowcount
            if done != 1:
                raise _closed(uid)
            conn.execute(update(t.studies).where(t.studies.c.study_uid == uid).values(status="signed"))
    assert signed.review is not None
    counts = {s: sum(1 for f in signed.findings if f.status == s) for s in ("accepted", "edited", "rejected", "added")}
    detail: dict[str, Any] = {"analysis_id": target.analysis_id, "findings": counts,
                              "impression_edited": row.impression is not None, "outputs": sorted(written)}
    if sr is not None:
        detail.update(sr_sop_instance_uid=sr.sop_instance_uid, sr_series_instance_uid=sr.series_uid)
    _event(server, user, "signed", uid, detail, status="signed")
    if sr is not None and sr.path is not None and server.config.destination:
        threading.Thread(target=_send, args=(server, user, uid, sr.path), name="medimg-send-signed",
                         daemon=True).start()
    return {"state": "signed", "signed_by": user.username, "signed_by_name": user.name, "signed_at": iso(now),
            "analysis_id": target.analysis_id, "outputs": sorted(p.name for p in written.values()),
            "sr": {"sop_instance_uid": sr.sop_instance_uid, "series_instance_uid": sr.series_uid}
            if sr is not None else None}


def _send(server: MedimgServer, user: User, uid: str, path: Path) -> None:
    peer = server.config.destination
    try:
        from .dicom_node import send_instances

        answers = send_instances(server, peer, [path])
        _event(server, user, "signed_sr_sent", uid, {"peer": peer, "results": [
            {"sop_instance_uid": u, "status": f"0x{st:04X}"} for u, st in answers]})
    except Exception as exc:
        _event(server, user, "signed_sr_send_failed", uid, {"peer": peer, "error": " ".join(str(exc).split())[:500]})


# ---------------------------------------------------------------------------------------- evidence
def evidence_file(store: Store, uid: str, name: str) -> Path:
    """The evidence image ``name`` of the study's latest finished analysis: only a file name that the
    report lists, looked up in the analysis's own ``evidence/`` folder (never a path from the request)."""
    if not _EVIDENCE_NAME.fullmatch(name) or ".." in name:
        raise HTTPException(400, f"evidence name {name[:80]!r} is not a file name")
    found = wl.finished_analysis(store, uid)
    if found is None:
        raise HTTPException(404, f"study {uid} has no finished analysis")
    _aid, folder = found
    report_json = folder / AI_FOLDER / "report.json"
    if not report_json.is_file():
        report_json = folder / "report.json"
    try:
        doc = json.loads(report_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise HTTPException(404, f"study {uid} has no readable report") from None
    listed = {Path(str(ev["path"])).name for f in doc.get("findings", []) for ev in f.get("evidence", [])
              if isinstance(ev, dict) and ev.get("path")}
    if name not in listed:
        raise HTTPException(404, f"the report of study {uid} lists no evidence image {name!r}"
                                 + (f" (it lists {', '.join(sorted(listed))})" if listed else ""))
    base = (folder / "evidence").resolve()
    path = (base / name).resolve()
    if path.parent != base or not path.is_file():
        raise HTTPException(404, f"evidence image {name!r} of study {uid} is missing from the analysis folder")
    return path


# ---------------------------------------------------------------------------------------- routes
class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(pattern="^(accept|reject)$")
    comment: str = Field(default="", max_length=2000)


class EditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bbox_patient: list[float] | None = None
    center_patient: list[float] | None = None
    diameter_mm: float | None = None
    short_axis_mm: float | None = None
    characterisation: dict[str, str] | str | None = None
    comment: str | None = Field(default=None, max_length=2000)


class AddBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(max_length=32)
    center_patient: list[float]
    diameter_mm: float
    series_uid: str = Field(max_length=64)
    characterisation: dict[str, str] | str | None = None
    bbox_patient: list[float] | None = None
    comment: str = Field(default="", max_length=2000)


class ImpressionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=10000)


def _finding_id(finding_id: str) -> str:
    if not _FINDING_ID.fullmatch(finding_id):
        raise HTTPException(400, f"finding id {finding_id[:80]!r} is not valid (letters, digits, '.', '_', '-')")
    return finding_id


#: A finding id from the path: 400 unless letters, digits, '.', '_', '-'.
FindingId = Annotated[str, Depends(_finding_id)]


def router(server: MedimgServer) -> APIRouter:
    r = APIRouter(prefix="/api/studies/{uid}")
    store = server.store

    @r.get("/review")
    def get_review(_user: CurrentUser, uid: KnownStudy) -> dict[str, Any]:
        return review_state(store, uid)

    @r.post("/findings/{finding_id}/decision")
    def post_decision(user: Radiologist, uid: KnownStudy, finding_id: FindingId, body: DecisionBody) -> dict[str, Any]:
        return decide(server, user, uid, finding_id, body.action, body.comment.strip())

    @r.patch("/findings/{finding_id}")
    def patch_finding(user: Radiologist, uid: KnownStudy, finding_id: FindingId, body: EditBody) -> dict[str, Any]:
        fields = body.model_dump(exclude={"comment"}, exclude_none=True)
        return edit(server, user, uid, finding_id, fields, body.comment.strip() if body.comment is not None else None)

    @r.post("/findings", status_code=201)
    def post_finding(user: Radiologist, uid: KnownStudy, body: AddBody) -> dict[str, Any]:
        fields = body.model_dump(exclude={"comment"}, exclude_none=True)
        return add(server, user, uid, fields, body.comment.strip())

    @r.put("/impression")
    def put_impression(user: Radiologist, uid: KnownStudy, body: ImpressionBody) -> dict[str, Any]:
        return set_impression(server, user, uid, body.text)

    @r.post("/sign")
    def post_sign(user: Radiologist, uid: KnownStudy) -> dict[str, Any]:
        return sign(server, user, uid)

    @r.get("/history")
    def get_history(_user: CurrentUser, uid: KnownStudy) -> dict[str, Any]:
        return {"study_uid": uid, "items": history_items(store, uid)}

    @r.get("/evidence/{name}", response_class=FileResponse)
    def get_evidence(_user: CurrentUser, uid: KnownStudy, name: str) -> FileResponse:
        path = evidence_file(store, uid, name)
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media)

    return r
