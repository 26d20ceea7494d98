"""``analyze_study``: the one chain every front door calls.

read (dicom_io) → preprocess → model → post-process (segment) → stiffness → staging.

A model with a liver output (``ModelConfig.outputs == ("roi", "liver")``) keeps each slice's ROI inside its
predicted liver region (:func:`slice_liver_region`) before the guardrails run; a single-output model takes
exactly the path it always did. With ``Settings.roi_stability`` the network then sees four slightly zoomed or
shifted copies of the study, and a slice whose ROI does not survive them is left out (:func:`with_stability`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from mre_core.analysis.guardrails import liver_region, main_region, margin_px, restricted_probability, roi_warnings
from mre_core.analysis.input_check import describe, ranges_from_card, unlike_training
from mre_core.analysis.preprocess import model_input, to_native_grid, uses_magnitude
from mre_core.analysis.segment import final_roi, min_area_px, run_network_maps
from mre_core.analysis.stability import PERTURBATIONS, perturbed_batch, restored_map, stability, unstable
from mre_core.analysis.staging import StageResult
from mre_core.analysis.stiffness import (
    SMALL_CONFIDENCE_FRACTION,
    QcFlag,
    SliceResult,
    StudyStiffness,
    area_cm2,
    roi_stats,
    stage_or_none,
    study_stiffness,
)
from mre_core.config import Settings
from mre_core.io.elastogram import ConfidenceEncoding, Elastogram, StudyInput
from mre_core.model.network import LoadedModel


@dataclass(frozen=True, eq=False)
class StudyResult:
    """Everything known about one analysed study.

    ``stiffness.stiffness_kpa`` is the primary value (mean of slice means, as the paper);
    ``stage`` is ``None`` when no slice gave a usable ROI.
    """

    study: StudyInput
    slices: tuple[SliceResult, ...]
    stiffness: StudyStiffness
    stage: StageResult | None
    model_name: str
    model_sha256: str
    device: str
    settings: Settings
    timings_s: dict[str, float] = field(default_factory=dict)  #: per stage: preprocess, model, post, stiffness
    #: why the exam is unlike the model's training data (``QcFlag.INPUT_UNLIKE_TRAINING``), one sentence each
    input_notes: tuple[str, ...] = ()

    @property
    def patient_id(self) -> str:
        return self.study.patient_id

    @property
    def study_uid(self) -> str:
        return self.study.study_uid

    @property
    def series_uid(self) -> str:
        return self.study.series.series_uid

    @property
    def stiffness_kpa(self) -> float:
        return self.stiffness.stiffness_kpa

    @property
    def qc_flags(self) -> tuple[QcFlag, ...]:
        """Study flags, then every slice flag once, in order of first appearance."""
        seen: dict[QcFlag, None] = dict.fromkeys(self.stiffness.qc_flags)
        for s in self.slices:
            seen.update(dict.fromkeys(s.qc_flags))
        return tuple(seen)

    @property
    def runtime_s(self) -> float:
        return float(sum(self.timings_s.values()))


def finish_study(
    study: StudyInput,
    slices: list[SliceResult],
    settings: Settings,
    model_name: str,
    model_sha256: str,
    device: str,
    timings_s: dict[str, float],
) -> StudyResult:
    """Combine per-slice results into a :class:`StudyResult` (study value, stage, flags)."""
    t0 = time.perf_counter()
    stiff = study_stiffness(slices, settings.min_slices, settings.max_slice_cv, settings.plausible_kpa)
    staged = stage_or_none(stiff.stiffness_kpa, settings.staging)
    timings = dict(timings_s)
    timings["stiffness"] = timings.get("stiffness", 0.0) + time.perf_counter() - t0
    return StudyResult(study, tuple(slices), stiff, staged, model_name, model_sha256, device, settings, timings)


def slice_result(e: Elastogram, probability: np.ndarray, threshold: float, settings: Settings) -> SliceResult:
    """Threshold one slice's probability map, keep one liver region ∩ confidence, measure, flag.

    The guardrails of :mod:`mre_core.analysis.guardrails` leave a slice whose automatic ROI is
    scattered, uncertain or off the liver's side out of the study value (with a QC flag).
    """
    predicted = probability > threshold
    min_px = min_area_px(settings.min_component_area_mm2, e.pixel_spacing_mm)
    if not settings.roi_guardrails:
        return measure_slice(e, final_roi(predicted, e.confidence, e.kpa, min_px), predicted, settings)
    roi = main_region(predicted, e.confidence, e.kpa, min_px)
    warnings = roi_warnings(roi, predicted, probability, e.confidence, e.kpa, min_px)
    result = measure_slice(e, roi, predicted, settings, excluded=bool(warnings))
    return replace(result, qc_flags=(*result.qc_flags, *warnings)) if warnings else result


def measure_slice(e: Elastogram, roi: np.ndarray, predicted: np.ndarray, settings: Settings,
                  excluded: bool = False) -> SliceResult:
    """ROI statistics and slice QC flags (also used after a reviewer edits an ROI)."""
    stats = roi_stats(e.kpa, roi, e.pixel_spacing_mm)
    flags: list[QcFlag] = []
    if not e.confidence.any():
        flags.append(QcFlag.NO_CONFIDENCE_REGION)
    if stats.n_pixels == 0:
        flags.append(QcFlag.EMPTY_ROI)
    elif stats.area_cm2 < settings.min_roi_area_cm2:
        flags.append(QcFlag.SMALL_ROI)
    return SliceResult(
        sop_uid=e.sop_uid,
        instance_number=e.instance_number,
        position_mm=e.position_mm,
        roi=roi,
        predicted_mask=predicted,
        stats=stats,
        confidence_area_cm2=area_cm2(int(e.confidence.sum()), e.pixel_spacing_mm),
        qc_flags=tuple(flags),
        excluded=excluded or stats.n_pixels == 0,
    )


def slice_liver_region(e: Elastogram, liver_probability: np.ndarray, settings: Settings) -> np.ndarray:
    """bool [H,W]: where the ROI of slice ``e`` may lie: the largest predicted liver piece (pieces under
    ``settings.min_component_area_mm2`` do not count), eroded by ``settings.liver_margin_mm``."""
    return liver_region(liver_probability, min_area_px(settings.min_component_area_mm2, e.pixel_spacing_mm),
                        margin_px(settings.liver_margin_mm, e.pixel_spacing_mm))


def roi_probability(maps: dict[str, np.ndarray]) -> np.ndarray:
    """The ROI probability the slice is thresholded on: the network's, 0 outside ``maps["liver_region"]``
    when the model has a liver output (so a reviewer's re-thresholding stays inside the liver)."""
    if "liver_region" not in maps:
        return maps["roi"]
    return restricted_probability(maps["roi"], maps["liver_region"])


def analyze_study_keeping_maps(study: StudyInput, model: LoadedModel, settings: Settings
                               ) -> tuple[StudyResult, tuple[dict[str, np.ndarray], ...], float]:
    """:func:`analyze_study`, also returning each slice's maps on the native grid and the threshold applied.

    Per slice: ``"roi"`` (the network's ROI probability, float32 [H, W]) and, for a model with a liver
    output, ``"liver"`` (its liver probability) and ``"liver_region"`` (bool, the region the ROI was kept to).
    The network runs once for all outputs, and once more per perturbation of the stability check
    (:func:`with_stability`, ``Settings.roi_stability``) when a slice has a usable ROI.
    """
    slices = study.series.slices
    timings: dict[str, float] = {}
    t = time.perf_counter()
    batch = model_input(slices, model.config.input)
    timings["preprocess"] = time.perf_counter() - t
    t = time.perf_counter()
    maps = run_network_maps(model, batch, settings.inference_batch)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    timings["model"] = time.perf_counter() - t
    t = time.perf_counter()
    native = tuple(slice_maps(e, {name: m[i] for name, m in maps.items()}, settings) for i, e in enumerate(slices))
    threshold = settings.mask_threshold if settings.mask_threshold is not None else model.config.threshold
    results = [slice_result(e, roi_probability(m), threshold, settings) for e, m in zip(slices, native)]
    timings["post"] = time.perf_counter() - t
    if settings.roi_guardrails and settings.roi_stability and any(r.usable for r in results):
        t = time.perf_counter()
        results = with_stability(results, slices, batch, model, threshold, settings)
        timings["stability"] = time.perf_counter() - t
    result = finish_study(study, results, settings, model.config.name, model.sha256, str(model.device), timings)
    return with_input_check(with_magnitude_flag(with_marking_flag(result), model), model), native, float(threshold)


def slice_maps(e: Elastogram, maps: dict[str, np.ndarray], settings: Settings) -> dict[str, np.ndarray]:
    """One slice's model-grid output maps on its native grid, with its liver region when the model has a liver
    output and the guardrails are on (what :func:`roi_probability` needs)."""
    native = {name: to_native_grid(m, e.shape).astype(np.float32) for name, m in maps.items()}
    if "liver" in native and settings.roi_guardrails:  # guardrails off: the network's own ROI, as for any model
        native["liver_region"] = slice_liver_region(e, native["liver"], settings)
    return native


def with_stability(results: list[SliceResult], slices: tuple[Elastogram, ...], batch: np.ndarray,
                   model: LoadedModel, threshold: float, settings: Settings) -> list[SliceResult]:
    """Run the network on each of :data:`~mre_core.analysis.stability.PERTURBATIONS` of the usable slices of
    ``batch`` (all copies in one batch, in chunks of ``settings.inference_batch``), find each slice's ROI on it
    the same way, and flag ``ROI_UNSTABLE`` (left
    out of the study value) on a usable slice whose ROI does not survive them (:mod:`mre_core.analysis.stability`).
    Slices already left out (empty, or another guardrail) are not run again."""
    usable = [i for i, r in enumerate(results) if r.usable]  # only slices whose ROI counts are checked
    copies = np.concatenate([perturbed_batch(batch[usable], p) for p in PERTURBATIONS])  # one batch, chunked
    maps = run_network_maps(model, copies, settings.inference_batch)
    perturbed: dict[int, list[np.ndarray]] = {i: [] for i in usable}
    for k, p in enumerate(PERTURBATIONS):
        for j, i in enumerate(usable):
            at = k * len(usable) + j
            m = slice_maps(slices[i], {name: restored_map(v[at], p) for name, v in maps.items()}, settings)
            perturbed[i].append(slice_result(slices[i], roi_probability(m), threshold, settings).roi)
    return [replace(r, qc_flags=(*r.qc_flags, QcFlag.ROI_UNSTABLE), excluded=True)
            if i in perturbed and unstable(stability(r.roi, perturbed[i])) else r for i, r in enumerate(results)]


def analyze_study_keeping_probabilities(study: StudyInput, model: LoadedModel, settings: Settings
                                        ) -> tuple[StudyResult, tuple[np.ndarray, ...], float]:
    """:func:`analyze_study`, also returning each slice's probability map (float32 [H, W], native grid)
    and the threshold applied, so a reviewer can re-threshold without running the network again.

    For a model with a liver output the map is :func:`roi_probability` (0 outside the slice's liver region),
    so :func:`slice_result` on it at any threshold keeps the ROI inside the liver region."""
    result, maps, threshold = analyze_study_keeping_maps(study, model, settings)
    return result, tuple(roi_probability(m) for m in maps), threshold


def analyze_study(study: StudyInput, model: LoadedModel, settings: Settings) -> StudyResult:
    """Segment every slice of ``study`` in one batch and return its stiffness and stage.

    Timings (seconds) are recorded per stage: ``preprocess``, ``model``, ``post``, ``stiffness``.
    """
    return analyze_study_keeping_probabilities(study, model, settings)[0]


def confidence_fraction(study: StudyInput) -> float:
    """Share of the body section (pixels holding a stiffness value) inside the 95 % confidence region."""
    body = sum(int(np.isfinite(e.kpa).sum()) for e in study.series.slices)
    region = sum(int(e.confidence.sum()) for e in study.series.slices)
    return region / body if body else 0.0


#: Study flags that come from the model and its input (not from the ROI): kept when a reader edits the ROIs.
MODEL_INPUT_FLAGS = (QcFlag.NO_MAGNITUDE_IMAGE, QcFlag.INPUT_UNLIKE_TRAINING)


def with_model_input_flags(result: StudyResult, automatic: StudyResult) -> StudyResult:
    """``result`` (e.g. after the reader's edits) with the automatic result's :data:`MODEL_INPUT_FLAGS` and
    input notes: what the model was given does not change when the ROI does."""
    carried = [f for f in automatic.stiffness.qc_flags if f in MODEL_INPUT_FLAGS]
    if result.input_notes != automatic.input_notes:
        result = replace(result, input_notes=automatic.input_notes)
    return with_study_flags(result, carried)


def with_study_flags(result: StudyResult, flags: list[QcFlag] | tuple[QcFlag, ...]) -> StudyResult:
    """``result`` with ``flags`` appended to its study flags (those it already has are not repeated)."""
    new = [f for f in dict.fromkeys(flags) if f not in result.stiffness.qc_flags]
    if not new:
        return result
    return replace(result, stiffness=replace(result.stiffness, qc_flags=(*result.stiffness.qc_flags, *new)))


def with_input_check(result: StudyResult, model: LoadedModel) -> StudyResult:
    """Add ``INPUT_UNLIKE_TRAINING`` and the reasons (``input_notes``) when a descriptor of the exam lies outside
    the range the model's weights card records for its training studies (:mod:`mre_core.analysis.input_check`);
    a model without recorded ranges is not checked."""
    ranges = ranges_from_card(model.config.card)
    notes = unlike_training(describe(result.study), ranges) if ranges else ()
    if not notes:
        return result
    return with_study_flags(replace(result, input_notes=notes), [QcFlag.INPUT_UNLIKE_TRAINING])


def with_magnitude_flag(result: StudyResult, model: LoadedModel) -> StudyResult:
    """Add ``NO_MAGNITUDE_IMAGE`` when the model reads the magnitude image and a slice had none paired
    (the network then saw an all-zero magnitude plane for it, as in its training's magnitude dropout)."""
    slices = result.study.series.slices
    if not uses_magnitude(model.config.input) or all(e.magnitude is not None for e in slices):
        return result
    return with_study_flags(result, [QcFlag.NO_MAGNITUDE_IMAGE])


def with_marking_flag(result: StudyResult) -> StudyResult:
    """Add the study flags that come from reading the data (idempotent).

    ``NO_CONFIDENCE_MARKING`` when the series had no confidence marking; the reader's flags
    (fallback series rule, ambiguous series, guessed unit); ``SMALL_CONFIDENCE_REGION`` when the
    confidence region covers less than :data:`SMALL_CONFIDENCE_FRACTION` of the body section.
    """
    series = result.study.series
    wanted = [QcFlag(f) for f in series.ingest_flags]
    if series.encoding == ConfidenceEncoding.NONE:
        wanted.insert(0, QcFlag.NO_CONFIDENCE_MARKING)
    if series.slices and confidence_fraction(result.study) < SMALL_CONFIDENCE_FRACTION:
        wanted.append(QcFlag.SMALL_CONFIDENCE_REGION)
    new = [f for f in dict.fromkeys(wanted) if f not in result.stiffness.qc_flags]
    if not new:
        return result
    return replace(result, stiffness=replace(result.stiffness, qc_flags=(*new, *result.stiffness.qc_flags)))
