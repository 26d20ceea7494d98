"""Does the automatic ROI survive small, plausible changes of the input? (test-time augmentation)

A network that has found the liver finds it again when the same slice is shown slightly zoomed or shifted; an
ROI that moves or vanishes under such a change rests on something the model did not really recognise. This is
the test-time-augmentation estimate of a segmentation's uncertainty (Wang G, Li W, Aertsen M, Deprest J,
Ourselin S, Vercauteren T. Aleatoric uncertainty estimation with test-time augmentation for medical image
segmentation with convolutional neural networks. Neurocomputing 2019;338:34-45; Ayhan MS, Berens P. Test-time
data augmentation for estimation of heteroscedastic aleatoric uncertainty in deep neural networks. MIDL 2018).

The changes (:data:`PERTURBATIONS`) are the ones exams really differ by: the field of view (zoom 0.9 and 1.1;
liver MRE is acquired at roughly 300-480 mm) and the patient's position (a shift of 4 % of the field of view on
both axes, each way). No left-right flip: the liver is on the patient's right. Each perturbed copy goes through
the same network and the same post-processing as the original (liver region, one region, guardrails); its
probability maps are mapped back onto the original grid first.

The slice's **stability** is the mean Dice between the original automatic ROI and the perturbed ones. Below
:data:`MIN_STABILITY` (one half: the perturbed ROIs overlap the original less than they differ from it) the slice
is flagged ``ROI_UNSTABLE`` and left out of the study value. The limit was written down before it was measured;
it was checked on the phantom safety sets and the legacy style, never on the unseen styles
(docs/GENERALISATION.md has the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Perturbation:
    """A zoom about the grid centre, then a shift as a share of the grid (``+`` = down / right)."""

    name: str
    zoom: float = 1.0
    shift: float = 0.0


#: what exams differ by: field of view (zoom) and patient position (shift); never a left-right flip
PERTURBATIONS = (
    Perturbation("zoom 0.9", zoom=0.9),
    Perturbation("zoom 1.1", zoom=1.1),
    Perturbation("shift +4 %", shift=0.04),
    Perturbation("shift -4 %", shift=-0.04),
)
#: mean Dice between the automatic ROI and the perturbed ROIs below this: the ROI is unstable
MIN_STABILITY = 0.5


def perturbation_matrix(size: int, p: Perturbation) -> np.ndarray:
    """The 2x3 affine matrix (float32) of ``p`` on a ``size`` x ``size`` grid (output = M @ input).

    >>> perturbation_matrix(101, Perturbation("z", zoom=2.0)).tolist()
    [[2.0, 0.0, -50.0], [0.0, 2.0, -50.0]]
    >>> perturbation_matrix(100, Perturbation("s", shift=0.1))[:, 2].tolist()
    [10.0, 10.0]
    """
    c = (size - 1) / 2.0
    t = c - p.zoom * c + p.shift * size
    return np.array([[p.zoom, 0.0, t], [0.0, p.zoom, t]], dtype=np.float32)


def _warp(image: np.ndarray, matrix: np.ndarray, inverse: bool) -> np.ndarray:
    flags = cv2.INTER_LINEAR | (cv2.WARP_INVERSE_MAP if inverse else 0)
    return cv2.warpAffine(np.ascontiguousarray(image, dtype=np.float32), matrix, image.shape[::-1], flags=flags,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def perturbed_batch(batch: np.ndarray, p: Perturbation) -> np.ndarray:
    """A model-input batch float32 [N, C, S, S] with every channel of every slice zoomed/shifted by ``p``
    (outside the image: 0, as the background of the inputs)."""
    matrix = perturbation_matrix(batch.shape[-1], p)
    out = np.empty_like(batch, dtype=np.float32)
    for i in range(batch.shape[0]):
        for c in range(batch.shape[1]):
            out[i, c] = _warp(batch[i, c], matrix, inverse=False)
    return out


def restored_map(probability: np.ndarray, p: Perturbation) -> np.ndarray:
    """A model-grid map [S, S] of a perturbed input mapped back onto the original input's grid (float32;
    where the perturbed copy did not cover the original: 0)."""
    return _warp(probability, perturbation_matrix(probability.shape[-1], p), inverse=True)


def roi_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two bool masks (1.0 when both are empty).

    The same measure as :func:`mre_core.stats.agreement.dice`; written again here because ``analysis`` does not
    import ``stats`` (``stats`` imports :mod:`mre_core.analysis.staging`, and the pipeline stays below it).

    >>> a = np.zeros((4, 4), bool); a[:2] = True; b = np.zeros((4, 4), bool); b[1:3] = True
    >>> roi_dice(a, b), roi_dice(a, a), roi_dice(~a & a, ~a & a)
    (0.5, 1.0, 1.0)
    """
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total


def stability(roi: np.ndarray, perturbed_rois: list[np.ndarray] | tuple[np.ndarray, ...]) -> float:
    """Mean Dice between ``roi`` and each ROI found on a perturbed copy of the slice (1.0: nothing moved).

    >>> r = np.zeros((6, 6), bool); r[1:5, 1:5] = True
    >>> stability(r, [r, r]), stability(r, [r, np.zeros_like(r)])
    (1.0, 0.5)
    """
    return float(np.mean([roi_dice(roi, q) for q in perturbed_rois])) if len(perturbed_rois) else 1.0


def unstable(score: float) -> bool:
    """True when a slice's :func:`stability` is below :data:`MIN_STABILITY`.

    >>> unstable(0.49), unstable(0.5), unstable(1.0)
    (True, False, False)
    """
    return score < MIN_STABILITY
