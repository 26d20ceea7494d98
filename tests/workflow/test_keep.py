"""Keeping an uploaded study's files with its review: filed into the inbox as ``kept``, never analysed by a worker."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest

from mre_core.app.demo import demo_study
from mre_core.store.inbox import DONE, KEPT, RECEIVING, Inbox, InstanceKeys
from mre_core.store.results import Store
from mre_core.workflow.keep import keep_study_files
from mre_core.workflow.worklist import worklist


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_study(tmp_path_factory.mktemp("demo"), seed=3)


def _uids(folder: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(next(p for p in sorted(folder.rglob("*")) if p.is_file()), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def test_an_upload_is_kept_whole_named_and_never_taken_by_a_worker(study: Path, tmp_path: Path) -> None:
    inbox = Inbox(Store(f"sqlite:///{tmp_path / 'r.sqlite'}"), tmp_path / "inbox")
    study_uid, series_uid = _uids(study)
    files = sorted(p for p in study.rglob("*") if p.is_file())
    uploads = [(p.name, p.read_bytes()) for p in files] + [("notes.txt", b"not DICOM")]
    kept = keep_study_files(inbox, uploads, study_uid, series_uid, max_file_bytes=50_000_000)
    assert kept.kept == len(files) and kept.already == 0
    assert len(kept.unreadable) == 1 and kept.unreadable[0].startswith("notes.txt: ")  # named, the rest kept
    assert sorted(p.name for p in inbox.files(study_uid)) == sorted(
        f"{pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID}.dcm" for p in files)
    row = inbox.status(study_uid)
    assert row["status"] == KEPT and row["series_uid"] == series_uid and row["n_instances"] == len(files)
    assert inbox.ready(quiet_s=0.0, now=time.time() + 3600) == []  # no worker analyses a kept study
    assert worklist(inbox)["status"].tolist() == ["uploaded, files kept"]
    again = keep_study_files(inbox, uploads, study_uid, series_uid, max_file_bytes=50_000_000)
    assert (again.kept, again.already) == (0, len(files))  # kept once


def test_kept_files_of_a_study_received_by_dicom_leave_its_state_alone(study: Path, tmp_path: Path) -> None:
    inbox = Inbox(Store(f"sqlite:///{tmp_path / 'r.sqlite'}"), tmp_path / "inbox")
    study_uid, series_uid = _uids(study)
    files = sorted(p for p in study.rglob("*") if p.is_file())
    first = files[0]
    inbox.add(InstanceKeys.from_dataset(pydicom.dcmread(first, stop_before_pixels=True)), first.read_bytes(),
              "SCANNER@127.0.0.1")
    assert inbox.claim(study_uid, quiet_s=0.0, now=time.time() + 5)
    inbox.finish(study_uid, DONE, "analysed", series_uid)
    keep_study_files(inbox, [(p.name, p.read_bytes()) for p in files], study_uid, series_uid, 50_000_000)
    row = inbox.status(study_uid)
    assert row["status"] == DONE and row["n_instances"] == len(files)  # not back to receiving: no re-analysis
    assert row["status"] != RECEIVING
