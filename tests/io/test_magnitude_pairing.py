"""The reader pairs each analysed elastogram slice with the magnitude image at its position.

The magnitude is the anatomy a reader sees when drawing the ROI; it is only read: the magnitude series
stays in ``skipped`` and no stiffness value, confidence region or series choice depends on it. The
expected magnitude is read here independently with pydicom (series found by ImageType ``M``, slice by
ImagePositionPatient along the slice normal).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mre_core.analysis.stiffness import roi_stats
from mre_core.config import Settings
from mre_core.io import magnitude as magnitude_mod
from mre_core.io.elastogram import ReadResult, StudyInput
from mre_core.io.reader import read_inputs
from mre_core.io.magnitude import MagnitudePairing

DEMO = ("siemens_hatch", "siemens_zero", "ge_pair")


# ---------------------------------------------------------------- exams


def _phantom_exam(tmp_path_factory: pytest.TempPathFactory, style: str) -> Path:
    """``python -m mre_core phantom --style STYLE --out DIR --patients 1 --seed 0`` (in process)."""
    from mre_core.phantom import cohort

    out = tmp_path_factory.mktemp(f"{style}_mag")
    parser = argparse.ArgumentParser()
    cohort.configure_parser(parser)
    args = parser.parse_args(["--style", style, "--out", str(out), "--patients", "1", "--seed", "0",
                              "--workers", "1"])
    assert cohort.run_cli(args) == 0
    return out / "dicom"


@pytest.fixture(scope="module")
def physics_exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _phantom_exam(tmp_path_factory, "physics")


@pytest.fixture(scope="module")
def holdout_exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _phantom_exam(tmp_path_factory, "holdout")


def _exam(request: pytest.FixtureRequest, name: str) -> Path:
    if name in DEMO:
        return request.getfixturevalue("phantom_studies")[name]
    return request.getfixturevalue(f"{name}_exam")


def _layout_exam(tmp: Path, layout: str, seed: int) -> Path:
    from mre_core.phantom.layouts import generate_layout_cohort

    generate_layout_cohort(tmp / layout, layout, 1, seed=seed)
    return tmp / layout / "dicom"


# ---------------------------------------------------------------- independent reading


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _position(ds: pydicom.Dataset) -> float:
    iop = np.asarray(ds.ImageOrientationPatient, float)
    return float(np.dot(np.cross(iop[:3], iop[3:]), np.asarray(ds.ImagePositionPatient, float)))


def _rescaled(ds: pydicom.Dataset) -> np.ndarray:
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return (ds.pixel_array.astype(np.float64) * slope + intercept).astype(np.float32)


def _magnitude_files(root: Path) -> dict[str, list[Path]]:
    """Files of each series whose ImageType marks magnitude images (``M``), by SeriesInstanceUID."""
    out: dict[str, list[Path]] = {}
    for f in _files(root):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if "M" in [str(t).upper() for t in ds.get("ImageType", [])] and int(ds.get("NumberOfFrames", 1) or 1) == 1:
            out.setdefault(str(ds.SeriesInstanceUID), []).append(f)
    return out


def _read(root: Path) -> tuple[ReadResult, StudyInput]:
    result = read_inputs(root, Settings())
    assert len(result.studies) == 1
    return result, result.studies[0]


def _skipped_key(result: ReadResult) -> list[tuple]:
    return [(s.describe(), s.series_uid, s.role, s.rule, tuple(sorted(Path(f).name for f in (s.files or (s.file,)))))
            for s in result.skipped]


def _source(root: Path, label: str) -> Path:
    """The file a reader label names (labels of a folder's files are relative to the folder's parent)."""
    return root.parent / label.split("#")[0]


def _rewrite(paths: list[Path], change: Callable[[pydicom.Dataset], None]) -> None:
    for p in paths:
        ds = pydicom.dcmread(p)
        change(ds)
        ds.save_as(p)


def _copy(src: Path, dst: Path) -> Path:
    """A copy of the exam folder under ``dst``, keeping its name (reader labels start with it)."""
    return Path(shutil.copytree(src, dst / src.name))


# ---------------------------------------------------------------- every generator


@pytest.mark.parametrize("name", [*DEMO, pytest.param("physics", marks=pytest.mark.slow), "holdout"])
def test_every_analysed_slice_gets_the_magnitude_file_at_its_position(request: pytest.FixtureRequest,
                                                                      name: str) -> None:
    root = _exam(request, name)
    _, study = _read(root)
    series = study.series
    mags = _magnitude_files(root)
    assert len(mags) == 1, "each generator writes one magnitude series"
    (uid, files), = mags.items()
    by_pos = {round(_position(pydicom.dcmread(f, stop_before_pixels=True)), 1): f for f in files}
    head = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert series.magnitude_series_uid == uid
    assert series.magnitude_rule.startswith(f"magnitude series {head.SeriesNumber} '{head.SeriesDescription}'")
    assert "paired by slice position" in series.magnitude_rule and "resampled" not in series.magnitude_rule
    for e in series.slices:
        want = by_pos[round(e.position_mm, 1)]
        assert _source(root, e.magnitude_source) == want
        assert e.magnitude is not None and e.magnitude.dtype == np.float32 and e.magnitude.shape == e.shape
        assert np.array_equal(e.magnitude, _rescaled(pydicom.dcmread(want)))


def test_enhanced_mr_magnitude_is_paired_frame_by_frame(tmp_path: Path) -> None:
    root = _layout_exam(tmp_path, "siemens_xa_enhanced", seed=74)
    _, study = _read(root)
    series = study.series
    assert "(Enhanced MR frames), paired by slice position" in series.magnitude_rule
    mag_file = next(f for f in _files(root)
                    if pydicom.dcmread(f, stop_before_pixels=True).SeriesDescription.endswith("MAG"))
    ds = pydicom.dcmread(mag_file)
    shared = ds.SharedFunctionalGroupsSequence[0]
    positions, frames = [], []
    for item, pixels in zip(ds.PerFrameFunctionalGroupsSequence, ds.pixel_array):
        frame = pydicom.Dataset()
        frame.ImagePositionPatient = item.PlanePositionSequence[0].ImagePositionPatient
        frame.ImageOrientationPatient = (item.get("PlaneOrientationSequence")
                                         or shared.PlaneOrientationSequence)[0].ImageOrientationPatient
        for name in ("RescaleSlope", "RescaleIntercept"):
            rescale = item.get("PixelValueTransformationSequence") or shared.get("PixelValueTransformationSequence")
            if rescale:
                setattr(frame, name, rescale[0].get(name))
        positions.append(round(_position(frame), 1))
        slope, intercept = float(frame.get("RescaleSlope", 1) or 1), float(frame.get("RescaleIntercept", 0) or 0)
        frames.append((pixels.astype(np.float64) * slope + intercept).astype(np.float32))
    assert series.magnitude_series_uid == str(ds.SeriesInstanceUID)
    for e in series.slices:
        i = positions.index(round(e.position_mm, 1))
        assert _source(root, e.magnitude_source) == mag_file and e.magnitude_source.endswith(f"#{i + 1}")
        assert e.magnitude is not None and e.magnitude.shape == e.shape
        assert np.array_equal(e.magnitude, frames[i])


def test_ge_raw_phase_magnitude_series_is_not_used(tmp_path: Path) -> None:
    root = _layout_exam(tmp_path, "ge_mrtouch", seed=70)
    result, study = _read(root)
    assert study.series.magnitude_rule == "no magnitude series in this study"
    assert study.series.magnitude_series_uid is None
    assert all(e.magnitude is None and e.magnitude_source == "" for e in study.series.slices)
    assert any(s.role == "raw_phase_magnitude" for s in result.skipped)


def test_a_series_mixing_magnitude_and_phase_at_one_position_is_not_paired(tmp_path: Path) -> None:
    root = _layout_exam(tmp_path, "philips", seed=75)
    _, study = _read(root)
    assert study.series.magnitude_rule.startswith("no magnitude series matches the analysed slices: series 2101")
    assert "images at slice position" in study.series.magnitude_rule
    assert all(e.magnitude is None for e in study.series.slices)


# ---------------------------------------------------------------- nothing else changes


def _assert_same_measurement(a: StudyInput, b: StudyInput) -> None:
    """Same series chosen, same rules and flags, same kPa and confidence pixels, same confidence-region stiffness."""
    sa, sb = a.series, b.series
    for attr in ("series_uid", "description", "paired_series_uid", "confidence_series_uid", "series_rule",
                 "unit_rule", "confidence_rule", "ingest_flags"):
        assert getattr(sa, attr) == getattr(sb, attr), attr
    assert a.meta == b.meta
    assert [e.sop_uid for e in sa.slices] == [e.sop_uid for e in sb.slices]
    for ea, eb in zip(sa.slices, sb.slices):
        assert np.array_equal(ea.kpa, eb.kpa, equal_nan=True)
        assert np.array_equal(ea.confidence, eb.confidence)
        assert (ea.profile, ea.kpa_per_unit, ea.encoding, ea.position_mm) == (eb.profile, eb.kpa_per_unit, eb.encoding,
                                                                            eb.position_mm)
        stats = [astuple(roi_stats(e.kpa, e.confidence, e.pixel_spacing_mm)) for e in (ea, eb)]
        assert np.array_equal(*np.asarray(stats, float), equal_nan=True)


@pytest.mark.parametrize("name", DEMO)
def test_pairing_leaves_the_measurement_and_the_skipped_list_unchanged(phantom_studies: dict[str, Path], name: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with_result, with_study = _read(phantom_studies[name])
    monkeypatch.setattr(magnitude_mod, "safe_pair_magnitude", lambda *_: MagnitudePairing())
    off_result, off_study = _read(phantom_studies[name])
    assert off_study.series.magnitude_series_uid is None and all(e.magnitude is None for e in off_study.series.slices)
    assert with_study.series.magnitude_series_uid is not None
    _assert_same_measurement(with_study, off_study)
    assert _skipped_key(with_result) == _skipped_key(off_result)
    mag = [s for s in with_result.skipped if s.series_uid == with_study.series.magnitude_series_uid]
    assert len(mag) == 1 and mag[0].role == "magnitude" and mag[0].reason == "magnitude images, not an elastogram"
    assert mag[0].n_files == len(with_study.series.slices)


@pytest.mark.parametrize("name", DEMO)
def test_without_the_magnitude_files_nothing_else_changes(phantom_studies: dict[str, Path], name: str,
                                                          tmp_path: Path) -> None:
    src = phantom_studies[name]
    with_result, with_study = _read(src)
    root = _copy(src, tmp_path / name)
    (uid, files), = _magnitude_files(root).items()
    assert {f.parent for f in files} == {files[0].parent}, "the magnitude series is one folder"
    shutil.rmtree(files[0].parent)
    result, study = _read(root)
    assert study.series.magnitude_series_uid is None
    assert study.series.magnitude_rule == "no magnitude series in this study"
    assert all(e.magnitude is None and e.magnitude_source == "" for e in study.series.slices)
    _assert_same_measurement(with_study, study)
    assert _skipped_key(result) == [k for k in _skipped_key(with_result) if k[1] != uid]


# ---------------------------------------------------------------- not paired


def test_a_magnitude_at_other_slice_positions_is_not_paired(phantom_studies: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(phantom_studies["siemens_zero"], tmp_path / "moved")
    (_, files), = _magnitude_files(root).items()

    def move(ds: pydicom.Dataset) -> None:
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 3.0]
        ds.SliceLocation = ipp[2] + 3.0

    _rewrite(files[:1], move)  # one slice of five moved: the series no longer matches slice by slice
    result, study = _read(root)
    rule = study.series.magnitude_rule
    assert rule.startswith("no magnitude series matches the analysed slices: series 6 ") and "1 of 5" in rule
    assert study.series.magnitude_series_uid is None and all(e.magnitude is None for e in study.series.slices)
    assert any(s.role == "magnitude" for s in result.skipped)


def test_a_magnitude_of_another_frame_of_reference_is_not_paired(phantom_studies: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    root = _copy(phantom_studies["ge_pair"], tmp_path / "other_for")
    (_, files), = _magnitude_files(root).items()
    other = generate_uid()
    _rewrite(files, lambda ds: setattr(ds, "FrameOfReferenceUID", other))
    _, study = _read(root)
    assert "(another frame of reference)" in study.series.magnitude_rule
    assert study.series.magnitude_series_uid is None and all(e.magnitude is None for e in study.series.slices)


def test_of_two_matching_magnitude_series_the_closest_series_number_is_chosen(phantom_studies: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    root = _copy(phantom_studies["siemens_zero"], tmp_path / "two")
    (uid, files), = _magnitude_files(root).items()
    copy_dir = root / "099-second_magnitude"
    shutil.copytree(files[0].parent, copy_dir)
    second = generate_uid()

    def renumber(ds: pydicom.Dataset) -> None:
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = second, 99, "second_Magnitude"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    _rewrite(_files(copy_dir), renumber)
    _, study = _read(root)
    rule = study.series.magnitude_rule
    assert study.series.magnitude_series_uid == uid, rule  # series 6 is closer to the elastogram's 9 than 99
    assert "of 2 matching magnitude series, the closest series number (also matched: series 99" in rule


# ---------------------------------------------------------------- another grid


def _downsample(files: list[Path], factor: int, spacing_factor: float) -> dict[Path, np.ndarray]:
    """Rewrite each file on a grid ``factor`` times coarser (block means), PixelSpacing x ``spacing_factor``,
    ImagePositionPatient moved to the first coarse pixel's centre; returns the new stored values per file."""
    out: dict[Path, np.ndarray] = {}

    def coarse(ds: pydicom.Dataset) -> None:
        fine = ds.pixel_array.astype(np.float64)
        rows, cols = fine.shape[0] // factor, fine.shape[1] // factor
        small = fine[:rows * factor, :cols * factor].reshape(rows, factor, cols, factor).mean(axis=(1, 3))
        stored = np.rint(small).astype(np.uint16)
        old = [float(v) for v in ds.PixelSpacing]
        new = [v * spacing_factor for v in old]
        iop = np.asarray(ds.ImageOrientationPatient, float)
        ipp = (np.asarray(ds.ImagePositionPatient, float) + 0.5 * (new[1] - old[1]) * iop[:3]
               + 0.5 * (new[0] - old[0]) * iop[3:])
        ds.ImagePositionPatient = [round(float(v), 4) for v in ipp]
        ds.Rows, ds.Columns, ds.PixelSpacing = rows, cols, [round(v, 6) for v in new]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = stored.tobytes()
        out[path] = stored

    for path in files:
        _rewrite([path], coarse)
    return out


