"""Cohort figures as vector files (SVG, PDF) from the same numbers as the page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mre_core.analysis.staging import PAPER_TABLE
from mre_core.app import cohort_data as cd
from mre_core.outputs.cohort_figures import FIGURES, figure_bytes


@pytest.fixture(scope="module")
def stats():
    rng = np.random.default_rng(2)
    manual = rng.uniform(1.8, 7.0, 30)
    frame = cd.prepare(pd.DataFrame({"patient_id": [f"P{i}" for i in range(30)], "stiffness_kpa": manual + rng.normal(0, .3, 30),
                                     "manual_kpa": manual, "kind": "review", "dataset": "x", "study_date": "20240101"}))
    return cd.cohort_stats(frame, PAPER_TABLE)


@pytest.mark.parametrize("kind", list(FIGURES))
def test_each_figure_is_a_real_svg_and_pdf_with_its_numbers(kind, stats) -> None:
    svg = figure_bytes(kind, stats.paired, stats.report, "svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    pdf = figure_bytes(kind, stats.paired, stats.report, "pdf")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    if kind == "scatter":
        assert f"r = {stats.report.pearson.r:.3f}" in svg  # matplotlib keeps text as text in SVG
    if kind == "bland_altman":
        assert f"bias {stats.report.bland_altman.bias:+.2f}" in svg


def test_unknown_figure_or_format_is_refused(stats) -> None:
    with pytest.raises(ValueError, match="unknown figure"):
        figure_bytes("pie", stats.paired, stats.report)
    with pytest.raises(ValueError, match="svg or pdf"):
        figure_bytes("scatter", stats.paired, stats.report, "png")
