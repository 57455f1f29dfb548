"""The store's index: SQLAlchemy Core tables (SQLite by default, PostgreSQL by URL).

One row per study, series and instance, holding the attributes that queries (C-FIND, QIDO-RS) match
on, and for each instance the server-generated path of its file, its size and the SHA-256 of its data
set.  Patients are not a table of their own: a patient-level query groups studies by Patient ID.
``analyses`` holds every automatic analysis of a study (its status, attempts, triage priority and the
key finding: the worklist is built from it) and ``events`` is the audit trail (who did what, when).
``users`` and ``sessions`` are the workstation's accounts (:mod:`medimg.server.auth`); ``reviews`` and
``review_findings`` hold a radiologist's review of one analysis (:mod:`medimg.server.review`).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["analyses", "events", "instances", "metadata", "review_findings", "reviews", "series",
           "sessions", "studies", "users"]

metadata = MetaData()

UID = String(64)

studies = Table(
    "studies", metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", UID, nullable=False, unique=True),
    Column("patient_id", String(64), nullable=False, default=""),
    Column("patient_name", String(324), nullable=False, default=""),
    Column("patient_birth_date", String(8), nullable=False, default=""),
    Column("patient_sex", String(16), nullable=False, default=""),
    Column("study_date", String(8), nullable=False, default=""),
    Column("study_time", String(16), nullable=False, default=""),
    Column("accession_number", String(16), nullable=False, default=""),
    Column("study_id", String(16), nullable=False, default=""),
    Column("study_description", String(64), nullable=False, default=""),
    Column("referring_physician", String(324), nullable=False, default=""),
    Column("first_received", Float, nullable=False),
    Column("last_received", Float, nullable=False),
    # received | analysing | ready | failed | signed | skipped
    Column("status", String(16), nullable=False, default="received"),
    Index("ix_studies_patient", "patient_id"),
    Index("ix_studies_date", "study_date"),
    Index("ix_studies_last_received", "last_received"),
)

series = Table(
    "series", metadata,
    Column("id", Integer, primary_key=True),
    Column("series_uid", UID, nullable=False, unique=True),
    Column("study_pk", Integer, ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
    Column("modality", String(16), nullable=False, default=""),
    Column("series_number", Integer, nullable=True),
    Column("series_description", String(64), nullable=False, default=""),
    Column("body_part", String(16), nullable=False, default=""),
    Column("series_date", String(8), nullable=False, default=""),
    Column("series_time", String(16), nullable=False, default=""),
    # True for series medimg created itself (analysis SR and SEG)
    Column("derived", Boolean, nullable=False, default=False),
    Column("first_received", Float, nullable=False),
    Index("ix_series_study", "study_pk"),
)

instances = Table(
    "instances", metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_uid", UID, nullable=False, unique=True),
    Column("series_pk", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("sop_class_uid", UID, nullable=False),
    Column("instance_number", Integer, nullable=True),
    Column("transfer_syntax", UID, nullable=False),
    Column("rows", Integer, nullable=True),
    Column("columns", Integer, nullable=True),
    Column("frames", Integer, nullable=True),
    Column("path", String(128), nullable=False, unique=True),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received", Float, nullable=False),
    Column("source", String(96), nullable=False, default=""),
    Index("ix_instances_series", "series_pk"),
)

analyses = Table(
    "analyses", metadata,
    Column("id", Integer, primary_key=True),
    Column("study_pk", Integer, ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
    # queued | running | done | failed | refused
    Column("status", String(16), nullable=False, default="queued"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("protocol", String(64), nullable=False, default=""),
    Column("priority", String(16), nullable=False, default=""),  # urgent | soon | routine | ""
    Column("priority_rank", Integer, nullable=False, default=9),  # 0 urgent, 1 soon, 2 routine, 9 none
    Column("key_finding", Text, nullable=False, default=""),
    Column("quality", String(16), nullable=False, default=""),  # pass | warn | fail | ""
    Column("report_dir", String(256), nullable=False, default=""),
    Column("error", Text, nullable=False, default=""),
    Column("created", Float, nullable=False),
    Column("started", Float, nullable=True),
    Column("finished", Float, nullable=True),
    Column("not_before", Float, nullable=False, default=0.0),  # retry back-off
    Index("ix_analyses_study", "study_pk"),
    Index("ix_analyses_status", "status"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),  # a user name, "dimse:AET", "system", ...
    Column("action", String(64), nullable=False),
    Column("study_pk", Integer, ForeignKey("studies.id", ondelete="CASCADE"), nullable=True),
    Column("detail", Text, nullable=False, default=""),  # JSON
    Index("ix_events_study", "study_pk"),
)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False, default=""),
    Column("role", String(16), nullable=False),  # radiologist | technologist | admin
    Column("password_hash", String(256), nullable=False),  # scrypt$n$r$p$salt$hash (base64)
    Column("active", Boolean, nullable=False, default=True),
    Column("created", Float, nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),  # in a row; reset by a good login
    Column("locked_until", Float, nullable=False, default=0.0),
)

sessions = Table(
    "sessions", metadata,
    Column("id", Integer, primary_key=True),
    Column("token_sha256", String(64), nullable=False, unique=True),  # the token itself is never stored
    Column("user_pk", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Index("ix_sessions_user", "user_pk"),
)

reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True),
    Column("analysis_pk", Integer, ForeignKey("analyses.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("state", String(16), nullable=False, default="draft"),  # draft | signed
    Column("impression", Text, nullable=True),  # None: the AI's impression stands
    Column("impression_by", String(64), nullable=False, default=""),
    Column("impression_at", Float, nullable=True),
    Column("signed_by", String(64), nullable=False, default=""),
    Column("signed_at", Float, nullable=True),
    Column("signed_sr_uid", String(64), nullable=False, default=""),
    Column("created", Float, nullable=False),
)

review_findings = Table(
    "review_findings", metadata,
    Column("id", Integer, primary_key=True),
    Column("review_pk", Integer, ForeignKey("reviews.id", ondelete="CASCADE"), nullable=False),
    Column("finding_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # accepted | rejected | edited | added
    Column("by", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("data", Text, nullable=False, default="{}"),  # JSON: the edit, or the added finding
    UniqueConstraint("review_pk", "finding_id", name="uq_review_finding"),
)

# The inputs of each finished analysis, for drift monitoring and the quality dashboard
# (medimg.monitoring, medimg.server.dashboard): features JSON (scanner, kernel, slice thickness, kVp,
# pixel spacing, pixel statistics) and the AI score of every finding (JSON list).
analysis_inputs = Table(
    "analysis_inputs", metadata,
    Column("id", Integer, primary_key=True),
    Column("analysis_pk", Integer, ForeignKey("analyses.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("protocol", String(64), nullable=False, default=""),
    Column("features", Text, nullable=False, default="{}"),
    Column("scores", Text, nullable=False, default="[]"),
    Column("source", String(16), nullable=False, default="analysis"),  # analysis | report (read back later)
    Column("recorded", Float, nullable=False),
)
