"""Training-time augmentation: shapes, binary aligned targets, no flips, reproducibility, train --augment."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from mre_core.config import Settings
from mre_core.model import augment as aug
from mre_core.model import train as tr

S = 64


def _batch(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A square 'liver' (target) inside a confidence region on the image left, stiffness 0.3-0.5."""
    y = np.zeros((n, 1, S, S), np.uint8)
    y[:, :, 20:40, 8:28] = 1
    conf = np.zeros((S, S), np.float32)
    conf[14:46, 4:34] = 1.0
    known = np.zeros((S, S), np.float32)
    known[6:58, 2:62] = 0.3
    known[20:40, 8:28] = 0.5
    x = np.stack([np.stack([known * conf, conf, known])] * n).astype(np.float32)
    return x, y


def test_shapes_dtypes_ranges_and_masking_are_kept() -> None:
    x, y = _batch()
    xa, ya = aug.Augmenter()(x, y, np.random.default_rng(0))
    assert xa.shape == x.shape and xa.dtype == np.float32 and ya.shape == y.shape and ya.dtype == np.uint8
    assert xa.min() >= 0.0 and xa.max() <= 1.0
    assert set(np.unique(ya)) <= {0, 1}
    assert not (xa[:, 0][xa[:, 1] == 0] != 0).any()  # masked stiffness stays 0 outside the confidence region
    yf = y.astype(np.float32)
    _, yfa = aug.Augmenter()(x, yf, np.random.default_rng(0))
    assert yfa.dtype == np.float32 and set(np.unique(yfa)) <= {0.0, 1.0}


def test_elastic_and_affine_move_image_and_target_together() -> None:
    x, y = _batch(6)
    only_geometry = aug.Augmenter(p_intensity=0, p_gamma=0, p_blur=0, p_noise=0, p_elastic=1.0, p_affine=1.0,
                                  elastic_sd=(0.02, 0.03), rotation_deg=15)
    xa, ya = only_geometry(x, y, np.random.default_rng(3))
    assert not np.array_equal(ya, y)  # it moved
    for i in range(len(x)):
        square_in_image = xa[i, 2] > 0.45  # the bright square of the stiffness channel
        target = ya[i, 0] > 0
        agree = (square_in_image == target).mean()
        assert agree > 0.98, agree
        inter = (square_in_image & target).sum()
        assert 2 * inter / (square_in_image.sum() + target.sum()) > 0.9


def test_no_left_right_flip() -> None:
    x, y = _batch(16)
    strong = aug.Augmenter(p_elastic=1.0, p_affine=1.0, rotation_deg=10)
    xa, ya = strong(x, y, np.random.default_rng(7))
    for i in range(len(x)):
        cols = np.nonzero(ya[i, 0])[1]
        assert cols.size and np.median(cols) < S / 2  # the lateralised blob stays on the image left
        assert np.nonzero(xa[i, 1] > 0.5)[1].mean() < S / 2
    with pytest.raises(ValueError, match="zoom"):
        aug.warp_maps((S, S), 0.0, -1.0, (0.0, 0.0))
    mx, my = aug.warp_maps((S, S), 10.0, 1.05, (1.0, -2.0))
    jac = np.linalg.det(np.array([[np.gradient(mx, axis=1).mean(), np.gradient(mx, axis=0).mean()],
                                  [np.gradient(my, axis=1).mean(), np.gradient(my, axis=0).mean()]]))
    assert jac > 0  # orientation preserving: a rotation, never a reflection


def test_same_seed_same_output_other_seed_differs() -> None:
    x, y = _batch()
    a = aug.Augmenter()(x, y, np.random.default_rng(11))
    b = aug.Augmenter()(x, y, np.random.default_rng(11))
    c = aug.Augmenter()(x, y, np.random.default_rng(12))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_single_transforms() -> None:
    img = np.zeros((1, S, S), np.float32)
    img[0, 10:30, 10:30] = 0.5
    out = aug.intensity_scale_shift(img, 1.5, 0.1)
    assert out[0, 0, 0] == 0 and out[0, 20, 20] == pytest.approx(0.85)
    assert aug.gamma(img, 2.0)[0, 20, 20] == pytest.approx(0.25)
    blurred = aug.gaussian_blur(img, 2.0)
    assert blurred.shape == img.shape and 0 < blurred[0, 9, 20] < 0.5
    noisy = aug.gaussian_noise(img, 0.05, np.random.default_rng(0))
    assert noisy[0, 0, 0] == 0 and noisy[0, 10:30, 10:30].std() > 0.02
    field = aug.elastic_field(np.random.default_rng(0), (S, S), 2.0, 16.0)
    assert field.shape == (2, S, S) and field.std() == pytest.approx(2.0, rel=0.05)
    assert ndi.gaussian_filter(field[0], 4).std() > 0.5 * field[0].std()  # smooth


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from mre_core.phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, 8, seed=3, progress=False, workers=1)
    return out


TINY = tr.TrainConfig(arch="unet_plain", plain_base_channels=8, input_size=64, epochs=2, batch=4, micro_batch=4,
                      optimizer="adamw", lr=3e-3, weight_decay=0.0, val_fraction=0.5, augment=True,
                      augment_style="full", loss="bce_dice")


def test_train_with_full_augmentation_runs_reproducibly_and_resumes(tiny_cohort, tmp_path) -> None:
    settings = Settings(device="cpu")
    a = tr.train(tiny_cohort, tmp_path / "a", TINY, settings, show_progress=False)
    assert a["train_config"]["augment_style"] == "full" and len(a["log"]) == 2
    assert all(np.isfinite(r["train_loss"]) for r in a["log"])
    # one epoch, then resume: the second epoch sees the same augmented batches as the uninterrupted run
    tr.train(tiny_cohort, tmp_path / "c", replace(TINY, epochs=1), settings, show_progress=False)
    c = tr.train(tiny_cohort, tmp_path / "c", TINY, settings, resume=True, show_progress=False)
    assert [r["epoch"] for r in c["log"]] == [1, 2]
    assert [r["train_loss"] for r in c["log"]] == pytest.approx([r["train_loss"] for r in a["log"]], rel=1e-5)
    with pytest.raises(ValueError, match="augment_style"):
        tr.train(tiny_cohort, tmp_path / "e", replace(TINY, augment_style="flip"), settings, show_progress=False)


def test_full_augment_batches_depend_only_on_seed_epoch_and_step() -> None:
    import torch

    x, y = (torch.from_numpy(a.astype(np.float32)) for a in _batch())
    a = tr.full_augment(x, y, 0, 1, 2)
    assert torch.equal(a[0], tr.full_augment(x, y, 0, 1, 2)[0])
    assert not torch.equal(a[0], tr.full_augment(x, y, 0, 1, 3)[0])
    assert a[0].dtype == torch.float32 and a[1].shape == y.shape


def test_cli_flag_is_opt_in() -> None:
    parser = argparse.ArgumentParser()
    tr.configure_parser(parser)
    base = ["--data", "d", "--out", "o"]
    assert parser.parse_args(base).augment is False
    assert parser.parse_args([*base, "--augment"]).augment is True
    assert tr.TrainConfig().augment_style == "basic"
