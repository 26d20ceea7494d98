"""The magnitude image as a model input: the channel, widening a trained network, augmentation and dropout,
training, and the QC flag when an exam has no magnitude image for a model that reads one."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mre_core.analysis.pipeline import analyze_study
from mre_core.analysis.preprocess import (MAGNITUDE_CHANNEL, InputSpec, model_input, normalised_magnitude,
                                          slice_channels, uses_magnitude)
from mre_core.analysis.stiffness import QcFlag
from mre_core.config import DEFAULT_MODEL_NAME, DEFAULT_WEIGHTS_DIR, Settings
from mre_core.model import train as tr
from mre_core.model.augment import Augmenter
from mre_core.model.dataset import build_arrays, cache_key, cached_arrays, cohort_records, read_patient
from mre_core.model.network import (FIRST_CONV_KEYS, ModelConfig, adapt_input, build_model, load_model,
                                    save_weights, untrained_model)
from mre_core.model.site import SiteTrainParams, train_config

THREE = InputSpec().channels
FOUR = (*THREE, MAGNITUDE_CHANNEL)


# ----------------------------------------------------------------------------------------------- the channel
def test_normalised_magnitude_maps_its_percentiles_to_0_and_1() -> None:
    rng = np.random.default_rng(0)
    m = rng.gamma(2.0, 100.0, (64, 64)).astype(np.float32)
    m[0, 0] = 1e6  # one very bright pixel does not squash the rest
    out = normalised_magnitude(m, m.shape)
    low, high = np.percentile(m, (1.0, 99.5))
    assert out.dtype == np.float32 and out.shape == m.shape and out.min() == 0.0 and out.max() == 1.0
    inside = (m > low) & (m < high)
    assert np.allclose(out[inside], (m[inside] - low) / (high - low), atol=1e-6)
    assert 0.2 < float(np.median(out)) < 0.6
    # scanner gain does not matter: the same image times 37 gives the same channel
    assert np.allclose(normalised_magnitude(37.0 * m, m.shape), out, atol=1e-5)


@pytest.mark.parametrize("magnitude", [None, np.full((8, 8), 5.0, np.float32)])
def test_no_magnitude_or_a_flat_one_gives_an_all_zero_channel(magnitude) -> None:
    out = normalised_magnitude(magnitude, (8, 8))
    assert out.shape == (8, 8) and not out.any()


def _study(tiny_cohort, split: str = "test"):
    return read_patient(cohort_records(tiny_cohort, split)[0], Settings(device="cpu"))


def test_the_magnitude_channel_carries_the_paired_magnitude_image(tiny_cohort) -> None:
    study = _study(tiny_cohort)
    e = study.series.slices[0]
    assert e.magnitude is not None and e.magnitude.shape == e.shape
    spec = InputSpec(size=64, channels=FOUR)
    assert uses_magnitude(spec) and not uses_magnitude(InputSpec())
    planes = slice_channels(e, spec)
    assert planes.shape == (4, *e.shape)
    assert np.array_equal(planes[:3], slice_channels(e, InputSpec(size=64)))  # the first three are unchanged
    assert np.array_equal(planes[3], normalised_magnitude(e.magnitude, e.shape))
    # the anatomy is there: the magnitude plane differs from every stiffness plane
    assert all(not np.allclose(planes[3], planes[c]) for c in range(3))
    without = replace(e, magnitude=None)
    assert not slice_channels(without, spec)[3].any()
    batch = model_input([e, without], spec)
    assert batch.shape == (2, 4, 64, 64) and batch[0, 3].any() and not batch[1, 3].any()


def test_an_unknown_channel_is_an_error_that_names_it(tiny_cohort) -> None:
    e = _study(tiny_cohort).series.slices[0]
    with pytest.raises(ValueError, match="phase"):
        slice_channels(e, InputSpec(channels=(*THREE, "phase")))


# ----------------------------------------------------------------------------------------------- network
@pytest.mark.parametrize("arch", ["unet_plain", "unet_resnext50"])
def test_a_widened_network_computes_what_the_old_one_did(arch) -> None:
    torch.manual_seed(1)
    old_cfg = ModelConfig(arch=arch, plain_base_channels=4, input=InputSpec(size=64))
    old = build_model(old_cfg).eval()
    new = build_model(replace(old_cfg, input=InputSpec(size=64, channels=FOUR))).eval()
    state = adapt_input(old.state_dict(), THREE, FOUR)
    new.load_state_dict(state)
    (key,) = [k for k in FIRST_CONV_KEYS if k in state]
    assert state[key].shape[1] == 4 and not state[key][:, 3].any()
    assert torch.equal(state[key][:, :3], old.state_dict()[key])
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        a = old(x)
        b = new(torch.cat([x, torch.rand(2, 1, 64, 64)], 1))  # any magnitude: its weights are still zero
    assert torch.allclose(a, b, atol=1e-5)


def test_the_mean_init_starts_the_new_channel_from_the_old_channels_mean_and_fine_tuning_uses_it() -> None:
    cfg = ModelConfig(arch="unet_plain", plain_base_channels=4, input=InputSpec(size=64))
    state = build_model(cfg).state_dict()
    w = adapt_input(state, THREE, FOUR, "mean")["down.0.0.weight"]
    assert torch.allclose(w[:, 3], state["down.0.0.weight"].mean(dim=1)) and w[:, 3].abs().sum() > 0
    assert torch.equal(w[:, :3], state["down.0.0.weight"])
    with pytest.raises(ValueError, match="init"):
        adapt_input(state, THREE, FOUR, "random")
    assert tr.TrainConfig().new_channel_init == "mean"


def test_widening_keeps_channels_by_name_and_refuses_to_drop_one() -> None:
    cfg = ModelConfig(arch="unet_plain", plain_base_channels=4, input=InputSpec(size=64))
    state = build_model(cfg).state_dict()
    reordered = ("confidence", MAGNITUDE_CHANNEL, "kpa_confident", "kpa_known")
    w = adapt_input(state, THREE, reordered)["down.0.0.weight"]
    old = state["down.0.0.weight"]
    assert torch.equal(w[:, 0], old[:, 1]) and torch.equal(w[:, 2], old[:, 0]) and torch.equal(w[:, 3], old[:, 2])
    assert not w[:, 1].any()
    assert adapt_input(state, THREE, THREE) is state
    with pytest.raises(ValueError, match="kpa_known"):
        adapt_input(state, THREE, ("kpa_confident", "confidence", MAGNITUDE_CHANNEL))


def test_fine_tuning_a_three_channel_model_adds_the_magnitude_channel(tmp_path) -> None:
    three = ModelConfig(name="three", arch="unet_plain", plain_base_channels=4, input=InputSpec(size=64))
    torch.manual_seed(2)
    save_weights(build_model(three), three, tmp_path)
    start = load_model(tmp_path, "three", "cpu")
    cfg = tr.TrainConfig(arch="unet_plain", plain_base_channels=4, input_size=64, channels=FOUR,
                         init_weights=str(tmp_path / "three"))
    model_cfg = ModelConfig(arch="unet_plain", plain_base_channels=4, input=InputSpec(size=64, channels=FOUR))
    state, version = tr.initial_state(replace(cfg, new_channel_init="zero"), model_cfg)
    assert version == start.version
    assert state["down.0.0.weight"].shape[1] == 4 and not state["down.0.0.weight"][:, 3].any()
    mean_state, _ = tr.initial_state(cfg, model_cfg)  # the default: the mean of the old channels' weights
    assert torch.allclose(mean_state["down.0.0.weight"][:, 3], start.net.state_dict()["down.0.0.weight"].mean(dim=1))
    # a run without one of the start model's channels is refused, not silently started from another network
    fewer = replace(model_cfg, input=InputSpec(size=64, channels=("kpa_confident", "confidence")))
    with pytest.raises(ValueError, match="drop"):
        tr.initial_state(cfg, fewer)


def test_the_shipped_weights_read_the_magnitude_and_cannot_be_narrowed_to_three_channels() -> None:
    shipped = load_model(DEFAULT_WEIGHTS_DIR, DEFAULT_MODEL_NAME, "cpu")
    assert shipped.config.input.channels == FOUR and uses_magnitude(shipped.config.input)
    cfg = tr.TrainConfig(arch=shipped.config.arch, input_size=shipped.config.input.size,
                         init_weights=str(DEFAULT_WEIGHTS_DIR / DEFAULT_MODEL_NAME))
    with pytest.raises(ValueError, match="drop"):
        tr.initial_state(cfg, ModelConfig(arch=cfg.arch, input=InputSpec(size=cfg.input_size)))


def test_model_config_round_trips_the_channels(tmp_path) -> None:
    cfg = ModelConfig(name="mag", arch="unet_plain", plain_base_channels=4, input=InputSpec(size=64, channels=FOUR))
    save_weights(build_model(cfg), cfg, tmp_path)
    assert json.loads((tmp_path / "mag.json").read_text())["input"]["channels"] == list(FOUR)
    loaded = load_model(tmp_path, "mag", "cpu")
    assert loaded.config.input.channels == FOUR and loaded.net.down[0][0].in_channels == 4


# ----------------------------------------------------------------------------------------------- augmentation
def _batch(n: int = 6, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - size / 2) ** 2 / (0.4 * size) ** 2 + (xx - size / 2) ** 2 / (0.45 * size) ** 2) < 1
    conf = (body & (xx < size / 2)).astype(np.float32)
    kpa = body * rng.uniform(0.2, 0.6, (size, size)).astype(np.float32)
    mag = body * (0.3 + 0.5 * (xx < size / 2)) + rng.normal(0, 0.02, (size, size))
    x = np.stack([np.stack([kpa * conf, conf, kpa, np.clip(mag, 0, 1)]) for _ in range(n)]).astype(np.float32)
    y = np.repeat(conf[None, None], n, 0).astype(np.uint8)
    return x, y


def test_magnitude_augmentation_leaves_the_other_channels_draws_unchanged() -> None:
    x, y = _batch()
    changed = 0
    for seed in range(6):  # per slice: the magnitude's draws come after the slice's other draws
        plain_x, plain_y = Augmenter(p_coarse_grid=0.0).one(x[0], y[0], np.random.default_rng(seed))
        mag_x, mag_y = Augmenter(magnitude_channels=(3,), p_coarse_grid=0.0).one(x[0], y[0],
                                                                                 np.random.default_rng(seed))
        assert np.array_equal(plain_x[:3], mag_x[:3]) and np.array_equal(plain_y, mag_y)
        assert mag_x.min() >= 0.0 and mag_x.max() <= 1.0
        changed += not np.array_equal(plain_x[3], mag_x[3])  # the magnitude plane itself was augmented
    assert changed == 6


def test_magnitude_dropout_zeroes_about_a_quarter_of_the_planes_and_keeps_the_rest_scaled() -> None:
    x, y = _batch(n=400, size=32)
    aug = Augmenter(magnitude_channels=(3,), p_coarse_grid=0.0)
    out, _ = aug(x, y, np.random.default_rng(3))
    dropped = ~out[:, 3].reshape(len(out), -1).any(axis=1)
    # binomial(400, 0.25): mean 100, SD 8.7; +-4 SD
    assert 65 <= int(dropped.sum()) <= 135
    kept = out[~dropped, 3].reshape(int((~dropped).sum()), -1)
    assert np.allclose(kept.max(axis=1), 1.0) and np.all(kept.min(axis=1) == 0.0)  # re-scaled as at inference
    # the liver side (image left) stays brighter than the other side on average: the anatomy survives
    left, right = out[~dropped, 3, :, 8:14].mean(), out[~dropped, 3, :, 18:24].mean()
    assert left > right
    # an all-zero plane (an exam without magnitude) stays zero
    x[:, 3] = 0.0
    assert not aug(x[:20], y[:20], np.random.default_rng(4))[0][:, 3].any()


def test_a_coarse_stored_grid_is_simulated_on_every_plane_last() -> None:
    from mre_core.model.augment import coarse_grid

    x, y = _batch(n=1, size=64)
    out = coarse_grid(x[0], 0.25)  # 16 pixels across, back to 64
    assert out.shape == x[0].shape and out.dtype == np.float32
    # pixel-scale detail is gone (the noise of the stiffness planes), the image's mean is kept
    def detail(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a, axis=-1)).mean())
    assert detail(out[2]) < 0.5 * detail(x[0, 2]) and abs(float(out.mean() - x[0].mean())) < 0.01
    assert np.array_equal(coarse_grid(x[0], 1.0), x[0])
    # the draw comes after every other one: with it off, the rest of the slice is augmented the same
    on = Augmenter(p_coarse_grid=1.0).one(x[0], y[0], np.random.default_rng(2))
    off = Augmenter(p_coarse_grid=0.0).one(x[0], y[0], np.random.default_rng(2))
    assert np.array_equal(on[1], off[1]) and not np.array_equal(on[0], off[0])


def test_basic_augmentation_drops_the_magnitude_plane_too() -> None:
    x, y = _batch(n=200, size=32)
    gen = torch.Generator().manual_seed(0)
    out = tr.drop_magnitude(torch.from_numpy(x), tr.magnitude_planes(FOUR), gen)
    dropped = ~out[:, 3].reshape(200, -1).bool().any(dim=1)
    assert 25 <= int(dropped.sum()) <= 75 and torch.equal(out[:, :3], torch.from_numpy(x[:, :3]))
    assert tr.drop_magnitude(torch.from_numpy(x), (), gen) is not None
    assert tr.magnitude_planes(THREE) == () and tr.magnitude_planes(FOUR) == (3,)


# ----------------------------------------------------------------------------------------------- data, training, CLI
def test_the_cache_is_keyed_by_the_channels(tiny_cohort, tmp_path) -> None:
    record = cohort_records(tiny_cohort, "train")[:1]
    three, four = InputSpec(size=64), InputSpec(size=64, channels=FOUR)
    settings = Settings(device="cpu")
    assert cache_key(record, three) != cache_key(record, four)
    assert cache_key(record, three) == f"1:{record[0].patient_id}:{record[0].patient_id}:64"  # old caches still match
    cache = tmp_path / "c.npz"
    assert cached_arrays(record, three, settings, cache).inputs.shape[1] == 3
    got = cached_arrays(record, four, settings, cache)
    assert got.inputs.shape[1] == 4
    assert np.array_equal(got.inputs, build_arrays(record, four, settings).inputs)
    assert cached_arrays(record, three, settings, cache).inputs.shape[1] == 3


TINY4 = tr.TrainConfig(arch="unet_plain", plain_base_channels=4, input_size=64, epochs=1, batch=4, micro_batch=4,
                       optimizer="adamw", lr=3e-3, weight_decay=0.0, val_fraction=0.5, augment=True,
                       augment_style="full", loss="bce_dice", outputs=("roi", "liver"), channels=FOUR)


def test_one_epoch_with_the_magnitude_exports_a_model_that_reads_it_and_flags_an_exam_without_it(
        tiny_cohort, tmp_path) -> None:
    settings = Settings(device="cpu")
    record = tr.train(tiny_cohort, tmp_path / "run", TINY4, settings, export=tmp_path / "w", name="mag",
                      show_progress=False)
    assert record["train_config"]["channels"] == FOUR and np.isfinite(record["log"][0]["train_loss"])
    model = load_model(tmp_path / "w", "mag", "cpu")
    assert model.config.input.channels == FOUR
    study = _study(tiny_cohort)
    with_mag = analyze_study(study, model, settings)
    assert QcFlag.NO_MAGNITUDE_IMAGE not in with_mag.stiffness.qc_flags
    # the same exam without its magnitude images: analysed, and the study says the model went without them
    bare = replace(study, series=replace(study.series, slices=tuple(replace(e, magnitude=None)
                                                                    for e in study.series.slices)))
    without = analyze_study(bare, model, settings)
    assert len(without.slices) == len(study.series.slices)
    assert QcFlag.NO_MAGNITUDE_IMAGE in without.stiffness.qc_flags
    assert "elastogram alone" in QcFlag.NO_MAGNITUDE_IMAGE.explanation
    # a model that does not read the magnitude never raises the flag
    three = untrained_model("unet_plain", "cpu")
    assert not uses_magnitude(three.config.input)
    assert QcFlag.NO_MAGNITUDE_IMAGE not in analyze_study(bare, three, settings).stiffness.qc_flags


def test_cli_channels_flag() -> None:
    p = argparse.ArgumentParser()
    tr.configure_parser(p)
    assert p.parse_args([]).channels == THREE
    assert p.parse_args(["--channels", ",".join(FOUR)]).channels == FOUR
    assert p.parse_args([]).new_channel_init == "mean"
    assert p.parse_args(["--new-channel-init", "zero"]).new_channel_init == "zero"
    for bad in ("kpa_confident,phase", "kpa_known,kpa_known", ""):
        with pytest.raises(SystemExit):
            p.parse_args(["--channels", bad])


def test_site_training_keeps_the_starting_models_channels() -> None:
    cfg = train_config(SiteTrainParams(), "unet_resnext50", 256, "", channels=FOUR)
    assert cfg.channels == FOUR and train_config(SiteTrainParams(), "unet_resnext50", 256, "").channels == THREE


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from mre_core.phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort_mag")
    generate_cohort(out, 8, seed=4, progress=False, workers=1)
    return out
