"""The cohort page's tables: saved studies, imported manual values, filters, statistics.

Pure pandas over :meth:`mre_core.store.results.Store.latest_table`; the statistics themselves are
:func:`mre_core.stats.agreement.agreement`, the ROI overlap :mod:`mre_core.stats.overlap` over
:func:`mre_core.store.rois.roi_pairs`.

For users who may not see identifiers (researchers) every table and figure the page shows goes through
:func:`for_viewer` (keyed pseudonyms, no names, no free text, dates to the year), and the exports are
:func:`deidentified_zip`: the de-identified CSV with its :class:`~mre_core.access.deid.DeidRecord` beside it.
"""

from __future__ import annotations

import io
import math
import secrets
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mre_core.access.deid import DEFAULT_ID_COLUMNS, DeidRecord, deidentify
from mre_core.analysis.staging import FibrosisStage, StagingTable, stage
from mre_core.config import DeidKeyError, deid_key
from mre_core.stats.agreement import AgreementReport, agreement
from mre_core.stats.overlap import OverlapSummary, overlap_summary
from mre_core.stats.overlap import roi_overlap as overlap_table
from mre_core.store.rois import roi_pairs
from mre_core.workflow.worker import PACS_DATASET
from mre_core.workflow.worklist import REVIEW_STATUS

ID_COLUMNS = ("study_uid", "patient_id")
MANUAL_COLUMNS = ("manual_kpa", "manual", "manual_mre_kpa", "kpa")
STAGES = tuple(s.label for s in FibrosisStage)


class ManualCsvError(ValueError):
    """An imported manual-measurement CSV that cannot be used; the message says why."""


#: The value pairs the agreement view can compare (column, words shown on the page).
COMPARISONS = {
    "auto_kpa": "automatic (unedited model output) vs manual",
    "stiffness_kpa": "reviewed (latest saved value, reader edits included) vs manual",
}


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns the page filters on: ``qc_status``, ``study_day`` (a date or NaT); ``auto_kpa``
    (the unedited automatic value) and ``reviewed_kpa`` (the latest saved value) as numbers."""
    out = frame.copy()
    out["qc_flags"] = out.get("qc_flags", pd.Series(dtype=str)).fillna("")
    out["qc_status"] = np.where(out["qc_flags"] == "", "QC ok", "QC flagged")
    if "kind" in out:
        out["review_status"] = out["kind"].map(REVIEW_STATUS).fillna(out["kind"])
    out["study_day"] = pd.to_datetime(out.get("study_date", pd.Series(dtype=str)), format="%Y%m%d", errors="coerce")
    for col in ("stiffness_kpa", "manual_kpa", "auto_kpa"):
        out[col] = pd.to_numeric(out.get(col, pd.Series(np.nan, index=out.index)), errors="coerce")
    out["reviewed_kpa"] = out["stiffness_kpa"]
    return out


def read_manual_csv(data: bytes, name: str = "manual.csv") -> pd.DataFrame:
    """A manual-measurement CSV → columns ``key_column, value`` (``study_uid`` or ``patient_id``, ``manual_kpa``).

    Raises
    ------
    ManualCsvError
        When the file is not a CSV or lacks an ID column or a manual kPa column.
    """
    try:
        table = pd.read_csv(io.BytesIO(data), dtype=str)
    except Exception as exc:  # noqa: BLE001 - pandas raises several types for a non-CSV
        raise ManualCsvError(f"{name}: not a readable CSV ({exc})") from None
    cols = {c.strip().lower(): c for c in table.columns}
    key = next((k for k in ID_COLUMNS if k in cols), None)
    value = next((v for v in MANUAL_COLUMNS if v in cols), None)
    if key is None or value is None:
        raise ManualCsvError(f"{name}: need an ID column ({' or '.join(ID_COLUMNS)}) and a manual stiffness column "
                             f"({', '.join(MANUAL_COLUMNS)}); found {list(table.columns)}")
    out = pd.DataFrame({key: table[cols[key]].astype(str).str.strip(),
                        "manual_kpa": pd.to_numeric(table[cols[value]], errors="coerce")})
    out.attrs["key"] = key
    return out


@dataclass(frozen=True)
class ManualImport:
    frame: pd.DataFrame  #: the cohort with ``manual_kpa`` replaced where a row matched
    matched: int
    unmatched: pd.DataFrame  #: rows of the CSV whose ID is not in the cohort (or whose value is not a number)


def merge_manual(frame: pd.DataFrame, manual: pd.DataFrame) -> ManualImport:
    """Put imported manual values into the cohort, matching on the CSV's ID column."""
    key = manual.attrs.get("key") or next(k for k in ID_COLUMNS if k in manual.columns)
    known = set(frame[key].astype(str))
    bad_value = manual["manual_kpa"].isna() | (manual["manual_kpa"] <= 0)
    unmatched = manual[~manual[key].isin(known) | bad_value].copy()
    unmatched["reason"] = np.where(~unmatched[key].isin(known), f"{key} not among the saved studies",
                                   "manual value is not a positive number")
    good = manual[manual[key].isin(known) & ~bad_value].drop_duplicates(key, keep="last")
    values = dict(zip(good[key], good["manual_kpa"]))
    out = frame.copy()
    hit = out[key].astype(str).map(values)
    out["manual_kpa"] = hit.where(hit.notna(), out["manual_kpa"])
    out["manual_source"] = np.where(hit.notna(), "imported CSV", out.get("manual_source", "store"))
    return ManualImport(out, int(hit.notna().sum()), unmatched.reset_index(drop=True))


