"""Reading the scanner's 95 % confidence marking from stored pixel values (pure numpy).

Three encodings are understood (see ``docs/DATA_FORMATS.md``):

* **zero fill** — low-confidence pixels stored as 0 inside the body;
* **cross-hatch** — a diagonal cross-hatch of one constant stored value burned into the
  low-confidence pixels (:func:`find_hatch_value`, :func:`decode_hatch`);
* **paired series** — a full map and a confidence-masked copy (:func:`decode_pair`).

Nothing here assumes the phantom's hatch value or period: the hatch value is the stored
value whose pixels form diagonal lines, and the period and phase of the lines are
measured from those pixels. All arrays are stored values (before any unit scaling);
stored 0 is background.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

#: a hatch line must be at least this many pixels long (diagonal runs of 3)
_RUN = 3
#: candidate hatch values examined per series (most frequent non-zero stored values)
_N_CANDIDATES = 12
#: share of a candidate value's pixels that must lie on diagonal lines
_MIN_LINE_FRACTION = 0.5
#: a series needs at least this many hatch line pixels to count as hatched
_MIN_LINE_PIXELS = 24
#: zero pixels inside the body's convex hull above this fraction → zero-fill marking
_MIN_ZERO_FRACTION = 0.02

_DIAG_DOWN = np.eye(_RUN, dtype=bool)  # "\" lines: i - j constant
_DIAG_UP = np.fliplr(_DIAG_DOWN)  # "/" lines: i + j constant


@dataclass(frozen=True)
class HatchDecoding:
    """A decoded cross-hatch slice.

    Attributes
    ----------
    hatch_pixels : bool [rows, cols]
        Pixels holding the burned-in hatch value (no stiffness value: NaN in kPa).
    hatched_area : bool [rows, cols]
        The low-confidence region the hatch covers (lines and the pixels between them).
    period_px : int or None
        Measured line period along a row, pixels (None when no lattice could be fitted).
    """

    hatch_pixels: np.ndarray
    hatched_area: np.ndarray
    period_px: int | None


def body_mask(stored: np.ndarray) -> np.ndarray:
    """Non-background pixels (stored value != 0), bool with the shape of ``stored``."""
    return np.asarray(stored) != 0


def line_pixels(equal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``equal`` that lie on 1-pixel diagonal lines.

    Parameters
    ----------
    equal : bool [rows, cols]
        Pixels holding one candidate value.

    Returns
    -------
    down, up : bool [rows, cols]
        Pixels on runs of >= 3 along the "\\" and "/" diagonals. Solid blobs (a 3x3
        square of the value, e.g. a saturated plateau) are removed first, so that only
        thin lines remain.
    """
    equal = np.asarray(equal, dtype=bool)
    thin = equal & ~_opening(equal, [(di, dj) for di in range(3) for dj in range(3)])
    down = _opening(thin, [(k, k) for k in range(_RUN)])
    up = _opening(thin, [(k, _RUN - 1 - k) for k in range(_RUN)])
    return down, up


