"""Stiffness read-out: ROI statistics per slice, study value, QC flags.

All functions are pure numpy over an :class:`~mre_core.io.elastogram.Elastogram`'s
``kpa`` map (kPa, NaN where no stiffness value) and a boolean ROI. Pixels that are
NaN (cross-hatch lines, zero fill) can never enter a statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from mre_core.analysis.staging import FibrosisStage, StageResult, StagingTable, stage


class QcFlag(str, Enum):
    """Quality-control findings, each with the sentence shown to the reader."""

    NO_CONFIDENCE_REGION = "no_confidence_region"
    EMPTY_ROI = "empty_roi"
    SMALL_ROI = "small_roi"
    FEW_SLICES = "few_slices"
    HIGH_SLICE_SPREAD = "high_slice_spread"
    IMPLAUSIBLE_VALUES = "implausible_values"
    NO_USABLE_SLICE = "no_usable_slice"
    NO_CONFIDENCE_MARKING = "no_confidence_marking"
    FALLBACK_SERIES_RULE = "fallback_series_rule"
    AMBIGUOUS_SERIES = "ambiguous_series"
    FALLBACK_UNIT = "fallback_unit"
    SMALL_CONFIDENCE_REGION = "small_confidence_region"
    ROI_SCATTERED = "roi_scattered"
    ROI_UNCERTAIN = "roi_uncertain"
    ROI_OFF_LIVER_SIDE = "roi_off_liver_side"
    ROI_UNSTABLE = "roi_unstable"
    NO_MAGNITUDE_IMAGE = "no_magnitude_image"
    INPUT_UNLIKE_TRAINING = "input_unlike_training"

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self]


_EXPLANATIONS = {
    QcFlag.NO_CONFIDENCE_REGION: "The slice has no 95 % confidence region: shear waves too weak to trust any value.",
    QcFlag.EMPTY_ROI: "No liver ROI inside the confidence region: the slice is left out of the study value.",
    QcFlag.SMALL_ROI: "The ROI is smaller than the minimum area: the slice value rests on few pixels.",
    QcFlag.FEW_SLICES: "Fewer usable slices than recommended: the study value rests on few slices.",
    QcFlag.HIGH_SLICE_SPREAD: "Slice means disagree (high coefficient of variation): check for artefacts.",
    QcFlag.IMPLAUSIBLE_VALUES: "Median stiffness outside the plausible range: check the unit profile.",
    QcFlag.NO_USABLE_SLICE: "No slice gave a usable ROI: no stiffness or stage can be reported.",
    QcFlag.NO_CONFIDENCE_MARKING: "No confidence marking was found in the data: every non-zero pixel was treated as confident.",
    QcFlag.FALLBACK_SERIES_RULE: "No documented vendor rule recognised the elastogram series: it was chosen by keywords "
                                 "and pixel values. Check that the measured series is the gray stiffness map.",
    QcFlag.AMBIGUOUS_SERIES: "More than one series could be the elastogram: check that the right one was measured.",
    QcFlag.FALLBACK_UNIT: "The stored unit was guessed from the value range (no vendor rule, RWVM or known "
                          "manufacturer): check the unit profile.",
    QcFlag.SMALL_CONFIDENCE_REGION: "The 95 % confidence region covers under 5 % of the body section: the value "
                                    "rests on a small, possibly unrepresentative area.",
    QcFlag.ROI_SCATTERED: "Automatic ROI unreliable — draw or check it: the model's liver region falls apart into "
                          "several pieces; the slice is left out of the study value.",
    QcFlag.ROI_UNCERTAIN: "Automatic ROI unreliable — draw or check it: the model was unsure inside the ROI; the "
                          "slice is left out of the study value.",
    QcFlag.ROI_OFF_LIVER_SIDE: "Automatic ROI unreliable — draw or check it: the ROI lies on the patient's left (spleen/"
                               "stomach side), not where the liver usually is; the slice is left out of the study value.",
    QcFlag.ROI_UNSTABLE: "Automatic ROI unreliable — draw or check it: the ROI changed when the same slice was shown "
                         "slightly zoomed or shifted (the model did not find the liver firmly); the slice is left out "
                         "of the study value.",
    QcFlag.NO_MAGNITUDE_IMAGE: "The model reads the exam's magnitude image (the anatomy), but no magnitude image was "
                               "paired with some slices: their automatic ROI was found from the elastogram alone. "
                               "Check those ROIs (the series' magnitude rule says why none was paired).",
    QcFlag.INPUT_UNLIKE_TRAINING: "Input unlike the model's training data — check the automatic ROI: the exam's field "
                                  "of view, pixel size, stiffness or confidence coverage lies outside the range of "
                                  "the studies the model was trained on (the study's input notes say which).",
}

#: A study whose confidence region covers less than this share of the body section is flagged
#: (issue "real scanner exams": on a real GE/MMDI exam it covered 4-6 % of the image).
SMALL_CONFIDENCE_FRACTION = 0.05


@dataclass(frozen=True)
class RoiStats:
    """Statistics of the stiffness values inside one ROI (kPa, cm²)."""

    n_pixels: int
    area_cm2: float
    mean_kpa: float
    median_kpa: float
    sd_kpa: float
    p25_kpa: float
    p75_kpa: float

    @property
    def iqr_kpa(self) -> float:
        return self.p75_kpa - self.p25_kpa


def area_cm2(n_pixels: int, pixel_spacing_mm: tuple[float, float]) -> float:
    """Area of ``n_pixels`` pixels in cm² (1 cm² = 100 mm²).

    >>> area_cm2(64, (1.25, 1.25))
    1.0
    """
    return float(n_pixels) * pixel_spacing_mm[0] * pixel_spacing_mm[1] / 100.0


def roi_stats(kpa: np.ndarray, roi: np.ndarray, pixel_spacing_mm: tuple[float, float]) -> RoiStats:
    """Statistics of ``kpa`` (float [H,W], kPa) inside ``roi`` (bool [H,W]).

    NaN pixels inside the ROI are excluded (they hold no stiffness value). An empty ROI
    gives ``n_pixels == 0`` and NaN statistics.
    """
    if kpa.shape != roi.shape:
        raise ValueError(f"kpa {kpa.shape} and roi {roi.shape} differ in shape")
    values = kpa[roi & np.isfinite(kpa)].astype(np.float64)
    n = int(values.size)
    if n == 0:
        nan = float("nan")
        return RoiStats(0, 0.0, nan, nan, nan, nan, nan)
    p25, med, p75 = np.percentile(values, [25, 50, 75])
    return RoiStats(
        n_pixels=n,
        area_cm2=area_cm2(n, pixel_spacing_mm),
        mean_kpa=float(values.mean()),
        median_kpa=float(med),
        sd_kpa=float(values.std(ddof=1)) if n > 1 else 0.0,
        p25_kpa=float(p25),
        p75_kpa=float(p75),
    )


@dataclass(frozen=True, eq=False)
class SliceResult:
    """One slice: its ROI, statistics and QC flags."""

    sop_uid: str
    instance_number: int
    position_mm: float
    roi: np.ndarray  #: bool [H,W], final ROI = predicted liver ∩ confidence, cleaned
    predicted_mask: np.ndarray  #: bool [H,W], model output on the native grid, before ∩ confidence
    stats: RoiStats
    confidence_area_cm2: float
    qc_flags: tuple[QcFlag, ...] = ()
    excluded: bool = False  #: True when left out of the study value (empty ROI or reviewer's choice)

    @property
    def usable(self) -> bool:
        return not self.excluded and self.stats.n_pixels > 0


@dataclass(frozen=True)
class StudyStiffness:
    """The study's stiffness: mean of slice means (primary, as the paper) and area-weighted mean."""

    stiffness_kpa: float
    stiffness_kpa_area_weighted: float
    n_slices_used: int
    slice_cv: float
    qc_flags: tuple[QcFlag, ...] = field(default=())


