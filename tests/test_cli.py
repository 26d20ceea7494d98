"""End to end: phantom studies + bad files on disk → `python -m mre_core analyze` → CSVs, SEG, skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from mre_core.outputs.sr_read import read_sr_summary
from tests import dicom_factory as fx

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mre_core", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def _bad_files(folder: Path) -> dict[str, str]:
    """Write one file per kind of bad input; returns file name → words its reason must contain."""
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not an image")
    good = fx.to_bytes(fx.mr_dataset(fx.synthetic_slice()[0]))
    (folder / "truncated.dcm").write_bytes(good[: len(good) // 2])
    no_pixels = fx.mr_dataset(fx.synthetic_slice()[0])
    del no_pixels.PixelData
    fx.write(no_pixels, folder / "no_pixels.dcm")
    fx.write(fx.rgb_dataset(), folder / "screenshot.dcm")
    fx.write(fx.ct_dataset(), folder / "ct.dcm")
    no_spacing = fx.mr_dataset(fx.synthetic_slice()[0], pixel_spacing=None, patient_id="NOSPACING")
    fx.write(no_spacing, folder / "no_spacing.dcm")
    fx.write(fx.mr_dataset(np.zeros((64, 64)), patient_id="ZERO"), folder / "all_zero.dcm")
    with zipfile.ZipFile(folder / "evil.zip", "w") as z:
        z.writestr("../../etc/evil.dcm", good)
    with open(folder / "huge.dcm", "wb") as f:
        f.truncate(3 * 1024 * 1024)  # sparse: 3 MiB on paper, nothing on disk
    return {"notes.txt": "not a DICOM", "truncated.dcm": "truncated", "no_pixels.dcm": "pixel data",
            "screenshot.dcm": "RGB", "ct.dcm": "CT", "no_spacing.dcm": "PixelSpacing", "all_zero.dcm": "all-zero",
            "evil.zip": "unsafe path", "huge.dcm": "size limit"}


@pytest.mark.slow
def test_analyze_a_folder_of_good_and_bad_files(tmp_path, phantom_studies, all_liver_weights):
    inbox = tmp_path / "inbox"
    for key, folder in phantom_studies.items():
        shutil.copytree(folder, inbox / key)
    expected_reasons = _bad_files(inbox / "bad")
    out = tmp_path / "out"
    proc = _run("analyze", str(inbox), "--out", str(out), "--weights-dir", str(all_liver_weights),
                "--model", "all_liver", "--device", "cpu", "--pdf", env={"MRE_MAX_FILE_MB": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr

    studies = pd.read_csv(out / "studies.csv")
    assert len(studies) == 3
    assert set(studies["profile"]) <= {"siemens", "ge", "rwvm"} and "siemens" in set(studies["profile"])
    ge = studies[studies["manufacturer"].str.contains("GE")]
    assert ge["kpa_per_unit"].iloc[0] == pytest.approx(0.001)  # Pa → kPa
    assert set(studies["confidence_encoding"]) == {"cross_hatch", "zero_fill", "paired_series"}
    assert studies["stiffness_kpa"].between(0.5, 20).all()
    assert (studies["model_name"] == "all_liver").all() and studies["model_sha256"].str.len().eq(64).all()
    assert studies["stage"].str.match(r"^F[0-4]$").all()
    for col in ("patient_id", "study_uid", "series_uid", "n_slices", "stiffness_kpa_area_weighted",
                "significant_fibrosis", "qc_flags", "runtime_s"):
        assert col in studies.columns

    slices = pd.read_csv(out / "slices.csv")
    assert len(slices) == studies["n_slices"].sum()
    for _, s in studies.iterrows():
        mine = slices[slices["series_uid"] == s["series_uid"]]
        used = mine[~mine["excluded"].astype(bool)]
        assert s["stiffness_kpa"] == pytest.approx(used["mean_kpa"].mean(), abs=2e-3)

    skipped = pd.read_csv(out / "skipped.csv")
    for name, words in expected_reasons.items():
        rows = skipped[skipped["file"].str.contains(name, regex=False)]
        assert len(rows) >= 1, f"{name} missing from skipped.csv"
        assert rows["reason"].str.contains(words, case=False, regex=False).any(), (name, rows["reason"].tolist())

    for series_uid in studies["series_uid"]:
        seg = pydicom.dcmread(out / "seg" / f"{series_uid}.dcm")
        assert seg.Modality == "SEG"
        referenced = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
        assert referenced == set(slices.loc[slices["series_uid"] == series_uid, "sop_uid"])
        summary = read_sr_summary(out / "sr" / f"{series_uid}.dcm")  # the SR references this SEG
        assert summary["seg_sop_uid"] == seg.SOPInstanceUID
        row = studies.set_index("series_uid").loc[series_uid]
        assert summary["stiffness_kpa"] == pytest.approx(row["stiffness_kpa"], abs=1e-3)
        assert summary["stage"] == row["stage"]
    pdfs = sorted((out / "pdf").glob("*.pdf"))  # --pdf: one report per study
    assert len(pdfs) == len(studies) and all(p.read_bytes().startswith(b"%PDF") for p in pdfs)


def test_only_bad_files_exit_non_zero_with_reasons(tmp_path, all_liver_weights):
    _bad_files(tmp_path / "bad")
    proc = _run("analyze", str(tmp_path / "bad"), "--out", str(tmp_path / "out"), "--weights-dir",
                str(all_liver_weights), "--model", "all_liver", "-q", env={"MRE_MAX_FILE_MB": "2"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(pd.read_csv(tmp_path / "out" / "skipped.csv")) >= 9
    assert len(pd.read_csv(tmp_path / "out" / "studies.csv")) == 0


def test_usage_errors_exit_2():
    assert _run("analyze").returncode == 2
    assert _run("frobnicate").returncode == 2


def test_missing_weights_is_a_one_line_error(tmp_path, phantom_studies):
    proc = _run("analyze", str(phantom_studies["siemens_zero"]), "--out", str(tmp_path / "o"),
                "--weights-dir", str(tmp_path), "--model", "absent")
    assert proc.returncode == 1 and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_phantom_verb_writes_a_deterministic_cohort(tmp_path):
    for run in ("a", "b"):
        proc = _run("phantom", "--out", str(tmp_path / run), "--patients", "2", "--seed", "5", "--workers", "1")
        assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = pd.read_csv(tmp_path / "a" / "cohort.csv"), pd.read_csv(tmp_path / "b" / "cohort.csv")
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2 and {"manual_kpa", "manual_stage", "split"} <= set(a.columns)


@pytest.mark.slow
def test_analyze_saves_to_the_results_store_once(tmp_path, phantom_studies, all_liver_weights):
    from mre_core.store.results import Store

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    args = ("analyze", str(phantom_studies["siemens_zero"]), "--weights-dir", str(all_liver_weights),
            "--model", "all_liver", "--device", "cpu", "-q")
    first = _run(*args, "--out", str(tmp_path / "a"), env={"MRE_DB_URL": url})
    assert first.returncode == 0, first.stderr[-2000:]
    assert "1 result(s) saved as 'auto'" in first.stderr
    table = Store(url).latest_table()
    assert len(table) == 1 and table["kind"].tolist() == ["auto"] and table["dataset"].tolist() == ["cli"]
    again = _run(*args, "--out", str(tmp_path / "b"), env={"MRE_DB_URL": url})
    assert "0 result(s) saved" in again.stderr and "1 unchanged" in again.stderr
    assert len(Store(url).history(table["study_uid"][0])) == 1, "the same series is not saved twice"
    off = _run(*args, "--out", str(tmp_path / "c"), "--no-store", env={"MRE_DB_URL": url})
    assert off.returncode == 0 and "results store" not in off.stderr
