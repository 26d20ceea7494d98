"""Enhanced MR frames are converted to kPa with their own functional-group values.

In the Enhanced MR IOD the stored-value conversion of a frame is in its functional groups: Pixel Value
Transformation (DICOM PS3.3 C.7.6.16.2.9, ``PixelValueTransformationSequence``) and Real World Value
Mapping (PS3.3 C.7.6.16.2.11, ``RealWorldValueMappingSequence``), per frame or shared. The layout phantom
``siemens_xa_enhanced`` is rewritten with pydicom so that its stored values are the original ones divided
by a slope (rounded up, so no non-zero pixel becomes 0) and the slope only in the functional groups; the
reader must then give the original kPa within the rounding (one original stored unit, 0.01 kPa, per
unit of slope above 1).
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mre_core.config import Settings
from mre_core.io import reader
from mre_core.io.elastogram import Elastogram, StudyInput, VendorProfile
from mre_core.io.reader import read_inputs
from tests import dicom_factory as f

SIEMENS_KPA_PER_UNIT = 0.01  #: the layout's Siemens rule: stored value = kPa x 100
TOL = 1e-5  #: float32 arithmetic


# ---------------------------------------------------------------- the exam and its rewrites


@pytest.fixture(scope="module")
def enhanced_exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``siemens_xa_enhanced`` layout study (``dicom/`` folder), written once for the module."""
    from mre_core.phantom.layouts import generate_layout_cohort

    out = tmp_path_factory.mktemp("enhanced_values")
    generate_layout_cohort(out, "siemens_xa_enhanced", 1, seed=74)
    return out / "dicom"


def _elastogram_file(root: Path) -> Path:
    (path,) = [p for p in root.rglob("*.dcm")
               if str(pydicom.dcmread(p, stop_before_pixels=True).SeriesDescription).endswith("Elastogram")]
    return path


def _copy(root: Path, tmp: Path) -> Path:
    """The exam under ``tmp`` with the same folder name (the reader's labels start with it)."""
    return Path(shutil.copytree(root, tmp / root.name))


def _read(root: Path) -> StudyInput:
    result = read_inputs(root, Settings())
    assert len(result.studies) == 1, result.skipped
    return result.studies[0]


def _by_frame(study: StudyInput) -> dict[int, Elastogram]:
    out = {e.frame_number: e for e in study.series.slices}
    assert None not in out
    return out


def _seq(**attrs: object) -> Sequence:
    item = Dataset()
    for key, value in attrs.items():
        setattr(item, key, value)
    return Sequence([item])


def _rwvm(slope: float, unit: str = "kPa") -> Sequence:
    """A Real World Value Mapping item (PS3.3 C.7.6.16.2.11) with a UCUM unit."""
    return _seq(RealWorldValueFirstValueMapped=0, RealWorldValueLastValueMapped=4095, RealWorldValueIntercept=0.0,
                RealWorldValueSlope=slope, LUTExplanation="stiffness", LUTLabel="MRE",
                MeasurementUnitsCodeSequence=_seq(CodeValue=unit, CodingSchemeDesignator="UCUM", CodeMeaning=unit))


