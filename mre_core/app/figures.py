"""Plotly figures of the app: elastogram overlays and cohort agreement plots.

Figures only (no Streamlit): each function takes arrays or tables and returns a
``plotly.graph_objects.Figure``, so the pages stay thin and the figures can be tested.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mre_core.analysis.staging import FibrosisStage, StagingTable
from mre_core.analysis.stiffness import SliceResult
from mre_core.io.elastogram import Elastogram
from mre_core.stats.agreement import BlandAltman

WINDOW_KPA = (0.0, 8.0)
ROI_COLOR = "rgb(230,40,40)"
CONF_COLOR = "rgb(255,210,0)"
PRED_COLOR = "rgb(0,200,255)"


def _mask_outline(mask: np.ndarray, name: str, color: str, dash: str = "solid") -> go.Contour:
    return go.Contour(
        z=np.asarray(mask, dtype=np.uint8), showscale=False, hoverinfo="skip", name=name, showlegend=True,
        contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "none"}, line={"color": color, "width": 2, "dash": dash},
    )


def elastogram_figure(e: Elastogram, s: SliceResult, *, roi_opacity: float = 0.4, show_confidence: bool = True,
                      show_roi: bool = True, show_predicted: bool = False, height: int = 420,
                      title: str | None = None) -> go.Figure:
    """One slice: gray elastogram (kPa, window 0–8), confidence outline, ROI fill, model mask outline.

    Hovering shows row, column and the kPa under the cursor (blank where the pixel has no value).
    """
    kpa = e.kpa.astype(np.float32)
    fig = go.Figure(go.Heatmap(
        z=kpa, zmin=WINDOW_KPA[0], zmax=WINDOW_KPA[1], colorscale="gray", name="elastogram",
        colorbar={"title": {"text": "kPa"}, "thickness": 12, "len": 0.8},
        hovertemplate="row %{y}, col %{x}<br><b>%{z:.2f} kPa</b><extra></extra>",
    ))
    if show_roi and s.roi.any():
        # uint8 0/1 with a transparent 0 (a float image with NaN holes is 4x the bytes sent to the browser)
        fig.add_trace(go.Heatmap(
            z=np.asarray(s.roi, dtype=np.uint8), zmin=0, zmax=1, colorscale=[[0, "rgba(0,0,0,0)"], [0.5, "rgba(0,0,0,0)"],
                                                                            [0.5, ROI_COLOR], [1, ROI_COLOR]],
            showscale=False, opacity=roi_opacity, hoverinfo="skip", name="ROI", showlegend=True,
        ))
    if show_confidence and e.confidence.any():
        fig.add_trace(_mask_outline(e.confidence, "95 % confidence region", CONF_COLOR))
    if show_predicted and s.predicted_mask.any():
        fig.add_trace(_mask_outline(s.predicted_mask, "model liver mask", PRED_COLOR, "dot"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", scaleratio=1, showticklabels=False, showgrid=False,
                     zeroline=False)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30 if title else 4, "b": 0}, title=title,
                      legend={"orientation": "h", "yanchor": "bottom", "y": -0.12, "x": 0}, plot_bgcolor="black")
    return fig


def scatter_figure(paired: pd.DataFrame, slope: float, intercept: float) -> go.Figure:
    """Automatic vs manual stiffness with the identity line and the least-squares line."""
    x, y = paired["manual_kpa"].to_numpy(float), paired["stiffness_kpa"].to_numpy(float)
    hi = float(np.nanmax(np.r_[x, y, 1.0])) * 1.08
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name="study", customdata=paired[["patient_id"]],
                             hovertemplate="%{customdata[0]}<br>manual %{x:.2f} kPa<br>auto %{y:.2f} kPa"
                                           "<extra></extra>", marker={"size": 8, "opacity": 0.8}))
    fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", name="identity", line={"dash": "dash",
                                                                                            "color": "gray"}))
    if np.isfinite(slope):
        fig.add_trace(go.Scatter(x=[0, hi], y=[intercept, intercept + slope * hi], mode="lines",
                                 name=f"regression y = {slope:.2f}x {intercept:+.2f}", line={"color": "crimson"}))
    fig.update_layout(xaxis_title="manual stiffness (kPa)", yaxis_title="automatic stiffness (kPa)", height=420,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"x": 0.01, "y": 0.99})
    fig.update_xaxes(range=[0, hi])
    fig.update_yaxes(range=[0, hi])
    return fig


def bland_altman_figure(paired: pd.DataFrame, ba: BlandAltman) -> go.Figure:
    """Difference (auto − manual) against the mean of the two, with bias and 95 % limits of agreement."""
    a, m = paired["stiffness_kpa"].to_numpy(float), paired["manual_kpa"].to_numpy(float)
    fig = go.Figure(go.Scatter(x=(a + m) / 2, y=a - m, mode="markers", name="study", marker={"size": 8, "opacity": 0.8},
                               customdata=paired[["patient_id"]],
                               hovertemplate="%{customdata[0]}<br>mean %{x:.2f} kPa<br>diff %{y:+.2f} kPa"
                                             "<extra></extra>"))
    for y, label, dash in ((ba.bias, f"bias {ba.bias:+.2f}", "solid"), (ba.loa_low, f"−1.96 SD {ba.loa_low:+.2f}", "dash"),
                           (ba.loa_high, f"+1.96 SD {ba.loa_high:+.2f}", "dash")):
        if np.isfinite(y):
            fig.add_hline(y=y, line_dash=dash, line_color="crimson" if dash == "solid" else "gray",
                          annotation_text=label, annotation_position="top left")
    fig.update_layout(xaxis_title="mean of automatic and manual (kPa)", yaxis_title="automatic − manual (kPa)",
                      height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False)
    return fig


def confusion_figure(matrix: np.ndarray) -> go.Figure:
    """Stage confusion matrix: rows = manual (reference), columns = automatic."""
    labels = [s.label for s in FibrosisStage]
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues", showscale=False, text=matrix,
                               texttemplate="%{text}", hovertemplate="manual %{y}, automatic %{x}: %{z}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="manual stage")
    fig.update_xaxes(title="automatic stage", side="top")
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def stage_box_figure(paired: pd.DataFrame, table: StagingTable, value_label: str = "automatic") -> go.Figure:
    """The compared stiffness by manual stage (box + points), with the table's cut-offs as lines; the cut-off
    labels alternate left and right so that close cut-offs (F1 2.5, F2 2.8 kPa) do not overlap."""
    fig = go.Figure()
    for label in (s.label for s in FibrosisStage):
        g = paired[paired["manual_stage"] == label]
        if not g.empty:
            fig.add_trace(go.Box(y=g["stiffness_kpa"], name=label, boxpoints="all", jitter=0.4, pointpos=0))
    for i, c in enumerate(sorted(table.cutoffs, key=lambda c: c.lower_kpa)):
        fig.add_hline(y=c.lower_kpa, line_dash="dot", line_color="gray", annotation_text=f"{c.stage.label} ≥ {c.lower_kpa:g}",
                      annotation_position="top left" if i % 2 == 0 else "bottom right", annotation_font_size=10)
    fig.update_layout(xaxis_title="manual stage", yaxis_title=f"{value_label} stiffness (kPa)", height=380,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False)
    return fig


def dice_figure(overlap: pd.DataFrame) -> go.Figure:
    """Dice between the automatic and the reader's ROI, one point per counted slice, by reviewer."""
    used = overlap[overlap["counted"]]
    fig = go.Figure()
    for who, g in used.groupby(used["reviewer"].replace("", "(no name)"), sort=True):
        fig.add_trace(go.Box(y=g["dice"], name=str(who), boxpoints="all", jitter=0.4, pointpos=0,
                             text=g["patient_id"], hovertemplate="%{text}: Dice %{y:.3f}<extra></extra>"))
    fig.update_layout(yaxis_title="Dice, automatic vs reader ROI", yaxis_range=[0, 1.02], xaxis_title="reader",
                      height=320, margin={"l": 10, "r": 10, "t": 20, "b": 10}, showlegend=False)
    return fig


__all__ = ["bland_altman_figure", "confusion_figure", "dice_figure", "elastogram_figure", "scatter_figure",
           "stage_box_figure"]
