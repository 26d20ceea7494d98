"""Downloads of a reviewed study as bytes: CSV per study / per slice, DICOM SEG and SR, overlay PNG, PDF.

Thin wrappers over :mod:`mre_core.outputs.tables`, :mod:`mre_core.outputs.sr` and :mod:`mre_core.outputs.pdf` that
add the review (manual value, comment, reviewer, edits) and return bytes instead of writing
files, for the app's download buttons. The SR references a SEG by its SOP Instance UID: offer
the pair from :func:`seg_and_sr_bytes` so that the SR never points at a SEG nobody has.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from mre_core.analysis.pipeline import StudyResult
from mre_core.app.review_state import ReviewEdits
from mre_core.outputs.overlay import overlay_png
from mre_core.outputs.pdf import build_pdf
from mre_core.outputs.seg import build_seg
from mre_core.outputs.sr import build_sr
from mre_core.outputs.tables import file_stem, slice_label, slice_numbers, slices_table, studies_table


def slice_label_map(result: StudyResult) -> dict[str, str]:
    """SOP UID → "slice 2 (#14)" (the numbering of the page, the PDF and the CSVs)."""
    numbers = slice_numbers(result.slices)
    return {s.sop_uid: slice_label(numbers[s.sop_uid], s.instance_number) for s in result.slices}


def study_csv(result: StudyResult, edits: ReviewEdits | None = None, revision: int | None = None,
              review_status: str = "") -> bytes:
    """One-row CSV of the study (report columns + manual_kpa, reviewer, comment, edits, revision, and the review
    status as the PDF prints it, e.g. "signed off by Dr A")."""
    table = studies_table([result])
    edits = edits or ReviewEdits()
    table["manual_kpa"] = edits.manual_kpa
    table["reviewer"] = edits.reviewer
    table["comment"] = edits.comment
    table["review_edits"] = "; ".join(edits.describe(slice_label_map(result)))
    table["saved_revision"] = revision
    table["review_status"] = review_status
    return table.to_csv(index=False).encode("utf-8")


def slices_csv(result: StudyResult) -> bytes:
    """One row per slice (statistics, exclusion, QC flags, source file)."""
    return slices_table([result]).to_csv(index=False).encode("utf-8")


def _dicom_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def seg_authorship(edits: ReviewEdits | None) -> dict[str, Any]:
    """``build_seg`` keywords for the slices whose ROI the reader drew (``{}``: none): which slices,
    edited or replaced, and the reader(s) who drew them."""
    manual = edits.manual_rois() if edits is not None else {}
    if not manual:
        return {}
    readers = list(dict.fromkeys(d["by"] for d in manual.values() if d["by"]))
    return {"manual_rois": {sop: d["kind"] for sop, d in manual.items()}, "reader": ", ".join(readers)}


def seg_bytes(result: StudyResult, edits: ReviewEdits | None = None) -> bytes:
    """The DICOM SEG of the (reviewed) ROI, saying which slices the reader drew (``edits``) and who;
    raises :class:`mre_core.outputs.seg.SegExportError`."""
    return _dicom_bytes(build_seg(result, **seg_authorship(edits)))


def sr_bytes(result: StudyResult, seg: Dataset | None = None, verifying_observer: str | None = None) -> bytes:
    """The DICOM SR (TID 1500) of the study, referencing ``seg`` (built here when ``None``).

    ``verifying_observer`` (the reader who signed off) makes it VERIFIED and FINAL; see
    :func:`mre_core.outputs.sr.build_sr`.
    """
    seg = seg if seg is not None else build_seg(result)
    return _dicom_bytes(build_sr(result, seg, verifying_observer=verifying_observer))


def seg_and_sr_bytes(result: StudyResult, verifying_observer: str | None = None,
                     edits: ReviewEdits | None = None) -> tuple[bytes, bytes]:
    """A matching (SEG, SR) pair: the SR references exactly this SEG instance (the SEG says which ROIs
    were drawn by hand and by whom, from ``edits``)."""
    seg = build_seg(result, **seg_authorship(edits))
    return _dicom_bytes(seg), sr_bytes(result, seg, verifying_observer)


def pdf_bytes(result: StudyResult, edits: ReviewEdits | None = None,
              status: str = "automatic result, not reviewed") -> bytes:
    """The one-page PDF report with the reviewer, comment and manual value (kPa) of ``edits``."""
    edits = edits or ReviewEdits()
    return build_pdf(result, reviewer=edits.reviewer, comment=edits.comment, manual_kpa=edits.manual_kpa,
                     status=status)


def overlay_png_bytes(result: StudyResult) -> bytes:
    """The overlay grid PNG of :func:`mre_core.outputs.overlay.overlay_png`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = overlay_png(result, Path(tmp) / "overlay.png")
        return path.read_bytes()


__all__ = ["file_stem", "overlay_png_bytes", "pdf_bytes", "seg_and_sr_bytes", "seg_authorship", "seg_bytes",
           "slices_csv", "sr_bytes", "study_csv"]
