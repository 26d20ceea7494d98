"""The store's schema: every table, its version and the migrations that bring an older file forward.

One :class:`sqlalchemy.MetaData` holds the results tables (``studies``, ``revisions``, ``slices``,
``audit``), the local sign-in accounts (``users``, used by :mod:`mre_core.store.users`) and the inbox
tables (``inbox_instances``, ``inbox_studies``, ``forwards``, ``outputs``, used by :mod:`mre_core.store.inbox`),
and the site-training tables (``reader_rois``, imported reads, :mod:`mre_core.store.labels`; ``models`` and
``model_activations``, the model registry, :mod:`mre_core.store.models`; ``training_jobs``,
:mod:`mre_core.workflow.training_job`).
:data:`MIGRATIONS` upgrades a version ``v - 1`` schema to ``v``; append, never edit. This module imports
nothing else of the store, so the results store and the inbox both depend on it and never on each other's
tables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

SCHEMA_VERSION = 7


metadata = sa.MetaData()


schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_utc", sa.String(32), nullable=False),
)


studies = sa.Table(
    "studies", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_uid", sa.String(128), nullable=False),
    sa.Column("series_uid", sa.String(128), nullable=False),
    sa.Column("patient_id", sa.String(128), nullable=False),
    sa.Column("patient_name", sa.String(256), nullable=False, default=""),
    sa.Column("study_date", sa.String(16), nullable=False, default=""),
    sa.Column("manufacturer", sa.String(128), nullable=False, default=""),
    sa.Column("series_description", sa.String(256), nullable=False, default=""),
    sa.Column("dataset", sa.String(64), nullable=False, default=""),
    sa.Column("source_uids_json", sa.Text, nullable=False, default="[]"),
    sa.Column("created_utc", sa.String(32), nullable=False),
    sa.UniqueConstraint("study_uid", "series_uid", name="uq_study_series"),
)


revisions = sa.Table(
    "revisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_utc", sa.String(32), nullable=False),
    sa.Column("reviewer", sa.String(128), nullable=False, default=""),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("manual_kpa", sa.Float, nullable=True),
    sa.Column("stiffness_kpa", sa.Float, nullable=True),
    sa.Column("stiffness_kpa_area_weighted", sa.Float, nullable=True),
    sa.Column("n_slices", sa.Integer, nullable=False),
    sa.Column("n_slices_used", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(4), nullable=False, default=""),
    sa.Column("significant_fibrosis", sa.Boolean, nullable=True),
    sa.Column("staging_table_json", sa.Text, nullable=False),
    sa.Column("qc_flags", sa.String(512), nullable=False, default=""),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_sha256", sa.String(64), nullable=False),
    sa.Column("device", sa.String(32), nullable=False),
    sa.Column("profile", sa.String(16), nullable=False, default=""),
    sa.Column("runtime_s", sa.Float, nullable=True),
    sa.Column("settings_json", sa.Text, nullable=False),
    sa.Column("edits_json", sa.Text, nullable=False, default="{}"),
    # v5: the untouched automatic value this revision started from (never a reader's edit), so the cohort
    # can compare automatic with manual even after a reader changed the ROI
    sa.Column("auto_stiffness_kpa", sa.Float, nullable=True),
    sa.UniqueConstraint("study_id", "revision", name="uq_study_revision"),
)


slices = sa.Table(
    "slices", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("revision_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=False),
    sa.Column("sop_uid", sa.String(128), nullable=False),
    sa.Column("instance_number", sa.Integer, nullable=False),
    sa.Column("position_mm", sa.Float, nullable=False),
    sa.Column("excluded", sa.Boolean, nullable=False),
    sa.Column("n_pixels", sa.Integer, nullable=False),
    sa.Column("area_cm2", sa.Float, nullable=False),
    sa.Column("mean_kpa", sa.Float, nullable=True),
    sa.Column("median_kpa", sa.Float, nullable=True),
    sa.Column("sd_kpa", sa.Float, nullable=True),
    sa.Column("p25_kpa", sa.Float, nullable=True),
    sa.Column("p75_kpa", sa.Float, nullable=True),
    sa.Column("confidence_area_cm2", sa.Float, nullable=False),
    sa.Column("qc_flags", sa.String(256), nullable=False, default=""),
    sa.Column("roi_rows", sa.Integer, nullable=False),
    sa.Column("roi_cols", sa.Integer, nullable=False),
    sa.Column("roi_packed", sa.LargeBinary, nullable=False),
)


audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at_utc", sa.String(32), nullable=False),
    sa.Column("user", sa.String(128), nullable=False, default=""),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("study_id", sa.Integer, nullable=True),
    sa.Column("revision_id", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)


#: Local sign-in accounts (v6). Passwords are kept only as argon2id hashes (PHC strings, parameters included);
#: a disabled account is kept (``active`` false) so the audit log's names stay resolvable.
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(128), nullable=False, unique=True),
    sa.Column("display_name", sa.String(256), nullable=False, default=""),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_utc", sa.String(32), nullable=False),
    sa.Column("updated_utc", sa.String(32), nullable=False),
)


#: Reader ROIs imported from existing reads (v7): DICOM SEG / RTSTRUCT files that reference a stored study's images,
#: one row per referenced image (matched by SOP Instance UID). Re-importing the same object replaces nothing: the
#: pair (source object, image) is unique.
reader_rois = sa.Table(
    "reader_rois", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_uid", sa.String(128), nullable=False, index=True),
    sa.Column("series_uid", sa.String(128), nullable=False),  # the series of the referenced image
    sa.Column("sop_uid", sa.String(128), nullable=False),  # the referenced image
    sa.Column("patient_id", sa.String(128), nullable=False, default=""),
    sa.Column("study_date", sa.String(16), nullable=False, default=""),  # of the referenced images
    sa.Column("manufacturer", sa.String(128), nullable=False, default=""),  # of the referenced images
    sa.Column("reader", sa.String(256), nullable=False, default=""),
    sa.Column("read_date", sa.String(16), nullable=False, default=""),  # YYYYMMDD of the read (content date)
    sa.Column("source", sa.String(16), nullable=False),  # "seg" | "rtstruct"
    sa.Column("source_file", sa.Text, nullable=False, default=""),
    sa.Column("source_sop_uid", sa.String(128), nullable=False),  # the SEG / RTSTRUCT object's own UID
    sa.Column("label", sa.String(256), nullable=False, default=""),  # segment label / ROI name
    sa.Column("roi_rows", sa.Integer, nullable=False),
    sa.Column("roi_cols", sa.Integer, nullable=False),
    sa.Column("roi_packed", sa.LargeBinary, nullable=False),
    sa.Column("imported_utc", sa.String(32), nullable=False),
    sa.Column("imported_by", sa.String(128), nullable=False, default=""),
    sa.UniqueConstraint("source_sop_uid", "sop_uid", name="uq_reader_roi"),
)


#: The model registry (v7): every model the site has used or trained, shipped or site-trained. ``version`` is
#: ``<name>@<sha256[:12]>`` as stored on every revision (``revisions.model_name`` / ``model_sha256``).
models = sa.Table(
    "models", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version", sa.String(160), nullable=False, unique=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("weights_dir", sa.Text, nullable=False),
    sa.Column("arch", sa.String(32), nullable=False, default=""),
    sa.Column("origin", sa.String(16), nullable=False),  # "shipped" | "site"
    sa.Column("parent_version", sa.String(160), nullable=False, default=""),  # fine-tuned from
    sa.Column("created_utc", sa.String(32), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False, default=""),
    sa.Column("manifest_json", sa.Text, nullable=False, default="{}"),  # studies and ROIs, the split
    sa.Column("settings_json", sa.Text, nullable=False, default="{}"),  # training settings
    sa.Column("metrics_json", sa.Text, nullable=False, default="{}"),  # held-out evaluation, comparison
    sa.Column("heldout_json", sa.Text, nullable=False, default="[]"),  # study UIDs of its held-out test set
    sa.Column("job_id", sa.Integer, nullable=True),
)

#: Which model is active, as a history (v7): the latest row wins; rollback is a new row. Never updated.
model_activations = sa.Table(
    "model_activations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at_utc", sa.String(32), nullable=False),
    sa.Column("version", sa.String(160), nullable=False),
    sa.Column("previous_version", sa.String(160), nullable=False, default=""),
    sa.Column("user", sa.String(128), nullable=False, default=""),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("override", sa.Boolean, nullable=False, default=False),  # activated although worse than the active
)

#: Training runs started from the store (v7), run by their own process; the row is the job's state, so a page
#: reload or a restart of the app loses nothing.
training_jobs = sa.Table(
    "training_jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_utc", sa.String(32), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False, default=""),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("params_json", sa.Text, nullable=False, default="{}"),
    sa.Column("out_dir", sa.Text, nullable=False),
    sa.Column("worker", sa.String(128), nullable=False, default=""),  # host:pid of the training process
    sa.Column("progress_json", sa.Text, nullable=False, default="{}"),
    sa.Column("updated_utc", sa.String(32), nullable=False),
    sa.Column("finished_utc", sa.String(32), nullable=True),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("model_version", sa.String(160), nullable=False, default=""),
)


inbox_instances = sa.Table(
    "inbox_instances", metadata,
    sa.Column("sop_uid", sa.String(128), primary_key=True),
    sa.Column("study_uid", sa.String(128), nullable=False, index=True),
    sa.Column("series_uid", sa.String(128), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),  # epoch seconds
    sa.Column("origin", sa.String(128), nullable=False, default=""),
)


inbox_studies = sa.Table(
    "inbox_studies", metadata,
    sa.Column("study_uid", sa.String(128), primary_key=True),
    sa.Column("patient_id", sa.String(128), nullable=False, default=""),
    sa.Column("patient_name", sa.String(256), nullable=False, default=""),
    sa.Column("study_date", sa.String(16), nullable=False, default=""),
    sa.Column("origin", sa.String(128), nullable=False, default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("n_instances", sa.Integer, nullable=False, default=0),
    sa.Column("first_received_at", sa.Float, nullable=False),
    sa.Column("last_received_at", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("series_uid", sa.String(128), nullable=False, default=""),  # the analysed elastogram series
    sa.Column("finished_at", sa.Float, nullable=True),
    # v4: the quiet period counts from here (arrival, or a restart); a claim by one worker, with a lease
    sa.Column("quiet_from", sa.Float, nullable=True),
    sa.Column("claimed_by", sa.String(128), nullable=False, default=""),
    sa.Column("lease_until", sa.Float, nullable=True),
)


forwards = sa.Table(
    "forwards", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_uid", sa.String(128), nullable=False, index=True),
    sa.Column("what", sa.String(16), nullable=False),  # "SEG" | "SR"
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("destination", sa.String(256), nullable=False),  # HOST:PORT:AET
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Column("updated_at", sa.Float, nullable=False),
    # v4: the object's SOP Instance UID and series, and the claim of the worker sending it, with a lease
    sa.Column("sop_uid", sa.String(128), nullable=False, default=""),
    sa.Column("series_uid", sa.String(128), nullable=False, default=""),
    sa.Column("claimed_by", sa.String(128), nullable=False, default=""),
    sa.Column("lease_until", sa.Float, nullable=True),
)


outputs = sa.Table(
    "outputs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_uid", sa.String(128), nullable=False, index=True),
    sa.Column("series_uid", sa.String(128), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),  # the saved revision the object shows
    sa.Column("what", sa.String(16), nullable=False),  # "SEG" | "SR" | "PDF"
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("sop_uid", sa.String(128), nullable=False, default=""),  # DICOM objects only
    sa.Column("written_at", sa.Float, nullable=False),
    sa.UniqueConstraint("study_uid", "series_uid", "revision", "what", name="uq_output"),
)


INBOX_TABLES = (inbox_instances, inbox_studies, forwards)

_V1_TABLES = (studies, revisions, slices)


def _migrate_to_1(conn: Connection) -> None:
    """Version 1: studies, revisions, slices."""
    metadata.create_all(conn, tables=list(_V1_TABLES))


def _migrate_to_2(conn: Connection) -> None:
    """Version 2: the audit log and an index for cohort queries."""
    metadata.create_all(conn, tables=[audit])
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_revisions_study ON revisions (study_id, revision)")


def _migrate_to_3(conn: Connection) -> None:
    """Version 3: the inbox of received DICOM instances, its study queue and the forwarding queue."""
    metadata.create_all(conn, tables=list(INBOX_TABLES))


_V4_COLUMNS = {"inbox_studies": ("quiet_from", "claimed_by", "lease_until"),
               "forwards": ("sop_uid", "series_uid", "claimed_by", "lease_until")}


def _migrate_to_4(conn: Connection) -> None:
    """Version 4: durable study steps (the ``outputs`` table), claims with leases for several workers, a quiet
    period that restarts after a restart. Columns are added only where missing (a version-2 file gets the inbox
    tables from version 3 with these columns already)."""
    inspector = sa.inspect(conn)
    for name, columns in _V4_COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(name)}
        table = metadata.tables[name]
        for col in columns:
            if col in have:
                continue
            column = table.c[col]
            kind = column.type.compile(dialect=conn.dialect)
            extra = "" if column.nullable else " NOT NULL DEFAULT ''"
            conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {col} {kind}{extra}")
    metadata.create_all(conn, tables=[outputs])
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_forwards_status ON forwards (status, next_attempt_at)")


def _migrate_to_5(conn: Connection) -> None:
    """Version 5: ``revisions.auto_stiffness_kpa``, the unedited automatic value; filled for old rows from the
    study's latest automatic revision at or before each revision (an ``auto`` revision is its own value)."""
    have = {c["name"] for c in sa.inspect(conn).get_columns("revisions")}
    if "auto_stiffness_kpa" not in have:
        conn.exec_driver_sql("ALTER TABLE revisions ADD COLUMN auto_stiffness_kpa FLOAT")
    conn.exec_driver_sql(
        "UPDATE revisions SET auto_stiffness_kpa = (SELECT a.stiffness_kpa FROM revisions a "
        "WHERE a.study_id = revisions.study_id AND a.kind = 'auto' AND a.revision <= revisions.revision "
        "ORDER BY a.revision DESC LIMIT 1) WHERE auto_stiffness_kpa IS NULL")


