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

Study status moves ``receiving`` → ``processing`` → ``done`` | ``not analysed`` | ``failed``; a
new instance for a study puts it back to ``receiving`` (it is analysed again once quiet).
A study is *ready* when it is ``receiving`` and nothing has arrived for the quiet period.
After a restart, :meth:`Inbox.recover` puts ``processing`` studies back to ``receiving`` and
registers any file on disk that the store does not know, so nothing received is forgotten.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pydicom
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mre_core.store.results import Store
from mre_core.store.schema import forwards, inbox_instances, inbox_studies

log = logging.getLogger(__name__)

RECEIVING, PROCESSING, DONE, NOT_ANALYSED, FAILED = "receiving", "processing", "done", "not analysed", "failed"
PENDING, SENT = "pending", "sent"


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

    def add(self, keys: InstanceKeys, data: bytes, origin: str, now: float | None = None) -> bool:
        """File one instance (bytes of a DICOM file with preamble); ``False`` if it was a duplicate.

        The file is on disk before the row is written; a duplicate SOP Instance UID keeps the
        first copy and changes nothing.
        """
        if self.has(keys.sop_uid):
            return False
        path = self.study_dir(keys.study_uid) / _safe(keys.series_uid) / f"{_safe(keys.sop_uid)}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return self._register(keys, path, origin, time.time() if now is None else now)

    def _register(self, keys: InstanceKeys, path: Path, origin: str, now: float) -> bool:
        try:
            with self.store.writer() as conn:
                conn.execute(inbox_instances.insert().values(
                    sop_uid=keys.sop_uid, study_uid=keys.study_uid, series_uid=keys.series_uid, path=str(path),
                    received_at=now, origin=origin))
                row = conn.execute(sa.select(inbox_studies.c.status)
                                   .where(inbox_studies.c.study_uid == keys.study_uid)).first()
                if row is None:
                    conn.execute(inbox_studies.insert().values(
                        study_uid=keys.study_uid, patient_id=keys.patient_id, patient_name=keys.patient_name,
                        study_date=keys.study_date, origin=origin, status=RECEIVING, n_instances=1,
                        first_received_at=now, last_received_at=now, attempts=0, detail=""))
                else:
                    conn.execute(inbox_studies.update().where(inbox_studies.c.study_uid == keys.study_uid).values(
                        status=RECEIVING, n_instances=inbox_studies.c.n_instances + 1, last_received_at=now))
            return True
        except IntegrityError:  # the same SOP instance registered concurrently: a duplicate
            return False

    # ------------------------------------------------------------------ queue
    def ready(self, quiet_s: float, now: float | None = None) -> list[str]:
        """Studies still ``receiving`` whose last instance arrived at least ``quiet_s`` ago, oldest first."""
        now = time.time() if now is None else now
        q = (sa.select(inbox_studies.c.study_uid)
             .where((inbox_studies.c.status == RECEIVING) & (inbox_studies.c.last_received_at <= now - quiet_s))
             .order_by(inbox_studies.c.last_received_at))
        with self.store.engine.connect() as conn:
            return [r[0] for r in conn.execute(q)]

    def claim(self, study_uid: str, quiet_s: float, now: float | None = None) -> bool:
        """Move a ready study to ``processing`` (one transaction); ``False`` if it is not ready any more."""
        now = time.time() if now is None else now
        with self.store.writer() as conn:
            res = conn.execute(inbox_studies.update()
                               .where((inbox_studies.c.study_uid == study_uid)
                                      & (inbox_studies.c.status == RECEIVING)
                                      & (inbox_studies.c.last_received_at <= now - quiet_s))
                               .values(status=PROCESSING, attempts=inbox_studies.c.attempts + 1))
            return res.rowcount == 1

    def finish(self, study_uid: str, status: str, detail: str, series_uid: str = "") -> None:
        """Record the outcome, unless an instance arrived meanwhile (then the study stays ``receiving``)."""
        with self.store.writer() as conn:
            conn.execute(inbox_studies.update()
                         .where((inbox_studies.c.study_uid == study_uid) & (inbox_studies.c.status == PROCESSING))
                         .values(status=status, detail=detail[:4000], series_uid=series_uid, finished_at=time.time()))

    def requeue(self, study_uid: str) -> bool:
        """Analyse a finished, failed or not-analysed study again (the reader's "retry"); ``False`` if busy."""
        with self.store.writer() as conn:
            res = conn.execute(inbox_studies.update()
                               .where((inbox_studies.c.study_uid == study_uid)
                                      & inbox_studies.c.status.in_((DONE, FAILED, NOT_ANALYSED)))
                               .values(status=RECEIVING))
            return res.rowcount == 1

    def files(self, study_uid: str) -> list[Path]:
        """Every registered file of a study."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(inbox_instances.c.path).where(inbox_instances.c.study_uid == study_uid)
                                .order_by(inbox_instances.c.received_at)).all()
        return [Path(r[0]) for r in rows]

    def recover(self) -> dict[str, int]:
        """After a restart: interrupted studies back to ``receiving``; unregistered files registered.

        Returns counts ``{"requeued": n, "registered": m}``.
        """
        with self.store.writer() as conn:
            requeued = conn.execute(inbox_studies.update().where(inbox_studies.c.status == PROCESSING)
                                    .values(status=RECEIVING)).rowcount
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
        if requeued or registered:
            log.warning("inbox recovery: %d interrupted studies re-queued, %d files registered", requeued, registered)
        return {"requeued": int(requeued), "registered": registered}

    def status(self, study_uid: str) -> dict | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(inbox_studies).where(inbox_studies.c.study_uid == study_uid)).mappings().first()
        return dict(row) if row else None

    # ------------------------------------------------------------------ forwarding queue
    def queue_forward(self, study_uid: str, what: str, path: Path, destination: str) -> None:
        now = time.time()
        with self.store.writer() as conn:
            conn.execute(forwards.insert().values(study_uid=study_uid, what=what, path=str(path),
                                                  destination=destination, status=PENDING, attempts=0,
                                                  next_attempt_at=now, last_error="", updated_at=now))

    def due_forwards(self, now: float | None = None) -> list[dict]:
        now = time.time() if now is None else now
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(forwards).where((forwards.c.status == PENDING)
                                                          & (forwards.c.next_attempt_at <= now))
                                .order_by(forwards.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def forward_done(self, forward_id: int, ok: bool, error: str, retry_in_s: float | None) -> None:
        """Record one attempt: ``sent``; or ``pending`` again after ``retry_in_s``; or ``failed`` when ``None``."""
        now = time.time()
        status = SENT if ok else (PENDING if retry_in_s is not None else FAILED)
        with self.store.writer() as conn:
            conn.execute(forwards.update().where(forwards.c.id == forward_id).values(
                status=status, attempts=forwards.c.attempts + 1, last_error=error[:2000], updated_at=now,
                next_attempt_at=now + (retry_in_s or 0.0)))

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


__all__ = ["DONE", "FAILED", "Inbox", "InstanceKeys", "NOT_ANALYSED", "PENDING", "PROCESSING",
           "RECEIVING", "SENT", "fmt_time"]
