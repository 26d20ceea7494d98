"""The SEG and SR we write, checked by independent validators: dicom3tools' ``dciodvfy`` (IOD, module
and attribute rules) and dcmtk's ``dsrdump`` (SR content tree).

Both binaries come from Debian packages that ``make system-deps`` installs (dicom3tools, dcmtk), so
in CI these tests run; elsewhere they are skipped with the reason. Each dciodvfy run takes well
under a second. dciodvfy exits 0 even when it finds errors, so its output is what is checked:
no line may start with "Error", and every "Warning" line must be in the allow-list below.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from mre_core.analysis.pipeline import StudyResult
from mre_core.outputs.seg import write_seg
from mre_core.outputs.sr import write_sr
from tests.outputs.test_real_headers import _result, deidentified_absent, float_noise, slice_location_only
from tests.result_factory import COLS, ROWS, make_result

DCIODVFY = shutil.which("dciodvfy")
DSRDUMP = shutil.which("dsrdump")
needs_dciodvfy = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy not installed (Debian package dicom3tools; run `make system-deps`)")
needs_dsrdump = pytest.mark.skipif(
    DSRDUMP is None, reason="dsrdump not installed (Debian package dcmtk; run `make system-deps`)")

#: Warnings allowed on every SR.
SR_WARNINGS = {
    # Once per private code (and once for the CodingSchemeIdentificationSequence item declaring the
    # scheme). dciodvfy knows the PS3.16 coding schemes and a fixed list of well-known private ones
    # and warns on any other designator, declared or not. 99MRELR carries the concepts the standard
    # has no code for (MR elastography of liver as a procedure, fibrosis stage by MRE, significant
    # fibrosis, our two study-level averages, slices used, excluded, QC flag, staging cut-offs,
    # reason for no value); see mre_core.outputs.sr.
    "Warning - Unrecognized defined term <99MRELR> for value 1 of attribute <Coding Scheme Designator>",
}
#: Warnings allowed only when the source exam is de-identified.
DEIDENTIFIED_WARNINGS = {
    # PS3.3 Annex F directory records want these as type 1; in the SEG and SR (General Study and
    # Patient modules) they are type 2, and the exam has none, so they are present and empty: we
    # never invent a patient or study identity. A media creator building a DICOMDIR would have to
    # supply them.
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Patient ID",
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Date",
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study ID",
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Time",
}


STUDIES: dict[str, Callable[[], StudyResult]] = {
    "normal": lambda: make_result(kpa_values=(2.9, 3.1, 3.3, 3.45)),
    "no_usable_slice": lambda: make_result(rois=[np.zeros((ROWS, COLS), bool)] * 3),
    "deidentified": lambda: _result(deidentified_absent, float_noise, slice_location_only),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Path]]:
    """``files(study)``: the SEG and SR of that study, as written to disk (built once, on first use)."""
    root, cache = tmp_path_factory.mktemp("validators"), {}

    def get(study: str) -> dict[str, Path]:
        if study not in cache:
            result = STUDIES[study]()
            seg = write_seg(result, root / study / "seg.dcm")
            cache[study] = {"SEG": seg, "SR": write_sr(result, pydicom.dcmread(seg), root / study / "sr.dcm")}
        return cache[study]

    return get


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(error lines, warning lines) of ``dciodvfy path``."""
    assert DCIODVFY is not None
    done = subprocess.run([DCIODVFY, str(path)], check=False, capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")], [ln for ln in lines if ln.startswith("Warning")]


@needs_dciodvfy
@pytest.mark.parametrize("study", ["normal", "no_usable_slice", "deidentified"])
@pytest.mark.parametrize("kind", ["SEG", "SR"])
def test_dciodvfy_finds_no_errors_and_only_allowed_warnings(kind: str, study: str,
                                                            files: Callable[[str], dict[str, Path]]) -> None:
    errors, warnings = dciodvfy(files(study)[kind])
    assert errors == [], "\n".join(errors)
    allowed = (SR_WARNINGS if kind == "SR" else set()) | (DEIDENTIFIED_WARNINGS if study == "deidentified" else set())
    unexpected = sorted(set(warnings) - allowed)
    assert unexpected == [], "\n".join(unexpected)
    if kind == "SEG" and study != "deidentified":
        assert warnings == []


@needs_dsrdump
@pytest.mark.parametrize("study", ["normal", "no_usable_slice", "deidentified"])
def test_dsrdump_reads_the_sr(study: str, files: Callable[[str], dict[str, Path]]) -> None:
    assert DSRDUMP is not None
    done = subprocess.run([DSRDUMP, str(files(study)["SR"])], check=False, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Imaging Measurement Report" in done.stdout
    if study != "no_usable_slice":
        assert "Referenced Segmentation Frame" in done.stdout


def _items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


@pytest.mark.parametrize("study", ["normal", "deidentified"])
def test_referenced_segmentation_frames_carry_the_frame_number_only(study: str,
                                                                   files: Callable[[str], dict[str, Path]]) -> None:
    """The rule dciodvfy used to flag, checked without the binary (PS3.3 Image Reference Macro:
    Referenced Segment Number only when Referenced Frame Number is absent)."""
    sr = pydicom.dcmread(files(study)["SR"])
    frames = [i for i in _items(sr) if i.get("ConceptNameCodeSequence")
              and i.ConceptNameCodeSequence[0].CodeValue == "121214"]  # fmt: skip
    assert frames
    for item in frames:
        reference = item.ReferencedSOPSequence[0]
        assert "ReferencedFrameNumber" in reference and "ReferencedSegmentNumber" not in reference
    seg = pydicom.dcmread(io.BytesIO(files(study)["SEG"].read_bytes()))
    shared = seg.SharedFunctionalGroupsSequence[0]  # every frame is segment 1, so the frame says which segment
    groups = [shared] if "SegmentIdentificationSequence" in shared else list(seg.PerFrameFunctionalGroupsSequence)
    assert {int(g.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for g in groups} == {1}


# ----------------------------------------------------------------------------- ROIs drawn by a reader
def _drawn(kind: str) -> tuple[StudyResult, dict[str, str]]:
    result = STUDIES["normal"]()
    if kind == "MANUAL":  # the reader's outline replaced the ROI on every slice
        return result, {s.sop_uid: "replaced" for s in result.slices}
    return result, {result.slices[1].sop_uid: "edited", result.slices[2].sop_uid: "replaced"}


@pytest.mark.parametrize("kind", ["MANUAL", "SEMIAUTOMATIC"])
def test_a_seg_of_rois_drawn_by_hand_says_so_and_names_the_reader(kind: str) -> None:
    from mre_core.outputs.seg import build_seg

    result, manual = _drawn(kind)
    seg = build_seg(result, manual_rois=manual, reader="Dr Zoë Draw")
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == kind
    assert str(seg.ContentCreatorName) == "Dr Zoë Draw^" and "Dr Zoë Draw" in segment.SegmentDescription
    assert seg.SeriesDescription == ("Liver ROI (manual)" if kind == "MANUAL" else "Liver ROI (edited)")
    if kind == "MANUAL":  # the model made none of it
        assert "SegmentationAlgorithmIdentificationSequence" not in segment and "SegmentAlgorithmName" not in segment
    else:
        assert segment.SegmentAlgorithmName == result.model_name and "image(s) #2, #3" in segment.SegmentDescription
    auto = build_seg(result)
    assert auto.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC" and not auto.get("ContentCreatorName")


@needs_dciodvfy
@pytest.mark.parametrize("kind", ["MANUAL", "SEMIAUTOMATIC"])
def test_dciodvfy_accepts_the_seg_of_rois_drawn_by_hand(kind: str, tmp_path: Path) -> None:
    result, manual = _drawn(kind)
    errors, warnings = dciodvfy(write_seg(result, tmp_path / "seg.dcm", manual_rois=manual, reader="Dr Zoë Draw"))
    assert errors == [], "\n".join(errors)
    assert warnings == [], "\n".join(warnings)


@needs_dciodvfy
def test_the_simulated_sites_reader_segs_pass_dciodvfy(tmp_path: Path) -> None:
    """The reads of a simulated site (mre_core.phantom.site, the site-training tests' data) are valid SEGs too,
    including those on de-identified exams (blank type-2 patient attributes)."""
    from mre_core.phantom.site import generate_site

    site = generate_site(tmp_path / "site", 10, seed=0)
    assert site["deidentified"].any() and (site["seg"] != "").all()  # seed 0 of 10: HO0004 is de-identified
    for path in site["seg"]:
        errors, _ = dciodvfy(Path(path))
        assert errors == [], f"{path}:\n" + "\n".join(errors)
