"""Tests of mre_core.outputs.sr: TID 1500 SR round trip, references to SEG and sources, NaN study, dsrdump."""

from __future__ import annotations

import dataclasses
import io
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import Comprehensive3DSRStorage

from mre_core.analysis.pipeline import StudyResult, analyze_study, finish_study
from mre_core.app.exports import seg_and_sr_bytes
from mre_core.config import Settings
from mre_core.io.reader import read_inputs
from mre_core.model.network import load_model
from mre_core.outputs.seg import build_seg
from mre_core.outputs.sr import (
    ELASTICITY,
    PRIVATE_SCHEME,
    SR_SERIES_DESCRIPTION,
    SrExportError,
    build_sr,
    sr_bytes,
    write_sr,
)
from mre_core.outputs.sr_read import read_sr_summary
from tests.result_factory import COLS, ROWS, make_result

DSRDUMP = shutil.which("dsrdump")


def _items(ds: Dataset) -> Iterator[Dataset]:
    """Every content item of the tree, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


def _rois(result: StudyResult) -> set[str]:
    return {s.sop_uid for s in result.slices if s.roi.any()}


@pytest.fixture(scope="module")
def result() -> StudyResult:
    """Slices 2.9/3.1/3.3/3.45 kPa, slice index 1 has an empty ROI → study (2.9+3.3+3.45)/3 = 3.2167 kPa, F2."""
    return make_result(kpa_values=(2.9, 3.1, 3.3, 3.45))


@pytest.fixture(scope="module")
def seg(result: StudyResult) -> hd.seg.Segmentation:
    return build_seg(result)


@pytest.fixture()
def sr_path(result: StudyResult, seg: hd.seg.Segmentation, tmp_path: Path) -> Path:
    return write_sr(result, seg, tmp_path / "sr" / "report.dcm")


def test_sr_is_a_part10_comprehensive_3d_sr_readable_by_pydicom_and_highdicom(sr_path: Path) -> None:
    ds = pydicom.dcmread(sr_path)
    assert ds.file_meta.MediaStorageSOPClassUID == Comprehensive3DSRStorage and ds.Modality == "SR"
    sr = hd.sr.srread(sr_path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR) and isinstance(sr.content, hd.sr.MeasurementReport)
    study_groups = sr.content.get_image_measurement_groups()
    assert len(study_groups) == 1 and len(sr.content.get_planar_roi_measurement_groups()) == 3
    values = [m.value for m in study_groups[0].get_measurements(name=ELASTICITY)]
    assert values == pytest.approx([3.217, 3.2], abs=0.02)  # mean of slice means, area-weighted mean


def test_study_value_stage_and_slices_used_match_the_result(result: StudyResult, sr_path: Path) -> None:
    summary = read_sr_summary(sr_path)
    assert summary["stiffness_kpa"] == pytest.approx(result.stiffness_kpa, abs=1e-3)
    assert summary["stiffness_kpa_area_weighted"] == pytest.approx(result.stiffness.stiffness_kpa_area_weighted, abs=1e-3)
    assert (summary["stage"], summary["significant_fibrosis"], summary["n_slices_used"]) == ("F2", True, 3)
    assert (summary["model"], summary["model_sha256"]) == ("unet_resnext50_32x4d", "ab" * 32)
    assert summary["qc_flags"] == ["empty_roi"] and summary["no_value_reason"] == ""


def test_read_back_accepts_path_bytes_and_dataset(sr_path: Path) -> None:
    by_path = read_sr_summary(sr_path)
    assert read_sr_summary(sr_path.read_bytes()) == by_path == read_sr_summary(pydicom.dcmread(sr_path))


def test_sr_references_the_seg_and_every_slice_with_an_roi(result: StudyResult, seg: hd.seg.Segmentation,
                                                           sr_path: Path) -> None:
    summary = read_sr_summary(sr_path)
    assert summary["seg_sop_uid"] == seg.SOPInstanceUID
    assert set(summary["source_sop_uids"]) == _rois(result) and len(_rois(result)) == 3
    for s in summary["slices"]:  # the referenced SEG frame is the frame derived from that very slice
        frame = seg.PerFrameFunctionalGroupsSequence[s["seg_frame"] - 1]
        assert frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == s["sop_uid"]
    evidence = {sop_uid for _, _, sop_uid, _ in hd.sr.srread(sr_path).get_evidence()}
    assert evidence == {seg.SOPInstanceUID} | {s.sop_uid for s in result.slices}


def test_per_slice_statistics_and_exclusion(result: StudyResult) -> None:
    excluded = dataclasses.replace(result.slices[2], excluded=True)
    slices = [*result.slices[:2], excluded, *result.slices[3:]]
    reviewed = finish_study(result.study, slices, Settings(), result.model_name, result.model_sha256, "cpu", {})
    summary = read_sr_summary(sr_bytes(reviewed, build_seg(reviewed)))
    by_sop = {s["sop_uid"]: s for s in summary["slices"]}
    for s in reviewed.slices[2:]:
        got = by_sop[s.sop_uid]
        assert got["mean_kpa"] == pytest.approx(s.stats.mean_kpa, abs=1e-3)
        assert got["median_kpa"] == pytest.approx(s.stats.median_kpa, abs=1e-3)
        assert got["sd_kpa"] == pytest.approx(s.stats.sd_kpa, abs=1e-3)
        assert got["area_cm2"] == pytest.approx(s.stats.area_cm2, abs=0.01)
    assert by_sop[excluded.sop_uid]["excluded"] and not by_sop[reviewed.slices[3].sop_uid]["excluded"]
    assert summary["n_slices_used"] == 2 and summary["stiffness_kpa"] == pytest.approx((2.9 + 3.45) / 2, abs=1e-3)


def test_patient_study_and_document_flags(result: StudyResult, sr_path: Path) -> None:
    ds = pydicom.dcmread(sr_path)
    assert (ds.PatientID, ds.StudyInstanceUID, str(ds.PatientName)) == ("PAT001", result.study_uid, "Phantom^Ann")
    assert ds.SeriesInstanceUID != result.series_uid and ds.SeriesDescription == SR_SERIES_DESCRIPTION
    assert ds.Manufacturer == "MRE Liver Review"
    assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == ("COMPLETE", "UNVERIFIED", "PRELIMINARY")


@pytest.mark.filterwarnings("error::UserWarning")  # highdicom warns about a PN without a caret
@pytest.mark.parametrize(("given", "stored"), [("Reader^Rita", "Reader^Rita"), ("Dr Rita Reader", "Dr Rita Reader^")])
def test_verifying_observer_makes_a_verified_final_sr(given: str, stored: str, result: StudyResult,
                                                      seg: hd.seg.Segmentation) -> None:
    ds = pydicom.dcmread(io.BytesIO(sr_bytes(result, seg, verifying_observer=given)))
    summary = read_sr_summary(ds)
    assert (summary["verification_flag"], summary["preliminary_flag"]) == ("VERIFIED", "FINAL")
    assert summary["verifying_observer"] == stored and ds.SeriesDescription == "Liver stiffness report (reviewed)"
    assert ds.VerifyingObserverSequence[0].VerifyingOrganization == "not recorded"


def test_private_codes_are_declared_and_fit_their_vrs(sr_path: Path) -> None:
    ds = pydicom.dcmread(sr_path)
    assert [s.CodingSchemeDesignator for s in ds.CodingSchemeIdentificationSequence] == [PRIVATE_SCHEME]
    codes = [c for item in _items(ds) for key in ("ConceptNameCodeSequence", "ConceptCodeSequence")
             for c in item.get(key, []) if c.CodingSchemeDesignator == PRIVATE_SCHEME]  # fmt: skip
    assert codes and all(len(c.CodeValue) <= 16 and len(c.CodeMeaning) <= 64 for c in codes)


def test_no_usable_slice_gives_a_valid_sr_without_numeric_stiffness(tmp_path: Path) -> None:
    empty = make_result(rois=[np.zeros((ROWS, COLS), bool)] * 3)
    path = write_sr(empty, build_seg(empty), tmp_path / "empty.dcm")
    ds = pydicom.dcmread(path)
    numbers = [float(m.NumericValue) for i in _items(ds) for m in i.get("MeasuredValueSequence", [])]
    assert numbers == [0.0]  # only "number of slices used"; no Elasticity, no NaN
    summary = read_sr_summary(path)
    assert (summary["stiffness_kpa"], summary["stage"], summary["significant_fibrosis"]) == (None, "", None)
    assert "no usable ROI" in summary["no_value_reason"] and summary["slices"] == []
    assert summary["seg_sop_uid"]  # still referenced, as evidence
    assert isinstance(hd.sr.srread(path), hd.sr.Comprehensive3DSR)


def test_seg_of_another_study_is_refused(result: StudyResult) -> None:
    with pytest.raises(SrExportError, match="not a Segmentation of this study"):
        build_sr(result, build_seg(make_result()))


def test_exported_pair_sr_references_the_exported_seg(result: StudyResult) -> None:
    seg_data, sr_data = seg_and_sr_bytes(result)
    assert read_sr_summary(sr_data)["seg_sop_uid"] == pydicom.dcmread(io.BytesIO(seg_data)).SOPInstanceUID


@pytest.mark.skipif(DSRDUMP is None, reason="dcmtk dsrdump not installed")
@pytest.mark.parametrize("empty", [False, True], ids=["study", "no_usable_slice"])
def test_dsrdump_reads_the_sr(empty: bool, result: StudyResult, tmp_path: Path) -> None:
    r = make_result(rois=[np.zeros((ROWS, COLS), bool)] * 2) if empty else result
    path = write_sr(r, build_seg(r), tmp_path / "sr.dcm")
    done = subprocess.run([str(DSRDUMP), str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Imaging Measurement Report" in done.stdout
    if not empty:
        assert f'"{round(r.stiffness_kpa, 3)}" (kPa,UCUM' in done.stdout


def test_phantom_study_sr_matches_the_analysis(phantom_studies: dict[str, Path], all_liver_weights: Path) -> None:
    settings = Settings(weights_dir=all_liver_weights, model_name="all_liver", device="cpu", min_component_area_mm2=0)
    study = read_inputs([phantom_studies["siemens_hatch"]], settings).studies[0]
    analysed = analyze_study(study, load_model(all_liver_weights, "all_liver", "cpu"), settings)
    assert math.isfinite(analysed.stiffness_kpa)
    seg = build_seg(analysed)
    summary = read_sr_summary(sr_bytes(analysed, seg))
    assert summary["stiffness_kpa"] == pytest.approx(analysed.stiffness_kpa, abs=1e-3)
    assert summary["stage"] == analysed.stage.stage.label and summary["seg_sop_uid"] == seg.SOPInstanceUID
    assert set(summary["source_sop_uids"]) == _rois(analysed)
    assert summary["patient_id"] == analysed.patient_id and summary["study_uid"] == analysed.study_uid


@pytest.mark.filterwarnings("error::UserWarning")  # pydicom warns when a character cannot be encoded
def test_qc_sentences_keep_their_dashes_in_utf8(result: StudyResult) -> None:
    from mre_core.analysis.stiffness import QcFlag

    flagged = dataclasses.replace(result.slices[0], qc_flags=(QcFlag.ROI_SCATTERED,), excluded=True)
    reviewed = finish_study(result.study, [flagged, *result.slices[1:]], Settings(), result.model_name,
                            result.model_sha256, "cpu", {})
    ds = pydicom.dcmread(io.BytesIO(sr_bytes(reviewed, build_seg(reviewed))))
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    texts = [str(item.TextValue) for item in _items(ds) if "TextValue" in item]
    assert any("Automatic ROI unreliable — draw or check it" in t for t in texts), texts
    assert not any("?" in t.replace("?)", "") for t in texts if "unreliable" in t)
    assert str(ds.PatientName) == "Phantom^Ann"
