"""Automatic analysis of studies that arrive in the inbox.

:func:`process_study` is one study's work: read its files (the reader picks the elastogram series
and says why every other file is left out), then bring each elastogram series through the durable
steps of :mod:`mre_core.workflow.steps` — result saved as revision kind ``auto`` ("awaiting review"),
DICOM SEG, SR and PDF written to the outbox, SEG and SR queued for the destination AE — doing only what
is missing, so a study interrupted at any point is finished by the next pass.

:class:`Worker` runs :func:`process_study` for every study that has been quiet for
``IntakeConfig.quiet_s`` seconds, in its own thread (never the network thread), after claiming it
(several workers may share a store: :meth:`mre_core.store.inbox.Inbox.claim`). One study's
failure is recorded with its reason and never stops the worker. :mod:`mre_core.workflow.forwarder` sends
the queued objects back (``IntakeConfig.retry_delays_s``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from mre_core.analysis.pipeline import StudyResult
from mre_core.config import Settings
from mre_core.model.network import LoadedModel
from mre_core.store.inbox import DEFAULT_LEASE_S, DONE, FAILED, NOT_ANALYSED, Inbox, worker_id
from mre_core.workflow.batch import commonest_reasons
from mre_core.workflow.loop import ActiveModel, BackgroundLoop
from mre_core.workflow.steps import advance_series

log = logging.getLogger(__name__)

#: ``Store.latest_table``'s dataset name for studies that came in through the listener or a watch folder.
PACS_DATASET = "pacs"


@dataclass(frozen=True)
class Destination:
    """A DICOM destination ``HOST:PORT:AET`` (the C-STORE SCP that receives SEG and SR)."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``"pacs.example:104:PACS"`` → Destination; ``ValueError`` with the expected form otherwise."""
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[2]:
            raise ValueError(f"destination {text!r}: expected HOST:PORT:AET, e.g. 127.0.0.1:11113:PACS")
        try:
            port = int(parts[1])
        except ValueError:
            raise ValueError(f"destination {text!r}: port {parts[1]!r} is not a number") from None
        if not 0 < port < 65536 or len(parts[2]) > 16:
            raise ValueError(f"destination {text!r}: port must be 1-65535 and the AE title at most 16 characters")
        return cls(parts[0], port, parts[2])

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.ae_title}"


@dataclass(frozen=True)
class IntakeConfig:
    """How the listener / watch folder behave (seconds unless named otherwise)."""

    quiet_s: float = 10.0  #: a study is complete when nothing arrived for this long
    poll_s: float = 0.5  #: how often the worker looks for ready studies
    forward_to: Destination | None = None
    retry_delays_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0)  #: waits between send attempts
    write_pdf: bool = True
    ae_title: str = "MRE_REVIEW"  #: our AE title (calling AE when forwarding)
    outbox: Path | None = None  #: where SEG/SR/PDF are written (default: ``<inbox>/../outbox``)
    lease_s: float = DEFAULT_LEASE_S  #: a claim not renewed for this long is taken over by another worker


@dataclass
class StudyOutcome:
    """What processing one inbox study gave."""

    status: str
    detail: str
    results: list[StudyResult] = field(default_factory=list)  #: results analysed in this pass
    written: dict[str, Path] = field(default_factory=dict)  #: "<SEG|SR|PDF>:<series UID>" → file
    series_uids: list[str] = field(default_factory=list)  #: every elastogram series brought up to date


def _reasons(skipped: list) -> str:
    return "; ".join(f"{n} × {r}" for r, n in commonest_reasons(skipped, 4))


def outbox_dir(inbox: Inbox, config: IntakeConfig) -> Path:
    return Path(config.outbox) if config.outbox else inbox.root.parent / "outbox"


def process_study(inbox: Inbox, study_uid: str, settings: Settings, model: LoadedModel,
                  config: IntakeConfig, on_step=None) -> StudyOutcome:
    """Bring one inbox study through every missing step (:func:`mre_core.workflow.steps.advance_series`):
    result saved (kind ``auto``), SEG/SR/PDF written, SEG and SR queued for the destination.

    ``on_step`` is called between series (the worker renews its claim there)."""
    from mre_core.io.reader import read_inputs

    files = inbox.files(study_uid)
    read = read_inputs(files, settings)
    if not read.studies:
        return StudyOutcome(NOT_ANALYSED, f"no MRE elastogram series among {len(files)} instance(s): "
                            + _reasons(list(read.skipped)))
    outcome = StudyOutcome(DONE, "")
    details = []
    destination = str(config.forward_to) if config.forward_to is not None else None
    for study in read.studies:
        progress = advance_series(inbox, study, settings, model, outbox_dir(inbox, config), destination,
                                  config.write_pdf, PACS_DATASET)
        if progress.result is not None and progress.analysed:
            outcome.results.append(progress.result)
        outcome.series_uids.append(study.series.series_uid)
        outcome.written.update({f"{k}:{study.series.series_uid}": v for k, v in progress.written.items()})
        details.append(progress.describe())
        if on_step is not None:
            on_step()
    outcome.detail = "; ".join(details)
    return outcome


class Worker(BackgroundLoop):
    """Analyses every study that has been quiet for ``config.quiet_s`` with the registry's active model
    (:class:`~mre_core.workflow.loop.ActiveModel`: re-checked before each study, reloaded only when it changed)."""

    def __init__(self, inbox: Inbox, settings: Settings, config: IntakeConfig,
                 model: LoadedModel | None = None) -> None:
        super().__init__("mre-worker", config.poll_s)
        self.inbox, self.settings, self.config = inbox, settings, config
        self.active = ActiveModel(settings, model)
        self.worker = worker_id()

    @property
    def model(self) -> LoadedModel:
        return self.active.current(self.inbox.store)[0]

    def step(self) -> None:
        for study_uid in self.inbox.ready(self.config.quiet_s):
            if self._stop_event.is_set():
                return
            if self.inbox.claim(study_uid, self.config.quiet_s, worker=self.worker, lease_s=self.config.lease_s):
                self.process(study_uid)

    def process(self, study_uid: str) -> None:
        t = time.perf_counter()
        try:
            model, settings = self.active.current(self.inbox.store)
            outcome = process_study(self.inbox, study_uid, settings, model, self.config,
                                    on_step=lambda: self.inbox.renew(study_uid, self.config.lease_s, self.worker))
        except Exception as exc:  # one study's failure is recorded; the worker goes on
            log.exception("study %s: analysis failed", study_uid)
            self.inbox.finish(study_uid, FAILED, f"{type(exc).__name__}: {exc}", worker=self.worker)
            return
        series = outcome.series_uids[0] if outcome.series_uids else ""
        self.inbox.finish(study_uid, outcome.status, outcome.detail, series, worker=self.worker)
        log.info("study %s: %s — %s (%.2f s)", study_uid, outcome.status, outcome.detail,
                 time.perf_counter() - t)


__all__ = ["Destination", "IntakeConfig", "PACS_DATASET", "StudyOutcome", "Worker", "outbox_dir",
           "process_study"]
