"""Nothing lost between scanner, PACS and store (issue 12): durable steps, claims, leases, restarts.

The crash test kills a real listener process with SIGKILL (``MRE_FAULT_KILL_AT``, see
:mod:`mre_core.workflow.steps`) at every step boundary, restarts it, and checks that the study ends with one
result, its SEG, SR and PDF, and each object forwarded once. The several-workers test runs a listener and a
``work`` process on one store and checks that every object reaches the PACS once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from mre_core.store.inbox import DONE, PENDING, PROCESSING, RECEIVING, SENDING, SENT, Inbox, InstanceKeys, claim_is_dead
from mre_core.store.results import Store
from mre_core.store.schema import SCHEMA_VERSION
from mre_core.workflow.steps import BOUNDARIES, sha256_of
from tests.workflow.test_listener import REPO, Sink, free_port, mr_files, send_pynetdicom, wait_for

HOST = socket.gethostname()


@pytest.fixture()
def inbox(store_url: str, tmp_path: Path) -> Inbox:
    """An inbox on SQLite and on a real PostgreSQL 15 server (tests/pg_server.py)."""
    return Inbox(Store(store_url), tmp_path / "inbox")


def _add(inbox: Inbox, i: int, now: float, study: str = "1.2.3") -> None:
    assert inbox.add(InstanceKeys(f"{study}.1.{i}", study, f"{study}.1"), b"x", "X", now=now)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------------- claims and leases
def test_of_two_workers_one_claims_a_study_and_a_dead_workers_lease_runs_out(inbox: Inbox) -> None:
    _add(inbox, 1, now=100.0)
    assert inbox.claim("1.2.3", 5, now=110.0, worker="other-host:1", lease_s=60)
    assert not inbox.claim("1.2.3", 5, now=111.0, worker="other-host:2", lease_s=60)  # taken
    assert inbox.ready(5, now=169.0) == []  # the lease still runs
    assert inbox.ready(5, now=171.0) == ["1.2.3"]  # the first worker died somewhere: its lease ran out
    assert inbox.claim("1.2.3", 5, now=171.0, worker="other-host:2", lease_s=60)
    inbox.finish("1.2.3", DONE, "late", worker="other-host:1")  # the old worker woke up: ignored
    assert inbox.status("1.2.3")["status"] == PROCESSING
    inbox.finish("1.2.3", DONE, "3.1 kPa", worker="other-host:2")
    assert inbox.status("1.2.3")["status"] == DONE and inbox.status("1.2.3")["claimed_by"] == ""


def test_recover_releases_dead_local_claims_only_and_restarts_the_quiet_period(inbox: Inbox) -> None:
    for i, (study, who) in enumerate([("9.1", f"{HOST}:{dead_pid()}"), ("9.2", f"{HOST}:{os.getppid()}"),
                                      ("9.3", "another-host:4242")]):
        _add(inbox, i, now=100.0, study=study)
        assert inbox.claim(study, 1, now=200.0, worker=who, lease_s=10_000)
    _add(inbox, 9, now=100.0, study="9.4")  # received, never analysed, quiet period long over
    assert inbox.recover(now=1000.0) == {"requeued": 1, "registered": 0, "forwards": 0}
    states = {s: inbox.status(s)["status"] for s in ("9.1", "9.2", "9.3", "9.4")}
    assert states == {"9.1": RECEIVING, "9.2": PROCESSING, "9.3": PROCESSING, "9.4": RECEIVING}
    # the rest of a partly received study may still be on its way after the downtime: wait again
    assert inbox.ready(30, now=1029.0) == []
    assert sorted(inbox.ready(30, now=1031.0)) == ["9.1", "9.4"]


def test_claim_is_dead_judges_only_this_hosts_processes() -> None:
    assert claim_is_dead("") and claim_is_dead(f"{HOST}:{dead_pid()}") and claim_is_dead(f"{HOST}:{os.getpid()}")
    assert not claim_is_dead(f"{HOST}:{os.getppid()}") and not claim_is_dead("elsewhere:1")


def test_analyse_again_is_ready_at_once(inbox: Inbox) -> None:
    _add(inbox, 1, now=time.time())
    assert inbox.claim("1.2.3", 0, worker="w:1")
    inbox.finish("1.2.3", DONE, "ok", worker="w:1")
    assert inbox.requeue("1.2.3") and inbox.ready(600) == ["1.2.3"]


def test_a_forward_is_queued_once_claimed_by_one_sender_and_released_when_its_sender_dies(inbox: Inbox,
                                                                                          tmp_path: Path) -> None:
    path = tmp_path / "seg.dcm"
    assert inbox.queue_forward("1.2.3", "SEG", path, "h:104:PACS", sop_uid="5.5")
    assert not inbox.queue_forward("1.2.3", "SEG", path, "h:104:PACS", sop_uid="5.5")  # a resumed step
    assert inbox.queue_forward("1.2.3", "SEG", path, "other:104:ARCHIVE", sop_uid="5.5")  # per destination
    job = inbox.due_forwards()[0]
    assert inbox.claim_forward(job["id"], f"{HOST}:{dead_pid()}", lease_s=600)
    assert not inbox.claim_forward(job["id"], "someone:2")
    assert inbox.forward_table().set_index("id").loc[job["id"], "status"] == SENDING
    assert inbox.recover()["forwards"] == 1  # its sender died mid-send: send it again
    assert inbox.forward_table().set_index("id").loc[job["id"], "status"] == PENDING
    assert inbox.claim_forward(job["id"], "someone:2")
    inbox.forward_done(job["id"], True, "", None)
    assert inbox.forward_table().set_index("id").loc[job["id"], "status"] == SENT
    assert [j["id"] for j in inbox.due_forwards()] != [job["id"]]


def test_instances_of_one_new_study_arriving_at_once_are_all_registered(inbox: Inbox) -> None:
    """Two associations deliver different instances of a study nobody has seen yet, at the same moment."""
    from concurrent.futures import ThreadPoolExecutor

    def deliver(offset: int) -> list[bool]:
        return [inbox.add(InstanceKeys(f"7.7.1.{offset + i}", "7.7", "7.7.1"), b"x", "X") for i in range(0, 40, 2)]

    with ThreadPoolExecutor(2) as pool:
        results = [r for part in pool.map(deliver, (0, 1)) for r in part]
    assert all(results) and len(inbox.files("7.7")) == 40 and inbox.status("7.7")["n_instances"] == 40


def test_an_instance_racing_an_uncommitted_first_instance_of_its_study_is_registered(inbox: Inbox) -> None:
    """The exact race: the study row of a new study is inserted but not committed when a second instance comes."""
    import threading

    from mre_core.store.schema import inbox_instances, inbox_studies

    first = InstanceKeys("8.8.1.1", "8.8", "8.8.1")
    outcome: list[bool] = []
    with inbox.store.writer() as conn:  # an arrival whose transaction is still open
        conn.execute(inbox_instances.insert().values(sop_uid=first.sop_uid, study_uid="8.8", series_uid="8.8.1",
                                                     path="/dev/null", received_at=1.0, origin="A"))
        conn.execute(inbox_studies.insert().values(study_uid="8.8", status="receiving", n_instances=1,
                                                   first_received_at=1.0, last_received_at=1.0, quiet_from=1.0))
        other = threading.Thread(target=lambda: outcome.append(
            inbox.add(InstanceKeys("8.8.1.2", "8.8", "8.8.1"), b"x", "B")))
        other.start()
        time.sleep(0.5)  # the second arrival is now waiting on the first one's transaction
    other.join(30)
    assert outcome == [True] and inbox.has("8.8.1.2") and inbox.status("8.8")["n_instances"] == 2


def test_an_old_store_is_upgraded_to_the_current_schema_without_losing_the_inbox(store_url: str, tmp_path: Path) -> None:
    url = store_url
    old = Inbox(Store(url, schema=3), tmp_path / "inbox")
    old.add(InstanceKeys("1.1", "1", "1.0"), b"x", "X", now=100.0)
    old.store.dispose()
    new = Inbox(Store(url), tmp_path / "inbox")
    assert new.store.version() == SCHEMA_VERSION
    assert new.status("1")["status"] == RECEIVING and new.ready(10, now=200.0) == ["1"]
    assert new.claim("1", 10, now=200.0, worker="w:1")


# ----------------------------------------------------------------------------------- real processes
def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mre_core", *args], cwd=REPO, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def env_for(tmp_path: Path, url: str | None = None) -> dict[str, str]:
    return dict(os.environ, MRE_DB_URL=url or f"sqlite:///{tmp_path / 'store.sqlite'}", MRE_DEVICE="cpu",
                MRE_INBOX_DIR=str(tmp_path / "inbox"), PYTHONUNBUFFERED="1")


def ready_line(log: Path, words: str) -> bool:
    return log.is_file() and words in log.read_text()


def check_complete(inbox: Inbox, uid: str, sink: Sink) -> None:
    """One result; SEG, SR and PDF of it on disk as noted; SEG and SR each received once by the PACS."""
    state = inbox.status(uid)
    assert state["status"] == DONE, state["detail"]
    series = state["series_uid"]
    assert inbox.store.history(uid)["revision"].tolist() == [1]
    notes = inbox.outputs(uid, series, 1)
    assert set(notes) == {"SEG", "SR", "PDF"}
    for note in notes.values():
        assert Path(note["path"]).is_file() and sha256_of(Path(note["path"])) == note["sha256"]
    sr = pydicom.dcmread(notes["SR"]["path"])
    assert notes["SEG"]["sop_uid"] in str(sr)  # the SR names the SEG that was kept
    forwards = inbox.forward_table(uid)
    assert sorted(forwards["what"]) == ["SEG", "SR"] and set(forwards["status"]) == {SENT}
    received = [str(ds.SOPInstanceUID) for ds in sink.received if str(ds.StudyInstanceUID) == uid]
    assert sorted(received) == sorted([notes["SEG"]["sop_uid"], notes["SR"]["sop_uid"]])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mre_core.phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, 4, seed=21, progress=False, workers=1)
    return out


def study_uid(folder: Path) -> str:
    return str(pydicom.dcmread(mr_files(folder)[0], stop_before_pixels=True).StudyInstanceUID)


@pytest.mark.slow
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_listener_killed_at_each_step_boundary_finishes_the_study_once(boundary: str, tmp_path: Path,
                                                                         cohort: Path) -> None:
    folder = sorted((cohort / "dicom").iterdir())[0]
    uid, env = study_uid(folder), env_for(tmp_path)
    inbox = Inbox(Store(env["MRE_DB_URL"]), Path(env["MRE_INBOX_DIR"]))
    sink_port, port = free_port(), free_port()
    args = ["listen", "--host", "127.0.0.1", "--port", str(port), "--quiet-s", "1", "--allow-any",
            "--forward-to", f"127.0.0.1:{sink_port}:PACS"]
    with Sink(sink_port) as sink:
        first = start(args, dict(env, MRE_FAULT_KILL_AT=boundary), tmp_path / "first.log")
        try:
            wait_for(lambda: ready_line(tmp_path / "first.log", "listener ready"), 120, 0.2)
            assert set(send_pynetdicom(mr_files(folder), port)) == {0}
            assert first.wait(timeout=300) == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()
        assert f"MRE_FAULT_KILL_AT={boundary}" in (tmp_path / "first.log").read_text()
        unfinished = inbox.status(uid)["status"] != DONE or set(inbox.forward_table(uid)["status"]) != {SENT}
        assert unfinished  # (at "forwarded" the study is done and the SR still waits to be sent)
        second = start(args, env, tmp_path / "second.log")
        try:
            wait_for(lambda: inbox.status(uid)["status"] == DONE
                     and set(inbox.forward_table(uid)["status"]) == {SENT}, 300, 0.5)
            time.sleep(1.5)  # a duplicate send would arrive now
        finally:
            stop(second)
        log = (tmp_path / "second.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        check_complete(inbox, uid, sink)


@pytest.mark.slow
def test_a_listener_and_a_second_worker_on_one_store_send_every_object_once(store_url: str, tmp_path: Path,
                                                                            cohort: Path) -> None:
    env = env_for(tmp_path, store_url)
    inbox = Inbox(Store(env["MRE_DB_URL"]), Path(env["MRE_INBOX_DIR"]))
    folders = sorted((cohort / "dicom").iterdir())
    sink_port, port = free_port(), free_port()
    forward = ["--forward-to", f"127.0.0.1:{sink_port}:PACS", "--quiet-s", "1"]
    with Sink(sink_port) as sink:
        procs = [start(["listen", "--host", "127.0.0.1", "--port", str(port), "--allow", "SCANNER", *forward], env,
                       tmp_path / "l.log"),
                 start(["work", *forward], env, tmp_path / "w.log")]
        try:
            wait_for(lambda: ready_line(tmp_path / "l.log", "listener ready")
                     and ready_line(tmp_path / "w.log", "worker ready"), 120, 0.2)
            for folder in folders:
                assert set(send_pynetdicom(mr_files(folder), port)) == {0}
            uids = [study_uid(f) for f in folders]
            wait_for(lambda: all(inbox.status(u)["status"] == DONE for u in uids)
                     and len(inbox.forward_table()) == 2 * len(uids)
                     and set(inbox.forward_table()["status"]) == {SENT}, 400, 0.5)
            time.sleep(1.5)
        finally:
            for proc in procs:
                stop(proc)
        for uid in uids:
            check_complete(inbox, uid, sink)
        assert len(sink.received) == 2 * len(uids)
        logs = (tmp_path / "l.log").read_text() + (tmp_path / "w.log").read_text()
        assert "Traceback" not in logs, logs[-3000:]
        assert logs.count("forwarded SEG") == len(uids) and logs.count("forwarded SR") == len(uids)
