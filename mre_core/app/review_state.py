"""A reader's edits to an analysed study, as pure functions: result + edits → new result.

The model's result is never changed in place. :func:`analyze_for_review` runs the
pipeline once and keeps each slice's probability map next to the
:class:`~mre_core.analysis.pipeline.StudyResult` (a :class:`ReviewableStudy`), so that changing the
threshold later needs no second forward pass. :func:`apply_edits` then rebuilds the study
from the edits:

* exclude / include a slice (left out of the study value, still shown);
* a per-slice threshold on the stored probability (ROI = prob > t ∩ confidence, specks removed);
* erode (negative) or dilate (positive) the ROI by whole pixels, staying inside the confidence region;
* a restored ROI (from a saved revision) used as is — as long as the slice's threshold and erode/dilate are
  those it was saved with (:attr:`ReviewEdits.restored`); changing either rebuilds the ROI from the
  probability map with the new values and applies the outlines saved with it again;
* a drawn ROI (:mod:`.roi_drawing`): the reader's outlines add to, erase from or replace the ROI
  above, at native pixels, kept inside the confidence region and measured on the original kPa
  values; it is the reader's ROI, so the automatic ROI guardrails no longer leave the slice out;
* the study-level manual measurement (kPa), the reviewer's name and a comment, which travel
  with the edits into the store (they do not change the automatic value).

Edits serialise to JSON (:meth:`ReviewEdits.to_json`) and are saved with each revision.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mre_core.analysis.pipeline import (
    StudyResult,
    analyze_study_keeping_probabilities,
    finish_study,
    measure_slice,
    slice_result,
    with_marking_flag,
    with_model_input_flags,
)
from mre_core.analysis.guardrails import UNRELIABLE
from mre_core.analysis.segment import adjust_roi
from mre_core.analysis.stiffness import QcFlag, SliceResult
from mre_core.app.roi_drawing import Shape, drawing_kind, drawn_roi
from mre_core.config import Settings
from mre_core.io.elastogram import StudyInput
from mre_core.model.network import LoadedModel

MAX_GROW_PX = 10


@dataclass(frozen=True)
class SliceEdit:
    """What the reader changed on one slice (defaults: nothing)."""

    excluded: bool = False
    grow_px: int = 0  #: < 0 erodes, > 0 dilates, in pixels
    threshold: float | None = None  #: None: the threshold of the automatic result

    @property
    def is_default(self) -> bool:
        return not self.excluded and self.grow_px == 0 and self.threshold is None


@dataclass(frozen=True, eq=False)
class ReviewEdits:
    """Every edit to one study. Immutable: the ``with_*`` methods return a changed copy."""

    slices: dict[str, SliceEdit] = field(default_factory=dict)  #: by SOP Instance UID
    manual_kpa: float | None = None
    comment: str = ""
    reviewer: str = ""
    roi_override: dict[str, np.ndarray] = field(default_factory=dict)  #: bool [H,W] by SOP UID (restored ROIs)
    drawings: dict[str, tuple[Shape, ...]] = field(default_factory=dict)  #: the reader's outlines by SOP UID
    #: restored ROIs that were drawn by hand: ``{"kind": "edited"|"replaced", "by": name, "shapes": [...]}`` by SOP UID
    drawn_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the slice edits a restored revision was saved with (its ROIs in ``roi_override`` already include them)
    restored: dict[str, SliceEdit] = field(default_factory=dict)

    def slice(self, sop_uid: str) -> SliceEdit:
        return self.slices.get(sop_uid, SliceEdit())

    def drawing(self, sop_uid: str) -> tuple[Shape, ...]:
        """The outlines drawn on one slice this session (native pixel coordinates, in drawing order)."""
        return self.drawings.get(sop_uid, ())

    def with_drawing(self, sop_uid: str, shapes: Any) -> ReviewEdits:
        """The edits with slice ``sop_uid``'s drawing replaced by ``shapes`` (none: the slice is not drawn on)."""
        new = {k: v for k, v in self.drawings.items() if k != sop_uid}
        if shapes:
            new[sop_uid] = tuple(shapes)
        return replace(self, drawings=new)

    def manual_rois(self) -> dict[str, dict[str, str]]:
        """Slices whose ROI the reader drew: ``{sop: {"kind": "edited" | "replaced", "by": name}}``.

        ``edited``: the automatic ROI changed by hand (add / erase); ``replaced``: the ROI is the
        reader's own outline. A drawing made now is the current reviewer's; one restored from a saved
        revision keeps the name it was saved with (and a new drawing on top of a replaced ROI leaves
        it replaced).
        """
        out = {sop: {"kind": str(d.get("kind", "edited")), "by": str(d.get("by", ""))}
               for sop, d in self.drawn_before.items()}
        for sop, shapes in self.drawings.items():
            kind = drawing_kind(shapes) or "edited"
            if out.get(sop, {}).get("kind") == "replaced":
                kind = "replaced"
            out[sop] = {"kind": kind, "by": self.reviewer}
        return out

    def _with_slice(self, sop_uid: str, **changes: Any) -> ReviewEdits:
        edited = replace(self.slice(sop_uid), **changes)
        new = {k: v for k, v in self.slices.items() if k != sop_uid}
        if not edited.is_default:
            new[sop_uid] = edited
        return replace(self, slices=new)

    def with_excluded(self, sop_uid: str, excluded: bool = True) -> ReviewEdits:
        return self._with_slice(sop_uid, excluded=bool(excluded))

    def with_grow(self, sop_uid: str, grow_px: int) -> ReviewEdits:
        if abs(int(grow_px)) > MAX_GROW_PX:
            raise ValueError(f"erode/dilate by at most {MAX_GROW_PX} px, got {grow_px}")
        return self._with_slice(sop_uid, grow_px=int(grow_px))

    def with_threshold(self, sop_uid: str, threshold: float | None) -> ReviewEdits:
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        return self._with_slice(sop_uid, threshold=None if threshold is None else float(threshold))

    def with_manual(self, manual_kpa: float | None) -> ReviewEdits:
        if manual_kpa is not None and (not math.isfinite(manual_kpa) or manual_kpa <= 0):
            raise ValueError(f"manual stiffness must be a positive number of kPa, got {manual_kpa}")
        return replace(self, manual_kpa=None if manual_kpa is None else float(manual_kpa))

    def with_comment(self, comment: str, reviewer: str | None = None) -> ReviewEdits:
        return replace(self, comment=comment.strip(), reviewer=self.reviewer if reviewer is None else reviewer.strip())

    @property
    def changes_roi(self) -> bool:
        """True when any slice's ROI or inclusion differs from the automatic result."""
        return bool(self.slices or self.roi_override or self.drawings)

    @property
    def is_reviewed(self) -> bool:
        """True when the reader changed an ROI, entered a manual value or wrote a comment."""
        return self.changes_roi or self.manual_kpa is not None or bool(self.comment)

    def describe(self, labels: Mapping[str, str] | None = None) -> list[str]:
        """The edits in words, one line each (for the page and the audit trail); ``labels`` names each slice by
        SOP UID (e.g. "slice 2 (#14)", :func:`mre_core.outputs.tables.slice_label`), else by its UID's tail."""
        name = lambda sop: (labels or {}).get(sop) or f"slice …{sop[-8:]}"  # noqa: E731
        lines = []
        for sop, e in self.slices.items():
            parts = []
            if e.excluded:
                parts.append("excluded")
            if e.grow_px:
                parts.append(f"{'dilated' if e.grow_px > 0 else 'eroded'} {abs(e.grow_px)} px")
            if e.threshold is not None:
                parts.append(f"threshold {e.threshold:.2f}")
            lines.append(f"{name(sop)}: " + ", ".join(parts))
        for sop, shapes in self.drawings.items():
            modes = ", ".join(dict.fromkeys(s.mode.value for s in shapes))
            lines.append(f"{name(sop)}: ROI drawn by hand ({len(shapes)} shape(s): {modes})")
        if self.roi_override:
            lines.append(f"{len(self.roi_override)} ROI(s) restored from a saved revision")
        if self.manual_kpa is not None:
            lines.append(f"manual measurement {self.manual_kpa:.2f} kPa")
        return lines

    def content_key(self) -> str:
        """The edits as one string: equal keys mean the same review (for "changed since it was saved")."""
        return json.dumps(self.to_json(), sort_keys=True, default=str)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (restored ROIs are saved as the slices' masks, not here)."""
        return {
            "slices": {k: {"excluded": v.excluded, "grow_px": v.grow_px, "threshold": v.threshold}
                       for k, v in self.slices.items()},
            "manual_kpa": self.manual_kpa,
            "comment": self.comment,
            "reviewer": self.reviewer,
            "roi_restored": sorted(self.roi_override),
            "roi_drawn": self._drawn_json(),
        }

    def _drawn_json(self) -> dict[str, dict[str, Any]]:
        """Per slice drawn by hand: kind, by whom, and the outlines (native pixel coordinates)."""
        out = {sop: dict(d) for sop, d in self.drawn_before.items()}
        for sop, who in self.manual_rois().items():
            if sop in self.drawings:
                earlier = out.get(sop, {}).get("shapes", [])
                out[sop] = {**who, "shapes": [*earlier, *(s.to_json() for s in self.drawings[sop])]}
        return out

    @classmethod
    def from_saved(cls, edits_json: dict[str, Any], rois: dict[str, np.ndarray] | None = None,
                   excluded: Iterable[str] = ()) -> ReviewEdits:
        """Edits that reproduce a saved revision: its slice edits (exclusions, thresholds, erode/dilate — shown
        as saved), manual value, reviewer and comment, and its ROI masks used as they were saved (so the saved
        review shows even if the model changed). ``excluded``: slices the revision left out for any reason
        (the reader's exclusions and the automatic guardrails'), so the restored value is the saved one."""
        rois = dict(rois or {})
        saved = {k: SliceEdit(excluded=bool(v.get("excluded")), grow_px=int(v.get("grow_px") or 0),
                              threshold=v.get("threshold"))
                 for k, v in (edits_json.get("slices") or {}).items()}
        for sop in set(excluded) & set(rois):
            saved[sop] = replace(saved.get(sop, SliceEdit()), excluded=True)
        slices = {k: v for k, v in saved.items() if not v.is_default}
        restored = {k: v for k, v in slices.items() if k in rois}
        drawn = {k: dict(v) for k, v in (edits_json.get("roi_drawn") or {}).items() if k in rois}
        return cls(slices=slices, manual_kpa=edits_json.get("manual_kpa"), comment=edits_json.get("comment", ""),
                   reviewer=edits_json.get("reviewer", ""), roi_override=rois, drawn_before=drawn, restored=restored)

    def saved_shapes(self, sop_uid: str) -> tuple[Shape, ...]:
        """The outlines a restored revision drew on slice ``sop_uid`` (none: not drawn by hand)."""
        return tuple(Shape.from_json(d) for d in self.drawn_before.get(sop_uid, {}).get("shapes", []))


@dataclass(frozen=True, eq=False)
class ReviewableStudy:
    """The model's result and what is needed to edit it without running the model again."""

    result: StudyResult
    probabilities: tuple[np.ndarray, ...]  #: float32 [H,W] per slice, native grid, slice order
    threshold: float  #: the threshold that produced ``result``


def analyze_for_review(study: StudyInput, model: LoadedModel, settings: Settings) -> ReviewableStudy:
    """Like :func:`~mre_core.analysis.pipeline.analyze_study`, keeping each slice's probability map."""
    result, probabilities, threshold = analyze_study_keeping_probabilities(study, model, settings)
    return ReviewableStudy(result, probabilities, threshold)


def _edited_slice(rs: ReviewableStudy, i: int, edits: ReviewEdits, settings: Settings) -> SliceResult:
    base = rs.result.slices[i]
    e = rs.result.study.series.slices[i]
    edit = edits.slice(base.sop_uid)
    drawing = edits.drawing(base.sop_uid)
    if base.sop_uid in edits.roi_override:
        saved = edits.restored.get(base.sop_uid, SliceEdit())
        if (edit.threshold, edit.grow_px) == (saved.threshold, saved.grow_px):
            # the saved ROI as it was saved (the reader's, reviewed: no automatic guardrail applies)
            roi = np.asarray(edits.roi_override[base.sop_uid], dtype=bool) & e.confidence & np.isfinite(e.kpa)
            if drawing:
                roi = drawn_roi(roi, drawing, e.confidence, e.kpa)
            return measure_slice(e, roi, base.predicted_mask, settings, excluded=edit.excluded)
        # threshold or erode/dilate changed after the restore: rebuilt below, with the saved outlines again
        drawing = (*edits.saved_shapes(base.sop_uid), *drawing)
    auto = base
    if edit.threshold is not None and edit.threshold != rs.threshold:
        auto = slice_result(e, rs.probabilities[i], edit.threshold, settings)
        if QcFlag.ROI_UNSTABLE in base.qc_flags and QcFlag.ROI_UNSTABLE not in auto.qc_flags:
            # measured at the model's threshold, but it says the model did not find this slice's liver firmly
            auto = replace(auto, qc_flags=(*auto.qc_flags, QcFlag.ROI_UNSTABLE), excluded=True)
    if drawing:  # drawn on the (re-thresholded, eroded/dilated) automatic ROI: now the reader's ROI
        roi = drawn_roi(adjust_roi(auto.roi, e.confidence, e.kpa, edit.grow_px), drawing, e.confidence, e.kpa)
        return measure_slice(e, roi, auto.predicted_mask, settings, excluded=edit.excluded)
    if not edit.grow_px and not edit.excluded:
        return auto
    roi = adjust_roi(auto.roi, e.confidence, e.kpa, edit.grow_px)
    measured = measure_slice(e, roi, auto.predicted_mask, settings, excluded=edit.excluded or auto.excluded)
    guard = tuple(f for f in auto.qc_flags if f in UNRELIABLE)  # an eroded/dilated automatic ROI keeps its warnings
    return replace(measured, qc_flags=(*measured.qc_flags, *guard))


def apply_edits(rs: ReviewableStudy, edits: ReviewEdits, settings: Settings | None = None) -> StudyResult:
    """The study after the reader's edits (a new :class:`StudyResult`; ``rs`` is unchanged).

    ``settings`` (default: those of the automatic result) may carry another staging table or
    QC limits; the unit profile cannot change here (that needs the files read again).
    """
    settings = settings or rs.result.settings
    base = rs.result
    new = [_edited_slice(rs, i, edits, settings) for i in range(len(base.slices))]
    timings = {k: v for k, v in base.timings_s.items() if k != "stiffness"}
    result = finish_study(base.study, new, settings, base.model_name, base.model_sha256, base.device, timings)
    return with_model_input_flags(with_marking_flag(result), base)


def slice_probability(rs: ReviewableStudy, sop_uid: str) -> np.ndarray:
    """The stored probability map of one slice (float32 [H,W])."""
    for s, p in zip(rs.result.slices, rs.probabilities):
        if s.sop_uid == sop_uid:
            return p
    raise KeyError(f"slice {sop_uid} is not part of study {rs.result.study_uid}")



@dataclass
class ReviewBatch:
    """What an upload produced: one reviewable study per study found, and every file left out."""

    studies: list[ReviewableStudy] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)  #: SkippedFile: file + reason
    read_s: float = 0.0
    analyse_s: float = 0.0
    from_cache: bool = False  #: analysed earlier by this server with the same files, settings and model


