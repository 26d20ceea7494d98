"""The model card / RESULTS renderer: every number comes from the evaluation files; paired Dice is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mre_core.model.evaluate import paired_dice_difference
from mre_core.model import card as model_card


def _ci(mean: float) -> dict:
    return {"mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01}


def _metrics(model: str, arch: str, dice: float) -> dict:
    seg = {"overall": {"n_slices": 4, "n_patients": 2, "dice": _ci(dice), "iou": _ci(dice - 0.1), "f1": _ci(dice)}}
    st = {"pearson": {"n": 2, "r": 0.99, "ci_low": 0.9, "ci_high": 1.0},
          "bland_altman": {"bias": 0.01, "loa_low": -0.2, "loa_high": 0.22},
          "icc": {"value": 0.98, "ci_low": 0.9, "ci_high": 0.99}, "mae_kpa": 0.05, "kappa_linear": 0.9,
          "significant": {"sensitivity": 1.0, "specificity": 0.5, "auc": 0.75},
          "confusion": [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0] * 5, [0] * 5]}
    base = {"n": 2, "age": [50.0, 5.0], "male_pct": 50.0, "manual_kpa": [3.0, 1.0], "auto_kpa": [3.1, 1.0],
            "ge_f2_manual": 1, "ge_f2_auto": 1}
    return {"model": model, "arch": arch, "device": "cpu", "postprocess": {"threshold": 0.5,
                                                                           "min_component_area_mm2": 300.0},
            "splits": {"test": {"segmentation": seg, "stiffness": st, "baseline": base, "median_runtime_s": 0.5}}}


def _eval_dir(root: Path, name: str, metrics: dict, dice: list[float]) -> Path:
    d = root / name
    d.mkdir()
    (d / f"metrics_{name}.json").write_text(json.dumps(metrics))
    pd.DataFrame({"patient_id": ["A", "A", "B", "B"], "sop_uid": list("wxyz"), "manual_stage": ["F0", "F0", "F2", "F2"],
                  "dice": dice, "iou": dice}).to_csv(d / "test_slices.csv", index=False)
    pd.DataFrame({"patient_id": ["A", "B"], "manual_kpa": [2.0, 3.0], "auto_kpa": [2.1, 3.1]}).to_csv(
        d / "test_patients.csv", index=False)
    return d


def test_paired_dice_difference_is_exact() -> None:
    a = pd.DataFrame({"patient_id": ["A", "A", "B"], "sop_uid": ["1", "2", "3"], "dice": [0.9, 0.8, 0.7]})
    b = pd.DataFrame({"patient_id": ["A", "A", "B"], "sop_uid": ["2", "1", "3"], "dice": [0.8, 0.6, 0.8]})
    out = paired_dice_difference(a, b)
    assert out["mean"] == pytest.approx((0.3 + 0.0 - 0.1) / 3)
    assert out["main_better_fraction"] == pytest.approx(1 / 3) and out["base_better_fraction"] == pytest.approx(1 / 3)
    assert out["ci_low"] <= out["mean"] <= out["ci_high"]


def test_render_writes_the_numbers_it_was_given_and_the_weights_json_guard(tmp_path: Path) -> None:
    main = _eval_dir(tmp_path, "main", _metrics("net@abcdef123456", "unet_resnext50", 0.9123), [0.9, 0.9, 0.95, 0.9])
    base = _eval_dir(tmp_path, "base", _metrics("plain@999999999999", "unet_plain", 0.8811), [0.8, 0.9, 0.9, 0.9])
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps({"name": "net", "arch": "unet_resnext50", "sha256": "abcdef123456" + "0" * 52,
                                   "threshold": 0.5, "input": {"size": 256, "channels": ["a"], "window_center_kpa": 4,
                                                               "window_width_kpa": 8}, "card": {}}))
    results, card = tmp_path / "RESULTS.md", tmp_path / "CARD.md"
    model_card.render(main, base, weights, card, results, tmp_path / "fig")
    text = results.read_text()
    assert "| overall | 2 / 4 | 91.23 (90.23–92.23)" in text and "| overall | 2 / 4 | 88.11" in text
    assert f"{100 * np.mean([0.1, 0.0, 0.05, 0.0]):+.2f} points" in text  # paired, same slices
    assert "pieces smaller than 300 mm² removed" in text and "| F2 | 0 | 0 | 1 | 0 | 0 |" in text
    assert "91.23" in card.read_text() and (tmp_path / "fig" / "correlation_test.png").is_file()
    model_card.update_weights_json(weights, json.loads((main / "metrics_main.json").read_text()))
    assert json.loads(weights.read_text())["card"]["test_metrics"]["dice"]["mean"] == 0.9123
    with pytest.raises(ValueError, match="evaluation is of plain"):
        model_card.update_weights_json(weights, json.loads((base / "metrics_base.json").read_text()))


def test_generalisation_blocks_carry_roi_safety_and_render_as_a_table() -> None:
    metrics = _metrics("m@abc", "unet_resnext50", 0.523)
    metrics["splits"]["test"]["roi_safety"] = {"outside_liver_mean": 0.088, "slices_over_10pct_outside": 22,
                                               "f2_false_positives": 0, "f2_negatives": 7, "n_empty": 10}
    block = model_card.generalisation_record(metrics, "python -m mre_core evaluate --split test")
    assert block["roi_outside_liver"] == 0.088 and block["f2_false_positives"] == "0 / 7"
    assert block["source"].startswith("python -m mre_core evaluate") and block["dice"]["mean"] == 0.523
    lines = model_card.generalisation_lines({"hold-out style": block})
    row = next(line for line in lines if line.startswith("| hold-out style"))
    assert "0.523 [0.513, 0.533]" in row and "8.8 %" in row and "| 22 |" in row
    assert model_card.generalisation_lines({}) == []
