"""Reports of analysed studies: CSV tables, a DICOM SEG of the ROI, an overlay PNG.

Tables
    :func:`studies_table` (one row per study), :func:`slices_table` (one row per
    slice) and :func:`skipped_table` (files left out, with the reason);
    :func:`write_csvs` writes all three as UTF-8 CSV with a header row, even when empty.
    kPa values are rounded to 3 decimals, areas to 2; a missing value (no usable
    slice, no stage) is an empty cell, never a number.
DICOM SEG
    :func:`build_seg` / :func:`write_seg`: a BINARY Segmentation with one segment
    ("Liver ROI") and **one frame per source slice**, empty ROIs included
    (``omit_empty_frames=False``), so a study whose ROIs are all empty still gives a
    valid SEG whose frames are all zero. The source instances are referenced through
    ``Elastogram.header`` (a pydicom Dataset without PixelData: highdicom only needs
    the metadata). highdicom reads several type-2 patient/study attributes that real
    exports may lack; :func:`seg_source_header` fills them with empty values on a
    copy (and SliceThickness from the slice gap) so that the SEG can still be built.
Overlay
    :func:`overlay_png`: a grid of slices, gray elastogram 0-8 kPa, the 95 %
    confidence region outlined in yellow, the ROI filled in red, mean kPa per slice;
    :func:`overlay_tiles` gives the same tiles and captions as arrays (for the PDF).

:data:`INTENDED_USE` is the one statement of intended use for the app and the PDF.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Sequence

import highdicom as hd
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from mre_core.elastogram import Elastogram, SkippedFile
from mre_core.pipeline import StudyResult
from mre_core.stiffness import QcFlag, SliceResult

INTENDED_USE = (
    "MRE Liver Review is research and decision-support software. It is not a certified medical device and "
    "must not be used as the sole basis for a diagnosis. Its segmentation model was trained on synthetic "
    "phantoms, not on patient data; every ROI, stiffness value and stage must be checked by a qualified reader."
)

STUDY_COLUMNS: tuple[str, ...] = (
    "patient_id", "study_uid", "series_uid", "n_slices", "n_slices_used", "stiffness_kpa",
    "stiffness_kpa_area_weighted", "slice_cv", "stage", "significant_fibrosis", "staging_table", "qc_flags",
    "model_name", "model_sha256", "profile", "kpa_per_unit", "confidence_encoding", "device", "runtime_s",
    "patient_name", "study_date", "manufacturer", "series_description",
)  # fmt: skip
SLICE_COLUMNS: tuple[str, ...] = (
    "patient_id", "study_uid", "series_uid", "sop_uid", "instance_number", "position_mm", "source", "excluded",
    "n_pixels", "area_cm2", "mean_kpa", "median_kpa", "sd_kpa", "iqr_kpa", "p25_kpa", "p75_kpa",
    "confidence_area_cm2", "qc_flags",
)  # fmt: skip
SKIPPED_COLUMNS: tuple[str, ...] = ("file", "reason")

SEG_MANUFACTURER = "MRE Liver Review"
SEG_SERIES_DESCRIPTION = "Liver ROI (auto)"
SEG_SERIES_NUMBER = 9901
SEG_SEGMENT_LABEL = "Liver ROI"
OVERLAY_WINDOW_KPA = (0.0, 8.0)

#: Type-2 attributes highdicom copies from the source into the SEG; filled with an empty value when absent.
_TYPE2_SOURCE_ATTRIBUTES = (
    "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName",
)  # fmt: skip


class SegExportError(ValueError):
    """A DICOM SEG cannot be built from a result; the message says what is missing."""


# --------------------------------------------------------------------------- tables


def _kpa(value: float) -> float:
    """Round a kPa (or other 3-decimal) value; NaN stays NaN (an empty CSV cell)."""
    return round(float(value), 3) if math.isfinite(value) else math.nan


def _flags(flags: Sequence[QcFlag]) -> str:
    return ";".join(f.value for f in flags)


def _study_row(result: StudyResult) -> dict[str, Any]:
    series, stiff, staged = result.study.series, result.stiffness, result.stage
    first = series.slices[0] if series.slices else None
    meta = result.study.meta
    return {
        "patient_id": result.patient_id,
        "study_uid": result.study_uid,
        "series_uid": result.series_uid,
        "n_slices": len(result.slices),
        "n_slices_used": stiff.n_slices_used,
        "stiffness_kpa": _kpa(stiff.stiffness_kpa),
        "stiffness_kpa_area_weighted": _kpa(stiff.stiffness_kpa_area_weighted),
        "slice_cv": round(stiff.slice_cv, 4) if math.isfinite(stiff.slice_cv) else math.nan,
        "stage": staged.stage.label if staged else "",
        "significant_fibrosis": bool(staged.significant_fibrosis) if staged else None,
        "staging_table": staged.table if staged else result.settings.staging.name,
        "qc_flags": _flags(result.qc_flags),
        "model_name": result.model_name,
        "model_sha256": result.model_sha256,
        "profile": first.profile.value if first else "",
        "kpa_per_unit": first.kpa_per_unit if first else math.nan,
        "confidence_encoding": first.encoding.value if first else "",
        "device": result.device,
        "runtime_s": round(result.runtime_s, 3),
        "patient_name": str(meta.get("PatientName", "")),
        "study_date": str(meta.get("StudyDate", "")),
        "manufacturer": series.manufacturer,
        "series_description": series.description,
    }


def studies_table(results: Sequence[StudyResult]) -> pd.DataFrame:
    """One row per study, columns :data:`STUDY_COLUMNS`.

    Parameters
    ----------
    results : sequence of StudyResult

    Returns
    -------
    pandas.DataFrame
        ``stiffness_kpa`` is the mean of slice means (kPa, 3 decimals), NaN when no
        slice was usable; ``stage`` is ``"F0"``..``"F4"`` or ``""``;
        ``significant_fibrosis`` is a bool or ``None``; ``qc_flags`` joins flag values with ``;``.
    """
    return pd.DataFrame([_study_row(r) for r in results], columns=list(STUDY_COLUMNS))


def _elastograms_by_sop(result: StudyResult) -> dict[str, Elastogram]:
    return {e.sop_uid: e for e in result.study.series.slices}


def _slice_row(result: StudyResult, s: SliceResult, source: Elastogram | None) -> dict[str, Any]:
    st = s.stats
    return {
        "patient_id": result.patient_id,
        "study_uid": result.study_uid,
        "series_uid": result.series_uid,
        "sop_uid": s.sop_uid,
        "instance_number": s.instance_number,
        "position_mm": round(s.position_mm, 2),
        "source": source.source if source else "",
        "excluded": bool(s.excluded),
        "n_pixels": st.n_pixels,
        "area_cm2": round(st.area_cm2, 2),
        "mean_kpa": _kpa(st.mean_kpa),
        "median_kpa": _kpa(st.median_kpa),
        "sd_kpa": _kpa(st.sd_kpa),
        "iqr_kpa": _kpa(st.iqr_kpa),
        "p25_kpa": _kpa(st.p25_kpa),
        "p75_kpa": _kpa(st.p75_kpa),
        "confidence_area_cm2": round(s.confidence_area_cm2, 2),
        "qc_flags": _flags(s.qc_flags),
    }


def slices_table(results: Sequence[StudyResult]) -> pd.DataFrame:
    """One row per slice of every study, columns :data:`SLICE_COLUMNS`.

    kPa statistics are NaN (empty cells) for an empty ROI; ``source`` is the file
    the slice came from.
    """
    rows = []
    for r in results:
        by_sop = _elastograms_by_sop(r)
        rows.extend(_slice_row(r, s, by_sop.get(s.sop_uid)) for s in r.slices)
    return pd.DataFrame(rows, columns=list(SLICE_COLUMNS))


def skipped_table(skipped: Sequence[SkippedFile]) -> pd.DataFrame:
    """Files (or series) not analysed, columns ``file, reason`` (also when there are none).

    >>> list(skipped_table([]).columns)
    ['file', 'reason']
    """
    return pd.DataFrame([(s.file, s.reason) for s in skipped], columns=list(SKIPPED_COLUMNS))


def write_csvs(results: Sequence[StudyResult], skipped: Sequence[SkippedFile], out_dir: Path) -> dict[str, Path]:
    """Write ``studies.csv``, ``slices.csv`` and ``skipped.csv`` (UTF-8, header always present).

    Parameters
    ----------
    results, skipped
        What the analysis produced and what it left out.
    out_dir : Path
        Created if missing.

    Returns
    -------
    dict
        ``{"studies": path, "slices": path, "skipped": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"studies": studies_table(results), "slices": slices_table(results), "skipped": skipped_table(skipped)}
    paths = {}
    for name, table in tables.items():
        paths[name] = out_dir / f"{name}.csv"
        table.to_csv(paths[name], index=False, encoding="utf-8")
    return paths


