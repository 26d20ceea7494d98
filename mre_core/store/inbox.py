"""The inbox: DICOM instances that arrived by network or watch folder, and their studies' queue state.

Everything a sender gives us is written to disk **first** (``<root>/<study>/<series>/<sop>.dcm``,
via a temporary file and an atomic rename), then registered in the results store, so a crash
loses nothing that was acknowledged. Three tables live in the same database as the results
(schema version 3, see :mod:`mre_core.store.results`):

``inbox_instances``
    one row per SOP Instance UID ever received (the unique key makes a duplicate send a no-op).
``inbox_studies``
    one row per study: its queue status, when its last instance arrived, the analysis outcome.
``forwards``
    DICOM objects (SEG, SR) waiting to be sent to, or sent to, a destination AE, with attempts.

``outputs``
    the SEG, SR and PDF written for a saved revision (path, SHA-256), so a crash between steps is
    resumed where it stopped (:mod:`mre_core.workflow.steps`).

Study status moves ``receiving`` → ``processing`` → ``done`` | ``not analysed`` | ``failed``; a
new instance for a study puts it back to ``receiving`` (it is analysed again once quiet).
A study is *ready* when it is ``receiving`` and nothing has arrived for the quiet period (counted
from the last arrival, or from the last restart: :meth:`Inbox.recover`), or when the worker that
claimed it died (its lease ran out, or it was a process on this host that no longer runs).

Several workers may share one store: a study and a forward are taken by an atomic conditional
``UPDATE`` (one transaction; on SQLite under ``BEGIN IMMEDIATE``, on PostgreSQL the row lock of the
update makes a second claimer see the row already taken), stamped with the worker's id
(``host:pid``) and a lease. After a restart, :meth:`Inbox.recover` releases the claims of dead
workers and registers any file on disk that the store does not know, so nothing received is forgotten.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pydicom
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mre_core.store.results import Store
from mre_core.store.schema import forwards, inbox_instances, inbox_studies, outputs

log = logging.getLogger(__name__)

RECEIVING, PROCESSING, DONE, NOT_ANALYSED, FAILED = "receiving", "processing", "done", "not analysed", "failed"
#: The source files of a study that was uploaded in the browser and saved there, kept so that it opens with its
#: images from any page (:func:`mre_core.workflow.keep.keep_study_files`); never taken by a worker.
KEPT = "kept"
PENDING, SENDING, SENT = "pending", "sending", "sent"
DEFAULT_LEASE_S = 600.0  #: a claim older than this is taken as abandoned (a worker on another host died)


def worker_id() -> str:
    """This process as a claimer: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_is_dead(claimed_by: str) -> bool:
    """Whether a claim belongs to a process of this host that no longer runs (or to no one).

    Claims of other hosts are never judged here (their lease expires instead); a claim by this very
    process id before this process claimed anything is a previous process that had the same pid."""
    if not claimed_by:
        return True
    host, _, pid_text = claimed_by.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    import psutil

    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass(frozen=True)
class InstanceKeys:
    """What the inbox needs from an instance's header."""

    sop_uid: str
    study_uid: str
    series_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""

    @classmethod
    def from_dataset(cls, ds: pydicom.Dataset) -> InstanceKeys:
        """Keys from a header; raises ``ValueError`` naming the missing UID."""
        for tag in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not str(ds.get(tag, "")).strip():
                raise ValueError(f"no {tag}: the instance cannot be filed")
        return cls(str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                   str(ds.get("PatientID", "")), str(ds.get("PatientName", "")), str(ds.get("StudyDate", "")))


def _safe(uid: str) -> str:
    """A UID as a file/folder name (UIDs are digits and dots; anything else is replaced)."""
    return re.sub(r"[^0-9A-Za-z.\-]", "_", uid)[:128] or "unknown"


