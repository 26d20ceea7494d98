"""Dice / IoU between automatic and reader ROIs, and their patient-bootstrap summary."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from mre_core.stats.overlap import overlap_summary, roi_overlap


def _pair(patient: str, sop: str, auto: np.ndarray, reader: np.ndarray, excluded: bool = False) -> SimpleNamespace:
    return SimpleNamespace(patient_id=patient, study_uid=f"st-{patient}", sop_uid=sop, auto_revision=1,
                           reader_revision=2, reader_kind="signed_off", reviewer="Dr R", auto_roi=auto,
                           reader_roi=reader, reader_excluded=excluded)


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((20, 20), bool)
    m[r0:r1, c0:c1] = True
    return m


def test_dice_and_iou_per_slice_and_what_is_not_counted() -> None:
    a = _box(0, 10, 0, 10)  # 100 px
    half = _box(0, 10, 5, 15)  # 100 px, 50 shared
    empty = np.zeros((20, 20), bool)
    t = roi_overlap([_pair("P1", "s1", a, a), _pair("P1", "s2", a, half), _pair("P2", "s3", empty, empty),
                     _pair("P2", "s4", a, half, excluded=True)])
    assert t["dice"].tolist()[:2] == [1.0, 0.5]
    assert t["iou"].iloc[1] == pytest.approx(50 / 150)
    assert math.isnan(t["dice"].iloc[2])  # both empty: no overlap information
    assert t["counted"].tolist() == [True, True, False, False]  # the reader left s4 out
    s = overlap_summary(t)
    assert (s.n_patients, s.n_slices, s.changed_slices) == (1, 2, 1)
    assert s.dice_mean == pytest.approx(0.75)


def test_the_ci_resamples_patients_and_contains_the_mean() -> None:
    rng = np.random.default_rng(1)
    pairs = []
    for p in range(12):
        for k in range(3):
            shift = int(rng.integers(0, 6))
            pairs.append(_pair(f"P{p}", f"{p}-{k}", _box(2, 12, 2, 12), _box(2, 12, 2 + shift, 12 + shift)))
    s = overlap_summary(roi_overlap(pairs))
    assert s.n_patients == 12 and s.n_slices == 36
    assert s.dice_ci[0] < s.dice_mean < s.dice_ci[1] and s.iou_ci[0] < s.iou_mean < s.iou_ci[1]
    one_patient = overlap_summary(roi_overlap(pairs[:3]))
    assert all(math.isnan(x) for x in one_patient.dice_ci)  # one patient: no CI, not a fake one


def test_nothing_counted_is_none() -> None:
    assert overlap_summary(roi_overlap([])) is None
