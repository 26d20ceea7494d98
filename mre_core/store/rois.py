"""The automatic and the reader's ROI of each saved study, slice by slice (for their overlap on the cohort page).

A study reviewed on the Review page has two kinds of revision in the store: the model's result as it came out
(``auto``, written by the listener's worker or before the first review save) and the reader's (``review`` /
``signed_off``). :func:`roi_pairs` returns, for each study that has both, every slice present in both with the
two masks, so that :func:`mre_core.stats.overlap.roi_overlap` can measure Dice and IoU between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from mre_core.store.results import Store, unpack_mask
from mre_core.store.schema import revisions, slices, studies

READER_KINDS = ("review", "signed_off")


@dataclass(frozen=True)
class RoiPair:
    """One slice's automatic and reader ROI (boolean masks on the native grid)."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    auto_revision: int
    reader_revision: int
    reader_kind: str
    reviewer: str
    auto_roi: np.ndarray
    reader_roi: np.ndarray
    reader_excluded: bool  #: the reader left the slice out of the study value


def _latest(conn: sa.Connection, study_id: int, kinds: tuple[str, ...]) -> sa.RowMapping | None:
    return conn.execute(sa.select(revisions.c.id, revisions.c.revision, revisions.c.kind, revisions.c.reviewer)
                        .where((revisions.c.study_id == study_id) & revisions.c.kind.in_(kinds))
                        .order_by(revisions.c.revision.desc()).limit(1)).mappings().first()


def _masks(conn: sa.Connection, revision_id: int) -> dict[str, tuple[np.ndarray, bool]]:
    rows = conn.execute(sa.select(slices.c.sop_uid, slices.c.excluded, slices.c.roi_packed, slices.c.roi_rows,
                                  slices.c.roi_cols).where(slices.c.revision_id == revision_id)).all()
    return {r.sop_uid: (unpack_mask(r.roi_packed, r.roi_rows, r.roi_cols), bool(r.excluded)) for r in rows}


def roi_pairs(store: Store, study_uids: Iterable[str] | None = None) -> Iterator[RoiPair]:
    """Every slice of every study (or of ``study_uids``) that has an automatic and a reader revision: the latest
    reader revision and the latest automatic revision of the same series."""
    def has(kinds: tuple[str, ...]) -> sa.Exists:
        return sa.exists().where((revisions.c.study_id == studies.c.id) & revisions.c.kind.in_(kinds))

    # only studies with both kinds of revision are read further (the cohort page calls this on every run)
    q = (sa.select(studies.c.id, studies.c.patient_id, studies.c.study_uid, studies.c.series_uid)
         .where(has(READER_KINDS) & has(("auto",))))
    wanted = None if study_uids is None else set(study_uids)
    with store.engine.connect() as conn:
        for sid, patient_id, study_uid, series_uid in conn.execute(q).all():
            if wanted is not None and study_uid not in wanted:
                continue
            reader = _latest(conn, sid, READER_KINDS)
            auto = _latest(conn, sid, ("auto",))
            if reader is None or auto is None:
                continue
            a, r = _masks(conn, auto["id"]), _masks(conn, reader["id"])
            for sop in sorted(set(a) & set(r)):
                if a[sop][0].shape != r[sop][0].shape:
                    continue
                yield RoiPair(str(patient_id), str(study_uid), str(series_uid), sop, int(auto["revision"]),
                              int(reader["revision"]), str(reader["kind"]), str(reader["reviewer"]), a[sop][0],
                              r[sop][0], r[sop][1])


__all__ = ["READER_KINDS", "RoiPair", "roi_pairs"]
