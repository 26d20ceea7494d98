"""The physics phantom style: inversion-output elastograms, published-practice ROIs, randomisation, files."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.pixels import apply_rescale
from scipy import ndimage as ndi

from mre_core.analysis.staging import FibrosisStage as F
from mre_core.config import Settings
from mre_core.io.elastogram import ConfidenceEncoding as E
from mre_core.model.dataset import cohort_records, load_truth, read_patient
from mre_core.phantom import cohort, randomise
from mre_core.phantom import physics_study as ps
from mre_core.phantom import study as st
from mre_core.phantom.anatomy import Tissue, sample_anatomy
from mre_core.phantom.writers import SeriesRole

SPECS = (st.StudySpec("siemens", E.CROSS_HATCH, F.F1, 3), st.StudySpec("ge", E.PAIRED_SERIES, F.F3, 3, rows=256),
         st.StudySpec("siemens", E.ZERO_FILL, F.F2, 3))


@pytest.fixture(scope="module")
def studies() -> list[ps.PhysicsStudy]:
    return [ps.generate_physics_study(4, i, spec) for i, spec in enumerate(SPECS)]


@pytest.fixture(scope="module")
def written(studies, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("physics")
    for s in studies:
        st.write_study(s, out)
    cohort._write_tables(out, [(s.cohort_row(), s.slice_rows()) for s in studies])
    return out


def _full_kpa(study: ps.PhysicsStudy) -> np.ndarray:
    """The stored (measured) stiffness map in kPa, from the series without confidence marking."""
    role = SeriesRole.FULL_MAP if any(s.role is SeriesRole.FULL_MAP for s in study.series) else SeriesRole.CONFIDENCE
    s = next(s for s in study.series if s.role is role)
    return s.pixels.astype(np.float64) * (s.rescale_slope or 1.0) / st.UNITS_PER_KPA[study.spec.vendor]


def test_same_seed_same_study_and_another_patient_differs() -> None:
    spec = st.StudySpec("siemens", E.ZERO_FILL, F.F2, 2)
    a, b = ps.generate_physics_study(9, 0, spec), ps.generate_physics_study(9, 0, spec)
    c = ps.generate_physics_study(9, 1, spec)
    assert a.truth.sop_uids == b.truth.sop_uids and a.draw == b.draw
    for sa, sb in zip(a.series, b.series):
        assert np.array_equal(sa.pixels, sb.pixels) and sa.file_names == sb.file_names
    for name, arr in a.truth.npz_arrays().items():
        assert np.array_equal(arr, b.truth.npz_arrays()[name]), name
    assert not set(a.truth.sop_uids) & set(c.truth.sop_uids) and a.draw != c.draw


def test_expert_roi_follows_published_practice_and_manual_is_the_measured_mean(studies) -> None:
    assert any(s.truth.expert_roi.any() for s in studies)
    for s in studies:
        t, sp = s.truth, s.header.pixel_spacing_mm
        measured = _full_kpa(s)
        for i in range(len(t.sop_uids)):
            roi, liver = t.expert_roi[i], t.liver_mask[i]
            assert not (roi & ~(liver & t.confidence[i])).any()
            if not roi.any():
                assert np.isnan(t.manual_kpa[i])
                continue
            assert ndi.distance_transform_edt(liver)[roi].min() * sp >= 8.0
            vessels = np.isin(t.tissue_labels[i], (Tissue.LIVER_VESSEL, Tissue.GREAT_VESSEL))
            if vessels.any():
                assert ndi.distance_transform_edt(~vessels)[roi].min() * sp >= 5.0
            assert ndi.label(roi)[1] == 1
            assert roi.sum() * sp * sp >= 100.0
            assert t.manual_kpa[i] == pytest.approx(measured[i][roi].mean(), rel=1e-5)


def test_roi_prefers_the_right_lobe_and_is_empty_below_one_square_cm() -> None:
    d = randomise.sample_draw(np.random.default_rng(0), randomise.RandomisationParams(), False)
    d = replace(d, roi_edge_mm=10.0, roi_vessel_mm=5.0, roi_confidence_erosion_mm=0.0)
    labels = np.zeros((120, 160), np.uint8)
    labels[10:110, 10:150] = Tissue.LIVER
    right = np.zeros(labels.shape, bool)
    right[:, :80] = True  # image left = patient right
    conf = np.ones(labels.shape, bool)
    none = np.zeros(labels.shape, bool)
    roi = ps.expert_roi(labels, right & (labels > 0), none, conf, 1.0, d)
    assert roi.any() and not (roi & ~right).any()
    conf_left = np.zeros(labels.shape, bool)
    conf_left[30:90, 95:140] = True  # only the left lobe is confident
    roi = ps.expert_roi(labels, right & (labels > 0), none, conf_left, 1.0, d)
    assert roi.any() and not (roi & right).any()
    tiny = np.zeros(labels.shape, bool)
    tiny[50:58, 40:48] = True  # 64 mm2 < 1 cm2
    assert not ps.expert_roi(labels, right & (labels > 0), none, tiny, 1.0, d).any()


def test_measured_map_is_an_inversion_output(studies) -> None:
    for s in studies:
        t, sp = s.truth, s.header.pixel_spacing_mm
        measured = _full_kpa(s)
        for i in range(len(t.sop_uids)):
            labels, true, est = t.tissue_labels[i], t.true_kpa[i], measured[i]
            body = (labels > 0) & (labels != Tissue.GAS)
            inner = ndi.binary_erosion(body, iterations=int(10 / sp))
            liver = t.liver_mask[i] & inner
            assert np.median(np.abs(est[liver] - true[liver]) / true[liver]) > 0.05  # not the true map
            assert (est[body & ~t.liver_mask[i]] > 0).mean() > 0.99  # covers non-liver tissue too
            # smooth at a wavelength scale: little energy left after a 3 mm blur, unlike the crisp truth
            def rough(m: np.ndarray) -> float:
                hp = m - ndi.gaussian_filter(m, 3.0 / sp)
                return float(np.std(hp[inner]) / np.std(m[inner]))
            assert rough(est) < 0.5 * rough(true)
            # blobby: still correlated 10 mm away
            k = int(round(10 / sp))
            a, b = est[:, :-k][inner[:, :-k] & inner[:, k:]], est[:, k:][inner[:, :-k] & inner[:, k:]]
            assert np.corrcoef(a, b)[0, 1] > 0.3


def test_confidence_region_is_a_plausible_patchy_share_of_the_body_on_the_driver_side(studies) -> None:
    for s in studies:
        t = s.truth
        body = t.tissue_labels > 0
        share = t.confidence[body].mean()
        assert 0.02 <= share <= 0.40, share
        cols = np.nonzero(t.confidence)[2]
        assert np.median(cols) < t.confidence.shape[2] / 2  # driver on the patient's right = image left
        assert not (t.confidence & ~body).any()


def test_randomisation_varies_fov_matrix_driver_and_anatomy() -> None:
    rp = randomise.RandomisationParams()
    rng = np.random.default_rng(1)
    draws = [randomise.sample_draw(rng, rp, False) for _ in range(24)]
    fovs = []
    for d in draws[:8]:
        anat = randomise.modify_anatomy(sample_anatomy(rng, (204, 256), st.PhantomParams().fields, False), d)
        fovs.append(randomise.choose_fov(rng, anat, 204, rp))
    assert all(rp.fov_mm[0] <= f <= rp.fov_mm[1] for f in fovs) and np.ptp(fovs) > 40
    mats = [d.acq_cols for d in draws]
    assert min(mats) >= 64 and max(mats) <= 256 and len(set(mats)) > 10 and min(mats) < 100 and max(mats) > 160
    for name in ("driver_amplitude_um", "driver_center_fraction", "driver_width_mm", "loss_factor", "snr"):
        values = [getattr(d, name) for d in draws]
        lo, hi = getattr(rp, name)
        assert lo <= min(values) and max(values) <= hi and np.ptp(values) > 0.3 * (hi - lo), name
    assert len({d.left_lobe for d in draws}) >= 3 and len({d.kspace_window for d in draws}) == 3


def test_studies_differ_in_fov_and_matrix_and_the_header_says_so(studies, written) -> None:
    assert len({round(s.header.pixel_spacing_mm, 4) for s in studies}) == len(studies)
    for s in studies:
        assert s.header.pixel_spacing_mm == pytest.approx(s.draw.fov_mm / 256)
        ds = pydicom.dcmread(sorted(p for p in (written / "dicom" / s.patient_id).rglob("*") if p.is_file())[0])
        ar, ac = s.draw.acq_shape(s.header.rows, 256)
        assert list(ds.AcquisitionMatrix) == [ac, 0, 0, ar]
        assert float(ds.PixelSpacing[0]) == pytest.approx(s.header.pixel_spacing_mm)


def test_files_read_back_with_pydicom_and_the_training_reader(studies, written) -> None:
    table = pd.read_csv(written / "cohort.csv")
    assert set(table["style"]) == {"physics"} and len(table) == len(studies)
    by_id = {s.patient_id: s for s in studies}
    for rec in cohort_records(written):
        s = by_id[rec.patient_id]
        conf_uids = set(s.confidence_series.sop_uids)
        files = [pydicom.dcmread(p) for p in (rec.dicom_dir).rglob("*") if p.is_file()]
        conf = {str(ds.SOPInstanceUID): ds for ds in files if str(ds.SOPInstanceUID) in conf_uids}
        assert len(conf) == len(s.truth.sop_uids)
        study = read_patient(rec, Settings())
        truth = load_truth(rec.truth_path)
        assert {e.sop_uid for e in study.series.slices} == set(truth)
        for e in study.series.slices:
            tr = truth[e.sop_uid]
            assert (e.confidence == tr.confidence).mean() > 0.99
            if tr.expert_roi.any():
                assert float(np.mean(e.kpa[tr.expert_roi])) == pytest.approx(tr.manual_kpa, rel=1e-4)
            ds = conf[e.sop_uid]
            units = st.UNITS_PER_KPA[s.spec.vendor]
            stored = apply_rescale(ds.pixel_array, ds) / units
            assert np.allclose(stored[tr.confidence], e.kpa[tr.confidence])


def test_cli_style_physics_writes_a_cohort(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cohort.configure_parser(parser)
    args = parser.parse_args(["--style", "physics", "--out", str(tmp_path), "--patients", "2", "--seed", "5",
                              "--workers", "1"])
    assert cohort.run_cli(args) == 0
    table = pd.read_csv(tmp_path / "cohort.csv")
    assert len(table) == 2 and (tmp_path / "truth" / "P0002.npz").is_file()
    assert table["fov_mm"].between(300, 480).all() and table["acq_matrix"].between(64, 256).all()


def test_a_study_stored_at_its_acquired_matrix_keeps_the_field_of_view_and_its_truth_on_that_grid(tmp_path) -> None:
    rp = randomise.RandomisationParams(stored_acquired_probability=1.0)
    spec = st.StudySpec("siemens", E.CROSS_HATCH, F.F2, 3)
    studies = [ps.generate_physics_study(6, i, spec, rp) for i in range(3)]
    for s in studies:
        assert s.draw.stored_at_acquired
        rows, cols = ps.stored_shape(s.draw, spec.rows)
        assert (s.header.rows, s.header.cols) == (rows, cols) and cols == min(256, s.draw.acq_cols)
        fine_sp = s.draw.fov_mm / 256
        assert s.header.pixel_spacing_mm == pytest.approx(fine_sp * 256 / cols)  # same field of view
        assert s.spec.params.fields.pixel_spacing_mm == pytest.approx(s.header.pixel_spacing_mm)
        t = s.truth
        for arr in (t.liver_mask, t.expert_roi, t.confidence, t.true_kpa, t.tissue_labels):
            assert arr.shape == (3, rows, cols)
        for series in s.series:
            assert series.pixels.shape[1:3] == (rows, cols)  # colour series: [n, H, W, 3]
        measured, sp = _full_kpa(s), s.header.pixel_spacing_mm
        for i in range(3):  # the expert's rules hold on the stored grid, and the manual value is read there
            roi = t.expert_roi[i]
            assert not (roi & ~(t.liver_mask[i] & t.confidence[i])).any()
            if roi.any():
                assert ndi.distance_transform_edt(t.liver_mask[i])[roi].min() * sp >= 8.0
                assert t.manual_kpa[i] == pytest.approx(measured[i][roi].mean(), rel=1e-5)
        assert s.cohort_row()["stored_at_acquired"] == 1
    assert min(s.header.cols for s in studies) < 256  # the draws are not all at the full matrix
    st.write_study(studies[0], tmp_path)
    cohort._write_tables(tmp_path, [(studies[0].cohort_row(), studies[0].slice_rows())])
    rec = cohort_records(tmp_path)[0]
    read = read_patient(rec, Settings())
    truth = load_truth(rec.truth_path)
    for e in read.series.slices:
        assert e.shape == truth[e.sop_uid].liver_mask.shape == (studies[0].header.rows, studies[0].header.cols)
        assert e.pixel_spacing_mm[0] == pytest.approx(studies[0].header.pixel_spacing_mm)
        assert e.magnitude is not None and e.magnitude.shape == e.shape


def test_the_stored_grid_option_off_leaves_every_earlier_draw_as_it_was() -> None:
    base = randomise.sample_draw(np.random.default_rng(3), randomise.RandomisationParams(), False)
    rng = np.random.default_rng(3)
    on = randomise.sample_draw(rng, randomise.RandomisationParams(stored_acquired_probability=1.0), False)
    assert not base.stored_at_acquired and on.stored_at_acquired
    assert replace(on, stored_at_acquired=False) == base  # drawn last: nothing before it moves
    spec = st.StudySpec("ge", E.PAIRED_SERIES, F.F1, 2, rows=256)
    a = ps.generate_physics_study(9, 0, spec)
    b = ps.generate_physics_study(9, 0, spec, randomise.RandomisationParams(stored_acquired_probability=0.0))
    assert (a.header.rows, a.header.cols) == (256, 256) and np.array_equal(a.truth.expert_roi, b.truth.expert_roi)


def test_cli_stored_acquired_writes_coarse_studies_and_refuses_a_share_outside_0_1(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    cohort.configure_parser(parser)
    args = parser.parse_args(["--style", "physics", "--out", str(tmp_path), "--patients", "2", "--seed", "5",
                              "--workers", "1", "--stored-acquired", "1"])
    assert cohort.run_cli(args) == 0
    table = pd.read_csv(tmp_path / "cohort.csv")
    assert (table["stored_at_acquired"] == 1).all()
    assert (table["cols"] == table["acq_matrix"].clip(upper=256)).all()
    bad = parser.parse_args(["--style", "physics", "--out", str(tmp_path / "x"), "--stored-acquired", "1.5"])
    assert cohort.run_cli(bad) == 2
    assert "--stored-acquired must be a share between 0 and 1, got 1.5" in capsys.readouterr().out
    other = parser.parse_args(["--out", str(tmp_path / "y"), "--stored-acquired", "0.5"])
    assert cohort.run_cli(other) == 2
    assert "--stored-acquired is an option of --style physics" in capsys.readouterr().out
