"""Phantom cohorts: plan a cohort (stage mix, vendors, encodings), write it in parallel, and the CLI.

``python -m mre_core phantom --out DIR`` writes ``DIR/dicom/<patient>/…``, ``DIR/truth/<patient>.npz``,
``cohort.csv`` and ``slices.csv`` (see :mod:`mre_core.phantom.study` for one study and
``docs/DATA_FORMATS.md`` for the file layout); :func:`write_demo_study` writes the one-study demo.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mre_core.analysis.staging import FibrosisStage
from mre_core.io.elastogram import ConfidenceEncoding
from mre_core.phantom.study import PhantomParams, PhantomStudy, StudySpec, StudyTruth, generate_study, pick, write_study
from mre_core.phantom.writers import (
    contact_sheet,
)

__all__ = ["PhantomParams", "StudySpec", "StudyTruth", "PhantomStudy", "generate_study", "write_study",
           "plan_cohort", "generate_cohort", "write_demo_study", "contact_sheet", "configure_parser", "run_cli"]


def _stage_counts(n: int, mix: tuple[tuple[FibrosisStage, float], ...]) -> list[FibrosisStage]:
    """Exactly ``n`` stages in proportion to ``mix`` (largest remainder)."""
    weights = np.array([w for _, w in mix], float)
    quota = weights / weights.sum() * n
    counts = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return [s for (s, _), c in zip(mix, counts) for _ in range(c)]


def plan_cohort(n_patients: int, seed: int = 0, like_paper: bool = False,
                stage_mix: dict[FibrosisStage, float] | None = None,
                params: PhantomParams | None = None) -> list[StudySpec]:
    """The specs of a cohort (pure; nothing is generated).

    ``like_paper``: 319 patients (``n_patients`` ignored), the first 91 "train" and 228
    "test", stage counts exactly proportional to ``paper_train_mix`` / ``paper_test_mix``
    (>= F2: 69/91 and 118/228, as in the paper) unless ``stage_mix`` is given. Otherwise
    stages are drawn from ``stage_mix`` (default ``params.stage_mix``) and the first
    ``floor(train_fraction * n)`` patients are "train".
    """
    p = params or PhantomParams()
    rng = np.random.default_rng([int(seed), 0])
    mix = tuple(stage_mix.items()) if stage_mix else None
    if like_paper:
        n_train, n_test = p.paper_split
        train = _stage_counts(n_train, mix or p.paper_train_mix)
        test = _stage_counts(n_test, mix or p.paper_test_mix)
        stages = [train[i] for i in rng.permutation(n_train)] + [test[i] for i in rng.permutation(n_test)]
    else:
        n_train = int(math.floor(p.train_fraction * n_patients))
        stages = [pick(rng, mix or p.stage_mix) for _ in range(n_patients)]
    specs = []
    for i, s in enumerate(stages):
        vendor = pick(rng, p.vendor_mix)
        encoding = pick(rng, p.siemens_encodings if vendor == "siemens" else p.ge_encodings)
        specs.append(StudySpec(vendor, encoding, FibrosisStage(s), int(pick(rng, p.slices_mix)),
                               int(pick(rng, p.rows_mix)), None, "train" if i < n_train else "test", p))
    return specs


def _generate_and_write(job: tuple[Path, int, int, StudySpec]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out_dir, seed, index, spec = job
    study = generate_study(seed, index, spec)
    write_study(study, out_dir)
    return study.cohort_row(), study.slice_rows()


def generate_cohort(out_dir: Path, n_patients: int, seed: int = 0, like_paper: bool = False,
                    stage_mix: dict[FibrosisStage, float] | None = None, progress: bool = True,
                    workers: int | None = None, train_fraction: float | None = None) -> pd.DataFrame:
    """Generate and write a cohort: DICOM, truth, ``cohort.csv`` and ``slices.csv``.

    Deterministic for a seed (same seed, same bytes). ``workers`` processes (default: the
    CPU count, at most 4; small cohorts run in-process). ``train_fraction`` (not with
    ``like_paper``) overrides the share of "train" patients. Returns the cohort table.
    """
    out_dir = Path(out_dir)
    specs = plan_cohort(n_patients, seed, like_paper, stage_mix, cohort_params(train_fraction))
    jobs = [(out_dir, seed, i, spec) for i, spec in enumerate(specs)]
    results = run_jobs(_generate_and_write, jobs, workers, "phantom studies", progress, min_parallel=8, chunksize=2)
    return _write_tables(out_dir, results)


def cohort_params(train_fraction: float | None = None) -> PhantomParams:
    """Default phantom parameters, with the share of "train" patients replaced when given (0..1)."""
    if train_fraction is None:
        return PhantomParams()
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train fraction must lie in 0..1, got {train_fraction}")
    return replace(PhantomParams(), train_fraction=float(train_fraction))


def run_jobs(fn: Callable[[Any], Any], jobs: list[Any], workers: int | None, desc: str, progress: bool,
             min_parallel: int = 2, chunksize: int = 1, initializer: Callable[[], None] | None = None) -> list[Any]:
    """``[fn(job) for job in jobs]`` in order, in ``workers`` processes (default: CPU count, at most 4) when
    there are at least ``min_parallel`` jobs, with a progress bar; results do not depend on ``workers``."""
    from tqdm import tqdm

    workers = workers or min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc=desc, unit="study", disable=not progress)
    results = []
    if workers > 1 and len(jobs) >= min_parallel:
        with ProcessPoolExecutor(workers, initializer=initializer) as pool:
            for r in pool.map(fn, jobs, chunksize=chunksize):
                results.append(r)
                bar.update()
    else:
        for job in jobs:
            results.append(fn(job))
            bar.update()
    bar.close()
    return results


def _write_tables(out_dir: Path, results: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> pd.DataFrame:
    cohort = pd.DataFrame([r for r, _ in results])
    pd.DataFrame([row for _, rows in results for row in rows]).to_csv(out_dir / "slices.csv", index=False)
    cohort.to_csv(out_dir / "cohort.csv", index=False)
    return cohort


def write_demo_study(out_dir: Path, seed: int = 0, vendor: str = "siemens", encoding: str = "cross_hatch",
                     n_slices: int = 5, stage: FibrosisStage | None = None) -> Path:
    """Write one study (DICOM, truth, CSVs) under ``out_dir``; returns its DICOM folder.

    ``stage`` None: drawn from the default stage mix for ``seed``.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng([int(seed), 2])
    chosen = stage if stage is not None else FibrosisStage(pick(rng, PhantomParams().stage_mix))
    spec = StudySpec(vendor, ConfidenceEncoding(encoding), chosen, n_slices)
    study = generate_study(seed, 0, spec)
    write_study(study, out_dir)
    _write_tables(out_dir, [(study.cohort_row(), study.slice_rows())])
    return out_dir / "dicom" / study.patient_id


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``phantom`` verb's options to ``p``."""
    p.add_argument("--out", type=Path, default=Path("phantom_out"), help="output folder (default: phantom_out)")
    p.add_argument("--patients", type=int, default=12, help="number of patients (default: 12)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: 0)")
    p.add_argument("--like-paper", action="store_true",
                   help="the paper's cohort: 319 patients, 91 train / 228 test, >= F2 in 76 %% / 52 %%")
    p.add_argument("--train-fraction", type=float, default=None,
                   help="share of patients in split 'train' (main and physics styles; default 0.3; "
                        "not with --like-paper, whose split is the paper's 91/228)")
    p.add_argument("--stored-acquired", type=float, default=0.0, metavar="P",
                   help="physics style: share of studies stored at their acquired matrix (64-256 columns) "
                        "instead of interpolated to 256 (default: 0)")
    p.add_argument("--contact-sheet", action="store_true", help="also write OUT/contact_sheet.png")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count, at most 4)")
    p.add_argument("--style", choices=("main", "holdout", "physics"), default="main",
                   help="'holdout': the independently written hold-out generator (mre_core.phantom.holdout), "
                        "every study in split 'test'; 'physics': elastograms from a shear-wave simulation and "
                        "inversion with wide domain randomisation (mre_core.phantom.physics_study) (default: main)")
    p.add_argument("--layout", default=None, metavar="NAME",
                   help="write real-scanner output layouts instead (mre_core.phantom.layouts): a layout name, "
                        "'all' (each in turn) or 'list' (print the names)")


