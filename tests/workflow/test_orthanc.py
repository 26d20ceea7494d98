"""The hospital workflow end to end, with a real PACS: Orthanc → our listener → Orthanc.

Phantom studies are uploaded to Orthanc (REST ``POST /instances``); Orthanc sends each study to the
listener CLI (``python -m mre_core listen``, a separate process with the shipped model) as a routing
rule would; the listener analyses it after the quiet period and forwards DICOM SEG and SR back to
Orthanc. Then Orthanc re-sends the whole studies (our SEG and SR included), which the listener must
accept without error and without producing or forwarding anything a second time.

Orthanc is the Debian package ``orthanc`` (``/usr/sbin/Orthanc``, installed by ``make system-deps``);
the building blocks live in :mod:`mre_core.bench.orthanc` (the same round trip as a benchmark).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from mre_core.bench.orthanc import (
    LISTENER_AET,
    ORTHANC_AET,
    ORTHANC_BINARY,
    SEG_SOP_CLASS,
    ListenerProcess,
    Orthanc,
    free_port,
    send_and_wait,
)
from mre_core.store.inbox import DONE, SENT
from tests.workflow.test_listener import wait_for

N_STUDIES = 3


@pytest.fixture()
def listener_port() -> int:
    return free_port()


@pytest.fixture()
def orthanc(tmp_path: Path, listener_port: int):
    """Orthanc with its own configuration in tmp_path: loopback only, our listener as modality ``MRE``."""
    if not ORTHANC_BINARY.is_file():
        pytest.skip(f"{ORTHANC_BINARY} not found: the end-to-end PACS test needs the Debian package 'orthanc' "
                    "(make system-deps installs it)")
    server = Orthanc(tmp_path / "orthanc", listener_port).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def phantom(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    from mre_core.phantom.cohort import generate_cohort

    cohort = generate_cohort(tmp_path / "phantom", N_STUDIES, seed=31, progress=False, workers=1)
    return tmp_path / "phantom" / "dicom", cohort


def _error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if " ERROR " in line or "Traceback" in line or "failed" in line or "refused" in line or "rejected" in line]


@pytest.mark.slow
def test_orthanc_sends_studies_gets_seg_and_sr_back_once_and_can_resend_everything(
        tmp_path: Path, orthanc: Orthanc, listener_port: int, phantom: tuple[Path, pd.DataFrame]) -> None:
    dicom_dir, cohort = phantom
    n_files = {str(p): len([f for f in (dicom_dir / str(p)).rglob("*") if f.is_file()]) for p in cohort["patient_id"]}
    study_ids = orthanc.upload_folder(dicom_dir)
    assert len(study_ids) == N_STUDIES
    uids = {sid: orthanc.study_uid(sid) for sid in study_ids}
    originals = {sid: orthanc.n_instances(sid) for sid in study_ids}
    assert sorted(originals.values()) == sorted(n_files.values())
    assert all(not orthanc.has_results(sid) for sid in study_ids)

    listener = ListenerProcess(tmp_path / "listener", listener_port, orthanc.destination, quiet_s=1.0, device="cpu")
    listener.start()
    try:
        listener.wait_ready(orthanc)  # Orthanc's C-ECHO reaches the listener, whose --allow is Orthanc's AE title
        # 1. Orthanc sends every study; SEG and SR come back to Orthanc
        trip = send_and_wait(orthanc, study_ids, timeout_s=180)
        for sid, answer in trip.answers.items():
            assert answer["InstancesCount"] == originals[sid] and answer["FailedInstancesCount"] == 0
            assert answer["RemoteAet"] == LISTENER_AET and answer["LocalAet"] == ORTHANC_AET
        print(f"\n{N_STUDIES} studies via Orthanc: last send → last SEG/SR in Orthanc "
              f"{trip.last_send_to_last_result_s:.2f} s (per study {', '.join(f'{t:.2f}' for t in trip.per_study_s)} s)")
        inbox = listener.inbox()
        for sid, uid in uids.items():
            state = inbox.status(uid)
            assert state["status"] == DONE and "kPa" in state["detail"], state
            assert state["n_instances"] == originals[sid]
        wait_for(lambda: set(inbox.forward_table()["status"]) == {SENT}, 30, 0.2)

        # 2. Orthanc re-sends the whole studies, our SEG and SR included: accepted, filed, not analysed again
        resent_at = time.time()
        for sid in study_ids:
            assert orthanc.n_instances(sid) == originals[sid] + 2
            answer = orthanc.send_to_modality(sid)  # raises unless HTTP 200 and no failed instance
            assert answer["InstancesCount"] == originals[sid] + 2 and answer["FailedInstancesCount"] == 0
        wait_for(lambda: all(inbox.status(uid)["status"] == DONE and float(inbox.status(uid)["finished_at"]) > resent_at
                             for uid in uids.values()), 120, 0.5)  # looked at again after the re-send
        for sid, uid in uids.items():
            assert inbox.status(uid)["n_instances"] == originals[sid] + 2  # SEG and SR filed with the study
            assert len(inbox.store.history(uid)) == 1  # still one revision
        listener.wait_ready(orthanc, 10)  # still alive and answering after the re-sends
    finally:
        code = listener.stop()
    log = listener.log()
    assert code == 0, log[-3000:]

    # 3. every SEG and SR arrived exactly once, and was forwarded exactly once
    forwards = inbox.forward_table()
    assert len(forwards) == 2 * N_STUDIES and set(forwards["status"]) == {SENT}, forwards
    assert (forwards["attempts"] == 1).all() and (forwards["destination"] == orthanc.destination).all()
    for sid, uid in uids.items():
        assert sorted(forwards[forwards["study_uid"] == uid]["what"]) == ["SEG", "SR"]
        series = orthanc.series_by_modality(sid)
        assert len(series["SEG"]) == 1 and len(series["SR"]) == 1
        classes = orthanc.sop_classes(sid)
        assert classes.get(SEG_SOP_CLASS) == 1 and sum(classes.values()) == 2, classes
        assert orthanc.n_instances(sid) == originals[sid] + 2
    assert _error_lines(log) == [], log[-3000:]
    # Orthanc's own errors: only the C-ECHOs sent while the listener was still loading its model
    orthanc_errors = [line for line in orthanc.log_tail(1_000_000).splitlines()
                      if line.startswith("E") and "Connection refused" not in line]
    assert orthanc_errors == [], orthanc.log_tail()
