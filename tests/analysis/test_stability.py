"""The stability check: a slice whose automatic ROI does not survive a slightly zoomed or shifted copy of the
input is flagged ``ROI_UNSTABLE`` and left out; an ROI that follows the anatomy is kept.

Two designed networks on a 64 x 64 grid equal to the slices' native grid (2 mm pixels): one reads the ROI from
its input (the confidence channel), so the ROI moves with the anatomy; one always answers the same small
patch of the grid, whatever it is shown, so under a zoom or shift its ROI stays put while the anatomy moves.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from mre_core.analysis.guardrails import UNRELIABLE
from mre_core.analysis.pipeline import analyze_study, analyze_study_keeping_maps
from mre_core.analysis.preprocess import InputSpec
from mre_core.analysis.stability import (
    MIN_STABILITY,
    PERTURBATIONS,
    Perturbation,
    perturbation_matrix,
    perturbed_batch,
    restored_map,
    stability,
)
from mre_core.analysis.stiffness import QcFlag
from mre_core.app.review_state import ReviewEdits, SliceEdit, analyze_for_review, apply_edits
from mre_core.config import Settings
from mre_core.io.elastogram import ConfidenceEncoding, Elastogram, ElastogramSeries, StudyInput, VendorProfile
from mre_core.model.network import LoadedModel, ModelConfig

S = 64
SETTINGS = Settings(device="cpu", min_component_area_mm2=8.0, min_roi_area_cm2=0.01)


class ReadsConfidence(nn.Module):
    """ROI logits from the input's confidence channel (channel 1): the ROI follows the image. Counts passes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 40.0 * (x[:, 1:2] - 0.5)


