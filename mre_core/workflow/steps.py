"""One inbox study's path as durable, resumable steps: analysed → outputs written → forwarded.

For every elastogram series of a study (issue "Nothing lost between scanner, PACS and store"):

1. **analysed** — the result is saved as revision kind ``auto``. Done when the latest revision of the series
   holds exactly the series' slices (then nothing is analysed again).
2. **outputs written** — the DICOM SEG, the SR (which references that SEG) and the PDF of *that revision*,
   each written to a temporary file, renamed into place and then noted in the store's ``outputs`` table
   with its SHA-256. Done per object when the note exists and the file on disk still has that checksum.
   When outputs are missing and the analysis was not run in this pass, the result is rebuilt from the
   saved revision (:func:`result_from_revision`: its ROIs, its exclusions, its model), so a resumed SEG,
   SR or PDF shows the numbers of the stored revision, not of a new run.
3. **forwarded** — SEG and SR queued once per destination (:meth:`Inbox.queue_forward` is idempotent);
   the :class:`~mre_core.workflow.forwarder.Forwarder` sends them.

Every step checks what exists before doing anything, so the same function resumes a study after a crash at
any point, and is what "Analyse again" runs. A crash between a C-STORE response and the note "sent" sends
that object again after the restart: at-least-once at that single point, harmless because the receiver
keeps one copy per SOP Instance UID.

``MRE_FAULT_KILL_AT`` (crash tests only): the name of a step boundary (:data:`BOUNDARIES`) at which this
process kills itself with SIGKILL, as a power cut would.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path


from mre_core.analysis.pipeline import (MODEL_INPUT_FLAGS, StudyResult, analyze_study, finish_study, measure_slice,
                                       with_input_check, with_marking_flag, with_study_flags)
from mre_core.analysis.stiffness import QcFlag
from mre_core.config import Settings
from mre_core.io.elastogram import StudyInput
from mre_core.model.network import LoadedModel
from mre_core.model.network import sha256_file as sha256_of
from mre_core.store.inbox import Inbox
from mre_core.store.results import SavedRevision

log = logging.getLogger(__name__)

#: Step boundaries at which ``MRE_FAULT_KILL_AT`` kills the process (in the order they are passed).
BOUNDARIES = ("saved", "seg_written", "sr_written", "pdf_written", "queued", "forwarded")
#: The ``auto`` revision's comment.
AUTO_COMMENT = "automatic result from the DICOM inbox, awaiting review"


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when ``MRE_FAULT_KILL_AT`` names this boundary (crash tests)."""
    if os.environ.get("MRE_FAULT_KILL_AT") == name:
        log.warning("MRE_FAULT_KILL_AT=%s: killing this process (crash test)", name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class SeriesProgress:
    """What one pass over one elastogram series did."""

    revision: int
    analysed: bool  #: False when an earlier pass had saved the revision
    written: dict[str, Path] = field(default_factory=dict)  #: every output of the revision (new or earlier)
    rewritten: tuple[str, ...] = ()  #: the outputs this pass wrote
    queued: tuple[str, ...] = ()  #: the objects this pass queued for forwarding
    result: StudyResult | None = None

    def describe(self) -> str:
        """One line for the worklist and the log."""
        if self.analysed and self.result is not None:
            stage = self.result.stage.stage.label if self.result.stage else "no stage"
            parts = [f"{self.result.stiffness_kpa:.2f} kPa, {stage} (revision {self.revision})"]
        else:
            parts = [f"elastogram series unchanged since revision {self.revision}; not analysed again"]
            if self.rewritten:
                parts.append("missing outputs rebuilt from that revision: " + ", ".join(self.rewritten))
        if self.queued:
            parts.append("queued " + ", ".join(self.queued))
        if not self.analysed and not self.rewritten and not self.queued:
            parts.append("result and outputs complete")
        return "; ".join(parts)


def _atomic_write(path: Path, write) -> Path:
    """``write(tmp)`` then rename to ``path``: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # the suffix names the format
    write(tmp)
    os.replace(tmp, path)
    return path


def _present(note: dict | None) -> bool:
    """A noted output whose file is still there with its checksum."""
    if note is None:
        return False
    path = Path(note["path"])
    return path.is_file() and sha256_of(path) == note["sha256"]


def _stored_flags(text: object) -> tuple[QcFlag, ...]:
    """The QC flags of a store column (``;``-joined values; unknown values are skipped)."""
    return tuple(QcFlag(v) for v in str(text or "").split(";") if v in QcFlag._value2member_map_)


def result_from_revision(study: StudyInput, saved: SavedRevision, settings: Settings,
                         model: LoadedModel | None = None) -> StudyResult:
    """The :class:`StudyResult` of a saved revision, rebuilt on the study's images: its ROIs and exclusions,
    slice flags and model identity, measured again on the original pixel values (so the numbers agree).

    The revision's flags on what the model was given (:data:`~mre_core.analysis.pipeline.MODEL_INPUT_FLAGS`:
    no magnitude image, input unlike the training data) are kept; when ``model`` is the revision's own model
    (same SHA-256) the input check's notes (which descriptor, which range) are made again from its card."""
    table = saved.slices.set_index("sop_uid") if not saved.slices.empty else None
    slices = []
    for e in study.series.slices:
        roi = saved.rois.get(e.sop_uid)
        if roi is None or roi.shape != e.shape or table is None:
            raise ValueError(f"revision {saved.revision} has no ROI for slice {e.sop_uid}: cannot rebuild it")
        row = table.loc[e.sop_uid]
        measured = measure_slice(e, roi.astype(bool), roi.astype(bool), settings, excluded=bool(row["excluded"]))
        stored = _stored_flags(row["qc_flags"])
        slices.append(replace(measured, qc_flags=tuple(dict.fromkeys((*measured.qc_flags, *stored)))))
    result = with_marking_flag(finish_study(study, slices, settings, saved.model_name, saved.model_sha256,
                                            "rebuilt from store", {}))
    stored_study = _stored_flags(saved.qc_flags)
    result = with_study_flags(result, [f for f in stored_study if f in MODEL_INPUT_FLAGS])
    if model is not None and model.sha256 == saved.model_sha256 and QcFlag.INPUT_UNLIKE_TRAINING in stored_study:
        result = with_input_check(result, model)
    return result