def test_a_coarser_magnitude_over_the_same_field_of_view_is_resampled(phantom_studies: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    src = phantom_studies["siemens_zero"]
    _, fine_study = _read(src)
    root = _copy(src, tmp_path / "coarse")
    (uid, files), = _magnitude_files(root).items()
    stored = _downsample(files, factor=2, spacing_factor=2.0)  # 204x256 at 1.5625 mm -> 102x128 at 3.125 mm
    result, study = _read(root)
    series = study.series
    assert series.magnitude_series_uid == uid
    assert "paired by slice position, resampled bilinearly from 102x128 to the elastogram's 204x256 " \
           "(same field of view)" in series.magnitude_rule
    by_name = {p.name: v for p, v in stored.items()}
    for e, fine in zip(series.slices, fine_study.series.slices):
        assert e.magnitude is not None and e.magnitude.shape == e.shape == (204, 256)
        want = cv2.resize(by_name[Path(e.magnitude_source).name].astype(np.float32), (256, 204),
                          interpolation=cv2.INTER_LINEAR)
        assert np.allclose(e.magnitude, want)
        # the same anatomy as the original fine magnitude, not shifted or transposed
        assert np.corrcoef(e.magnitude.ravel(), fine.magnitude.ravel())[0, 1] > 0.95
    _assert_same_measurement(fine_study, study)
    assert any(s.series_uid == uid and s.role == "magnitude" for s in result.skipped)


def test_a_coarser_magnitude_over_another_field_of_view_is_not_paired(phantom_studies: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    root = _copy(phantom_studies["siemens_zero"], tmp_path / "coarse_other_fov")
    (_, files), = _magnitude_files(root).items()
    _downsample(files, factor=2, spacing_factor=2.5)  # 102x128 at 3.906 mm: 398 x 500 mm, not 319 x 400 mm
    _, study = _read(root)
    assert "at the slice positions, but 102x128 over 398.4 x 500.0 mm, the elastogram 204x256 over 318.8 x 400.0 mm" \
        in study.series.magnitude_rule
    assert study.series.magnitude_series_uid is None and all(e.magnitude is None for e in study.series.slices)
