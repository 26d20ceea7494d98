"""Helpers for the app tests: tiny model weights and phantom uploads (no shipped weights needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from mre_core.analysis.preprocess import InputSpec
from mre_core.model.network import ModelConfig, build_model, save_weights

TEST_MODEL = "tiny_unet_test"


def write_everything_liver_weights(weights_dir: Path, name: str = TEST_MODEL) -> Path:
    """A small plain U-Net (8 base channels, 256 px input) whose output is ~0.95 everywhere.

    Its ROI is therefore the whole 95 % confidence region (specks aside), so a test can
    predict the study value from the phantom itself; the model card says it is a test model.
    """
    torch.manual_seed(0)
    config = ModelConfig(name=name, arch="unet_plain", plain_base_channels=8, input=InputSpec(size=256),
                         threshold=0.5, card={"intended_use": "tests only: marks every pixel as liver",
                                              "training_data": "none (untrained, head bias +3)"})
    net = build_model(config)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(3.0)
    return save_weights(net, config, weights_dir)


def study_files(folder: Path) -> list[tuple[str, bytes, str]]:
    """Every file under ``folder`` as (relative name, bytes, mime) for ``FileUploader.set_value``."""
    return [(str(p.relative_to(folder)), p.read_bytes(), "application/dicom")
            for p in sorted(folder.rglob("*")) if p.is_file()]