class FixedPatch(nn.Module):
    """The same 4 x 4 patch of the grid, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        logits = torch.full((1, 1, S, S), -10.0)
        logits[..., 12:16, 12:16] = 10.0
        self.register_buffer("logits", logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1).clone()


def _model(net: nn.Module) -> LoadedModel:
    cfg = ModelConfig(name="designed", arch="unet_plain", input=InputSpec(size=S), outputs=("roi",))
    return LoadedModel(net, cfg, "designed", torch.device("cpu"))


def _study(confident: tuple[slice, slice]) -> StudyInput:
    kpa = np.full((S, S), np.nan, np.float32)
    kpa[4:60, 4:60] = 2.5  # the body
    conf = np.zeros((S, S), bool)
    conf[confident] = True
    e = Elastogram(kpa=kpa, confidence=conf, pixel_spacing_mm=(2.0, 2.0), sop_uid="1.2.1", series_uid="1.2",
                   study_uid="1", patient_id="P", instance_number=1, position_mm=0.0, profile=VendorProfile.KPA,
                   kpa_per_unit=1.0, encoding=ConfidenceEncoding.ZERO_FILL, source="x")
    return StudyInput("P", "1", ElastogramSeries("1.2", "MRE", "TEST", (e,)))


def test_perturbations_are_zoom_and_shift_only_and_map_back_onto_the_original_grid() -> None:
    assert {p.zoom for p in PERTURBATIONS} == {0.9, 1.0, 1.1} and {p.shift for p in PERTURBATIONS} == {0.0, 0.04, -0.04}
    assert all(perturbation_matrix(S, p)[0, 0] > 0 for p in PERTURBATIONS)  # never a left-right flip
    image = np.zeros((S, S), np.float32)
    image[20:44, 16:40] = 1.0
    batch = image[None, None]
    for p in PERTURBATIONS:
        moved = perturbed_batch(batch, p)[0, 0]
        assert not np.array_equal(moved > 0.5, image > 0.5)  # the copy really differs
        back = restored_map(moved, p) > 0.5
        assert np.abs(back.astype(int) - (image > 0.5)).sum() <= 2 * (24 + 24)  # back in place, up to its edge
    shifted = perturbed_batch(batch, Perturbation("s", shift=0.25))[0, 0]
    assert shifted[36:60, 32:56].min() > 0.99 and shifted[:36].max() == 0.0  # +: down and right, 0 outside


def test_an_roi_that_follows_the_anatomy_is_stable_and_kept() -> None:
    net = ReadsConfidence()
    result, _, _ = analyze_study_keeping_maps(_study((slice(10, 50), slice(6, 30))), _model(net), SETTINGS)
    (s,) = result.slices
    assert s.usable and QcFlag.ROI_UNSTABLE not in s.qc_flags
    assert s.roi[12:48, 8:28].all() and not s.roi[:, 32:].any()
    assert net.calls == 2  # the study, then its four perturbed copies in one batch (inference_batch 8)
    chunked = ReadsConfidence()
    analyze_study(_study((slice(10, 50), slice(6, 30))), _model(chunked), replace(SETTINGS, inference_batch=1))
    assert chunked.calls == 1 + len(PERTURBATIONS)  # chunks of one slice: one pass per copy
    assert "stability" in result.timings_s and result.stiffness_kpa == pytest.approx(2.5)


def test_an_roi_that_stays_put_while_the_anatomy_moves_is_flagged_and_left_out() -> None:
    study = _study((slice(4, 60), slice(4, 60)))
    result = analyze_study(study, _model(FixedPatch()), SETTINGS)
    (s,) = result.slices
    assert s.roi.sum() == 16 and QcFlag.ROI_UNSTABLE in s.qc_flags and QcFlag.ROI_UNSTABLE in UNRELIABLE
    assert s.excluded and not s.usable and s.roi.any()  # kept for display, not in the value
    assert result.stage is None and QcFlag.NO_USABLE_SLICE in result.qc_flags
    assert QcFlag.ROI_UNSTABLE.explanation.startswith("Automatic ROI unreliable — draw or check it")
    off = analyze_study(study, _model(FixedPatch()), replace(SETTINGS, roi_stability=False))
    assert off.slices[0].usable and "stability" not in off.timings_s and off.stiffness_kpa == pytest.approx(2.5)
    unguarded = analyze_study(study, _model(FixedPatch()), replace(SETTINGS, roi_guardrails=False))
    assert unguarded.slices[0].usable and QcFlag.ROI_UNSTABLE not in unguarded.slices[0].qc_flags


def test_a_reader_rethresholding_an_unstable_slice_keeps_the_flag() -> None:
    rs = analyze_for_review(_study((slice(4, 60), slice(4, 60))), _model(FixedPatch()), SETTINGS)
    uid = rs.result.slices[0].sop_uid
    edited = apply_edits(rs, ReviewEdits(slices={uid: SliceEdit(threshold=0.3)}))
    (s,) = edited.slices
    assert QcFlag.ROI_UNSTABLE in s.qc_flags and s.excluded and edited.stage is None


def test_no_network_pass_is_spent_when_no_slice_has_a_usable_roi() -> None:
    net = ReadsConfidence()
    result = analyze_study(_study((slice(0, 0), slice(0, 0))), _model(net), SETTINGS)
    assert net.calls == 1 and QcFlag.NO_USABLE_SLICE in result.qc_flags


def test_stability_is_the_mean_overlap_with_the_perturbed_rois() -> None:
    roi = np.zeros((10, 10), bool)
    roi[2:8, 2:8] = True
    half = np.zeros_like(roi)
    half[2:8, 2:5] = True
    assert stability(roi, [roi, half]) == pytest.approx((1.0 + 2 * 18 / 54) / 2)
    assert stability(roi, [np.zeros_like(roi)] * 4) == 0.0 < MIN_STABILITY


def test_the_switch_reads_from_the_environment_and_a_bad_value_is_named() -> None:
    assert Settings().roi_stability is True
    assert Settings.from_env({"MRE_ROI_STABILITY": "off"}).roi_stability is False
    with pytest.raises(ValueError, match="MRE_ROI_STABILITY='maybe': use 1/0"):
        Settings.from_env({"MRE_ROI_STABILITY": "maybe"})
