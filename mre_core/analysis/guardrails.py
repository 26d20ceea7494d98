"""Guardrails on the automatic ROI: one plausible liver region, or no value from that slice.

A wrong ROI gives a confident wrong stiffness; a missed slice only lowers the number of slices used.
So the automatic ROI of a slice is kept only when it looks like what a reader would draw:

* **the liver's region** (:func:`main_region`): the ROI comes from the predicted region that holds the
  most measurable area (predicted ∩ 95 % confidence ∩ a stiffness value) and is not on the spleen side,
  plus other predicted pieces only on the liver's half of the body; pieces right of the spine (on the
  spleen or stomach) are dropped — published practice is one large ROI per slice in the right lobe (Venkatesh & Ehman, Magn Reson Imaging Clin N Am 2014;22:433-446;
  QIBA MR Elastography profile; Dzyubak et al., JMRI 2016 for automated ROI rules);
* **not scattered** (:data:`SCATTER_MAIN_SHARE`): when the measurable prediction falls apart into three
  or more sizeable pieces and the largest is less than half of them, the model did not find one liver;
* **not uncertain** (:data:`MIN_MEAN_PROBABILITY`): the mean network probability inside the ROI;
* **on the liver's side** (:data:`MAX_LATERAL_OFFSET`): the liver lies on the patient's right, which is
  the image's left in radiological display; an ROI centred far on the image right of the body is on the
  spleen/stomach side;
* **stable** (:mod:`mre_core.analysis.stability`, run by the pipeline because it needs the network again): the
  ROI must survive the slice shown slightly zoomed or shifted.

A model with a **liver output** (``ModelConfig.outputs`` holds ``"liver"``) narrows the prediction first
(:func:`liver_region`, :func:`restricted_probability`): the ROI probability counts only inside the largest
predicted liver piece, eroded by ``Settings.liver_margin_mm``; no liver piece means an empty ROI (flagged
``EMPTY_ROI``, left out of the study value). The checks below then run on what is left.

A slice failing a check keeps its ROI for display, gets a QC flag whose text says "automatic ROI
unreliable — draw or check it", and is left out of the study value. The limits are set from the
anatomy and the model's output scale, not tuned on any test data.
"""

from __future__ import annotations

import cv2
import numpy as np

from mre_core.analysis.stiffness import QcFlag

#: the largest sizeable measurable predicted piece must hold at least this share of all of them
SCATTER_MAIN_SHARE = 0.5
#: mean sigmoid probability inside the ROI below this: the network was not sure (threshold is ~0.5)
MIN_MEAN_PROBABILITY = 0.65
#: ROI centroid more than this fraction of the body half-width to the image right of the body centre
MAX_LATERAL_OFFSET = 0.35
#: liver-output probability above which a pixel is liver (the liver output's own cut, not the ROI threshold)
LIVER_THRESHOLD = 0.5


def _pieces(mask: np.ndarray) -> tuple[int, np.ndarray]:
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return n, labels