def apply_filters(frame: pd.DataFrame, *, datasets: list[str] | None = None, manufacturers: list[str] | None = None,
                  stages: list[str] | None = None, qc: str = "all",
                  dates: tuple[object, object] | None = None, review: str = "all") -> pd.DataFrame:
    """Rows matching every given filter (``None`` / empty list = no filter; ``qc``: all | ok | flagged).

    ``review``: ``all``; ``reviewed`` (a reader saved or signed off the latest revision: the page's default);
    ``signed_off`` (only studies a reader signed off); or ``no_unreviewed_inbox`` (everything except automatic
    results from the DICOM inbox that nobody has reviewed yet).
    """
    keep = pd.Series(True, index=frame.index)
    if review == "signed_off":
        keep &= frame["kind"] == "signed_off"
    elif review == "reviewed":
        keep &= frame["kind"].isin(("review", "signed_off"))
    elif review == "no_unreviewed_inbox":
        keep &= ~((frame["dataset"] == PACS_DATASET) & (frame["kind"] == "auto"))
    if datasets:
        keep &= frame["dataset"].isin(datasets)
    if manufacturers:
        keep &= frame["manufacturer"].isin(manufacturers)
    if stages:
        keep &= frame["stage"].isin(stages)
    if qc == "ok":
        keep &= frame["qc_status"] == "QC ok"
    elif qc == "flagged":
        keep &= frame["qc_status"] == "QC flagged"
    if dates and all(d is not None for d in dates):
        lo, hi = (pd.Timestamp(d) for d in dates)
        keep &= frame["study_day"].between(lo, hi) | frame["study_day"].isna()
    return frame[keep]


@dataclass(frozen=True)
class CohortStats:
    report: AgreementReport
    paired: pd.DataFrame  #: rows with both values, plus ``manual_stage`` / ``auto_stage``
    per_stage: pd.DataFrame
    summary: pd.DataFrame  #: name, value (the downloadable statistics summary)
    slope: float
    intercept: float


def _stage_label(kpa: float, table: StagingTable) -> str:
    return stage(max(float(kpa), 0.0), table).stage.label if math.isfinite(kpa) else ""


def cohort_stats(frame: pd.DataFrame, table: StagingTable, value: str = "stiffness_kpa") -> CohortStats | None:
    """Agreement of ``value`` (see :data:`COMPARISONS`) vs manual stiffness on rows with both; ``None`` below 3
    pairs. In ``paired`` the compared value is the ``stiffness_kpa`` column (so figures need no switch)."""
    if value not in COMPARISONS:
        raise ValueError(f"unknown comparison {value!r}; choose one of {list(COMPARISONS)}")
    paired = frame[frame[value].notna() & frame["manual_kpa"].notna()].copy()
    if len(paired) < 3:
        return None
    paired["stiffness_kpa"] = paired[value]
    auto, manual = paired["stiffness_kpa"].to_numpy(float), paired["manual_kpa"].to_numpy(float)
    rep = agreement(auto, manual, table)
    paired["auto_stage"] = [_stage_label(v, table) for v in auto]
    paired["manual_stage"] = [_stage_label(v, table) for v in manual]
    paired["difference_kpa"] = auto - manual
    slope, intercept = (np.polyfit(manual, auto, 1) if np.ptp(manual) > 0 else (math.nan, math.nan))
    return CohortStats(rep, paired, per_stage_table(paired), summary_table(rep, table), float(slope),
                       float(intercept))


