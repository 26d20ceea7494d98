"""Hand-built :class:`~mre_core.analysis.pipeline.StudyResult` objects with real pydicom headers.

For tests of the report, store and app layers that need a result without running the
reader or the model. Slices are 204 x 256, 1.5625 mm pixels, axial, 8 mm apart; each
slice's kPa map is a constant value inside a body rectangle, so ROI statistics are exact.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage, generate_uid

from mre_core.analysis.pipeline import StudyResult, finish_study
from mre_core.analysis.stiffness import QcFlag, SliceResult, area_cm2, roi_stats
from mre_core.config import Settings
from mre_core.io.elastogram import ConfidenceEncoding, Elastogram, ElastogramSeries, StudyInput, VendorProfile

ROWS, COLS = 204, 256
SPACING_MM = (1.5625, 1.5625)
GAP_MM = 8.0


def mr_header(
    i: int, study_uid: str, series_uid: str, frame_uid: str, patient_id: str, minimal: bool = False
) -> Dataset:
    """An MR Image Storage header (no PixelData) for slice ``i`` of a series.

    ``minimal=True`` leaves out the type-2 patient/study attributes and SliceThickness,
    as some scanner exports do.
    """
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.Modality, ds.PatientID, ds.InstanceNumber = "MR", patient_id, i + 1
    ds.Rows, ds.Columns, ds.PixelSpacing = ROWS, COLS, list(SPACING_MM)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-200.0, -159.375, i * GAP_MM]
    ds.Manufacturer, ds.SeriesDescription = "SIEMENS", "MRE_ELASTOGRAM_CONF95"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    if not minimal:
        ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "Phantom^Ann", "19700101", "F"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20250301", "101500", "1", "A1"
        ds.ReferringPhysicianName, ds.SliceThickness = "", GAP_MM
    return ds


def body_and_confidence() -> tuple[np.ndarray, np.ndarray]:
    """Body rectangle (finite kPa) and confidence region (a smaller rectangle), bool [204, 256]."""
    body = np.zeros((ROWS, COLS), bool)
    body[30:180, 30:230] = True
    conf = np.zeros_like(body)
    conf[50:160, 60:200] = True
    return body, conf


def elastogram(i: int, kpa_value: float, header: Dataset, patient_id: str) -> Elastogram:
    """Slice ``i``: constant ``kpa_value`` in the body, NaN outside."""
    body, conf = body_and_confidence()
    kpa = np.where(body, np.float32(kpa_value), np.float32(np.nan)).astype(np.float32)
    return Elastogram(
        kpa=kpa, confidence=conf, pixel_spacing_mm=SPACING_MM, sop_uid=str(header.SOPInstanceUID),
        series_uid=str(header.SeriesInstanceUID), study_uid=str(header.StudyInstanceUID), patient_id=patient_id,
        instance_number=i + 1, position_mm=i * GAP_MM, profile=VendorProfile.SIEMENS, kpa_per_unit=0.01,
        encoding=ConfidenceEncoding.ZERO_FILL, source=f"dicom/{patient_id}/elasto/IM{i + 1:04d}", header=header,
    )  # fmt: skip


def slice_result(e: Elastogram, roi: np.ndarray) -> SliceResult:
    """A SliceResult for ``roi`` (bool [H,W]) on ``e``; an empty ROI is flagged and excluded."""
    stats = roi_stats(e.kpa, roi, e.pixel_spacing_mm)
    empty = stats.n_pixels == 0
    return SliceResult(
        sop_uid=e.sop_uid, instance_number=e.instance_number, position_mm=e.position_mm, roi=roi,
        predicted_mask=roi.copy(), stats=stats,
        confidence_area_cm2=area_cm2(int(e.confidence.sum()), e.pixel_spacing_mm),
        qc_flags=(QcFlag.EMPTY_ROI,) if empty else (), excluded=empty,
    )  # fmt: skip


def default_rois(n: int) -> list[np.ndarray]:
    """Different rectangular ROIs inside the confidence region; slice 1 (if any) is empty."""
    rois = []
    for i in range(n):
        roi = np.zeros((ROWS, COLS), bool)
        if i != 1:
            roi[60 + 5 * i : 120 + 3 * i, 70 + 7 * i : 150 + 2 * i] = True
        rois.append(roi)
    return rois


def make_result(
    kpa_values: Sequence[float] = (2.9, 3.1, 2.9, 3.2),
    rois: Sequence[np.ndarray] | None = None,
    patient_id: str = "PAT001",
    minimal_headers: bool = False,
    settings: Settings | None = None,
) -> StudyResult:
    """A complete StudyResult: one slice per ``kpa_values`` entry, ROIs from ``default_rois``."""
    n = len(kpa_values)
    rois = list(rois) if rois is not None else default_rois(n)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    headers = [mr_header(i, study_uid, series_uid, frame_uid, patient_id, minimal_headers) for i in range(n)]
    slices = tuple(elastogram(i, v, h, patient_id) for i, (v, h) in enumerate(zip(kpa_values, headers)))
    series = ElastogramSeries(series_uid, "MRE_ELASTOGRAM_CONF95", "SIEMENS", slices)
    meta = {"PatientName": "Phantom^Ann", "StudyDate": "20250301", "PatientSex": "F"}
    study = StudyInput(patient_id, study_uid, series, meta)
    results = [slice_result(e, r) for e, r in zip(slices, rois)]
    timings = {"preprocess": 0.01, "model": 0.2, "post": 0.01}
    return finish_study(study, results, settings or Settings(), "unet_resnext50_32x4d", "ab" * 32, "cpu", timings)
