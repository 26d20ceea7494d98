"""The DICOM reader: ingest, validation with reasons, grouping, series choice, units, confidence."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEGLSLossless, RLELossless, generate_uid

from mre_core.config import Settings
from mre_core.io.elastogram import ConfidenceEncoding, ReadResult, VendorProfile
from mre_core.io.reader import read_inputs
from mre_core.io.roles import series_role
from mre_core.io.units import to_kpa
from tests import dicom_factory as f

SETTINGS = Settings()


def _only_study(result: ReadResult):
    assert len(result.studies) == 1, result.skipped
    return result.studies[0]


def _reasons(result: ReadResult) -> dict[str, str]:
    """File name → reason, for every file left out (a series entry lists all its files)."""
    return {Path(f.split(":")[-1]).name: s.reason for s in result.skipped for f in (s.files or (s.file,))}


def _n_files(result: ReadResult) -> int:
    return sum(s.n_files for s in result.skipped)


def _conf_study(tmp_path: Path, encoding: str = "hatch", n: int = 3, **kw) -> tuple[Path, list[np.ndarray]]:
    """Write one study (confidence series + magnitude) and return the folder and the truth per slice."""
    study = generate_uid()
    arrays, truths = [], []
    for i in range(n):
        stored, body, low = f.synthetic_slice(96, 96, seed=i)
        arrays.append(f.burn_hatch(stored, low, 1000, 7) if encoding == "hatch" else f.zero_fill(stored, low))
        truths.append(body & ~low)
    for i, ds in enumerate(f.series(arrays, study_uid=study, **kw)):
        f.write(ds, tmp_path / "conf" / f"IM{i}")
    for i, ds in enumerate(f.series([np.full((96, 96), 50)] * n, study_uid=study, description="MRE_MAG",
                                    image_type="ORIGINAL\\PRIMARY\\M\\ND")):
        f.write(ds, tmp_path / "mag" / f"IM{i}.dcm")
    return tmp_path, truths


# ---------------------------------------------------------------- bad inputs, one reason each


def test_not_dicom_is_reported(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, not an image\n" * 20)
    result = read_inputs([tmp_path / "notes.txt"], SETTINGS)
    assert result.studies == () and "not a DICOM file" in result.skipped[0].reason


def test_truncated_file_is_reported():
    data = f.to_bytes(f.mr_dataset(f.synthetic_slice(64, 64)[0]))
    result = read_inputs([("cut.dcm", data[: len(data) - 3000])], SETTINGS)
    assert "truncated" in result.skipped[0].reason


def test_truncated_header_is_reported():
    data = f.to_bytes(f.mr_dataset(f.synthetic_slice(64, 64)[0]))
    result = read_inputs([("cut.dcm", data[:400])], SETTINGS)
    assert result.skipped[0].reason.startswith("truncated file")


def test_dicom_without_pixel_data_is_reported():
    sr = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds = f.mr_dataset(np.ones((8, 8)), sop_class=sr, modality="SR")
    for tag in ("PixelData", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated"):
        delattr(ds, tag)
    result = read_inputs([("sr.dcm", f.to_bytes(ds))], SETTINGS)
    assert "without pixel data" in result.skipped[0].reason


def test_rgb_secondary_capture_is_reported():
    result = read_inputs([("shot.dcm", f.to_bytes(f.rgb_dataset()))], SETTINGS)
    assert "colour screen save (RGB)" in result.skipped[0].reason and "gray-scale stiffness series" in result.skipped[0].reason


def test_ct_is_reported():
    result = read_inputs([("ct.dcm", f.to_bytes(f.ct_dataset()))], SETTINGS)
    assert result.skipped[0].reason == "CT image: only MR elastograms are analysed"


def test_missing_pixel_spacing_is_reported():
    ds = f.mr_dataset(f.synthetic_slice(32, 32)[0], pixel_spacing=None)
    result = read_inputs([("nosp.dcm", f.to_bytes(ds))], SETTINGS)
    assert result.skipped[0].reason.startswith("missing PixelSpacing: cannot measure ROI area")


def test_all_zero_image_is_reported():
    result = read_inputs([("zero.dcm", f.to_bytes(f.mr_dataset(np.zeros((16, 16)))))], SETTINGS)
    assert "all-zero image" in result.skipped[0].reason


def test_mixed_size_series_reports_the_odd_slice(tmp_path):
    folder, _ = _conf_study(tmp_path)
    odd = f.mr_dataset(np.full((48, 48), 300))
    first = dcmread(folder / "conf" / "IM0")
    odd.StudyInstanceUID, odd.SeriesInstanceUID, odd.PatientID = first.StudyInstanceUID, first.SeriesInstanceUID, "P1"
    f.write(odd, folder / "conf" / "IModd")
    result = read_inputs([folder], SETTINGS)
    assert len(_only_study(result).series.slices) == 3
    assert "mixed-size series: this slice is 48x48 but the series is 96x96" in _reasons(result)["IModd"]


def test_zip_with_traversal_member_is_refused_and_rest_read():
    ds = f.mr_dataset(f.burn_hatch(*f.synthetic_slice(96, 96)[::2], 1000, 7))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("study/IM1", f.to_bytes(ds))
        zf.writestr("../../etc/evil", b"x")
        zf.writestr("/abs/path.dcm", b"x")
    result = read_inputs([("upload.zip", buf.getvalue())], SETTINGS)
    assert _only_study(result).series.slices[0].source == "upload.zip:study/IM1"
    reasons = sorted(s.reason for s in result.skipped)
    assert len(reasons) == 2 and all(r.startswith("unsafe path in zip") for r in reasons)


def test_file_over_size_limit_is_refused_without_reading(tmp_path):
    big = tmp_path / "huge.dcm"
    with big.open("wb") as fh:
        fh.truncate(50 * 2**30)  # sparse: 50 GB that would exhaust memory if read
    result = read_inputs([big], Settings(max_file_mb=1))
    assert "over the size limit of 1.0 MB" in result.skipped[0].reason


def test_zip_member_over_size_limit_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.dcm", b"\0" * 3 * 2**20)
    result = read_inputs([("a.zip", buf.getvalue())], Settings(max_file_mb=1))
    assert "over the size limit" in result.skipped[0].reason


# ---------------------------------------------------------------- encodings through the reader


@pytest.mark.parametrize("encoding", ["hatch", "zero"])
def test_confidence_series_is_found_and_decoded(tmp_path, encoding):
    folder, truths = _conf_study(tmp_path, encoding)
    result = read_inputs([folder], SETTINGS)
    study = _only_study(result)
    expected = ConfidenceEncoding.CROSS_HATCH if encoding == "hatch" else ConfidenceEncoding.ZERO_FILL
    assert study.series.encoding is expected
    for e, truth in zip(study.series.slices, truths):
        assert not np.any(e.confidence & ~np.isfinite(e.kpa))
        agreement = np.mean(e.confidence == truth)
        assert agreement > (0.97 if encoding == "hatch" else 0.9999)
        assert np.all(np.isnan(e.kpa[~np.isfinite(e.kpa)]))
        assert "PixelData" not in e.header and e.header.SOPInstanceUID == e.sop_uid
    assert all("magnitude images" in r for r in _reasons(result).values()) and _n_files(result) == 3
    assert len(result.skipped) == 1, "the magnitude series is one entry"


def test_hatch_pixels_are_nan_and_never_confident(tmp_path):
    folder, _ = _conf_study(tmp_path, "hatch", n=1)
    e = _only_study(read_inputs([folder], SETTINGS)).series.slices[0]
    assert np.nanmax(e.kpa) < 5.0  # no 10 kPa hatch value left in the map
    assert e.encoding is ConfidenceEncoding.CROSS_HATCH


def test_ge_pair_is_detected(tmp_path):
    study = generate_uid()
    full, truths = [], []
    for i in range(3):
        stored, body, low = f.synthetic_slice(64, 64, seed=i)
        full.append(stored * 10)
        truths.append(body & ~low)
    masked = [f.zero_fill(a, ~t) for a, t in zip(full, truths)]
    ge = "GE MEDICAL SYSTEMS"
    full_ds = f.series(full, study_uid=study, description="Elastogram gray", manufacturer=ge)
    for i, ds in enumerate(full_ds):
        f.write(ds, tmp_path / "full" / f"{i}.dcm")
    for i, ds in enumerate(f.series(masked, study_uid=study, description="Stiffness masked", manufacturer=ge)):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = full_ds[i].SOPClassUID, full_ds[i].SOPInstanceUID
        ds.SourceImageSequence = [ref]  # GE links the masked copy to the full map
        f.write(ds, tmp_path / "masked" / f"{i}.dcm")
    result = read_inputs([tmp_path], SETTINGS)
    s = _only_study(result)
    assert s.series.encoding is ConfidenceEncoding.PAIRED_SERIES and s.series.paired_series_uid
    assert result.skipped == ()
    assert s.meta["paired_full_map_sources"].count("full") == 3
    for e, truth, a in zip(s.series.slices, truths, full):
        assert np.array_equal(e.confidence, truth)
        assert e.profile is VendorProfile.GE
        np.testing.assert_allclose(e.kpa[truth], a[truth] / 1000.0, rtol=1e-6)


def test_unlinked_zero_filled_copy_of_a_plain_map_stays_zero_fill(tmp_path):
    study = generate_uid()
    full = [f.synthetic_slice(64, 64, seed=i) for i in range(2)]
    for i, ds in enumerate(f.series([a for a, _, _ in full], study_uid=study, description="MRE_STIFFNESS")):
        f.write(ds, tmp_path / "full" / str(i))
    conf_series = f.series([f.zero_fill(a, low) for a, _, low in full], study_uid=study, description="Stiffness Conf")
    for i, ds in enumerate(conf_series):
        f.write(ds, tmp_path / "conf" / str(i))
    result = read_inputs([tmp_path], SETTINGS)
    assert _only_study(result).series.encoding is ConfidenceEncoding.ZERO_FILL
    assert all("without 95 % confidence map" in s.reason for s in result.skipped) and _n_files(result) == 2


def test_plain_elastogram_without_pair_is_reported(tmp_path):
    ds = f.mr_dataset(f.synthetic_slice(64, 64)[0], description="MRE_STIFFNESS")
    result = read_inputs([("plain.dcm", f.to_bytes(ds))], SETTINGS)
    assert result.studies == () and "without 95 % confidence map" in result.skipped[0].reason


def test_series_roles_from_keywords():
    def role(desc: str, it: str = "DERIVED\\PRIMARY") -> str:
        return series_role(f.mr_dataset(np.ones((2, 2)), description=desc, image_type=it))
    assert role("MRE_MAG") == "magnitude" and role("ep2d_mre_tra", "ORIGINAL\\PRIMARY\\M\\ND") == "magnitude"
    assert role("Wave images") == "wave" and role("MRE_WAVE") == "wave" and role("Phase") == "wave"
    assert role("Gray elastogram with 95% confidence map") == "elastogram" and role("Stiffness Conf") == "elastogram"
    assert role("Elastogram image") == "elastogram" and role("t2_haste") == "unknown"


def test_best_of_two_confidence_series_is_chosen_and_other_reported(tmp_path):
    folder, _ = _conf_study(tmp_path, "hatch")
    study = dcmread(folder / "conf" / "IM0").StudyInstanceUID
    stored, body, low = f.synthetic_slice(96, 96, seed=0)
    f.write(f.mr_dataset(f.zero_fill(stored, low), study_uid=study, description="MRE stiffness conf"),
            folder / "other" / "X")
    result = read_inputs([folder], SETTINGS)
    assert _only_study(result).series.encoding is ConfidenceEncoding.CROSS_HATCH
    assert "another confidence series" in _reasons(result)["X"]


# ---------------------------------------------------------------- units


def _ds(**kw) -> Dataset:
    return f.mr_dataset(np.ones((2, 2)), **kw)


@pytest.mark.parametrize(("maker", "profile", "kpa"), [("SIEMENS", VendorProfile.SIEMENS, 3.0),
                                                       ("GE MEDICAL SYSTEMS", VendorProfile.GE, 0.3)])
def test_vendor_profiles_from_manufacturer(maker, profile, kpa):
    out, prof, _ = to_kpa(np.array([300]), _ds(manufacturer=maker), SETTINGS)
    assert prof is profile and out[0] == pytest.approx(kpa)


def test_rwvm_units_win_over_manufacturer():
    ds = _ds(manufacturer="SIEMENS")
    item, unit = Dataset(), Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "Pa", "UCUM", "Pascal"
    item.MeasurementUnitsCodeSequence = [unit]
    item.RealWorldValueSlope, item.RealWorldValueIntercept = 2.0, 0.0
    ds.RealWorldValueMappingSequence = [item]
    out, prof, per_unit = to_kpa(np.array([1500]), ds, SETTINGS)
    assert prof is VendorProfile.RWVM and out[0] == pytest.approx(3.0) and per_unit == pytest.approx(0.002)
    out, prof, _ = to_kpa(np.array([1500]), ds, Settings(profile="siemens"))  # explicit profile overrides
    assert prof is VendorProfile.SIEMENS and out[0] == pytest.approx(15.0)


def test_custom_profile_and_rescale_slope_are_applied():
    ds = _ds(manufacturer="SIEMENS")
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, 10
    out, prof, per_unit = to_kpa(np.array([580]), ds, Settings(profile="custom", custom_kpa_per_unit=0.01))
    assert prof is VendorProfile.CUSTOM and per_unit == 0.01 and out[0] == pytest.approx(3.0)
    out, _, _ = to_kpa(np.array([580]), ds, SETTINGS)
    assert out[0] == pytest.approx(3.0)


def test_unknown_manufacturer_profile_guessed_from_value_range():
    ds = _ds(manufacturer="ACME")
    assert to_kpa(np.array([0, 250, 300, 420]), ds, SETTINGS)[1] is VendorProfile.SIEMENS
    assert to_kpa(np.array([0, 2500, 3000, 4200]), ds, SETTINGS)[1] is VendorProfile.GE


# ---------------------------------------------------------------- sorting, grouping, sources


def test_slices_sorted_by_position_not_instance_number(tmp_path):
    study = generate_uid()
    arrays = [f.zero_fill(*f.synthetic_slice(64, 64, seed=i)[::2]) for i in range(4)]
    dss = f.series(arrays, study_uid=study, z0=40.0, dz=-10.0)  # instance 1 is the highest slice
    for ds, inst in zip(dss, [3, 1, 4, 2]):
        ds.InstanceNumber = inst
        f.write(ds, tmp_path / f"{inst}")
    slices = _only_study(read_inputs([tmp_path], SETTINGS)).series.slices
    assert [s.position_mm for s in slices] == [10.0, 20.0, 30.0, 40.0]
    assert [s.instance_number for s in slices] == [2, 4, 1, 3]


def test_two_patients_with_several_series_are_grouped(tmp_path):
    for pid in ("A", "B"):
        _conf_study(tmp_path / pid, "zero", n=2, patient_id=pid)
    result = read_inputs([tmp_path], SETTINGS)
    assert sorted(s.patient_id for s in result.studies) == ["A", "B"]
    assert all(len(s.series.slices) == 2 for s in result.studies) and _n_files(result) == 4
    assert len(result.skipped) == 2, "one entry per series left out"


def test_folder_recursion_files_without_extension_hidden_and_dicomdir(tmp_path):
    folder, _ = _conf_study(tmp_path / "deep" / "er", "hatch", n=2)
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "DICOMDIR").write_bytes(b"junk")
    calls = []
    result = read_inputs([tmp_path], SETTINGS, progress=lambda d, t: calls.append((d, t)))
    assert len(_only_study(result).series.slices) == 2
    reasons = _reasons(result)
    assert "hidden file" in reasons[".DS_Store"] and "DICOMDIR" in reasons["DICOMDIR"]
    assert calls[-1] == (6, 6)
    sources = [s.source for s in result.studies[0].series.slices]
    assert sources == [f"{tmp_path.name}/deep/er/conf/IM0", f"{tmp_path.name}/deep/er/conf/IM1"]


def test_zip_on_disk_and_uploaded_bytes(tmp_path):
    folder, _ = _conf_study(tmp_path / "s", "zero", n=2)
    zpath = tmp_path / "study.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    from_disk = read_inputs([zpath], SETTINGS)
    assert [s.source for s in _only_study(from_disk).series.slices] == ["study.zip:conf/IM0", "study.zip:conf/IM1"]
    uploaded = read_inputs([("up.zip", zpath.read_bytes())], SETTINGS)
    assert len(_only_study(uploaded).series.slices) == 2
    single = read_inputs(("IM0", (folder / "conf" / "IM0").read_bytes()), SETTINGS)
    assert _only_study(single).series.slices[0].source == "IM0"


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless])
def test_compressed_round_trip(syntax):
    stored, body, low = f.synthetic_slice(64, 64, seed=7)
    data = f.to_bytes(f.mr_dataset(f.zero_fill(stored, low)), syntax)
    e = _only_study(read_inputs([("c.dcm", data)], SETTINGS)).series.slices[0]
    np.testing.assert_allclose(e.kpa[body & ~low], stored[body & ~low] / 100.0, rtol=1e-6)


def test_confidence_named_series_with_zeros_only_at_the_edge_is_zero_fill():
    stored, body, _ = f.synthetic_slice(64, 64, seed=2)
    edge = body & ~np.pad(np.ones((40, 40), bool), 12)  # confident square centre, zeros to the body edge
    ds = f.mr_dataset(f.zero_fill(stored, edge), description="Gray elastogram with 95% confidence map")
    e = _only_study(read_inputs([("c", f.to_bytes(ds))], SETTINGS)).series.slices[0]
    assert e.encoding is ConfidenceEncoding.ZERO_FILL and np.array_equal(e.confidence, body & ~edge)


# ---------------------------------------------------------------- phantom integration (when the phantom exists)


@pytest.mark.parametrize(("encoding", "min_agreement"), [("zero_fill", 0.999), ("paired_series", 0.999),
                                                          ("cross_hatch", 0.95)])
def test_phantom_study_confidence_matches_truth(tmp_path, encoding, min_agreement):
    phantom = pytest.importorskip("mre_core.phantom.cohort")
    if not hasattr(phantom, "write_demo_study"):
        pytest.skip("mre_core.phantom.cohort.write_demo_study not there yet")
    vendor = "ge" if encoding == "paired_series" else "siemens"
    dicom_dir = phantom.write_demo_study(tmp_path, seed=3, vendor=vendor, encoding=encoding, n_slices=3)
    result = read_inputs([dicom_dir], SETTINGS)
    study = _only_study(result)
    assert study.series.encoding.value == encoding
    truth = np.load(next(tmp_path.rglob("*.npz")), allow_pickle=False)
    by_uid = {str(u): i for i, u in enumerate(truth["sop_uids"])}
    for n, e in enumerate(study.series.slices):
        want = truth["confidence"][by_uid.get(e.sop_uid, n)]
        body = np.isfinite(e.kpa) | want
        assert np.mean(e.confidence[body] == want[body]) >= min_agreement
