"""evaluate's summaries: patients without a manual or automatic value are counted, never crash the run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mre_core.analysis.staging import PAPER_TABLE
from mre_core.model.evaluate import roi_safety_summary, stiffness_summary


def test_patients_without_a_value_are_counted_and_left_out_of_agreement() -> None:
    patients = pd.DataFrame({"auto_kpa": [2.0, 3.1, 4.2, np.nan, 5.0], "manual_kpa": [2.1, 3.0, 4.0, 3.0, np.nan]})
    s = stiffness_summary(patients, PAPER_TABLE)
    assert s["n_without_manual_value"] == 1 and s["n_without_auto_value"] == 1
    assert s["n"] == 3


def test_f2_false_positives_count_manual_below_f2_called_f2_or_higher() -> None:
    slices = pd.DataFrame({"outside_liver_fraction": [0.0, 0.5], "near_edge_fraction": [0.1, 0.2],
                           "empty_roi": [False, False]})
    patients = pd.DataFrame({"auto_kpa": [2.9, 2.5, 3.5], "manual_kpa": [2.5, 2.4, 3.6]})
    out = roi_safety_summary(slices, patients, PAPER_TABLE)
    assert out["f2_negatives"] == 2 and out["f2_false_positives"] == 1
    assert out["outside_liver_mean"] == 0.25 and out["slices_over_10pct_outside"] == 1


def test_used_rois_score_a_slice_left_out_by_a_guardrail_as_no_automatic_roi() -> None:
    slices = pd.DataFrame({"outside_liver_fraction": [0.0, 0.6, np.nan], "near_edge_fraction": [0.1, 0.3, np.nan],
                           "empty_roi": [False, False, True], "used": [True, False, False],
                           "dice_used": [0.8, 0.0, 1.0]})
    patients = pd.DataFrame({"auto_kpa": [2.0], "manual_kpa": [2.1]})
    out = roi_safety_summary(slices, patients, PAPER_TABLE)
    assert out["outside_liver_mean"] == 0.3 and out["slices_over_10pct_outside"] == 1  # every ROI as shown
    used = out["used_rois"]
    assert used["outside_liver_mean"] == 0.0 and used["slices_over_10pct_outside"] == 0
    assert used["n_empty"] == 2 and used["n_left_out_with_roi"] == 1 and used["dice_mean"] == 0.6
