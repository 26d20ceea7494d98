"""Pick the training epoch to ship by ROI safety first, on a validation set of the training style that no
epoch was trained on (issue "A segmentation that finds the liver on data it was not trained on").

    .venv/bin/python tools/select_checkpoint.py "ep2=DEV_EVAL_DIR" "ep5=DEV_EVAL_DIR" ...
    .venv/bin/python tools/select_checkpoint.py "ep1=DEV_A+DEV_B" ...   # several safety sets, pooled

Each folder is the output of ``python -m mre_core evaluate --split test`` on the safety validation set
(``phantom --style physics --seed 21 --patients 16 --train-fraction 0``). The rule, written before any
epoch after the second was measured (2026-12-02): among the epochs whose ROI pixels outside the liver are
<= 2 % (mean over slices) with no slice over 10 %, the one with the highest Dice (every slice with a truth
ROI counts; a missed slice scores 0); if no epoch meets that, the one with the least ROI outside the liver.
Training's own validation Dice (mixed styles) is printed for reference but does not decide: it rewards a
large ROI, not one that stays on the liver. The chosen epoch is then measured once on the styles never
used for training or selection (tools/compare_evals.py) and shipped only if it beats the current weights
there on both ROI outside the liver and Dice.

From the stored-grid run on (tools/train_stored_grid.sh, 2026-12-02, written before its first epoch was measured)
the rule is applied to two safety validation sets pooled (``DIR_A+DIR_B``): seed 21 (stored at 256 columns) and
``phantom --style physics --seed 22 --patients 16 --train-fraction 0 --stored-acquired 0.5`` (half stored at the
acquired matrix); the current shipped weights are measured the same way, as the baseline row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MAX_OUTSIDE_MEAN = 0.02
MAX_SLICE_OVER_10PCT = 0


def metrics(folder: Path) -> dict:
    m = json.loads(next(Path(folder).glob("metrics_*.json")).read_text())
    t = m["splits"]["test"]
    seg, safe = t["segmentation"]["overall"], t["roi_safety"]
    return {"dice": seg["dice"]["mean"], "outside": safe["outside_liver_mean"],
            "over10": safe["slices_over_10pct_outside"], "empty": safe["n_empty"], "slices": seg["n_slices"],
            "model": m["model"]}


def pooled(folders: list[Path]) -> dict:
    """One epoch over several safety validation sets as if they were one: Dice over all slices, ROI outside the
    liver over all slices with an ROI, slices over 10 % and empty ROIs summed.

    >>> a = {"dice": 0.8, "outside": 0.01, "over10": 0, "empty": 2, "slices": 10, "model": "m"}
    >>> b = {"dice": 0.5, "outside": 0.04, "over10": 1, "empty": 0, "slices": 30, "model": "m"}
    >>> r = _pool([a, b]); (round(r["dice"], 4), round(r["outside"], 4), r["over10"], r["slices"])
    (0.575, 0.0337, 1, 40)
    """
    return _pool([metrics(f) for f in folders])


def _pool(rows: list[dict]) -> dict:
    slices = sum(r["slices"] for r in rows)
    with_roi = sum(r["slices"] - r["empty"] for r in rows)
    return {"dice": sum(r["dice"] * r["slices"] for r in rows) / slices,
            "outside": sum(r["outside"] * (r["slices"] - r["empty"]) for r in rows) / max(with_roi, 1),
            "over10": sum(r["over10"] for r in rows), "empty": sum(r["empty"] for r in rows), "slices": slices,
            "model": rows[0]["model"]}


def select(rows: dict[str, dict]) -> str:
    safe = {k: r for k, r in rows.items() if r["outside"] <= MAX_OUTSIDE_MEAN and r["over10"] <= MAX_SLICE_OVER_10PCT}
    if safe:
        return max(safe, key=lambda k: safe[k]["dice"])
    return min(rows, key=lambda k: rows[k]["outside"])


if __name__ == "__main__":
    rows = {}
    for arg in sys.argv[1:]:
        label, folders = arg.split("=", 1)
        rows[label] = pooled([Path(f) for f in folders.split("+")])
    print("| epoch | model | Dice | ROI outside liver | slices > 10 % outside | empty ROIs / slices |")
    print("|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['model']} | {r['dice']:.3f} | {100 * r['outside']:.1f} % | {r['over10']} | "
              f"{r['empty']} / {r['slices']} |")
    print(f"\nselected: {select(rows)}")
