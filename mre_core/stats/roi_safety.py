"""ROI-safety metrics: does an automatic ROI stay on the liver, away from its edge?

Dice against an expert ROI says how much of the expert's area was found; it does not say
whether the rest of the ROI lies on the spleen, the stomach or muscle, which is what moves a
stiffness value and a stage. These per-slice numbers do (issue "a segmentation that finds the
liver on data it was not trained on"):

* ``outside_liver_fraction``: share of ROI pixels outside the true liver (NaN for an empty ROI);
* ``near_edge_fraction``: share of ROI pixels inside the liver but within ``edge_mm`` (default
  10 mm, the published ~1 cm margin) of its edge — where partial volume and wave reflection bias
  stiffness;
* ``empty``: the slice has no ROI at all (a missed slice, which is better than a wrong one).

Pure numpy/scipy; distances in mm from the pixel spacing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

#: the published margin from the liver edge (about 1 cm; Venkatesh & Ehman 2014, QIBA MRE profile)
EDGE_MARGIN_MM = 10.0


@dataclass(frozen=True)
class RoiSafety:
    """Per-slice ROI-safety numbers (fractions of ROI pixels; NaN when the ROI is empty)."""

    outside_liver_fraction: float
    near_edge_fraction: float
    empty: bool


def roi_safety(roi: np.ndarray, liver: np.ndarray, pixel_spacing_mm: tuple[float, float],
               edge_mm: float = EDGE_MARGIN_MM) -> RoiSafety:
    """Safety of one slice's ROI against the true liver mask (both bool [H, W]).

    >>> liver = np.zeros((40, 40), bool); liver[5:35, 5:35] = True
    >>> roi = np.zeros_like(liver); roi[0:10, 15:25] = True        # half above the liver
    >>> s = roi_safety(roi, liver, (1.0, 1.0))
    >>> round(s.outside_liver_fraction, 2), round(s.near_edge_fraction, 2), s.empty
    (0.5, 0.5, False)
    """
    roi, liver = np.asarray(roi, bool), np.asarray(liver, bool)
    n = int(roi.sum())
    if n == 0:
        return RoiSafety(math.nan, math.nan, True)
    depth_mm = ndi.distance_transform_edt(liver, sampling=pixel_spacing_mm)
    outside = float((roi & ~liver).sum()) / n
    near = float((roi & liver & (depth_mm < edge_mm)).sum()) / n
    return RoiSafety(outside, near, False)


def safety_summary(outside: np.ndarray, near_edge: np.ndarray, empty: np.ndarray) -> dict[str, float]:
    """Cohort summary over slices: mean outside share (non-empty ROIs), slices over 5 % / 10 % outside, …"""
    outside, near_edge, empty = (np.asarray(a, float) for a in (outside, near_edge, empty))
    valid = ~np.isnan(outside)
    o = outside[valid]
    return {
        "n_slices": int(len(outside)), "n_empty": int(empty.sum()),
        "outside_liver_mean": float(o.mean()) if o.size else math.nan,
        "outside_liver_max": float(o.max()) if o.size else math.nan,
        "slices_over_5pct_outside": int((o > 0.05).sum()), "slices_over_10pct_outside": int((o > 0.10).sum()),
        "near_edge_mean": float(near_edge[valid].mean()) if o.size else math.nan,
    }
