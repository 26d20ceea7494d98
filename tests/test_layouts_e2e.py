"""End to end, per documented scanner layout: the right series is measured, with the right unit and region.

Each layout of :mod:`mre_core.phantom.layouts` is written as a scanner or post-processing writes it (raw
series, colour screen saves, wave images, separate confidence maps, burned-in text, multi-frame files,
de-identified headers) and read through the product reader. The phantom's ``cohort.csv`` says which series
must be measured and in which unit; its truth holds the true 95 % confidence region and the expert ROI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mre_core.analysis.stiffness import QcFlag
from mre_core.config import Settings
from mre_core.io.reader import read_inputs
from mre_core.model.dataset import load_truth
from mre_core.phantom.layouts import LAYOUTS, generate_layout_cohort

#: layouts whose series and unit no documented rule names (their results carry a fallback QC flag)
FALLBACK_SERIES = {"philips"}
FALLBACK_UNIT = {"philips", "canon"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    for i, layout in enumerate(LAYOUTS):
        generate_layout_cohort(root / layout, layout, 1, seed=40 + i)
    return {layout: root / layout for layout in LAYOUTS}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_expected_series_is_measured_with_its_unit_and_region(corpus: dict[str, Path], layout: str) -> None:
    folder = corpus[layout]
    row = pd.read_csv(folder / "cohort.csv", dtype=str, keep_default_na=False).iloc[0]
    read = read_inputs([folder / "dicom" / row["patient_id"]], Settings())
    assert len(read.studies) == 1, [s.describe() for s in read.skipped]
    series = read.studies[0].series
    assert series.description == row["expected_series_description"]
    assert series.encoding.value == row["expected_confidence"]
    assert series.slices[0].kpa_per_unit == pytest.approx(float(row["expected_kpa_per_unit"]))
    assert series.series_rule.startswith("fallback") == (layout in FALLBACK_SERIES)
    assert (QcFlag.FALLBACK_UNIT.value in series.ingest_flags) == (layout in FALLBACK_UNIT)
    truth = load_truth(folder / "truth" / f"{row['patient_id']}.npz")
    assert {e.sop_uid for e in series.slices} == set(truth), "every slice of the truth, and only those"
    for e in series.slices:
        t = truth[e.sop_uid]
        assert np.mean(e.confidence == t.confidence) > 0.98
        if t.expert_roi.any():  # the expert's read-out, repeated on what the reader gives (unit, text pixels)
            assert float(np.nanmean(e.kpa[t.expert_roi])) == pytest.approx(t.manual_kpa, rel=0.01)
    # every other series is one entry, with the rule that recognised it and a reason
    assert all(s.series_uid and s.role and s.rule and s.reason for s in read.skipped)


def test_colour_screen_saves_are_named_as_such(corpus: dict[str, Path]) -> None:
    read = read_inputs([corpus["ge_mrtouch"] / "dicom"], Settings())
    colour = [s for s in read.skipped if s.role == "colour_save"]
    assert colour and all("export the gray-scale stiffness series" in s.reason for s in colour)


def test_a_multi_frame_elastogram_is_split_into_frames(corpus: dict[str, Path]) -> None:
    read = read_inputs([corpus["siemens_xa_enhanced"] / "dicom"], Settings())
    slices = read.studies[0].series.slices
    assert len(slices) >= 4 and len({e.header.SOPInstanceUID for e in slices}) == 1
    assert all(e.frame_number and e.sop_uid == f"{e.header.SOPInstanceUID}#{e.frame_number}" for e in slices)
    positions = [e.position_mm for e in slices]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_a_multi_frame_file_without_pixel_spacing_is_named_and_the_rest_still_read(corpus: dict[str, Path],
                                                                                   tmp_path: Path) -> None:
    import shutil

    import pydicom

    folder = tmp_path / "xa"
    shutil.copytree(corpus["siemens_xa_enhanced"] / "dicom", folder)
    files = [f for f in folder.rglob("*") if f.is_file()]
    elastogram = next(f for f in files if "DERIVED" in pydicom.dcmread(f, stop_before_pixels=True).ImageType)
    ds = pydicom.dcmread(elastogram)
    for groups in (ds.get("SharedFunctionalGroupsSequence", []), ds.get("PerFrameFunctionalGroupsSequence", [])):
        for item in groups:
            if "PixelMeasuresSequence" in item:
                del item.PixelMeasuresSequence
    ds.save_as(elastogram)
    read = read_inputs([folder], Settings())
    assert read.studies == ()
    bad = [s for s in read.skipped if s.file.endswith(elastogram.name)]
    assert len(bad) == 1 and "no PixelSpacing in the functional groups" in bad[0].reason
    assert sum(s.n_files for s in read.skipped) == len(files), "every other file is reported too, nothing lost"
