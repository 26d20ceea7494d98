"""SEG, SR and PDF from the headers real exams come with: de-identified, float-noise orientations,
SliceLocation without ImagePositionPatient, UIDs from several roots.

Each case builds a StudyResult (as :mod:`tests.result_factory` does) from headers changed the way
an export or a de-identifier changes them, then writes the SEG, the SR that references it and the
PDF, reads them back with pydicom/highdicom and checks that every SEG frame and every SR slice group
points at the right source slice.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from collections.abc import Callable
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SegmentationStorage, generate_uid

from mre_core.analysis.pipeline import StudyResult, finish_study
from mre_core.config import Settings
from mre_core.io.elastogram import ElastogramSeries, StudyInput
from mre_core.outputs.pdf import build_pdf, report_figure
from mre_core.outputs.seg import ORIENTATION_TOLERANCE, SegExportError, build_seg
from mre_core.outputs.sr import build_sr, sr_bytes
from mre_core.outputs.sr_read import read_sr_summary
from tests.result_factory import GAP_MM, default_rois, elastogram, mr_header, slice_result

Edit = Callable[[int, Dataset], None]

#: What de-identified exams lack (absent) or blank (present, empty).
DEIDENTIFIED = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
                "StudyDate", "StudyTime", "ReferringPhysicianName")  # fmt: skip
#: UID roots seen together in one de-identified study: the de-identifier's 2.25 (UUID) root, the
#: scanner's, and pydicom's (a PACS re-export).
ROOTS = ("2.25.", "1.3.12.2.1107.5.2.", "1.2.826.0.1.3680043.8.498.")


def _uid(i: int) -> str:
    root = ROOTS[i % len(ROOTS)]
    return generate_uid(None) if root == "2.25." else generate_uid(root)  # prefix None: 2.25.<UUID>


def _result(*edits: Edit, n: int = 4, uids: tuple[str, str, str] | None = None) -> StudyResult:
    """A StudyResult whose slice headers went through ``edits`` (each called as edit(i, header)).

    Like the reader, the result's patient ID is "anonymous" when the header has none.
    """
    study_uid, series_uid, frame_uid = uids or (generate_uid(), generate_uid(), generate_uid())
    headers = [mr_header(i, study_uid, series_uid, frame_uid, "PAT001") for i in range(n)]
    for i, h in enumerate(headers):
        for edit in edits:
            edit(i, h)
    patient = str(headers[0].get("PatientID", "") or "anonymous")
    slices = tuple(elastogram(i, 3.0 + 0.1 * i, h, patient) for i, h in enumerate(headers))
    series = ElastogramSeries(series_uid, "MRE_ELASTOGRAM_CONF95", "SIEMENS", slices)
    study = StudyInput(patient, study_uid, series, {})
    results = [slice_result(e, r) for e, r in zip(slices, default_rois(n))]
    return finish_study(study, results, Settings(), "unet_resnext50_32x4d", "ab" * 32, "cpu", {})


# ------------------------------------------------------------------ header edits


def deidentified_absent(i: int, h: Dataset) -> None:
    for keyword in DEIDENTIFIED:
        if keyword in h:
            delattr(h, keyword)


def deidentified_empty(i: int, h: Dataset) -> None:
    for keyword in DEIDENTIFIED:
        setattr(h, keyword, "")


def garbled_dates(i: int, h: Dataset) -> None:
    with warnings.catch_warnings():  # pydicom warns that these are not valid DA/TM: that is the point
        warnings.simplefilter("ignore", UserWarning)
        h.StudyDate, h.PatientBirthDate, h.StudyTime, h.PatientSex = "00000000", "1970-01-01", "10:15", "U"


def float_noise(i: int, h: Dataset) -> None:
    """Orientation as exported: cosines off by up to ~3e-7 (the 7th decimal), different per slice."""
    e = (i + 1) * 1e-7
    h.ImageOrientationPatient = [0.99999997, e, -2 * e, -e, 0.9999999, 3 * e]


def slice_location_only(i: int, h: Dataset) -> None:
    h.SliceLocation = 12.5 + i * GAP_MM
    del h.ImagePositionPatient


def first_has_both_rest_slice_location(i: int, h: Dataset) -> None:
    h.SliceLocation = 100.0 + i * GAP_MM  # another reference than IPP's z (i * GAP_MM)
    if i:
        del h.ImagePositionPatient


def several_roots(i: int, h: Dataset) -> None:
    h.SOPInstanceUID = _uid(i)


def several_root_uids() -> tuple[str, str, str]:
    return _uid(0), _uid(1), _uid(2)


def tilted(slice_index: int, degrees: float) -> Edit:
    def edit(i: int, h: Dataset) -> None:
        if i == slice_index:
            a = math.radians(degrees)
            h.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, math.cos(a), math.sin(a)]

    return edit


def offset_cosines(slice_index: int, delta: float) -> Edit:
    def edit(i: int, h: Dataset) -> None:
        if i == slice_index:
            h.ImageOrientationPatient = [1.0, delta, 0.0, 0.0, 1.0, 0.0]

    return edit


CASES: dict[str, tuple[tuple[Edit, ...], bool]] = {  # edits, several UID roots
    "deidentified_absent": ((deidentified_absent,), False),
    "deidentified_empty": ((deidentified_empty,), False),
    "garbled_dates": ((garbled_dates,), False),
    "float_noise_orientation": ((float_noise,), False),
    "slice_location_only": ((slice_location_only,), False),
    "slice_location_relative_to_one_ipp": ((first_has_both_rest_slice_location,), False),
    "uids_from_several_roots": ((several_roots,), True),
    "all_at_once": ((deidentified_absent, float_noise, slice_location_only, several_roots), True),
}


def _case(name: str) -> StudyResult:
    edits, roots = CASES[name]
    return _result(*edits, uids=several_root_uids() if roots else None)


# ------------------------------------------------------------------ read-back helpers


def _write(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _frame_sources(seg: Dataset) -> list[str]:
    """Source SOP Instance UID of each SEG frame, in frame order."""
    return [str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
            for f in seg.PerFrameFunctionalGroupsSequence]  # fmt: skip


def _normal(iop: Any) -> np.ndarray:
    v = np.asarray([float(x) for x in iop])
    return np.cross(v[:3], v[3:])


@pytest.fixture(scope="module", params=list(CASES))
def written(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The result of one case with its SEG and SR, both written to bytes and read back."""
    result = _case(request.param)
    originals = [copy.deepcopy(e.header) for e in result.study.series.slices]
    seg = _write(build_seg(result))
    sr = pydicom.dcmread(io.BytesIO(sr_bytes(result, seg)))
    return {"case": request.param, "result": result, "originals": originals, "seg": seg, "sr": sr}


