"""Guardrails on the automatic ROI: liver-side region only; scattered / uncertain / off-side slices left out."""

from __future__ import annotations

import numpy as np
import pytest

from mre_core.analysis.guardrails import main_region, roi_warnings
from mre_core.analysis.pipeline import slice_result
from mre_core.analysis.stiffness import QcFlag
from mre_core.config import Settings
from mre_core.io.elastogram import ConfidenceEncoding, Elastogram, VendorProfile

H, W = 60, 100


def _body_kpa() -> np.ndarray:
    kpa = np.full((H, W), np.nan, np.float32)
    kpa[5:55, 5:95] = 2.5  # body spans columns 5-94, centre ~49.5
    return kpa


def _elastogram(kpa: np.ndarray) -> Elastogram:
    return Elastogram(kpa=kpa, confidence=np.isfinite(kpa), pixel_spacing_mm=(2.0, 2.0), sop_uid="1.2", series_uid="1",
                      study_uid="1", patient_id="P", instance_number=1, position_mm=0.0, profile=VendorProfile.KPA,
                      kpa_per_unit=1.0, encoding=ConfidenceEncoding.ZERO_FILL, source="x")


def test_a_piece_on_the_spleen_side_is_dropped_and_a_second_liver_piece_kept() -> None:
    kpa = _body_kpa()
    p = np.zeros((H, W), bool)
    p[10:40, 8:30] = True  # right lobe (image left)
    p[42:52, 10:25] = True  # a second right-lobe piece, not connected
    p[10:45, 70:90] = True  # spleen side, the largest predicted region
    roi = main_region(p, np.isfinite(kpa), kpa, 20)
    assert roi[10:40, 8:30].all() and roi[42:52, 10:25].all()
    assert not roi[:, 60:].any()


def test_nothing_on_the_liver_side_gives_an_empty_roi_not_the_spleen() -> None:
    kpa = _body_kpa()
    p = np.zeros((H, W), bool)
    p[10:45, 75:92] = True
    assert not main_region(p, np.isfinite(kpa), kpa, 20).any()


def test_scattered_and_uncertain_outputs_are_flagged() -> None:
    kpa = _body_kpa()
    conf = np.isfinite(kpa)
    p = np.zeros((H, W), bool)
    for c in (8, 20, 32, 44):  # four similar pieces: no single liver region
        p[10:20, c:c + 8] = True
    roi = main_region(p, conf, kpa, 20)
    prob = np.where(p, 0.9, 0.0).astype(np.float32)
    assert QcFlag.ROI_SCATTERED in roi_warnings(roi, p, prob, conf, kpa, 20)
    one = np.zeros((H, W), bool)
    one[10:40, 8:30] = True
    unsure = np.where(one, 0.55, 0.0).astype(np.float32)
    assert roi_warnings(one, one, unsure, conf, kpa, 20) == (QcFlag.ROI_UNCERTAIN,)
    sure = np.where(one, 0.95, 0.0).astype(np.float32)
    assert roi_warnings(one, one, sure, conf, kpa, 20) == ()


def test_an_unreliable_slice_is_left_out_of_the_study_value_unless_guardrails_are_off() -> None:
    e = _elastogram(_body_kpa())
    prob = np.zeros((H, W), np.float32)
    prob[10:40, 8:30] = 0.6  # above the 0.5 threshold, but unsure
    guarded = slice_result(e, prob, 0.5, Settings())
    assert guarded.excluded and QcFlag.ROI_UNCERTAIN in guarded.qc_flags and guarded.roi.any()
    assert QcFlag.ROI_UNCERTAIN.explanation.startswith("Automatic ROI unreliable — draw or check it")
    plain = slice_result(e, prob, 0.5, Settings(roi_guardrails=False))
    assert not plain.excluded and plain.qc_flags == ()


def test_guardrails_setting_reads_from_the_environment() -> None:
    assert Settings.from_env({"MRE_ROI_GUARDRAILS": "off"}).roi_guardrails is False
    with pytest.raises(ValueError, match="MRE_ROI_GUARDRAILS"):
        Settings.from_env({"MRE_ROI_GUARDRAILS": "maybe"})
