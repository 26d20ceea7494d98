"""Tests of mre_core.outputs.tables: CSV tables, DICOM SEG round trip, overlay PNG."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from mre_core.analysis.pipeline import StudyResult
from mre_core.config import Settings
from mre_core.io.elastogram import SkippedFile
from mre_core.outputs.overlay import overlay_png
from mre_core.outputs.seg import SEG_SERIES_NUMBER, SegExportError, build_seg, write_seg
from mre_core.outputs.tables import SKIPPED_COLUMNS, SLICE_COLUMNS, STUDY_COLUMNS, write_csvs
from mre_core.outputs.wording import INTENDED_USE
from tests.result_factory import COLS, ROWS, make_result


def _read_csv(path: Path) -> pd.DataFrame:
    """CSV as text cells, empty cells as ``""``, so tests see exactly what a user sees."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _seg_round_trip(result: StudyResult) -> hd.seg.Segmentation:
    buffer = io.BytesIO()
    build_seg(result).save_as(buffer)
    buffer.seek(0)
    return hd.seg.Segmentation.from_dataset(pydicom.dcmread(buffer))


def _decoded_masks(seg: hd.seg.Segmentation, result: StudyResult) -> np.ndarray:
    uids = [s.sop_uid for s in result.slices]
    return seg.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0].astype(bool)


def _all_empty(result: StudyResult) -> StudyResult:
    empty = [np.zeros((ROWS, COLS), bool)] * len(result.slices)
    return make_result(rois=empty)


@pytest.fixture(scope="module")
def result() -> StudyResult:
    """Four slices at 2.9/3.1/2.9/3.2 kPa; slice 2 (index 1) has an empty ROI → study 3.0 kPa."""
    return make_result()


def test_studies_csv_columns_and_values(result: StudyResult, tmp_path: Path) -> None:
    paths = write_csvs([result], [], tmp_path)
    studies = _read_csv(paths["studies"])
    assert tuple(studies.columns) == STUDY_COLUMNS
    row = studies.iloc[0]
    assert (row.stage, row.significant_fibrosis, row.staging_table) == ("F2", "True", "paper")
    assert (row.stiffness_kpa, row.n_slices, row.n_slices_used) == ("3.0", "4", "3")
    assert (row.qc_flags, row.profile, row.confidence_encoding) == ("empty_roi", "siemens", "zero_fill")
    assert (row.patient_name, row.study_date, row.manufacturer) == ("Phantom^Ann", "20250301", "SIEMENS")
    assert row.model_sha256 == "ab" * 32 and row.runtime_s != ""


def test_study_and_slice_flags_are_joined_with_semicolons(tmp_path: Path) -> None:
    result = make_result(settings=Settings(min_slices=4))
    studies = _read_csv(write_csvs([result], [], tmp_path)["studies"])
    assert studies.iloc[0].qc_flags == "few_slices;empty_roi"


def test_no_usable_slice_leaves_value_and_stage_cells_empty(result: StudyResult, tmp_path: Path) -> None:
    studies = _read_csv(write_csvs([_all_empty(result)], [], tmp_path)["studies"])
    row = studies.iloc[0]
    assert (row.stiffness_kpa, row.stage, row.significant_fibrosis) == ("", "", "")
    assert row.qc_flags == "no_usable_slice;empty_roi" and row.n_slices_used == "0"


def test_slices_csv_one_row_per_slice_kpa_rounded_empty_roi_blank(result: StudyResult, tmp_path: Path) -> None:
    slices = _read_csv(write_csvs([result], [], tmp_path)["slices"])
    assert tuple(slices.columns) == SLICE_COLUMNS and len(slices) == 4
    # one numbering everywhere: slice 1 is the most superior (largest z), instance number beside it
    by_z = sorted(result.slices, key=lambda s: -s.position_mm)
    assert list(slices.sop_uid) == [s.sop_uid for s in by_z] and list(slices.slice_number) == ["1", "2", "3", "4"]
    assert [float(z) for z in slices.position_mm] == sorted((float(z) for z in slices.position_mm), reverse=True)
    assert list(slices.mean_kpa) == ["2.9", "", "2.9", "3.2"][::-1]
    assert list(slices.excluded) == ["False", "True", "False", "False"][::-1]
    assert slices.qc_flags[2] == "empty_roi" and slices.n_pixels[2] == "0"
    assert slices.source[3] == "dicom/PAT001/elasto/IM0001"
    n_pixels = int(result.slices[0].roi.sum())
    assert slices.n_pixels[3] == str(n_pixels)
    assert float(slices.area_cm2[3]) == pytest.approx(n_pixels * 1.5625**2 / 100, abs=0.005)