# ------------------------------------------------------------------ SEG


def test_seg_has_one_frame_per_slice_each_referencing_its_slice(written: dict[str, Any]) -> None:
    result, seg = written["result"], written["seg"]
    sources = _frame_sources(seg)
    assert sorted(sources) == sorted(s.sop_uid for s in result.slices) and seg.NumberOfFrames == len(result.slices)
    decoded = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
        [s.sop_uid for s in result.slices], segment_numbers=[1])[..., 0].astype(bool)
    assert np.array_equal(decoded, np.stack([s.roi for s in result.slices]))  # frame i ↔ slice i by reference
    referenced = {str(r.ReferencedSOPInstanceUID) for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {s.sop_uid for s in result.slices}
    assert seg.StudyInstanceUID == result.study_uid and seg.Modality == "SEG"


def test_seg_frames_sit_where_their_slices_are(written: dict[str, Any]) -> None:
    """Distance along the normal of each frame = the slice's position (IPP, or SliceLocation-derived)."""
    result, seg = written["result"], written["seg"]
    iop = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    normal = _normal(iop)
    by_sop = {e.sop_uid: e for e in result.study.series.slices}
    first, anchor = result.study.series.slices[0].header, None
    for sop, frame in zip(_frame_sources(seg), seg.PerFrameFunctionalGroupsSequence):
        position = np.asarray([float(x) for x in frame.PlanePositionSequence[0].ImagePositionPatient])
        header = by_sop[sop].header
        if "ImagePositionPatient" in header:
            assert np.allclose(position, [float(x) for x in header.ImagePositionPatient], atol=1e-4)
        elif "ImagePositionPatient" in first and "SliceLocation" in first:  # placed relative to slice 1
            anchor = np.asarray([float(x) for x in first.ImagePositionPatient])
            expected = anchor + (float(header.SliceLocation) - float(first.SliceLocation)) * normal
            assert np.allclose(position, expected, atol=1e-4)
        else:  # SliceLocation along the normal
            assert float(np.dot(normal, position)) == pytest.approx(float(header.SliceLocation), abs=1e-4)
    assert written["case"] != "slice_location_relative_to_one_ipp" or anchor is not None


def test_seg_uses_the_first_slices_orientation_for_all_frames(written: dict[str, Any]) -> None:
    seg, first = written["seg"], written["originals"][0]
    iop = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    assert [float(x) for x in iop] == pytest.approx([float(x) for x in first.ImageOrientationPatient], abs=1e-12)
    assert all("PlaneOrientationSequence" not in f for f in seg.PerFrameFunctionalGroupsSequence)


def test_type2_patient_and_study_attributes_are_present_never_invented(written: dict[str, Any]) -> None:
    originals = written["originals"][0]
    for ds in (written["seg"], written["sr"]):
        for keyword in DEIDENTIFIED:
            assert keyword in ds, f"{keyword} missing (type 2: must be present, may be empty)"
            value = str(ds[keyword].value or "")
            if written["case"] in ("deidentified_absent", "deidentified_empty", "all_at_once"):
                assert value == "", f"{keyword} = {value!r} was invented"
            elif written["case"] == "garbled_dates" and keyword in ("StudyDate", "PatientBirthDate", "StudyTime",
                                                                       "PatientSex"):
                assert value == ""  # unparseable: blanked, not guessed
            else:
                assert value == str(originals.get(keyword, "") or "")
    assert written["result"].patient_id in ("PAT001", "anonymous")


def test_source_headers_are_not_modified(written: dict[str, Any]) -> None:
    for e, original in zip(written["result"].study.series.slices, written["originals"]):
        assert e.header == original


# ------------------------------------------------------------------ SR


def test_sr_references_the_seg_frame_of_each_slice(written: dict[str, Any]) -> None:
    result, seg, sr = written["result"], written["seg"], written["sr"]
    summary = read_sr_summary(sr)
    with_roi = [s.sop_uid for s in result.slices if s.roi.any()]
    assert summary["seg_sop_uid"] == seg.SOPInstanceUID and sorted(summary["source_sop_uids"]) == sorted(with_roi)
    sources = _frame_sources(seg)
    for s in summary["slices"]:
        assert sources[s["seg_frame"] - 1] == s["sop_uid"]
    assert summary["stiffness_kpa"] == pytest.approx(result.stiffness_kpa, abs=1e-3)
    assert summary["patient_id"] == ("" if "PatientID" not in result.study.series.slices[0].header
                                     else str(result.study.series.slices[0].header.PatientID))
    parsed = hd.sr.srread(io.BytesIO(sr_bytes(result, seg)))
    assert len(parsed.content.get_planar_roi_measurement_groups()) == len(with_roi)


# ------------------------------------------------------------------ PDF


def test_pdf_is_written_and_names_no_invented_patient(written: dict[str, Any]) -> None:
    result = written["result"]
    pdf = build_pdf(result)
    assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-64:]
    texts = [t.get_text() for t in report_figure(result).texts]
    header_id = str(written["originals"][0].get("PatientID", "") or "")
    expected = f"Patient ID: {header_id}" if header_id else "Patient ID: none (not in the DICOM header)"
    assert expected in texts and "Patient ID: anonymous" not in texts


