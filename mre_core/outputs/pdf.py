"""One-page PDF report of an analysed study: A4 portrait, matplotlib only (no pyplot).

Layout, top to bottom (positions in points from the top-left corner, A4 = 595 x 842 pt)::

    title, date, review status
    patient & study (left column)        |  result: kPa, area-weighted kPa, stage, significant fibrosis
    staging table used: stage, lower bound (kPa), source; the F2 statement
    slice overlays (gray 0-8 kPa, yellow confidence outline, red ROI)   <- gets the space left over
    per-slice table: slice, z, mean, median, SD, ROI cm2, used, QC
    QC flags with explanations; model (name, sha256[:12], device); unit profile; review
    footer: intended use (mre_core.outputs.wording.INTENDED_USE), "model trained on synthetic phantoms"

Every text block is wrapped to its width with measured glyph widths and cut to a maximum
number of lines ("…"), so its height is known before anything is drawn; the overlay grid gets
the height that is left, so the page never overflows. Up to 12 slices fit with room to spare
(tiles shrink; the slice table lists at most :data:`MAX_TABLE_ROWS` slices).

:func:`report_figure` returns the matplotlib Figure (tests inspect its text artists);
:func:`build_pdf` saves it as PDF bytes; :func:`write_pdf` writes a file.
"""

from __future__ import annotations

import datetime
import io
import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from mre_core.analysis.pipeline import StudyResult
from mre_core.analysis.staging import PAPER_TABLE, stage
from mre_core.io.elastogram import VendorProfile
from mre_core.outputs.overlay import overlay_tiles
from mre_core.outputs.tables import slice_numbers, superior_to_inferior
from mre_core.outputs.wording import intended_use, model_card, training_statement

TITLE = "MRE Liver Review — liver stiffness report"
PAGE_PT = (595.28, 841.89)  #: A4 portrait, points (1/72 inch)
MARGIN_PT = 34.0
GAP_PT = 7.0
LINE = 1.3  #: line height, in font sizes
MAX_TABLE_ROWS = 16
IMAGE_PT = (90.0, 300.0)  #: min / max height of the overlay grid
_TEXT_TO_PATH = TextToPath()

_PROFILE_NOTES = {
    VendorProfile.SIEMENS: "stored value = kPa × 100 (working assumption: the window 400/800 spans 0–8 kPa); "
                           "check it against the scanner's documentation",
    VendorProfile.GE: "stored value = Pa (kPa = stored / 1000)",
    VendorProfile.RWVM: "the series' RealWorldValueMapping (UCUM kPa or Pa) was applied as is",
    VendorProfile.CUSTOM: "a user-supplied factor of {factor:g} kPa per stored unit",
    VendorProfile.PA: "stored value = Pa (kPa = stored / 1000), by a named vendor rule",
    VendorProfile.KPA: "stored value = kPa",
}


def _width_pt(text: str, size: float, bold: bool = False) -> float:
    prop = FontProperties(size=size, weight="bold" if bold else "normal")
    return float(_TEXT_TO_PATH.get_text_width_height_descent(text, prop, ismath=False)[0])


