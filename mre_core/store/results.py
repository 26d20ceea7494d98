"""Results store: every saved analysis and review, kept as revisions, never overwritten.

SQLAlchemy Core over SQLite (default, a file path from :attr:`Settings.db_url`) or
PostgreSQL (any SQLAlchemy URL). Tables:

``studies``
    one row per (study UID, series UID): patient, date, manufacturer, the source SOP UIDs.
``revisions``
    one row per save: revision number (1, 2, …, never reused), kind (``auto`` = the model's
    result as is, ``review`` = after reviewer edits, ``signed_off`` = reviewed and signed off
    by a named reviewer), the study value, stage, QC flags,
    manual measurement, comment, reviewer, model name + SHA-256, device, the settings used
    (JSON) and the review edits (JSON).
``slices``
    one row per slice of a revision: SOP UID, statistics, exclusion, QC flags and the ROI mask
    (packed bits, zlib-compressed) so a saved review can be shown and audited later.
``audit``
    append-only log of who did what: saves, intake refusals, sign-ins, account changes, refused actions
    (read and exported by :mod:`mre_core.store.audit`; the database refuses UPDATE and DELETE on it).
``users``
    local sign-in accounts with argon2id password hashes (:mod:`mre_core.store.users`).
``inbox_instances``, ``inbox_studies``, ``forwards``
    DICOM received by the listener / watch folder and objects to send back (see :mod:`mre_core.store.inbox`).
``schema_version``
    the schema's version; :data:`MIGRATIONS` upgrades older files forward on open.

Concurrency: every write is one transaction. On SQLite the store uses WAL and a busy
timeout, and takes the write lock at ``BEGIN`` (``BEGIN IMMEDIATE``), so writers queue. On
PostgreSQL (READ COMMITTED) a save locks its study row (``SELECT … FOR UPDATE``) before it
numbers the revision, so two sessions saving the same study get N and N+1 without colliding;
a concurrent first save of a study reads the row the other created (``uq_study_series``), and
opening a new database takes an advisory lock so only one process creates the schema. The
unique key on (study, revision) stays as the guarantee, with a retry and backoff behind it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import random
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from mre_core.analysis.pipeline import StudyResult
from mre_core.config import Settings
from mre_core.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    audit,
    current_version,
    engine_for,
    metadata,
    revisions,
    schema_version,
    slices,
    studies,
)

#: Revision kinds, in the order a study usually goes through them.
KINDS = ("auto", "review", "signed_off")

#: PostgreSQL advisory-lock key held while a process creates or upgrades the schema (any fixed number).
_SCHEMA_LOCK_KEY = zlib.crc32(b"mre_core.store.schema upgrade")

#: First pause before a save is retried, in seconds; it doubles with each attempt (capped at 1 s).
_RETRY_PAUSE_S = 0.02


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message says why and what to do."""


class AlreadySignedOff(ValueError):
    """A sign-off of exactly the content of the study's latest revision, which is already signed off."""

    def __init__(self, revision: int, reviewer: str, created_utc: str) -> None:
        super().__init__(f"already signed off as revision {revision} by {reviewer or 'unknown'} ({created_utc}); "
                         "nothing changed since, so no new revision was written")
        self.revision, self.reviewer, self.created_utc = revision, reviewer, created_utc


def content_key(masks: Sequence[tuple[str, bool, np.ndarray]], manual_kpa: float | None, comment: str,
                reviewer: str) -> str:
    """A fingerprint of what a reader signs: every slice's ROI and exclusion, the manual value, comment, reviewer."""
    import hashlib

    h = hashlib.sha256()
    for sop, excluded, roi in sorted(masks, key=lambda m: m[0]):
        h.update(sop.encode())
        h.update(b"1" if excluded else b"0")
        h.update(np.packbits(np.asarray(roi, dtype=bool), axis=None).tobytes())
    manual = "" if manual_kpa is None or not math.isfinite(float(manual_kpa)) else f"{float(manual_kpa):.4f}"
    h.update(f"|{manual}|{comment.strip()}|{reviewer.strip()}".encode())
    return h.hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def pack_mask(mask: np.ndarray) -> bytes:
    """bool [H, W] → packed bits, zlib-compressed (a 204 x 256 ROI takes well under 1 kB)."""
    return zlib.compress(np.packbits(np.asarray(mask, dtype=bool), axis=None).tobytes(), 6)


