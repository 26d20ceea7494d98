"""DICOM SEG of the final ROI.

:func:`build_seg` / :func:`write_seg`: a BINARY Segmentation with one segment ("Liver ROI") and
**one frame per source slice**, empty ROIs included (``omit_empty_frames=False``), so a study whose
ROIs are all empty still gives a valid SEG whose frames are all zero. The source instances are
referenced through ``Elastogram.header`` (a pydicom Dataset without PixelData: highdicom only needs
the metadata). highdicom reads several type-2 patient/study attributes that real exports may lack;
:func:`seg_source_header` fills them with empty values on a copy (and SliceThickness from the slice
gap) so that the SEG can still be built.
"""

from __future__ import annotations

import copy
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from mre_core.analysis.pipeline import StudyResult
from mre_core.io.elastogram import Elastogram
from mre_core.outputs.tables import elastograms_by_sop

SEG_MANUFACTURER = "MRE Liver Review"
SEG_SERIES_DESCRIPTION = "Liver ROI (auto)"
SEG_SERIES_NUMBER = 9901
SEG_SEGMENT_LABEL = "Liver ROI"

#: Type-2 attributes highdicom copies from the source into the SEG; filled with an empty value when absent.
_TYPE2_SOURCE_ATTRIBUTES = (
    "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName",
)  # fmt: skip


class SegExportError(ValueError):
    """A DICOM SEG cannot be built from a result; the message says what is missing."""


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
    by_sop, gap = elastograms_by_sop(result), _slice_gap_mm(result)
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