def main_region(predicted: np.ndarray, confidence: np.ndarray, kpa: np.ndarray, min_px: int) -> np.ndarray:
    """bool [H,W]: the ROI from the predicted liver region, never from a region on the spleen side.

    The main region is the predicted region with the most measurable pixels (predicted ∩ confidence ∩
    a stiffness value) among those whose measurable centroid is not beyond :data:`MAX_LATERAL_OFFSET`
    to the image right; other predicted regions are kept only when they lie on the liver's half of the
    body (centroid left of the body centre: a second right-lobe piece). Pieces under ``min_px`` are dropped.

    >>> p = np.zeros((8, 12), bool); p[1:7, 0:5] = True; p[2:4, 8:11] = True
    >>> roi = main_region(p, np.ones_like(p), np.ones(p.shape), 2)
    >>> int(roi.sum()), bool(roi[:, 8:].any())
    (30, False)
    """
    measurable = predicted & confidence & np.isfinite(kpa)
    if not measurable.any():
        return np.zeros_like(predicted, dtype=bool)
    n, labels = _pieces(predicted)
    counts = np.bincount(labels[measurable], minlength=n)
    counts[0] = 0
    body = _body(kpa)
    offsets = np.array([_lateral_offset(measurable & (labels == i), body) if counts[i] else np.inf
                        for i in range(n)])
    eligible = np.where(offsets <= MAX_LATERAL_OFFSET, counts, 0)
    if not eligible.any():
        return np.zeros_like(predicted, dtype=bool)
    keep_labels = {int(np.argmax(eligible))} | {i for i in range(1, n) if counts[i] and offsets[i] <= 0.0}
    roi = measurable & np.isin(labels, list(keep_labels))
    n_roi, roi_labels, stats, _ = cv2.connectedComponentsWithStats(roi.astype(np.uint8), connectivity=8)
    keep = np.zeros(n_roi, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_px
    return keep[roi_labels]


def margin_px(margin_mm: float, pixel_spacing_mm: tuple[float, float]) -> tuple[int, int]:
    """An erosion margin in mm as whole pixels (rows, columns), for the slice's (row, column) spacing.

    >>> margin_px(5.0, (1.5625, 1.5625)), margin_px(0.0, (2.0, 2.0)), margin_px(4.0, (2.0, 1.0))
    ((3, 3), (0, 0), (2, 4))
    """
    return int(round(margin_mm / pixel_spacing_mm[0])), int(round(margin_mm / pixel_spacing_mm[1]))


def liver_region(liver_probability: np.ndarray, min_px: int, margin: tuple[int, int]) -> np.ndarray:
    """bool [H,W]: the largest 8-connected piece of ``liver_probability > LIVER_THRESHOLD``, eroded by
    ``margin`` (rows, columns) pixels with an elliptic element; empty when that piece is under ``min_px``.

    Other pieces are dropped (one liver per slice). The image border does not erode the region (the liver
    may leave the field of view there; only its own edge is kept at a distance).

    >>> p = np.zeros((12, 16), np.float32); p[1:11, 1:9] = 0.9; p[2:5, 11:15] = 0.9
    >>> r = liver_region(p, 4, (1, 1))
    >>> int(r.sum()), bool(r[:, 10:].any()), int(liver_region(p, 100, (0, 0)).sum())
    (48, False, 0)
    """
    mask = liver_probability > LIVER_THRESHOLD
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = int(np.argmax(areas))
    if areas[largest] < min_px:
        return np.zeros(mask.shape, dtype=bool)
    region = labels == largest + 1
    rows, cols = margin
    if rows <= 0 and cols <= 0:
        return region
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * max(cols, 0) + 1, 2 * max(rows, 0) + 1))
    return cv2.erode(region.astype(np.uint8), kernel).astype(bool)


def restricted_probability(probability: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The ROI probability inside ``region`` and 0 outside (float32 [H,W]): thresholding it at any threshold
    in (0, 1) gives the predicted ROI ∩ region, and re-thresholding later stays inside the region."""
    return np.where(region, probability, np.float32(0.0)).astype(np.float32)


def _body(kpa: np.ndarray) -> np.ndarray:
    return np.isfinite(kpa) & (np.nan_to_num(kpa) > 0)


def _scattered(predicted: np.ndarray, confidence: np.ndarray, kpa: np.ndarray, roi: np.ndarray,
               min_px: int) -> bool:
    measurable = predicted & confidence & np.isfinite(kpa)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(measurable.astype(np.uint8), connectivity=8)
    sizeable = stats[1:, cv2.CC_STAT_AREA][stats[1:, cv2.CC_STAT_AREA] >= min_px]
    return len(sizeable) >= 3 and sizeable.max() < SCATTER_MAIN_SHARE * sizeable.sum()


def _lateral_offset(roi: np.ndarray, body: np.ndarray) -> float:
    """ROI centroid column relative to the body: 0 at the body's centre, +1 at its image-right edge."""
    cols = np.nonzero(body.any(axis=0))[0]
    if cols.size < 2 or not roi.any():
        return 0.0
    centre, half = (cols[0] + cols[-1]) / 2.0, (cols[-1] - cols[0]) / 2.0
    return float((np.nonzero(roi)[1].mean() - centre) / half)


def roi_warnings(roi: np.ndarray, predicted: np.ndarray, probability: np.ndarray, confidence: np.ndarray,
                 kpa: np.ndarray, min_px: int) -> tuple[QcFlag, ...]:
    """The guardrail flags of one slice's automatic ROI (empty tuple: the ROI is plausible)."""
    if not roi.any():
        return ()
    flags = []
    if _scattered(predicted, confidence, kpa, roi, min_px):
        flags.append(QcFlag.ROI_SCATTERED)
    if float(probability[roi].mean()) < MIN_MEAN_PROBABILITY:
        flags.append(QcFlag.ROI_UNCERTAIN)
    if _lateral_offset(roi, _body(kpa)) > MAX_LATERAL_OFFSET:
        flags.append(QcFlag.ROI_OFF_LIVER_SIDE)
    return tuple(flags)


#: the flags that leave a slice's automatic ROI out of the study value (``ROI_UNSTABLE`` comes from
#: :mod:`mre_core.analysis.stability`, which needs the network again)
UNRELIABLE = frozenset({QcFlag.ROI_SCATTERED, QcFlag.ROI_UNCERTAIN, QcFlag.ROI_OFF_LIVER_SIDE, QcFlag.ROI_UNSTABLE})