def test_skipped_csv_has_header_even_when_empty(tmp_path: Path) -> None:
    paths = write_csvs([], [], tmp_path)
    assert paths["skipped"].read_text(encoding="utf-8").splitlines() == [",".join(SKIPPED_COLUMNS)]
    assert paths["studies"].read_text(encoding="utf-8").strip() == ",".join(STUDY_COLUMNS)


def test_skipped_csv_keeps_reasons_utf8(tmp_path: Path) -> None:
    skipped = [SkippedFile("a/b.dcm", "elastogram without 95 % confidence map — ignored")]
    table = _read_csv(write_csvs([], skipped, tmp_path)["skipped"])
    row = table.to_dict("records")[0]
    assert (row["file"], row["reason"], row["files"], row["n_files"]) == ("a/b.dcm", skipped[0].reason, "a/b.dcm", "1")


def test_seg_round_trip_references_sources_and_masks_are_exact(result: StudyResult) -> None:
    seg = _seg_round_trip(result)
    referenced = {ref.ReferencedSOPInstanceUID for ref in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {s.sop_uid for s in result.slices}
    assert (seg.Manufacturer, seg.SeriesDescription, seg.SeriesNumber) == (
        "MRE Liver Review", "Liver ROI (auto)", SEG_SERIES_NUMBER,
    )  # fmt: skip
    assert seg.SeriesInstanceUID != result.series_uid and seg.StudyInstanceUID == result.study_uid
    decoded = _decoded_masks(seg, result)
    expected = np.stack([s.roi for s in result.slices])
    assert not expected[1].any() and np.array_equal(decoded, expected)


def test_seg_segment_is_liver_automatic_with_model_identification(result: StudyResult) -> None:
    seg = _seg_round_trip(result)
    desc = seg.get_segment_description(1)
    assert desc.segment_label == "Liver ROI" and desc.algorithm_type.value == "AUTOMATIC"
    assert desc.segmented_property_type == hd.sr.CodedConcept("10200004", "SCT", "Liver")
    algorithm = desc.algorithm_identification[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("unet_resnext50_32x4d", "ab" * 32)


def test_seg_keeps_one_frame_per_slice_when_all_rois_empty(result: StudyResult) -> None:
    empty = _all_empty(result)
    seg = _seg_round_trip(empty)
    assert seg.NumberOfFrames == len(empty.slices)
    assert not _decoded_masks(seg, empty).any()


def test_seg_fills_missing_type2_attributes_without_touching_headers() -> None:
    result = make_result(minimal_headers=True)
    seg = _seg_round_trip(result)
    assert np.array_equal(_decoded_masks(seg, result), np.stack([s.roi for s in result.slices]))
    assert "PatientName" not in result.study.series.slices[0].header


def test_seg_without_header_raises_error_naming_the_cause(result: StudyResult) -> None:
    bare = dataclasses.replace(result.study.series.slices[0], header=None)
    series = dataclasses.replace(result.study.series, slices=(bare, *result.study.series.slices[1:]))
    broken = dataclasses.replace(result, study=dataclasses.replace(result.study, series=series))
    with pytest.raises(SegExportError, match="no DICOM header"):
        build_seg(broken)


def test_write_seg_writes_a_dicom_file(result: StudyResult, tmp_path: Path) -> None:
    path = write_seg(result, tmp_path / "seg" / "liver_seg.dcm")
    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"


def test_overlay_png_is_a_grid_of_scaled_slices(result: StudyResult, tmp_path: Path) -> None:
    path = overlay_png(result, tmp_path / "overlay.png", columns=2, scale=1)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width == 2 * COLS and image.height > 2 * ROWS


def test_intended_use_states_research_synthetic_and_not_certified() -> None:
    text = INTENDED_USE.lower()
    assert "research" in text and "synthetic" in text and "not a certified medical device" in text
