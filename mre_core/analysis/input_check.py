"""Is this exam like the data the model was trained on? Input descriptors and the training ranges.

Issue "A segmentation that finds the liver on data it was not trained on", guardrail 4: an input that lies
outside the training distribution gets a QC flag (``QcFlag.INPUT_UNLIKE_TRAINING``). A network gives no sign of
being outside what it learned; the exam's own numbers do. Each study is described by a few numbers a reader
can check (:func:`describe`): the field of view and pixel size (the anatomy's scale on the model grid), the
share of the image holding a stiffness value and of that inside the 95 % confidence region (the vendor's
encoding and the wave's reach), and the stiffness inside the confidence region (median and 95th percentile,
kPa). The model's weights card records the range of each over its training studies (:func:`training_ranges`,
written by ``python -m mre_core input-ranges``); a study with any descriptor outside that range is flagged, with
the descriptor named (:func:`unlike_training`). The rule is the plain one, no tuned slack: outside the
smallest and largest value seen in training. Its flag rate on cohorts never trained on is in
docs/GENERALISATION.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from mre_core.io.elastogram import StudyInput

#: The descriptors, their unit and how the reader sees them named.
DESCRIPTORS: dict[str, tuple[str, str]] = {
    "field_of_view_mm": ("mm", "field of view"),
    "pixel_spacing_mm": ("mm", "pixel size"),
    "stiffness_coverage": ("", "share of the image holding a stiffness value"),
    "confidence_coverage": ("", "share of that inside the 95 % confidence region"),
    "median_kpa": ("kPa", "median stiffness in the confidence region"),
    "p95_kpa": ("kPa", "95th percentile of stiffness in the confidence region"),
}


@dataclass(frozen=True)
class InputRange:
    """The smallest and largest value of one descriptor over the training studies."""

    low: float
    high: float


def describe(study: StudyInput) -> dict[str, float]:
    """The :data:`DESCRIPTORS` of one study (pooled over its analysed slices); NaN where undefined
    (no slice, no confidence region)."""
    slices = study.series.slices
    out = dict.fromkeys(DESCRIPTORS, float("nan"))
    if not slices:
        return out
    out["field_of_view_mm"] = max(max(e.shape[0] * e.pixel_spacing_mm[0], e.shape[1] * e.pixel_spacing_mm[1])
                                  for e in slices)
    out["pixel_spacing_mm"] = float(np.mean([(e.pixel_spacing_mm[0] + e.pixel_spacing_mm[1]) / 2 for e in slices]))
    pixels = sum(e.kpa.size for e in slices)
    known = sum(int(np.isfinite(e.kpa).sum()) for e in slices)
    confident = np.concatenate([e.kpa[e.confidence & np.isfinite(e.kpa)] for e in slices])
    out["stiffness_coverage"] = known / pixels if pixels else float("nan")
    out["confidence_coverage"] = confident.size / known if known else float("nan")
    if confident.size:
        out["median_kpa"] = float(np.median(confident))
        out["p95_kpa"] = float(np.percentile(confident, 95))
    return {k: float(v) for k, v in out.items()}


def training_ranges(descriptors: Iterable[Mapping[str, float]]) -> dict[str, InputRange]:
    """Per descriptor, the smallest and largest finite value over the training studies' descriptors."""
    rows = list(descriptors)
    out = {}
    for name in DESCRIPTORS:
        values = np.array([r[name] for r in rows if name in r and np.isfinite(r[name])], dtype=float)
        if values.size:
            out[name] = InputRange(float(values.min()), float(values.max()))
    return out


def ranges_to_json(ranges: Mapping[str, InputRange], source: str, n_studies: int) -> dict:
    """The weights card's ``input_ranges`` entry."""
    return {"source": source, "n_studies": int(n_studies), "rule": "flag a study outside [min, max] of training",
            "ranges": {k: [r.low, r.high] for k, r in ranges.items()}}


def ranges_from_card(card: Mapping) -> dict[str, InputRange]:
    """The ranges of a weights card (``{}`` when the card has none: then nothing is checked)."""
    doc = card.get("input_ranges") or {}
    return {k: InputRange(float(v[0]), float(v[1])) for k, v in (doc.get("ranges") or {}).items()
            if k in DESCRIPTORS}


def _number(name: str, value: float) -> str:
    """The value as the reader reads it: a share in per cent, else in its unit, two decimals."""
    return f"{100 * value:.2f}" if not DESCRIPTORS[name][0] else f"{value:.2f}"


def _unit(name: str) -> str:
    return DESCRIPTORS[name][0] or "%"


def unlike_training(descriptors: Mapping[str, float], ranges: Mapping[str, InputRange]) -> tuple[str, ...]:
    """One sentence per descriptor outside its training range (empty: like the training data, or no ranges).

    >>> unlike_training({"field_of_view_mm": 520.0}, {"field_of_view_mm": InputRange(300.0, 480.0)})
    ('field of view 520.00 mm, outside the 300.00–480.00 mm of the training data',)
    """
    out = []
    for name, r in ranges.items():
        v = descriptors.get(name, float("nan"))
        if np.isfinite(v) and not r.low <= v <= r.high:
            out.append(f"{DESCRIPTORS[name][1]} {_number(name, v)} {_unit(name)}, outside the "
                       f"{_number(name, r.low)}–{_number(name, r.high)} {_unit(name)} of the training data")
    return tuple(out)