def analyze_sources_for_review(sources: Any, settings: Settings, model: LoadedModel,
                               progress: Any = None) -> ReviewBatch:
    """Read uploads / paths and analyse every study found, keeping probability maps for review.

    ``progress(fraction, text)`` is called while reading (0–0.5) and per study (0.5–1).
    A study whose analysis fails is reported in ``skipped`` (file + reason); the others go on.
    """
    from mre_core.io.elastogram import SkippedFile
    from mre_core.io.reader import read_inputs

    def on_read(done: int, total: int) -> None:
        if progress is not None:
            progress(0.5 * done / max(total, 1), f"Reading files {done}/{total}")

    batch = ReviewBatch()
    t = time.perf_counter()
    read = read_inputs(sources, settings, progress=on_read)
    batch.read_s = time.perf_counter() - t
    batch.skipped.extend(read.skipped)
    t = time.perf_counter()
    for i, study in enumerate(read.studies, start=1):
        if progress is not None:
            progress(0.5 + 0.5 * (i - 1) / len(read.studies), f"Segmenting study {i}/{len(read.studies)}")
        try:
            batch.studies.append(analyze_for_review(study, model, settings))
        except Exception as exc:  # noqa: BLE001 - one failing study must not hide the others; the reason is shown
            first = study.series.slices[0].source if study.series.slices else study.study_uid
            batch.skipped.append(SkippedFile(first, f"analysis failed: {type(exc).__name__}: {exc}"))
    batch.analyse_s = time.perf_counter() - t
    if progress is not None:
        progress(1.0, "Done")
    return batch


def skipped_summary(skipped: list[Any]) -> list[dict[str, Any]]:
    """One row per series (or unreadable file) left out: ``{"series", "role", "rule", "files", "reason", "examples"}``.

    A normal MRE export holds magnitude, wave and colour series that are left out on purpose; one row
    per series keeps that list readable while every file name stays available in ``examples``.
    """
    rows = []
    for s in skipped:
        names = [str(f).rsplit("/", 1)[-1] for f in (s.files or (s.file,))]
        series = f"{s.series_number or '?'} '{s.series_description}'" if s.series_uid else str(s.file)
        rows.append({"series": series, "role": s.role, "rule": s.rule, "files": s.n_files, "reason": str(s.reason),
                     "examples": ", ".join(names[:3]) + (" …" if len(names) > 3 else "")})
    return rows


__all__ = ["MAX_GROW_PX", "ReviewBatch", "ReviewEdits", "ReviewableStudy", "SliceEdit", "analyze_for_review",
           "analyze_sources_for_review", "apply_edits", "skipped_summary",
           "slice_probability"]
