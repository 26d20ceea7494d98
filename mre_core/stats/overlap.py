"""Overlap of the automatic ROI with the reader's ROI: Dice and IoU per slice, summarised over patients.

The paper reports segmentation overlap against an expert's ROIs (Dice 85.68 %, IoU per stage; Su, Shih & Xu,
JMIR Med Inform 2025;13:e80351). In the clinic the reader's reviewed ROI is that reference: where a study
has both, :func:`roi_overlap` gives one row per slice and :func:`overlap_summary` the mean Dice and IoU with a
95 % bootstrap CI that resamples patients (slices of one patient are not independent).

Slices the reader left out of the study value, and slices where both ROIs are empty, carry no overlap
information and are not counted (their rows stay in the table with ``counted`` False).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mre_core.stats.agreement import bootstrap_ci, dice, iou

COLUMNS = ["patient_id", "study_uid", "sop_uid", "auto_revision", "reader_revision", "reader_kind", "reviewer",
           "auto_px", "reader_px", "dice", "iou", "reader_excluded", "counted"]


@dataclass(frozen=True)
class OverlapSummary:
    """Mean Dice / IoU over counted slices, each with a patient-bootstrap 95 % CI."""

    n_patients: int
    n_slices: int
    dice_mean: float
    dice_ci: tuple[float, float]
    iou_mean: float
    iou_ci: tuple[float, float]
    changed_slices: int  #: counted slices where the reader's ROI differs from the automatic one


def roi_overlap(pairs: Iterable[Any]) -> pd.DataFrame:
    """One row per slice pair (:class:`mre_core.store.rois.RoiPair` or anything with the same attributes)."""
    rows = []
    for p in pairs:
        a, r = np.asarray(p.auto_roi, bool), np.asarray(p.reader_roi, bool)
        both_empty = not a.any() and not r.any()
        rows.append({"patient_id": p.patient_id, "study_uid": p.study_uid, "sop_uid": p.sop_uid,
                     "auto_revision": p.auto_revision, "reader_revision": p.reader_revision,
                     "reader_kind": p.reader_kind, "reviewer": p.reviewer, "auto_px": int(a.sum()),
                     "reader_px": int(r.sum()), "dice": math.nan if both_empty else dice(a, r),
                     "iou": math.nan if both_empty else iou(a, r), "reader_excluded": bool(p.reader_excluded),
                     "counted": not both_empty and not p.reader_excluded})
    return pd.DataFrame(rows, columns=COLUMNS)


def overlap_summary(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> OverlapSummary | None:
    """Mean Dice and IoU over the counted slices, CIs by resampling patients; ``None`` when nothing is counted."""
    used = table[table["counted"]] if not table.empty else table
    if used.empty:
        return None
    by_patient = [g[["dice", "iou"]].to_numpy(float) for _, g in used.groupby("patient_id", sort=True)]
    groups = np.empty(len(by_patient), dtype=object)
    groups[:] = by_patient

    def mean_of(col: int):
        return lambda sample: float(np.concatenate([g[:, col] for g in sample]).mean())

    return OverlapSummary(
        n_patients=len(by_patient), n_slices=len(used),
        dice_mean=float(used["dice"].mean()), dice_ci=bootstrap_ci(groups, mean_of(0), n_boot=n_boot, seed=seed),
        iou_mean=float(used["iou"].mean()), iou_ci=bootstrap_ci(groups, mean_of(1), n_boot=n_boot, seed=seed),
        changed_slices=int((used["dice"] < 1.0).sum()))


__all__ = ["COLUMNS", "OverlapSummary", "overlap_summary", "roi_overlap"]