# ------------------------------------------------------------------ orientation tolerance and errors


def test_orientation_just_inside_the_tolerance_is_accepted() -> None:
    result = _result(offset_cosines(2, ORIENTATION_TOLERANCE / 2))
    assert build_seg(result).NumberOfFrames == 4


@pytest.mark.parametrize("edit", [tilted(2, 2.0), offset_cosines(2, ORIENTATION_TOLERANCE * 2)],
                         ids=["tilted_2_degrees", "just_beyond_tolerance"])
def test_a_genuinely_different_orientation_names_the_slice(edit: Edit) -> None:
    result = _result(edit)
    odd = result.slices[2]
    with pytest.raises(SegExportError, match=rf"#{odd.instance_number} \({odd.sop_uid}\).*not parallel"):
        build_seg(result)
    seg = Dataset()  # the SR prepares the same headers before it looks at the SEG's frames
    seg.SOPClassUID, seg.StudyInstanceUID = SegmentationStorage, result.study_uid
    with pytest.raises(SegExportError, match=rf"{odd.sop_uid}.*not parallel"):
        build_sr(result, seg)


def test_slice_without_any_position_names_the_slice() -> None:
    def no_position(i: int, h: Dataset) -> None:
        if i == 1:
            del h.ImagePositionPatient

    result = _result(no_position)
    with pytest.raises(SegExportError, match=rf"{result.slices[1].sop_uid}.*neither ImagePositionPatient nor"):
        build_seg(result)


def test_two_slices_at_one_position_are_refused() -> None:
    def same_place(i: int, h: Dataset) -> None:
        h.SliceLocation = 10.0 if i in (1, 2) else i * GAP_MM
        del h.ImagePositionPatient

    result = _result(same_place)
    with pytest.raises(SegExportError, match="same position"):
        build_seg(result)


def test_missing_frame_of_reference_gets_one_uid_shared_by_every_frame() -> None:
    def no_frame_of_reference(i: int, h: Dataset) -> None:
        del h.FrameOfReferenceUID

    result = _result(no_frame_of_reference)
    first, second = _write(build_seg(result)), _write(build_seg(result))
    assert first.FrameOfReferenceUID and first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert "FrameOfReferenceUID" not in result.study.series.slices[0].header


def test_different_frames_of_reference_name_the_slice() -> None:
    def other_frame(i: int, h: Dataset) -> None:
        if i == 3:
            h.FrameOfReferenceUID = generate_uid()

    result = _result(other_frame)
    with pytest.raises(SegExportError, match=rf"{result.slices[3].sop_uid}.*FrameOfReferenceUID"):
        build_seg(result)


def test_missing_instance_uid_is_never_invented() -> None:
    result = _result()
    del result.study.series.slices[1].header.SeriesInstanceUID
    with pytest.raises(SegExportError, match=rf"{result.slices[1].sop_uid}.*SeriesInstanceUID.*never invented"):
        build_seg(result)
