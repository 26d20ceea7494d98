"""Tests of mre_core.outputs.pdf: one A4 page, what it says, and that nothing leaves the page or overlaps.

The PDF's text is subset-encoded by matplotlib, so the content is checked on the Figure
(its text artists, drawn with Agg to get their extents) and the PDF bytes for the page
count, the A4 MediaBox and the metadata.
"""

from __future__ import annotations

import dataclasses
import re
from itertools import combinations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from mre_core.analysis.pipeline import StudyResult
from mre_core.app.exports import pdf_bytes
from mre_core.app.review_state import ReviewEdits
from mre_core.outputs.pdf import LINE, build_pdf, report_figure, tile_grid, wrap, write_pdf
from mre_core.outputs.wording import INTENDED_USE
from tests.result_factory import COLS, ROWS, make_result

TWELVE_KPA = (2.9, 3.1, 2.9, 3.2, 3.0, 3.3, 2.8, 3.1, 3.0, 2.7, 3.4, 3.1)


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def _joined(fig: Figure) -> str:
    return " ".join(t.get_text() for t in _texts(fig))


def _layout_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """Display-space boxes of every text line and every image axes, after a real draw."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    return boxes + [(f"axes {i}", ax.get_window_extent(renderer)) for i, ax in enumerate(fig.axes)]


def _assert_on_page_without_overlaps(fig: Figure) -> None:
    page = fig.bbox
    boxes = _layout_boxes(fig)
    outside = [name for name, b in boxes if b.x0 < page.x0 or b.y0 < page.y0 or b.x1 > page.x1 or b.y1 > page.y1]
    assert not outside, f"outside the page: {outside}"
    shrunk = [(name, b.expanded(1, 1).padded(-0.5)) for name, b in boxes]
    overlapping = [(a, b) for (a, ba), (b, bb) in combinations(shrunk, 2) if ba.overlaps(bb)]
    assert not overlapping, f"overlapping: {overlapping[:5]}"


@pytest.fixture(scope="module")
def result() -> StudyResult:
    return make_result()


@pytest.fixture(scope="module")
def twelve() -> StudyResult:
    return make_result(kpa_values=TWELVE_KPA)


def test_pdf_is_one_a4_page_with_study_metadata(result: StudyResult) -> None:
    pdf = build_pdf(result)
    assert pdf.startswith(b"%PDF") and _pages(pdf) == 1
    box = [float(v) for v in re.search(rb"/MediaBox\s*\[\s*([\d.\s]+)\]", pdf).group(1).split()]
    assert box == pytest.approx([0, 0, 595.28, 841.89], abs=0.5)
    assert b"PAT001" in pdf and b"F2" in pdf  # /Subject and /Keywords of the document information


def test_page_shows_patient_result_cutoffs_model_and_intended_use(result: StudyResult) -> None:
    text = _joined(report_figure(result))
    for expected in ("Patient ID: PAT001", "Name: Phantom^Ann", "Study date: 2025-03-01", "Accession: A1", "Series: MRE_ELASTOGRAM_CONF95",
                     "Liver stiffness 3.00 kPa", "Stage F2 · significant fibrosis: yes", "stiffness ≥ 2.8 kPa",
                     "Slices used: 3 of 4", "sha256 abababababab ·", "device cpu", "kPa × 100",
                     "empty_roi — No liver ROI", "synthetic phantoms", "automatic result, not reviewed"):
        assert expected in text, expected
    assert " ".join(INTENDED_USE.split()) in text
    assert "sha256 " + "ab" * 7 not in text  # only the first 12 hex digits


def test_cutoff_table_lists_every_stage_bound(result: StudyResult) -> None:
    texts = [t.get_text() for t in _texts(report_figure(result))]
    bounds = [c.lower_kpa for c in result.settings.staging.cutoffs]
    assert [f"{b:g}" for b in bounds] == ["2.5", "2.8", "4", "5"]
    assert all(f"{b:g}" in texts for b in bounds) and {"F0", "F1", "F2", "F3", "F4"} <= set(texts)


def test_slice_table_has_one_row_per_slice(result: StudyResult) -> None:
    texts = [t.get_text() for t in _texts(report_figure(result))]
    by_z = sorted(result.slices, key=lambda s: -s.position_mm)  # slice 1 = most superior (largest z)
    expected = [f"{i} (#{s.instance_number})" for i, s in enumerate(by_z, start=1)]
    assert [t for t in texts if re.fullmatch(r"\d+ \(#\d+\)", t)] == expected
    assert by_z[0].position_mm > by_z[-1].position_mm
    assert texts.count("no") == 1 and texts.count("yes") >= 3  # slice 2: empty ROI, not used


def test_twelve_slices_fit_on_one_page_without_overlaps(twelve: StudyResult) -> None:
    fig = report_figure(twelve)
    assert len(fig.axes) == 12
    _assert_on_page_without_overlaps(fig)
    assert _pages(build_pdf(twelve)) == 1


@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_any_slice_count_stays_on_one_page(n: int) -> None:
    many = make_result(kpa_values=[3.0 + 0.05 * i for i in range(n)])
    fig = report_figure(many, comment="checked " * 200)
    assert len(fig.axes) == n
    _assert_on_page_without_overlaps(fig)
    if n > 16:
        assert any(t.get_text().startswith(f"+{n - 16} more slices") for t in _texts(fig))


def test_long_texts_wrap_cut_and_stay_on_the_page(twelve: StudyResult) -> None:
    series = dataclasses.replace(twelve.study.series, description="VERY LONG SERIES DESCRIPTION " * 12)
    long = dataclasses.replace(twelve, study=dataclasses.replace(twelve.study, series=series))
    comment = "The ROI on slice 3 was checked against the magnitude image. " * 40 + "x" * 400
    fig = report_figure(long, reviewer="Dr. Reader " * 30, comment=comment, manual_kpa=3.1, status="reviewed " * 30)
    _assert_on_page_without_overlaps(fig)
    lines = [t.get_text() for t in _texts(fig)]
    start = next(i for i, t in enumerate(lines) if t.startswith("Comment:"))
    end = next(i for i, t in enumerate(lines) if t.startswith("MRE Liver Review is"))  # the footer follows
    assert len(lines[start:end]) == 4 and lines[end - 1].endswith("…")
    series_line = lines.index(next(t for t in lines if t.startswith("Series: VERY LONG")))
    assert lines[series_line + 1].endswith("…")  # two lines at most


def test_review_fields_are_shown(result: StudyResult) -> None:
    text = _joined(report_figure(result, reviewer="Dr. Rita Reader", comment="ROI fine.", manual_kpa=3.1,
                                 status="reviewed, signed off"))  # fmt: skip
    assert "reviewer: Dr. Rita Reader" in text and "Comment: ROI fine." in text
    assert "manual measurement: 3.10 kPa (stage F2)" in text and "Status: reviewed, signed off" in text


def test_no_usable_slice_says_why_and_shows_no_stage() -> None:
    empty = make_result(rois=[np.zeros((ROWS, COLS), bool)] * 3)
    fig = report_figure(empty)
    text = _joined(fig)
    assert "No stiffness value: no usable ROI" in text and "Stage F" not in text
    assert "no_usable_slice — No slice gave a usable ROI" in text
    _assert_on_page_without_overlaps(fig)


@pytest.mark.parametrize("aspect", [0.5, 0.797, 1.0, 1.6])
def test_tile_grid_fits_its_box_for_any_count_and_aspect(aspect: float) -> None:
    for n in range(1, 25):
        cols, rows, tile_w, tile_h = tile_grid(n, width=520.0, height=250.0, aspect=aspect)
        assert cols * rows >= n and tile_h == pytest.approx(tile_w * aspect)
        assert cols * (tile_w + 4) <= 520.0 + 1e-6 and rows * (tile_h + 6 * LINE + 2) <= 250.0 + 1e-6


def test_wrap_respects_width_and_cuts_with_ellipsis() -> None:
    lines = wrap("short words " * 20 + "x" * 300, size=7, width=120, max_lines=3)
    assert len(lines) == 3 and lines[-1].endswith("…")
    assert wrap("fits", size=7, width=120, max_lines=3) == ["fits"]


def test_write_pdf_and_export_bytes_carry_the_review(result: StudyResult, tmp_path) -> None:
    path = write_pdf(result, tmp_path / "out" / "report.pdf", reviewer="Dr R")
    assert path.read_bytes().startswith(b"%PDF") and b"Dr R" in path.read_bytes()
    data = pdf_bytes(result, ReviewEdits(manual_kpa=3.1, reviewer="Dr Export", comment="ok"), status="signed off")
    assert _pages(data) == 1 and b"Dr Export" in data and b"signed off" in data