def fmt_time(epoch: float | None) -> str:
    """Epoch seconds → local ``YYYY-MM-DD HH:MM:SS`` (empty for ``None``)."""
    if epoch is None or pd.isna(epoch):
        return ""
    return _dt.datetime.fromtimestamp(float(epoch)).strftime("%Y-%m-%d %H:%M:%S")


class Inbox:
    """Received instances under ``root`` and their queue state in ``store``'s database."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = Path(root)  # created with the first instance

    def study_dir(self, study_uid: str) -> Path:
        return self.root / _safe(study_uid)

    # ------------------------------------------------------------------ receiving
    def has(self, sop_uid: str) -> bool:
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(inbox_instances.c.sop_uid)
                                .where(inbox_instances.c.sop_uid == sop_uid)).first() is not None

    def add(self, keys: InstanceKeys, data: bytes, origin: str, now: float | None = None, kept: bool = False) -> bool:
        """File one instance (bytes of a DICOM file with preamble); ``False`` if it was a duplicate.

        The file is on disk before the row is written; a duplicate SOP Instance UID keeps the
        first copy and changes nothing. ``kept``: a file of a study reviewed from an upload, filed so the
        study can be opened again — its study row is ``kept`` (a new one) or left in its state (an
        existing one), so no worker analyses it because of this file.
        """
        if self.has(keys.sop_uid):
            return False
        path = self.study_dir(keys.study_uid) / _safe(keys.series_uid) / f"{_safe(keys.sop_uid)}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return self._register(keys, path, origin, time.time() if now is None else now, kept)

    def _register(self, keys: InstanceKeys, path: Path, origin: str, now: float, kept: bool = False) -> bool:
        """Register one filed instance and create or touch its study row; ``False`` for a duplicate SOP instance.

        Two different instances of a new study may arrive at once (two associations): the later study INSERT
        then hits the primary key. It runs in a savepoint, so only that insert is undone and the study row the
        other writer created is updated instead — the instance is never dropped."""
        try:
            with self.store.writer() as conn:
                conn.execute(inbox_instances.insert().values(
                    sop_uid=keys.sop_uid, study_uid=keys.study_uid, series_uid=keys.series_uid, path=str(path),
                    received_at=now, origin=origin))
                if not self._touch_study(conn, keys.study_uid, now, kept):
                    try:
                        with conn.begin_nested():
                            conn.execute(inbox_studies.insert().values(
                                study_uid=keys.study_uid, patient_id=keys.patient_id, patient_name=keys.patient_name,
                                study_date=keys.study_date, origin=origin, status=KEPT if kept else RECEIVING,
                                n_instances=1, first_received_at=now, last_received_at=now, quiet_from=now,
                                attempts=0, detail="", claimed_by=""))
                    except IntegrityError:  # created meanwhile by the other arrival
                        self._touch_study(conn, keys.study_uid, now, kept)
            return True
        except IntegrityError:  # the same SOP instance registered concurrently: a duplicate
            return False

    @staticmethod
    def _touch_study(conn, study_uid: str, now: float, kept: bool = False) -> bool:
        """One more instance for an existing study row (back to ``receiving``; a ``kept`` file leaves the state as
        it is); ``False`` if there is no row."""
        values = {"n_instances": inbox_studies.c.n_instances + 1}
        if not kept:
            values.update(status=RECEIVING, last_received_at=now, quiet_from=now)
        res = conn.execute(inbox_studies.update().where(inbox_studies.c.study_uid == study_uid).values(**values))
        return res.rowcount == 1

    # ------------------------------------------------------------------ queue
    @staticmethod
    def _takeable(quiet_s: float, now: float) -> sa.ColumnElement[bool]:
        """Quiet ``receiving`` studies, and ``processing`` ones whose claim's lease ran out."""
        quiet_since = sa.func.coalesce(inbox_studies.c.quiet_from, inbox_studies.c.last_received_at)
        return (((inbox_studies.c.status == RECEIVING) & (quiet_since <= now - quiet_s))
                | ((inbox_studies.c.status == PROCESSING) & (inbox_studies.c.lease_until < now)))

    def ready(self, quiet_s: float, now: float | None = None) -> list[str]:
        """Studies to take now (quiet, or abandoned by a dead worker), oldest arrival first."""
        now = time.time() if now is None else now
        q = (sa.select(inbox_studies.c.study_uid).where(self._takeable(quiet_s, now))
             .order_by(inbox_studies.c.last_received_at))
        with self.store.engine.connect() as conn:
            return [r[0] for r in conn.execute(q)]

    def claim(self, study_uid: str, quiet_s: float, now: float | None = None, worker: str | None = None,
              lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Take a ready study for ``worker`` (default: this process) with a lease; ``False`` if it is not ready
        any more or another worker took it first (one conditional UPDATE: exactly one claimer wins)."""
        now = time.time() if now is None else now
        with self.store.writer() as conn:
            res = conn.execute(inbox_studies.update()
                               .where((inbox_studies.c.study_uid == study_uid) & self._takeable(quiet_s, now))
                               .values(status=PROCESSING, attempts=inbox_studies.c.attempts + 1,
                                       claimed_by=worker or worker_id(), lease_until=now + lease_s))
            return res.rowcount == 1

    def renew(self, study_uid: str, lease_s: float = DEFAULT_LEASE_S, worker: str | None = None) -> bool:
        """Extend this worker's lease on a study it is processing (between steps); ``False`` if it lost it."""
        with self.store.writer() as conn:
            res = conn.execute(inbox_studies.update()
                               .where((inbox_studies.c.study_uid == study_uid)
                                      & (inbox_studies.c.status == PROCESSING)
                                      & (inbox_studies.c.claimed_by == (worker or worker_id())))
                               .values(lease_until=time.time() + lease_s))
            return res.rowcount == 1

    def finish(self, study_uid: str, status: str, detail: str, series_uid: str = "",
               worker: str | None = None) -> None:
        """Record the outcome, unless an instance arrived meanwhile (then the study stays ``receiving``) or
        another worker holds the claim now (``worker`` given)."""
        cond = (inbox_studies.c.study_uid == study_uid) & (inbox_studies.c.status == PROCESSING)
        if worker:
            cond = cond & (inbox_studies.c.claimed_by == worker)
        with self.store.writer() as conn:
            conn.execute(inbox_studies.update().where(cond)
                         .values(status=status, detail=detail[:4000], series_uid=series_uid, finished_at=time.time(),
                                 claimed_by="", lease_until=None))

    def requeue(self, study_uid: str) -> bool:
        """Run a finished, failed or not-analysed study's steps again (the reader's "Analyse again": whatever is
        missing — result, SEG, SR, PDF, forwards — is done; what exists is kept); ``False`` if busy."""
        with self.store.writer() as conn:
            res = conn.execute(inbox_studies.update()
                               .where((inbox_studies.c.study_uid == study_uid)
                                      & inbox_studies.c.status.in_((DONE, FAILED, NOT_ANALYSED, KEPT)))
                               .values(status=RECEIVING, quiet_from=0.0))
            return res.rowcount == 1

    def set_kept_series(self, study_uid: str, series_uid: str) -> None:
        """Name the elastogram series of a ``kept`` study (the worklist shows its saved result)."""
        with self.store.writer() as conn:
            conn.execute(inbox_studies.update().where((inbox_studies.c.study_uid == study_uid)
                                                      & (inbox_studies.c.status == KEPT))
                         .values(series_uid=series_uid, detail="uploaded in the browser; files kept with its review"))

    def files(self, study_uid: str) -> list[Path]:
        """Every registered file of a study."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(inbox_instances.c.path).where(inbox_instances.c.study_uid == study_uid)
                                .order_by(inbox_instances.c.received_at)).all()
        return [Path(r[0]) for r in rows]

    def recover(self, now: float | None = None) -> dict[str, int]:
        """At start-up: release the claims of dead workers, restart every waiting study's quiet period, and
        register files on disk that the store does not know.

        A ``processing`` study or ``sending`` forward claimed by a process of this host that no longer runs
        goes back to the queue at once (a claim of another host waits for its lease). Every ``receiving``
        study's quiet period starts again now: instances of a partly received study may still be on their
        way after the downtime. Returns counts ``{"requeued": n, "registered": m, "forwards": k}``.
        """
        now = time.time() if now is None else now
        with self.store.engine.connect() as conn:
            busy = conn.execute(sa.select(inbox_studies.c.study_uid, inbox_studies.c.claimed_by)
                                .where(inbox_studies.c.status == PROCESSING)).all()
            sending = conn.execute(sa.select(forwards.c.id, forwards.c.claimed_by)
                                   .where(forwards.c.status == SENDING)).all()
        dead_studies = [uid for uid, who in busy if claim_is_dead(who)]
        dead_forwards = [fid for fid, who in sending if claim_is_dead(who)]
        with self.store.writer() as conn:
            if dead_studies:
                conn.execute(inbox_studies.update().where(inbox_studies.c.study_uid.in_(dead_studies)
                                                          & (inbox_studies.c.status == PROCESSING))
                             .values(status=RECEIVING, claimed_by="", lease_until=None))
            if dead_forwards:
                conn.execute(forwards.update().where(forwards.c.id.in_(dead_forwards) & (forwards.c.status == SENDING))
                             .values(status=PENDING, claimed_by="", lease_until=None, next_attempt_at=now))
            conn.execute(inbox_studies.update().where(inbox_studies.c.status == RECEIVING).values(quiet_from=now))
        registered = 0
        for path in sorted(self.root.rglob("*.dcm")) if self.root.is_dir() else []:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                keys = InstanceKeys.from_dataset(ds)
            except Exception as exc:  # noqa: BLE001 - a damaged file is reported, the others go on
                log.warning("inbox file %s cannot be read (%s); left where it is", path, exc)
                continue
            if not self.has(keys.sop_uid) and self._register(keys, path, "recovered", path.stat().st_mtime):
                registered += 1
        if registered:  # a file found now restarts its study's quiet period as well
            with self.store.writer() as conn:
                conn.execute(inbox_studies.update().where(inbox_studies.c.status == RECEIVING).values(quiet_from=now))
        if dead_studies or registered or dead_forwards:
            log.warning("inbox recovery: %d interrupted studies re-queued, %d files registered, %d forwards "
                        "released", len(dead_studies), registered, len(dead_forwards))
        return {"requeued": len(dead_studies), "registered": registered, "forwards": len(dead_forwards)}

    def status(self, study_uid: str) -> dict | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(inbox_studies).where(inbox_studies.c.study_uid == study_uid)).mappings().first()
        return dict(row) if row else None

    # ------------------------------------------------------------------ outputs (SEG, SR, PDF)
    def record_output(self, study_uid: str, series_uid: str, revision: int, what: str, path: Path, sha256: str,
                      sop_uid: str = "") -> None:
        """Note that ``what`` of a revision is on disk (written before, atomically); a second note is a no-op."""
        row = dict(study_uid=study_uid, series_uid=series_uid, revision=int(revision), what=what, path=str(path),
                   sha256=sha256, sop_uid=sop_uid, written_at=time.time())
        try:
            with self.store.writer() as conn:
                conn.execute(outputs.insert().values(**row))
        except IntegrityError:  # recorded already (a resumed step): keep the first note
            pass

    def outputs(self, study_uid: str, series_uid: str, revision: int) -> dict[str, dict]:
        """The recorded outputs of one revision, by kind (``SEG``, ``SR``, ``PDF``)."""
        q = sa.select(outputs).where((outputs.c.study_uid == study_uid) & (outputs.c.series_uid == series_uid)
                                     & (outputs.c.revision == int(revision)))
        with self.store.engine.connect() as conn:
            return {r["what"]: dict(r) for r in conn.execute(q).mappings()}

    # ------------------------------------------------------------------ forwarding queue
    def queue_forward(self, study_uid: str, what: str, path: Path, destination: str, sop_uid: str = "",
                      series_uid: str = "") -> bool:
        """Queue one object for a destination; ``False`` when that object is queued (or sent) there already."""
        now = time.time()
        same = ((forwards.c.study_uid == study_uid) & (forwards.c.destination == destination)
                & ((forwards.c.sop_uid == sop_uid) if sop_uid else (forwards.c.path == str(path))))
        with self.store.writer() as conn:
            if conn.execute(sa.select(forwards.c.id).where(same).limit(1)).first() is not None:
                return False
            conn.execute(forwards.insert().values(study_uid=study_uid, what=what, path=str(path),
                                                  destination=destination, status=PENDING, attempts=0,
                                                  next_attempt_at=now, last_error="", updated_at=now,
                                                  sop_uid=sop_uid, series_uid=series_uid, claimed_by=""))
        return True

    @staticmethod
    def _due(now: float) -> sa.ColumnElement[bool]:
        return (((forwards.c.status == PENDING) & (forwards.c.next_attempt_at <= now))
                | ((forwards.c.status == SENDING) & (forwards.c.lease_until < now)))

    def due_forwards(self, now: float | None = None) -> list[dict]:
        """Objects to send now: pending and due, or abandoned mid-send by a dead worker (lease ran out)."""
        now = time.time() if now is None else now
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(forwards).where(self._due(now)).order_by(forwards.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def claim_forward(self, forward_id: int, worker: str | None = None, lease_s: float = DEFAULT_LEASE_S,
                      now: float | None = None) -> bool:
        """Take one due object for sending (one conditional UPDATE: of several forwarders exactly one wins)."""
        now = time.time() if now is None else now
        with self.store.writer() as conn:
            res = conn.execute(forwards.update().where((forwards.c.id == forward_id) & self._due(now))
                               .values(status=SENDING, claimed_by=worker or worker_id(), lease_until=now + lease_s,
                                       updated_at=now))
            return res.rowcount == 1

    def forward_done(self, forward_id: int, ok: bool, error: str, retry_in_s: float | None) -> None:
        """Record one attempt: ``sent``; or ``pending`` again after ``retry_in_s``; or ``failed`` when ``None``."""
        now = time.time()
        status = SENT if ok else (PENDING if retry_in_s is not None else FAILED)
        with self.store.writer() as conn:
            conn.execute(forwards.update().where(forwards.c.id == forward_id).values(
                status=status, attempts=forwards.c.attempts + 1, last_error=error[:2000], updated_at=now,
                next_attempt_at=now + (retry_in_s or 0.0), claimed_by="", lease_until=None))

    def forward_table(self, study_uid: str | None = None) -> pd.DataFrame:
        q = sa.select(forwards).order_by(forwards.c.id)
        if study_uid:
            q = q.where(forwards.c.study_uid == study_uid)
        with self.store.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in forwards.columns])

    # ------------------------------------------------------------------ worklist
    def studies_table(self) -> pd.DataFrame:
        """Every inbox study, newest first (raw columns of ``inbox_studies``)."""
        q = sa.select(inbox_studies).order_by(inbox_studies.c.last_received_at.desc())
        with self.store.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in inbox_studies.columns])


__all__ = ["DEFAULT_LEASE_S", "DONE", "FAILED", "Inbox", "InstanceKeys", "KEPT", "NOT_ANALYSED", "PENDING", "PROCESSING",
           "RECEIVING", "SENDING", "SENT", "claim_is_dead", "fmt_time", "worker_id"]