def _opening(mask: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Binary opening of ``mask`` by the structuring element whose True cells are ``offsets`` within its
    bounding box, with a False border: the same pixels as ``scipy.ndimage.binary_opening`` (tested), from
    shifted-slice ANDs and ORs (this runs for a dozen candidate values on every slice of every study)."""
    h = max(i for i, _ in offsets) + 1
    w = max(j for _, j in offsets) + 1
    rows, cols = mask.shape
    if rows < h or cols < w:
        return np.zeros_like(mask)
    fits = np.ones((rows - h + 1, cols - w + 1), dtype=bool)  # the element placed with its corner at (i, j)
    for i, j in offsets:
        fits &= mask[i:i + rows - h + 1, j:j + cols - w + 1]
    out = np.zeros_like(mask)
    for i, j in offsets:
        out[i:i + rows - h + 1, j:j + cols - w + 1] |= fits
    return out


def find_hatch_value(stack: np.ndarray) -> float | None:
    """The stored value that forms a diagonal cross-hatch in a series, or None.

    Parameters
    ----------
    stack : [n_slices, rows, cols] or [rows, cols], stored values
        Every slice of one series (the hatch value is constant per series).

    Returns
    -------
    float or None
        The hatch value: among the most frequent non-zero values, the one with most
        pixels on diagonal lines, provided that >= 50 % of its pixels are on lines and
        there are >= 24 such pixels. None when no value qualifies (no hatch).
    """
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[None]
    nonzero = stack[stack != 0]
    if nonzero.size == 0:
        return None
    values, counts = np.unique(nonzero, return_counts=True)
    order = np.argsort(counts)[::-1][:_N_CANDIDATES]
    best: tuple[int, float] | None = None
    for idx in order:
        value = values[idx]
        n_line = 0
        for image in stack:
            down, up = line_pixels(image == value)
            n_line += int(np.count_nonzero(down | up))
        if n_line >= _MIN_LINE_PIXELS and n_line >= _MIN_LINE_FRACTION * counts[idx]:
            if best is None or n_line > best[0]:
                best = (n_line, float(value))
    return None if best is None else best[1]


def _line_positions(mask: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """Weights of line pixels per diagonal index ``coord`` (i+j or i-j shifted >= 0)."""
    return np.bincount(coord[mask], minlength=int(coord.max()) + 1)


def estimate_period(weights: list[np.ndarray]) -> int | None:
    """Line period (pixels along a row) from per-diagonal pixel counts of line families.

    Parameters
    ----------
    weights : list of int [n_diagonals]
        For each line family, the number of line pixels on each diagonal index.

    Returns
    -------
    int or None
        The most common gap (>= 2) between consecutive occupied diagonals, if >= 80 % of
        all gaps are multiples of it; otherwise None.
    """
    gaps: list[np.ndarray] = []
    for w in weights:
        occupied = np.flatnonzero(w >= 2)
        if occupied.size >= 2:
            gaps.append(np.diff(occupied))
    if not gaps:
        return None
    all_gaps = np.concatenate(gaps)
    all_gaps = all_gaps[all_gaps >= 2]
    if all_gaps.size == 0:
        return None
    period = int(np.bincount(all_gaps).argmax())
    if np.mean(all_gaps % period == 0) < 0.8:
        return None
    return period


def series_period(stack: np.ndarray, hatch_value: float) -> int | None:
    """Hatch line period (pixels) measured over all slices of a series, or None.

    Used as the fallback for slices whose own hatch has too few lines to measure it.
    """
    weights: list[np.ndarray] = []
    for image in np.asarray(stack).reshape((-1,) + np.asarray(stack).shape[-2:]):
        ii, jj = np.indices(image.shape)
        down, up = line_pixels(image == hatch_value)
        weights += [_line_positions(down, ii - jj + image.shape[1]), _line_positions(up, ii + jj)]
    return estimate_period(weights)


def _phase(weights: np.ndarray, period: int) -> int | None:
    """Residue (mod period) holding the line pixels, if >= 90 % of them share it."""
    if weights.sum() == 0:
        return None
    per_residue = np.bincount(np.arange(weights.size) % period, weights=weights, minlength=period)
    phase = int(per_residue.argmax())
    return phase if per_residue[phase] >= 0.9 * weights.sum() else None


def decode_hatch(stored: np.ndarray, hatch_value: float, period_hint: int | None = None) -> HatchDecoding:
    """Hatch pixels and hatched (low-confidence) area of one slice.

    A lattice of diagonal lines is fitted to the hatch pixels (period and phase per
    line family). Each body pixel then takes the label of its nearest lattice pixel:
    hatched if that lattice pixel holds the hatch value, confident otherwise. This
    places the region boundary to within about a quarter period. When no lattice fits
    (irregular or thick lines) the hatched area is the morphological closing of the line
    pixels over one period.

    Parameters
    ----------
    stored : [rows, cols]
        Stored pixel values of one slice.
    hatch_value : float
        The series' hatch value (:func:`find_hatch_value`).
    period_hint : int, optional
        Period measured on the whole series, used when this slice has too few lines.
    """
    stored = np.asarray(stored)
    body = body_mask(stored)
    down, up = line_pixels(stored == hatch_value)
    lines = down | up
    empty = np.zeros_like(body)
    if not lines.any():
        return HatchDecoding(empty, empty, period_hint)
    ii, jj = np.indices(stored.shape)
    diff = ii - jj + stored.shape[1]
    total = ii + jj
    w_down, w_up = _line_positions(down, diff), _line_positions(up, total)
    period = estimate_period([w_down, w_up]) or period_hint
    lattice = np.zeros_like(body)
    fitted = period is not None
    for w, coord, family in ((w_down, diff, down), (w_up, total, up)):
        if not family.any() or period is None:
            continue
        phase = _phase(w, period)
        if phase is None:
            fitted = False
            break
        lattice |= (coord % period) == phase
    if fitted and period is not None:
        # a lattice pixel is hatched if it holds the value next to a line (not a lone chance pixel)
        near_line = ndimage.binary_dilation(lines, structure=np.ones((3, 3), bool))
        hatched = _nearest_lattice_label(lattice & body, (stored == hatch_value) & near_line) & body
    else:
        size = (period or 9) + 1
        kernel = np.ones((size, size), np.uint8)
        hatched = cv2.morphologyEx(lines.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool) & body
    hatched |= lines
    return HatchDecoding(lines | (hatched & (stored == hatch_value)), hatched, period)


def _nearest_lattice_label(lattice: np.ndarray, is_hatch: np.ndarray) -> np.ndarray:
    """Every pixel gets ``is_hatch`` of its nearest lattice pixel (bool [rows, cols])."""
    if not lattice.any():
        return np.zeros_like(lattice)
    _, (ri, ci) = ndimage.distance_transform_edt(~lattice, return_indices=True)
    label = lattice & is_hatch
    return label[ri, ci]


def has_zero_fill(stored: np.ndarray) -> bool:
    """True when a slice has zero-valued holes inside the body outline.

    The body outline is the convex hull of the non-zero pixels; a plain elastogram is
    non-zero across the body, a zero-filled confidence map has >= 2 % zeros inside it.
    This misses zero fill confined to the body's edge (it then looks like a smaller body).
    """
    body = body_mask(stored).astype(np.uint8)
    points = cv2.findNonZero(body)
    if points is None or len(points) < 3:
        return False
    hull = np.zeros_like(body)
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
    inside = hull.astype(bool)
    return bool(np.count_nonzero(inside & (body == 0)) > _MIN_ZERO_FRACTION * np.count_nonzero(inside))


def decode_pair(full: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """Confidence of a GE-style pair: masked copy non-zero and equal to the full map.

    Parameters
    ----------
    full, masked : [rows, cols]
        Stored values of the full stiffness map and of its confidence-masked copy.

    Returns
    -------
    bool [rows, cols]

    Examples
    --------
    >>> decode_pair(np.array([[0, 300, 310, 320]]), np.array([[0, 300, 0, 321]])).tolist()
    [[False, True, False, False]]
    """
    full, masked = np.asarray(full), np.asarray(masked)
    return (masked != 0) & (full != 0) & (masked == full)


def is_masked_copy(full: np.ndarray, masked: np.ndarray) -> bool:
    """True when ``masked`` looks like a confidence-masked copy of ``full``.

    Same shape; >= 95 % of the copy's non-zero pixels equal the full map; and the copy
    has zeroed at least 2 % of the full map's non-zero pixels.
    """
    full, masked = np.asarray(full), np.asarray(masked)
    if full.shape != masked.shape:
        return False
    kept = masked != 0
    n_full = np.count_nonzero(full)
    if not kept.any() or n_full == 0:
        return False
    agree = np.count_nonzero(kept & (masked == full)) / np.count_nonzero(kept)
    removed = np.count_nonzero((full != 0) & ~kept) / n_full
    return bool(agree >= 0.95 and removed >= 0.02)


# ---------------------------------------------------------------- separate confidence-map series

#: A confidence map in per mille (Resoundant MMDI: 0-1000, WC/WW 950/100) or percent; the 95 % region.
PER_MILLE_THRESHOLD = 950
PERCENT_THRESHOLD = 95


def confidence_scale(stack: np.ndarray) -> int:
    """1000 (per mille) or 100 (percent), from the largest value of a confidence-map series."""
    return 100 if float(np.max(stack)) <= 100 else 1000


def confidence_map_region(conf_stored: np.ndarray, scale: int) -> np.ndarray:
    """bool [H,W]: the 95 % confidence region of one confidence-map slice (>= 950 ‰ or >= 95 %)."""
    threshold = PER_MILLE_THRESHOLD if scale == 1000 else PERCENT_THRESHOLD
    return np.asarray(conf_stored) >= threshold


def looks_like_confidence_map(stack: np.ndarray) -> bool:
    """True when stored values look like a per-mille or percent confidence map, not stiffness.

    A confidence map never exceeds its full scale (1000 ‰ / 100 %) and has a plateau near the top:
    at least 3 % of its non-zero pixels at >= 95 % of full scale. A stiffness map whose values all lie
    at or below 1000 would be <= 1 kPa in Pa or <= 10 kPa in kPa x 100, and its pixels do not pile up at
    the top of that range; the rule is a guard, so it errs towards "not stiffness".
    """
    values = np.asarray(stack)
    nonzero = values[values > 0]
    if nonzero.size == 0 or values.min() < 0:
        return False
    scale = confidence_scale(values)
    if float(nonzero.max()) > scale:
        return False
    return float(np.mean(nonzero >= 0.95 * scale)) >= 0.03


def saturated_pixels(stored: np.ndarray, header_bits: int, signed: bool) -> np.ndarray:
    """bool [H,W]: pixels of a 16-bit map at (or one below) the largest value it can hold.

    Burned-in annotation text is stored saturated (Resoundant MMDI writes 32766 in a signed 16-bit
    map); such pixels carry no stiffness and must never enter a mean. Maps with fewer stored bits
    are left alone: there the ceiling (e.g. 4095) is reachable by stiff tissue clipped by the
    scanner, which is a value, not text (a cross-hatch at the ceiling is removed by its decoder).
    """
    if header_bits < 16:
        return np.zeros(np.shape(stored), dtype=bool)
    top = (1 << (header_bits - 1)) - 1 if signed else (1 << header_bits) - 1
    return np.asarray(stored) >= top - 1
