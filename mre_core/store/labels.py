"""Reader ROIs, the labels a site trains its own model on: the app's reviews and imported reads, one per study.

Two kinds of read reach the store:

app reviews
    revisions of kind ``review`` or ``signed_off`` (``revisions`` and ``slices``, :mod:`mre_core.store.results`):
    the ROI the reader kept on every slice, with the reviewed study value.
imported reads
    DICOM SEG / RTSTRUCT objects a reader made elsewhere, matched image by image to the inbox
    (``reader_rois``, written by :func:`save_imported`; files are read by :mod:`mre_core.workflow.import_rois`).

:func:`labelled_studies` gives one :class:`LabelledStudy` per (study, series): the latest ``signed_off``
revision, else the latest ``review`` revision, else the imported ROIs of that series (when two imported objects
label the same image, the latest import wins). :func:`label_summary` is the same as a table.

This module owns ``reader_rois``; it reads ``studies``, ``revisions`` and ``slices`` and never writes them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from mre_core.store.results import Store, pack_mask, unpack_mask
from mre_core.store.schema import audit, reader_rois, revisions, slices, studies

#: Reads made in the app, the better first.
APP_SOURCES = ("signed_off", "review")
#: Reads imported from DICOM objects.
IMPORT_SOURCES = ("seg", "rtstruct")
#: Every kind of read, in the order :func:`labelled_studies` prefers them.
SOURCES = APP_SOURCES + IMPORT_SOURCES

#: Columns of :func:`label_summary`, in order.
SUMMARY_COLUMNS = ("study_uid", "series_uid", "patient_id", "study_date", "manufacturer", "reader", "read_date",
                   "source", "n_slices")

_CHUNK = 500  # ids per IN (...) clause


@dataclass(frozen=True)
class ReaderRoi:
    """One image's imported reader ROI.

    ``mask`` is bool [rows, cols] on the referenced image's own pixel grid; ``sop_uid`` is that image's SOP
    Instance UID (``<uid>#<frame>`` for a frame of a multi-frame image, as the reader keys slices). Dates are
    DICOM ``YYYYMMDD``; ``source`` is ``"seg"`` or ``"rtstruct"``; ``label`` the segment label or ROI name.
    """

    study_uid: str
    series_uid: str
    sop_uid: str
    mask: np.ndarray
    patient_id: str = ""
    study_date: str = ""
    manufacturer: str = ""
    reader: str = ""
    read_date: str = ""
    source: str = "seg"
    label: str = ""


@dataclass(frozen=True)
class LabelledStudy:
    """One study's reader ROIs, the unit training uses.

    ``rois`` maps SOP UID → bool [rows, cols] for the slices the reader labelled only: a slice the reader
    excluded from the study value is left out (its ROI is not a read). ``source`` is ``"signed_off"``,
    ``"review"``, ``"seg"`` or ``"rtstruct"``. For app reviews ``revision`` is the store revision and
    ``reader_kpa`` its study value (kPa); both are ``None`` for imports.
    """

    study_uid: str
    series_uid: str
    patient_id: str
    study_date: str
    manufacturer: str
    reader: str
    read_date: str
    source: str
    rois: dict[str, np.ndarray]
    revision: int | None = None
    reader_kpa: float | None = None


def dicom_date(value: str | _dt.date) -> str:
    """A date as DICOM ``YYYYMMDD``; accepts ``YYYYMMDD``, ``YYYY-MM-DD`` or a :class:`datetime.date`.

    >>> dicom_date("2025-03-01")
    '20250301'
    """
    if isinstance(value, _dt.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return _dt.datetime.strptime(text, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    raise ValueError(f"date {value!r}: expected YYYYMMDD or YYYY-MM-DD, e.g. 20250301")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- writing imported reads


def _check_roi(roi: ReaderRoi) -> np.ndarray:
    mask = np.asarray(roi.mask)
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f"image {roi.sop_uid}: a ROI mask is 2-D [rows, cols], got shape {mask.shape}")
    if roi.source not in IMPORT_SOURCES:
        raise ValueError(f"image {roi.sop_uid}: source must be one of {IMPORT_SOURCES}, got {roi.source!r}")
    if not (roi.study_uid and roi.series_uid and roi.sop_uid):
        raise ValueError("an imported ROI needs the study, series and SOP Instance UIDs of its image")
    return mask.astype(bool)


def save_imported(store: Store, rois: Sequence[ReaderRoi], *, source_file: str, source_sop_uid: str,
                  imported_by: str) -> tuple[int, int]:
    """Store the ROIs of one imported object; returns ``(added, already there)``.

    One transaction: the new ``reader_rois`` rows and one ``labels:import`` audit entry (by ``imported_by``,
    linked to the study when the store has a result for it) commit together. An image this object was imported
    for before is left as it was and counted as already there, so importing the same file twice adds nothing.

    Raises
    ------
    ValueError
        No ``source_sop_uid``, a mask that is not 2-D, an unknown source, or the same image twice.
    """
    if not source_sop_uid.strip():
        raise ValueError("the imported object has no SOP Instance UID: it cannot be told apart from others")
    masks = [_check_roi(r) for r in rois]
    sops = [r.sop_uid for r in rois]
    if len(set(sops)) != len(sops):
        raise ValueError(f"object {source_sop_uid}: the same image appears twice; merge its masks first")
    if not rois:
        return 0, 0
    added = already = 0
    now = _now()
    with store.writer() as conn:
        have = set(conn.execute(sa.select(reader_rois.c.sop_uid)
                                .where(reader_rois.c.source_sop_uid == source_sop_uid)).scalars())
        for roi, mask in zip(rois, masks):
            if roi.sop_uid in have:
                already += 1
                continue
            row = {"study_uid": roi.study_uid, "series_uid": roi.series_uid, "sop_uid": roi.sop_uid,
                   "patient_id": roi.patient_id, "study_date": roi.study_date, "manufacturer": roi.manufacturer,
                   "reader": roi.reader, "read_date": roi.read_date, "source": roi.source,
                   "source_file": source_file, "source_sop_uid": source_sop_uid, "label": roi.label,
                   "roi_rows": mask.shape[0], "roi_cols": mask.shape[1], "roi_packed": pack_mask(mask),
                   "imported_utc": now, "imported_by": imported_by[:128]}
            try:
                with conn.begin_nested():  # a concurrent import of the same object: that row is already there
                    conn.execute(reader_rois.insert().values(**row))
                added += 1
            except IntegrityError:
                already += 1
        first = rois[0]
        _audit(conn, imported_by, first.study_uid, first.series_uid,
               f"{first.source} {source_sop_uid} from {source_file}: study {first.study_uid}, reader "
               f"{first.reader or 'unnamed'!r}; {added} image ROI(s) added, {already} already there")
    return added, already


def _audit(conn: Connection, user: str, study_uid: str, series_uid: str, detail: str) -> None:
    """One ``labels:import`` entry in the caller's transaction, linked to the study's result row if any."""
    study_id = conn.execute(sa.select(studies.c.id).where((studies.c.study_uid == study_uid)
                                                          & (studies.c.series_uid == series_uid))
                            .order_by(studies.c.id).limit(1)).scalar()
    conn.execute(audit.insert().values(at_utc=_now(), user=user[:128], action="labels:import", detail=detail,
                                       study_id=study_id))


# ---------------------------------------------------------------------- reading every read


@dataclass(frozen=True)
class _Filters:
    """What :func:`labelled_studies` keeps: study properties (date, manufacturer, UID) and read properties."""

    date_from: str
    date_to: str
    manufacturers: tuple[str, ...]
    readers: frozenset[str]
    sources: frozenset[str]
    study_uids: frozenset[str] | None

    @classmethod
    def make(cls, date_from: str | None, date_to: str | None, manufacturers: Sequence[str] | None,
             readers: Sequence[str] | None, sources: Sequence[str], study_uids: Collection[str] | None) -> _Filters:
        unknown = sorted(set(sources) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown label source(s) {unknown}: choose from {SOURCES}")
        return cls(dicom_date(date_from) if date_from else "", dicom_date(date_to) if date_to else "",
                   tuple(m.strip().lower() for m in manufacturers or () if m.strip()),
                   frozenset(r.strip().lower() for r in readers or () if r.strip()), frozenset(sources),
                   None if study_uids is None else frozenset(study_uids))

    def study_ok(self, study_uid: str, study_date: str, manufacturer: str) -> bool:
        if self.study_uids is not None and study_uid not in self.study_uids:
            return False
        if self.date_from or self.date_to:
            try:
                day = dicom_date(study_date)
            except ValueError:
                return False  # a study without a usable date is outside every date range
            if (self.date_from and day < self.date_from) or (self.date_to and day > self.date_to):
                return False
        return not self.manufacturers or any(m in (manufacturer or "").lower() for m in self.manufacturers)

    def reader_ok(self, reader: str) -> bool:
        return not self.readers or (reader or "").strip().lower() in self.readers


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i:i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _app_reads(conn: Connection, f: _Filters) -> list[LabelledStudy]:
    """The preferred app review of every study that passes ``f`` (reader and source filters first)."""
    kinds = [k for k in APP_SOURCES if k in f.sources]
    if not kinds:
        return []
    q = (sa.select(revisions.c.id, revisions.c.study_id, revisions.c.revision, revisions.c.kind,
                   revisions.c.created_utc, revisions.c.reviewer, revisions.c.stiffness_kpa, studies.c.study_uid,
                   studies.c.series_uid, studies.c.patient_id, studies.c.study_date, studies.c.manufacturer)
         .join_from(revisions, studies).where(revisions.c.kind.in_(kinds)))
    best: dict[int, sa.RowMapping] = {}
    for row in conn.execute(q).mappings():
        if not (f.study_ok(row["study_uid"], row["study_date"], row["manufacturer"]) and f.reader_ok(row["reviewer"])):
            continue
        key = (row["kind"] == "signed_off", row["revision"])
        held = best.get(row["study_id"])
        if held is None or key > (held["kind"] == "signed_off", held["revision"]):
            best[row["study_id"]] = row
    rois: dict[int, dict[str, np.ndarray]] = {}
    for ids in _chunks([r["id"] for r in best.values()]):
        for s in conn.execute(sa.select(slices.c.revision_id, slices.c.sop_uid, slices.c.roi_packed,
                                        slices.c.roi_rows, slices.c.roi_cols)
                              .where(slices.c.revision_id.in_(ids) & sa.not_(slices.c.excluded))
                              .order_by(slices.c.id)):
            rois.setdefault(s.revision_id, {})[s.sop_uid] = unpack_mask(s.roi_packed, s.roi_rows, s.roi_cols)
    out = []
    for r in best.values():
        if not rois.get(r["id"]):
            continue  # every slice excluded: the reader labelled none
        kpa = r["stiffness_kpa"]
        out.append(LabelledStudy(str(r["study_uid"]), str(r["series_uid"]), str(r["patient_id"]),
                                 str(r["study_date"] or ""), str(r["manufacturer"] or ""), str(r["reviewer"] or ""),
                                 str(r["created_utc"] or "")[:10].replace("-", ""), str(r["kind"]), rois[r["id"]],
                                 revision=int(r["revision"]), reader_kpa=None if kpa is None else float(kpa)))
    return out


def _imported_reads(conn: Connection, f: _Filters) -> list[LabelledStudy]:
    """The imported ROIs of every series that passes ``f``; per image the latest import wins, and the study's
    reader, read date and source are those of its latest import."""
    kinds = [k for k in IMPORT_SOURCES if k in f.sources]
    if not kinds:
        return []
    q = sa.select(reader_rois).where(reader_rois.c.source.in_(kinds)).order_by(reader_rois.c.id)
    groups: dict[tuple[str, str], dict[str, sa.RowMapping]] = {}
    for row in conn.execute(q).mappings():
        if f.study_ok(row["study_uid"], row["study_date"], row["manufacturer"]) and f.reader_ok(row["reader"]):
            groups.setdefault((row["study_uid"], row["series_uid"]), {})[row["sop_uid"]] = row
    out = []
    for (study_uid, series_uid), by_sop in groups.items():
        last = max(by_sop.values(), key=lambda r: r["id"])
        rois = {sop: unpack_mask(r["roi_packed"], r["roi_rows"], r["roi_cols"]) for sop, r in sorted(by_sop.items())}
        out.append(LabelledStudy(study_uid, series_uid, str(last["patient_id"]), str(last["study_date"]),
                                 str(last["manufacturer"]), str(last["reader"]), str(last["read_date"]),
                                 str(last["source"]), rois))
    return out


def labelled_studies(store: Store, *, date_from: str | None = None, date_to: str | None = None,
                     manufacturers: Sequence[str] | None = None, readers: Sequence[str] | None = None,
                     sources: Sequence[str] = SOURCES,
                     study_uids: Collection[str] | None = None) -> list[LabelledStudy]:
    """Every labelled study in the store, one per (study, series), sorted by patient, study and series.

    Parameters
    ----------
    date_from, date_to:
        Study dates (``YYYYMMDD`` or ``YYYY-MM-DD``), both inclusive; a study without a date is then left out.
    manufacturers:
        Keep studies whose manufacturer contains one of these (case-insensitive); ``None`` or empty: all.
    readers:
        Keep reads by one of these readers (case-insensitive, exact name); ``None`` or empty: all.
    sources:
        The kinds of read to use, of :data:`SOURCES`.
    study_uids:
        Only these studies (an empty collection selects none).

    The reader and source filters choose among a study's reads *before* the preference is applied: with
    ``readers=["Dr B"]`` a study signed off by Dr A and reviewed by Dr B gives Dr B's review, and with
    ``sources=("seg",)`` a reviewed study that also has an imported SEG gives the SEG. Studies whose preferred
    revision excludes every slice give nothing (no slice was labelled).
    """
    f = _Filters.make(date_from, date_to, manufacturers, readers, sources, study_uids)
    with store.engine.connect() as conn:
        app = _app_reads(conn, f)
        seen = {(s.study_uid, s.series_uid) for s in app}
        imported = [s for s in _imported_reads(conn, f) if (s.study_uid, s.series_uid) not in seen]
    return sorted(app + imported, key=lambda s: (s.patient_id, s.study_uid, s.series_uid))


def label_summary(store: Store, *, date_from: str | None = None, date_to: str | None = None,
                  manufacturers: Sequence[str] | None = None, readers: Sequence[str] | None = None,
                  sources: Sequence[str] = SOURCES, study_uids: Collection[str] | None = None) -> pd.DataFrame:
    """One row per :func:`labelled_studies` entry (same filters) with the columns :data:`SUMMARY_COLUMNS`;
    ``n_slices`` is the number of labelled slices (the Model page's study picker)."""
    found = labelled_studies(store, date_from=date_from, date_to=date_to, manufacturers=manufacturers,
                             readers=readers, sources=sources, study_uids=study_uids)
    rows = [{"study_uid": s.study_uid, "series_uid": s.series_uid, "patient_id": s.patient_id,
             "study_date": s.study_date, "manufacturer": s.manufacturer, "reader": s.reader,
             "read_date": s.read_date, "source": s.source, "n_slices": len(s.rois)} for s in found]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


__all__ = [
    "APP_SOURCES",
    "IMPORT_SOURCES",
    "SOURCES",
    "SUMMARY_COLUMNS",
    "LabelledStudy",
    "ReaderRoi",
    "dicom_date",
    "label_summary",
    "labelled_studies",
    "save_imported",
]
