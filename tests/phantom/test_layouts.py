"""Tests for mre_core.phantom.layouts: each real-scanner layout as DICOM, its truth and its header variants.

The reader is not tested here (it is exercised against this corpus elsewhere); these tests check that the
files are what the documented layouts say they are, and that the truth points at the right series.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.pixels import apply_rescale

from mre_core.phantom import cohort
from mre_core.phantom import layouts as L
from mre_core.phantom.layout_headers import ENHANCED_MR_STORAGE, IDENTIFYING_KEYWORDS, UID_ROOTS

NAMES = list(L.LAYOUTS)
GE_SEQUENCE_TAG = (0x0019, 0x109C)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """One study per layout (patient i = layout i), identifiers kept so the headers can be compared."""
    out = tmp_path_factory.mktemp("layouts")
    table = L.generate_layout_cohort(out, "all", len(NAMES), seed=5, opts=L.LayoutOptions(deidentify="none"))
    return out, table


def _study(corpus: tuple[Path, pd.DataFrame], layout: str) -> tuple[dict, dict[int, list[pydicom.Dataset]], dict]:
    out, table = corpus
    row = table[table.layout == layout].iloc[0].to_dict()
    series: dict[int, list[pydicom.Dataset]] = {}
    for path in sorted((out / "dicom" / row["patient_id"]).rglob("*")):
        if path.is_file():
            ds = pydicom.dcmread(path)
            series.setdefault(int(ds.SeriesNumber), []).append(ds)
    for items in series.values():
        items.sort(key=lambda d: int(d.InstanceNumber))
    truth = dict(np.load(out / "truth" / f"{row['patient_id']}.npz"))
    return row, series, truth


def _by_description(series: dict[int, list[pydicom.Dataset]], text: str) -> list[pydicom.Dataset]:
    return next(v for v in series.values() if str(v[0].get("SeriesDescription", "")) == text)


def test_layout_names_and_facts_are_documented() -> None:
    assert NAMES == ["ge_mrtouch", "mmdi_ge", "mmdi_siemens", "siemens_ve11", "siemens_xa_enhanced", "philips",
                     "canon"]
    assert set(L.FACTS) == set(NAMES) and all("Assumed" in text for text in L.FACTS.values())


@pytest.mark.parametrize("layout", NAMES)
def test_files_are_valid_dicom_and_truth_keys_are_the_measured_series(corpus, layout: str) -> None:
    row, series, truth = _study(corpus, layout)
    for items in series.values():
        for ds in items:
            pixels = ds.pixel_array
            assert pixels.shape[-2 if ds.SamplesPerPixel == 1 else -3] == ds.Rows == row["rows"]
            assert ds.StudyInstanceUID == row["study_uid"]
    measured = series[int(row["expected_series_number"])]
    assert str(measured[0].SeriesDescription) == row["expected_series_description"]
    assert measured[0].SeriesInstanceUID == row["series_uid"]
    n = int(row["n_slices"])
    assert truth["sop_uids"].shape == (n,) and truth["expert_roi"].shape == (n, row["rows"], row["cols"])
    if row["multiframe"]:
        assert len(measured) == 1 and set(truth["sop_uids"]) == {measured[0].SOPInstanceUID}
        assert sorted(truth["frame_numbers"]) == list(range(1, n + 1))
    else:
        assert list(truth["sop_uids"]) == [ds.SOPInstanceUID for ds in sorted(measured, key=lambda d: d.SliceLocation)]
    assert not (truth["expert_roi"] & ~truth["confidence"]).any() and truth["expert_roi"].any()
    assert np.isfinite(row["manual_kpa"]) and abs(row["manual_kpa"] - row["true_kpa"]) < 0.35 * row["true_kpa"]
    dataset = pytest.importorskip("mre_core.model.dataset")
    loaded = dataset.load_truth(corpus[0] / "truth" / f"{row['patient_id']}.npz")
    keys = [str(u) for u in truth["sop_uids"]]
    if "frame_numbers" in truth:  # frames of a multi-frame file are keyed <SOPInstanceUID>#<frame>, as the reader does
        keys = [f"{u}#{int(f)}" for u, f in zip(keys, truth["frame_numbers"])]
    assert set(loaded) == set(keys) and len(loaded) == len(keys)


def _measured_kpa(row: dict, series: dict[int, list[pydicom.Dataset]], truth: dict) -> np.ndarray:
    """The measured series' values as kPa in truth slice order (per the row's expected unit)."""
    items = series[int(row["expected_series_number"])]
    if row["multiframe"]:
        ds = items[0]
        frames = apply_rescale(ds.pixel_array.astype(float), ds)
        return frames[truth["frame_numbers"] - 1] * float(row["expected_kpa_per_unit"])
    by_uid = {d.SOPInstanceUID: d for d in items}
    return np.stack([apply_rescale(by_uid[u].pixel_array.astype(float), by_uid[u]) for u in truth["sop_uids"]]) \
        * float(row["expected_kpa_per_unit"])


@pytest.mark.parametrize("layout", NAMES)
def test_manual_kpa_is_the_roi_mean_read_with_the_expected_unit(corpus, layout: str) -> None:
    row, series, truth = _study(corpus, layout)
    kpa = _measured_kpa(row, series, truth)
    for i, roi in enumerate(truth["expert_roi"]):
        if roi.any():
            assert kpa[i][roi].mean() == pytest.approx(float(truth["manual_kpa"][i]), abs=1e-3)
    assert 0.5 < float(np.nanmean(truth["manual_kpa"])) < 12  # kPa, not Pa or kPa x100


def test_ge_mrtouch_raw_halves_private_tag_and_masked_pair(corpus) -> None:
    row, series, truth = _study(corpus, "ge_mrtouch")
    raw = next(v for v in series.values() if "ORIGINAL" in v[0].ImageType)
    assert list(raw[0].ImageType) == ["ORIGINAL", "PRIMARY", "OTHER"] and raw[0].Manufacturer == "GE MEDICAL SYSTEMS"
    assert raw[0][GE_SEQUENCE_TAG].value == "MR-Touch" and raw[0][0x0019, 0x0010].value == "GEMS_ACQU_01"
    half = len(raw) // 2
    phase = np.stack([d.pixel_array for d in raw[:half]])
    mags = np.stack([d.pixel_array for d in raw[half:]])
    assert phase.dtype == np.int16 and phase.min() >= -3141 and phase.max() <= 3141
    assert phase.min() < -3000 and phase.max() > 3000 and mags.min() >= 0 and mags.max() > 300
    assert half == 4 * row["n_slices"]
    rgb = [v for v in series.values() if v[0].SamplesPerPixel == 3]
    assert len(rgb) == 2 and all(v[0].PhotometricInterpretation == "RGB" and "DERIVED" in v[0].ImageType for v in rgb)
    masked = series[int(row["expected_series_number"])]
    full = next(v for n, v in series.items() if n == int(row["expected_series_number"]) - 1)
    assert row["expected_unit"] == "Pa" and row["expected_confidence"] == "paired_series"
    for m, f, conf in zip(sorted(masked, key=lambda d: d.SliceLocation), sorted(full, key=lambda d: d.SliceLocation),
                          truth["confidence"], strict=True):
        a, b = m.pixel_array, f.pixel_array
        assert np.array_equal((a != 0) & (a == b), conf) and not (a[(a != 0)] != b[(a != 0)]).any()


@pytest.mark.parametrize("layout", ["mmdi_ge", "mmdi_siemens"])
def test_mmdi_stiffness_confidence_and_shear_wave(corpus, layout: str) -> None:
    row, series, truth = _study(corpus, layout)
    stiff, conf = _by_description(series, "Stiffness"), _by_description(series, "Confidence")
    wave = _by_description(series, "Shear Wave")
    for items in (stiff, conf, wave):
        assert list(items[0].ImageType) == ["DERIVED", "SECONDARY", "PROCESSED"] and len(items) == row["n_slices"]
        assert items[0].PixelRepresentation == 1 and "RescaleSlope" not in items[0]
        assert "RealWorldValueMappingSequence" not in items[0]
    assert (float(stiff[0].WindowCenter), float(stiff[0].WindowWidth)) == (4000, 8000)
    assert (float(conf[0].WindowCenter), float(conf[0].WindowWidth)) == (950, 100)
    assert len({d.FrameOfReferenceUID for items in series.values() for d in items}) == 1
    by_z = {round(float(d.SliceLocation), 2): d for d in conf}
    body = truth["tissue_labels"] > 0
    region = []
    for i, s in enumerate(sorted(stiff, key=lambda d: d.SliceLocation)):
        px = s.pixel_array
        c = by_z[round(float(s.SliceLocation), 2)].pixel_array
        text = px == 32766
        assert text.any() and (text & ~body[i]).any() and (text & body[i]).any()  # corner label + piece on the body
        assert (px[~body[i]] == 0).sum() + text[~body[i]].sum() == (~body[i]).sum()  # background 0
        assert 0 <= c.min() and c.max() <= 1000 and (c[~body[i]] == 0).all()
        assert np.array_equal((c >= 950) & ~text, truth["confidence"][i])
        region.append((c >= 950).mean())
    assert 0.03 <= float(np.mean(region)) <= 0.16  # a realistic 4-15 % of the image
    assert 5000 < max(int(np.abs(d.pixel_array).max()) for d in wave) <= 14000
    if layout == "mmdi_siemens":
        raw = [v for v in series.values() if "ORIGINAL" in v[0].ImageType]
        assert len(raw) == 2 and all(any(k in v[0].SequenceName for k in ("epiMR", "greMR")) for v in raw)
        assert stiff[0].Manufacturer == "SIEMENS" and row["expected_unit"] == "Pa"
    else:
        assert any(v[0].get(GE_SEQUENCE_TAG) is not None and "ORIGINAL" in v[0].ImageType for v in series.values())


def test_siemens_ve11_hatch_wave_and_colour(corpus) -> None:
    row, series, truth = _study(corpus, "siemens_ve11")
    assert any("WV" in v[0].ImageType for v in series.values())
    raw = [v for v in series.values() if "ORIGINAL" in v[0].ImageType]
    assert {v[0].ImageType[2] for v in raw} == {"M", "P"} and all("epiMR" in v[0].SequenceName for v in raw)
    gray = sorted(series[int(row["expected_series_number"])], key=lambda d: d.SliceLocation)
    hatch = int(row["hatch_stored"])
    for i, ds in enumerate(gray):
        lines = ds.pixel_array == hatch
        assert lines.sum() > 50 and not (lines & truth["confidence"][i]).any()
        ys, xs = np.nonzero(lines)
        assert any(np.all(((xs + ys + a) % p == 0) | ((xs - ys + b) % p == 0))  # both diagonals, period 6-10 px
                   for p in range(6, 11) for a in range(p) for b in range(p))
    assert row["expected_unit"] == "kPa x100" and any(v[0].SamplesPerPixel == 3 for v in series.values())


def test_siemens_xa_is_one_enhanced_multiframe_file_per_series(corpus) -> None:
    row, series, truth = _study(corpus, "siemens_xa_enhanced")
    n = int(row["n_slices"])
    assert all(len(v) == 1 and v[0].SOPClassUID == ENHANCED_MR_STORAGE for v in series.values())
    components = {}
    for (ds,) in series.values():
        assert "ELASTO" in ds.ImageType and int(ds.NumberOfFrames) == ds.pixel_array.shape[0]
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert "PixelMeasuresSequence" in shared and "PlaneOrientationSequence" in shared
        assert all("PlanePositionSequence" in f and "FrameContentSequence" in f
                   for f in ds.PerFrameFunctionalGroupsSequence)
        components[ds.ImageType[0], ds.ComplexImageComponent] = int(ds.NumberOfFrames)
    assert components == {("ORIGINAL", "MAGNITUDE"): n, ("ORIGINAL", "PHASE"): 4 * n, ("DERIVED", "MAGNITUDE"): n}
    (elasto,) = series[int(row["expected_series_number"])]
    z = [float(elasto.PerFrameFunctionalGroupsSequence[f - 1].PlanePositionSequence[0].ImagePositionPatient[2])
         for f in truth["frame_numbers"]]
    assert z == sorted(z) and row["expected_confidence"] == "zero_fill"
    frames = elasto.pixel_array[truth["frame_numbers"] - 1]
    assert np.array_equal(frames > 0, truth["confidence"])
    if shutil.which("dciodvfy"):
        for (ds,) in series.values():
            path = next((corpus[0] / "dicom" / row["patient_id"]).rglob(f"{int(ds.SeriesNumber):04d}_enhanced.dcm"))
            report = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True, timeout=60)
            assert "Error" not in report.stdout + report.stderr, report.stderr


def test_philips_and_canon_headers_and_zero_fill(corpus) -> None:
    row, series, truth = _study(corpus, "philips")
    (raw,) = [v for v in series.values() if "ORIGINAL" in v[0].ImageType]  # M and P images in one series
    phase = [d for d in raw if {"ORIGINAL", "P", "MRE"} <= set(d.ImageType)]
    mags = [d for d in raw if "M" in d.ImageType]
    assert len(phase) == 4 * row["n_slices"] and len(mags) == row["n_slices"] and len(raw) == 5 * row["n_slices"]
    assert abs(float(apply_rescale(phase[0].pixel_array, phase[0]).min())) <= np.pi + 1e-3
    stiff = sorted(series[int(row["expected_series_number"])], key=lambda d: d.SliceLocation)
    assert float(stiff[0].RescaleSlope) == 0.001 and row["expected_unit"] == "kPa"
    assert np.array_equal(np.stack([d.pixel_array for d in stiff]) > 0, truth["confidence"])
    row, series, truth = _study(corpus, "canon")
    assert {v[0].ImageComments for v in series.values()} == {"Magnitude", "PhaseDiff", "Stiffness"}
    assert all(v[0].Manufacturer == "CANON_MEC" for v in series.values())
    stiff = sorted(series[int(row["expected_series_number"])], key=lambda d: d.SliceLocation)
    assert stiff[0].ImageComments == "Stiffness" and row["expected_unit"] == "kPa x100"
    assert np.array_equal(np.stack([d.pixel_array for d in stiff]) > 0, truth["confidence"])


def test_cohort_csv_has_the_reader_test_columns(corpus) -> None:
    out, _ = corpus
    table = pd.read_csv(out / "cohort.csv")
    for column in ("layout", "expected_series_description", "expected_series_number", "expected_unit",
                   "expected_confidence", "expected_kpa_per_unit", "patient_id", "study_uid", "series_uid",
                   "manual_kpa", "true_kpa", "encoding", "deidentify", "uid_root"):
        assert column in table.columns
    assert list(table.layout) == NAMES
    assert set(table.expected_unit) == {"Pa", "kPa x100", "kPa"}
    assert set(table.expected_confidence) == {"paired_series", "confidence_map", "cross_hatch", "zero_fill"}
    slices = pd.read_csv(out / "slices.csv")
    assert len(slices) == table.n_slices.sum() and set(slices.patient_id) == set(table.patient_id)


def _walk(ds: pydicom.Dataset):
    yield ds
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


@pytest.mark.parametrize("layout", ["canon", "siemens_xa_enhanced"])
@pytest.mark.parametrize("mode", ["absent", "empty"])
def test_deidentified_variants_truly_lack_the_identifiers(layout: str, mode: str) -> None:
    study = L.generate_layout_study(layout, 2, 0, L.LayoutOptions(n_slices=2, deidentify=mode))
    for _, ds in study.datasets():
        for item in _walk(ds):  # also inside the functional groups of the enhanced files
            for keyword in IDENTIFYING_KEYWORDS:
                assert keyword not in item if mode == "absent" else str(item.get(keyword, "")) == ""
        assert ds.PatientSex in ("M", "F") and (mode == "absent") == ("PatientID" not in ds)
    assert study.row["deidentify"] == mode


def test_header_variants_uid_roots_orientation_noise_position_and_descriptions() -> None:
    opts = L.LayoutOptions(n_slices=3, uid_root="ge", iop_noise=True, slice_location_only=True,
                           raw_without_description=True, deidentify="none")
    study = L.generate_layout_study("philips", 3, 0, opts)
    items = study.datasets()
    iops = set()
    for _, ds in items:
        assert ds.SOPInstanceUID.startswith(UID_ROOTS["ge"]) and ds.StudyInstanceUID.startswith(UID_ROOTS["ge"])
        assert "ImagePositionPatient" not in ds and "SliceLocation" in ds
        assert np.allclose([float(v) for v in ds.ImageOrientationPatient], [1, 0, 0, 0, 1, 0], atol=1e-6)
        iops.add(tuple(float(v) for v in ds.ImageOrientationPatient))
        assert ("SeriesDescription" in ds) == ("DERIVED" in ds.ImageType)
    assert len(iops) > 1  # differs between slices (7th decimal)
    plain = L.generate_layout_study("philips", 3, 0, L.LayoutOptions(n_slices=3, uid_root="uuid", iop_noise=False))
    assert all(ds.SOPInstanceUID.startswith("2.25.") and list(ds.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
               for _, ds in plain.datasets())
    # forcing a header variant leaves the images and the truth unchanged
    assert np.array_equal(plain.truth.expert_roi, study.truth.expert_roi)
    assert np.array_equal(plain.series[-1].pixels, study.series[-1].pixels)


def test_implicit_vr_keeps_the_ge_private_tag(tmp_path: Path) -> None:
    study = L.generate_layout_study("ge_mrtouch", 4, 0, L.LayoutOptions(n_slices=1, implicit_vr=True))
    paths = L.write_layout_study(study, tmp_path)
    ds = pydicom.dcmread(paths[0])
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2" and ds[GE_SEQUENCE_TAG].value == "MR-Touch"


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    opts = L.LayoutOptions(n_slices=2)
    for name in ("a", "b"):
        L.generate_layout_cohort(tmp_path / name, "siemens_xa_enhanced", 1, seed=9, opts=opts)
        L.generate_layout_cohort(tmp_path / name / "m", "mmdi_siemens", 1, seed=9, opts=opts)
    L.generate_layout_cohort(tmp_path / "c", "siemens_xa_enhanced", 1, seed=10, opts=opts)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b and len(a) > 10
    assert _tree(tmp_path / "c") != {k: v for k, v in a.items() if not k.startswith("m/")}


def test_cli_layout_list_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cohort.configure_parser(parser)
    assert cohort.run_cli(parser.parse_args(["--layout", "list"])) == 0
    assert capsys.readouterr().out.split() == NAMES
    args = parser.parse_args(["--layout", "canon", "--patients", "1", "--seed", "1", "--out", str(tmp_path)])
    assert cohort.run_cli(args) == 0
    table = pd.read_csv(tmp_path / "cohort.csv")
    assert list(table.layout) == ["canon"] and (tmp_path / "truth" / "P0001.npz").is_file()
    assert cohort.run_cli(parser.parse_args(["--layout", "nope", "--out", str(tmp_path)])) == 2