def _fit(text: str, size: float, width: float, bold: bool = False) -> str:
    """``text`` on one line, cut with "…" where it is wider than ``width`` points."""
    if _width_pt(text, size, bold) <= width:
        return text
    while text and _width_pt(text + "…", size, bold) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def wrap(text: str, size: float, width: float, max_lines: int, bold: bool = False) -> list[str]:
    """Greedy word wrap to ``width`` points (measured DejaVu glyphs), at most ``max_lines`` lines.

    Words wider than a line are split; a cut text ends with "…".
    """
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if _width_pt(candidate, size, bold) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while _width_pt(word, size, bold) > width and len(lines) <= max_lines:
                cut = max(1, len(_fit(word, size, width, bold)) - 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
            if len(lines) > max_lines:
                break
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _fit(lines[-1] + " …", size, width, bold) if lines[-1] else "…"
    return lines


@dataclass
class _Block:
    """Wrapped lines at one size: height is known before drawing."""

    lines: list[str]
    size: float
    bold: bool = False

    @property
    def height(self) -> float:
        return len(self.lines) * self.size * LINE


def _block(text: str, size: float, width: float, max_lines: int, bold: bool = False) -> _Block:
    return _Block(wrap(text, size, width, max_lines, bold), size, bold)


def _draw(fig: Figure, block: _Block, x: float, top: float) -> float:
    """Draw ``block`` with its top-left corner at (x, top) points; return its height."""
    width, height = PAGE_PT
    for i, line in enumerate(block.lines):
        y = top + i * block.size * LINE
        fig.text(x / width, 1 - y / height, line, fontsize=block.size, va="top", ha="left",
                 weight="bold" if block.bold else "normal")
    return block.height


def _draw_column(fig: Figure, blocks: list[_Block], x: float, top: float) -> float:
    """Draw blocks one below the other; return the total height."""
    y = top
    for block in blocks:
        y += _draw(fig, block, x, y)
    return y - top


def _kpa(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "–"


def _meta(result: StudyResult, keyword: str) -> str:
    """A study attribute from the reader's meta, else from the first slice header (display only)."""
    value = result.study.meta.get(keyword)
    if value in (None, "") and result.study.series.slices:
        header = result.study.series.slices[0].header
        value = header.get(keyword, "") if header is not None else ""
    return str(value or "")


NO_PATIENT_ID = "none (not in the DICOM header)"  #: what the report says for a de-identified exam


def patient_id_shown(result: StudyResult) -> str:
    """The PatientID the report shows: the source header's, as in the SEG and SR.

    A de-identified exam has none (absent or empty) and the report then says so, rather than
    showing the reader's grouping placeholder ("anonymous") as if it were an identifier; without
    any kept header, the result's own patient ID is shown.
    """
    header = result.study.series.slices[0].header if result.study.series.slices else None
    if header is None:
        return result.patient_id
    return str(header.get("PatientID", "") or "").strip() or NO_PATIENT_ID


def _date(da: str) -> str:
    """DICOM DA ``YYYYMMDD`` as ``YYYY-MM-DD``; anything else unchanged."""
    return f"{da[:4]}-{da[4:6]}-{da[6:]}" if len(da) == 8 and da.isdigit() else da


def _header_blocks(result: StudyResult, width: float) -> tuple[list[_Block], list[_Block]]:
    series = result.study.series
    left = [_block("Patient and study", 9, width, 1, bold=True)] + [
        _block(f"{label}: {value or '–'}", 7.5, width, 2) for label, value in (
            ("Patient ID", patient_id_shown(result)), ("Name", _meta(result, "PatientName")),
            ("Study date", _date(_meta(result, "StudyDate"))), ("Accession", _meta(result, "AccessionNumber")),
            ("Manufacturer", series.manufacturer), ("Series", series.description),
        )
    ]  # fmt: skip
    stiff, staged, table = result.stiffness, result.stage, result.settings.staging
    right = [_block("Result", 9, width, 1, bold=True)]
    if staged is None:
        right.append(_block("No stiffness value: no usable ROI on any slice.", 10, width, 2, bold=True))
    else:
        right += [
            _block(f"Liver stiffness {stiff.stiffness_kpa:.2f} kPa", 10, width, 1, bold=True),
            _block(f"mean of slice means; area-weighted mean {_kpa(stiff.stiffness_kpa_area_weighted)} kPa",
                   7.5, width, 2),
            _block(f"Stage {staged.stage.label} · significant fibrosis: "
                   f"{'yes' if staged.significant_fibrosis else 'no'}", 10, width, 1, bold=True),
        ]
    right.append(_block(f"Slices used: {stiff.n_slices_used} of {len(result.slices)}", 7.5, width, 1))
    sig = table.significant_kpa
    statement = f"Significant fibrosis = F2 or higher: stiffness ≥ {sig:g} kPa ({table.name} table)"
    if sig != PAPER_TABLE.significant_kpa:
        statement += f"; the paper's cut-off is F2 ≥ {PAPER_TABLE.significant_kpa:g} kPa"
    right.append(_block(statement, 7.5, width, 2))
    return left, right


def _draw_cutoffs(fig: Figure, result: StudyResult, top: float, width: float) -> float:
    table = result.settings.staging
    y = top + _draw(fig, _block(f"Staging table: {table.title}", 8, width, 1, bold=True), MARGIN_PT, top)
    columns = (("stage", 0.0), ("lower kPa", 40.0), ("source", 95.0))
    rows = [("F0", "–", "below the F1 bound")] + [(c.stage.label, f"{c.lower_kpa:g}", c.source) for c in table.cutoffs]
    lines = [tuple(c for c, _ in columns), *rows]
    for i, row in enumerate(lines):
        for j, ((_, dx), cell) in enumerate(zip(columns, row)):
            room = (columns[j + 1][1] if j + 1 < len(columns) else width) - dx - 3
            _draw(fig, _Block([_fit(cell, 6.5, room, bold=i == 0)], 6.5, i == 0), MARGIN_PT + dx, y + i * 6.5 * LINE)
    return y + len(lines) * 6.5 * LINE - top


def tile_grid(n: int, width: float, height: float, aspect: float) -> tuple[int, int, float, float]:
    """Columns, rows and tile width/height (points) for ``n`` tiles of aspect ``h / w``.

    Each row holds a caption line (6 pt), 2 pt of gap and the tile: ``rows * (tile_h + 9.8) <= height``
    and ``cols * (tile_w + 4) <= width``. Up to 4 tiles go in one row, more in a near-square grid.
    """
    cols = n if n <= 4 else max(3, math.ceil(math.sqrt(n * 4 / 3)))
    rows = math.ceil(n / cols)
    caption = 6 * LINE
    tile_w = min(width / cols - 4, (height / rows - caption - 2) / aspect)
    return cols, rows, tile_w, tile_w * aspect


def _draw_overlays(fig: Figure, result: StudyResult, top: float, width: float, height: float) -> float:
    tiles = overlay_tiles(result)
    if not tiles:
        return _draw(fig, _Block(["No slice to show."], 7.5), MARGIN_PT, top)
    aspect = tiles[0][0].shape[0] / tiles[0][0].shape[1]
    cols, rows, tile_w, tile_h = tile_grid(len(tiles), width, height - 6 * LINE, aspect)
    page_w, page_h = PAGE_PT
    cell_h = tile_h + 6 * LINE + 2
    for i, (rgb, caption) in enumerate(tiles):
        x = MARGIN_PT + (i % cols) * (width / cols)
        y = top + (i // cols) * cell_h
        _draw(fig, _Block([_fit(caption, 6, tile_w)], 6), x, y)
        ax = fig.add_axes((x / page_w, 1 - (y + cell_h - 2) / page_h, tile_w / page_w, tile_h / page_h))
        ax.imshow(rgb, interpolation="none")
        ax.set_axis_off()
    legend = _Block([_fit("Gray: elastogram 0–8 kPa · yellow outline: 95 % confidence region · red: ROI", 6, width)], 6)
    return rows * cell_h + _draw(fig, legend, MARGIN_PT, top + rows * cell_h)


_SLICE_COLUMNS = (("slice", 0), ("z mm", 34), ("mean kPa", 70), ("median", 116), ("SD", 156), ("ROI cm²", 190),
                  ("used", 236), ("QC", 266))  # fmt: skip


def _slice_rows(result: StudyResult) -> list[tuple[str, ...]]:
    numbers = slice_numbers(result.slices)
    rows: list[tuple[str, ...]] = [
        (f"{numbers[s.sop_uid]} (#{s.instance_number})", f"{s.position_mm:.1f}", _kpa(s.stats.mean_kpa), _kpa(s.stats.median_kpa),
         _kpa(s.stats.sd_kpa), f"{s.stats.area_cm2:.2f}", "yes" if s.usable else "no",
         ", ".join(f.value for f in s.qc_flags) or "–")
        for s in superior_to_inferior(result.slices)[:MAX_TABLE_ROWS]
    ]  # fmt: skip
    if len(result.slices) > MAX_TABLE_ROWS:
        rows.append((f"+{len(result.slices) - MAX_TABLE_ROWS} more slices: see the slice CSV", *[""] * 7))
    return rows


def _draw_slice_table(fig: Figure, rows: list[tuple[str, ...]], top: float, width: float) -> float:
    for i, row in enumerate([tuple(c for c, _ in _SLICE_COLUMNS), *rows]):
        for j, ((_, dx), cell) in enumerate(zip(_SLICE_COLUMNS, row)):
            room = (_SLICE_COLUMNS[j + 1][1] if j + 1 < len(_SLICE_COLUMNS) else width) - dx - 3
            if j == 0 and not any(row[1:]):
                room = width  # a note row spans the table
            if cell:
                _draw(fig, _Block([_fit(cell, 6.5, room, bold=i == 0)], 6.5, i == 0), MARGIN_PT + dx, top + i * 6.5 * LINE)
    return (len(rows) + 1) * 6.5 * LINE


def _reading_rules(result: StudyResult) -> str:
    """How the input was read: the rule that chose the series, the unit and the confidence region."""
    s = result.study.series
    return (f"Series measured: {s.description or '(no description)'}, chosen by {s.series_rule or 'unknown'} · "
            f"unit: {s.unit_rule or 'unknown'} · confidence region: {s.confidence_rule or 'unknown'}")


def _lower_blocks(result: StudyResult, width: float, reviewer: str, comment: str, manual_kpa: float | None,
                  status: str) -> list[_Block]:
    flags = result.qc_flags
    qc = " ".join(f"{f.value} — {f.explanation}" for f in flags) if flags else "none"
    if result.input_notes:
        qc += " Input notes: " + "; ".join(result.input_notes) + "."
    first = result.study.series.slices[0] if result.study.series.slices else None
    profile = "unknown"
    if first is not None:
        note = _PROFILE_NOTES[first.profile].format(factor=first.kpa_per_unit)
        profile = f"{first.profile.value}: {note}. Confidence region: {first.encoding.value}."
    manual = "none"
    if manual_kpa is not None and math.isfinite(manual_kpa) and manual_kpa >= 0:
        manual = f"{manual_kpa:.2f} kPa (stage {stage(manual_kpa, result.settings.staging).stage.label})"
    review = f"Status: {status} · reviewer: {reviewer or '–'} · manual measurement: {manual}"
    return [
        _block(f"QC flags: {qc}", 7, width, 8),
        _block(f"Model: {result.model_name} · sha256 {result.model_sha256[:12] or '–'} · device {result.device}",
               7, width, 2),
        _block(f"Unit profile {profile}", 7, width, 3),
        _block(_reading_rules(result), 7, width, 3),
        _block(review, 7, width, 2, bold=True),
        _block(f"Comment: {comment.strip() or '–'}", 7, width, 4),
    ]


def report_figure(result: StudyResult, *, reviewer: str = "", comment: str = "", manual_kpa: float | None = None,
                  status: str = "automatic result, not reviewed") -> Figure:
    """The report page as a matplotlib Figure (A4 portrait, points laid out as in the module docstring)."""
    page_w, page_h = PAGE_PT
    fig = Figure(figsize=(page_w / 72, page_h / 72))
    width = page_w - 2 * MARGIN_PT
    card = model_card(result.settings.weights_dir, result.settings.model_name)
    footer = [_block(intended_use(card), 6.5, width, 5),
              _block(training_statement(card), 6.5, width, 2, bold=True)]  # fmt: skip
    footer_h = sum(b.height for b in footer)
    y = MARGIN_PT + _draw(fig, _Block([_fit(TITLE, 15, width, True)], 15, True), MARGIN_PT, MARGIN_PT)
    stamp = f"Generated {datetime.datetime.now():%Y-%m-%d %H:%M} · {status}"
    y += _draw(fig, _block(stamp, 7, width, 1), MARGIN_PT, y) + GAP_PT
    column = (width - 16) / 2
    left, right = _header_blocks(result, column)
    y += max(_draw_column(fig, left, MARGIN_PT, y), _draw_column(fig, right, MARGIN_PT + column + 16, y)) + GAP_PT
    y += _draw_cutoffs(fig, result, y, width) + GAP_PT
    rows, lower = _slice_rows(result), _lower_blocks(result, width, reviewer, comment, manual_kpa, status)
    below = (len(rows) + 1) * 6.5 * LINE + sum(b.height + 3 for b in lower) + 3 * GAP_PT + footer_h
    room = page_h - MARGIN_PT - y - below
    y += _draw_overlays(fig, result, y, width, max(IMAGE_PT[0], min(IMAGE_PT[1], room))) + GAP_PT
    y += _draw_slice_table(fig, rows, y, width) + GAP_PT
    for block in lower:
        y += _draw(fig, block, MARGIN_PT, y) + 3
    y = max(y + GAP_PT, page_h - MARGIN_PT - footer_h)
    for block in footer:
        y += _draw(fig, block, MARGIN_PT, y)
    return fig


def build_pdf(result: StudyResult, *, reviewer: str = "", comment: str = "", manual_kpa: float | None = None,
              status: str = "automatic result, not reviewed") -> bytes:
    """The one-page PDF report as bytes; the PDF metadata (Subject, Keywords) names patient, value and stage."""
    fig = report_figure(result, reviewer=reviewer, comment=comment, manual_kpa=manual_kpa, status=status)
    stage_label = result.stage.stage.label if result.stage else "no stage"
    patient = patient_id_shown(result)
    keywords = (patient if patient != NO_PATIENT_ID else "", stage_label, status, reviewer)
    metadata = {"Title": TITLE, "Author": "MRE Liver Review", "Subject": f"Patient {patient}, "
                f"study {result.study_uid}: {_kpa(result.stiffness_kpa)} kPa, {stage_label}",
                "Keywords": "; ".join(k for k in keywords if k)}  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf", metadata=metadata)
    return buffer.getvalue()


def write_pdf(result: StudyResult, path: Path, *, reviewer: str = "", comment: str = "",
              manual_kpa: float | None = None, status: str = "automatic result, not reviewed") -> Path:
    """:func:`build_pdf` written to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_pdf(result, reviewer=reviewer, comment=comment, manual_kpa=manual_kpa, status=status))
    return path


__all__ = ["TITLE", "build_pdf", "patient_id_shown", "report_figure", "tile_grid", "wrap", "write_pdf"]
