"""Reviewer edits as pure functions: exclude, erode/dilate, re-threshold, restore, manual value."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tests.result_factory import make_result

from mre_core.analysis.staging import RDES149_TABLE
from mre_core.app.review_state import (
    MAX_GROW_PX,
    ReviewableStudy,
    ReviewEdits,
    apply_edits,
    skipped_summary,
    slice_probability,
)
from mre_core.config import Settings
from mre_core.io.elastogram import SkippedFile


def reviewable(kpa=(3.0, 3.2, 3.4, 3.6)) -> ReviewableStudy:
    """A result plus synthetic probability maps: 0.9 inside each slice's ROI, a 0.6 ring around it, 0.1 elsewhere."""
    result = make_result(list(kpa))
    probs = []
    for s in result.slices:
        p = np.full(s.roi.shape, 0.1, np.float32)
        if s.roi.any():
            rows, cols = np.nonzero(s.roi)
            p[rows.min() - 4:rows.max() + 5, cols.min() - 4:cols.max() + 5] = 0.6
        p[s.roi] = 0.9
        probs.append(p)
    return ReviewableStudy(result, tuple(probs), 0.5)


def test_no_edits_reproduce_the_automatic_result() -> None:
    rs = reviewable()
    out = apply_edits(rs, ReviewEdits())
    assert out.stiffness_kpa == pytest.approx(rs.result.stiffness_kpa)
    for a, b in zip(out.slices, rs.result.slices):
        assert np.array_equal(a.roi, b.roi) and a.excluded == b.excluded


def test_excluding_a_slice_drops_it_from_the_study_value_and_keeps_the_original() -> None:
    rs = reviewable((3.0, 3.2, 3.4, 3.6))  # slice 1 has an empty ROI in the factory
    sop0 = rs.result.slices[0].sop_uid
    edits = ReviewEdits().with_excluded(sop0)
    out = apply_edits(rs, edits)
    assert out.slices[0].excluded and out.stiffness.n_slices_used == rs.result.stiffness.n_slices_used - 1
    assert out.stiffness_kpa == pytest.approx((3.4 + 3.6) / 2)
    assert not rs.result.slices[0].excluded  # the automatic result is unchanged
    assert apply_edits(rs, edits.with_excluded(sop0, False)).stiffness_kpa == pytest.approx(rs.result.stiffness_kpa)


def test_erode_and_dilate_change_the_area_by_whole_pixels_inside_the_confidence_region() -> None:
    rs = reviewable()
    s0, e0 = rs.result.slices[0], rs.result.study.series.slices[0]
    eroded = apply_edits(rs, ReviewEdits().with_grow(s0.sop_uid, -2)).slices[0]
    dilated = apply_edits(rs, ReviewEdits().with_grow(s0.sop_uid, 3)).slices[0]
    assert eroded.stats.n_pixels < s0.stats.n_pixels < dilated.stats.n_pixels
    assert not (dilated.roi & ~e0.confidence).any()
    with pytest.raises(ValueError, match="at most"):
        ReviewEdits().with_grow(s0.sop_uid, MAX_GROW_PX + 1)


def test_threshold_uses_the_stored_probability_map() -> None:
    rs = reviewable()
    s0 = rs.result.slices[0]
    low = apply_edits(rs, ReviewEdits().with_threshold(s0.sop_uid, 0.3)).slices[0]  # takes the 0.6 ring
    high = apply_edits(rs, ReviewEdits().with_threshold(s0.sop_uid, 0.95)).slices[0]  # nothing above
    e0 = rs.result.study.series.slices[0]
    expected = (slice_probability(rs, s0.sop_uid) > 0.3) & e0.confidence
    assert np.array_equal(low.roi, expected)
    assert low.stats.n_pixels > s0.stats.n_pixels
    assert high.stats.n_pixels == 0 and high.excluded
    with pytest.raises(ValueError):
        ReviewEdits().with_threshold(s0.sop_uid, 1.0)


def test_back_to_default_values_removes_the_slice_edit() -> None:
    sop = "1.2.3"
    edits = ReviewEdits().with_grow(sop, 2).with_grow(sop, 0)
    assert edits.slices == {} and not edits.changes_roi


def test_manual_value_and_comment_travel_as_json_and_do_not_change_the_automatic_value() -> None:
    rs = reviewable()
    edits = ReviewEdits().with_manual(3.05).with_comment("  ROI ok  ", reviewer="Dr B")
    out = apply_edits(rs, edits)
    assert out.stiffness_kpa == pytest.approx(rs.result.stiffness_kpa)
    blob = edits.to_json()
    assert blob["manual_kpa"] == 3.05 and blob["comment"] == "ROI ok" and blob["reviewer"] == "Dr B"
    assert any("manual measurement 3.05" in line for line in edits.describe())
    with pytest.raises(ValueError):
        ReviewEdits().with_manual(-1.0)
    with pytest.raises(ValueError):
        ReviewEdits().with_manual(math.nan)


def test_restored_rois_are_used_as_saved() -> None:
    rs = reviewable()
    s0 = rs.result.slices[0]
    saved_roi = np.zeros_like(s0.roi)
    saved_roi[80:100, 90:120] = True  # inside the confidence region
    sop1 = rs.result.slices[2].sop_uid
    edits = ReviewEdits.from_saved({"slices": {sop1: {"excluded": True}}, "manual_kpa": 3.3, "comment": "x"},
                                   {s0.sop_uid: saved_roi})
    out = apply_edits(rs, edits)
    assert np.array_equal(out.slices[0].roi, saved_roi) and out.slices[0].stats.n_pixels == 20 * 30
    assert out.slices[2].excluded and edits.manual_kpa == 3.3


