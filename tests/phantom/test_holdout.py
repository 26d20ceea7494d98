"""Tests for the hold-out phantom (mre_core.phantom.holdout): determinism, DICOM validity, truth, layouts."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy import ndimage as ndi

from mre_core.analysis.staging import PAPER_TABLE, stage
from mre_core.model.dataset import cohort_records, load_truth
from mre_core.phantom import cohort as cohort_cli
from mre_core.phantom.holdout import LAYOUTS, generate_holdout_cohort
from mre_core.phantom.holdout_anatomy import HTissue

SEED = 5
SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"}
N = 3  # the plan cycles through the three layouts, so three patients cover each once


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("holdout")
    generate_holdout_cohort(out, N, seed=SEED, workers=1)
    return out


@pytest.fixture(scope="module")
def table(cohort_dir: Path) -> pd.DataFrame:
    return pd.read_csv(cohort_dir / "cohort.csv", keep_default_na=False)


@pytest.fixture(scope="module")
def datasets(cohort_dir: Path) -> dict[str, dict[str, list[pydicom.Dataset]]]:
    """patient → SeriesInstanceUID → datasets (every file read strictly, no ``force``)."""
    out: dict[str, dict[str, list[pydicom.Dataset]]] = {}
    for pdir in sorted((cohort_dir / "dicom").iterdir()):
        for path in sorted(p for p in pdir.rglob("*") if p.is_file()):
            ds = pydicom.dcmread(path)
            out.setdefault(pdir.name, {}).setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return out


def _truth(cohort_dir: Path, pid: str) -> dict[str, np.ndarray]:
    with np.load(cohort_dir / "truth" / f"{pid}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _by_sop(series: dict[str, list[pydicom.Dataset]]) -> dict[str, pydicom.Dataset]:
    return {str(ds.SOPInstanceUID): ds for dss in series.values() for ds in dss}


def _spacing(ds: pydicom.Dataset) -> float:
    return float(ds.PixelSpacing[0])


def test_same_seed_same_bytes_other_seed_differs(cohort_dir: Path, tmp_path: Path) -> None:
    generate_holdout_cohort(tmp_path / "again", N, seed=SEED, workers=1)
    first, again = _tree(cohort_dir), _tree(tmp_path / "again")
    assert first == again and len(first) > 3 * 15
    generate_holdout_cohort(tmp_path / "other", 1, seed=SEED + 1, workers=1)
    a, b = _truth(cohort_dir, "HO0001"), _truth(tmp_path / "other", "HO0001")
    assert not set(a["sop_uids"]) & set(b["sop_uids"])


def test_files_are_valid_mr_dicom_with_realistic_headers(datasets: dict, table: pd.DataFrame) -> None:
    for pid, series in datasets.items():
        vendor = table.set_index("patient_id").loc[pid, "vendor"]
        study_uids = {str(ds.StudyInstanceUID) for dss in series.values() for ds in dss}
        frames = {str(ds.FrameOfReferenceUID) for dss in series.values() for ds in dss}
        assert len(study_uids) == 1 and len(frames) == 1
        assert len(series) >= 3
        types = {tuple(dss[0].ImageType)[:3] for dss in series.values()}
        assert ("ORIGINAL", "PRIMARY", "M") in types and ("ORIGINAL", "PRIMARY", "P") in types
        for dss in series.values():
            assert len({int(ds.SeriesNumber) for ds in dss}) == 1
            for ds in dss:
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.Modality == "MR"
                assert ds.file_meta.TransferSyntaxUID in SYNTAXES
                assert ("SIEMENS" if vendor == "siemens" else "GE") in ds.Manufacturer
                assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
                assert len(ds.ImagePositionPatient) == 3 and 1.2 <= _spacing(ds) <= 3.5
                assert 5 <= float(ds.SliceThickness) <= 10
                px = ds.pixel_array
                assert px.shape[:2] == (ds.Rows, ds.Columns)
                assert 128 <= ds.Columns <= 256 and ds.Rows <= ds.Columns
                if getattr(ds, "SamplesPerPixel", 1) == 1:
                    assert "WindowCenter" in ds and "WindowWidth" in ds
        if all("PatientID" not in dss[0] for dss in series.values()):
            continue  # de-identified export
        assert len({str(dss[0].PatientID) for dss in series.values()}) == 1


def test_truth_reads_with_load_truth_and_matches_the_analysed_series(cohort_dir: Path, datasets: dict,
                                                                    table: pd.DataFrame) -> None:
    records = cohort_records(cohort_dir, "test")
    assert [r.patient_id for r in records] == list(table["patient_id"]) and len(records) == N
    for rec in records:
        truth = load_truth(rec.truth_path)
        raw = _truth(cohort_dir, rec.patient_id)
        assert raw["liver_mask"].dtype == bool and raw["expert_roi"].dtype == bool
        assert raw["confidence"].dtype == bool and raw["true_kpa"].dtype == np.float32
        assert raw["manual_kpa"].dtype == np.float32
        series = datasets[rec.patient_id]
        analysed = series[rec.row["series_uid"]]
        assert {str(ds.SOPInstanceUID) for ds in analysed} == set(truth)
        z_of = {str(ds.SOPInstanceUID): float(ds.ImagePositionPatient[2]) for ds in analysed}
        zs = [z_of[str(u)] for u in raw["sop_uids"]]
        assert zs == sorted(zs), "truth slices in ascending z"
        for ds in analysed:
            t = truth[str(ds.SOPInstanceUID)]
            assert t.expert_roi.shape == t.liver_mask.shape == (ds.Rows, ds.Columns)
        if rec.row["encoding"] == "paired_series":
            assert "mask" in str(analysed[0].SeriesDescription).lower() or analysed[0].SeriesDescription.endswith("m")


def test_truth_is_nested_keeps_margins_and_manual_is_the_roi_mean(cohort_dir: Path, datasets: dict,
                                                                  table: pd.DataFrame) -> None:
    for _, row in table.iterrows():
        t = _truth(cohort_dir, row["patient_id"])
        by_sop = _by_sop(datasets[row["patient_id"]])
        body = t["tissue_labels"] > 0
        assert np.array_equal(body, t["body_mask"])
        roi, liver, conf = t["expert_roi"], t["liver_mask"], t["confidence"]
        assert not (roi & ~liver).any() and not (liver & ~body).any()
        assert not (roi & ~conf).any() and not (conf & ~body).any()
        assert roi.any(), "every hold-out study has at least one expert ROI"
        ps = _spacing(by_sop[str(t["sop_uids"][0])])
        scale = 100.0 if row["vendor"] == "siemens" else 1000.0
        for k, uid in enumerate(t["sop_uids"]):
            stored = by_sop[str(uid)].pixel_array.astype(float)
            # the analysed series stores the measured map inside the confidence region
            np.testing.assert_allclose(stored[conf[k]] / scale, t["measured_kpa"][k][conf[k]], atol=1e-6)
            if roi[k].any():
                assert ndi.distance_transform_edt(liver[k], sampling=ps)[roi[k]].min() >= 8.0
                assert roi[k].sum() * ps * ps >= 100.0  # >= 1 cm²
                assert ndi.label(roi[k])[1] == 1, "one contiguous ROI per slice"
                assert t["manual_kpa"][k] == pytest.approx(float((stored[roi[k]] / scale).mean()), abs=1e-4)
            else:
                assert np.isnan(t["manual_kpa"][k])
        pooled = np.concatenate([t["measured_kpa"][k][roi[k]] for k in range(len(roi))])
        assert row["manual_kpa"] == pytest.approx(float(pooled.mean()), abs=1e-3)
        assert row["manual_stage"] == stage(row["manual_kpa"], PAPER_TABLE).stage.label
        assert row["true_stage"] == stage(row["true_kpa"], PAPER_TABLE).stage.label
        assert 1.7 <= row["true_kpa"] <= 8.5
        assert row["split"] == "test" and row["style"] == "holdout"
        assert 0 <= t["measured_kpa"].min() and t["measured_kpa"].max() <= 12.0


def test_confidence_covers_a_plausible_part_of_the_body(cohort_dir: Path, table: pd.DataFrame) -> None:
    fractions = []
    for pid in table["patient_id"]:
        t = _truth(cohort_dir, pid)
        fractions.append(t["confidence"].sum() / t["body_mask"].sum())
    assert 0.03 <= float(np.mean(fractions)) <= 0.30


def _correlation_length_mm(img: np.ndarray, mask: np.ndarray, ps: float) -> float:
    """Lag (mm) where the masked autocorrelation first drops below 1/e (along rows and columns)."""
    v = np.where(mask, img - img[mask].mean(), 0.0)
    m = mask.astype(float)
    f = lambda a: np.real(np.fft.ifft2(np.abs(np.fft.fft2(a, s=(2 * a.shape[0], 2 * a.shape[1]))) ** 2))
    ac = f(v) / np.maximum(f(m), 1)
    ac = ac / ac[0, 0]
    lags = []
    for line in (ac[0, : img.shape[1] // 2], ac[: img.shape[0] // 2, 0]):
        below = np.nonzero(line < 1 / np.e)[0]
        lags.append((below[0] if below.size else len(line)) * ps)
    return float(np.mean(lags))


def test_measured_map_is_smooth_and_covers_the_whole_body_section(cohort_dir: Path, datasets: dict,
                                                                   table: pd.DataFrame) -> None:
    for pid in table["patient_id"]:
        t = _truth(cohort_dir, pid)
        ps = _spacing(_by_sop(datasets[pid])[str(t["sop_uids"][0])])
        for k in range(len(t["sop_uids"])):
            meas, body, liver = t["measured_kpa"][k], t["body_mask"][k], t["liver_mask"][k]
            signal = meas > 0
            outside = body & ~liver
            assert signal[outside].mean() > 0.8, "stiffness values over non-liver tissue too"
            assert _correlation_length_mm(meas, signal, ps) > 10.0


def _pixels(dss: list[pydicom.Dataset]) -> dict[float, np.ndarray]:
    return {float(ds.ImagePositionPatient[2]): ds.pixel_array.astype(np.int64) for ds in dss}


def test_each_layout_is_written_as_documented(cohort_dir: Path, datasets: dict, table: pd.DataFrame) -> None:
    assert set(table["encoding"]) == set(LAYOUTS)
    for _, row in table.iterrows():
        pid, series = row["patient_id"], datasets[row["patient_id"]]
        t = _truth(cohort_dir, pid)
        analysed = sorted(series[row["series_uid"]], key=lambda d: float(d.ImagePositionPatient[2]))
        body, conf = t["body_mask"], t["confidence"]
        px = np.stack([ds.pixel_array.astype(np.int64) for ds in analysed])
        if row["encoding"] == "zero_fill":
            assert analysed[0].Manufacturer == "SIEMENS" and analysed[0].ImageType[0] == "DERIVED"
            assert (px[body & ~conf] == 0).all() and (px[body & ~conf] == 0).sum() > 0
            assert (px[conf] > 0).all()
        elif row["encoding"] == "cross_hatch":
            value = int(row["hatch_stored"])
            hatch = px == value
            assert hatch.any() and not (hatch & conf).any() and not (hatch & ~body).any()
            assert (t["measured_kpa"] * 100 < value).all(), "the hatch value never occurs as a stiffness"
            _, rr, cc = np.nonzero(hatch)
            ok = False
            for period in range(10, 3, -1):  # largest first: a divisor of the period also "fits"
                a = np.bincount((rr + cc) % period).argmax()
                b = np.bincount((rr - cc) % period).argmax()
                on = ((rr + cc) % period == a) | ((rr - cc) % period == b)
                if on.all():
                    r, c = np.mgrid[0:px.shape[1], 0:px.shape[2]]
                    lines = ((r + c) % period == a) | ((r - c) % period == b)
                    region = body & ~conf
                    assert (px[region & lines[None]] == value).all(), "1-px diagonal lines of one constant value"
                    ok = period >= 4
                    break
            assert ok
        else:
            full_dss = [dss for uid, dss in series.items() if uid != row["series_uid"]
                        and dss[0].ImageType[0] == "DERIVED" and getattr(dss[0], "SamplesPerPixel", 1) == 1]
            assert len(full_dss) == 1 and "GE" in analysed[0].Manufacturer
            full, masked = _pixels(full_dss[0]), _pixels(analysed)
            assert set(full) == set(masked), "pair matched by slice position"
            for k, z in enumerate(sorted(masked)):
                m, f = masked[z], full[z]
                assert np.array_equal(m[m > 0], f[m > 0])
                assert np.array_equal(m > 0, conf[k])
                assert (f[body[k] & (t["measured_kpa"][k] > 0)] > 0).all()
                np.testing.assert_allclose(f / 1000.0, t["measured_kpa"][k], atol=1e-6)


def test_liver_is_on_the_image_left_and_spleen_on_the_right(cohort_dir: Path, table: pd.DataFrame) -> None:
    for pid in table["patient_id"]:
        t = _truth(cohort_dir, pid)
        cols = t["liver_mask"].shape[2]
        _, _, lc = np.nonzero(t["liver_mask"])
        assert lc.mean() < cols / 2
        spleen = t["tissue_labels"] == HTissue.SPLEEN
        if spleen.any():
            assert np.nonzero(spleen)[2].mean() > cols / 2
        _, _, rc = np.nonzero(t["expert_roi"])
        assert rc.mean() < cols / 2, "expert ROI mostly in the right lobe (image left)"


def test_cli_style_holdout(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cohort_cli.configure_parser(parser)
    args = parser.parse_args(["--style", "holdout", "--out", str(tmp_path), "--patients", "1", "--seed", "2"])
    assert cohort_cli.run_cli(args) == 0
    rows = pd.read_csv(tmp_path / "cohort.csv")
    assert list(rows["style"]) == ["holdout"] and (tmp_path / "truth" / "HO0001.npz").is_file()
    assert len(pd.read_csv(tmp_path / "slices.csv")) == int(rows["n_slices"].iloc[0])
