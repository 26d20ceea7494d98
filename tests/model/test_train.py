"""Training: a tiny run on a few phantom patients lowers the loss and writes loadable weights."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mre_core.config import Settings
from mre_core.model.dataset import cohort_records, patient_split
from mre_core.model.network import load_model
from mre_core.model.train import TrainConfig, augment, segmentation_loss, train


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from mre_core.phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    cohort = generate_cohort(out, 8, seed=3, progress=False, workers=1)  # 30 % train → 2 patients
    assert (cohort["split"] == "train").sum() >= 2
    return out


TINY = TrainConfig(arch="unet_plain", plain_base_channels=8, input_size=64, epochs=4, batch=4, micro_batch=4,
                   optimizer="adamw", lr=3e-3, weight_decay=0.0, val_fraction=0.5, augment=False, loss="bce_dice")


def test_tiny_run_lowers_the_loss_and_exports_loadable_weights(tiny_cohort, tmp_path):
    record = train(tiny_cohort, tmp_path / "run", TINY, Settings(device="cpu"), export=tmp_path / "w",
                   name="tiny", show_progress=False)
    losses = [row["train_loss"] for row in record["log"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert record["train_patients"] >= 1 and record["val_patients"] >= 1
    model = load_model(tmp_path / "w", "tiny", "cpu")
    assert model.config.arch == "unet_plain" and model.config.input.size == 64
    assert model.config.card["training"]["train_config"]["epochs"] == 4
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == 5


def test_resume_continues_from_the_checkpoint(tiny_cohort, tmp_path):
    train(tiny_cohort, tmp_path / "run", replace(TINY, epochs=2), Settings(device="cpu"), show_progress=False)
    record = train(tiny_cohort, tmp_path / "run", replace(TINY, epochs=3), Settings(device="cpu"), resume=True,
                   show_progress=False)
    assert [row["epoch"] for row in record["log"]] == [1, 2, 3]


def test_split_is_by_patient_and_deterministic(tiny_cohort):
    patients = cohort_records(tiny_cohort, "train")
    a_train, a_val = patient_split(patients, 0.5, seed=1)
    b_train, b_val = patient_split(patients, 0.5, seed=1)
    assert [p.patient_id for p in a_val] == [p.patient_id for p in b_val]
    assert not {p.patient_id for p in a_train} & {p.patient_id for p in a_val}


def test_augmentation_moves_image_and_mask_together():
    gen = torch.Generator().manual_seed(0)
    y = torch.zeros(4, 1, 64, 64)
    y[:, :, 20:40, 10:30] = 1.0
    x = y.repeat(1, 3, 1, 1)
    xa, ya = augment(x, y, gen)
    assert not torch.equal(ya, y)  # it did move
    agree = ((xa[:, 1:2] > 0.5) == (ya > 0.5)).float().mean()
    assert agree > 0.99
    assert xa[:, 0].max() <= 1.0


def test_loss_kinds():
    logits, target = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    assert segmentation_loss(logits, target, "bce_dice") > segmentation_loss(logits, target, "bce")
    with pytest.raises(ValueError, match="bce_dice"):
        segmentation_loss(logits, target, "focal")


def test_fine_tuning_starts_from_the_given_weights_and_records_them(tiny_cohort, tmp_path):
    first = train(tiny_cohort, tmp_path / "a", replace(TINY, epochs=1), Settings(device="cpu"),
                  export=tmp_path / "w", name="tiny", show_progress=False)
    start = load_model(tmp_path / "w", "tiny", "cpu")
    cfg = replace(TINY, epochs=1, lr=0.0, init_weights=str(tmp_path / "w" / "tiny"))  # lr 0: weights must not move
    record = train(tiny_cohort, tmp_path / "b", cfg, Settings(device="cpu"), export=tmp_path / "w2", name="tiny",
                   show_progress=False)
    assert record["init_weights"] == start.version and first["init_weights"] == "scratch"
    tuned = load_model(tmp_path / "w2", "tiny", "cpu")
    for key, value in start.net.state_dict().items():
        if value.is_floating_point() and "running" not in key and "num_batches" not in key:
            assert torch.equal(value, tuned.net.state_dict()[key]), key


def test_fine_tuning_refuses_weights_of_another_architecture(tiny_cohort, tmp_path):
    train(tiny_cohort, tmp_path / "a", replace(TINY, epochs=1), Settings(device="cpu"), export=tmp_path / "w",
          name="tiny", show_progress=False)
    cfg = replace(TINY, arch="unet_resnext50", init_weights=str(tmp_path / "w" / "tiny"))
    with pytest.raises(ValueError, match="architecture unet_plain"):
        train(tiny_cohort, tmp_path / "b", cfg, Settings(device="cpu"), show_progress=False)


def test_several_cohort_folders_train_together(tiny_cohort, tmp_path):
    from mre_core.phantom.cohort import generate_cohort

    other = tmp_path / "other"
    generate_cohort(other, 3, seed=5, progress=False, workers=1, train_fraction=1.0)
    record = train([tiny_cohort, other], tmp_path / "run", replace(TINY, epochs=1), Settings(device="cpu"),
                   show_progress=False)
    one = train(tiny_cohort, tmp_path / "run1", replace(TINY, epochs=1), Settings(device="cpu"), show_progress=False)
    assert record["train_patients"] + record["val_patients"] == one["train_patients"] + one["val_patients"] + 3
    assert str(other) in record["data"]