#: The message the database gives when something tries to change or remove an audit entry.
AUDIT_APPEND_ONLY = "the audit log is append-only"

_SQLITE_AUDIT_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS audit_no_{op.lower()} BEFORE {op} ON audit "
    f"BEGIN SELECT RAISE(ABORT, '{AUDIT_APPEND_ONLY}: {op} refused'); END"
    for op in ("UPDATE", "DELETE"))

_POSTGRESQL_AUDIT_TRIGGERS = (
    ("CREATE OR REPLACE FUNCTION mre_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
     f"RAISE EXCEPTION USING MESSAGE = '{AUDIT_APPEND_ONLY}: ' || TG_OP || ' refused'; END $$"),
    "DROP TRIGGER IF EXISTS audit_append_only ON audit",
    ("CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit FOR EACH ROW "
     "EXECUTE FUNCTION mre_audit_append_only()"),
    "DROP TRIGGER IF EXISTS audit_no_truncate ON audit",
    ("CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT "
     "EXECUTE FUNCTION mre_audit_append_only()"),
)


def _migrate_to_6(conn: Connection) -> None:
    """Version 6: local sign-in accounts (``users``), and the audit log made append-only in the database itself.

    Triggers refuse UPDATE and DELETE on ``audit`` (and TRUNCATE on PostgreSQL) with :data:`AUDIT_APPEND_ONLY`.
    A trigger rather than a PostgreSQL rule: a ``DO INSTEAD NOTHING`` rule would drop the change silently, and a
    silent no-op hides the bug that tried it. They guard against mistakes and software bugs, not against the
    database's owner, who can drop them.
    """
    metadata.create_all(conn, tables=[users])
    statements = _POSTGRESQL_AUDIT_TRIGGERS if conn.dialect.name == "postgresql" else _SQLITE_AUDIT_TRIGGERS
    for statement in statements:
        conn.exec_driver_sql(statement)


def _migrate_to_7(conn: Connection) -> None:
    """Version 7: site training — imported reader ROIs, the model registry and its activation history, training
    jobs."""
    metadata.create_all(conn, tables=[reader_rois, models, model_activations, training_jobs])


#: ``MIGRATIONS[v]`` brings a version ``v - 1`` schema to version ``v``. Append, never edit.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migrate_to_1, 2: _migrate_to_2, 3: _migrate_to_3,
                                                       4: _migrate_to_4, 5: _migrate_to_5, 6: _migrate_to_6,
                                                       7: _migrate_to_7}


def _set_wal(cur: Any, attempts: int = 50) -> None:
    """``PRAGMA journal_mode=WAL``, retried: on a brand-new file opened by several processes at once the switch can
    answer "database is locked" at once instead of waiting on the busy handler (SQLite changes the journal mode
    only with the database to itself)."""
    import sqlite3
    import time

    for attempt in range(attempts):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (1 + attempt % 5))


def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" below emit BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")  # first: the journal-mode switch below may have to wait
            _set_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # writers take the lock at BEGIN, so two writers queue instead of deadlocking on upgrade
            write = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def current_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)