def advance_series(inbox: Inbox, study: StudyInput, settings: Settings, model: LoadedModel,
                   outbox: Path, destination: str | None, write_pdf: bool = True,
                   dataset: str = "pacs") -> SeriesProgress:
    """Bring one elastogram series through every missing step; returns what was done (see the module text)."""
    sops = frozenset(e.sop_uid for e in study.series.slices)
    last, _kind, last_sops = inbox.store.latest_slices(study.study_uid, study.series.series_uid)
    result: StudyResult | None = None
    if last is not None and last_sops == sops:
        progress = SeriesProgress(last, analysed=False)
    else:
        result = analyze_study(study, model, settings)
        number = inbox.store.save(result, kind="auto", comment=AUTO_COMMENT, dataset=dataset)
        progress = SeriesProgress(number, analysed=True, result=result)
        fault_point("saved")
    series = study.series.series_uid
    notes = inbox.outputs(study.study_uid, series, progress.revision)
    wanted = ("SEG", "SR", "PDF") if write_pdf else ("SEG", "SR")
    missing = [w for w in wanted if not _present(notes.get(w))]
    if "SEG" in missing and "SR" not in missing:
        missing.append("SR")  # the SR names the SEG it measures: a new SEG needs a new SR
    if missing:
        if result is None:
            saved = inbox.store.load_revision(study.study_uid, series, progress.revision)
            if saved is None:
                raise ValueError(f"revision {progress.revision} of series {series} vanished from the store")
            result = result_from_revision(study, saved, settings, model)
            progress.result = result
        notes.update(_write_outputs(inbox, result, progress.revision, missing, notes, outbox))
        progress.rewritten = tuple(w for w in wanted if w in missing)
    progress.written = {w: Path(notes[w]["path"]) for w in wanted if w in notes}
    if destination:
        queued = [w for w in ("SEG", "SR") if inbox.queue_forward(
            study.study_uid, w, Path(notes[w]["path"]), destination, sop_uid=notes[w]["sop_uid"], series_uid=series)]
        progress.queued = tuple(queued)
        if queued:
            fault_point("queued")
    return progress


def _write_outputs(inbox: Inbox, result: StudyResult, revision: int, missing: list[str], notes: dict[str, dict],
                   outbox: Path) -> dict[str, dict]:
    """Write the missing objects of one revision in dependency order (SEG before the SR that references it)."""
    import pydicom

    from mre_core.outputs.pdf import write_pdf
    from mre_core.outputs.seg import build_seg
    from mre_core.outputs.sr import build_sr

    folder = outbox / inbox.study_dir(result.study_uid).name
    stem = f"{result.series_uid}_r{revision}"
    new: dict[str, dict] = {}

    def note(what: str, path: Path, sop_uid: str = "") -> None:
        digest = sha256_of(path)
        inbox.record_output(result.study_uid, result.series_uid, revision, what, path, digest, sop_uid)
        new[what] = {"path": str(path), "sha256": digest, "sop_uid": sop_uid}

    if "SEG" in missing:
        seg = build_seg(result)
        path = _atomic_write(folder / f"seg_{stem}.dcm", lambda p: seg.save_as(p, enforce_file_format=True))
        note("SEG", path, str(seg.SOPInstanceUID))
        fault_point("seg_written")
    else:
        seg = pydicom.dcmread(notes["SEG"]["path"])
    if "SR" in missing:
        sr = build_sr(result, seg)
        path = _atomic_write(folder / f"sr_{stem}.dcm", lambda p: sr.save_as(p, enforce_file_format=True))
        note("SR", path, str(sr.SOPInstanceUID))
        fault_point("sr_written")
    if "PDF" in missing:
        path = _atomic_write(folder / f"report_{stem}.pdf", lambda p: write_pdf(result, p))
        note("PDF", path)
        fault_point("pdf_written")
    return new


__all__ = ["AUTO_COMMENT", "BOUNDARIES", "SeriesProgress", "advance_series", "fault_point", "result_from_revision",
           "sha256_of"]