# --------------------------------------------------------------------------- DICOM SEG


def _slice_gap_mm(result: StudyResult) -> float | None:
    positions = sorted({e.position_mm for e in result.study.series.slices})
    gaps = np.diff(positions)
    return float(np.median(gaps)) if gaps.size and np.median(gaps) > 0 else None


def seg_source_header(elastogram: Elastogram, slice_thickness_mm: float | None = None) -> Dataset:
    """A copy of the slice's header with what highdicom needs to reference it.

    Missing type-2 patient/study attributes get an empty value; a missing or empty
    SliceThickness gets ``slice_thickness_mm`` (the slice gap). The original header is
    never modified.

    Raises
    ------
    SegExportError
        If there is no header, or it disagrees with the ROI's grid.
    """
    header = elastogram.header
    if not isinstance(header, Dataset):
        raise SegExportError(f"slice {elastogram.sop_uid}: no DICOM header kept by the reader; cannot build a SEG")
    ds = copy.deepcopy(header)
    if "PixelData" in ds:
        del ds.PixelData
    for keyword in _TYPE2_SOURCE_ATTRIBUTES:
        if keyword not in ds:
            setattr(ds, keyword, None)
    if ds.get("SliceThickness") in (None, "") and slice_thickness_mm:
        ds.SliceThickness = round(slice_thickness_mm, 4)
    if (int(ds.get("Rows", -1)), int(ds.get("Columns", -1))) != elastogram.shape:
        raise SegExportError(f"slice {elastogram.sop_uid}: header Rows/Columns differ from the pixel grid")
    return ds


