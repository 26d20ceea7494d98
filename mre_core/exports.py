"""Downloads of a reviewed study as bytes: CSV per study / per slice, DICOM SEG, overlay PNG.

Thin wrappers over :mod:`mre_core.report` that add the review columns (manual value,
comment, edits) and return bytes instead of writing files, for the app's download buttons.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from mre_core.pipeline import StudyResult
from mre_core.report import build_seg, overlay_png, slices_table, studies_table
from mre_core.review import ReviewEdits


def study_csv(result: StudyResult, edits: ReviewEdits | None = None, revision: int | None = None) -> bytes:
    """One-row CSV of the study (report columns + manual_kpa, reviewer, comment, edits, revision)."""
    table = studies_table([result])
    edits = edits or ReviewEdits()
    table["manual_kpa"] = edits.manual_kpa
    table["reviewer"] = edits.reviewer
    table["comment"] = edits.comment
    table["review_edits"] = "; ".join(edits.describe())
    table["saved_revision"] = revision
    return table.to_csv(index=False).encode("utf-8")


def slices_csv(result: StudyResult) -> bytes:
    """One row per slice (statistics, exclusion, QC flags, source file)."""
    return slices_table([result]).to_csv(index=False).encode("utf-8")


def seg_bytes(result: StudyResult) -> bytes:
    """The DICOM SEG of the (reviewed) ROI; raises :class:`mre_core.report.SegExportError`."""
    buf = io.BytesIO()
    build_seg(result).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def overlay_png_bytes(result: StudyResult) -> bytes:
    """The overlay grid PNG of :func:`mre_core.report.overlay_png`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = overlay_png(result, Path(tmp) / "overlay.png")
        return path.read_bytes()


def file_stem(result: StudyResult) -> str:
    """A safe file-name stem: patient ID and the last digits of the study UID."""
    pid = "".join(c if c.isalnum() or c in "-_" else "_" for c in result.patient_id) or "study"
    return f"{pid}_{result.study_uid[-8:]}"


__all__ = ["file_stem", "overlay_png_bytes", "seg_bytes", "slices_csv", "study_csv"]