def run_cli(args: argparse.Namespace) -> int:
    """Run the ``phantom`` verb; returns the exit code."""
    if getattr(args, "stored_acquired", 0.0) and getattr(args, "style", "main") != "physics":
        print("--stored-acquired is an option of --style physics (the other styles store 256 columns)")
        return 2
    if getattr(args, "style", "main") == "holdout":
        from mre_core.phantom.holdout import generate_holdout_cohort

        table = generate_holdout_cohort(args.out, args.patients, args.seed, workers=args.workers)
        print(f"wrote {len(table)} hold-out studies to {args.out} (all split 'test')")
        return 0
    if getattr(args, "style", "main") == "physics":
        from mre_core.phantom.physics_study import RandomisationParams, generate_physics_cohort

        if not 0.0 <= args.stored_acquired <= 1.0:
            print(f"--stored-acquired must be a share between 0 and 1, got {args.stored_acquired}")
            return 2
        params = RandomisationParams(stored_acquired_probability=args.stored_acquired)
        table = generate_physics_cohort(args.out, args.patients, args.seed, args.like_paper, workers=args.workers,
                                        train_fraction=args.train_fraction, params=params)
        return _report(args, table, "physics-style studies")
    if getattr(args, "layout", None):
        from mre_core.phantom.layouts import LAYOUTS, generate_layout_cohort

        if args.layout == "list":
            print("\n".join(LAYOUTS))
            return 0
        if args.layout != "all" and args.layout not in LAYOUTS:
            print(f"unknown layout {args.layout!r}; one of: all, {', '.join(LAYOUTS)}")
            return 2
        table = generate_layout_cohort(args.out, args.layout, args.patients, args.seed)
        print(f"wrote {len(table)} studies in layout {args.layout} to {args.out}")
        return 0
    cohort = generate_cohort(args.out, args.patients, args.seed, args.like_paper, workers=args.workers,
                             train_fraction=args.train_fraction)
    return _report(args, cohort, "studies")


def _report(args: argparse.Namespace, table: pd.DataFrame, what: str) -> int:
    """The ``phantom`` verb's summary line (and the contact sheet when asked for)."""
    print(f"wrote {len(table)} {what} to {args.out} "
          f"({(table['split'] == 'train').sum()} train / {(table['split'] == 'test').sum()} test)")
    if args.contact_sheet:
        print(f"contact sheet: {contact_sheet(args.out, Path(args.out) / 'contact_sheet.png')}")
    return 0
