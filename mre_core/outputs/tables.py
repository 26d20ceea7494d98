"""CSV tables of analysed studies.

:func:`studies_table` (one row per study), :func:`slices_table` (one row per slice) and
:func:`skipped_table` (files left out, with the reason); :func:`write_csvs` writes all three as
UTF-8 CSV with a header row, even when empty. kPa values are rounded to 3 decimals, areas to 2; a
missing value (no usable slice, no stage) is an empty cell, never a number.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from mre_core.analysis.pipeline import StudyResult
from mre_core.analysis.stiffness import QcFlag, SliceResult
from mre_core.io.elastogram import Elastogram, SkippedFile

STUDY_COLUMNS: tuple[str, ...] = (
    "patient_id", "study_uid", "series_uid", "n_slices", "n_slices_used", "stiffness_kpa",
    "stiffness_kpa_area_weighted", "slice_cv", "stage", "significant_fibrosis", "staging_table", "qc_flags",
    "model_name", "model_sha256", "profile", "kpa_per_unit", "confidence_encoding", "device", "runtime_s",
    "patient_name", "study_date", "manufacturer", "series_description", "series_rule", "unit_rule",
    "confidence_rule", "input_notes",
)  # fmt: skip
SLICE_COLUMNS: tuple[str, ...] = (
    "patient_id", "study_uid", "series_uid", "slice_number", "sop_uid", "instance_number", "position_mm", "source",
    "excluded",
    "n_pixels", "area_cm2", "mean_kpa", "median_kpa", "sd_kpa", "iqr_kpa", "p25_kpa", "p75_kpa",
    "confidence_area_cm2", "qc_flags",
)  # fmt: skip
SKIPPED_COLUMNS: tuple[str, ...] = (
    "file", "reason", "series_number", "series_description", "role", "rule", "n_files", "files",
)  # fmt: skip




def superior_to_inferior(slices: Sequence[Any]) -> list[Any]:
    """Slices (anything with ``position_mm`` and ``instance_number``) from head to feet: the one numbering of
    the page, the PDF, the overlay and the CSVs. DICOM patient z grows towards the head (LPS), so the largest
    slice position comes first; slices without a position follow, by instance number."""
    def key(s: Any) -> tuple[int, float, int]:
        z = float(s.position_mm)
        return (0, -z, int(s.instance_number)) if math.isfinite(z) else (1, 0.0, int(s.instance_number))
    return sorted(slices, key=key)


def slice_numbers(slices: Sequence[Any]) -> dict[str, int]:
    """SOP UID → slice number, 1 = most superior (:func:`superior_to_inferior`)."""
    return {s.sop_uid: i for i, s in enumerate(superior_to_inferior(slices), start=1)}


def slice_label(number: int, instance_number: int) -> str:
    """``"slice 2 (#14)"``: the position-based number with the DICOM instance number beside it."""
    return f"slice {number} (#{instance_number})"


def _kpa(value: float) -> float:
    """Round a kPa (or other 3-decimal) value; NaN stays NaN (an empty CSV cell)."""
    return round(float(value), 3) if math.isfinite(value) else math.nan


def _flags(flags: Sequence[QcFlag]) -> str:
    return ";".join(f.value for f in flags)


def _study_row(result: StudyResult) -> dict[str, Any]:
    series, stiff, staged = result.study.series, result.stiffness, result.stage
    first = series.slices[0] if series.slices else None
    meta = result.study.meta
    return {
        "patient_id": result.patient_id,
        "study_uid": result.study_uid,
        "series_uid": result.series_uid,
        "n_slices": len(result.slices),
        "n_slices_used": stiff.n_slices_used,
        "stiffness_kpa": _kpa(stiff.stiffness_kpa),
        "stiffness_kpa_area_weighted": _kpa(stiff.stiffness_kpa_area_weighted),
        "slice_cv": round(stiff.slice_cv, 4) if math.isfinite(stiff.slice_cv) else math.nan,
        "stage": staged.stage.label if staged else "",
        "significant_fibrosis": bool(staged.significant_fibrosis) if staged else None,
        "staging_table": staged.table if staged else result.settings.staging.name,
        "qc_flags": _flags(result.qc_flags),
        "input_notes": "; ".join(result.input_notes),
        "model_name": result.model_name,
        "model_sha256": result.model_sha256,
        "profile": first.profile.value if first else "",
        "kpa_per_unit": first.kpa_per_unit if first else math.nan,
        "confidence_encoding": first.encoding.value if first else "",
        "device": result.device,
        "runtime_s": round(result.runtime_s, 3),
        "patient_name": str(meta.get("PatientName", "")),
        "study_date": str(meta.get("StudyDate", "")),
        "manufacturer": series.manufacturer,
        "series_description": series.description,
        "series_rule": series.series_rule,
        "unit_rule": series.unit_rule,
        "confidence_rule": series.confidence_rule,
    }


def studies_table(results: Sequence[StudyResult]) -> pd.DataFrame:
    """One row per study, columns :data:`STUDY_COLUMNS`.

    Parameters
    ----------
    results : sequence of StudyResult

    Returns
    -------
    pandas.DataFrame
        ``stiffness_kpa`` is the mean of slice means (kPa, 3 decimals), NaN when no
        slice was usable; ``stage`` is ``"F0"``..``"F4"`` or ``""``;
        ``significant_fibrosis`` is a bool or ``None``; ``qc_flags`` joins flag values with ``;``.
    """
    return pd.DataFrame([_study_row(r) for r in results], columns=list(STUDY_COLUMNS))


def elastograms_by_sop(result: StudyResult) -> dict[str, Elastogram]:
    return {e.sop_uid: e for e in result.study.series.slices}


def _slice_row(result: StudyResult, s: SliceResult, source: Elastogram | None, number: int) -> dict[str, Any]:
    st = s.stats
    return {
        "patient_id": result.patient_id,
        "study_uid": result.study_uid,
        "series_uid": result.series_uid,
        "slice_number": number,
        "sop_uid": s.sop_uid,
        "instance_number": s.instance_number,
        "position_mm": round(s.position_mm, 2),
        "source": source.source if source else "",
        "excluded": bool(s.excluded),
        "n_pixels": st.n_pixels,
        "area_cm2": round(st.area_cm2, 2),
        "mean_kpa": _kpa(st.mean_kpa),
        "median_kpa": _kpa(st.median_kpa),
        "sd_kpa": _kpa(st.sd_kpa),
        "iqr_kpa": _kpa(st.iqr_kpa),
        "p25_kpa": _kpa(st.p25_kpa),
        "p75_kpa": _kpa(st.p75_kpa),
        "confidence_area_cm2": round(s.confidence_area_cm2, 2),
        "qc_flags": _flags(s.qc_flags),
    }


def slices_table(results: Sequence[StudyResult]) -> pd.DataFrame:
    """One row per slice of every study, columns :data:`SLICE_COLUMNS`.

    kPa statistics are NaN (empty cells) for an empty ROI; ``source`` is the file
    the slice came from.
    """
    rows = []
    for r in results:
        by_sop = elastograms_by_sop(r)
        numbers = slice_numbers(r.slices)
        rows.extend(_slice_row(r, s, by_sop.get(s.sop_uid), numbers[s.sop_uid]) for s in superior_to_inferior(r.slices))
    return pd.DataFrame(rows, columns=list(SLICE_COLUMNS))


def skipped_table(skipped: Sequence[SkippedFile]) -> pd.DataFrame:
    """One row per series (or per file, when no series could be read) not analysed, and why.

    Columns :data:`SKIPPED_COLUMNS` (also when there are none): ``file`` is the first file,
    ``files`` all files of the series joined by ``;``, ``role`` what the series was recognised as
    and ``rule`` the vendor rule (or ``fallback: …``) that said so.

    >>> list(skipped_table([]).columns)[:2]
    ['file', 'reason']
    """
    rows = [(s.file, s.reason, s.series_number, s.series_description, s.role, s.rule, s.n_files,
             ";".join(s.files) if s.files else s.file) for s in skipped]
    return pd.DataFrame(rows, columns=list(SKIPPED_COLUMNS))


def file_stem(result: StudyResult) -> str:
    """A safe file-name stem: patient ID and the last digits of the study UID."""
    pid = "".join(c if c.isalnum() or c in "-_" else "_" for c in result.patient_id) or "study"
    return f"{pid}_{result.study_uid[-8:]}"


def write_csvs(results: Sequence[StudyResult], skipped: Sequence[SkippedFile], out_dir: Path) -> dict[str, Path]:
    """Write ``studies.csv``, ``slices.csv`` and ``skipped.csv`` (UTF-8, header always present).

    Parameters
    ----------
    results, skipped
        What the analysis produced and what it left out.
    out_dir : Path
        Created if missing.

    Returns
    -------
    dict
        ``{"studies": path, "slices": path, "skipped": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"studies": studies_table(results), "slices": slices_table(results), "skipped": skipped_table(skipped)}
    paths = {}
    for name, table in tables.items():
        paths[name] = out_dir / f"{name}.csv"
        table.to_csv(paths[name], index=False, encoding="utf-8")
    return paths






