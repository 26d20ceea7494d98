"""The hospital workflow on loopback: DICOM listener, watch folder, worker, forwarding, restart.

Studies are phantom studies written as a scanner would (elastogram + magnitude + wave series);
they are sent with dcmtk's ``storescu`` (the Debian package the Makefile installs) and with
pynetdicom's SCU. The expected stiffness is what ``analyze`` gives on the same files with the
same model; the expected stage is the phantom truth's manual stage.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Comprehensive3DSRStorage, MRImageStorage, SegmentationStorage, Verification

from mre_core.config import Settings
from mre_core.model.network import load_model
from mre_core.store.inbox import DONE, FAILED, NOT_ANALYSED, PROCESSING, RECEIVING, Inbox, InstanceKeys
from mre_core.store.results import Store
from mre_core.workflow.batch import analyze_sources
from mre_core.workflow.listener import Listener, ListenerConfig
from mre_core.workflow.watch import Watcher
from mre_core.workflow.worker import Destination, IntakeConfig, Worker
from mre_core.workflow.worklist import worklist

REPO = Path(__file__).resolve().parents[2]
STORESCU = shutil.which("storescu")
ECHOSCU = shutil.which("echoscu")
needs_dcmtk = pytest.mark.skipif(STORESCU is None or ECHOSCU is None,
                                 reason="dcmtk not installed (make system-deps installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout_s: float = 60.0, every_s: float = 0.1):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def truth(study_dir: Path) -> pd.Series:
    return pd.read_csv(study_dir.parent.parent / "cohort.csv").iloc[0]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mre_core.phantom.cohort import write_demo_study

    return write_demo_study(tmp_path_factory.mktemp("pacs_study"), seed=5, stage=None)


@pytest.fixture(scope="module")
def shipped() -> tuple[Settings, object]:
    settings = Settings(device="cpu")
    return settings, load_model(settings.weights_dir, settings.model_name, "cpu")


@pytest.fixture()
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(Store(f"sqlite:///{tmp_path / 'store.sqlite'}"), tmp_path / "inbox")


def _keys(i: int, study_uid: str = "1.2.3", series_uid: str = "1.2.3.1") -> InstanceKeys:
    return InstanceKeys(f"1.2.3.1.{i}", study_uid, series_uid, "P1", "Doe^J", "20250101")


# ----------------------------------------------------------------------------------- inbox queue
def test_inbox_files_first_deduplicates_and_waits_for_quiet_period(inbox: Inbox) -> None:
    assert inbox.add(_keys(1), b"one", "SCANNER", now=100.0)
    assert inbox.add(_keys(2), b"two", "SCANNER", now=101.0)
    assert not inbox.add(_keys(2), b"two again", "SCANNER", now=102.0)  # duplicate SOP instance
    files = inbox.files("1.2.3")
    assert [f.read_bytes() for f in files] == [b"one", b"two"]
    assert inbox.status("1.2.3")["n_instances"] == 2
    assert inbox.ready(quiet_s=5, now=105.0) == []  # 4 s since the last instance
    assert inbox.ready(quiet_s=5, now=106.0) == ["1.2.3"]
    assert inbox.claim("1.2.3", 5, now=106.0) and not inbox.claim("1.2.3", 5, now=106.0)
    assert inbox.status("1.2.3")["status"] == PROCESSING


def test_instance_arriving_during_analysis_requeues_the_study(inbox: Inbox) -> None:
    inbox.add(_keys(1), b"a", "X", now=100.0)
    assert inbox.claim("1.2.3", 1, now=200.0)
    inbox.add(_keys(2), b"b", "X", now=201.0)  # arrives while the worker is busy
    inbox.finish("1.2.3", DONE, "3.0 kPa")
    assert inbox.status("1.2.3")["status"] == RECEIVING  # analysed again once quiet


def test_recover_requeues_interrupted_and_registers_unknown_files(inbox: Inbox, study: Path) -> None:
    inbox.add(_keys(1), b"a", "X", now=100.0)
    assert inbox.claim("1.2.3", 1, now=200.0)
    # a file written to disk by a process that died before registering it
    src = dicom_files(study)[0]
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    orphan = inbox.study_dir(ds.StudyInstanceUID) / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    orphan.parent.mkdir(parents=True)
    shutil.copy(src, orphan)
    assert inbox.recover() == {"requeued": 1, "registered": 1, "forwards": 0}
    assert inbox.status("1.2.3")["status"] == RECEIVING
    assert inbox.status(str(ds.StudyInstanceUID))["status"] == RECEIVING
    assert inbox.recover() == {"requeued": 0, "registered": 0, "forwards": 0}


def test_destination_parsing() -> None:
    assert str(Destination.parse("pacs.local:104:PACS")) == "pacs.local:104:PACS"
    for bad in ("pacs:104", "pacs:x:PACS", "pacs:0:PACS", "pacs:104:" + "A" * 17):
        with pytest.raises(ValueError, match="destination"):
            Destination.parse(bad)


# ----------------------------------------------------------------------------------- worker
def test_worker_analyses_a_quiet_study_like_the_cli(inbox: Inbox, study: Path, shipped) -> None:
    settings, model = shipped
    for f in dicom_files(study):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        inbox.add(InstanceKeys.from_dataset(ds), f.read_bytes(), "test", now=time.time() - 60)
    worker = Worker(inbox, settings, IntakeConfig(quiet_s=1.0, write_pdf=True, outbox=inbox.root.parent / "out"),
                    model)
    worker.step()
    expected = analyze_sources([study], settings, model).results[0]
    uid = expected.study_uid
    state = inbox.status(uid)
    assert state["status"] == DONE, state["detail"]
    saved = inbox.store.load_revision(uid, expected.series_uid)
    assert saved.kind == "auto" and saved.stiffness_kpa == pytest.approx(expected.stiffness_kpa, abs=1e-6)
    assert saved.stage == truth(study)["manual_stage"]
    row = worklist(inbox).iloc[0]
    assert row["status"] == "auto, awaiting review" and row["stage"] == saved.stage
    outbox = inbox.root.parent / "out" / inbox.study_dir(uid).name
    assert {p.name.split("_")[0] for p in outbox.iterdir()} == {"seg", "sr", "report"}
    # a magnitude series sent again later neither creates a new revision nor loses the old one
    inbox.add(_keys(99, uid, "9.9"), b"not an elastogram", "test", now=time.time() - 60)
    worker.step()
    assert inbox.store.history(uid)["revision"].tolist() == [1]
    assert "unchanged" in inbox.status(uid)["detail"]


def test_worker_records_a_failing_study_and_goes_on(inbox: Inbox, study: Path, shipped,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings, model = shipped
    inbox.add(_keys(1, "7.7", "7.7.1"), b"garbage, not DICOM", "test", now=time.time() - 90)
    for f in dicom_files(study):  # a real study, arriving after the garbage
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        inbox.add(InstanceKeys.from_dataset(ds), f.read_bytes(), "test", now=time.time() - 60)
    uid = str(ds.StudyInstanceUID)
    import mre_core.workflow.steps as intake

    def crash(*args, **kwargs):
        raise MemoryError("simulated crash inside the analysis")

    monkeypatch.setattr(intake, "analyze_study", crash)
    worker = Worker(inbox, settings, IntakeConfig(quiet_s=1.0, write_pdf=False), model)
    worker.step()
    assert inbox.status("7.7")["status"] == NOT_ANALYSED and "not a DICOM file" in inbox.status("7.7")["detail"]
    state = inbox.status(uid)
    assert state["status"] == FAILED and "simulated crash" in state["detail"]
    assert worklist(inbox).set_index("study_uid").loc[uid, "status"] == FAILED
    # the worker is still alive; the study is analysed once it is sent again (a new instance re-queues it)
    monkeypatch.undo()
    inbox.add(_keys(3, uid, "1.9"), b"extra", "test", now=time.time() - 60)
    worker.step()
    assert inbox.status(uid)["status"] == DONE and inbox.status(uid)["attempts"] == 2


# ----------------------------------------------------------------------------------- network
class Sink:
    """A second C-STORE SCP (the 'PACS' the results are forwarded to) that keeps what it receives."""

    def __init__(self, port: int) -> None:
        self.received: list[pydicom.Dataset] = []
        ae = AE(ae_title="PACS")
        for sop in (SegmentationStorage, Comprehensive3DSRStorage, Verification):
            ae.add_supported_context(sop)
        self.ae, self.port = ae, port

    def _store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0x0000

    def __enter__(self) -> Sink:
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._store)])
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def send_pynetdicom(files: list[Path], port: int, calling: str = "SCANNER") -> list[int]:
    ae = AE(ae_title=calling)
    for syntax in {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files}:
        ae.add_requested_context(MRImageStorage, syntax)  # phantom files may be JPEG-LS compressed, as scanners do
    assoc = ae.associate("127.0.0.1", port, ae_title="MRE_REVIEW")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(pydicom.dcmread(f)).Status) for f in files]
    finally:
        assoc.release()


def mr_files(study: Path) -> list[Path]:
    return [f for f in dicom_files(study) if pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID == MRImageStorage]


def test_listener_pynetdicom_send_echo_allow_list_and_forwarding(tmp_path: Path, study: Path, shipped) -> None:
    settings, model = shipped
    inbox = Inbox(Store(f"sqlite:///{tmp_path / 's.sqlite'}"), tmp_path / "inbox")
    port, pacs_port = free_port(), free_port()
    config = IntakeConfig(quiet_s=1.0, poll_s=0.2, forward_to=Destination("127.0.0.1", pacs_port, "PACS"),
                          retry_delays_s=(0.5, 0.5, 0.5, 0.5, 0.5, 0.5), write_pdf=False)
    listener = Listener(inbox, settings, ListenerConfig(port=port, host="127.0.0.1", allow=("SCANNER",)), config,
                        model)
    listener.start()
    try:
        # C-ECHO from an allowed AE
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="MRE_REVIEW")
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
        # anything else is rejected at association: another calling AE, or the wrong called AE
        rogue = AE(ae_title="ROGUE")
        rogue.add_requested_context(Verification)
        assert rogue.associate("127.0.0.1", port, ae_title="MRE_REVIEW").is_rejected
        assert ae.associate("127.0.0.1", port, ae_title="OTHER_AE").is_rejected

        files = mr_files(study)
        assert send_pynetdicom(files, port) == [0] * len(files)
        assert send_pynetdicom(files[:3], port) == [0] * 3  # a duplicate send is acknowledged, not re-filed
        # the destination is down at first: the forward is retried, and the status says so
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        wait_for(lambda: inbox.status(uid)["status"] == DONE, 120)
        wait_for(lambda: (inbox.forward_table(uid)["attempts"] >= 1).all(), 30)
        assert set(inbox.forward_table(uid)["status"]) == {"pending"}
        assert "pending" in worklist(inbox).iloc[0]["forwarded"]
        with Sink(pacs_port) as pacs:
            wait_for(lambda: set(inbox.forward_table(uid)["status"]) == {"sent"}, 30)
        assert inbox.status(uid)["n_instances"] == len(files)
        assert len(inbox.store.history(uid)) == 1
        seg, sr = sorted(pacs.received, key=lambda d: str(d.Modality))
        assert seg.Modality == "SEG" and sr.Modality == "SR"
        assert str(sr.StudyInstanceUID) == uid == str(seg.StudyInstanceUID)
        from mre_core.outputs.sr_read import read_sr_summary

        summary = read_sr_summary(sr)
        saved = inbox.store.load_revision(uid, inbox.status(uid)["series_uid"])
        assert summary["stiffness_kpa"] == pytest.approx(saved.stiffness_kpa, abs=1e-3)
        assert summary["stage"] == saved.stage and summary["seg_sop_uid"] == str(seg.SOPInstanceUID)
    finally:
        listener.stop()


# ----------------------------------------------------------------------------------- CLI processes
def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mre_core", *args], cwd=REPO, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def echo_ok(port: int) -> bool:
    return subprocess.run([ECHOSCU, "-aet", "SCANNER", "-aec", "MRE_REVIEW", "127.0.0.1", str(port)],
                          capture_output=True).returncode == 0


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, MRE_DB_URL=f"sqlite:///{tmp_path / 'store.sqlite'}", MRE_DEVICE="cpu",
               MRE_INBOX_DIR=str(tmp_path / "inbox"), PYTHONUNBUFFERED="1")
    return env


@needs_dcmtk
def test_storescu_study_is_analysed_and_a_killed_listener_finishes_it_after_restart(
        tmp_path: Path, study: Path, cli_env: dict[str, str], shipped) -> None:
    port = free_port()
    store = Store(cli_env["MRE_DB_URL"])
    # 1. a long quiet period, so the study is still waiting when the listener is killed
    proc = start_cli(["listen", "--port", str(port), "--quiet-s", "600", "--allow", "SCANNER"], cli_env,
                     tmp_path / "listen1.log")
    try:
        wait_for(lambda: echo_ok(port), 90, 0.5)
        sent = subprocess.run([STORESCU, "-aet", "SCANNER", "-aec", "MRE_REVIEW", "+sd", "+r", "-xt", "127.0.0.1",
                               str(port), str(study)], capture_output=True, text=True)
        assert sent.returncode == 0, sent.stderr
        rejected = subprocess.run([STORESCU, "-aet", "ROGUE", "-aec", "MRE_REVIEW", "127.0.0.1", str(port),
                                   str(mr_files(study)[0])], capture_output=True, text=True)
        assert rejected.returncode != 0 and "reject" in (rejected.stdout + rejected.stderr).lower()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no clean shutdown: as if the machine lost power
        proc.wait()
    inbox = Inbox(store, Path(cli_env["MRE_INBOX_DIR"]))
    uid = str(pydicom.dcmread(mr_files(study)[0], stop_before_pixels=True).StudyInstanceUID)
    assert inbox.status(uid)["status"] == RECEIVING and store.history(uid).empty
    assert inbox.status(uid)["n_instances"] == len(dicom_files(study))  # magnitude + wave series too
    # 2. restart with a short quiet period: the received study is analysed without being sent again
    proc = start_cli(["listen", "--port", str(port), "--quiet-s", "1", "--allow-any"], cli_env,
                     tmp_path / "listen2.log")
    try:
        wait_for(lambda: inbox.status(uid)["status"] in (DONE, FAILED, NOT_ANALYSED), 120, 0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    state = inbox.status(uid)
    assert state["status"] == DONE, state["detail"] + (tmp_path / "listen2.log").read_text()[-2000:]
    settings, model = shipped
    expected = analyze_sources([study], settings, model).results[0]
    saved = store.load_revision(uid, expected.series_uid)
    assert saved.stiffness_kpa == pytest.approx(expected.stiffness_kpa, abs=1e-6)
    assert saved.stage == truth(study)["manual_stage"]
    assert "listening on" in (tmp_path / "listen2.log").read_text()


def test_watch_folder_analyses_exported_files_and_reports_the_rest(tmp_path: Path, study: Path, shipped) -> None:
    settings, model = shipped
    inbox = Inbox(Store(f"sqlite:///{tmp_path / 's.sqlite'}"), tmp_path / "inbox")
    export = tmp_path / "export"
    shutil.copytree(study, export / "exam1")
    (export / "exam1" / "notes.txt").write_text("scanner log, not DICOM")
    watcher = Watcher(export, inbox, poll_s=0.1, settle_s=0.0)
    watcher.step()
    watcher.step()  # a second pass takes nothing twice
    uid = str(pydicom.dcmread(mr_files(study)[0], stop_before_pixels=True).StudyInstanceUID)
    assert inbox.status(uid)["n_instances"] == len(dicom_files(study))
    with inbox.store.engine.connect() as conn:
        audit = conn.exec_driver_sql("SELECT action, detail FROM audit").all()
    assert [a for a, _ in audit] == ["intake:rejected"] and "notes.txt" in audit[0][1]
    worker = Worker(inbox, settings, IntakeConfig(quiet_s=0.0, write_pdf=False), model)
    worker.step()
    assert inbox.status(uid)["status"] == DONE
    assert worklist(inbox).iloc[0]["stage"] == truth(study)["manual_stage"]


def test_an_instance_without_series_uid_is_refused_with_a_status_and_nothing_is_filed(tmp_path: Path,
                                                                                     study: Path) -> None:
    inbox = Inbox(Store(f"sqlite:///{tmp_path / 's.sqlite'}"), tmp_path / "inbox")
    port = free_port()
    listener = Listener(inbox, Settings(device="cpu"), ListenerConfig(port=port, host="127.0.0.1", allow_any=True),
                        IntakeConfig(quiet_s=600))
    listener.start()
    try:
        f = mr_files(study)[0]
        ds = pydicom.dcmread(f)
        del ds.SeriesInstanceUID
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(MRImageStorage, str(ds.file_meta.TransferSyntaxUID))
        assoc = ae.associate("127.0.0.1", port, ae_title="MRE_REVIEW")
        status = assoc.send_c_store(ds)
        assoc.release()
        assert int(status.Status) == 0xC210  # "cannot understand": the sender sees a failure, not a silent drop
        assert inbox.studies_table().empty and not inbox.root.exists()
    finally:
        listener.stop()


def test_a_whole_study_resent_with_our_seg_and_sr_is_accepted_and_filed(tmp_path: Path, caplog) -> None:
    """A PACS re-sends the whole study, which by then holds our SEG and SR (and maybe a CT scout): all accepted."""
    from mre_core.outputs.seg import build_seg
    from mre_core.outputs.sr import build_sr
    from tests import dicom_factory as fx
    from tests.result_factory import make_result

    result = make_result()
    seg = build_seg(result)
    objects = [seg, build_sr(result, seg), fx.ct_dataset()]
    inbox = Inbox(Store(f"sqlite:///{tmp_path / 's.sqlite'}"), tmp_path / "inbox")
    port = free_port()
    listener = Listener(inbox, Settings(device="cpu"), ListenerConfig(port=port, host="127.0.0.1", allow_any=True),
                        IntakeConfig(quiet_s=600))
    listener.start()
    try:
        ae = AE(ae_title="PACS")
        for ds in objects:
            ae.add_requested_context(ds.SOPClassUID, str(ds.file_meta.TransferSyntaxUID))
        assoc = ae.associate("127.0.0.1", port, ae_title="MRE_REVIEW")
        assert assoc.is_established
        statuses = [int(assoc.send_c_store(ds).Status) for ds in objects]
        assoc.release()
        assert statuses == [0, 0, 0]
        filed = list(inbox.root.rglob("*.dcm"))
        assert {str(pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID) for f in filed} == \
            {str(ds.SOPClassUID) for ds in objects}
        # the same study again: acknowledged, nothing filed twice, one log line for the association
        caplog.set_level("INFO", logger="mre_core.workflow.listener")
        assoc = ae.associate("127.0.0.1", port, ae_title="MRE_REVIEW")
        assert [int(assoc.send_c_store(ds).Status) for ds in objects] == [0, 0, 0]
        assoc.release()
        assert len(list(inbox.root.rglob("*.dcm"))) == len(filed)
        wait_for(lambda: any("0 new instance(s) filed, 3 already in the inbox" in r.message for r in caplog.records), 10)
        assert not any("duplicate instance" in r.message for r in caplog.records if r.levelname == "INFO")
    finally:
        listener.stop()