def unpack_mask(data: bytes, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`pack_mask`: bool [rows, cols]."""
    bits = np.unpackbits(np.frombuffer(zlib.decompress(data), dtype=np.uint8), count=rows * cols)
    return bits.astype(bool).reshape(rows, cols)


def settings_json(settings: Settings) -> str:
    """The settings used, as JSON (paths as strings, the staging table with its sources)."""
    d = dataclasses.asdict(settings)
    d["weights_dir"] = str(settings.weights_dir)
    d.pop("db_url", None)  # may hold a password; the store knows where it is
    return json.dumps(d, default=str, sort_keys=True)


@dataclass(frozen=True)
class SavedRevision:
    """One revision as read back from the store (numbers, edits, ROI masks by SOP UID)."""

    study_id: int
    revision: int
    kind: str
    created_utc: str
    reviewer: str
    comment: str
    manual_kpa: float | None
    stiffness_kpa: float | None
    stage: str
    qc_flags: str
    model_name: str
    model_sha256: str
    edits: dict[str, Any]
    settings: dict[str, Any]
    slices: pd.DataFrame
    rois: dict[str, np.ndarray]


class Store:
    """The results store at ``url``; the schema is created or upgraded on open.

    >>> s = Store("sqlite://")
    >>> s.version()
    7
    """

    def __init__(self, url: str, schema: int = SCHEMA_VERSION) -> None:
        """Open (and create or upgrade to ``schema``) the store at ``url``; ``schema`` < latest is for tests."""
        self.url = url
        try:
            self.engine = engine_for(url)
            self._upgrade(schema)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open the results store {self.display_url}: {exc}") from exc

    @property
    def display_url(self) -> str:
        """The URL with any password hidden."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def writer(self) -> Iterator[Connection]:
        """A connection inside a write transaction (committed on success, rolled back on error)."""
        with self.engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                yield conn

    # ------------------------------------------------------------------ schema
    def version(self) -> int:
        with self.engine.connect() as conn:
            return current_version(conn)

    def _upgrade(self, target: int = SCHEMA_VERSION) -> None:
        with self.writer() as conn:
            _lock_schema(conn)
            metadata.create_all(conn, tables=[schema_version])
            current = current_version(conn)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the results store {self.display_url} has schema version {current}, newer than this "
                    f"software ({SCHEMA_VERSION}); update MRE Liver Review or point MRE_DB_URL elsewhere"
                )
            for v in range(current + 1, target + 1):
                MIGRATIONS[v](conn)
                conn.execute(schema_version.insert().values(version=v, applied_utc=_now()))

    # ------------------------------------------------------------------ writes
    def save(self, result: StudyResult, *, kind: str = "auto", reviewer: str = "", comment: str = "",
             manual_kpa: float | None = None, edits: dict[str, Any] | None = None, dataset: str = "",
             retries: int = 5, auto_kpa: float | None = None, actor: str | None = None) -> int:
        """Save ``result`` as a new revision of its study; returns the revision number (1, 2, …).

        One transaction: the study row (created on first save), the revision and its slices,
        and an audit entry. Nothing earlier is modified. ``auto_kpa`` is the untouched automatic value the
        reader started from (kept beside the reviewed value); for kind ``auto`` it is the result's own value,
        otherwise, when not given, the study's latest automatic revision's value (or none).

        The audit entry (``save:<kind>``) names ``actor``, the signed-in user who saved (the app passes the
        account name), with the reviewer's typed name in its detail; without an actor it names the reviewer.
        """
        if kind not in KINDS:
            raise ValueError(f"revision kind must be one of {KINDS}, got {kind!r}")
        if kind == "signed_off" and not reviewer.strip():
            raise ValueError("signing off needs the reviewer's name")
        for attempt in range(retries):
            try:
                with self.writer() as conn:
                    return self._save(conn, result, kind, reviewer, comment, manual_kpa, edits or {}, dataset,
                                      auto_kpa, actor)
            except IntegrityError:
                # last resort: _save locks the study before numbering, so only a writer that bypasses the
                # lock (or a non-default isolation level) lands here; the whole transaction is redone
                if attempt == retries - 1:
                    raise
                time.sleep(_retry_pause_s(attempt))
        raise AssertionError("unreachable")

    def _save(self, conn: Connection, r: StudyResult, kind: str, reviewer: str, comment: str,
              manual_kpa: float | None, edits: dict[str, Any], dataset: str, auto_kpa: float | None = None,
              actor: str | None = None) -> int:
        study_id = self._study_id(conn, r, dataset)
        number = _next_revision(conn, study_id)
        if kind == "signed_off":
            self._refuse_repeated_sign_off(conn, study_id, r, manual_kpa, comment, reviewer)
        if kind == "auto":
            auto_kpa = r.stiffness.stiffness_kpa
        elif auto_kpa is None:
            auto_kpa = conn.execute(sa.select(revisions.c.stiffness_kpa).where(
                (revisions.c.study_id == study_id) & (revisions.c.kind == "auto"))
                .order_by(revisions.c.revision.desc()).limit(1)).scalar()
        first = r.study.series.slices[0] if r.study.series.slices else None
        table = r.settings.staging
        staging = {"name": table.name, "title": table.title,
                   "cutoffs": [{"stage": c.stage.label, "lower_kpa": c.lower_kpa, "source": c.source}
                               for c in table.cutoffs]}
        rev_id = conn.execute(revisions.insert().values(
            study_id=study_id, revision=number, kind=kind, created_utc=_now(), reviewer=reviewer,
            comment=comment, manual_kpa=_num(manual_kpa) if manual_kpa is not None else None,
            stiffness_kpa=_num(r.stiffness.stiffness_kpa),
            stiffness_kpa_area_weighted=_num(r.stiffness.stiffness_kpa_area_weighted),
            n_slices=len(r.slices), n_slices_used=r.stiffness.n_slices_used,
            stage=r.stage.stage.label if r.stage else "",
            significant_fibrosis=bool(r.stage.significant_fibrosis) if r.stage else None,
            staging_table_json=json.dumps(staging), qc_flags=";".join(f.value for f in r.qc_flags),
            model_name=r.model_name, model_sha256=r.model_sha256, device=r.device,
            profile=first.profile.value if first else "", runtime_s=_num(r.runtime_s),
            settings_json=settings_json(r.settings), edits_json=json.dumps(edits, default=str),
            auto_stiffness_kpa=_num(auto_kpa) if auto_kpa is not None else None,
        )).inserted_primary_key[0]
        conn.execute(slices.insert(), [_slice_row(rev_id, s) for s in r.slices])
        detail = f"revision {number}" + (f"; reviewer {reviewer!r}" if actor and reviewer else "")
        conn.execute(audit.insert().values(at_utc=_now(), user=(actor or reviewer)[:128], action=f"save:{kind}",
                                           study_id=study_id, revision_id=rev_id, detail=detail))
        return number

    def _study_id(self, conn: Connection, r: StudyResult, dataset: str) -> int:
        """The id of the study row of ``r``, created on its first save.

        Two first saves of one study may race: on PostgreSQL the later INSERT waits for the earlier
        transaction and then hits ``uq_study_series``. The insert runs in a savepoint, so only it is
        undone and the other writer's row (committed by then) is read instead of failing the save.
        """
        found = _find_study(conn, r)
        if found is not None:
            return found
        meta = r.study.meta
        row = {
            "study_uid": r.study_uid, "series_uid": r.series_uid, "patient_id": r.patient_id,
            "patient_name": str(meta.get("PatientName", "")), "study_date": str(meta.get("StudyDate", "")),
            "manufacturer": r.study.series.manufacturer, "series_description": r.study.series.description,
            "dataset": dataset, "source_uids_json": json.dumps([e.sop_uid for e in r.study.series.slices]),
            "created_utc": _now(),
        }
        try:
            with conn.begin_nested():
                return int(conn.execute(studies.insert().values(**row)).inserted_primary_key[0])
        except IntegrityError:
            found = _find_study(conn, r)
            if found is None:  # not the race: some other constraint failed
                raise
            return found

    def _refuse_repeated_sign_off(self, conn: Connection, study_id: int, r: StudyResult, manual_kpa: float | None,
                                  comment: str, reviewer: str) -> None:
        """:class:`AlreadySignedOff` when the latest revision is a sign-off of exactly this content (the study row
        is locked, so two readers clicking at once cannot both pass)."""
        last = conn.execute(sa.select(revisions).where(revisions.c.study_id == study_id)
                            .order_by(revisions.c.revision.desc()).limit(1)).mappings().first()
        if last is None or last["kind"] != "signed_off":
            return
        rows = conn.execute(sa.select(slices.c.sop_uid, slices.c.excluded, slices.c.roi_packed, slices.c.roi_rows,
                                      slices.c.roi_cols).where(slices.c.revision_id == last["id"])).all()
        before = content_key([(s.sop_uid, bool(s.excluded), unpack_mask(s.roi_packed, s.roi_rows, s.roi_cols))
                              for s in rows], last["manual_kpa"], last["comment"], last["reviewer"])
        now = content_key([(s.sop_uid, bool(s.excluded), np.asarray(s.roi, bool)) for s in r.slices], manual_kpa,
                          comment, reviewer)
        if before == now:
            raise AlreadySignedOff(int(last["revision"]), str(last["reviewer"]), str(last["created_utc"]))

    def log_event(self, action: str, detail: str, user: str = "", *, study_uid: str | None = None,
                  series_uid: str | None = None) -> None:
        """Append one entry to the audit log (e.g. ``intake:rejected`` with the file and reason).

        With ``study_uid`` (and ``series_uid``) the entry is linked to that study when the store has it, so
        :func:`mre_core.store.audit.read_audit` shows its UIDs; put the UID in ``detail`` too for a study not
        saved yet."""
        with self.writer() as conn:
            study_id = None
            if study_uid:
                q = sa.select(studies.c.id).where(studies.c.study_uid == study_uid)
                if series_uid:
                    q = q.where(studies.c.series_uid == series_uid)
                study_id = conn.execute(q.order_by(studies.c.id).limit(1)).scalar()
            conn.execute(audit.insert().values(at_utc=_now(), user=user[:128], action=action[:32], detail=detail,
                                               study_id=study_id))

    # ------------------------------------------------------------------ reads
    def history(self, study_uid: str, series_uid: str | None = None) -> pd.DataFrame:
        """Every revision of a study, oldest first (one row each, no slices)."""
        q = (sa.select(revisions.c.revision, revisions.c.kind, revisions.c.created_utc, revisions.c.reviewer,
                       revisions.c.stiffness_kpa, revisions.c.stage, revisions.c.manual_kpa, revisions.c.comment,
                       revisions.c.model_name, studies.c.series_uid)
             .join_from(revisions, studies).where(studies.c.study_uid == study_uid)
             .order_by(revisions.c.revision))
        if series_uid:
            q = q.where(studies.c.series_uid == series_uid)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all(), columns=list(q.selected_columns.keys()))

    def load_revision(self, study_uid: str, series_uid: str, revision: int | None = None) -> SavedRevision | None:
        """One revision (the latest when ``revision`` is None), with its slices and ROI masks."""
        with self.engine.connect() as conn:
            q = (sa.select(revisions, studies.c.study_uid).join_from(revisions, studies)
                 .where((studies.c.study_uid == study_uid) & (studies.c.series_uid == series_uid)))
            q = q.where(revisions.c.revision == revision) if revision else q.order_by(revisions.c.revision.desc())
            row = conn.execute(q.limit(1)).mappings().first()
            if row is None:
                return None
            srows = conn.execute(sa.select(slices).where(slices.c.revision_id == row["id"])
                                 .order_by(slices.c.id)).mappings().all()
        rois = {s["sop_uid"]: unpack_mask(s["roi_packed"], s["roi_rows"], s["roi_cols"]) for s in srows}
        table = pd.DataFrame([{k: v for k, v in s.items() if k not in ("roi_packed", "revision_id", "id")}
                              for s in srows])
        return SavedRevision(
            study_id=row["study_id"], revision=row["revision"], kind=row["kind"], created_utc=row["created_utc"],
            reviewer=row["reviewer"], comment=row["comment"], manual_kpa=row["manual_kpa"],
            stiffness_kpa=row["stiffness_kpa"], stage=row["stage"], qc_flags=row["qc_flags"],
            model_name=row["model_name"], model_sha256=row["model_sha256"],
            edits=json.loads(row["edits_json"] or "{}"), settings=json.loads(row["settings_json"]),
            slices=table, rois=rois,
        )

    def latest_slices(self, study_uid: str, series_uid: str) -> tuple[int | None, str, frozenset[str]]:
        """The latest revision's number, kind and slice SOP UIDs (``(None, "", ∅)`` if never saved)."""
        q = (sa.select(revisions.c.id, revisions.c.revision, revisions.c.kind).join_from(revisions, studies)
             .where((studies.c.study_uid == study_uid) & (studies.c.series_uid == series_uid))
             .order_by(revisions.c.revision.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
            if row is None:
                return None, "", frozenset()
            sops = conn.execute(sa.select(slices.c.sop_uid).where(slices.c.revision_id == row[0])).scalars().all()
        return int(row[1]), str(row[2]), frozenset(sops)

    def latest_table(self, dataset: str | None = None) -> pd.DataFrame:
        """The latest revision of every study, one row each (the cohort page's input)."""
        latest = (sa.select(revisions.c.study_id, sa.func.max(revisions.c.revision).label("rev"))
                  .group_by(revisions.c.study_id).subquery())
        q = (sa.select(studies.c.patient_id, studies.c.study_uid, studies.c.series_uid, studies.c.patient_name,
                       studies.c.study_date, studies.c.manufacturer, studies.c.dataset, revisions.c.revision,
                       revisions.c.kind, revisions.c.created_utc, revisions.c.reviewer, revisions.c.stiffness_kpa,
                       revisions.c.auto_stiffness_kpa.label("auto_kpa"),
                       revisions.c.stiffness_kpa_area_weighted, revisions.c.n_slices_used, revisions.c.stage,
                       revisions.c.significant_fibrosis, revisions.c.qc_flags, revisions.c.manual_kpa,
                       revisions.c.comment, revisions.c.model_name, revisions.c.model_sha256, revisions.c.profile)
             .join_from(revisions, studies)
             .join(latest, (latest.c.study_id == revisions.c.study_id) & (latest.c.rev == revisions.c.revision))
             .order_by(studies.c.patient_id))
        if dataset is not None:
            q = q.where(studies.c.dataset == dataset)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all(), columns=list(q.selected_columns.keys()))

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
                    for t in (studies, revisions, slices, audit)}

    def dispose(self) -> None:
        self.engine.dispose()


