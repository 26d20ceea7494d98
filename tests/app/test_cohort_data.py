"""Cohort page tables: manual CSV import, filters, statistics; figures build from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mre_core.analysis.staging import PAPER_TABLE
from mre_core.app import cohort_data as cd
from mre_core.app import figures
from mre_core.stats.agreement import pearson


def frame(n: int = 8) -> pd.DataFrame:
    auto = np.linspace(2.0, 6.0, n)
    return cd.prepare(pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)], "study_uid": [f"1.{i}" for i in range(n)],
        "series_uid": [f"2.{i}" for i in range(n)], "study_date": ["20240101", "20240301"] * (n // 2),
        "manufacturer": ["SIEMENS", "GE"] * (n // 2), "dataset": ["demo cohort"] * n,
        "stiffness_kpa": auto, "manual_kpa": auto + np.r_[0.3, -0.2] .repeat(n // 2)[:n],
        "stage": ["F0"] * n, "qc_flags": ["", "few_slices"] * (n // 2),
        "kind": ["auto", "auto", "review", "signed_off"] * (n // 4),
    }))


def test_manual_csv_by_patient_id_matches_and_reports_unmatched_and_bad_values() -> None:
    csv = b"Patient_ID,manual\nP1,3.5\nP2,abc\nZZ,4.0\n"
    imp = cd.merge_manual(frame(), cd.read_manual_csv(csv, "m.csv"))
    assert imp.matched == 1
    assert imp.frame.set_index("patient_id").loc["P1", "manual_kpa"] == 3.5
    assert sorted(imp.unmatched["patient_id"]) == ["P2", "ZZ"]
    assert set(imp.unmatched["reason"]) == {"manual value is not a positive number", "patient_id not among the saved studies"}


def test_manual_csv_without_the_needed_columns_names_the_file() -> None:
    with pytest.raises(cd.ManualCsvError, match="m.csv: need an ID column"):
        cd.read_manual_csv(b"a,b\n1,2\n", "m.csv")


def test_filters() -> None:
    f = frame()
    assert len(cd.apply_filters(f, manufacturers=["GE"])) == 4
    assert len(cd.apply_filters(f, qc="flagged")) == 4
    assert len(cd.apply_filters(f, dates=(pd.Timestamp("2024-02-01"), pd.Timestamp("2024-12-31")))) == 4


def test_review_filter_keeps_unreviewed_inbox_results_out_unless_asked() -> None:
    f = frame()
    f.loc[f.index[:2], "dataset"] = "pacs"  # two automatic results from the DICOM listener, nobody reviewed them
    assert len(cd.apply_filters(f)) == 8
    assert sorted(cd.apply_filters(f, review="no_unreviewed_inbox")["patient_id"]) == [f"P{i}" for i in range(2, 8)]
    assert sorted(cd.apply_filters(f, review="signed_off")["patient_id"]) == ["P3", "P7"]
    assert sorted(cd.apply_filters(f, review="reviewed")["patient_id"]) == ["P2", "P3", "P6", "P7"]
    assert f["review_status"].tolist()[:4] == ["auto, awaiting review", "auto, awaiting review",
                                               "reviewed, not signed off", "signed off"]


def test_stats_use_the_library_and_feed_the_figures() -> None:
    f = frame()
    stats = cd.cohort_stats(f, PAPER_TABLE)
    assert stats.report.pearson.r == pytest.approx(pearson(f["stiffness_kpa"].to_numpy(), f["manual_kpa"].to_numpy()).r)
    assert stats.summary.set_index("statistic").loc["n_paired", "value"] == len(f)
    assert int(stats.per_stage["n"].sum()) == len(f)
    assert cd.cohort_stats(f.head(2), PAPER_TABLE) is None
    assert len(figures.scatter_figure(stats.paired, stats.slope, stats.intercept).data) == 3
    assert len(figures.bland_altman_figure(stats.paired, stats.report.bland_altman).layout.shapes) == 3
    assert figures.confusion_figure(stats.report.confusion).data[0].z.shape == (5, 5)
    assert len(figures.stage_box_figure(stats.paired, PAPER_TABLE).data) >= 1


def test_statistics_and_per_stage_csvs_have_plain_numbers_and_snake_case_columns() -> None:
    stats = cd.cohort_stats(frame(), PAPER_TABLE)
    summary = cd.csv_bytes(stats.summary).decode()
    assert "n_paired,8," in summary and "e+" not in summary
    assert summary.splitlines()[0] == "statistic,value,ci_low,ci_high"
    rows = pd.read_csv(pd.io.common.StringIO(summary)).set_index("statistic")
    for name in ("bias_kpa", "loa_low_kpa", "loa_high_kpa", "kappa_linear", "f2_sensitivity", "f2_specificity",
                 "f2_auc", "pearson_r", "icc_a1"):
        assert name in rows.index
    lo, hi = rows.loc["loa_low_kpa", ["ci_low", "ci_high"]]
    assert lo < rows.loc["loa_low_kpa", "value"] < hi
    per_stage = cd.csv_bytes(stats.per_stage).decode()
    header = per_stage.splitlines()[0]
    assert header == "manual_stage,n,manual_kpa_mean,auto_kpa_mean,bias_kpa,same_stage_fraction"
    assert header.isascii() and "%" not in per_stage and "-0," not in per_stage
    assert pd.read_csv(pd.io.common.StringIO(per_stage))["same_stage_fraction"].dropna().between(0, 1).all()


def test_agreement_compares_the_unedited_automatic_value_when_asked() -> None:
    f = frame()
    f["auto_kpa"] = f["stiffness_kpa"] + 0.5  # the reader edited every study down by 0.5 kPa
    auto = cd.cohort_stats(f, PAPER_TABLE, value="auto_kpa")
    reviewed = cd.cohort_stats(f, PAPER_TABLE, value="stiffness_kpa")
    assert auto.report.bland_altman.bias == pytest.approx(reviewed.report.bland_altman.bias + 0.5)
    with pytest.raises(ValueError, match="unknown comparison"):
        cd.cohort_stats(f, PAPER_TABLE, value="manual_kpa")


def test_cohort_export_leaves_names_out_unless_asked_and_writes_iso_dates() -> None:
    f = frame().assign(patient_name="Doe^Jane", auto_kpa=lambda d: d["stiffness_kpa"])
    plain = cd.cohort_export(f, PAPER_TABLE)
    assert "patient_name" not in plain and plain["study_date"].tolist()[:2] == ["2024-01-01", "2024-03-01"]
    assert {"auto_kpa", "reviewed_kpa", "manual_kpa", "auto_stage", "manual_stage"} <= set(plain)
    assert plain["manual_stage"].iloc[0] == "F0"  # 2.3 kPa
    assert "Doe^Jane" in cd.csv_bytes(cd.cohort_export(f, PAPER_TABLE, identifying=True)).decode()
