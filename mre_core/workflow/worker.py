"""Automatic analysis of studies that arrive in the inbox.

:func:`process_study` is one study's work: read its files (``dicom_io``, which picks the
elastogram series and says why every other file is left out), analyse (``pipeline``), save
the result as revision kind ``auto`` ("awaiting review") in the results store, write the DICOM
SEG and SR (and optionally the PDF) next to the inbox, and queue them for the destination AE.

:class:`Worker` runs :func:`process_study` for every study that has been quiet for
``IntakeConfig.quiet_s`` seconds, in its own thread (never the network thread). One study's
failure is recorded with its reason and never stops the worker. :mod:`mre_core.workflow.forwarder` sends
the queued objects back (``IntakeConfig.retry_delays_s``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from mre_core.analysis.pipeline import StudyResult, analyze_study
from mre_core.config import Settings
from mre_core.model.network import LoadedModel, load_model
from mre_core.store.inbox import DONE, FAILED, NOT_ANALYSED, Inbox
from mre_core.workflow.batch import commonest_reasons
from mre_core.workflow.loop import BackgroundLoop

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


@dataclass
class StudyOutcome:
    """What processing one inbox study gave."""

    status: str
    detail: str
    results: list[StudyResult] = field(default_factory=list)
    written: dict[str, Path] = field(default_factory=dict)


def _reasons(skipped: list) -> str:
    return "; ".join(f"{n} × {r}" for r, n in commonest_reasons(skipped, 4))


def outbox_dir(inbox: Inbox, config: IntakeConfig) -> Path:
    return Path(config.outbox) if config.outbox else inbox.root.parent / "outbox"


def process_study(inbox: Inbox, study_uid: str, settings: Settings, model: LoadedModel,
                  config: IntakeConfig) -> StudyOutcome:
    """Analyse one inbox study, save it (kind ``auto``), write SEG/SR/PDF and queue forwarding."""
    from mre_core.io.reader import read_inputs

    files = inbox.files(study_uid)
    read = read_inputs(files, settings)
    if not read.studies:
        return StudyOutcome(NOT_ANALYSED, f"no MRE elastogram series among {len(files)} instance(s): "
                            + _reasons(list(read.skipped)))
    outcome = StudyOutcome(DONE, "")
    details = []
    for study in read.studies:
        sops = frozenset(e.sop_uid for e in study.series.slices)
        last, kind, last_sops = inbox.store.latest_slices(study.study_uid, study.series.series_uid)
        if last is not None and last_sops == sops:  # e.g. another series of the exam arrived later
            details.append(f"elastogram series unchanged since revision {last} ({kind}); not analysed again")
            continue
        result = analyze_study(study, model, settings)
        number = inbox.store.save(result, kind="auto", comment="automatic result from the DICOM inbox, awaiting review",
                                  dataset=PACS_DATASET)
        outcome.results.append(result)
        stage = result.stage.stage.label if result.stage else "no stage"
        details.append(f"{result.stiffness_kpa:.2f} kPa, {stage} (revision {number})")
        outcome.written.update(_write_objects(inbox, result, config))
    outcome.detail = "; ".join(details)
    return outcome


def _write_objects(inbox: Inbox, result: StudyResult, config: IntakeConfig) -> dict[str, Path]:
    """SEG + SR (+ PDF) into the outbox; SEG and SR are queued for the destination, if any."""
    from mre_core.outputs.seg import build_seg
    from mre_core.outputs.sr import build_sr

    folder = outbox_dir(inbox, config) / inbox.study_dir(result.study_uid).name
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    seg = build_seg(result)
    written["SEG"] = folder / f"seg_{result.series_uid}.dcm"
    seg.save_as(written["SEG"], enforce_file_format=True)
    written["SR"] = folder / f"sr_{result.series_uid}.dcm"
    build_sr(result, seg).save_as(written["SR"], enforce_file_format=True)
    if config.write_pdf:
        from mre_core.outputs.pdf import write_pdf

        written["PDF"] = write_pdf(result, folder / f"report_{result.series_uid}.pdf")
    if config.forward_to is not None:
        for what in ("SEG", "SR"):
            inbox.queue_forward(result.study_uid, what, written[what], str(config.forward_to))
    return written


class Worker(BackgroundLoop):
    """Analyses every study that has been quiet for ``config.quiet_s`` (the model is loaded once)."""

    def __init__(self, inbox: Inbox, settings: Settings, config: IntakeConfig,
                 model: LoadedModel | None = None) -> None:
        super().__init__("mre-worker", config.poll_s)
        self.inbox, self.settings, self.config = inbox, settings, config
        self._model = model

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            self._model = load_model(self.settings.weights_dir, self.settings.model_name, self.settings.device)
        return self._model

    def step(self) -> None:
        for study_uid in self.inbox.ready(self.config.quiet_s):
            if self._stop_event.is_set():
                return
            if self.inbox.claim(study_uid, self.config.quiet_s):
                self.process(study_uid)

    def process(self, study_uid: str) -> None:
        t = time.perf_counter()
        try:
            outcome = process_study(self.inbox, study_uid, self.settings, self.model, self.config)
        except Exception as exc:  # one study's failure is recorded; the worker goes on
            log.exception("study %s: analysis failed", study_uid)
            self.inbox.finish(study_uid, FAILED, f"{type(exc).__name__}: {exc}")
            return
        series = outcome.results[0].series_uid if outcome.results else ""
        self.inbox.finish(study_uid, outcome.status, outcome.detail, series)
        log.info("study %s: %s — %s (%.2f s)", study_uid, outcome.status, outcome.detail,
                    time.perf_counter() - t)


__all__ = ["Destination", "IntakeConfig", "PACS_DATASET", "StudyOutcome", "Worker", "outbox_dir",
           "process_study"]
