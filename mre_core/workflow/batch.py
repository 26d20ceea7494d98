"""Analyse many studies into a results folder (the CLI's ``analyze`` verb; the listener reuses it).

One bad file or one failing study never stops the batch: each is recorded in
``skipped.csv`` with its reason, and everything else is analysed.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from mre_core.analysis.pipeline import StudyResult, analyze_study
from mre_core.config import Settings
from mre_core.store.results import Store
from mre_core.io.elastogram import SkippedFile
from mre_core.io.reader import read_inputs
from mre_core.io.sources import Source
from mre_core.model.network import LoadedModel, load_model

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    """What a batch produced: results, everything skipped (with reasons) and the files written."""

    results: list[StudyResult] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    written: dict[str, Path] = field(default_factory=dict)
    read_s: float = 0.0
    saved: list[str] = field(default_factory=list)  #: "study uid: revision N" for each result saved to the store
    unchanged: list[str] = field(default_factory=list)  #: studies whose elastogram series was saved before


#: ``Store.latest_table``'s dataset name for studies analysed from the command line
CLI_DATASET = "cli"


def save_results(outcome: BatchOutcome, store: Store) -> None:
    """Save every result as an ``auto`` revision ("awaiting review") so it reaches the worklist and the cohort.

    A study whose elastogram series (the same SOP instances) was saved before is not saved again, as the
    DICOM inbox does; the earlier revision, possibly reviewed, stays the latest.
    """
    for r in outcome.results:
        sops = frozenset(e.sop_uid for e in r.study.series.slices)
        last, kind, last_sops = store.latest_slices(r.study_uid, r.series_uid)
        if last is not None and last_sops == sops:
            outcome.unchanged.append(f"{r.study_uid}: revision {last} ({kind})")
            continue
        number = store.save(r, kind="auto", comment="automatic result from the command line, awaiting review",
                            dataset=CLI_DATASET)
        outcome.saved.append(f"{r.study_uid}: revision {number}")


def analyze_sources(sources: Sequence[Source], settings: Settings, model: LoadedModel | None = None,
                    show_progress: bool = False) -> BatchOutcome:
    """Read ``sources`` and analyse every study found; failures become skipped entries."""
    model = model or load_model(settings.weights_dir, settings.model_name, settings.device)
    outcome = BatchOutcome()
    t = time.perf_counter()
    with _bar(show_progress, "reading", "file") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        read = read_inputs(sources, settings, progress=progress)
    outcome.read_s = time.perf_counter() - t
    outcome.skipped.extend(read.skipped)  # read_inputs has logged each of them
    for study in tqdm(read.studies, desc="analysing", unit="study", disable=not show_progress, file=sys.stderr):
        try:
            outcome.results.append(analyze_study(study, model, settings))
        except Exception as exc:  # one failing study must not stop the batch; the reason is reported
            log.error("analysis failed for study %s: %s: %s", study.study_uid, type(exc).__name__, exc)
            log.debug("analysis failure", exc_info=exc)
            first = study.series.slices[0].source if study.series.slices else study.study_uid
            outcome.skipped.append(SkippedFile(first, f"analysis failed for study {study.study_uid}: {exc}"))
    return outcome


def analyze_to_folder(sources: Sequence[Source], out_dir: Path, settings: Settings,
                      model: LoadedModel | None = None, show_progress: bool = False,
                      write_seg: bool = True, write_pdf: bool = False, store: Store | None = None) -> BatchOutcome:
    """Analyse ``sources`` and write studies.csv, slices.csv, skipped.csv, ``seg/<series_uid>.dcm`` and
    ``sr/<series_uid>.dcm`` (DICOM SEG + TID 1500 SR), and with ``write_pdf`` ``pdf/<patient>_<uid>.pdf``;
    with a ``store``, every new result is also saved there (:func:`save_results`)."""
    from mre_core.outputs.tables import write_csvs

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome = analyze_sources(sources, settings, model, show_progress)
    for r in outcome.results:
        if write_seg:
            _write_dicom_objects(r, out_dir, outcome)
        if write_pdf:
            _write_pdf(r, out_dir, outcome)
    outcome.written.update(write_csvs(outcome.results, outcome.skipped, out_dir))
    if store is not None:
        save_results(outcome, store)
    return outcome


def _write_dicom_objects(r: StudyResult, out_dir: Path, outcome: BatchOutcome) -> None:
    """SEG, then the SR that references it; a failure is listed in skipped.csv and the numbers still count."""
    from mre_core.outputs.seg import build_seg
    from mre_core.outputs.sr import build_sr

    seg_path, sr_path = out_dir / "seg" / f"{r.series_uid}.dcm", out_dir / "sr" / f"{r.series_uid}.dcm"
    try:
        seg = build_seg(r)
        seg_path.parent.mkdir(exist_ok=True)
        seg.save_as(seg_path, enforce_file_format=True)
        outcome.written[f"seg:{r.series_uid}"] = seg_path
    except Exception as exc:  # noqa: BLE001 - reported with its reason; the numbers still count
        _log_failure("DICOM SEG", r, exc)
        outcome.skipped.append(SkippedFile(str(seg_path), f"DICOM SEG not written: {exc}"))
        return
    try:
        sr_path.parent.mkdir(exist_ok=True)
        build_sr(r, seg).save_as(sr_path, enforce_file_format=True)
        outcome.written[f"sr:{r.series_uid}"] = sr_path
    except Exception as exc:  # noqa: BLE001
        _log_failure("DICOM SR", r, exc)
        outcome.skipped.append(SkippedFile(str(sr_path), f"DICOM SR not written: {exc}"))


def _log_failure(what: str, r: StudyResult, exc: Exception) -> None:
    """One line for the user (the reason is in skipped.csv too); the traceback only at debug level."""
    log.error("%s not written for series %s: %s", what, r.series_uid, exc)
    log.debug("%s failure", what, exc_info=exc)


def _write_pdf(r: StudyResult, out_dir: Path, outcome: BatchOutcome) -> None:
    from mre_core.outputs.tables import file_stem
    from mre_core.outputs.pdf import write_pdf

    path = out_dir / "pdf" / f"{file_stem(r)}.pdf"
    try:
        path.parent.mkdir(exist_ok=True)
        outcome.written[f"pdf:{r.series_uid}"] = write_pdf(r, path)
    except Exception as exc:  # noqa: BLE001
        _log_failure("PDF report", r, exc)
        outcome.skipped.append(SkippedFile(str(path), f"PDF report not written: {exc}"))


def commonest_reasons(skipped: Sequence[SkippedFile], n: int) -> list[tuple[str, int]]:
    """The ``n`` commonest reasons files were left out, each shortened to its first clause, with counts."""
    from collections import Counter

    return Counter(str(s.reason).split(":")[0][:70] for s in skipped).most_common(n)


class _NoBar:
    total = 0
    n = 0

    def refresh(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _bar(show: bool, desc: str, unit: str) -> tqdm | _NoBar:
    return tqdm(desc=desc, unit=unit, file=sys.stderr) if show else _NoBar()
