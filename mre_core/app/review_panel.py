"""The Review page's review: edit controls, the study summary, save / sign-off and saved revisions.

Owns

* the saved revisions of the study: the study opened from a cohort-page link
  (:func:`show_saved_study`), the *Saved before* banner with *Restore revision …*
  (:func:`saved_revisions`, :func:`restore`);
* the edit controls: per slice exclude / erode-dilate / threshold and *Draw the ROI* (the drawing
  widgets are :func:`mre_core.app.roi_drawing.drawing_controls`; :func:`slice_edits`), and for the
  study the manual value, reviewer and comment (:func:`review_fields`), which build the
  :class:`~mre_core.app.review_state.ReviewEdits` kept in ``rv_edits``;
* the study summary at the top of the page (:func:`study_summary`);
* *Save to results store* and *Sign off* (:func:`save_buttons`), which record ``rv_saved`` and
  ``rv_signed``.

Whether a study is automatic, reviewed, saved or signed off, and what the page says about it,
is decided in :mod:`.review_status`; this module draws it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from mre_core.analysis.pipeline import StudyResult
from mre_core.app import review_status as rst
from mre_core.app import roi_drawing
from mre_core.app.context import get_store
from mre_core.app.exports import slice_label_map
from mre_core.app.review_state import MAX_GROW_PX, ReviewableStudy, ReviewEdits
from mre_core.app.review_status import ReviewStatus, fmt
from mre_core.config import Settings
from mre_core.store.results import AlreadySignedOff, StoreError

#: Prefixes of the per-study edit widgets' keys (``<prefix><study>|…``), reset on a restore.
EDIT_KEY_PREFIXES = ("ex|", "grow|", "thr|", "man|", "who|", "note|", "drawon|", "drawmode|", "drawtool|")


# ----------------------------------------------------------------------------- saved revisions
def show_saved_study(settings: Settings, study_uid: str, series_uid: str | None) -> None:
    """A saved study opened from the cohort page (numbers from the store; images need the files)."""
    try:
        store = get_store(settings)
        history = store.history(study_uid, series_uid)
    except StoreError as exc:
        st.error(f"Results store unavailable: {exc}")
        return
    if history.empty:
        st.warning(f"No saved study with Study Instance UID {study_uid} in the results store.")
        return
    series_uid = series_uid or str(history["series_uid"].iloc[-1])
    rev = st.selectbox("Saved revision", list(history["revision"]), index=len(history) - 1, key="saved_rev")
    saved = store.load_revision(study_uid, series_uid, int(rev))
    st.subheader(f"Saved study — revision {saved.revision} ({saved.kind}, {saved.created_utc})")
    c = st.columns(4)
    c[0].metric("Stiffness (mean of slice means)", fmt(saved.stiffness_kpa, "kPa"))
    c[1].metric("Stage", saved.stage or "—")
    c[2].metric("Manual measurement", fmt(saved.manual_kpa, "kPa"))
    c[3].metric("Model", saved.model_name, saved.model_sha256[:12], delta_color="off", delta_arrow="off")
    if saved.comment:
        st.markdown(f"**Comment** ({saved.reviewer or 'no name'}): {saved.comment}")
    st.dataframe(saved.slices.drop(columns=["roi_rows", "roi_cols"], errors="ignore"), hide_index=True)
    st.markdown("**Revision history**")
    st.dataframe(history, hide_index=True)
    st.caption("Upload this study's DICOM files below to see its images; the page then offers to restore this "
               "review (ROIs, exclusions, manual value, comment).")


def edit_widget_keys(keys: Iterable[Any], skey: str) -> list[str]:
    """The session-state keys of the study ``skey``'s edit widgets (to reset them on a restore)."""
    return [k for k in keys if isinstance(k, str) and k.startswith(EDIT_KEY_PREFIXES) and skey in k]


def restore(store: Any, study_uid: str, series_uid: str, skey: str, revision: int) -> None:
    """Callback of *Restore revision …*: its edits become the review's, the edit widgets start afresh."""
    state = st.session_state
    saved = store.load_revision(study_uid, series_uid, revision)
    state["rv_edits"][skey] = ReviewEdits.from_saved(saved.edits, saved.rois)
    for k in edit_widget_keys(list(state), skey):
        del state[k]
    roi_drawing.reset_study(skey)  # the restored ROIs already hold what was drawn: the canvases start empty


def saved_revisions(box: DeltaGenerator, settings: Settings, auto: StudyResult, skey: str) -> Any | None:
    """The *Saved before* banner and restore button in ``box``; returns the store (``None``: unavailable)."""
    try:
        store = get_store(settings)
        history = store.history(auto.study_uid, auto.series_uid)
    except StoreError as exc:
        box.error(f"The results store cannot be opened, so nothing can be saved: {exc}")
        return None
    if history.empty:
        return store
    with box:
        st.info(rst.saved_before_message(len(history), history.iloc[-1].to_dict()), icon=":material/history:")
        c1, c2 = st.columns([1, 3])
        rev = c1.selectbox("Revision", list(history["revision"]), index=len(history) - 1, key=f"rv_rev|{skey}",
                           label_visibility="collapsed")
        c2.button(f"Restore revision {rev} into the review", on_click=restore,
                  args=(store, auto.study_uid, auto.series_uid, skey, int(rev)), icon=":material/restore:")
    return store