def per_stage_table(paired: pd.DataFrame) -> pd.DataFrame:
    """Per manual (reference) stage: n, mean manual/automatic kPa, bias, same-stage fraction (plain numbers,
    snake_case columns, so the CSV reads straight into R, pandas or a spreadsheet)."""
    rows = []
    for label in STAGES:
        g = paired[paired["manual_stage"] == label]
        row: dict[str, object] = {"manual_stage": label, "n": len(g), "manual_kpa_mean": math.nan,
                                  "auto_kpa_mean": math.nan, "bias_kpa": math.nan, "same_stage_fraction": math.nan}
        if not g.empty:
            row.update(manual_kpa_mean=round(float(g["manual_kpa"].mean()), 3),
                       auto_kpa_mean=round(float(g["stiffness_kpa"].mean()), 3),
                       bias_kpa=_no_negative_zero(round(float(g["difference_kpa"].mean()), 3)),
                       same_stage_fraction=round(float((g["auto_stage"] == label).mean()), 4))
        rows.append(row)
    return pd.DataFrame(rows)


def _plain(v: object) -> object:
    """An int stays an int; a float keeps 6 significant digits (NaN stays NaN)."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    x = float(v)  # type: ignore[arg-type]
    return x if not math.isfinite(x) else _no_negative_zero(float(f"{x:.6g}"))


def _no_negative_zero(x: float) -> float:
    return 0.0 if x == 0 else x


def summary_table(rep: AgreementReport, table: StagingTable) -> pd.DataFrame:
    """Every statistic of the page as ``statistic, value, ci_low, ci_high`` rows (snake_case names, numbers;
    counts stay integers). CIs are 95 %: see :mod:`mre_core.stats.agreement` for each method."""
    p, ba, icc, sig = rep.pearson, rep.bland_altman, rep.icc, rep.significant
    nan = (math.nan, math.nan)
    rows = [
        ("n_paired", rep.n, nan),
        ("pearson_r", p.r, (p.ci_low, p.ci_high)), ("pearson_p", p.p, nan),
        ("bias_kpa", ba.bias, (ba.bias_ci_low, ba.bias_ci_high)), ("difference_sd_kpa", ba.sd, nan),
        ("loa_low_kpa", ba.loa_low, ba.loa_low_ci), ("loa_high_kpa", ba.loa_high, ba.loa_high_ci),
        ("icc_a1", icc.value, (icc.ci_low, icc.ci_high)),
        ("mean_absolute_error_kpa", rep.mae_kpa, nan),
        ("kappa_linear", rep.kappa_linear, rep.kappa_ci), ("same_stage_fraction", rep.stage_agreement, nan),
        ("f2_cutoff_kpa", sig.threshold_kpa, nan),
        ("f2_sensitivity", sig.sensitivity, sig.sensitivity_ci), ("f2_specificity", sig.specificity, sig.specificity_ci),
        ("f2_auc", sig.auc, sig.auc_ci),
        ("f2_tp", sig.tp, nan), ("f2_fp", sig.fp, nan), ("f2_tn", sig.tn, nan), ("f2_fn", sig.fn, nan),
    ]
    out = pd.DataFrame({"statistic": [n for n, _, _ in rows],
                        "value": pd.Series([_plain(v) for _, v, _ in rows], dtype=object),  # counts stay integers
                        "ci_low": [ci[0] for _, _, ci in rows], "ci_high": [ci[1] for _, _, ci in rows]})
    out.attrs["staging_table"] = table.name
    return out


#: Columns of the cohort CSV, in order; identifying ones only when asked for.
EXPORT_COLUMNS = ("patient_id", "study_uid", "series_uid", "study_date", "manufacturer", "dataset", "auto_kpa",
                  "reviewed_kpa", "manual_kpa", "auto_stage", "stage", "manual_stage", "significant_fibrosis",
                  "qc_flags", "revision", "review_status", "reviewer", "created_utc", "model_name", "model_sha256")
IDENTIFYING_COLUMNS = ("patient_name",)


def cohort_export(frame: pd.DataFrame, table: StagingTable, identifying: bool = False) -> pd.DataFrame:
    """The cohort table for download: ISO dates, both automatic and reviewed values with their stages, the manual
    stage; names only with ``identifying`` (research exports leave them out)."""
    out = frame.copy()
    out["study_date"] = out["study_day"].dt.strftime("%Y-%m-%d").fillna("") if "study_day" in out else ""
    out["auto_stage"] = [_stage_label(v, table) if pd.notna(v) else "" for v in out["auto_kpa"]]
    out["manual_stage"] = [_stage_label(v, table) if pd.notna(v) else "" for v in out["manual_kpa"]]
    cols = [c for c in (*EXPORT_COLUMNS, *(IDENTIFYING_COLUMNS if identifying else ())) if c in out]
    return out[cols]


def roi_overlap(store: Any, study_uids: Iterable[str]) -> tuple[pd.DataFrame, OverlapSummary | None]:
    """Dice / IoU between the automatic and the reader's ROI, slice by slice, for the shown studies that have
    both (:func:`mre_core.store.rois.roi_pairs`), and their summary over patients."""
    table = overlap_table(roi_pairs(store, list(study_uids)))
    return table, overlap_summary(table)


#: Identifier columns pseudonymised on the cohort page (the ROI overlap table adds each slice's SOP UID).
VIEW_ID_COLUMNS = (*DEFAULT_ID_COLUMNS, "sop_uid")
#: What identifier cells show for a viewer without a de-identification key configured.
NO_KEY = "(hidden: no key)"


def research_key(secrets_: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> tuple[bytes | None, str]:
    """The site's de-identification key (:func:`mre_core.config.deid_key`) and ``""``, or ``None`` and the
    message saying how to set one."""
    try:
        return deid_key(secrets_, environ), ""
    except DeidKeyError as exc:
        return None, str(exc)


def for_viewer(frame: pd.DataFrame, identified: bool, key: bytes | None) -> pd.DataFrame:
    """The table as this viewer may see it.

    ``identified`` (the role may see names): unchanged. Otherwise :func:`~mre_core.access.deid.deidentify`:
    patient ID, study, series and SOP UIDs become keyed pseudonyms (the same as in the exports), names and
    comments are dropped and dates keep their year. Without a ``key`` the identifier cells read
    :data:`NO_KEY` (a throw-away key computes the rest, and its pseudonyms are overwritten).
    """
    if identified:
        return frame
    out, _ = deidentify(frame, key or secrets.token_bytes(32), id_columns=VIEW_ID_COLUMNS)
    if key is None:
        for col in out.columns:
            if col in VIEW_ID_COLUMNS:
                out[col] = NO_KEY
    return out


def deidentified_zip(frame: pd.DataFrame, key: bytes | None, stem: str) -> tuple[bytes, DeidRecord]:
    """A research export: ``<stem>.csv`` de-identified and ``<stem>.deidentification.json`` (the record: method,
    key fingerprint, columns replaced, dropped and kept) in one ZIP, so the two travel together.

    Raises :class:`~mre_core.config.DeidKeyError` without a key: there is no default key."""
    out, record = deidentify(frame, key, id_columns=VIEW_ID_COLUMNS)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{stem}.csv", csv_bytes(out))
        z.writestr(f"{stem}.deidentification.json", record.to_json() + "\n")
    return buf.getvalue(), record


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV with plain numbers (up to 6 significant digits, no fixed-width scientific notation), UTF-8."""
    return frame.to_csv(index=False, float_format="%.6g").encode("utf-8")


__all__ = ["COMPARISONS", "CohortStats", "EXPORT_COLUMNS", "IDENTIFYING_COLUMNS", "ManualCsvError", "ManualImport",
           "NO_KEY", "VIEW_ID_COLUMNS", "apply_filters", "cohort_export", "cohort_stats", "csv_bytes",
           "deidentified_zip", "for_viewer", "merge_manual", "per_stage_table", "prepare", "read_manual_csv",
           "research_key", "roi_overlap", "summary_table"]