def _divided(stored: np.ndarray, divisor: int) -> np.ndarray:
    """ceil(stored / divisor): 0 stays 0, no other value becomes 0."""
    return ((stored.astype(np.int64) + divisor - 1) // divisor).astype(stored.dtype)


def _rewrite(path: Path, divisors: list[int], change: Callable[[pydicom.Dataset], None]) -> np.ndarray:
    """Frame ``i``'s stored values divided by ``divisors[i]``, top-level rescale removed, then ``change``;
    returns the new stored values."""
    ds = pydicom.dcmread(path)
    original = ds.pixel_array
    assert int(original.max()) < 4095, "no saturated pixel: it would be read as NaN before and a value after"
    new = np.stack([_divided(original[i], d) for i, d in enumerate(divisors)])
    ds.PixelData = np.ascontiguousarray(new).tobytes()
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType", "RealWorldValueMappingSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    change(ds)
    ds.save_as(path)
    return new


def _shared(ds: pydicom.Dataset) -> Dataset:
    return ds.SharedFunctionalGroupsSequence[0]


def _assert_same_kpa(before: dict[int, Elastogram], after: dict[int, Elastogram], divisors: list[int]) -> None:
    """Every frame: the same kPa as the original file within the rounding, and the same NaN pixels."""
    assert before.keys() == after.keys()
    for frame, e in after.items():
        old = before[frame].kpa
        assert np.array_equal(np.isnan(e.kpa), np.isnan(old)), f"frame {frame}"
        ok = ~np.isnan(old)
        diff = e.kpa[ok] - old[ok]
        assert diff.min() >= -TOL and diff.max() <= (divisors[frame - 1] - 1) * SIEMENS_KPA_PER_UNIT + TOL, frame
        assert np.array_equal(e.confidence, before[frame].confidence), f"frame {frame}"


# ---------------------------------------------------------------- Pixel Value Transformation (C.7.6.16.2.9)


@pytest.mark.parametrize("top_level", [None, (1.0, 0.0), (5.0, -3.0)], ids=["no-top-level", "top-1", "top-5"])
def test_a_shared_rescale_in_the_functional_groups_is_applied(enhanced_exam: Path, tmp_path: Path,
                                                              top_level: tuple[float, float] | None) -> None:
    """Slope 2 only in SharedFunctionalGroupsSequence[0]; a disagreeing top-level rescale loses to it."""
    before = _by_frame(_read(enhanced_exam))
    root = _copy(enhanced_exam, tmp_path)
    n = len(before)

    def change(ds: pydicom.Dataset) -> None:
        _shared(ds).PixelValueTransformationSequence = _seq(RescaleSlope=2, RescaleIntercept=0, RescaleType="US")
        if top_level is not None:
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = top_level[0], top_level[1], "US"

    new = _rewrite(_elastogram_file(root), [2] * n, change)
    study = _read(root)
    after = _by_frame(study)
    _assert_same_kpa(before, after, [2] * n)
    for frame, e in after.items():
        stored = new[frame - 1].astype(np.float64)
        ok = stored != 0
        np.testing.assert_allclose(e.kpa[ok], stored[ok] * 2 * SIEMENS_KPA_PER_UNIT, rtol=0, atol=TOL)
        assert e.profile is VendorProfile.SIEMENS and e.kpa_per_unit == SIEMENS_KPA_PER_UNIT
    assert study.series.unit_rule == "rule siemens.xa.elastogram: stored value = kPa x 100"
    assert len({id(e.header) for e in after.values()}) == 1, "frames with the same values share one header"


def test_a_per_frame_rescale_beats_the_shared_one(enhanced_exam: Path, tmp_path: Path) -> None:
    before = _by_frame(_read(enhanced_exam))
    root = _copy(enhanced_exam, tmp_path)
    n = len(before)
    divisors = [2] * n
    divisors[0], divisors[2] = 4, 3  # frames 1 and 3 carry their own slope; the others use the shared slope 2

    def change(ds: pydicom.Dataset) -> None:
        _shared(ds).PixelValueTransformationSequence = _seq(RescaleSlope=2, RescaleIntercept=0, RescaleType="US")
        for i in (0, 2):
            ds.PerFrameFunctionalGroupsSequence[i].PixelValueTransformationSequence = _seq(
                RescaleSlope=divisors[i], RescaleIntercept=0, RescaleType="US")

    new = _rewrite(_elastogram_file(root), divisors, change)
    after = _by_frame(_read(root))
    _assert_same_kpa(before, after, divisors)
    for frame, e in after.items():
        stored = new[frame - 1].astype(np.float64)
        ok = stored != 0
        slope = divisors[frame - 1]
        np.testing.assert_allclose(e.kpa[ok], stored[ok] * slope * SIEMENS_KPA_PER_UNIT, rtol=0, atol=TOL)
        assert float(e.header.RescaleSlope) == slope
    assert after[1].header is not after[2].header and after[1].header is not after[3].header
    assert after[2].header is after[4].header, "frames with the same values share one header"


def test_a_rescale_only_at_the_top_level_is_still_used(enhanced_exam: Path, tmp_path: Path) -> None:
    """No Pixel Value Transformation in the functional groups: the file's top-level rescale (as before)."""
    before = _by_frame(_read(enhanced_exam))
    root = _copy(enhanced_exam, tmp_path)
    n = len(before)

    def change(ds: pydicom.Dataset) -> None:
        del _shared(ds).PixelValueTransformationSequence
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2, 0, "US"

    _rewrite(_elastogram_file(root), [2] * n, change)
    _assert_same_kpa(before, _by_frame(_read(root)), [2] * n)


# ---------------------------------------------------------------- Real World Value Mapping (C.7.6.16.2.11)


@pytest.mark.parametrize("top_level_pa", [False, True], ids=["no-top-level", "top-level-Pa"])
def test_a_kpa_mapping_in_the_functional_groups_is_the_unit_rule(enhanced_exam: Path, tmp_path: Path,
                                                                 top_level_pa: bool) -> None:
    """A UCUM kPa RealWorldValueMapping only in the functional groups (shared, and per frame for frame 2)
    names the RWVM unit rule and gives the values; a disagreeing top-level mapping loses to it."""
    before = _by_frame(_read(enhanced_exam))
    root = _copy(enhanced_exam, tmp_path)
    n = len(before)
    divisors = [2] * n
    divisors[1] = 4

    def change(ds: pydicom.Dataset) -> None:
        _shared(ds).RealWorldValueMappingSequence = _rwvm(2 * SIEMENS_KPA_PER_UNIT)
        ds.PerFrameFunctionalGroupsSequence[1].RealWorldValueMappingSequence = _rwvm(4 * SIEMENS_KPA_PER_UNIT)
        if top_level_pa:
            ds.RealWorldValueMappingSequence = _rwvm(1.0, "Pa")

    new = _rewrite(_elastogram_file(root), divisors, change)
    study = _read(root)
    after = _by_frame(study)
    _assert_same_kpa(before, after, divisors)
    assert study.series.unit_rule == "RealWorldValueMapping units (kPa/Pa)"
    assert study.meta["unit_profile_source"] == study.series.unit_rule
    assert "fallback_unit" not in study.series.ingest_flags
    for frame, e in after.items():
        slope = divisors[frame - 1] * SIEMENS_KPA_PER_UNIT
        assert e.profile is VendorProfile.RWVM and e.kpa_per_unit == pytest.approx(slope)
        stored = new[frame - 1].astype(np.float64)
        ok = stored != 0
        np.testing.assert_allclose(e.kpa[ok], stored[ok] * slope, rtol=0, atol=TOL)


# ---------------------------------------------------------------- the frame headers


def test_frame_headers_are_copies_that_leave_the_dataset_alone(enhanced_exam: Path, tmp_path: Path) -> None:
    root = _copy(enhanced_exam, tmp_path)
    n = len(_read(enhanced_exam).series.slices)
    path = _elastogram_file(root)

    def change(ds: pydicom.Dataset) -> None:
        ds.RescaleSlope, ds.RescaleIntercept = 7, 1  # disagrees with the functional groups
        _shared(ds).PixelValueTransformationSequence = _seq(RescaleSlope=2, RescaleIntercept=0, RescaleType="US")
        ds.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence = _seq(
            RescaleSlope=4, RescaleIntercept=0)
        ds.PerFrameFunctionalGroupsSequence[0].RealWorldValueMappingSequence = _rwvm(0.04)

    _rewrite(path, [4] + [2] * (n - 1), change)
    ds = pydicom.dcmread(path)
    ds.PixelData  # noqa: B018 - read the pixel data element before the snapshot (the reader deletes it)
    snapshot = copy.deepcopy(ds)
    del snapshot.PixelData
    slices = reader._parse_frames("exam#file", ds)
    assert ds == snapshot, "the file's dataset is not modified (beyond the pixel data the reader always drops)"
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (7, 1) and "RescaleType" not in ds
    assert "RealWorldValueMappingSequence" not in ds
    first, *others = slices
    assert (float(first.header.RescaleSlope), float(first.header.RescaleIntercept)) == (4, 0)
    assert "RescaleType" not in first.header, "the frame's item has none: the top level's is not kept either"
    assert first.header.RealWorldValueMappingSequence[0].RealWorldValueSlope == 0.04
    assert len({id(s.header) for s in others}) == 1 and others[0].header is not first.header
    for s in others:
        assert (float(s.header.RescaleSlope), float(s.header.RescaleIntercept), s.header.RescaleType) == (2, 0, "US")
        assert "RealWorldValueMappingSequence" not in s.header
    changed = {pydicom.tag.Tag(k) for k in ("RescaleSlope", "RescaleIntercept", "RescaleType",
                                            "RealWorldValueMappingSequence")}
    for s in slices:  # a shallow copy: every other element is the dataset's (raw ones are decoded per copy)
        assert s.header is not ds and type(s.header) is type(ds) and s.header.file_meta is ds.file_meta
        assert s.header["PerFrameFunctionalGroupsSequence"] is ds["PerFrameFunctionalGroupsSequence"]
        assert s.header["SharedFunctionalGroupsSequence"] is ds["SharedFunctionalGroupsSequence"]
        assert set(s.header.keys()) ^ set(ds.keys()) <= changed
        for tag in set(ds.keys()) - changed:
            assert s.header[tag] == ds[tag], tag


def test_a_dataset_without_values_in_the_functional_groups_is_shared_as_it_is(enhanced_exam: Path,
                                                                              tmp_path: Path) -> None:
    root = _copy(enhanced_exam, tmp_path)
    path = _elastogram_file(root)
    ds = pydicom.dcmread(path)
    del _shared(ds).PixelValueTransformationSequence
    ds.save_as(path)
    ds = pydicom.dcmread(path)
    slices = reader._parse_frames("exam#file", ds)
    assert all(s.header is ds for s in slices)


# ---------------------------------------------------------------- what must not change


def _old_frame_header(ds: Dataset, rescale: object, rwvm: object) -> Dataset:
    return ds  # the reader before frame headers: every frame kept the file's dataset


def _summary(study: StudyInput) -> tuple:
    s = study.series
    return (study.patient_id, study.study_uid, s.series_uid, s.description, s.manufacturer, s.series_rule,
            s.unit_rule, s.confidence_rule, s.ingest_flags, s.magnitude_series_uid, s.magnitude_rule,
            s.paired_series_uid, s.confidence_series_uid, dict(study.meta),
            [(e.sop_uid, e.frame_number, e.profile, e.kpa_per_unit, e.encoding, e.position_mm, e.source,
              e.magnitude_source) for e in s.slices])


def _assert_identical(new: StudyInput, old: StudyInput) -> None:
    assert _summary(new) == _summary(old)
    for a, b in zip(new.series.slices, old.series.slices, strict=True):
        assert a.kpa.dtype == b.kpa.dtype and np.array_equal(a.kpa, b.kpa, equal_nan=True)
        assert np.array_equal(a.confidence, b.confidence)
        assert (a.magnitude is None) == (b.magnitude is None)
        if a.magnitude is not None:
            assert np.array_equal(a.magnitude, b.magnitude)


def test_the_enhanced_mr_phantom_reads_exactly_as_before(enhanced_exam: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    new = _read(enhanced_exam)
    with monkeypatch.context() as m:
        m.setattr(reader, "_frame_header", _old_frame_header)
        old = _read(enhanced_exam)
    _assert_identical(new, old)
    ds = pydicom.dcmread(_elastogram_file(enhanced_exam))
    for e in new.series.slices:  # and the values are the file's stored values x 0.01
        stored = ds.pixel_array[e.frame_number - 1].astype(np.float64)
        ok = stored != 0
        np.testing.assert_allclose(e.kpa[ok], stored[ok] * SIEMENS_KPA_PER_UNIT, rtol=0, atol=TOL)


def test_a_single_frame_file_reads_exactly_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = [f.zero_fill(*f.synthetic_slice(64, 64, seed=i)[::2]) for i in range(3)]
    files = {}
    for i, ds in enumerate(f.series(arrays, study_uid=pydicom.uid.generate_uid())):
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2, 0, "US"
        f.write(ds, tmp_path / "conf" / f"IM{i}")
        files[str(ds.SOPInstanceUID)] = (tmp_path / "conf" / f"IM{i}", arrays[i])
    new = _read(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(reader, "_frame_header", _old_frame_header)
        old = _read(tmp_path)
    _assert_identical(new, old)
    assert len(new.series.slices) == 3
    for e in new.series.slices:
        path, stored = files[e.sop_uid]
        assert e.frame_number is None and e.header == pydicom.dcmread(path, stop_before_pixels=True)
        ok = stored != 0
        np.testing.assert_allclose(e.kpa[ok], stored[ok].astype(np.float64) * 2 * SIEMENS_KPA_PER_UNIT,
                                   rtol=0, atol=TOL)