# ----------------------------------------------------------------------------- edit controls
def _slice_controls(rs: ReviewableStudy, i: int, box: DeltaGenerator, edits: ReviewEdits, skey: str,
                    drawing: bool = True) -> ReviewEdits:
    """Exclude / erode-dilate / threshold widgets for slice ``i`` and, with ``drawing``, the drawing
    controls; returns the edits with their values."""
    sop = rs.result.slices[i].sop_uid
    e = edits.slice(sop)
    ex = box.checkbox("Exclude this slice", value=e.excluded, key=f"ex|{skey}|{sop}")
    grow = box.number_input("Erode (−) / dilate (+), px", -MAX_GROW_PX, MAX_GROW_PX, value=e.grow_px, step=1,
                            key=f"grow|{skey}|{sop}")
    thr = box.slider("Probability threshold", 0.05, 0.95, value=float(e.threshold or rs.threshold), step=0.05,
                     key=f"thr|{skey}|{sop}", help=f"Model default {rs.threshold:.2f}; re-thresholds the stored "
                                                   "probability map (no second model run)")
    edits = (edits.with_excluded(sop, ex).with_grow(sop, int(grow))
             .with_threshold(sop, None if abs(thr - rs.threshold) < 1e-9 else thr))
    if drawing:
        reader = str(st.session_state.get(f"who|{skey}", edits.reviewer) or "").strip()
        edits = roi_drawing.drawing_controls(box, rs.result.study.series.slices[i].shape, sop, skey, edits, reader)
    elif edits.drawing(sop):
        box.caption(f"ROI drawn by hand ({len(edits.drawing(sop))} shape(s)); show one slice at a time to "
                    "change the drawing.")
    return edits


def slice_edits(rs: ReviewableStudy, shown: list[int], ctl_boxes: Any, edits: ReviewEdits,
                skey: str, drawing: bool = True) -> ReviewEdits:
    """The edit widgets of every shown slice, each in its box; returns the edits with their values.

    ``drawing``: offer *Draw the ROI* (one slice at a time; side by side the slices are too small to draw on).
    """
    for i in shown:
        edits = _slice_controls(rs, i, ctl_boxes[i], edits, skey, drawing)
    return edits


def review_fields(edits: ReviewEdits, skey: str) -> ReviewEdits:
    """*Review and save*: manual value (kPa), reviewer and comment; returns the edits with them."""
    st.markdown("#### Review and save")
    c_man, c_who, c_note = st.columns([1, 1, 2])
    manual = c_man.number_input("Manual measurement (kPa)", min_value=0.0, max_value=30.0, value=edits.manual_kpa,
                                step=0.01, format="%.2f", key=f"man|{skey}", placeholder="optional")
    who = c_who.text_input("Reviewer", value=edits.reviewer, key=f"who|{skey}")
    note = c_note.text_area("Comment", value=edits.comment, key=f"note|{skey}", height=68)
    try:
        edits = edits.with_manual(manual if manual else None).with_comment(note, who)
    except ValueError as exc:
        st.error(str(exc))
    return edits


# ----------------------------------------------------------------------------- study summary
def _summary_metrics(auto: StudyResult, reviewed: StudyResult, edits: ReviewEdits) -> None:
    table = reviewed.settings.staging
    stage = reviewed.stage
    c = st.columns([1.2, 1.2, 1.4, 1.2, 1])
    c[0].metric("Liver stiffness", fmt(reviewed.stiffness_kpa, "kPa"),
                help="Mean of the slice means (the primary value, as in the paper)",
                delta=rst.stiffness_delta(edits.changes_roi, reviewed.stiffness_kpa, auto.stiffness_kpa),
                delta_color="off", delta_arrow="off")
    c[1].metric("Area-weighted mean", fmt(reviewed.stiffness.stiffness_kpa_area_weighted, "kPa"))
    c[2].metric("Fibrosis stage", f"Stage: {stage.stage.label}" if stage else "No stage",
                help=f"Table: {table.title}")
    c[3].metric(f"Significant fibrosis (≥ {table.significant_kpa:.1f} kPa)",
                ("Yes (≥ F2)" if stage.significant_fibrosis else "No (< F2)") if stage else "—")
    c[4].metric("Slices used", f"{reviewed.stiffness.n_slices_used} / {len(reviewed.slices)}")


