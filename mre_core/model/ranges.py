"""Record in a weights card the range of each input descriptor over the model's training studies.

    python -m mre_core input-ranges --data data/train/physics240 --data data/train/legacy90 \\
        --weights-dir weights --model unet_resnext50_32x4d

Reads every patient of the given split (default ``train``, the studies the model was fitted on) through the
product reader, describes it (:func:`mre_core.analysis.input_check.describe`) and writes the smallest and
largest value of each descriptor into ``card["input_ranges"]`` of ``<model>.json``. The weights file and its
SHA-256 are unchanged. At analysis a study outside a range gets ``QcFlag.INPUT_UNLIKE_TRAINING``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from mre_core.analysis.input_check import describe, ranges_to_json, training_ranges
from mre_core.config import Settings
from mre_core.model.dataset import cohort_records, read_patient


def cohort_descriptors(data_dirs: Sequence[Path], split: str | None, settings: Settings
                       ) -> tuple[list[dict[str, float]], list[tuple[str, str]]]:
    """Descriptors of every patient of ``split`` in the folders, and the patients that did not read (id, reason)."""
    rows, problems = [], []
    for folder in data_dirs:
        for rec in cohort_records(Path(folder), split):
            try:
                rows.append(describe(read_patient(rec, settings)))
            except (ValueError, OSError) as exc:
                problems.append((f"{folder}:{rec.patient_id}", str(exc)))
    return rows, problems


def record_input_ranges(weights_dir: Path, name: str, data_dirs: Sequence[Path], settings: Settings,
                        split: str | None = "train") -> dict:
    """Write ``card["input_ranges"]`` of ``<weights_dir>/<name>.json``; returns the entry."""
    path = Path(weights_dir) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    rows, problems = cohort_descriptors(data_dirs, split, settings)
    if not rows:
        raise ValueError(f"no study of split {split!r} could be read in {', '.join(map(str, data_dirs))}")
    source = f"{split or 'all'} split of " + ", ".join(Path(d).name for d in data_dirs)
    entry = ranges_to_json(training_ranges(rows), source, len(rows))
    if problems:
        entry["unread"] = [f"{p}: {r}" for p, r in problems]
    doc = json.loads(path.read_text())
    doc.setdefault("card", {})["input_ranges"] = entry
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return entry


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, action="append", required=True,
                   help="phantom cohort folder the model was trained on (repeat for several)")
    p.add_argument("--split", default="train", help="which patients (default train; 'all' for every patient)")
    p.add_argument("--weights-dir", type=Path, required=True)
    p.add_argument("--model", required=True, help="weights name (file stem)")


def run_cli(args: argparse.Namespace) -> int:
    try:
        entry = record_input_ranges(args.weights_dir, args.model, args.data, Settings(device="cpu"),
                                    None if args.split == "all" else args.split)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"{args.model}: input ranges from {entry['n_studies']} studies ({entry['source']})")
    for k, (lo, hi) in entry["ranges"].items():
        print(f"  {k}: {lo:.4g} – {hi:.4g}")
    for line in entry.get("unread", []):
        print(f"  not read: {line}")
    return 0
