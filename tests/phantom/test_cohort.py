"""Tests for mre_core.phantom.cohort: determinism, truth consistency, encodings, headers, cohort plan."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.pixels import apply_rescale
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless
from scipy import ndimage as ndi

from mre_core.analysis.staging import PAPER_TABLE, FibrosisStage
from mre_core.io.elastogram import ConfidenceEncoding as E
from mre_core.phantom import cohort
from mre_core.phantom import study as ph
from mre_core.phantom.writers import SeriesRole

SPACING_MM = 400 / 256


def _read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _datasets_by_series(patient_dir: Path) -> dict[str, list[pydicom.Dataset]]:
    out: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted(p for p in patient_dir.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path)
        out.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return out


@pytest.fixture(scope="module")
def studies() -> list[ph.PhantomStudy]:
    specs = [ph.StudySpec("siemens", E.CROSS_HATCH, FibrosisStage.F1, 5),
             ph.StudySpec("ge", E.PAIRED_SERIES, FibrosisStage.F4, 4, rows=256),
             ph.StudySpec("siemens", E.ZERO_FILL, FibrosisStage.F2, 4),
             ph.StudySpec("ge", E.ZERO_FILL, FibrosisStage.F0, 5)]
    return [ph.generate_study(7, i, spec) for i, spec in enumerate(specs)]


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path) -> None:
    a = cohort.write_demo_study(tmp_path / "a", seed=3, n_slices=4)
    b = cohort.write_demo_study(tmp_path / "b", seed=3, n_slices=4)
    cohort.write_demo_study(tmp_path / "c", seed=4, n_slices=4)
    assert a.name == b.name == "P0001"
    tree_a, tree_b = _read_tree(tmp_path / "a"), _read_tree(tmp_path / "b")
    assert tree_a == tree_b and len(tree_a) > 15
    truth_a = np.load(tmp_path / "a" / "truth" / "P0001.npz")
    truth_c = np.load(tmp_path / "c" / "truth" / "P0001.npz")
    assert not set(truth_a["sop_uids"]) & set(truth_c["sop_uids"])
    assert truth_a["true_kpa"].shape != truth_c["true_kpa"].shape or not np.array_equal(
        truth_a["true_kpa"], truth_c["true_kpa"])


def test_truth_masks_are_nested_and_roi_keeps_its_margins_in_mm(studies: list[ph.PhantomStudy]) -> None:
    for study in studies:
        t = study.truth
        body = t.tissue_labels > 0
        assert not (t.expert_roi & ~t.liver_mask).any()
        assert not (t.liver_mask & ~body).any()
        assert not (t.expert_roi & ~t.confidence).any()
        assert not (t.confidence & ~body).any()
        for liver, roi in zip(t.liver_mask, t.expert_roi):
            if roi.any():
                assert ndi.distance_transform_edt(liver)[roi].min() * SPACING_MM >= 5.0
        assert t.expert_roi.any(), "every study has at least one slice with an expert ROI"


def test_manual_kpa_is_mean_of_stored_values_read_back_with_slope_and_unit(tmp_path: Path) -> None:
    params = ph.PhantomParams(slope2_probability=1.0, transfer_syntax_mix=((str(JPEGLSLossless), 1.0),))
    for i, (vendor, encoding) in enumerate((("siemens", E.CROSS_HATCH), ("ge", E.PAIRED_SERIES))):
        study = ph.generate_study(11, i, ph.StudySpec(vendor, encoding, FibrosisStage.F3, 4, params=params))
        ph.write_study(study, tmp_path)
        truth = np.load(tmp_path / "truth" / f"{study.patient_id}.npz")
        by_sop = {str(ds.SOPInstanceUID): ds for dss in _datasets_by_series(tmp_path / "dicom" / study.patient_id).values()
                  for ds in dss}
        per_kpa = 100.0 if vendor == "siemens" else 1000.0
        for k, uid in enumerate(truth["sop_uids"]):
            ds = by_sop[str(uid)]
            assert float(ds.RescaleSlope) == 2.0
            kpa = apply_rescale(ds.pixel_array, ds) / per_kpa
            roi = truth["expert_roi"][k]
            if roi.any():
                assert kpa[roi].mean() == pytest.approx(float(truth["manual_kpa"][k]), abs=1e-4)
            else:
                assert np.isnan(truth["manual_kpa"][k])
        assert study.truth.study_manual_kpa == pytest.approx(np.nanmean(truth["manual_kpa"]), abs=1e-5)


def test_confidence_covers_30_to_90_percent_of_the_liver_on_average(studies: list[ph.PhantomStudy]) -> None:
    fractions = [(s.truth.confidence & s.truth.liver_mask).sum() / s.truth.liver_mask.sum() for s in studies]
    assert 0.3 <= float(np.mean(fractions)) <= 0.9


def test_each_encoding_is_written_as_documented(studies: list[ph.PhantomStudy]) -> None:
    hatch_study, paired_study, siemens_zero, ge_zero = studies
    conf = hatch_study.confidence_series.pixels
    body = hatch_study.truth.tissue_labels > 0
    hatch = conf == hatch_study.hatch_stored
    assert hatch.any() and not (hatch & hatch_study.truth.confidence).any()
    assert not (hatch & ~body).any()
    full = next(s for s in hatch_study.series if s.role is SeriesRole.FULL_MAP).pixels
    assert not (full == hatch_study.hatch_stored).any(), "hatch value never occurs as a stiffness value"
    assert np.array_equal(conf[hatch_study.truth.confidence], full[hatch_study.truth.confidence])
    for study in (paired_study, siemens_zero, ge_zero):
        masked, c = study.confidence_series.pixels, study.truth.confidence
        assert (masked[~c] == 0).all() and (masked[c] > 0).all()
    paired_full = next(s for s in paired_study.series if s.role is SeriesRole.FULL_MAP)
    assert paired_study.confidence_series.source_sop_uids == paired_full.sop_uids
    assert np.array_equal(paired_full.pixels[paired_study.truth.confidence],
                          paired_study.confidence_series.pixels[paired_study.truth.confidence])
    assert not any(s.role is SeriesRole.FULL_MAP for s in ge_zero.series)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, ExplicitVRLittleEndian])
def test_files_read_back_equal_to_the_generated_pixels(tmp_path: Path, syntax: str) -> None:
    params = ph.PhantomParams(transfer_syntax_mix=((str(syntax), 1.0),), color_probability=1.0)
    study = ph.generate_study(5, 0, ph.StudySpec("ge", E.PAIRED_SERIES, FibrosisStage.F2, 4, params=params))
    ph.write_study(study, tmp_path)
    read = _datasets_by_series(tmp_path / "dicom" / study.patient_id)
    for series in study.series:
        for ds in read[series.series_uid]:
            i = series.sop_uids.index(str(ds.SOPInstanceUID))
            expected = syntax if series.role is not SeriesRole.COLOR else ExplicitVRLittleEndian
            assert ds.file_meta.TransferSyntaxUID == expected
            assert np.array_equal(ds.pixel_array, series.pixels[i])


def test_headers_geometry_and_unique_uids(tmp_path: Path) -> None:
    folder = cohort.write_demo_study(tmp_path, seed=1, vendor="siemens", n_slices=5)
    all_sops = []
    for datasets in _datasets_by_series(folder).values():
        all_sops += [str(ds.SOPInstanceUID) for ds in datasets]
        ds = datasets[0]
        assert ds.Modality == "MR" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        assert [float(v) for v in ds.PixelSpacing] == [SPACING_MM, SPACING_MM]
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert (ds.Rows, ds.Columns) in ((204, 256), (256, 256))
        assert ds.Manufacturer == "SIEMENS" and ds.PatientName == "PHANTOM^P0001"
        for key in ("StudyInstanceUID", "FrameOfReferenceUID", "StudyDate", "PatientAge", "SeriesNumber"):
            assert key in ds
        z = sorted({float(d.ImagePositionPatient[2]) for d in datasets})
        assert len(z) == 5 and np.allclose(np.diff(z), float(ds.SpacingBetweenSlices))
        assert 5.0 <= float(ds.SliceThickness) <= 10.0
    assert len(all_sops) == len(set(all_sops))


def test_truth_sop_uids_are_the_confidence_slices_in_position_order(studies: list[ph.PhantomStudy]) -> None:
    study = studies[0]
    series = study.confidence_series
    assert study.truth.sop_uids == series.sop_uids and series.slice_index == tuple(range(len(series.sop_uids)))
    assert list(study.header.z_mm) == sorted(study.header.z_mm)


def test_stage_mix_is_honoured_on_a_large_plan() -> None:
    specs = cohort.plan_cohort(2000, seed=1, stage_mix={FibrosisStage.F0: 0.2, FibrosisStage.F4: 0.8})
    share_f4 = np.mean([s.stage is FibrosisStage.F4 for s in specs])
    assert {s.stage for s in specs} == {FibrosisStage.F0, FibrosisStage.F4}
    assert share_f4 == pytest.approx(0.8, abs=0.03)
    assert sum(s.split == "train" for s in specs) == 600


def test_liver_kpa_is_drawn_within_the_stage_range() -> None:
    for index, s in enumerate(FibrosisStage):
        study = ph.generate_study(2, index, ph.StudySpec(stage=s, n_slices=1))
        low, high = PAPER_TABLE.stage_range_kpa(s, 9.0, 1.5)
        assert low <= study.liver_kpa < high


def test_like_paper_plan_has_the_paper_split_and_prevalence() -> None:
    specs = cohort.plan_cohort(0, seed=0, like_paper=True)
    train = [s for s in specs if s.split == "train"]
    test = [s for s in specs if s.split == "test"]
    assert (len(specs), len(train), len(test)) == (319, 91, 228)
    assert specs[:91] == train
    assert sum(s.stage >= FibrosisStage.F2 for s in train) == 69
    assert sum(s.stage >= FibrosisStage.F2 for s in test) == 118


def test_cli_writes_cohort_tables_and_contact_sheet(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cohort.configure_parser(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--patients", "3", "--seed", "2", "--contact-sheet"])
    assert cohort.run_cli(args) == 0
    table = pd.read_csv(tmp_path / "cohort.csv")
    slices = pd.read_csv(tmp_path / "slices.csv")
    assert list(table.columns[:15]) == ["patient_id", "study_uid", "series_uid", "split", "vendor", "encoding", "rows",
                                         "cols", "n_slices", "true_kpa", "true_stage", "manual_kpa", "manual_stage",
                                         "age", "sex"]
    assert list(table["split"]) == ["test"] * 3  # floor(30 % of 3) = 0 train
    assert len(slices) == table["n_slices"].sum()
    assert (tmp_path / "contact_sheet.png").stat().st_size > 10_000
    assert sorted(p.name for p in (tmp_path / "truth").iterdir()) == ["P0001.npz", "P0002.npz", "P0003.npz"]


def test_train_fraction_sets_the_share_of_train_patients_and_is_checked() -> None:
    from mre_core.phantom.cohort import cohort_params, plan_cohort

    specs = plan_cohort(20, seed=0, params=cohort_params(0.85))
    assert [s.split for s in specs].count("train") == 17 and specs[-1].split == "test"
    assert [s.split for s in plan_cohort(20, seed=0)].count("train") == 6  # the default 30 %
    with pytest.raises(ValueError, match="0..1"):
        cohort_params(1.5)
