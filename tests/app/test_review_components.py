"""The Review page components' pure parts: requests, worklist caption, slice texts and rows, widget keys."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from mre_core.app.downloads import pdf_help
from mre_core.app.review_panel import edit_widget_keys
from mre_core.app.review_state import ReviewableStudy, ReviewBatch
from mre_core.app.review_status import ReviewStatus
from mre_core.app.slice_viewer import slice_labels, slice_numbers_text, slice_rows
from mre_core.app.worklist_panel import analysis_key, next_request, study_labels, worklist_caption
from mre_core.config import Settings
from tests.result_factory import make_result


# ----------------------------------------------------------------------------- worklist_panel
def test_worklist_caption_counts_the_studies_awaiting_review() -> None:
    wl = pd.DataFrame({"status": ["auto, awaiting review", "signed off", "analysing", "auto, awaiting review"]})
    assert worklist_caption(wl) == "4 studies received · 2 awaiting review. Select a row, then open it."


def test_demo_click_wins_then_a_new_upload_then_nothing() -> None:
    sig = (("a.dcm", 10, "id1"),)
    assert next_request(True, sig, None) == ("demo", 0)
    assert next_request(False, sig, None) == ("upload", sig)
    assert next_request(False, sig, sig) is None  # same files as last time: keep the current request
    assert next_request(False, (), None) is None


def test_analysis_key_changes_with_what_the_analysis_depends_on() -> None:
    base = Settings()
    request = ("demo", 0)
    assert analysis_key(request, base) == analysis_key(request, Settings())
    assert analysis_key(request, base) != analysis_key(("inbox", "1.2.3"), base)
    assert analysis_key(request, base) != analysis_key(request, replace(base, device="cuda"))
    assert analysis_key(request, base) != analysis_key(request, replace(base, model_name="other"))


def test_study_labels_name_patient_date_and_slices() -> None:
    result = make_result([3.0, 3.1, 3.2], patient_id="P07")
    batch = ReviewBatch(studies=[ReviewableStudy(result, (), 0.5)])
    assert study_labels(batch) == ["P07 · 20250301 · 3 slices"]


# ----------------------------------------------------------------------------- slice_viewer
def test_slice_labels_and_rows() -> None:
    result = make_result([3.0, 3.2, 3.4])  # slice 2 has an empty ROI in the factory: flagged and not used
    # one numbering everywhere: 1 = most superior (largest z), instance number beside it
    assert slice_labels(result) == ["3 (#1) · z 0 mm", "2 (#2) · z 8 mm", "1 (#3) · z 16 mm"]
    rows = slice_rows(result)  # listed head to feet
    assert [r["slice"] for r in rows] == [1, 2, 3] and [r["instance"] for r in rows] == [3, 2, 1]
    assert [r["used"] for r in rows] == ["yes", "no", "yes"]
    assert rows[2]["mean kPa"] == 3.0 and rows[2]["QC"] == "ok"
    assert rows[1]["QC"] == "empty_roi"


def test_slice_numbers_text_marks_an_excluded_slice() -> None:
    result = make_result([3.0, 3.2, 3.4])
    used, empty = result.slices[0], result.slices[1]
    assert slice_numbers_text(used).startswith("**Mean 3.00 kPa** · median 3.00 · SD 0.00 · ")
    assert "Excluded from the study value" not in slice_numbers_text(used)
    assert slice_numbers_text(empty).endswith("  \n:orange[**Excluded from the study value**]")


# ----------------------------------------------------------------------------- review_panel, downloads
def test_restore_resets_only_this_studys_edit_widgets() -> None:
    skey = "1.2|3.4"
    keys = [f"ex|{skey}|sop1", f"grow|{skey}|sop1", f"thr|{skey}|sop1", f"man|{skey}", f"who|{skey}",
            f"note|{skey}", f"rv_rev|{skey}", f"rv_slice|{skey}", "ex|9.9|8.8|sop1", "rv_edits", 7]
    assert edit_widget_keys(keys, skey) == keys[:6]


def test_pdf_help_carries_the_status() -> None:
    assert pdf_help(ReviewStatus(signed_by="Dr A")).endswith("QC; signed off by Dr A")
    assert pdf_help(ReviewStatus()).endswith("QC; automatic result, not reviewed")
