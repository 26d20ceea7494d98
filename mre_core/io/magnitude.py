"""Magnitude images paired with the analysed elastogram slices (read only; nothing measured depends on them).

:func:`pair_magnitude` picks, among a study's magnitude series, the one matching the analysed slices slice by
slice (position along the slice normal to 0.1 mm, frame of reference, orientation and field of view),
resampling bilinearly when only the grid differs; :func:`with_magnitude` attaches the images to the
:class:`~mre_core.io.elastogram.Elastogram` slices. Called by :mod:`mre_core.io.series` after the series to
measure has been chosen; the magnitude series stays in ``skipped`` as before.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from pydicom.dataset import Dataset

from mre_core.io.elastogram import Elastogram
from mre_core.io.series import ParsedSlice, _position_key

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- magnitude pairing
#
# Every MRE exam holds magnitude images of the elastogram's slices; they are the anatomy a reader sees
# when drawing the liver ROI (the elastogram itself shows stiffness, not the liver's outline, vessels or
# gallbladder), and the automated ROI methods name them as the images that carry the anatomical
# information ("Automated liver elasticity calculation for 3D MRE", the ALEC 3D-MRE paper). Pairing only
# reads the magnitude series: it stays in ``skipped``, and no stiffness value or confidence region
# depends on it.

#: the two fields of view (Rows x row spacing, Columns x column spacing) agree within this share to resample
FOV_TOLERANCE = 0.01
#: image orientation cosines agree within this to count as the same slice plane
_ORIENTATION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class MagnitudePairing:
    """The magnitude slice of each analysed slice (same order), or None with the reason in ``rule``."""

    slices: tuple[ParsedSlice, ...] | None = None
    series_uid: str | None = None
    rule: str = ""


@dataclass(frozen=True)
class _MagnitudeMatch:
    slices: tuple[ParsedSlice, ...]
    resample: bool  #: the grid differs from the elastogram's over the same field of view


def _series_label(series: Sequence[ParsedSlice]) -> str:
    h = series[0].header
    return f"series {h.get('SeriesNumber', '') or '?'} '{h.get('SeriesDescription', '') or ''}'"


def _series_number(series: Sequence[ParsedSlice]) -> int | None:
    try:
        return int(series[0].header.get("SeriesNumber"))
    except (TypeError, ValueError):
        return None


def _group_item(s: ParsedSlice, sequence: str) -> Dataset | None:
    """Item ``sequence`` of the functional groups of ``s``'s frame (per-frame first, else shared): the
    lookup ``reader._parse_frames`` makes for an Enhanced MR frame; None for a single-frame slice."""
    if s.frame_number is None:
        return None
    per = s.header.get("PerFrameFunctionalGroupsSequence") or []
    shared = s.header.get("SharedFunctionalGroupsSequence") or []
    index = s.frame_number - 1
    for groups in ([per[index]] if index < len(per) else []) + list(shared[:1]):
        if sequence in groups and groups[sequence].value:
            return groups[sequence].value[0]
    return None


def _plane(s: ParsedSlice) -> tuple[np.ndarray, np.ndarray] | None:
    """(ImagePositionPatient, ImageOrientationPatient) of one slice or frame, None when not recorded."""
    ipp, iop = s.header.get("ImagePositionPatient"), s.header.get("ImageOrientationPatient")
    if s.frame_number is not None:
        plane, orient = _group_item(s, "PlanePositionSequence"), _group_item(s, "PlaneOrientationSequence")
        ipp = plane.get("ImagePositionPatient") if plane is not None else None
        iop = orient.get("ImageOrientationPatient") if orient is not None else None
    if ipp is None or iop is None or len(ipp) != 3 or len(iop) != 6:
        return None
    return np.asarray(ipp, float), np.asarray(iop, float)


def field_of_view_mm(s: ParsedSlice) -> tuple[float, float]:
    """(Rows x row spacing, Columns x column spacing), mm: the extent the image covers."""
    rows, cols = s.stored.shape[:2]
    return rows * s.pixel_spacing_mm[0], cols * s.pixel_spacing_mm[1]


def same_field_of_view(a: ParsedSlice, b: ParsedSlice, tolerance: float = FOV_TOLERANCE) -> bool:
    """Both extents agree within ``tolerance`` (relative)."""
    return all(abs(x - y) <= tolerance * max(x, y) for x, y in zip(field_of_view_mm(a), field_of_view_mm(b)))


def _corner_mm(s: ParsedSlice, plane: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The outer corner of the first pixel (ImagePositionPatient is that pixel's centre): the same point
    for two grids over one field of view, whatever their pixel size."""
    ipp, iop = plane
    return ipp - 0.5 * s.pixel_spacing_mm[1] * iop[:3] - 0.5 * s.pixel_spacing_mm[0] * iop[3:]


