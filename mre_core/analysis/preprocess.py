"""Model input as the paper prepares it, and the exact way back to the native grid.

The paper windows the gray-scale confidence elastogram at centre 400 / width 800
(stored units, i.e. 0-8 kPa on the Siemens profile), scales it to [0, 1], resizes it
bilinearly from its native 204x256 (or 256x256) grid to 512x512 and feeds 3 channels.
We window in **kPa** (so GE maps in Pa get the same input) and use the 3 channels to
carry encoding-independent information instead of three copies of one image:

* channel 0: windowed stiffness inside the 95 % confidence region, 0 elsewhere
  (what a zero-fill confidence map shows, whatever the vendor's encoding);
* channel 1: the confidence region (0/1);
* channel 2: windowed stiffness wherever the data hold a value (shows anatomy
  outside the confidence region when the encoding keeps it).

A model may also ask for ``"magnitude"`` (:data:`MAGNITUDE_CHANNEL`): the exam's magnitude image of the same
slice (``Elastogram.magnitude``, paired by :mod:`mre_core.io.magnitude`), scaled per slice between its 1st
and 99.5th percentiles (:func:`normalised_magnitude`), since magnitude intensities have no unit and differ by
scanner, coil and sequence. It is the anatomy a reader draws the ROI on. A slice without a paired magnitude
image gets an all-zero channel, the same as the magnitude dropout the model was trained with
(:class:`mre_core.model.augment.Augmenter`), and the study says so (``QcFlag.NO_MAGNITUDE_IMAGE``).

Resizing uses OpenCV's bilinear interpolation with pixel-centre alignment in both
directions, so a mask resized to 512x512 and back lands on the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mre_core.io.elastogram import Elastogram

#: The paper's window (centre 400, width 800 stored units = 4 / 8 kPa on the Siemens profile).
PAPER_WINDOW_CENTER_KPA = 4.0
PAPER_WINDOW_WIDTH_KPA = 8.0
PAPER_INPUT_SIZE = 512
#: The optional anatomy channel: the paired magnitude image, normalised per slice.
MAGNITUDE_CHANNEL = "magnitude"
#: Every input channel a model can ask for (``InputSpec.channels``), in the default order, then the optional ones.
KNOWN_CHANNELS = ("kpa_confident", "confidence", "kpa_known", MAGNITUDE_CHANNEL)
#: Percentiles that map a magnitude image to [0, 1] (robust to a few very bright pixels: fat, vessels).
MAGNITUDE_PERCENTILES = (1.0, 99.5)


@dataclass(frozen=True)
class InputSpec:
    """How slices become a model input; stored with the weights so models describe themselves."""

    size: int = PAPER_INPUT_SIZE
    window_center_kpa: float = PAPER_WINDOW_CENTER_KPA
    window_width_kpa: float = PAPER_WINDOW_WIDTH_KPA
    channels: tuple[str, ...] = ("kpa_confident", "confidence", "kpa_known")


def window_kpa(kpa: np.ndarray, center_kpa: float, width_kpa: float) -> np.ndarray:
    """Window a kPa map to [0, 1] (float32); NaN (no value) becomes 0.

    >>> window_kpa(np.array([0.0, 4.0, 8.0, 12.0, np.nan]), 4.0, 8.0).tolist()
    [0.0, 0.5, 1.0, 1.0, 0.0]
    """
    low = center_kpa - width_kpa / 2.0
    out = (np.nan_to_num(kpa.astype(np.float32), nan=low) - low) / width_kpa
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resize_bilinear(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear resize of a float [H, W] array to [rows, cols] (pixel-centre aligned)."""
    return cv2.resize(image.astype(np.float32), (cols, rows), interpolation=cv2.INTER_LINEAR)


def normalised_magnitude(magnitude: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A magnitude image scaled to [0, 1] between its :data:`MAGNITUDE_PERCENTILES` (float32 ``shape``);
    zeros when there is none or it is flat (no anatomy to show).

    >>> [round(float(v), 3) for v in normalised_magnitude(np.arange(201.0).reshape(1, 201), (1, 201))[0, [0, 100, 200]]]
    [0.0, 0.497, 1.0]
    >>> float(normalised_magnitude(None, (2, 2)).sum())
    0.0
    """
    if magnitude is None:
        return np.zeros(shape, np.float32)
    m = np.nan_to_num(np.asarray(magnitude, np.float32), nan=0.0)
    low, high = np.percentile(m, MAGNITUDE_PERCENTILES)
    if not high > low:
        return np.zeros(shape, np.float32)
    return np.clip((m - low) / (high - low), 0.0, 1.0).astype(np.float32)


def uses_magnitude(spec: InputSpec) -> bool:
    """Whether a model with this input reads the magnitude image."""
    return MAGNITUDE_CHANNEL in spec.channels


def slice_channels(elastogram: Elastogram, spec: InputSpec) -> np.ndarray:
    """The native-grid channels of one slice (``spec.channels``), float32 [C, H, W] in [0, 1]."""
    known = window_kpa(elastogram.kpa, spec.window_center_kpa, spec.window_width_kpa)
    confidence = elastogram.confidence.astype(np.float32)
    by_name = {"kpa_confident": lambda: known * confidence, "confidence": lambda: confidence,
               "kpa_known": lambda: known,
               MAGNITUDE_CHANNEL: lambda: normalised_magnitude(elastogram.magnitude, elastogram.shape)}
    unknown = [name for name in spec.channels if name not in by_name]
    if unknown:
        raise ValueError(f"unknown input channel(s) {unknown}; known: {tuple(by_name)}")
    return np.stack([by_name[name]() for name in spec.channels])


def model_input(elastograms: list[Elastogram] | tuple[Elastogram, ...], spec: InputSpec) -> np.ndarray:
    """Batch of slices → float32 [N, C, size, size], ready for the network."""
    batch = np.empty((len(elastograms), len(spec.channels), spec.size, spec.size), dtype=np.float32)
    for i, e in enumerate(elastograms):
        for c, channel in enumerate(slice_channels(e, spec)):
            batch[i, c] = resize_bilinear(channel, spec.size, spec.size)
    return batch


def to_native_grid(probability: np.ndarray, native_shape: tuple[int, int]) -> np.ndarray:
    """Resize a model-grid probability map [S, S] back to the native [H, W] grid (bilinear)."""
    return resize_bilinear(probability, native_shape[0], native_shape[1])
