"""Demo data for the app: a phantom study to review and a phantom cohort with manual values.

Both come from :mod:`mre_core.phantom.cohort` (synthetic DICOM with known truth), written to a
folder the caller chooses (:mod:`.demo_files`: once, under a lock), then go through the same reader and pipeline as real uploads.
:func:`analyze_cohort` analyses a cohort folder patient by patient (with a progress
callback) and saves each study to the results store with the phantom's manual value, so
the cohort page has something to show on a fresh install.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mre_core.analysis.pipeline import StudyResult
from mre_core.app.demo_files import DEMO_PATIENTS, demo_cohort, demo_study
from mre_core.config import Settings
from mre_core.io.elastogram import SkippedFile
from mre_core.model.network import LoadedModel
from mre_core.store.results import Store
from mre_core.workflow.batch import analyze_sources

DEMO_DATASET = "demo cohort"


def manual_values(cohort_dir: Path) -> dict[str, float]:
    """Manual stiffness (kPa) per patient ID from a phantom ``cohort.csv``."""
    with open(Path(cohort_dir) / "cohort.csv", newline="") as f:
        return {r["patient_id"]: float(r["manual_kpa"]) for r in csv.DictReader(f) if r.get("manual_kpa")}


@dataclass
class CohortRun:
    """What analysing a cohort produced."""

    results: list[StudyResult] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)  #: every file left out (incl. the exam's other series)
    failed: list[SkippedFile] = field(default_factory=list)  #: patients that gave no result, with the reasons
    saved: int = 0
    seconds: float = 0.0


def analyze_cohort(cohort_dir: Path, model: LoadedModel, settings: Settings, store: Store | None = None,
                   dataset: str = DEMO_DATASET, progress: Callable[[int, int, str], None] | None = None) -> CohortRun:
    """Analyse every patient folder of a phantom cohort; save each result with its manual value.

    ``progress(done, total, patient_id)`` is called after each patient. A patient that fails
    is listed in ``skipped`` with the reason; the others go on.
    """
    t0 = time.perf_counter()
    cohort_dir = Path(cohort_dir)
    manual = manual_values(cohort_dir)
    patients = sorted(p for p in (cohort_dir / "dicom").iterdir() if p.is_dir())
    run = CohortRun()
    for i, folder in enumerate(patients, start=1):
        outcome = analyze_sources([folder], settings, model)
        run.skipped.extend(outcome.skipped)
        if not outcome.results:
            reasons = sorted({s.reason for s in outcome.skipped})
            run.failed.append(SkippedFile(folder.name, "no usable study: " + "; ".join(reasons[:3])))
        for result in outcome.results:
            run.results.append(result)
            if store is not None:
                store.save(result, kind="auto", reviewer="demo", comment="phantom demo cohort",
                           manual_kpa=manual.get(result.patient_id), dataset=dataset)
                run.saved += 1
        if progress is not None:
            progress(i, len(patients), folder.name)
    run.seconds = time.perf_counter() - t0
    return run


__all__ = [
    "DEMO_DATASET",
    "DEMO_PATIENTS",
    "CohortRun",
    "analyze_cohort",
    "demo_cohort",
    "demo_study",
    "manual_values",
]
