"""A second network output, the liver: config, heads, init from single-output weights, targets, training."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from mre_core.analysis.pipeline import analyze_study
from mre_core.analysis.preprocess import InputSpec
from mre_core.config import DEFAULT_MODEL_NAME, DEFAULT_WEIGHTS_DIR, Settings
from mre_core.model import augment as aug
from mre_core.model import train as tr
from mre_core.model.dataset import build_arrays, cached_arrays, cohort_records, read_patient
from mre_core.model.evaluate import evaluate
from mre_core.model.network import ModelConfig, adapt_head, build_model, load_model, save_weights

TWO = ("roi", "liver")


# ----------------------------------------------------------------------------------------------- config, network
def test_config_json_round_trip_with_and_without_outputs() -> None:
    cfg = ModelConfig(name="two", arch="unet_plain", plain_base_channels=4, outputs=TWO)
    d = json.loads(json.dumps(cfg.to_json()))
    assert d["outputs"] == ["roi", "liver"]
    assert ModelConfig.from_json(d) == cfg
    assert ModelConfig.from_json(json.loads(json.dumps(ModelConfig().to_json()))).outputs == ("roi",)
    del d["outputs"]
    assert ModelConfig.from_json(d).outputs == ("roi",)
    shipped = json.loads((DEFAULT_WEIGHTS_DIR / f"{DEFAULT_MODEL_NAME}.json").read_text())
    assert shipped["outputs"] == ["roi", "liver"] and ModelConfig.from_json(shipped).outputs == TWO


@pytest.mark.parametrize("outputs", [("liver",), ("roi", "spleen"), ("roi", "roi"), ()])
def test_outputs_must_start_with_the_roi_and_be_known(outputs) -> None:
    with pytest.raises(ValueError, match="outputs"):
        ModelConfig(outputs=outputs)


@pytest.mark.parametrize("arch", ["unet_plain", "unet_resnext50"])
@pytest.mark.parametrize("outputs", [("roi",), TWO])
def test_build_model_gives_one_output_channel_per_output(arch, outputs) -> None:
    net = build_model(ModelConfig(arch=arch, plain_base_channels=4, outputs=outputs)).eval()
    with torch.inference_mode():
        y = net(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, len(outputs), 64, 64)


def _head_keys(arch: str) -> tuple[str, str]:
    return ("head.weight", "head.bias") if arch == "unet_plain" else ("segmentation_head.0.weight",
                                                                      "segmentation_head.0.bias")


@pytest.mark.parametrize("arch", ["unet_plain", "unet_resnext50"])
def test_head_expansion_copies_the_roi_channel_into_the_liver_channel(arch) -> None:
    torch.manual_seed(0)
    one = build_model(ModelConfig(arch=arch, plain_base_channels=4)).eval()
    two = build_model(ModelConfig(arch=arch, plain_base_channels=4, outputs=TWO)).eval()
    state = adapt_head(one.state_dict(), ("roi",), TWO)
    two.load_state_dict(state)  # strict: every other tensor is taken as it is
    w, b = _head_keys(arch)
    assert two.state_dict()[w].shape[0] == 2
    assert torch.equal(two.state_dict()[w][1], one.state_dict()[w][0])
    assert torch.equal(two.state_dict()[b][1], one.state_dict()[b][0])
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        y1, y2 = one(x), two(x)
    assert torch.allclose(y2[:, 0], y2[:, 1], atol=1e-6)  # the liver channel starts as the ROI detector
    assert torch.allclose(y2[:, :1], y1, atol=1e-5)
    back = adapt_head(state, TWO, ("roi",))  # and a two-output model fine-tuned as a single-output one keeps the ROI
    assert back[w].shape[0] == 1 and torch.equal(back[w][0], state[w][0])
    assert adapt_head(state, TWO, TWO) is state


def test_init_from_the_shipped_two_output_weights_keeps_or_narrows_their_head() -> None:
    shipped = load_model(DEFAULT_WEIGHTS_DIR, DEFAULT_MODEL_NAME, "cpu")
    w, b = _head_keys("unet_resnext50")
    spec = shipped.config.input
    for outputs in (TWO, ("roi",)):  # the same outputs; a single-output run (site training) keeps the ROI head
        cfg = tr.TrainConfig(arch="unet_resnext50", input_size=spec.size, outputs=outputs, channels=spec.channels,
                             init_weights=str(DEFAULT_WEIGHTS_DIR / DEFAULT_MODEL_NAME))
        model_cfg = ModelConfig(arch="unet_resnext50", input=spec, outputs=outputs)
        state, version = tr.initial_state(cfg, model_cfg)
        assert version == shipped.version
        net = build_model(model_cfg)
        net.load_state_dict(state)
        for key in (w, b):
            assert torch.equal(net.state_dict()[key][0], shipped.net.state_dict()[key][0])
        assert net.state_dict()[w].shape[0] == len(outputs)


def test_cli_outputs_flag() -> None:
    parser = argparse.ArgumentParser()
    tr.configure_parser(parser)
    base = ["--data", "d", "--out", "o"]
    assert parser.parse_args(base).outputs == ("roi",) == tr.TrainConfig().outputs
    assert parser.parse_args([*base, "--outputs", "roi,liver"]).outputs == TWO
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--outputs", "liver"])


# ----------------------------------------------------------------------------------------------- loss, augmentation
def test_two_output_loss_is_the_sum_of_the_channel_losses() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 8, 8), (torch.rand(2, 2, 8, 8) > 0.5).float()
    for kind in ("bce", "bce_dice"):
        want = tr.segmentation_loss(logits[:, :1], target[:, :1], kind) + tr.segmentation_loss(
            logits[:, 1:], target[:, 1:], kind)
        assert torch.allclose(tr.outputs_loss(logits, target, kind, TWO), want)
        assert torch.equal(tr.outputs_loss(logits[:, :1], target[:, :1], kind),
                           tr.segmentation_loss(logits[:, :1], target[:, :1], kind))


def _two_channel_batch(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    y = np.zeros((n, 2, 64, 64), np.uint8)
    y[:, 0, 20:40, 10:30] = 1  # ROI
    y[:, 1, 12:50, 6:36] = 1  # liver, around it
    x = np.stack([np.stack([y[i, 1] * 0.4, y[i, 1].astype(np.float32), y[i, 1] * 0.4]) for i in range(n)])
    return x.astype(np.float32), y


def test_full_augmentation_warps_every_target_channel_with_the_same_warp() -> None:
    x, y = _two_channel_batch()
    augmenter = aug.Augmenter(p_elastic=1.0, p_affine=1.0)
    xa, ya = augmenter(x, y, np.random.default_rng(4))
    assert ya.shape == y.shape and not np.array_equal(ya, y)
    _, roi_alone = augmenter(x, y[:, :1], np.random.default_rng(4))
    _, liver_alone = augmenter(x, y[:, 1:], np.random.default_rng(4))
    assert np.array_equal(ya[:, :1], roi_alone) and np.array_equal(ya[:, 1:], liver_alone)
    assert not (ya[:, 0] & ~ya[:, 1]).any()  # the ROI stays inside the liver


def test_basic_augmentation_warps_every_target_channel_with_the_same_warp() -> None:
    x, y = (torch.from_numpy(a.astype(np.float32)) for a in _two_channel_batch())
    xa, ya = tr.augment(x, y, torch.Generator().manual_seed(2))
    _, roi_alone = tr.augment(x, y[:, :1], torch.Generator().manual_seed(2))
    assert ya.shape == y.shape and torch.equal(ya[:, :1], roi_alone)
    assert ((xa[:, 1] > 0.5) == (ya[:, 1] > 0.5)).float().mean() > 0.99  # the liver moved with the image


# ----------------------------------------------------------------------------------------------- data, training
@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from mre_core.phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, 8, seed=3, progress=False, workers=1)
    return out


def test_targets_have_the_liver_in_channel_1(tiny_cohort, tmp_path) -> None:
    record = cohort_records(tiny_cohort, "train")[:1]
    spec, settings = InputSpec(size=64), Settings(device="cpu")
    one = build_arrays(record, spec, settings)
    two = build_arrays(record, spec, settings, TWO)
    assert one.targets.shape[1] == 1 and two.targets.shape == (len(one), 2, 64, 64) and two.targets.dtype == np.uint8
    assert np.array_equal(two.targets[:, 0], one.targets[:, 0]) and np.array_equal(two.inputs, one.inputs)
    with np.load(record[0].truth_path) as z:  # independently: the truth file's liver masks on the model grid
        uids, livers = [str(u) for u in z["sop_uids"]], z["liver_mask"]
    study = read_patient(record[0], settings)
    order = [uids.index(e.sop_uid) for e in study.series.slices if e.sop_uid in uids]
    want = np.stack([cv2.resize(livers[i].astype(np.float32), (64, 64), interpolation=cv2.INTER_LINEAR) > 0.5
                     for i in order])
    assert np.array_equal(two.targets[:, 1].astype(bool), want)
    assert two.targets[:, 1].sum() > 1.2 * two.targets[:, 0].sum()  # the liver, not the ROI again
    # the cache is keyed by the outputs: a single-output cache is not reused for two outputs, nor the reverse
    cache = tmp_path / "cache.npz"
    assert cached_arrays(record, spec, settings, cache).targets.shape[1] == 1
    assert np.array_equal(cached_arrays(record, spec, settings, cache, TWO).targets, two.targets)
    assert cached_arrays(record, spec, settings, cache).targets.shape[1] == 1


TINY2 = tr.TrainConfig(arch="unet_plain", plain_base_channels=4, input_size=64, epochs=1, batch=4, micro_batch=4,
                       optimizer="adamw", lr=3e-3, weight_decay=0.0, val_fraction=0.5, augment=True,
                       augment_style="full", loss="bce_dice", outputs=TWO)


def test_one_epoch_with_a_liver_output_exports_a_model_that_analyses_a_study(tiny_cohort, tmp_path) -> None:
    settings = Settings(device="cpu")
    record = tr.train(tiny_cohort, tmp_path / "run", TINY2, settings, export=tmp_path / "w", name="two",
                      show_progress=False)
    (row,) = record["log"]
    assert np.isfinite(row["train_loss"]) and 0.0 <= row["val_dice"] <= 1.0 and 0.0 <= row["val_dice_liver"] <= 1.0
    assert record["train_config"]["outputs"] == TWO
    saved = json.loads((tmp_path / "w" / "two.json").read_text())
    assert saved["outputs"] == ["roi", "liver"]
    model = load_model(tmp_path / "w", "two", "cpu")
    assert model.config.outputs == TWO and model.net.head.out_channels == 2
    study = read_patient(cohort_records(tiny_cohort, "test")[0], settings)
    result = analyze_study(study, model, settings)
    assert len(result.slices) == len(study.series.slices) > 0
    # resume continues the two-output run
    again = tr.train(tiny_cohort, tmp_path / "run", replace(TINY2, epochs=2), settings, resume=True,
                     show_progress=False)
    assert [r["epoch"] for r in again["log"]] == [1, 2]
    # and evaluate reports the liver Dice for it (only for it)
    metrics = evaluate(tiny_cohort, settings, ("test",), max_patients=2, model=model, show_progress=False)
    block = metrics["splits"]["test"]
    assert 0.0 <= block["liver_segmentation"]["dice"]["mean"] <= 1.0 and "liver_dice" in block["_slices"]
    assert metrics["outputs"] == ["roi", "liver"] and metrics["postprocess"]["liver_margin_mm"] == 10.0


def test_fine_tuning_a_single_output_model_with_a_liver_output_starts_from_its_roi_head(tiny_cohort,
                                                                                        tmp_path) -> None:
    settings = Settings(device="cpu")
    cfg = ModelConfig(name="one", arch="unet_plain", plain_base_channels=4, input=InputSpec(size=64))
    torch.manual_seed(5)
    save_weights(build_model(cfg), cfg, tmp_path / "w1")
    start = load_model(tmp_path / "w1", "one", "cpu")
    tuned_cfg = replace(TINY2, augment=False, lr=0.0, init_weights=str(tmp_path / "w1" / "one"))  # lr 0: no move
    record = tr.train(tiny_cohort, tmp_path / "run", tuned_cfg, settings, export=tmp_path / "w2", name="two",
                      show_progress=False)
    assert record["init_weights"] == start.version
    tuned = load_model(tmp_path / "w2", "two", "cpu")
    for key in ("head.weight", "head.bias"):
        assert torch.equal(tuned.net.state_dict()[key][1], start.net.state_dict()[key][0])
        assert torch.equal(tuned.net.state_dict()[key][0], start.net.state_dict()[key][0])


def test_training_refuses_targets_that_do_not_match_the_outputs(tiny_cohort, tmp_path) -> None:
    from mre_core.model.dataset import ArrayDataset

    data = ArrayDataset(np.zeros((2, 3, 64, 64), np.float16), np.zeros((2, 1, 64, 64), np.uint8), ("a", "b"))
    with pytest.raises(ValueError, match="outputs"):
        tr.fit(data, data, tmp_path / "run", TINY2, Settings(device="cpu"), show_progress=False)


def test_a_single_output_evaluation_has_no_liver_columns(tiny_cohort, all_liver_weights) -> None:
    settings = Settings(device="cpu")
    model = load_model(all_liver_weights, "all_liver", "cpu")
    block = evaluate(tiny_cohort, settings, ("test",), max_patients=2, model=model, show_progress=False)
    assert "liver_segmentation" not in block["splits"]["test"] and "outputs" not in block
    assert "liver_dice" not in block["splits"]["test"]["_slices"]
    assert "liver_margin_mm" not in block["postprocess"]