def _segment_description(result: StudyResult) -> hd.seg.SegmentDescription:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=result.model_name[:64],
        version=result.model_sha256[:64] or "unknown",
        family=codes.cid7162.ArtificialIntelligence,
    )
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEG_SEGMENT_LABEL,
        segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Liver,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )


def source_headers(result: StudyResult) -> list[Dataset]:
    """The :func:`seg_source_header` of every slice, in slice order (also the SR's evidence).

    Raises
    ------
    SegExportError
        If the study has no slices, or a slice has no usable header.
    """
    if not result.slices:
        raise SegExportError(f"study {result.study_uid}: no slices, nothing to segment")
    by_sop, gap = _elastograms_by_sop(result), _slice_gap_mm(result)
    missing = [s.sop_uid for s in result.slices if s.sop_uid not in by_sop]
    if missing:
        raise SegExportError(f"study {result.study_uid}: slices {missing} are not in the elastogram series")
    return [seg_source_header(by_sop[s.sop_uid], gap) for s in result.slices]


def _seg_inputs(result: StudyResult) -> tuple[list[Dataset], np.ndarray]:
    """Source headers and the bool ROI stack [n, rows, cols], in slice order."""
    headers = source_headers(result)
    masks = np.stack([np.asarray(s.roi, dtype=bool) for s in result.slices])
    return headers, masks


def build_seg(result: StudyResult) -> hd.seg.Segmentation:
    """A BINARY DICOM SEG of the final ROI, one frame per source slice.

    Frames are kept for empty ROIs too, so frame ``i`` always refers to slice ``i``; a
    study whose ROIs are all empty gives a SEG whose frames are all zero, not an error.

    Raises
    ------
    SegExportError
        If a slice has no usable header (see :func:`seg_source_header`).
    """
    headers, masks = _seg_inputs(result)
    return hd.seg.Segmentation(
        source_images=headers,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment_description(result)],
        series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=SEG_MANUFACTURER,
        manufacturer_model_name=result.model_name[:64],
        software_versions=f"model sha256 {result.model_sha256[:16]}",
        device_serial_number="none",
        series_description=SEG_SERIES_DESCRIPTION,
        content_label="LIVER_ROI",
        content_description="Liver ROI inside the 95% confidence region",
        omit_empty_frames=False,
    )


def write_seg(result: StudyResult, path: Path) -> Path:
    """Build the SEG (:func:`build_seg`) and write it to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_seg(result).save_as(path, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------- overlay PNG


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


def _caption(s: SliceResult) -> str:
    head = f"#{s.instance_number} z={s.position_mm:.1f} mm"
    if s.stats.n_pixels == 0:
        return f"{head}: no ROI"
    text = f"{head}: {s.stats.mean_kpa:.2f} kPa"
    return f"{text} (excluded)" if s.excluded else text


def overlay_tiles(result: StudyResult) -> list[tuple[np.ndarray, str]]:
    """One ``(uint8 RGB [H,W,3], caption)`` per slice that has an elastogram, in slice order.

    The colours of :func:`overlay_png` (also used by the PDF report); the caption gives
    instance number, z (mm) and the slice mean kPa, or "no ROI".
    """
    by_sop = _elastograms_by_sop(result)
    return [(_tile(by_sop[s.sop_uid], s), _caption(s)) for s in result.slices if s.sop_uid in by_sop]


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
