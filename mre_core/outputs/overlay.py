"""Overlay images of a study: gray elastogram, confidence outline, ROI.

:func:`overlay_png`: a grid of slices, gray elastogram 0-8 kPa, the 95 % confidence region outlined
in yellow, the ROI filled in red, mean kPa per slice; :func:`overlay_tiles` gives the same tiles and
captions as arrays (for the PDF).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mre_core.analysis.pipeline import StudyResult
from mre_core.analysis.stiffness import SliceResult
from mre_core.io.elastogram import Elastogram
from mre_core.outputs.tables import elastograms_by_sop, slice_label, slice_numbers, superior_to_inferior

OVERLAY_WINDOW_KPA = (0.0, 8.0)


def _gray_rgb(kpa: np.ndarray) -> np.ndarray:
    """kPa [H,W] → uint8 RGB [H,W,3], window 0-8 kPa; NaN pixels black."""
    low, high = OVERLAY_WINDOW_KPA
    g = np.clip((np.nan_to_num(kpa, nan=low) - low) / (high - low), 0.0, 1.0)
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a bool mask (pixels with a 4-neighbour outside it)."""
    p = np.pad(mask, 1)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def _tile(e: Elastogram, s: SliceResult) -> np.ndarray:
    rgb = _gray_rgb(e.kpa).astype(np.float32)
    roi = np.asarray(s.roi, dtype=bool)
    rgb[roi] = 0.55 * rgb[roi] + 0.45 * np.array([255.0, 40.0, 40.0])
    rgb[_outline(e.confidence)] = (255.0, 220.0, 0.0)
    return rgb.astype(np.uint8)


def _caption(s: SliceResult, number: int) -> str:
    head = f"{slice_label(number, s.instance_number)} z={s.position_mm:.1f} mm"
    if s.stats.n_pixels == 0:
        return f"{head}: no ROI"
    text = f"{head}: {s.stats.mean_kpa:.2f} kPa"
    return f"{text} (excluded)" if s.excluded else text


def overlay_tiles(result: StudyResult) -> list[tuple[np.ndarray, str]]:
    """One ``(uint8 RGB [H,W,3], caption)`` per slice that has an elastogram, superior to inferior.

    The colours of :func:`overlay_png` (also used by the PDF report); the caption gives the slice number
    (1 = most superior), the instance number, z (mm) and the slice mean kPa, or "no ROI".
    """
    by_sop = elastograms_by_sop(result)
    numbers = slice_numbers(result.slices)
    return [(_tile(by_sop[s.sop_uid], s), _caption(s, numbers[s.sop_uid]))
            for s in superior_to_inferior(result.slices) if s.sop_uid in by_sop]


def overlay_png(result: StudyResult, path: Path, columns: int = 3, scale: int = 2) -> Path:
    """Write a grid of the study's slices as a PNG.

    Gray: elastogram, window 0-8 kPa (NaN/no-value pixels black); yellow: outline of
    the 95 % confidence region; red: final ROI (semi-transparent); caption: slice
    mean kPa, or "no ROI". A footer states the legend and that this is research use.
    """
    tiles = overlay_tiles(result)
    if not tiles:
        raise ValueError(f"study {result.study_uid}: no slices to draw")
    h, w = tiles[0][0].shape[0] * scale, tiles[0][0].shape[1] * scale
    cols, cap, foot = min(columns, len(tiles)), 22, 40
    rows = math.ceil(len(tiles) / cols)
    canvas = Image.new("RGB", (cols * w, rows * (h + cap) + foot), "black")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=14)
    for i, (rgb, caption) in enumerate(tiles):
        x, y = (i % cols) * w, (i // cols) * (h + cap)
        tile = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
        canvas.paste(tile, (x, y + cap))
        draw.text((x + 4, y + 3), caption, fill="white", font=font)
    draw.text((4, canvas.height - foot + 3), _footer(result), fill="white", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def _footer(result: StudyResult) -> str:
    value = "no usable slice" if result.stage is None else f"{result.stiffness_kpa:.2f} kPa, {result.stage.stage.label}"
    return (
        f"Study: {value}. Gray 0-8 kPa, yellow = 95% confidence region, red = ROI.\n"
        "Research / decision support only; not a certified medical device."
    )
