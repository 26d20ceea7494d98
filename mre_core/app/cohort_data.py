"""The cohort page's tables: saved studies, imported manual values, filters, statistics.

Pure pandas over :meth:`mre_core.store.results.Store.latest_table`; the statistics themselves are
:func:`mre_core.stats.agreement.agreement`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mre_core.analysis.staging import FibrosisStage, StagingTable, stage
from mre_core.stats.agreement import AgreementReport, agreement
from mre_core.workflow.worker import PACS_DATASET
from mre_core.workflow.worklist import REVIEW_STATUS

ID_COLUMNS = ("study_uid", "patient_id")
MANUAL_COLUMNS = ("manual_kpa", "manual", "manual_mre_kpa", "kpa")
STAGES = tuple(s.label for s in FibrosisStage)


class ManualCsvError(ValueError):
    """An imported manual-measurement CSV that cannot be used; the message says why."""


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns the page filters on: ``qc_status``, ``study_day`` (a date or NaT)."""
    out = frame.copy()
    out["qc_flags"] = out.get("qc_flags", pd.Series(dtype=str)).fillna("")
    out["qc_status"] = np.where(out["qc_flags"] == "", "QC ok", "QC flagged")
    if "kind" in out:
        out["review_status"] = out["kind"].map(REVIEW_STATUS).fillna(out["kind"])
    out["study_day"] = pd.to_datetime(out.get("study_date", pd.Series(dtype=str)), format="%Y%m%d", errors="coerce")
    for col in ("stiffness_kpa", "manual_kpa"):
        out[col] = pd.to_numeric(out.get(col), errors="coerce")
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

    ``review``: ``all``; ``signed_off`` (only studies a reader signed off); or ``no_unreviewed_inbox``
    (everything except automatic results from the DICOM inbox that nobody has reviewed yet).
    """
    keep = pd.Series(True, index=frame.index)
    if review == "signed_off":
        keep &= frame["kind"] == "signed_off"
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


def cohort_stats(frame: pd.DataFrame, table: StagingTable) -> CohortStats | None:
    """Agreement of automatic vs manual stiffness on rows with both; ``None`` below 3 pairs."""
    paired = frame[frame["stiffness_kpa"].notna() & frame["manual_kpa"].notna()].copy()
    if len(paired) < 3:
        return None
    auto, manual = paired["stiffness_kpa"].to_numpy(float), paired["manual_kpa"].to_numpy(float)
    rep = agreement(auto, manual, table)
    paired["auto_stage"] = [_stage_label(v, table) for v in auto]
    paired["manual_stage"] = [_stage_label(v, table) for v in manual]
    paired["difference_kpa"] = auto - manual
    slope, intercept = (np.polyfit(manual, auto, 1) if np.ptp(manual) > 0 else (math.nan, math.nan))
    return CohortStats(rep, paired, per_stage_table(paired), summary_table(rep, table), float(slope),
                       float(intercept))


def per_stage_table(paired: pd.DataFrame) -> pd.DataFrame:
    """Per manual (reference) stage: n, mean manual/automatic kPa, bias, same-stage fraction."""
    rows = []
    for label in STAGES:
        g = paired[paired["manual_stage"] == label]
        if g.empty:
            rows.append({"manual stage": label, "n": 0})
            continue
        rows.append({
            "manual stage": label, "n": len(g),
            "manual kPa (mean)": round(g["manual_kpa"].mean(), 2),
            "automatic kPa (mean)": round(g["stiffness_kpa"].mean(), 2),
            "bias kPa (auto − manual)": round(g["difference_kpa"].mean(), 2),
            "same stage": f"{(g['auto_stage'] == label).mean():.0%}",
        })
    return pd.DataFrame(rows)


def summary_table(rep: AgreementReport, table: StagingTable) -> pd.DataFrame:
    """Every statistic of the page as ``name, value`` rows (rounded for reading, CSV-friendly)."""
    p, ba, icc, sig = rep.pearson, rep.bland_altman, rep.icc, rep.significant
    rows = [
        ("n (paired studies)", rep.n),
        ("Pearson r", p.r), ("Pearson r 95% CI low", p.ci_low), ("Pearson r 95% CI high", p.ci_high),
        ("Pearson p", p.p),
        ("Bland-Altman bias kPa (auto - manual)", ba.bias), ("Bland-Altman SD kPa", ba.sd),
        ("Limits of agreement low kPa", ba.loa_low), ("Limits of agreement high kPa", ba.loa_high),
        ("ICC(A,1)", icc.value), ("ICC 95% CI low", icc.ci_low), ("ICC 95% CI high", icc.ci_high),
        ("Mean absolute error kPa", rep.mae_kpa),
        ("Linear-weighted kappa (stages)", rep.kappa_linear), ("Same stage (fraction)", rep.stage_agreement),
        (f"F2 cut-off kPa ({table.name})", sig.threshold_kpa),
        ("F2 sensitivity", sig.sensitivity), ("F2 specificity", sig.specificity), ("F2 AUC", sig.auc),
        ("F2 TP", sig.tp), ("F2 FP", sig.fp), ("F2 TN", sig.tn), ("F2 FN", sig.fn),
    ]
    return pd.DataFrame(rows, columns=["statistic", "value"])


__all__ = ["CohortStats", "ManualCsvError", "ManualImport", "apply_filters", "cohort_stats", "merge_manual",
           "per_stage_table", "prepare", "read_manual_csv", "summary_table"]