def test_a_restored_revision_shows_its_thresholds_and_rebuilds_the_roi_only_when_one_changes() -> None:
    rs = reviewable()
    sop = rs.result.slices[1].sop_uid
    edits = ReviewEdits().with_threshold(sop, 0.8).with_grow(sop, -1).with_comment("thr", "Dr T")
    saved = apply_edits(rs, edits)  # what was saved: the ROI after the threshold and the erosion
    rois = {s.sop_uid: s.roi for s in saved.slices}
    auto_out = rs.result.slices[3].sop_uid
    back = ReviewEdits.from_saved(json.loads(json.dumps(edits.to_json())), rois, excluded={auto_out})
    assert back.slice(sop).threshold == 0.8 and back.slice(sop).grow_px == -1  # the widgets show what was saved
    again = apply_edits(rs, back)
    assert np.array_equal(again.slices[1].roi, saved.slices[1].roi)  # used as saved, not eroded a second time
    assert again.slices[3].excluded  # a slice the saved revision left out stays out
    assert back.content_key() == ReviewEdits.from_saved(edits.to_json(), rois, {auto_out}).content_key()
    moved = back.with_threshold(sop, 0.5)  # the reader changes the threshold after the restore
    rebuilt = apply_edits(rs, moved).slices[1].roi
    fresh = apply_edits(rs, ReviewEdits().with_threshold(sop, 0.5).with_grow(sop, -1)).slices[1].roi
    assert np.array_equal(rebuilt, fresh)
    assert moved.content_key() != back.content_key()


def test_another_staging_table_restages_without_the_model() -> None:
    rs = reviewable((3.0, 3.2, 3.4, 3.6))  # study value 3.333 kPa: F2 (paper), F1 (RDES149: F2 from 3.5)
    paper = apply_edits(rs, ReviewEdits())
    rdes = apply_edits(rs, ReviewEdits(), Settings(staging=RDES149_TABLE))
    assert paper.stage.stage.label == "F2" and rdes.stage.stage.label == "F1"
    assert rdes.stage.table == "rdes149"


def test_left_out_series_are_one_row_each_with_role_and_rule() -> None:
    files = tuple(f"P1/SE4/IM{i}.dcm" for i in range(5))
    skipped = [SkippedFile(files[0], "magnitude images, not an elastogram", series_uid="1.2.3", series_number="4",
                           series_description="MRE_MAG", role="magnitude", rule="siemens.epi.magnitude", files=files),
               SkippedFile("notes.txt", "not a DICOM file")]
    rows = skipped_summary(skipped)
    assert rows[0]["series"] == "4 'MRE_MAG'" and rows[0]["files"] == 5 and rows[0]["examples"].endswith("…")
    assert rows[0]["role"] == "magnitude" and rows[0]["rule"] == "siemens.epi.magnitude"
    assert rows[1]["series"] == "notes.txt" and rows[1]["files"] == 1 and rows[1]["reason"] == "not a DICOM file"


@pytest.mark.slow
def test_analyze_for_review_matches_analyze_study(tmp_path) -> None:
    """The review path keeps the probabilities but must give the pipeline's numbers exactly."""
    from tests.app_support import TEST_MODEL, write_everything_liver_weights

    from mre_core.analysis.pipeline import analyze_study
    from mre_core.app.demo import demo_study
    from mre_core.app.review_state import analyze_for_review
    from mre_core.io.reader import read_inputs
    from mre_core.model.network import load_model

    write_everything_liver_weights(tmp_path / "w")
    settings = Settings(weights_dir=tmp_path / "w", model_name=TEST_MODEL, device="cpu")
    model = load_model(settings.weights_dir, settings.model_name, "cpu")
    study = read_inputs([demo_study(tmp_path, seed=1)], settings).studies[0]
    a, rs = analyze_study(study, model, settings), analyze_for_review(study, model, settings)
    assert rs.result.stiffness_kpa == pytest.approx(a.stiffness_kpa)
    assert rs.result.qc_flags == a.qc_flags
    assert [p.shape for p in rs.probabilities] == [e.shape for e in study.series.slices]
    for x, y in zip(rs.result.slices, a.slices):
        assert np.array_equal(x.roi, y.roi)


def test_exports_of_a_reviewed_study() -> None:
    import io

    import pandas as pd
    import pydicom

    from mre_core.app import exports

    rs = reviewable()
    edits = ReviewEdits().with_excluded(rs.result.slices[0].sop_uid).with_manual(3.3).with_comment("ok", "Dr C")
    out = apply_edits(rs, edits)
    study = pd.read_csv(io.BytesIO(exports.study_csv(out, edits, revision=4, review_status="signed off by Dr C")))
    assert study.loc[0, "manual_kpa"] == 3.3 and study.loc[0, "reviewer"] == "Dr C"
    assert study.loc[0, "review_status"] == "signed off by Dr C"
    assert study.loc[0, "saved_revision"] == 4 and "excluded" in study.loc[0, "review_edits"]
    slices = pd.read_csv(io.BytesIO(exports.slices_csv(out)))
    assert bool(slices.set_index("sop_uid").loc[rs.result.slices[0].sop_uid, "excluded"])
    seg = pydicom.dcmread(io.BytesIO(exports.seg_bytes(out)))
    assert seg.Modality == "SEG" and int(seg.NumberOfFrames) == len(out.slices)
    assert exports.overlay_png_bytes(out)[:8] == b"\x89PNG\r\n\x1a\n"
    assert exports.file_stem(out).startswith("PAT001_")
