"""A model with a liver output keeps the ROI inside the largest predicted liver piece, eroded by the margin.

The network is replaced by a module returning designed logits on a 64 x 64 grid equal to the slices' native
grid (2 mm pixels), so the expected ROI can be written down pixel by pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mre_core.analysis.guardrails import liver_region, margin_px, restricted_probability
from mre_core.analysis.pipeline import (
    analyze_study,
    analyze_study_keeping_maps,
    analyze_study_keeping_probabilities,
    slice_result,
)
from mre_core.analysis.preprocess import InputSpec
from mre_core.analysis.segment import predict_maps, predict_probabilities, run_network, run_network_maps
from mre_core.analysis.stiffness import QcFlag
from mre_core.config import Settings
from mre_core.io.elastogram import ConfidenceEncoding, Elastogram, ElastogramSeries, StudyInput, VendorProfile
from mre_core.io.reader import read_inputs
from mre_core.model.network import LoadedModel, ModelConfig, build_model, load_model, save_weights

S = 64
ON, OFF = 10.0, -10.0


class DesignedLogits(nn.Module):
    """Returns fixed logits [N, K, S, S] whatever the input; counts its forward passes."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        n = self.logits.shape[0]
        # one logit map per slice, in one pass; the stability check's perturbed copies come as whole repeats
        assert x.shape[0] % n == 0, "the test designs one logit map per slice"
        return self.logits.repeat(x.shape[0] // n, 1, 1, 1)


def _model(logits: np.ndarray, outputs: tuple[str, ...]) -> LoadedModel:
    cfg = ModelConfig(name="designed", arch="unet_plain", input=InputSpec(size=S), outputs=outputs)
    return LoadedModel(DesignedLogits(torch.from_numpy(logits.astype(np.float32))), cfg, "designed",
                       torch.device("cpu"))


def _elastogram(i: int) -> Elastogram:
    kpa = np.full((S, S), np.nan, np.float32)
    kpa[4:60, 4:60] = 2.5  # the body; confidence = the body
    return Elastogram(kpa=kpa, confidence=np.isfinite(kpa), pixel_spacing_mm=(2.0, 2.0), sop_uid=f"1.2.{i}",
                      series_uid="1.2", study_uid="1", patient_id="P", instance_number=i + 1, position_mm=8.0 * i,
                      profile=VendorProfile.KPA, kpa_per_unit=1.0, encoding=ConfidenceEncoding.ZERO_FILL,
                      source=f"x{i}")


def _study(n: int) -> StudyInput:
    slices = tuple(_elastogram(i) for i in range(n))
    return StudyInput("P", "1", ElastogramSeries("1.2", "MRE", "TEST", slices))


def _roi_logits() -> np.ndarray:
    roi = np.full((S, S), OFF, np.float32)
    roi[10:50, 6:40] = ON  # on the liver side (image left), wider than the liver
    return roi


def _two_piece_liver() -> np.ndarray:
    liver = np.full((S, S), OFF, np.float32)
    liver[8:52, 4:30] = ON  # the liver: 44 x 26 px
    liver[30:50, 34:44] = ON  # a second, smaller piece (200 px, above the 75 px minimum) under the ROI
    return liver


def _expected(rows: slice, cols: slice) -> np.ndarray:
    out = np.zeros((S, S), bool)
    out[rows, cols] = True
    return out


def test_roi_is_cut_to_the_largest_liver_piece_eroded_by_the_margin() -> None:
    logits = np.stack([np.stack([_roi_logits(), _two_piece_liver()])])
    model = _model(logits, ("roi", "liver"))
    settings = Settings(device="cpu", liver_margin_mm=4.0)  # 2 px at 2 mm
    result = analyze_study(_study(1), model, settings)
    (s,) = result.slices
    assert np.array_equal(s.roi, _expected(slice(10, 50), slice(6, 28)))  # liver 8:52 x 4:30 eroded by 2 px
    assert not s.predicted_mask[:, 30:].any()  # the small liver piece does not let the ROI through
    assert not s.excluded and s.qc_flags == () and model.net.calls == 2  # the study, then its 4 perturbed copies in one batch
    no_margin = analyze_study(_study(1), model, Settings(device="cpu", liver_margin_mm=0.0)).slices[0]
    assert np.array_equal(no_margin.roi, _expected(slice(10, 50), slice(6, 30)))


def test_the_same_roi_output_without_a_liver_output_is_not_cut() -> None:
    model = _model(_roi_logits()[None, None], ("roi",))
    s = analyze_study(_study(1), model, Settings(device="cpu")).slices[0]
    assert np.array_equal(s.roi, _expected(slice(10, 50), slice(6, 40)))


def test_with_the_guardrails_off_a_liver_model_shows_its_own_roi_uncut() -> None:
    logits = np.stack([np.stack([_roi_logits(), _two_piece_liver()])])
    model = _model(logits, ("roi", "liver"))
    cut = analyze_study(_study(1), model, Settings(device="cpu")).slices[0]
    raw = analyze_study(_study(1), model, Settings(device="cpu", roi_guardrails=False)).slices[0]
    assert np.array_equal(raw.roi, _expected(slice(10, 50), slice(6, 40)))  # the network's ROI ∩ confidence
    assert cut.roi.sum() < raw.roi.sum()


def test_no_liver_gives_an_empty_roi_flagged_and_left_out() -> None:
    tiny_liver = np.full((S, S), OFF, np.float32)
    tiny_liver[20:26, 10:16] = ON  # 36 px = 144 mm² < the 300 mm² minimum piece
    logits = np.stack([np.stack([_roi_logits(), np.full((S, S), OFF, np.float32)]),
                       np.stack([_roi_logits(), tiny_liver])])
    result = analyze_study(_study(2), _model(logits, ("roi", "liver")), Settings(device="cpu"))
    for s in result.slices:
        assert not s.roi.any() and not s.predicted_mask.any()
        assert s.excluded and QcFlag.EMPTY_ROI in s.qc_flags
    assert result.stage is None and QcFlag.NO_USABLE_SLICE in result.qc_flags


def test_kept_maps_and_probabilities_let_a_reviewer_rethreshold_inside_the_liver() -> None:
    logits = np.stack([np.stack([_roi_logits(), _two_piece_liver()])])
    settings = Settings(device="cpu", liver_margin_mm=4.0)
    result, maps, threshold = analyze_study_keeping_maps(_study(1), _model(logits, ("roi", "liver")), settings)
    (m,) = maps
    assert set(m) == {"roi", "liver", "liver_region"} and threshold == 0.5
    assert m["roi"].dtype == np.float32 and m["liver"].shape == (S, S) and m["liver_region"].dtype == bool
    assert np.array_equal(m["liver_region"], _expected(slice(10, 50), slice(6, 28)))
    assert m["roi"][30:50, 34:40].min() > 0.99  # the network's own ROI map is kept as it was
    _, probs, _ = analyze_study_keeping_probabilities(_study(1), _model(logits, ("roi", "liver")), settings)
    assert probs[0][~m["liver_region"]].max() == 0.0
    again = slice_result(_study(1).series.slices[0], probs[0], 0.2, settings)
    assert np.array_equal(again.roi, result.slices[0].roi)


def test_one_forward_pass_gives_every_output_and_run_network_keeps_the_roi() -> None:
    logits = np.stack([np.stack([_roi_logits(), _two_piece_liver()])] * 3)
    model = _model(logits, ("roi", "liver"))
    batch = np.zeros((3, 3, S, S), np.float32)
    maps = run_network_maps(model, batch, batch_size=8)
    assert model.net.calls == 1 and set(maps) == {"roi", "liver"}
    assert maps["roi"].shape == (3, S, S) and maps["liver"].dtype == np.float32
    assert np.array_equal(maps["liver"][0] > 0.5, _two_piece_liver() > 0)
    assert np.array_equal(run_network(model, batch), maps["roi"])
    study = _study(3)
    per_slice = predict_maps(model, study.series.slices)
    assert len(per_slice) == 3 and per_slice[1]["liver"].shape == (S, S)
    assert np.array_equal(predict_probabilities(model, study.series.slices)[2], per_slice[2]["roi"])
    with pytest.raises(ValueError, match="output channels"):
        run_network_maps(_model(logits[:, :1], ("roi", "liver")), batch)


def test_liver_region_pieces_minimum_and_margin() -> None:
    p = np.zeros((40, 40), np.float32)
    p[5:35, 5:25] = 0.8  # 600 px
    p[10:20, 30:38] = 0.9  # 80 px, separate
    largest = np.zeros((40, 40), bool)
    largest[5:35, 5:25] = True
    assert np.array_equal(liver_region(p, 50, (0, 0)), largest)
    assert not liver_region(p, 601, (0, 0)).any()
    eroded = liver_region(p, 50, (3, 3))
    assert eroded.sum() == 24 * 14 and eroded[8:32, 8:22].all()
    assert not liver_region(np.full((8, 8), 0.5, np.float32), 1, (0, 0)).any()  # > 0.5, not >=
    assert margin_px(5.0, (1.5625, 1.5625)) == (3, 3) and margin_px(0.0, (1.0, 1.0)) == (0, 0)
    prob = np.full((4, 4), 0.9, np.float32)
    region = np.zeros((4, 4), bool)
    region[1:3, 1:3] = True
    r = restricted_probability(prob, region)
    assert r.dtype == np.float32 and r.sum() == pytest.approx(3.6) and r[0, 0] == 0.0


def test_liver_margin_setting_reads_from_the_environment_and_refuses_negatives() -> None:
    assert Settings().liver_margin_mm == 10.0
    assert Settings.from_env({"MRE_LIVER_MARGIN_MM": "2.5"}).liver_margin_mm == 2.5
    with pytest.raises(ValueError, match="liver_margin_mm"):
        Settings(liver_margin_mm=-1.0)
    with pytest.raises(ValueError, match="MRE_LIVER_MARGIN_MM"):
        Settings.from_env({"MRE_LIVER_MARGIN_MM": "wide"})


def _save_two_output_constant(weights_dir, name: str, roi_logit: float, liver_logit: float) -> None:
    cfg = ModelConfig(name=name, arch="unet_plain", plain_base_channels=4, input=InputSpec(size=128),
                      outputs=("roi", "liver"))
    net = build_model(cfg)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([roi_logit, liver_logit]))
    save_weights(net, cfg, weights_dir)


def test_saved_two_output_plain_unet_on_a_phantom_study(phantom_studies, all_liver_weights, tmp_path) -> None:
    _save_two_output_constant(tmp_path, "all_in_liver", 10.0, 10.0)
    _save_two_output_constant(tmp_path, "no_liver", 10.0, -10.0)
    settings = Settings(device="cpu", min_component_area_mm2=0)
    study = read_inputs([phantom_studies["siemens_zero"]], settings).studies[0]
    two = load_model(tmp_path, "all_in_liver", "cpu")
    assert two.config.outputs == ("roi", "liver")
    one = analyze_study(study, load_model(all_liver_weights, "all_liver", "cpu"), settings)
    both = analyze_study(study, two, settings)
    # the liver is the whole image: the image border erodes nothing, so the ROI is the single-output one
    for a, b in zip(one.slices, both.slices):
        assert np.array_equal(a.roi, b.roi) and a.qc_flags == b.qc_flags
    assert both.stiffness_kpa == pytest.approx(one.stiffness_kpa)
    none = analyze_study(study, load_model(tmp_path, "no_liver", "cpu"), settings)
    assert all(s.excluded and QcFlag.EMPTY_ROI in s.qc_flags for s in none.slices) and none.stage is None
