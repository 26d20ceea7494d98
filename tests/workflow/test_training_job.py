"""Training jobs: their state lives in the store, one at a time, cancel, interrupted processes, resume rules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa

from mre_core.config import Settings
from mre_core.model.site import SiteTrainParams
from mre_core.store.audit import read_audit
from mre_core.store.inbox import Inbox
from mre_core.store.results import Store
from mre_core.store.schema import training_jobs
from mre_core.workflow import training_job as jobs


@pytest.fixture
def env(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    settings = Settings(device="cpu", db_url=store.url, inbox_dir=tmp_path / "inbox", models_dir=tmp_path / "models")
    return store, Inbox(store, settings.inbox_dir), settings


def _set(store, job_id, **values):
    with store.writer() as conn:
        conn.execute(training_jobs.update().where(training_jobs.c.id == job_id).values(**values))


def test_a_job_row_records_the_choices_and_its_run_folder_and_is_audited(env) -> None:
    store, _, settings = env
    params = SiteTrainParams(manufacturers=("GE",), epochs=3)
    job_id = jobs.create_job(store, params, settings, "ada")
    job = jobs.get_job(store, job_id)
    assert job.status == jobs.QUEUED and job.created_by == "ada"
    assert SiteTrainParams.from_json(job.params) == params
    assert job.out_dir == settings.models_dir / "runs" / f"job_{job_id}"
    assert "training:create" in read_audit(store)["action"].tolist()


def test_only_one_training_job_runs_at_a_time(env) -> None:
    store, _, settings = env
    first = jobs.create_job(store, SiteTrainParams(), settings, "ada")
    with pytest.raises(RuntimeError, match=f"job {first} is queued"):
        jobs.create_job(store, SiteTrainParams(), settings, "ada")
    _set(store, first, status=jobs.FAILED)
    assert jobs.create_job(store, SiteTrainParams(), settings, "ada") != first


def test_cancel_before_the_process_starts_ends_the_job_cancelled(env) -> None:
    store, inbox, settings = env
    job_id = jobs.create_job(store, SiteTrainParams(), settings, "ada")
    assert jobs.request_cancel(store, job_id, "ada")
    assert jobs.get_job(store, job_id).status == jobs.CANCELLING
    assert jobs.run_job(store, inbox, job_id, settings, echo=lambda _m: None) == 1
    assert jobs.get_job(store, job_id).status == jobs.CANCELLED
    assert not jobs.request_cancel(store, job_id, "ada")  # nothing left to cancel
    assert "training:cancel" in read_audit(store)["action"].tolist()


def test_a_running_job_whose_process_is_gone_shows_as_interrupted(env) -> None:
    store, _, settings = env
    job_id = jobs.create_job(store, SiteTrainParams(), settings, "ada")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    _set(store, job_id, status=jobs.RUNNING, worker=f"{socket.gethostname()}:{dead.pid}")
    assert jobs.get_job(store, job_id).status == jobs.INTERRUPTED
    _set(store, job_id, worker="another-host:1")  # another host's process is not judged from here
    assert jobs.get_job(store, job_id).status == jobs.RUNNING


def test_resume_needs_a_stopped_job_with_a_checkpoint(env) -> None:
    store, _, settings = env
    job_id = jobs.create_job(store, SiteTrainParams(), settings, "ada")
    with pytest.raises(ValueError, match="only a cancelled, failed, interrupted job"):
        jobs.resume_job(store, job_id, settings, "ada")
    _set(store, job_id, status=jobs.FAILED)
    with pytest.raises(ValueError, match="no checkpoint yet"):
        jobs.resume_job(store, job_id, settings, "ada")


def test_a_job_with_nothing_to_train_on_fails_with_the_reason_in_its_row(env) -> None:
    store, inbox, settings = env
    job_id = jobs.create_job(store, SiteTrainParams(epochs=1), settings, "ada")
    assert jobs.run_job(store, inbox, job_id, settings, echo=lambda _m: None) == 1
    job = jobs.get_job(store, job_id)
    assert job.status == jobs.FAILED and "0 labelled patient(s)" in job.error
    assert job.finished_utc


def test_the_cli_runs_a_job_of_the_store_and_reports_a_failure_without_a_traceback(env) -> None:
    store, _, settings = env
    job_id = jobs.create_job(store, SiteTrainParams(epochs=1), settings, "ada")
    proc = subprocess.run([sys.executable, "-m", "mre_core", "train", "--from-store", "--job", str(job_id)],
                          capture_output=True, text=True, timeout=300,
                          env=jobs.job_environment(settings))
    assert proc.returncode == 1
    assert f"job {job_id} failed: 0 labelled patient(s)" in proc.stdout
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(training_jobs).where(training_jobs.c.id == job_id)).mappings().one()
    assert row["status"] == jobs.FAILED and json.loads(row["progress_json"])["epochs"] == 1


@pytest.mark.slow
def test_a_launched_job_is_cancelled_mid_run_and_resumed_to_the_end_with_the_same_split(tmp_path) -> None:
    """A real training process (a tiny plain U-Net as the active model, so CPU CI can afford it): cancel after the
    first epoch, resume, and the job ends with every epoch once and a registered model."""
    import time

    from mre_core.phantom.site import generate_site
    from mre_core.store import models as registry
    from mre_core.workflow.import_rois import import_rois
    from tests.app_support import TEST_MODEL, write_everything_liver_weights

    write_everything_liver_weights(tmp_path / "weights")
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    settings = Settings(device="cpu", db_url=store.url, inbox_dir=tmp_path / "inbox", models_dir=tmp_path / "models",
                        weights_dir=tmp_path / "weights", model_name=TEST_MODEL)
    inbox = Inbox(store, settings.inbox_dir)
    generate_site(tmp_path / "site", 4, seed=3)
    report = import_rois([tmp_path / "site" / "archive" / "dicom", tmp_path / "site" / "reads"], store, inbox,
                         imported_by="test")
    assert len(report.imported) == 4
    epochs = 12
    job_id = jobs.create_job(store, SiteTrainParams(epochs=epochs, micro_batch=2), settings, "ada")

    def wait(predicate, timeout_s: float = 600.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = jobs.get_job(store, job_id)
            if predicate(job):
                return job
            time.sleep(0.5)
        raise AssertionError(f"timed out: {jobs.get_job(store, job_id).describe()}; log: "
                             f"{jobs.get_job(store, job_id).log_path.read_text()[-2000:]}")

    proc = jobs.launch(store, job_id, settings)
    first = wait(lambda j: j.progress.get("epoch", 0) >= 1 or j.status in (jobs.FAILED, jobs.INTERRUPTED))
    assert first.status == jobs.RUNNING, first.describe()
    assert jobs.request_cancel(store, job_id, "ada")
    stopped = wait(lambda j: j.status in (jobs.CANCELLED, jobs.FINISHED))
    proc.wait(timeout=60)
    assert stopped.status == jobs.CANCELLED, stopped.describe()
    done_before = stopped.progress["epoch"]
    assert 1 <= done_before < epochs and stopped.resumable
    split_before = (stopped.out_dir / "split.json").read_text()

    proc = jobs.resume_job(store, job_id, settings, "ada")
    finished = wait(lambda j: j.status in (jobs.FINISHED, jobs.FAILED, jobs.INTERRUPTED))
    proc.wait(timeout=60)
    assert finished.status == jobs.FINISHED, finished.describe()
    assert [int(r["epoch"]) for r in finished.progress["log"]] == list(range(1, epochs + 1))
    assert (finished.out_dir / "split.json").read_text() == split_before
    entry = registry.get(store, finished.model_version)
    assert entry is not None and entry.job_id == job_id and entry.origin == "site"
    actions = read_audit(store)["action"].tolist()
    assert {"training:create", "training:cancel", "training:resume", "training:finish"} <= set(actions)
