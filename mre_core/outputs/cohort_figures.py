"""Publication figures of the cohort agreement as SVG or PDF (matplotlib, vector output).

The page shows interactive plotly figures; a paper needs vector files. :func:`figure_bytes` draws the same four
views from the same numbers — scatter with identity and least-squares lines, Bland–Altman with the bias, the
limits of agreement and their 95 % CIs, the stage confusion matrix, and the value by manual stage — and returns
the file's bytes. Inputs are the cohort page's ``paired`` table (columns ``stiffness_kpa`` = the compared
value, ``manual_kpa``, ``manual_stage``) and an :class:`~mre_core.stats.agreement.AgreementReport`.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from mre_core.stats.agreement import AgreementReport

FIGURES = {"scatter": "Scatter (value vs manual)", "bland_altman": "Bland–Altman", "confusion": "Stage confusion",
           "by_stage": "Value by manual stage"}
FORMATS = ("svg", "pdf")
STAGE_LABELS = ("F0", "F1", "F2", "F3", "F4")


def _scatter(ax, paired: pd.DataFrame, rep: AgreementReport, value_label: str) -> None:
    x, y = paired["manual_kpa"].to_numpy(float), paired["stiffness_kpa"].to_numpy(float)
    ax.scatter(x, y, s=14, color="#1f77b4", alpha=0.8, linewidths=0)
    lo, hi = float(min(x.min(), y.min())) * 0.95, float(max(x.max(), y.max())) * 1.05
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="identity")
    if np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        ax.plot([lo, hi], [intercept + slope * lo, intercept + slope * hi], color="#d62728", lw=1,
                label=f"fit y = {slope:.2f}x {intercept:+.2f}")
    p = rep.pearson
    ax.set_title(f"r = {p.r:.3f} (95% CI {p.ci_low:.3f}–{p.ci_high:.3f}), n = {p.n}", fontsize=9)
    ax.set_xlabel("manual stiffness (kPa)")
    ax.set_ylabel(f"{value_label} stiffness (kPa)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.legend(fontsize=7, frameon=False)


def _bland_altman(ax, paired: pd.DataFrame, rep: AgreementReport, value_label: str) -> None:
    a, m = paired["stiffness_kpa"].to_numpy(float), paired["manual_kpa"].to_numpy(float)
    ba = rep.bland_altman
    ax.scatter((a + m) / 2, a - m, s=14, color="#1f77b4", alpha=0.8, linewidths=0)
    for level, ci, name in ((ba.bias, (ba.bias_ci_low, ba.bias_ci_high), "bias"),
                            (ba.loa_low, ba.loa_low_ci, "lower LoA"), (ba.loa_high, ba.loa_high_ci, "upper LoA")):
        if math.isfinite(level):
            ax.axhline(level, color="#d62728" if name == "bias" else "grey", lw=1, ls="-" if name == "bias" else "--")
            if all(math.isfinite(c) for c in ci):
                ax.axhspan(ci[0], ci[1], color="grey", alpha=0.15, lw=0)
            ax.annotate(f"{name} {level:+.2f}", xy=(1.0, level), xycoords=("axes fraction", "data"), fontsize=7,
                        ha="right", va="bottom")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title(f"{value_label} − manual; shaded: 95% CIs (Bland & Altman 1999)", fontsize=9)
    ax.set_xlabel("mean of the two (kPa)")
    ax.set_ylabel("difference (kPa)")


def _confusion(ax, rep: AgreementReport) -> None:
    cm = np.asarray(rep.confusion)
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(5), STAGE_LABELS)
    ax.set_yticks(range(5), STAGE_LABELS)
    ax.set_xlabel("automatic stage")
    ax.set_ylabel("manual stage (reference)")
    lo, hi = rep.kappa_ci
    ax.set_title(f"linear-weighted kappa {rep.kappa_linear:.3f} (95% CI {lo:.3f}–{hi:.3f})", fontsize=9)


def _by_stage(ax, paired: pd.DataFrame, value_label: str) -> None:
    groups = [paired.loc[paired["manual_stage"] == s, "stiffness_kpa"].to_numpy(float) for s in STAGE_LABELS]
    keep = [i for i, g in enumerate(groups) if len(g)]
    ax.boxplot([groups[i] for i in keep], positions=keep, widths=0.5)
    ax.set_xticks(range(5), [f"{s}\n(n={len(g)})" for s, g in zip(STAGE_LABELS, groups)], fontsize=8)
    ax.set_xlim(-0.6, 4.6)
    ax.set_xlabel("manual stage")
    ax.set_ylabel(f"{value_label} stiffness (kPa)")


def figure_bytes(kind: str, paired: pd.DataFrame, rep: AgreementReport, fmt: str = "svg",
                 value_label: str = "automatic") -> bytes:
    """One figure (:data:`FIGURES`) as ``svg`` or ``pdf`` bytes; ``ValueError`` for an unknown kind or format."""
    if kind not in FIGURES:
        raise ValueError(f"unknown figure {kind!r}; choose one of {list(FIGURES)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose svg or pdf")
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays editable text in the SVG
        return _draw(kind, paired, rep, fmt, value_label, Figure)


def _draw(kind: str, paired: pd.DataFrame, rep: AgreementReport, fmt: str, value_label: str, Figure) -> bytes:
    fig = Figure(figsize=(4.6, 4.0), layout="constrained")
    ax = fig.add_subplot()
    if kind == "scatter":
        _scatter(ax, paired, rep, value_label)
    elif kind == "bland_altman":
        _bland_altman(ax, paired, rep, value_label)
    elif kind == "confusion":
        _confusion(ax, rep)
    else:
        _by_stage(ax, paired, value_label)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, metadata={"Creator": "MRE Liver Review"} if fmt == "pdf" else None)
    return buffer.getvalue()


__all__ = ["FIGURES", "FORMATS", "figure_bytes"]