def _plane_mismatch(elasto: ParsedSlice, mag: ParsedSlice) -> str | None:
    """Why ``mag`` does not cover the same plane area as ``elasto`` (orientation, or field of view shifted by
    more than one pixel of the coarser grid), else None. Unchecked when either lacks
    ImagePositionPatient/ImageOrientationPatient. One pixel, not half: whether a writer moves
    ImagePositionPatient to the first pixel's centre of a resampled grid is not something to rely on."""
    a, b = _plane(elasto), _plane(mag)
    if a is None or b is None:
        return None
    if np.max(np.abs(a[1] - b[1])) > _ORIENTATION_TOLERANCE:
        return "at the slice positions, but in another slice orientation"
    shift = float(np.linalg.norm(_corner_mm(elasto, a) - _corner_mm(mag, b)))
    if shift > max(*elasto.pixel_spacing_mm, *mag.pixel_spacing_mm):
        return f"at the slice positions, but its field of view is shifted {shift:.1f} mm"
    return None


def _grid_words(s: ParsedSlice) -> str:
    (rows, cols), (h, w) = s.stored.shape[:2], field_of_view_mm(s)
    return f"{rows}x{cols} over {h:.1f} x {w:.1f} mm"


def match_magnitude(analysed: Sequence[ParsedSlice], series: Sequence[ParsedSlice]) -> _MagnitudeMatch | str:
    """One magnitude series against the analysed slices: the match, or why it does not match.

    A slice matches by position along the slice normal (0.1 mm, :func:`_position_key`), within one
    frame of reference (when both record it, as :func:`_find_confidence_map` pairs), one image per
    position, the same orientation and field-of-view origin, and either the same grid and field of
    view or (``resample``) another grid over the same field of view (:data:`FOV_TOLERANCE`).
    """
    frame = str(analysed[0].header.get("FrameOfReferenceUID", ""))
    other = str(series[0].header.get("FrameOfReferenceUID", ""))
    if frame and other and frame != other:
        return "another frame of reference"
    counts = Counter(_position_key(m) for m in series)
    by_pos = {_position_key(m): m for m in series}
    keys = [_position_key(s) for s in analysed]
    crowded = [k for k in keys if counts[k] > 1]
    if crowded:
        return (f"{counts[crowded[0]]} images at slice position {crowded[0]} mm, where one magnitude image per slice "
                "is needed")
    missing = [k for k in keys if k not in by_pos]
    if missing:
        return f"{len(missing)} of {len(keys)} analysed slice positions missing"
    matched = tuple(by_pos[k] for k in keys)
    for s, m in zip(analysed, matched):
        if not same_field_of_view(s, m):
            return f"at the slice positions, but {_grid_words(m)}, the elastogram {_grid_words(s)}"
        mismatch = _plane_mismatch(s, m)
        if mismatch:
            return mismatch
    return _MagnitudeMatch(matched, resample=any(m.stored.shape != s.stored.shape for s, m in zip(analysed, matched)))


