"""Training from the store as a background job: its own process, its state in the store.

A job is a row of ``training_jobs``: the admin's choices (``params_json``), its run folder, the training process
(``worker`` = ``host:pid``), progress (phase, epoch, slices, loss, validation Dice, the epoch log) and the result
(the registered model's version, or the error). The Model page starts a job with :func:`start_job`, which writes
the row and launches ``python -m mre_core train --from-store --job N`` in a new session, detached from the web
server: a page reload, a closed browser or a restart of the app does not stop it, and the page reads the row again.

States: ``queued`` → ``running`` → ``finished`` | ``failed`` | ``cancelled``; ``cancelling`` while a cancel
is on its way (the trainer asks between micro-batches; the epoch in progress is dropped, the checkpoint keeps the
last whole epoch). A ``running`` job whose process is gone from this host is reported ``interrupted``.
:func:`resume_job` continues a cancelled, failed or interrupted job from its checkpoint with the same split.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from mre_core.config import Settings
from mre_core.store.schema import training_jobs

QUEUED, RUNNING, CANCELLING, CANCELLED, FAILED, FINISHED, INTERRUPTED = (
    "queued", "running", "cancelling", "cancelled", "failed", "finished", "interrupted")
ACTIVE_STATES = (QUEUED, RUNNING, CANCELLING)
RESUMABLE = (CANCELLED, FAILED, INTERRUPTED)
LOG_FILE = "job.log"

#: progress is written at most this often while an epoch runs (each epoch's end is always written)
PROGRESS_EVERY_S = 2.0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_gone(worker: str) -> bool:
    """Whether ``host:pid`` names a process of this host that no longer runs (other hosts: never judged)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    import psutil

    try:
        return psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass(frozen=True)
class JobState:
    """One job as the page shows it."""

    id: int
    status: str
    created_utc: str
    created_by: str
    params: dict
    out_dir: Path
    worker: str
    progress: dict
    updated_utc: str
    finished_utc: str | None
    error: str
    model_version: str

    @property
    def log_path(self) -> Path:
        return self.out_dir / LOG_FILE

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE and (self.out_dir / "checkpoint.pt").is_file()

    def describe(self) -> str:
        """One line: state, phase, epoch and the last validation Dice."""
        p = self.progress
        text = f"job {self.id}: {self.status}"
        if p.get("phase") and p["phase"] != self.status:
            text += f" — {p['phase']}"
        if p.get("epochs"):
            text += f"; epoch {p.get('epoch', 0)}/{p['epochs']}"
        if p.get("val_dice") is not None:
            text += f", validation Dice {p['val_dice']:.3f}"
        if self.error:
            text += f"; {self.error}"
        if self.model_version:
            text += f"; model {self.model_version}"
        return text


def _state(row: sa.RowMapping) -> JobState:
    status = row["status"]
    if status in (QUEUED, RUNNING, CANCELLING) and row["worker"] and process_gone(row["worker"]):
        status = INTERRUPTED
    return JobState(int(row["id"]), status, row["created_utc"], row["created_by"], json.loads(row["params_json"]),
                    Path(row["out_dir"]), row["worker"], json.loads(row["progress_json"] or "{}"),
                    row["updated_utc"], row["finished_utc"], row["error"], row["model_version"])


def get_job(store, job_id: int) -> JobState | None:
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(training_jobs).where(training_jobs.c.id == job_id)).mappings().first()
    return None if row is None else _state(row)


