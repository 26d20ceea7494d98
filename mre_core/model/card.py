"""Render the model card, docs/RESULTS.md and the agreement plots from evaluation output.

Input: the ``metrics_<model>.json`` and ``<split>_patients.csv`` files written by
``python -m mre_core evaluate`` (one folder per architecture). Every number in the
rendered documents comes from those files; the paper's numbers are quoted beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from mre_core.outputs.wording import INTENDED_USE

#: Su, Shih & Xu 2025 (PAPER.md): test-set segmentation and stiffness agreement.
PAPER = {
    "dice": 85.68, "iou": 75.80, "r_train": 0.952, "r_test": 0.943,
    "per_stage": {"F0": (87.47, 78.26), "F1": (87.98, 78.74), "F2": (84.11, 73.85), "F3": (80.54, 70.49),
                  "F4": (84.00, 73.14)},
    "plain_dice": 82.59,
    "baseline": {"train": {"n": 91, "age": "57.2±12.4", "male": "53 %", "manual": "4.51±2.85", "auto": "4.04±1.93",
                           "f2_manual": "76 % (69/91)", "f2_auto": "75 % (68/91)"},
                 "test": {"n": 228, "age": "52.6±12.3", "male": "60 %", "manual": "3.69±2.26", "auto": "3.69±2.28",
                          "f2_manual": "52 % (118/228)", "f2_auto": "50 % (114/228)"}},
}


CAVEATS = (
    "These are synthetic phantoms from this project's own generator: the liver stiffness field is smooth "
    "(about 10 % heterogeneity), so the ROI mean barely depends on the ROI's exact outline and the stiffness "
    "agreement (r, ICC) is far higher than on real data, where the paper reports r = 0.943. Dice depends on the "
    "expert-ROI conventions the generator encodes. Neither number says how the model does on real scanner data."
)


DEFAULT_TRAINING_DATA = ("synthetic phantoms only (`mre_core.phantom.cohort`, like-paper cohort, seed 0, the 91-patient "
                         "train split with a patient-level validation hold-out). No real patient data.")
DEFAULT_LIMITATION = ("trained and tested on synthetic elastograms from one generator; performance on real scanner "
                      "data is unknown. Vendor unit conventions (Siemens kPa×100) are working assumptions.")


def generalisation_lines(blocks: dict[str, Any]) -> list[str]:
    """The card's ``generalisation`` blocks (styles the model never saw) as a Markdown table."""
    if not blocks:
        return []
    lines = ["## On phantom styles it was not trained on (test split; 95 % CI)", "",
             "| cohort | patients / slices | Dice | ROI outside liver (mean) | slices > 10 % outside | Pearson r | "
             "kappa | F2 false positives |", "|---|---|---|---|---|---|---|---|"]
    for name, b in blocks.items():
        d = b["dice"]
        lines.append(f"| {name} | {b['n_patients']} / {b['n_slices']} | {d['mean']:.3f} [{d['ci_low']:.3f}, "
                     f"{d['ci_high']:.3f}] | {100 * b['roi_outside_liver']:.1f} % | {b['slices_over_10pct_outside']} | "
                     f"{b['pearson_r']['r']:.3f} | {b['kappa_linear']:.3f} | {b['f2_false_positives']} |")
    lines += ["", *[f"- {name}: `{b.get('source', 'not recorded')}`" for name, b in blocks.items()], ""]
    return lines


def generalisation_record(metrics: dict[str, Any], source: str) -> dict[str, Any]:
    """One ``card.generalisation`` block from an evaluate output (test split)."""
    rec = test_metrics_record(metrics)
    safe = metrics["splits"]["test"]["roi_safety"]
    rec.update(source=source, roi_outside_liver=safe["outside_liver_mean"],
               slices_over_10pct_outside=safe["slices_over_10pct_outside"],
               f2_false_positives=f"{safe['f2_false_positives']} / {safe['f2_negatives']}", n_empty_rois=safe["n_empty"])
    return rec


def _pct(block: dict[str, Any], metric: str) -> str:
    m = block[metric]
    return f"{100 * m['mean']:.2f} ({100 * m['ci_low']:.2f}–{100 * m['ci_high']:.2f})"


