"""The Review page's downloads: study and slices CSV, PDF report, DICOM SEG and SR, overlay PNG.

Owns the six download buttons (keys ``dl_study``, ``dl_slices``, ``dl_pdf``, ``dl_seg``, ``dl_sr``,
``dl_png``) of the reviewed study. The bytes come from :mod:`.exports`; the review status printed
on the PDF and whether the SR is VERIFIED come from :mod:`.review_status`. The PDF, PNG, SEG and SR
are built only when clicked (callables: building the SEG and SR on every run cost 0.3–1 s per run,
``python -m mre_core.bench --app``).

Every file carries the patient's identifiers, so each button needs ``export_identified`` (the buttons are not
drawn without it) and each click is checked again and written to the audit log as ``export:<kind>`` with the
study and the file name (:func:`mre_core.app.auth.audited`, which runs inside the deferred callable with the
store and the user bound to it: a callable has no script context).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import streamlit as st

from mre_core.access import Action, User, allowed
from mre_core.analysis.pipeline import StudyResult
from mre_core.app import exports
from mre_core.app.auth import audited
from mre_core.app import review_status as rst
from mre_core.app.review_state import ReviewEdits
from mre_core.app.review_status import ReviewStatus

ICON = ":material/download:"


def pdf_help(status: ReviewStatus) -> str:
    """The PDF button's help: what the report holds and the study's status."""
    return f"One page: images, per-slice table, stiffness, stage with cut-offs, QC; {rst.status_label(status)}"


class SegAndSr:
    """The SEG and the SR of one page run, built together on the first click of either button (the SR
    references that very SEG), then kept for the other button of the same run."""

    def __init__(self, reviewed: StudyResult, verifying_observer: str | None, edits: ReviewEdits) -> None:
        self._args = (reviewed, verifying_observer, edits)
        self._pair: tuple[bytes, bytes] | None = None
        self._lock = threading.Lock()

    def _build(self) -> tuple[bytes, bytes]:
        with self._lock:
            if self._pair is None:
                reviewed, observer, edits = self._args
                self._pair = exports.seg_and_sr_bytes(reviewed, verifying_observer=observer, edits=edits)
            return self._pair

    def seg(self) -> bytes:
        return self._build()[0]

    def sr(self) -> bytes:
        return self._build()[1]


def download_buttons(reviewed: StudyResult, edits: ReviewEdits, status: ReviewStatus, user: User | None = None,
                     store: Any | None = None) -> None:
    """Two rows of three buttons: CSVs and PDF, then SEG, SR and the overlay PNG; each click audited."""
    if not allowed(user, Action.EXPORT_IDENTIFIED):
        st.caption("Downloads of this study (CSV, PDF, DICOM SEG/SR, PNG) carry patient identifiers: they need "
                   "a role that may export identified data.")
        return
    stem = exports.file_stem(reviewed)
    label = rst.status_label(status)
    revision = status.saved_revision

    def data(build: Callable[[], bytes], kind: str, name: str) -> Callable[[], bytes]:
        return audited(build, user=user, store=store, action=Action.EXPORT_IDENTIFIED, kind=kind,
                       detail=f"{name} (study {reviewed.study_uid}, {label})", study_uid=reviewed.study_uid,
                       series_uid=reviewed.series_uid)

    d = st.columns(3)
    d[0].download_button("Study CSV", data(lambda: exports.study_csv(reviewed, edits, revision, label), "study_csv",
                                           f"{stem}_study.csv"),
                         f"{stem}_study.csv", "text/csv", icon=ICON, key="dl_study", on_click="ignore")
    d[1].download_button("Slices CSV", data(lambda: exports.slices_csv(reviewed), "slices_csv", f"{stem}_slices.csv"),
                         f"{stem}_slices.csv", "text/csv", icon=ICON, key="dl_slices", on_click="ignore")
    d[2].download_button("PDF report", data(lambda: exports.pdf_bytes(reviewed, edits, label), "pdf",
                                            f"{stem}_report.pdf"),
                         f"{stem}_report.pdf", "application/pdf", icon=":material/picture_as_pdf:", key="dl_pdf",
                         on_click="ignore", help=pdf_help(status))
    d = st.columns(3)
    pair = SegAndSr(reviewed, rst.verifying_observer(status), edits)  # built when first clicked, not every run
    d[0].download_button("DICOM SEG", data(pair.seg, "seg", f"{stem}_roi_seg.dcm"), f"{stem}_roi_seg.dcm",
                         "application/dicom", icon=ICON, key="dl_seg", on_click="ignore")
    d[1].download_button("DICOM SR", data(pair.sr, "sr", f"{stem}_sr.dcm"), f"{stem}_sr.dcm", "application/dicom",
                         icon=ICON, key="dl_sr", on_click="ignore", help=rst.sr_help(status))
    d[2].download_button("Overlay PNG", data(lambda: exports.overlay_png_bytes(reviewed), "overlay_png",
                                             f"{stem}_overlay.png"),
                         f"{stem}_overlay.png", "image/png", icon=ICON, key="dl_png", on_click="ignore")


__all__ = ["SegAndSr", "download_buttons", "pdf_help"]