def _same_family(a: int, b: int) -> bool:
    """Series numbers of one acquisition: one hundred-block (GE 700-703), or a derived number built from the
    acquisition's (GE-style ``n x 100 + k`` or ``n x 10000 + k``, e.g. 8 -> 803, 4 -> 40105)."""
    if a >= 100 and b >= 100 and a // 100 == b // 100:
        return True
    lo, hi = sorted((a, b))
    return lo > 0 and any(hi // 10 ** k == lo for k in (2, 4))


def _preference(analysed_number: int | None, series: Sequence[ParsedSlice]) -> tuple[int, float, float]:
    """Sort key among matching magnitude series: same series-number family, closest number, lowest number."""
    n = _series_number(series)
    if n is None:
        return (1, float("inf"), float("inf"))
    if analysed_number is None:
        return (1, float("inf"), float(n))
    return (int(not _same_family(analysed_number, n)), float(abs(n - analysed_number)), float(n))


def _choice_words(best: tuple[int, float, float], runner_up: tuple[int, float, float]) -> str:
    if best[0] < runner_up[0]:
        return "the one of the same series-number family"
    if best[1] < runner_up[1]:
        return "the closest series number"
    return "the first by series number"


def pair_magnitude(analysed: Sequence[ParsedSlice], magnitudes: Sequence[Sequence[ParsedSlice]]) -> MagnitudePairing:
    """The magnitude slice of each analysed slice, from the study's series recognised as magnitude.

    Parameters
    ----------
    analysed : the chosen series' slices, sorted (the masked copy for a GE pair: same positions as the map)
    magnitudes : every series of the study whose role is ``magnitude`` (the GE raw phase/magnitude series
        is another role and is not used)

    Returns
    -------
    MagnitudePairing
        Series on the elastogram's own grid are preferred to those needing resampling; among several,
        :func:`_preference` decides and ``rule`` says so. Without a match, ``slices`` is None and ``rule``
        names each magnitude series with the reason it did not match.
    """
    if not magnitudes:
        return MagnitudePairing(rule="no magnitude series in this study")
    if not all(np.isfinite(s.position_mm) for s in analysed):
        return MagnitudePairing(rule="no magnitude series paired: the analysed slices record no slice position")
    ordered = sorted(magnitudes, key=lambda m: (_series_number(m) is None, _series_number(m) or 0))
    results = [(m, match_magnitude(analysed, m)) for m in ordered]
    matches = [(m, r) for m, r in results if isinstance(r, _MagnitudeMatch)]
    if not matches:
        reasons = "; ".join(f"{_series_label(m)} ({r})" for m, r in results)
        return MagnitudePairing(rule=f"no magnitude series matches the analysed slices: {reasons}")
    same_grid = [(m, r) for m, r in matches if not r.resample]
    pool = same_grid or matches
    number = _series_number(analysed)
    pool = sorted(pool, key=lambda mr: _preference(number, mr[0]))
    series, match = pool[0]
    frames = " (Enhanced MR frames)" if series[0].frame_number is not None else ""
    rule = f"magnitude {_series_label(series)}{frames}, paired by slice position"
    if match.resample:
        rule += (f", resampled bilinearly from {match.slices[0].stored.shape[0]}x{match.slices[0].stored.shape[1]} "
                 f"to the elastogram's {analysed[0].stored.shape[0]}x{analysed[0].stored.shape[1]} "
                 "(same field of view)")
    if len(pool) > 1:
        others = ", ".join(_series_label(m) for m, _ in pool[1:])
        why = _choice_words(_preference(number, series), _preference(number, pool[1][0]))
        rule += f"; of {len(pool)} matching magnitude series, {why} (also matched: {others})"
    elif len(matches) > len(pool):
        rule += "; preferred to a magnitude series on another grid"
    return MagnitudePairing(match.slices, str(series[0].header.get("SeriesInstanceUID", "")), rule)


def safe_pair_magnitude(analysed: Sequence[ParsedSlice],
                         magnitudes: Sequence[Sequence[ParsedSlice]]) -> MagnitudePairing:
    """:func:`pair_magnitude`, but a failure of the pairing never stops the study from being measured."""
    try:
        return pair_magnitude(analysed, magnitudes)
    except Exception as err:  # noqa: BLE001 - the magnitude is an extra; the measurement must go on
        logger.exception("magnitude pairing failed")
        return MagnitudePairing(rule=f"no magnitude series paired: pairing failed ({type(err).__name__}: {err})")


def _rescale(s: ParsedSlice) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept): the instance's, else the frame's PixelValueTransformationSequence,
    else (1, 0)."""
    for item in (s.header, _group_item(s, "PixelValueTransformationSequence")):
        if item is not None and ("RescaleSlope" in item or "RescaleIntercept" in item):
            return float(item.get("RescaleSlope", 1.0) or 1.0), float(item.get("RescaleIntercept", 0.0) or 0.0)
    return 1.0, 0.0


def magnitude_image(mag: ParsedSlice, shape: tuple[int, int]) -> np.ndarray:
    """float32 ``shape``: the magnitude's stored values after the rescale, on the elastogram's grid.

    A different grid over the same field of view is resampled with ``cv2.resize`` (INTER_LINEAR), which maps
    pixel centres (``src = (dst + 0.5) * scale - 0.5``): the geometry of two grids sharing one field of view.
    """
    slope, intercept = _rescale(mag)
    values = (mag.stored.astype(np.float64) * slope + intercept).astype(np.float32)
    if values.shape != tuple(shape):
        values = cv2.resize(values, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)
    return values


def with_magnitude(slices: tuple[Elastogram, ...], pairing: MagnitudePairing) -> tuple[Elastogram, ...]:
    """The elastogram slices with their magnitude attached (unchanged when none was paired)."""
    if pairing.slices is None:
        return slices
    return tuple(replace(e, magnitude=magnitude_image(m, e.shape), magnitude_source=m.source)
                 for e, m in zip(slices, pairing.slices, strict=True))