def segmentation_rows(metrics: dict[str, Any], split: str = "test") -> list[str]:
    seg = metrics["splits"][split]["segmentation"]
    rows = [f"| overall | {seg['overall']['n_patients']} / {seg['overall']['n_slices']} | {_pct(seg['overall'], 'dice')} "
            f"| {_pct(seg['overall'], 'iou')} | {PAPER['dice']:.2f} / {PAPER['iou']:.2f} |"]
    for stage, (pd_, pi) in PAPER["per_stage"].items():
        if stage in seg:
            b = seg[stage]
            rows.append(f"| {stage} | {b['n_patients']} / {b['n_slices']} | {_pct(b, 'dice')} | {_pct(b, 'iou')} "
                        f"| {pd_:.2f} / {pi:.2f} |")
    return rows


def stiffness_rows(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for split in ("train", "test"):
        if split not in metrics["splits"]:
            continue
        st = metrics["splits"][split]["stiffness"]
        p, ba, icc, sig = st["pearson"], st["bland_altman"], st["icc"], st["significant"]
        paper_r = PAPER["r_train"] if split == "train" else PAPER["r_test"]
        rows.append(
            f"| {split} | {p['n']} | {p['r']:.3f} ({p['ci_low']:.3f}–{p['ci_high']:.3f}) | {paper_r:.3f} "
            f"| {ba['bias']:+.3f} ({ba['loa_low']:+.3f} to {ba['loa_high']:+.3f}) | {icc['value']:.3f} "
            f"({icc['ci_low']:.3f}–{icc['ci_high']:.3f}) | {st['mae_kpa']:.3f} | {st['kappa_linear']:.3f} "
            f"| {100 * sig['sensitivity']:.1f} / {100 * sig['specificity']:.1f} / {sig['auc']:.3f} |")
    return rows


def confusion_rows(metrics: dict[str, Any], split: str = "test") -> list[str]:
    """Stage confusion matrix (rows: manual stage from the expert ROI; columns: automatic stage)."""
    matrix = metrics["splits"][split]["stiffness"].get("confusion")
    if not matrix:
        return []
    labels = [f"F{i}" for i in range(len(matrix))]
    rows = ["| manual \\ automatic | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    rows += [f"| {labels[i]} | " + " | ".join(str(int(v)) for v in row) + " |" for i, row in enumerate(matrix)]
    return rows


def baseline_rows(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for split in ("train", "test"):
        if split not in metrics["splits"]:
            continue
        b, pb = metrics["splits"][split]["baseline"], PAPER["baseline"][split]
        n = b["n"]
        rows.append(
            f"| {split} | {n} ({pb['n']}) | {b['age'][0]:.1f}±{b['age'][1]:.1f} ({pb['age']}) | {b['male_pct']:.0f} % "
            f"({pb['male']}) | {b['manual_kpa'][0]:.2f}±{b['manual_kpa'][1]:.2f} ({pb['manual']}) "
            f"| {b['auto_kpa'][0]:.2f}±{b['auto_kpa'][1]:.2f} ({pb['auto']}) "
            f"| {100 * b['ge_f2_manual'] / n:.0f} % ({b['ge_f2_manual']}/{n}) ({pb['f2_manual']}) "
            f"| {100 * b['ge_f2_auto'] / n:.0f} % ({b['ge_f2_auto']}/{n}) ({pb['f2_auto']}) |")
    return rows


def plots(patients: pd.DataFrame, out_dir: Path, label: str) -> list[Path]:
    """Correlation and Bland–Altman PNGs (matplotlib, headless) for one split's per-patient table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    df = patients.dropna(subset=["auto_kpa", "manual_kpa"])
    m, a = df["manual_kpa"].to_numpy(), df["auto_kpa"].to_numpy()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.scatter(m, a, s=12, alpha=0.7)
    lim = [0, max(m.max(), a.max()) * 1.05]
    ax.plot(lim, lim, "k--", lw=1, label="identity")
    slope, icept = np.polyfit(m, a, 1)
    ax.plot(lim, [icept + slope * x for x in lim], "r-", lw=1, label=f"fit y={slope:.2f}x{icept:+.2f}")
    ax.set(xlabel="manual stiffness (kPa, expert ROI)", ylabel="automatic stiffness (kPa)",
           title=f"{label}: r = {np.corrcoef(m, a)[0, 1]:.3f} (n={len(m)})", xlim=lim, ylim=lim)
    ax.legend(loc="upper left")
    corr = out_dir / f"correlation_{label}.png"
    fig.tight_layout()
    fig.savefig(corr)
    plt.close(fig)
    mean, diff = (a + m) / 2, a - m
    bias, sd = diff.mean(), diff.std(ddof=1)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.scatter(mean, diff, s=12, alpha=0.7)
    for y, style in ((bias, "r-"), (bias + 1.96 * sd, "k--"), (bias - 1.96 * sd, "k--")):
        ax.axhline(y, color=style[0], ls=style[1:], lw=1)
    ax.set(xlabel="mean of automatic and manual (kPa)", ylabel="automatic − manual (kPa)",
           title=f"{label}: bias {bias:+.3f} kPa, LoA {bias - 1.96 * sd:+.3f} to {bias + 1.96 * sd:+.3f}")
    ba = out_dir / f"bland_altman_{label}.png"
    fig.tight_layout()
    fig.savefig(ba)
    plt.close(fig)
    return [corr, ba]


def _postprocess_line(metrics: dict[str, Any]) -> str:
    pp = metrics.get("postprocess")
    if not pp:
        return "ROI post-processing settings were not recorded by this evaluation run."
    liver = ""
    if "liver" in (metrics.get("outputs") or ()) and "liver_margin_mm" in pp:
        liver = (f" ∩ the largest piece of the model's own liver output eroded by {pp['liver_margin_mm']:g} mm "
                 "(`Settings.liver_margin_mm`, `mre_core/analysis/guardrails.py: liver_region`)")
    stability = (" A slice whose ROI does not survive four slightly zoomed or shifted copies of the slice is "
                 "flagged `roi_unstable` and left out of the study value (`mre_core/analysis/stability.py`); "
                 "Dice and ROI safety here score every automatic ROI as shown, left out or not."
                 if pp.get("roi_stability") else "")
    return (f"ROI = model probability > {pp['threshold']:g} ∩ 95 % confidence region{liver}, pieces smaller than "
            f"{pp['min_component_area_mm2']:g} mm² removed. The piece size was chosen on a separate 60-patient "
            "tuning cohort (seed 777, `tools/tune_roi_rules.py`), never on this test split (see `Settings`)."
            + stability)


def input_range_lines(entry: dict) -> list[str]:
    """The card's bullet on the input check (``QcFlag.INPUT_UNLIKE_TRAINING``): the ranges and where they came from."""
    if not entry.get("ranges"):
        return ["- **Input check**: no training ranges recorded, so no exam is flagged as unlike the training data "
                "(`python -m mre_core input-ranges` records them)."]
    parts = "; ".join(f"{k} {lo:.4g}–{hi:.4g}" for k, (lo, hi) in entry["ranges"].items())
    return [f"- **Input check**: an exam with a descriptor outside its range over the {entry.get('n_studies', '?')} "
            f"training studies ({entry.get('source', '?')}) is flagged `input_unlike_training`: {parts} "
            "(`mre_core/analysis/input_check.py`)."]


def render(main_dir: Path, baseline_dir: Path | None, weights_json: Path, card_path: Path, results_path: Path,
           figures_dir: Path, baseline_weights_json: Path | None = None) -> None:
    """Write MODEL_CARD.md and RESULTS.md from evaluation folders."""
    main = json.loads(next(main_dir.glob("metrics_*.json")).read_text())
    base = json.loads(next(baseline_dir.glob("metrics_*.json")).read_text()) if baseline_dir else None
    record = json.loads(weights_json.read_text())
    training = record.get("card", {}).get("training", {})
    figs = plots(pd.read_csv(main_dir / "test_patients.csv"), figures_dir, "test")
    seg_head = ["| stage | patients / slices | Dice % (95 % CI) | IoU % (95 % CI) | paper Dice / IoU % |",
                "|---|---|---|---|---|"]
    st_head = ["| split | n | Pearson r (95 % CI) | paper r | Bland–Altman bias (LoA), kPa | ICC(A,1) (95 % CI) "
               "| MAE kPa | linear κ | F2 sens / spec % / AUC |", "|---|---|---|---|---|---|---|---|---|"]
    lines = [f"# Results — {main['model']} on the synthetic like-paper cohort", "",
             f"> {INTENDED_USE}", "",
             "How these numbers were obtained: `python -m mre_core phantom --like-paper --seed 0` (319 synthetic patients, "
             "91 train / 228 test), `python -m mre_core train` (record below), then `python -m mre_core evaluate` "
             f"on the held-out test split, on `{main['device']}`. Segmentation metrics are pixel-wise per slice against "
             "the phantom's expert ROI, averaged over slices; 95 % CIs are percentile bootstraps over patients (1000 "
             "resamples). F1 equals Dice for binary masks.", "", _postprocess_line(main), "",
             "## Segmentation (test split; the paper's Table 4 beside it)", "", *seg_head, *segmentation_rows(main), ""]
    if base:
        from mre_core.model.evaluate import paired_dice_difference

        paired = paired_dice_difference(pd.read_csv(main_dir / "test_slices.csv"),
                                        pd.read_csv(baseline_dir / "test_slices.csv"))
        lines += [f"### Baseline: {base['model']} ({base['arch']})", "", *seg_head, *segmentation_rows(base), "",
                  f"Paired on the same {paired['n_slices']} test slices: Dice of {main['arch']} minus {base['arch']} = "
                  f"{100 * paired['mean']:+.2f} points (95 % CI {100 * paired['ci_low']:+.2f} to "
                  f"{100 * paired['ci_high']:+.2f}, patient bootstrap); {main['arch']} is better on "
                  f"{100 * paired['main_better_fraction']:.0f} % of slices, worse on "
                  f"{100 * paired['base_better_fraction']:.0f} %. "
                  f"Paper: {PAPER['dice']:.2f} vs plain U-Net {PAPER['plain_dice']:.2f} % "
                  f"({PAPER['dice'] - PAPER['plain_dice']:+.2f} points).", ""]
        if baseline_weights_json and baseline_weights_json.is_file():
            bt = json.loads(baseline_weights_json.read_text()).get("card", {}).get("training", {})
            lines += [f"Baseline training (same cohort, split, seed and recipe as the main model): "
                      f"{bt.get('train_config', {}).get('epochs', '?')} epochs, best validation Dice {bt.get('best_val_dice', float('nan')):.4f}; "
                      f"`{json.dumps(bt.get('train_config', {}), sort_keys=True)}`.", ""]
    lines += ["## Automatic vs manual stiffness", "", *st_head, *stiffness_rows(main), ""]
    if base:
        lines += [f"Baseline {base['arch']}:", "", *st_head, *stiffness_rows(base), ""]
    lines += ["### Stage agreement (test split, patients)", "", *confusion_rows(main), ""]
    lines += ["## Cohort (the paper's Table 2; paper values in brackets)", "",
              "| split | n | age | male | manual kPa | automatic kPa | ≥F2 manual | ≥F2 automatic |",
              "|---|---|---|---|---|---|---|---|", *baseline_rows(main), "",
              "## Plots (test split)", "", *[f"![{p.stem}]({p.relative_to(results_path.parent)})" for p in figs], "",
              "## Training record", "", "```json", json.dumps(training.get("train_config", {}), indent=2), "```",
              f"Best validation Dice {training.get('best_val_dice', float('nan')):.4f} on "
              f"{training.get('val_patients', '?')} validation patients ({training.get('val_slices', '?')} slices); "
              f"{training.get('train_patients', '?')} training patients ({training.get('train_slices', '?')} slices); "
              f"device {training.get('device', '?')}.", "",
              str(record.get("card", {}).get("training_note", "")), "", "## Caveats", "", CAVEATS, ""]
    if not base:
        lines += ["The plain U-Net baseline (the paper's Table 2 comparison) has not been trained and evaluated yet "
                  "for this cohort; `python -m mre_core train --arch unet_plain` does it.", ""]
    results_path.write_text("\n".join(lines))
    test = main["splits"]["test"]
    card_info = record.get("card", {})
    card = [f"# Model card — {record['name']}", "", f"> {INTENDED_USE}", "",
            f"- **Architecture**: {record['arch']} (U-Net decoder, ResNeXt50-32x4d encoder, segmentation-models-pytorch), "
            f"input {record['input']['size']}×{record['input']['size']}, channels {record['input']['channels']}, "
            f"window centre {record['input']['window_center_kpa']} / width {record['input']['window_width_kpa']} kPa, "
            f"threshold {record['threshold']}.",
            f"- **Post-processing**: {_postprocess_line(main)}",
            f"- **Weights**: `{record['name']}.safetensors` (fp16), SHA-256 `{record['sha256']}` (verified on load).",
            f"- **Training data**: {card_info.get('training_data') or DEFAULT_TRAINING_DATA}",
            "- **Intended use**: research and decision support for liver MRE review; every ROI and value must be checked "
            "by a qualified reader. Not a certified medical device.",
            "- **Limitations**: " + " ".join(card_info.get("limitations") or [DEFAULT_LIMITATION]),
            *input_range_lines(card_info.get("input_ranges") or {}), "",
            *generalisation_lines(card_info.get("generalisation") or {}),
            "## Test metrics (228 synthetic patients; 95 % CI)", "",
            f"- Dice {_pct(test['segmentation']['overall'], 'dice')} %, IoU {_pct(test['segmentation']['overall'], 'iou')} %",
            f"- Pearson r {test['stiffness']['pearson']['r']:.3f} ({test['stiffness']['pearson']['ci_low']:.3f}–"
            f"{test['stiffness']['pearson']['ci_high']:.3f}); ICC(A,1) {test['stiffness']['icc']['value']:.3f}; "
            f"Bland–Altman bias {test['stiffness']['bland_altman']['bias']:+.3f} kPa",
            f"- Median analysis time per study {test['median_runtime_s']:.2f} s on {main['device']} during the evaluation "
            "run (the CPU was shared with another job for part of it; docs/PERFORMANCE.md has the benchmark).", "",
            "Full tables: docs/RESULTS.md. Training hyper-parameters: the `card.training` block of "
            f"`{record['name']}.json`.", "", "## How it was trained", "",
            str(record.get("card", {}).get("training_note", "")), "", "## Caveats", "", CAVEATS]
    card_path.write_text("\n".join(card) + "\n")


def test_metrics_record(metrics: dict[str, Any]) -> dict[str, Any]:
    """The test-split numbers that go into the weights JSON (``card.test_metrics``), with their provenance."""
    test = metrics["splits"]["test"]
    seg, st = test["segmentation"]["overall"], test["stiffness"]
    return {
        "source": "python -m mre_core evaluate on the like-paper phantom cohort (seed 0), test split",
        "model": metrics["model"], "device": metrics["device"], "postprocess": metrics.get("postprocess"),
        "n_patients": seg["n_patients"], "n_slices": seg["n_slices"],
        "dice": seg["dice"], "iou": seg["iou"],
        "pearson_r": {k: st["pearson"][k] for k in ("r", "ci_low", "ci_high")},
        "icc_a1": st["icc"], "bland_altman": {k: st["bland_altman"][k] for k in ("bias", "loa_low", "loa_high")},
        "kappa_linear": st["kappa_linear"], "mae_kpa": st["mae_kpa"],
    }


def update_weights_json(weights_json: Path, metrics: dict[str, Any]) -> None:
    """Write ``card.test_metrics`` into the weights JSON (the SHA-256 covers the .safetensors, not this file)."""
    record = json.loads(weights_json.read_text())
    if not metrics["model"].endswith(record["sha256"][:12]):
        raise ValueError(f"{weights_json} is {record['sha256'][:12]}, the evaluation is of {metrics['model']}")
    record.setdefault("card", {})["test_metrics"] = test_metrics_record(metrics)
    weights_json.write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mre_core.model.card")
    p.add_argument("--eval", type=Path, required=True, help="evaluate output folder of the shipped model")
    p.add_argument("--baseline-eval", type=Path, help="evaluate output folder of the plain U-Net")
    p.add_argument("--weights-json", type=Path, default=Path("weights/unet_resnext50_32x4d.json"))
    p.add_argument("--baseline-weights-json", type=Path, help="the plain U-Net's weights JSON (training record)")
    p.add_argument("--update-weights-json", action="store_true",
                   help="also write the test metrics into the weights JSON (card.test_metrics)")
    p.add_argument("--card", type=Path, default=Path("weights/MODEL_CARD.md"))
    p.add_argument("--results", type=Path, default=Path("docs/RESULTS.md"))
    p.add_argument("--figures", type=Path, default=Path("docs/figures"))
    a = p.parse_args(argv)
    render(a.eval, a.baseline_eval, a.weights_json, a.card, a.results, a.figures, a.baseline_weights_json)
    if a.update_weights_json:
        update_weights_json(a.weights_json, json.loads(next(a.eval.glob("metrics_*.json")).read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
