"""Print one Markdown table row per `python -m mre_core evaluate` output folder (test split), for
docs/GENERALISATION.md: Dice with its patient-bootstrap CI, ROI safety, stiffness agreement, F2 errors, and the same
Dice and ROI safety over the ROIs the study values used (runs since the stability check; '-' before).

    .venv/bin/python tools/compare_evals.py "label=RUN/eval_new_holdout20" "label=RUN/eval_shipped_holdout20" ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(label: str, folder: Path) -> str:
    metrics = json.loads(next(folder.glob("metrics_*.json")).read_text())
    t = metrics["splits"]["test"]
    seg, st, safe = t["segmentation"]["overall"], t["stiffness"], t["roi_safety"]
    d, sig = seg["dice"], st["significant"]
    return (f"| {label} | {metrics['model']} | {seg['n_patients']} / {seg['n_slices']} | {d['mean']:.3f} "
            f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}] | {100 * safe['outside_liver_mean']:.1f} % | "
            f"{safe['slices_over_5pct_outside']} / {safe['slices_over_10pct_outside']} | {safe['n_empty']} | "
            f"{st['pearson']['r']:.3f} | {st['icc']['value']:.3f} | {st['kappa_linear']:.3f} | "
            f"{sig['sensitivity']:.2f} / {sig['specificity']:.2f} | {safe['f2_false_positives']} / {safe['f2_negatives']} |"
            + used_cells(safe))


def used_cells(safe: dict) -> str:
    """The ROIs the study values used (a slice left out by a guardrail counts as no ROI); '-' for older runs."""
    used = safe.get("used_rois")
    if not used:
        return " - | - | - | - |"
    return (f" {used['dice_mean']:.3f} | {100 * used['outside_liver_mean']:.1f} % | "
            f"{used['slices_over_10pct_outside']} | {used['n_left_out_with_roi']} |")


HEADER = ("| cohort | model | patients / slices | Dice [95 % CI] | ROI outside liver (mean) | slices > 5 % / > 10 % "
          "outside | empty ROIs | Pearson r | ICC | kappa | F2 sens / spec | F2 false positives | used ROIs: Dice | "
          "used: outside | used: slices > 10 % | left out with an ROI |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

if __name__ == "__main__":
    print(HEADER)
    for arg in sys.argv[1:]:
        label, _, folder = arg.partition("=")
        print(row(label, Path(folder)))