def study_stiffness(
    slices: list[SliceResult] | tuple[SliceResult, ...],
    min_slices: int,
    max_slice_cv: float,
    plausible_kpa: tuple[float, float],
) -> StudyStiffness:
    """Combine usable slices into the study value and study-level QC flags."""
    used = [s for s in slices if s.usable]
    flags: list[QcFlag] = []
    if not used:
        nan = float("nan")
        return StudyStiffness(nan, nan, 0, nan, (QcFlag.NO_USABLE_SLICE,))
    means = np.array([s.stats.mean_kpa for s in used])
    weights = np.array([s.stats.n_pixels for s in used], dtype=np.float64)
    primary = float(means.mean())
    weighted = float((means * weights).sum() / weights.sum())
    cv = float(means.std(ddof=1) / primary) if len(used) > 1 and primary > 0 else 0.0
    if len(used) < min_slices:
        flags.append(QcFlag.FEW_SLICES)
    if cv > max_slice_cv:
        flags.append(QcFlag.HIGH_SLICE_SPREAD)
    medians = np.array([s.stats.median_kpa for s in used])
    if not plausible_kpa[0] <= float(np.median(medians)) <= plausible_kpa[1]:
        flags.append(QcFlag.IMPLAUSIBLE_VALUES)
    return StudyStiffness(primary, weighted, len(used), cv, tuple(flags))


def stage_or_none(stiffness_kpa: float, table: StagingTable) -> StageResult | None:
    """Stage a study value, or ``None`` when there is no value to stage."""
    if not math.isfinite(stiffness_kpa):
        return None
    return stage(stiffness_kpa, table)


__all__ = [
    "FibrosisStage",
    "QcFlag",
    "RoiStats",
    "SliceResult",
    "StudyStiffness",
    "area_cm2",
    "roi_stats",
    "stage_or_none",
    "study_stiffness",
]
