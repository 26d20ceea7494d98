"""ROI-safety metrics: share outside the liver, near its edge (in mm, not pixels), empty slices."""

from __future__ import annotations

import math

import numpy as np

from mre_core.stats.roi_safety import roi_safety, safety_summary


def test_near_edge_uses_millimetres_not_pixels() -> None:
    liver = np.zeros((60, 60), bool)
    liver[10:50, 10:50] = True
    roi = np.zeros_like(liver)
    roi[14:46, 14:46] = True  # 4 px inside the edge everywhere (plus a deeper core)
    at_1mm = roi_safety(roi, liver, (1.0, 1.0))
    at_3mm = roi_safety(roi, liver, (3.0, 3.0))  # the same 4 px are 12 mm: nothing within 1 cm of the edge
    assert at_1mm.outside_liver_fraction == 0.0 and at_1mm.near_edge_fraction > 0.5
    assert at_3mm.near_edge_fraction == 0.0


def test_empty_roi_is_nan_and_counted_as_empty() -> None:
    s = roi_safety(np.zeros((5, 5), bool), np.ones((5, 5), bool), (1.0, 1.0))
    assert s.empty and math.isnan(s.outside_liver_fraction)
    summary = safety_summary(np.array([0.0, 0.2, np.nan]), np.array([0.1, 0.3, np.nan]), np.array([False, False, True]))
    assert summary["n_empty"] == 1 and summary["outside_liver_mean"] == 0.1
    assert summary["slices_over_5pct_outside"] == 1 and summary["slices_over_10pct_outside"] == 1