def _lock_schema(conn: Connection) -> None:
    """On PostgreSQL, let one opener at a time create or upgrade the schema (held until commit).

    Processes opening a new database at once would otherwise all run CREATE TABLE and all but one
    fail. SQLite needs nothing: the writer already holds the database lock from BEGIN IMMEDIATE.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))


def _find_study(conn: Connection, r: StudyResult) -> int | None:
    key = (studies.c.study_uid == r.study_uid) & (studies.c.series_uid == r.series_uid)
    found = conn.execute(sa.select(studies.c.id).where(key)).scalar()
    return None if found is None else int(found)


def _next_revision(conn: Connection, study_id: int) -> int:
    """The next revision number of ``study_id``; the study row stays locked until the transaction ends.

    With the row locked (``FOR UPDATE`` on PostgreSQL) a second writer of the same study waits here
    until the first commits; its max() is then a new statement under READ COMMITTED and sees the
    first writer's revision. SQLite compiles no FOR UPDATE: BEGIN IMMEDIATE already serialises writers.
    """
    conn.execute(sa.select(studies.c.id).where(studies.c.id == study_id).with_for_update())
    last = conn.execute(sa.select(sa.func.max(revisions.c.revision)).where(revisions.c.study_id == study_id))
    return int(last.scalar() or 0) + 1


def _retry_pause_s(attempt: int) -> float:
    """Seconds to wait before retry ``attempt + 1``: doubling, capped, with jitter so writers spread out."""
    return min(1.0, _RETRY_PAUSE_S * 2**attempt) * (1.0 + random.random() / 2)


def _slice_row(revision_id: int, s: Any) -> dict[str, Any]:
    st = s.stats
    roi = np.asarray(s.roi, dtype=bool)
    return {
        "revision_id": revision_id, "sop_uid": s.sop_uid, "instance_number": int(s.instance_number),
        "position_mm": float(s.position_mm), "excluded": bool(s.excluded), "n_pixels": int(st.n_pixels),
        "area_cm2": float(st.area_cm2), "mean_kpa": _num(st.mean_kpa), "median_kpa": _num(st.median_kpa),
        "sd_kpa": _num(st.sd_kpa), "p25_kpa": _num(st.p25_kpa), "p75_kpa": _num(st.p75_kpa),
        "confidence_area_cm2": float(s.confidence_area_cm2), "qc_flags": ";".join(f.value for f in s.qc_flags),
        "roi_rows": roi.shape[0], "roi_cols": roi.shape[1], "roi_packed": pack_mask(roi),
    }


def open_store(settings: Settings) -> Store:
    """The store named by ``settings.db_url``."""
    return Store(settings.db_url)


__all__: Sequence[str] = ("AlreadySignedOff", "KINDS", "content_key", "MIGRATIONS", "SCHEMA_VERSION", "SavedRevision", "Store", "StoreError", "open_store",
                          "pack_mask", "unpack_mask")
