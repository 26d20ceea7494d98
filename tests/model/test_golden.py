"""The shipped weights on a fixed phantom study: same masks and kPa as recorded (smp's preserve-output test).

Regenerate after shipping new weights: ``.venv/bin/python -m tests.model.test_golden --update``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mre_core.analysis.pipeline import StudyResult, analyze_study
from mre_core.config import Settings
from mre_core.io.reader import read_inputs
from mre_core.model.dataset import load_truth
from mre_core.model.network import WeightsError, load_model
from mre_core.phantom.cohort import write_demo_study
from mre_core.stats.agreement import dice

GOLDEN = Path(__file__).parent.parent / "golden" / "shipped_weights_demo.npz"
CASES = (("siemens", "cross_hatch", 101), ("ge", "paired_series", 102))


def _run(tmp: Path, vendor: str, encoding: str, seed: int) -> tuple[StudyResult, dict]:
    settings = Settings(device="cpu")
    model = load_model(settings.weights_dir, settings.model_name, "cpu")
    folder = write_demo_study(tmp / f"{vendor}_{seed}", seed=seed, vendor=vendor, encoding=encoding)
    result = analyze_study(read_inputs([folder], settings).studies[0], model, settings)
    truth = load_truth(folder.parent.parent / "truth" / f"{folder.name}.npz")
    return result, truth


@pytest.fixture(scope="module")
def shipped():
    try:
        load_model(Settings().weights_dir, Settings().model_name, "cpu")
    except WeightsError as exc:
        pytest.fail(f"shipped weights missing or corrupt: {exc}")
    with np.load(GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.slow
@pytest.mark.parametrize("vendor, encoding, seed", CASES)
def test_shipped_weights_reproduce_the_recorded_rois_and_kpa(vendor, encoding, seed, shipped, tmp_path):
    result, truth = _run(tmp_path, vendor, encoding, seed)
    key = f"{vendor}_{seed}"
    rois = np.stack([s.roi for s in result.slices])
    assert dice(rois, shipped[f"{key}_roi"]) > 0.99
    assert result.stiffness_kpa == pytest.approx(float(shipped[f"{key}_kpa"]), abs=0.02)
    # and the recorded output is itself good: close to the phantom's expert ROI and manual value
    expert = np.stack([truth[s.sop_uid].expert_roi for s in result.slices])
    assert dice(rois, expert) > 0.75
    manual = np.nanmean([truth[s.sop_uid].manual_kpa for s in result.slices])
    assert result.stiffness_kpa == pytest.approx(manual, rel=0.15)


def update() -> None:
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for vendor, encoding, seed in CASES:
            result, _ = _run(Path(tmp), vendor, encoding, seed)
            out[f"{vendor}_{seed}_roi"] = np.stack([s.roi for s in result.slices])
            out[f"{vendor}_{seed}_kpa"] = np.array(result.stiffness_kpa)
            print(f"{vendor}_{seed}: {result.stiffness_kpa:.3f} kPa, model {result.model_sha256[:12]}")
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **out)


if __name__ == "__main__" and "--update" in sys.argv:
    update()
