"""The Model page's reading of a weights card: intended use, training data and limitations in words, metrics as
a table (pure functions over the weights JSON, so the page only lays them out).

A card written by :mod:`mre_core.model.card` may carry ``limitations`` (a list of sentences); older cards do
not, and then the limitations every shipped model so far shares are said here (training on synthetic phantoms
only; unknown performance on real scanner data; vendor unit conventions as working assumptions).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

#: Said for every card that does not list its own limitations (true of every model trained so far).
DEFAULT_LIMITATIONS = (
    "Trained on synthetic phantoms only; no real patient exam was used for training or testing.",
    "Performance on real scanner data is unknown until a site measures it on its own exams.",
    "Vendor unit conventions (e.g. Siemens stored value = kPa × 100) are working assumptions, shown with every "
    "result.",
    "Every automatic ROI is a proposal: a qualified reader must check it on every slice before signing off.",
)

#: Metric keys of ``card.test_metrics`` → the words shown.
METRIC_NAMES = {
    "dice": "Dice (slice mean)", "iou": "IoU (slice mean)", "pearson_r": "Pearson r (stiffness)",
    "icc_a1": "ICC(A,1) (stiffness)", "kappa_linear": "Linear-weighted kappa (stages)",
    "mae_kpa": "Mean absolute error (kPa)", "bland_altman": "Bland–Altman",
    "roi_outside_liver": "ROI outside the liver (mean share)",
}


def limitations(card: dict[str, Any]) -> list[str]:
    """The card's own limitations, else :data:`DEFAULT_LIMITATIONS`."""
    own = card.get("limitations")
    return [str(x) for x in own] if isinstance(own, list) and own else list(DEFAULT_LIMITATIONS)


def _num(x: Any, digits: int = 3) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return round(v, digits) if math.isfinite(v) else math.nan


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """``card.test_metrics`` (or one block of ``card.generalisation``) as rows: metric, value, 95 % CI low/high.

    >>> metrics_table({"dice": {"mean": 0.8923, "ci_low": 0.87, "ci_high": 0.9}, "mae_kpa": 0.0612})["value"].tolist()
    [0.892, 0.061]
    """
    rows = []
    for key, value in metrics.items():
        name = METRIC_NAMES.get(key)
        if name is None:
            continue
        if key == "bland_altman" and isinstance(value, dict):
            rows.append({"metric": "Bland–Altman bias (kPa)", "value": _num(value.get("bias")),
                         "ci_low": _num(value.get("loa_low")), "ci_high": _num(value.get("loa_high")),
                         "note": "limits of agreement in the CI columns"})
            continue
        if isinstance(value, dict):
            main = value.get("mean", value.get("value", value.get("r")))
            rows.append({"metric": name, "value": _num(main), "ci_low": _num(value.get("ci_low")),
                         "ci_high": _num(value.get("ci_high")), "note": ""})
        else:
            rows.append({"metric": name, "value": _num(value), "ci_low": math.nan, "ci_high": math.nan, "note": ""})
    return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high", "note"])


def provenance(metrics: dict[str, Any]) -> str:
    """Where the numbers come from (command, patients, slices, model version)."""
    parts = [str(metrics.get("source", "source not recorded"))]
    if "n_patients" in metrics:
        parts.append(f"{metrics['n_patients']} patients / {metrics.get('n_slices', '?')} slices")
    if "model" in metrics:
        parts.append(f"model {metrics['model']}")
    return " · ".join(parts)


__all__ = ["DEFAULT_LIMITATIONS", "METRIC_NAMES", "limitations", "metrics_table", "provenance"]
