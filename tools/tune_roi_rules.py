"""Choose the ROI post-processing rules on a TUNING cohort (never the test split).

    PYTHONPATH=. .venv/bin/python tools/tune_roi_rules.py --data data/phantom_tune [--patients 60]

Runs the model once per study, then scores every combination of probability threshold,
smallest kept ROI piece (mm²) and largest number of pieces kept, by mean slice Dice against
the phantom's expert ROI. Prints the table, best first. Make the tuning cohort with a seed
the test cohort does not use, e.g. ``python -m mre_core phantom --out data/phantom_tune
--patients 60 --seed 777``.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mre_core.analysis.pipeline import analyze_study_keeping_probabilities
from mre_core.analysis.segment import keep_largest_pieces, min_area_px
from mre_core.config import Settings
from mre_core.model.dataset import cohort_records, load_truth, read_patient
from mre_core.model.network import load_model
from mre_core.stats.agreement import dice

THRESHOLDS = (0.4, 0.5, 0.6)
MIN_PIECES_MM2 = (50, 100, 200, 300, 400, 500, 700)
MAX_PIECES = (0, 1, 2, 3)  # 0 = keep all pieces


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--patients", type=int, default=0)
    args = p.parse_args()
    settings = Settings(device="cpu")
    model = load_model(settings.weights_dir, settings.model_name, "cpu")
    records = cohort_records(args.data)
    records = records[: args.patients] if args.patients else records
    slices = []  # (prob, confidence, finite, spacing, expert)
    for rec in tqdm(records, desc="model", unit="patient"):
        study = read_patient(rec, settings)
        _, probs, _ = analyze_study_keeping_probabilities(study, model, settings)
        truth = load_truth(rec.truth_path)
        for e, prob in zip(study.series.slices, probs):
            if e.sop_uid in truth:
                slices.append((prob, e.confidence & np.isfinite(e.kpa), e.pixel_spacing_mm, truth[e.sop_uid].expert_roi))
    rows = []
    for thr, min_mm2, pieces in itertools.product(THRESHOLDS, MIN_PIECES_MM2, MAX_PIECES):
        scores = []
        for prob, usable, spacing, expert in slices:
            roi = keep_largest_pieces((prob > thr) & usable, min_area_px(min_mm2, spacing), pieces or None)
            scores.append(dice(roi, expert))
        rows.append({"threshold": thr, "min_piece_mm2": min_mm2, "max_pieces": pieces or "all",
                     "dice_mean": float(np.mean(scores)), "dice_median": float(np.median(scores)),
                     "n_slices": len(scores)})
    table = pd.DataFrame(rows).sort_values("dice_mean", ascending=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