def list_jobs(store, limit: int = 20) -> list[JobState]:
    """Newest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(training_jobs).order_by(training_jobs.c.id.desc()).limit(limit)).mappings()
        return [_state(r) for r in rows]


def _update(store, job_id: int, **values) -> None:
    values["updated_utc"] = _now()
    with store.writer() as conn:
        conn.execute(training_jobs.update().where(training_jobs.c.id == job_id).values(**values))


def create_job(store, params, settings: Settings, user: str) -> int:
    """A ``queued`` job row with its run folder ``<models_dir>/runs/job_<id>``; audited ``training:create``."""
    from mre_core.model.site import SiteTrainParams

    if not isinstance(params, SiteTrainParams):
        raise TypeError("params must be a SiteTrainParams")
    running = [j for j in list_jobs(store) if j.status in ACTIVE_STATES]
    if running:
        raise RuntimeError(f"job {running[0].id} is {running[0].status}: one training job at a time "
                           "(cancel it or wait for it to finish)")
    now = _now()
    with store.writer() as conn:
        job_id = int(conn.execute(training_jobs.insert().values(
            created_utc=now, created_by=user, status=QUEUED, params_json=json.dumps(params.to_json()),
            out_dir="", progress_json=json.dumps({"phase": "waiting for the training process"}),
            updated_utc=now, error="", model_version="")).inserted_primary_key[0])
        out_dir = Path(settings.models_dir) / "runs" / f"job_{job_id}"
        conn.execute(training_jobs.update().where(training_jobs.c.id == job_id).values(out_dir=str(out_dir)))
    store.log_event("training:create", f"job {job_id}: {json.dumps(params.to_json())}", user)
    return job_id


def job_environment(settings: Settings) -> dict[str, str]:
    """The environment of the training process: the same store, inbox, models folder, model and device."""
    env = dict(os.environ)
    env.update({"MRE_DB_URL": settings.db_url, "MRE_INBOX_DIR": str(settings.inbox_dir),
                "MRE_MODELS_DIR": str(settings.models_dir), "MRE_DEVICE": settings.device,
                "MRE_WEIGHTS_DIR": str(settings.weights_dir), "MRE_MODEL_NAME": settings.model_name,
                "MRE_PROFILE": settings.profile})
    from mre_core.analysis.staging import TABLES

    if settings.staging.name in TABLES:
        env["MRE_STAGING"] = settings.staging.name
    return env


def launch(store, job_id: int, settings: Settings, resume: bool = False) -> subprocess.Popen:
    """Start the training process of a job, detached (new session), output appended to ``job.log``."""
    job = get_job(store, job_id)
    if job is None:
        raise ValueError(f"no training job {job_id}")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mre_core", "train", "--from-store", "--job", str(job_id)]
    if resume:
        cmd.append("--resume")
    with open(job.log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=job_environment(settings), cwd=str(Path(__file__).resolve().parents[2]),
                                start_new_session=True)
    _update(store, job_id, worker=f"{socket.gethostname()}:{proc.pid}")  # so a process that dies early shows
    return proc


def start_job(store, params, settings: Settings, user: str) -> int:
    """Create a job and launch its process; returns the job id."""
    job_id = create_job(store, params, settings, user)
    launch(store, job_id, settings)
    return job_id


def request_cancel(store, job_id: int, user: str) -> bool:
    """Ask a queued or running job to stop (the trainer stops at its next micro-batch); audited."""
    with store.writer() as conn:
        n = conn.execute(training_jobs.update().where((training_jobs.c.id == job_id)
                                                       & training_jobs.c.status.in_((QUEUED, RUNNING)))
                         .values(status=CANCELLING, updated_utc=_now())).rowcount
    if n:
        store.log_event("training:cancel", f"job {job_id}", user)
    return bool(n)


def resume_job(store, job_id: int, settings: Settings, user: str) -> subprocess.Popen:
    """Continue a cancelled, failed or interrupted job from its checkpoint (same split, same settings)."""
    job = get_job(store, job_id)
    if job is None:
        raise ValueError(f"no training job {job_id}")
    if not job.resumable:
        why = ("it has no checkpoint yet (start a new job)" if job.status in RESUMABLE else
               f"only a {', '.join(RESUMABLE)} job with a checkpoint can be resumed")
        raise ValueError(f"job {job_id} is {job.status}; {why}")
    _update(store, job_id, status=QUEUED, error="", worker="")
    store.log_event("training:resume", f"job {job_id}", user)
    return launch(store, job_id, settings, resume=True)


class _Reporter:
    """Progress into the job row (throttled) and the cancel flag out of it (throttled)."""

    def __init__(self, store, job_id: int, progress: dict) -> None:
        self.store, self.job_id, self.progress = store, job_id, progress
        self._last_write = 0.0
        self._last_check = 0.0
        self._stop = False

    def write(self, force: bool = False, **changes) -> None:
        self.progress.update(changes)
        now = time.monotonic()
        if force or now - self._last_write >= PROGRESS_EVERY_S:
            _update(self.store, self.job_id, progress_json=json.dumps(self.progress, default=float))
            self._last_write = now

    def phase(self, text: str) -> None:
        self.write(force=True, phase=text)

    def epoch(self, row: dict) -> None:
        log = [*self.progress.get("log", []), {k: float(v) for k, v in row.items()}]
        self.write(force=True, epoch=int(row["epoch"]), val_dice=float(row["val_dice"]),
                   train_loss=float(row["train_loss"]), log=log)

    def step(self, epoch: int, done: int, total: int, loss: float) -> None:
        self.write(epoch_running=epoch, slices_done=done, slices_total=total, running_loss=float(loss))

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_check >= PROGRESS_EVERY_S:
            self._last_check = now
            job = get_job(self.store, self.job_id)
            self._stop = job is None or job.status == CANCELLING
        return self._stop


def run_job(store, inbox, job_id: int, settings: Settings, resume: bool = False,
            echo: Callable[[str], None] = print) -> int:
    """Run a job in this process (what the launched process does); 0 finished, 1 failed or cancelled."""
    from mre_core.model.site import SiteDataError, SiteTrainParams
    from mre_core.workflow.site_training import train_from_store
    from mre_core.model.train import TrainingStopped

    job = get_job(store, job_id)
    if job is None:
        echo(f"error: no training job {job_id}")
        return 1
    if job.status == CANCELLING:
        _update(store, job_id, status=CANCELLED, finished_utc=_now())
        echo(f"job {job_id} was cancelled before it started")
        return 1
    params = SiteTrainParams.from_json(job.params)
    progress = dict(job.progress) if resume else {}
    progress.update({"epochs": params.epochs, "started_utc": progress.get("started_utc", _now())})
    _update(store, job_id, status=RUNNING, worker=_me(), error="", progress_json=json.dumps(progress))
    rep = _Reporter(store, job_id, progress)
    try:
        run = train_from_store(store, inbox, settings, params, job.out_dir, user=job.created_by, job_id=job_id,
                               on_epoch=rep.epoch, on_step=rep.step, on_phase=rep.phase,
                               should_stop=rep.should_stop, resume=resume)
    except TrainingStopped as exc:
        rep.write(force=True, phase=f"cancelled ({exc}); the checkpoint keeps epoch {progress.get('epoch', 0)}")
        _update(store, job_id, status=CANCELLED, finished_utc=_now())
        echo(f"job {job_id} cancelled")
        return 1
    except (SiteDataError, ValueError, RuntimeError, OSError) as exc:  # said in words; no traceback
        _update(store, job_id, status=FAILED, error=str(exc), finished_utc=_now())
        echo(f"job {job_id} failed: {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - the job row must say it failed, whatever went wrong
        traceback.print_exc()
        _update(store, job_id, status=FAILED, error=f"{type(exc).__name__}: {exc}", finished_utc=_now())
        echo(f"job {job_id} failed: {type(exc).__name__}: {exc}")
        return 1
    cand = run.heldout.get("candidate", {})
    base = run.heldout.get("baseline", {})
    rep.write(force=True, phase="finished", left_out=[{"study_uid": u, "reason": r} for u, r in run.problems])
    _update(store, job_id, status=FINISHED, model_version=run.model_version, finished_utc=_now())
    store.log_event("training:finish", f"job {job_id}: {run.model_version}; held-out Dice "
                    f"{_fmt(cand.get('dice'))} vs {_fmt(base.get('dice'))} ({base.get('version', '?')})",
                    job.created_by)
    echo(f"job {job_id} finished: model {run.model_version}; held-out Dice {_fmt(cand.get('dice'))} "
         f"(active model {base.get('version', '?')}: {_fmt(base.get('dice'))})")
    return 0


def _fmt(v: dict | None) -> str:
    if not v or v.get("value") is None:
        return "n/a"
    lo, hi = v.get("ci_low"), v.get("ci_high")
    ci = f" (95% CI {lo:.3f}–{hi:.3f})" if lo is not None and hi is not None else ""
    return f"{v['value']:.3f}{ci}"


__all__ = ["ACTIVE_STATES", "CANCELLED", "CANCELLING", "FAILED", "FINISHED", "INTERRUPTED", "JobState", "QUEUED",
           "RESUMABLE", "RUNNING", "create_job", "get_job", "launch", "list_jobs", "process_gone", "request_cancel",
           "resume_job", "run_job", "start_job"]
