"""The Review page's slice viewer: view options, per-slice overlay figures and numbers, the slice table.

Owns the view widgets (layout, ROI opacity, confidence / ROI / model-mask toggles, the slice
picker: :func:`view_options`), the boxes each slice is drawn in (:func:`slice_boxes`), the
overlay figure and numbers of each shown slice (:func:`show_slices`; while the reader draws the ROI,
the drawing canvas of :mod:`.roi_drawing` takes the figure's place) and the *All slices* table
(:func:`show_slice_table`). The per-slice edit widgets that sit in the boxes belong to
:mod:`.review_panel`. Texts and rows are pure functions (:func:`slice_labels`,
:func:`slice_numbers_text`, :func:`slice_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from mre_core.analysis.pipeline import StudyResult
from mre_core.analysis.stiffness import SliceResult
from mre_core.app import roi_drawing
from mre_core.app.figures import elastogram_figure
from mre_core.app.review_status import fmt, table_text
from mre_core.app.slice_image import ViewerLayers, show_slice_image
from mre_core.outputs.tables import slice_numbers, superior_to_inferior

ONE_AT_A_TIME = "One slice at a time"
SIDE_BY_SIDE = "Side by side"
ELASTOGRAM = "Elastogram"
MAGNITUDE = "Magnitude"


@dataclass(frozen=True)
class ViewOptions:
    """How the slices are shown this run."""

    layout: str  #: :data:`ONE_AT_A_TIME` or :data:`SIDE_BY_SIDE`
    opacity: float  #: ROI fill opacity, 0–1
    show_confidence: bool
    show_roi: bool
    show_predicted: bool
    shown: list[int]  #: indices of the slices drawn, in order
    labels: list[str]  #: one label per slice of the study
    interactive: bool = False  #: the plotly figure (zoom, pan) instead of the fast image view
    magnitude: bool = False  #: the magnitude image as the background of the fast view

    @property
    def layers(self) -> ViewerLayers:
        return ViewerLayers(self.opacity, self.show_confidence, self.show_roi, self.show_predicted, self.magnitude)

    @property
    def side_by_side(self) -> bool:
        return self.layout == SIDE_BY_SIDE


def slice_labels(result: StudyResult) -> list[str]:
    """``"1 (#14) · z 12 mm"`` for each slice (in the study's slice order): the one numbering of the app and its
    exports (:func:`mre_core.outputs.tables.slice_numbers`: 1 = most superior), instance number beside it."""
    numbers = slice_numbers(result.slices)
    return [f"{numbers[s.sop_uid]} (#{s.instance_number}) · z {s.position_mm:.0f} mm" for s in result.slices]


def head_to_feet(result: StudyResult) -> list[int]:
    """Slice indices from the most superior to the most inferior (the order slices are offered and listed)."""
    numbers = slice_numbers(result.slices)
    return sorted(range(len(result.slices)), key=lambda i: numbers[result.slices[i].sop_uid])


def view_options(result: StudyResult, skey: str) -> ViewOptions:
    """The view widgets (and, one slice at a time, the slice picker ``rv_slice|<study>``)."""
    opts = [*st.columns([2.4, 2.0, 1.8]), *st.columns(4)]  # two rows: layout, image, opacity; then the toggles
    layout = opts[0].segmented_control("Layout", [ONE_AT_A_TIME, SIDE_BY_SIDE], default=ONE_AT_A_TIME,
                                       key="rv_layout") or ONE_AT_A_TIME
    has_magnitude = any(getattr(e, "magnitude", None) is not None for e in result.study.series.slices)
    image = opts[1].segmented_control(
        "Image", [ELASTOGRAM, MAGNITUDE], default=ELASTOGRAM, key="rv_image", disabled=not has_magnitude,
        help=("Magnitude: the exam's magnitude image of the same slice (the anatomy: liver edge, vessels, "
              "gallbladder) under the same overlays; the pointer still reads the stiffness. "
              f"{result.study.series.magnitude_rule or ''}")) or ELASTOGRAM
    opacity = opts[2].slider("ROI opacity", 0.0, 1.0, 0.45, 0.05, key="rv_opacity")
    show_conf = opts[3].toggle("Confidence", True, key="rv_conf", help="Outline of the 95 % confidence region (yellow)")
    show_roi = opts[4].toggle("ROI", True, key="rv_roi", help="Final ROI, red fill")
    show_pred = opts[5].toggle("Model mask", False, key="rv_pred",
                               help="Model liver mask before ∩ confidence (dotted)")
    interactive = opts[6].toggle("Zoom", False, key="rv_zoom",
                                 help="Interactive figure: zoom and pan (slower to load in a new browser session)")
    labels = slice_labels(result)
    order = head_to_feet(result)
    if layout == SIDE_BY_SIDE:
        shown = order
    else:
        shown = [st.radio("Slice (1 = most superior; #instance number)", order, format_func=lambda i: labels[i],
                          horizontal=True, key=f"rv_slice|{skey}")]
    return ViewOptions(layout, opacity, show_conf, show_roi, show_pred, shown, labels, interactive,
                       has_magnitude and image == MAGNITUDE)


def slice_boxes(view: ViewOptions, n: int) -> tuple[Any, Any]:
    """Containers for each shown slice: ``(figure boxes, edit boxes)``, both indexed by slice."""
    if view.side_by_side:
        cols = st.columns(min(n, 3))
        boxes = [cols[i % len(cols)].container(border=True) for i in range(n)]
        return [b.container() for b in boxes], [b.expander("Edit ROI") for b in boxes]
    left, right = st.columns([3, 1])
    first = view.shown[0]
    return {first: left.container()}, {first: right.container(border=True)}


def slice_numbers_text(s: SliceResult) -> str:
    """The markdown line under a slice: mean, median, SD, IQR, ROI and confidence areas, exclusion."""
    st_ = s.stats
    return (f"**Mean {fmt(st_.mean_kpa, 'kPa')}** · median {fmt(st_.median_kpa)} · SD {fmt(st_.sd_kpa)} · "
            f"IQR {fmt(st_.iqr_kpa)} · ROI {fmt(st_.area_cm2, 'cm²', 1)} · "
            f"confidence {fmt(s.confidence_area_cm2, 'cm²', 1)}"
            + ("  \n:orange[**Excluded from the study value**]" if s.excluded else ""))


def _slice_numbers(s: SliceResult, box: DeltaGenerator) -> None:
    box.markdown(slice_numbers_text(s))
    for f in s.qc_flags:
        box.caption(f":warning: {f.explanation}")


def show_slices(reviewed: StudyResult, view: ViewOptions, skey: str, fig_boxes: Any, ctl_boxes: Any) -> None:
    """Each shown slice's overlay figure (``fig|<study>|<i>``) and its numbers."""
    elastograms = reviewed.study.series.slices
    for i in view.shown:
        s, e = reviewed.slices[i], elastograms[i]
        box = fig_boxes[i]
        if not view.side_by_side and roi_drawing.is_drawing(skey, e.sop_uid):
            roi_drawing.show_canvas(box, e, s, skey, view.opacity)
            _slice_numbers(s, ctl_boxes[i])
            continue
        if not view.interactive:
            show_slice_image(box, e, s, view.layers, 360 if view.side_by_side else 600,
                             view.labels[i] if view.side_by_side else "")
            _slice_numbers(s, box if view.side_by_side else ctl_boxes[i])
            continue
        fig = elastogram_figure(e, s, roi_opacity=view.opacity, show_confidence=view.show_confidence,
                                show_roi=view.show_roi, show_predicted=view.show_predicted,
                                height=300 if view.side_by_side else 460,
                                title=view.labels[i] if view.side_by_side else None)
        box.plotly_chart(fig, key=f"fig|{skey}|{i}", config={"displaylogo": False}, width="stretch")
        _slice_numbers(s, box if view.side_by_side else ctl_boxes[i])


def slice_rows(reviewed: StudyResult) -> list[dict[str, Any]]:
    """One row per slice for the *All slices* table (kPa, cm², whether used, QC flags)."""
    numbers = slice_numbers(reviewed.slices)
    return [{
        "slice": numbers[s.sop_uid], "instance": s.instance_number, "z (mm)": round(s.position_mm, 1),
        "used": "no" if not s.usable else "yes",
        "mean kPa": round(s.stats.mean_kpa, 2), "median kPa": round(s.stats.median_kpa, 2),
        "SD kPa": round(s.stats.sd_kpa, 2), "IQR kPa": round(s.stats.iqr_kpa, 2),
        "ROI cm²": round(s.stats.area_cm2, 1),
        "QC": ", ".join(f.value for f in s.qc_flags) or "ok"} for s in superior_to_inferior(reviewed.slices)]


def show_slice_table(box: DeltaGenerator, reviewed: StudyResult, view: ViewOptions) -> None:
    """The *All slices (table)* expander, open unless the slices are side by side."""
    with box.expander("All slices (table)", expanded=not view.side_by_side):
        st.table(table_text(pd.DataFrame(slice_rows(reviewed)), {"z (mm)": 1, "ROI cm²": 1}), hide_index=True)


__all__ = ["ONE_AT_A_TIME", "SIDE_BY_SIDE", "ViewOptions", "show_slice_table", "show_slices", "slice_boxes",
           "slice_labels", "slice_numbers_text", "slice_rows", "view_options"]
