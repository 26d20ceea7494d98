"""A mixed folder of every documented layout plus the hostile-file corpus, through `python -m mre_core analyze`.

Every study is measured on the series its layout documents, in its unit; every series left out has one
row with its rule and reason; nothing ends in a traceback; each study gets a SEG and an SR that dciodvfy
accepts without errors and that say which rule chose the series.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from mre_core.phantom.layouts import LAYOUTS, generate_layout_cohort
from tests.outputs.test_validators import DCIODVFY, dciodvfy
from tests.test_cli import _bad_files, _run


def _texts(item: pydicom.Dataset) -> list[str]:
    """Every TEXT value in an SR content tree."""
    out = [str(item.TextValue)] if "TextValue" in item else []
    for child in item.get("ContentSequence", []):
        out += _texts(child)
    return out


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, all_liver_weights: Path) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("mixed")
    expected = []
    for i, layout in enumerate(LAYOUTS):
        cohort = generate_layout_cohort(root / "made" / layout, layout, 1, seed=70 + i)
        shutil.copytree(root / "made" / layout / "dicom", root / "inbox" / layout)
        expected.append(cohort.assign(layout=layout))
    bad = _bad_files(root / "inbox" / "bad")
    proc = _run("analyze", str(root / "inbox"), "--out", str(root / "out"), "--weights-dir", str(all_liver_weights),
                "--model", "all_liver", "--device", "cpu", "--pdf", "-q", env={"MRE_MAX_FILE_MB": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(bad) > 5
    return root / "out", pd.concat(expected, ignore_index=True)


@pytest.mark.slow
def test_every_layout_is_measured_on_its_documented_series_and_unit(analysed: tuple[Path, pd.DataFrame]) -> None:
    out, expected = analysed
    studies = pd.read_csv(out / "studies.csv", dtype=str, keep_default_na=False)
    merged = expected.merge(studies, on="study_uid", suffixes=("_truth", ""))
    assert len(merged) == len(LAYOUTS), "one analysed study per layout"
    for _, row in merged.iterrows():
        assert row["series_description"] == row["expected_series_description"], row["layout"]
        assert float(row["kpa_per_unit"]) == pytest.approx(float(row["expected_kpa_per_unit"])), row["layout"]
        assert row["confidence_encoding"] == row["expected_confidence"], row["layout"]
        assert row["series_rule"] and row["unit_rule"] and row["confidence_rule"]


@pytest.mark.slow
def test_every_series_left_out_has_one_row_with_a_rule_and_a_reason(analysed: tuple[Path, pd.DataFrame]) -> None:
    out, _ = analysed
    skipped = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    assert (skipped["reason"].str.len() > 10).all()
    assert not skipped["reason"].str.contains("Traceback|unexpected error", regex=True).any()
    series_rows = skipped[skipped["series_description"].ne("") | skipped["rule"].ne("")]
    assert series_rows["rule"].ne("").all() and series_rows["role"].ne("").all()
    files = [f for cell in skipped["files"] for f in cell.split(";")]
    assert len(files) == len(set(files)), "a file is reported once"


@pytest.mark.slow
def test_each_study_has_a_valid_seg_and_sr_naming_the_rule(analysed: tuple[Path, pd.DataFrame]) -> None:
    out, _ = analysed
    studies = pd.read_csv(out / "studies.csv", dtype=str, keep_default_na=False)
    for _, row in studies.iterrows():
        seg, sr = out / "seg" / f"{row['series_uid']}.dcm", out / "sr" / f"{row['series_uid']}.dcm"
        assert seg.is_file() and sr.is_file(), row["series_description"]
        texts = _texts(pydicom.dcmread(sr))
        assert f"series: {row['series_rule']}" in texts
        if DCIODVFY:
            for path in (seg, sr):
                errors, _ = dciodvfy(path)
                assert errors == [], f"{path.name}: {errors[:3]}"
    assert len(list((out / "pdf").glob("*.pdf"))) == len(studies)
