"""Segmentation: batched inference, back to the native grid, ROI = liver ∩ confidence.

``run_network_maps`` (behind ``run_network``, ``predict_probabilities`` and ``predict_maps``) is the only
function here that touches torch. The post-processing (``final_roi``, ``drop_specks``) is pure numpy so it
can be tested on tiny arrays and reused by the app when a reviewer edits an ROI.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from mre_core.analysis.preprocess import model_input, to_native_grid
from mre_core.io.elastogram import Elastogram
from mre_core.model.network import LoadedModel


def run_network(model: LoadedModel, batch: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Sigmoid ROI probabilities float32 [N, S, S] for a model-input batch float32 [N, C, S, S].

    Runs under ``torch.inference_mode()`` in chunks of ``batch_size`` slices (a whole
    4-5 slice study is one forward pass by default). The ROI is the network's channel 0; a model with
    more outputs is run once, as :func:`run_network_maps` does.
    """
    return run_network_maps(model, batch, batch_size)["roi"]


def run_network_maps(model: LoadedModel, batch: np.ndarray, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Sigmoid probabilities per output of the model (``model.config.outputs``: ``"roi"``, maybe ``"liver"``),
    each float32 [N, S, S], from one forward pass per chunk of ``batch_size`` slices (channels-last input)."""
    names = model.config.outputs
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(batch), batch_size):
        x = torch.from_numpy(batch[start:start + batch_size]).to(model.device,
                                                                 memory_format=torch.channels_last)
        with torch.inference_mode():
            logits = model.net(x)
            if logits.shape[1] != len(names):
                raise ValueError(f"model {model.config.name!r} gave {logits.shape[1]} output channels, its config "
                                 f"names {len(names)}: {names}")
            prob = torch.sigmoid(logits).float().cpu().numpy()
        for c, name in enumerate(names):
            out[name].append(prob[:, c])
    return {name: np.concatenate(parts) if parts else np.zeros((0, 0, 0), dtype=np.float32)
            for name, parts in out.items()}


def predict_probabilities(model: LoadedModel, elastograms: list[Elastogram] | tuple[Elastogram, ...],
                          batch_size: int = 8) -> list[np.ndarray]:
    """Liver-ROI probability per slice, float32 [H, W] on each slice's native grid."""
    prob = run_network(model, model_input(elastograms, model.config.input), batch_size)
    return [to_native_grid(p, e.shape) for p, e in zip(prob, elastograms)]


def predict_maps(model: LoadedModel, elastograms: list[Elastogram] | tuple[Elastogram, ...],
                 batch_size: int = 8) -> list[dict[str, np.ndarray]]:
    """Every output's probability per slice (``{"roi": ..., "liver": ...}``), float32 [H, W] on each slice's
    native grid; the network runs once."""
    maps = run_network_maps(model, model_input(elastograms, model.config.input), batch_size)
    return [{name: to_native_grid(m[i], e.shape) for name, m in maps.items()} for i, e in enumerate(elastograms)]


def keep_largest_pieces(mask: np.ndarray, min_area_px: int, max_pieces: int | None = None) -> np.ndarray:
    """Keep the ``max_pieces`` largest 8-connected pieces of at least ``min_area_px`` pixels (all when None).

    >>> m = np.zeros((6, 9), bool); m[0:2, 0:2] = True; m[0:3, 4:7] = True; m[5, 8] = True
    >>> int(keep_largest_pieces(m, 2).sum()), int(keep_largest_pieces(m, 1, max_pieces=1).sum())
    (13, 9)
    """
    if not mask.any() or (min_area_px <= 1 and max_pieces is None):
        return mask.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, dtype=bool)
    keep[1:] = areas >= min_area_px
    if max_pieces is not None:
        keep[1 + np.argsort(-areas, kind="stable")[max_pieces:]] = False
    return keep[labels]


def drop_specks(mask: np.ndarray, min_area_px: int) -> np.ndarray:
    """Remove 8-connected components smaller than ``min_area_px`` pixels (bool [H, W] → bool [H, W])."""
    return keep_largest_pieces(mask, min_area_px)


def min_area_px(min_area_mm2: float, pixel_spacing_mm: tuple[float, float]) -> int:
    """The smallest kept component in pixels for an area in mm².

    >>> min_area_px(50.0, (1.5625, 1.5625))
    21
    """
    return int(np.ceil(min_area_mm2 / (pixel_spacing_mm[0] * pixel_spacing_mm[1])))


def final_roi(predicted: np.ndarray, confidence: np.ndarray, kpa: np.ndarray, min_component_px: int) -> np.ndarray:
    """ROI = predicted liver ∩ confidence region ∩ pixels with a value, pieces < ``min_component_px`` removed (bool [H, W])."""
    roi = predicted & confidence & np.isfinite(kpa)
    return drop_specks(roi, min_component_px)


def adjust_roi(roi: np.ndarray, confidence: np.ndarray, kpa: np.ndarray, grow_px: int) -> np.ndarray:
    """Erode (``grow_px < 0``) or dilate (``> 0``) an ROI by whole pixels, staying inside the confidence region."""
    if grow_px == 0:
        return roi.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow_px) + 1, 2 * abs(grow_px) + 1))
    op = cv2.dilate if grow_px > 0 else cv2.erode
    changed = op(roi.astype(np.uint8), kernel).astype(bool)
    return changed & confidence & np.isfinite(kpa)