def _provenance(auto: StudyResult, read_s: float, analyse_s: float) -> None:
    first = auto.study.series.slices[0]
    timing = auto.timings_s
    d1, d2, d3 = st.columns(3)
    d1.markdown(f"**Model** `{auto.model_name}` · version `{auto.model_sha256[:12]}`  \n**Device** {auto.device}")
    d2.markdown(f"**Unit profile** {first.profile.value} ({first.kpa_per_unit:g} kPa per stored unit)  \n"
                f"**Confidence marking** {first.encoding.value.replace('_', ' ')}")
    d3.markdown(f"**Time** {read_s + analyse_s:.2f} s for the upload "
                f"(read {read_s:.2f} s, model {timing.get('model', 0):.2f} s, "
                f"post {timing.get('post', 0) + timing.get('stiffness', 0):.2f} s)")
    if first.profile.value == "siemens":
        st.caption("Siemens profile: stored value = kPa × 100 (window 400/800 spans 0–8 kPa) is a working "
                   "assumption; change the unit profile in the sidebar if your scanner differs.")
    series = auto.study.series
    st.markdown(f"**Series measured** {series.description or '(no description)'} — chosen by "
                f"`{series.series_rule or 'unknown'}`  \n**Unit** {series.unit_rule or '—'}  \n"
                f"**Confidence region** {series.confidence_rule or '—'}")


def study_summary(auto: StudyResult, reviewed: StudyResult, edits: ReviewEdits, read_s: float,
                  analyse_s: float) -> None:
    """Stiffness, stage, QC, what the review changed, model / unit / timing, and the staging table used."""
    _summary_metrics(auto, reviewed, edits)
    flags = reviewed.qc_flags
    if flags:
        st.warning("**Quality control**\n\n" + "\n".join(f"- **{f.value}**: {f.explanation}" for f in flags),
                   icon=":material/warning:")
    else:
        st.success("Quality control: no flags.", icon=":material/check_circle:")
    caption = rst.unsaved_review_caption(edits.is_reviewed, edits.describe(slice_label_map(auto)), auto.stiffness_kpa,
                                         auto.stage.stage.label if auto.stage else None)
    if caption is not None:
        st.caption(caption)
    _provenance(auto, read_s, analyse_s)
    table = reviewed.settings.staging
    with st.expander(f"Staging table used: {table.title}"):
        st.dataframe(pd.DataFrame([{"stage": c_.stage.label, "from (kPa)": c_.lower_kpa, "source": c_.source}
                                   for c_ in table.cutoffs]), hide_index=True, width="stretch")
        st.caption("Below the F1 bound: F0. Edit the table on the *Model & settings* page.")


# ----------------------------------------------------------------------------- save + sign off
def session_status(edits: ReviewEdits, skey: str, store_available: bool) -> ReviewStatus:
    """The study's :class:`~mre_core.app.review_status.ReviewStatus` from the edits and ``rv_saved`` / ``rv_signed``."""
    state = st.session_state
    return ReviewStatus(is_reviewed=edits.is_reviewed, reviewer=edits.reviewer, store_available=store_available,
                        saved_revision=state["rv_saved"].get(skey), signed_by=state.get("rv_signed", {}).get(skey))


def _save(store: Any, reviewed: StudyResult, edits: ReviewEdits, kind: str, auto_kpa: float | None = None) -> int:
    """Save the reviewed result; ``auto_kpa`` (the model's unedited value) is kept beside it for the cohort."""
    return store.save(reviewed, kind=kind, reviewer=edits.reviewer, comment=edits.comment,
                      manual_kpa=edits.manual_kpa, edits=edits.to_json(), auto_kpa=auto_kpa)


def save_buttons(store: Any | None, reviewed: StudyResult, edits: ReviewEdits, skey: str,
                 auto_kpa: float | None = None) -> ReviewStatus:
    """*Save to results store* and *Sign off*; returns the study's status after this run's clicks."""
    state = st.session_state
    status = session_status(edits, skey, store is not None)
    if st.button("Save to results store", type="primary", icon=":material/save:", disabled=not rst.can_save(status),
                 help="Adds a new revision; earlier revisions are kept"):
        try:
            status = rst.after_save(status, _save(store, reviewed, edits, rst.save_kind(status).value, auto_kpa))
            state["rv_saved"][skey] = status.saved_revision
            st.success(rst.saved_message(status.saved_revision), icon=":material/task_alt:")
        except Exception as exc:  # noqa: BLE001 - the reader must see why nothing was saved
            st.error(rst.save_failed_message(exc))
    elif (caption := rst.session_caption(status)) is not None:
        st.caption(caption)
    if st.button("Sign off", icon=":material/verified:", disabled=not rst.can_sign_off(status),
                 help="Save this review as signed off by the reviewer named above (enter your name first)"):
        try:
            status = rst.after_sign_off(status, _save(store, reviewed, edits, rst.RevisionKind.SIGNED_OFF.value,
                                                           auto_kpa))
            state["rv_saved"][skey] = status.saved_revision
            state.setdefault("rv_signed", {})[skey] = status.signed_by
            st.success(rst.signed_off_message(status), icon=":material/verified:")
        except AlreadySignedOff as done:  # the same content twice: the store keeps one sign-off
            state["rv_saved"][skey] = done.revision
            st.info(f"Not signed off again: {done}.", icon=":material/verified:")
        except Exception as exc:  # noqa: BLE001 - the reader must see why nothing was saved
            st.error(rst.sign_off_failed_message(exc))
    return status


__all__ = ["EDIT_KEY_PREFIXES", "edit_widget_keys", "restore", "review_fields", "save_buttons", "saved_revisions",
           "session_status", "show_saved_study", "slice_edits", "study_summary"]
