"""Shared fixtures: phantom studies on disk and small, real models saved the way weights ship."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mre_core.analysis.preprocess import InputSpec
from mre_core.model.network import ModelConfig, build_model, save_weights

#: The suite's own PostgreSQL server and the ``store_url`` fixture over SQLite and PostgreSQL.
pytest_plugins = ["tests.pg_server"]


def _save_constant_model(weights_dir: Path, name: str, logit: float) -> Path:
    """A plain U-Net whose head outputs ``logit`` everywhere, saved with SHA-256 like shipped weights.

    logit > 0 makes every pixel "liver", so the ROI is exactly the cleaned confidence region:
    the expected stiffness can then be computed independently from the DICOM files.
    """
    cfg = ModelConfig(name=name, arch="unet_plain", plain_base_channels=8, input=InputSpec(size=128),
                      card={"purpose": "test model with a constant output"})
    net = build_model(cfg)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(logit)
    save_weights(net, cfg, weights_dir)
    return weights_dir


@pytest.fixture(scope="session", autouse=True)
def _private_store_and_inbox(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test writes the repository's data/ folder: the default store and inbox live in a temporary folder
    (subprocesses inherit the variables). A test that needs its own store still sets MRE_DB_URL itself."""
    import os

    root = tmp_path_factory.mktemp("default_store")
    os.environ.setdefault("MRE_DB_URL", f"sqlite:///{root / 'mre_review.sqlite'}")
    os.environ.setdefault("MRE_INBOX_DIR", str(root / "inbox"))


@pytest.fixture(scope="session")
def all_liver_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights folder holding ``all_liver`` (every pixel predicted as ROI)."""
    return _save_constant_model(tmp_path_factory.mktemp("weights"), "all_liver", 10.0)


@pytest.fixture(scope="session")
def phantom_studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One phantom study per vendor/encoding, written as a scanner would (DICOM folders)."""
    from mre_core.phantom.cohort import write_demo_study

    root = tmp_path_factory.mktemp("phantom")
    combos = {"siemens_hatch": ("siemens", "cross_hatch"), "siemens_zero": ("siemens", "zero_fill"),
              "ge_pair": ("ge", "paired_series")}
    return {k: write_demo_study(root / k, seed=i + 11, vendor=v, encoding=e)
            for i, (k, (v, e)) in enumerate(combos.items())}
