"""Re-analyse stored studies with another registered model and compare: one action, one table.

:func:`reanalyse` runs a registered model (by version) over the stored studies whose source files are in the
inbox (studies that came by DICOM, and uploads kept with their review) and sets, per study, the reader's value,
the automatic value saved before (and the model that produced it) and the new automatic value side by side.

It writes **no revision**: the comparison is what is asked, and a new ``auto`` revision on top of a reviewed
or signed-off study would make the worklist show it as unreviewed again. To analyse with the new model for
real, activate it and analyse again. The run itself is audited (``model:reanalyse``, with its counts).

Stages in the table are all read from the kPa values with one table (``settings.staging``), so a stage change
is the model's doing, never a change of cut-offs. The reader's value is the latest ``review`` / ``signed_off``
revision's manual measurement when the reader typed one, else that revision's (reader-edited) study value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mre_core.analysis.pipeline import StudyResult, analyze_study
from mre_core.analysis.staging import StagingTable, stage
from mre_core.config import Settings
from mre_core.stats.agreement import pearson, significant_fibrosis
from mre_core.store.inbox import Inbox
from mre_core.store.models import RegistryError, files_problem, get, settings_for
from mre_core.store.results import Store
from mre_core.store.schema import revisions, studies

#: Why a stored study without source files in the inbox is left out.
NO_FILES = ("its source files are not in the inbox (a study uploaded and never kept, or files removed): "
            "nothing to analyse")

#: The comparison table's columns, in order.
COLUMNS = ("study_uid", "patient_id", "series_uid", "reader_kpa", "reader_stage", "before_model", "before_kpa",
           "before_stage", "after_model", "after_kpa", "after_stage", "delta_kpa", "stage_changed", "after_qc_flags")


@dataclass
class ReanalysisReport:
    """One row per re-analysed series (:data:`COLUMNS`), the studies left out with why, and the summary."""

    table: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)  #: (study_uid, reason)
    summary: dict = field(default_factory=dict)


def _stage_label(kpa: float | None, table: StagingTable) -> str:
    return "" if kpa is None or not math.isfinite(kpa) else stage(max(kpa, 0.0), table).stage.label


def _num(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def stored_studies(store: Store, study_uids: Sequence[str] | None = None) -> list[dict]:
    """Each stored (study, series) with its reader value and its latest automatic value and model."""
    q = (sa.select(studies.c.study_uid, studies.c.series_uid, studies.c.patient_id, revisions.c.revision,
                   revisions.c.kind, revisions.c.stiffness_kpa, revisions.c.manual_kpa, revisions.c.model_name,
                   revisions.c.model_sha256)
         .join_from(revisions, studies).order_by(studies.c.id, revisions.c.revision))
    if study_uids is not None:
        q = q.where(studies.c.study_uid.in_(list(study_uids)))
    with store.engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    out: dict[tuple[str, str], dict] = {}
    for r in rows:  # oldest revision first: later ones overwrite
        d = out.setdefault((r["study_uid"], r["series_uid"]), {
            "study_uid": r["study_uid"], "series_uid": r["series_uid"], "patient_id": r["patient_id"],
            "reader_kpa": None, "before_model": "", "before_kpa": None})
        if r["kind"] == "auto":
            d["before_model"] = f"{r['model_name']}@{str(r['model_sha256'])[:12]}"
            d["before_kpa"] = _num(r["stiffness_kpa"])
        else:
            manual = _num(r["manual_kpa"])
            d["reader_kpa"] = manual if manual is not None else _num(r["stiffness_kpa"])
    return list(out.values())


def _row(before: dict, result: StudyResult, version: str, table: StagingTable) -> dict:
    after = _num(result.stiffness_kpa)
    row = {**before, "reader_stage": _stage_label(before["reader_kpa"], table),
           "before_stage": _stage_label(before["before_kpa"], table), "after_model": version, "after_kpa": after,
           "after_stage": _stage_label(after, table),
           "after_qc_flags": ";".join(f.value for f in result.qc_flags)}
    b = before["before_kpa"]
    row["delta_kpa"] = after - b if after is not None and b is not None else None
    row["stage_changed"] = bool(row["before_stage"] != row["after_stage"]) if b is not None else None
    return row


def _agreement(frame: pd.DataFrame, column: str, table: StagingTable) -> dict:
    paired = frame[frame["reader_kpa"].notna() & frame[column].notna()]
    auto, reader = paired[column].to_numpy(float), paired["reader_kpa"].to_numpy(float)
    prefix = column.removesuffix("_kpa")
    if len(paired) == 0:
        return {f"{prefix}_n_with_reader": 0}
    binary = significant_fibrosis(auto, reader, table.significant_kpa)
    agree = float(np.mean((auto >= table.significant_kpa) == (reader >= table.significant_kpa)))
    return {f"{prefix}_n_with_reader": len(paired), f"{prefix}_pearson_r": pearson(auto, reader).r,
            f"{prefix}_f2_agreement": agree, f"{prefix}_f2_sensitivity": binary.sensitivity,
            f"{prefix}_f2_specificity": binary.specificity}


def summarise(frame: pd.DataFrame, n_skipped: int, table: StagingTable) -> dict:
    """n, mean |Δ kPa|, stage changes, and (with reader values) r and F2 agreement before and after."""
    delta = pd.to_numeric(frame["delta_kpa"], errors="coerce").abs() if len(frame) else pd.Series(dtype=float)
    out: dict = {"n_studies": len(frame), "n_skipped": n_skipped,
                 "mean_abs_delta_kpa": float(delta.mean()) if delta.notna().any() else math.nan,
                 "n_stage_changed": int(frame["stage_changed"].eq(True).sum()) if len(frame) else 0}
    if len(frame) and frame["reader_kpa"].notna().any():
        out.update(_agreement(frame, "before_kpa", table))
        out.update(_agreement(frame, "after_kpa", table))
    return out


def reanalyse(store: Store, inbox: Inbox, settings: Settings, version: str, study_uids: Sequence[str] | None = None,
              *, user: str = "", progress: Callable[[int, int], None] | None = None) -> ReanalysisReport:
    """Analyse the stored studies (all, or ``study_uids``) with model ``version`` and compare (see module text).

    Parameters
    ----------
    version:
        A registered model (``<name>@<sha12>``), loaded from its folder with its SHA-256 checked.
    progress:
        Called as ``progress(done, total)`` after each study.

    Raises
    ------
    RegistryError
        Unknown version, or its files missing or changed.
    """
    from mre_core.io.reader import read_inputs
    from mre_core.model.network import load_model

    entry = get(store, version)
    if entry is None:
        raise RegistryError(f"no model {version!r} in the registry")
    if problem := files_problem(entry):
        raise RegistryError(f"{version} cannot be used: {problem}")
    run_settings = settings_for(settings, entry)
    model = load_model(entry.weights_dir, entry.name, settings.device)
    todo = stored_studies(store, study_uids)
    if study_uids is not None:
        found = {d["study_uid"] for d in todo}
        todo_skipped = [(uid, "not in the results store") for uid in dict.fromkeys(study_uids) if uid not in found]
    else:
        todo_skipped = []
    rows, skipped = [], list(todo_skipped)
    for done, before in enumerate(todo, start=1):
        uid = before["study_uid"]
        files = [p for p in inbox.files(uid) if p.is_file()]
        if not files:
            skipped.append((uid, NO_FILES))
        else:
            read = read_inputs(files, run_settings)
            study = next((s for s in read.studies if s.series.series_uid == before["series_uid"]), None)
            if study is None:
                skipped.append((uid, (f"the stored series {before['series_uid']} is not among the "
                                      f"{len(read.studies)} elastogram series read from its {len(files)} file(s)")))
            else:
                rows.append(_row(before, analyze_study(study, model, run_settings), version, settings.staging))
        if progress is not None:
            progress(done, len(todo))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    summary = summarise(frame, len(skipped), settings.staging)
    store.log_event("model:reanalyse", f"{version}: {summary['n_studies']} studies re-analysed, "
                    f"{summary['n_skipped']} skipped, {summary['n_stage_changed']} stage changes; "
                    "no revision written", user=user)
    return ReanalysisReport(frame, skipped, summary)


def comparison_csv(report: ReanalysisReport) -> bytes:
    """The comparison table as CSV: snake_case columns, plain numbers (kPa), empty cells where unknown."""
    frame = report.table.copy()
    frame["stage_changed"] = frame["stage_changed"].map({True: 1, False: 0}).astype("Int64")
    return frame.to_csv(index=False, float_format="%.4f").encode("utf-8")


__all__ = ["COLUMNS", "NO_FILES", "ReanalysisReport", "comparison_csv", "reanalyse", "stored_studies", "summarise"]
