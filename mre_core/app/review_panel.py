"""The Review page's review: edit controls, the study summary, save / sign-off and saved revisions.

Owns

* the saved revisions of the study: opening a study loads its latest saved review from the store
  (:func:`load_saved_review`: value, slices, edits, reviewer, comment, sign-off), the study opened from a
  cohort-page link (:func:`mre_core.app.worklist_panel.request_for_link`; :func:`show_saved_study` when its
  files are not kept), the
  *Saved before* banner with *Restore revision …* (:func:`saved_revisions`, :func:`restore`);
* the edit controls: per slice exclude / erode-dilate / threshold and *Draw the ROI* (the drawing
  widgets are :func:`mre_core.app.roi_drawing.drawing_controls`; :func:`slice_edits`), and for the
  study the manual value, reviewer and comment (:func:`review_fields`), which build the
  :class:`~mre_core.app.review_state.ReviewEdits` kept in ``rv_edits``;
* the study summary at the top of the page (:func:`study_summary`);
* *Save to results store* and *Sign off* (:func:`save_buttons`), which record ``rv_saved``,
  ``rv_signed`` and ``rv_baseline`` (the content key of the saved edits: a later edit is "not saved yet").

Who may do what: the edit widgets are disabled without ``edit_review``, and :func:`save_review` — the one
path to the store — calls :func:`mre_core.access.require` (``edit_review``, ``sign_off``) before writing,
whatever the buttons showed; the audit entry names the signed-in user.

Whether a study is automatic, reviewed, saved or signed off, and what the page says about it,
is decided in :mod:`.review_status`; this module draws it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from mre_core.access import Action, PermissionDenied, User, allowed, require
from mre_core.analysis.pipeline import StudyResult
from mre_core.app import review_status as rst
from mre_core.app import roi_drawing
from mre_core.app.auth import audit_view
from mre_core.app.context import get_store
from mre_core.app.exports import slice_label_map
from mre_core.app.review_state import MAX_GROW_PX, ReviewableStudy, ReviewEdits
from mre_core.app.review_status import ReviewStatus, fmt, table_text
from mre_core.config import Settings
from mre_core.store.results import AlreadySignedOff, StoreError

#: Prefixes of the per-study edit widgets' keys (``<prefix><study>|…``), reset on a restore.
EDIT_KEY_PREFIXES = ("ex|", "grow|", "thr|", "man|", "who|", "note|", "drawon|", "drawmode|", "drawtool|")
#: Session-state key: the reviewer name a study starts with (the signed-in user's name; "" in local mode).
DEFAULT_REVIEWER_KEY = "rv_default_reviewer"


# ----------------------------------------------------------------------------- saved revisions
def show_saved_study(settings: Settings, study_uid: str, series_uid: str | None, user: User | None = None) -> None:
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
    audit_view(store, user, study_uid, series_uid)
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


def _seed(key: str, value: Any) -> None:
    """An edit widget's first value. The widgets take their values from session state (no ``value=``), so that
    loading or restoring a revision can set them (:func:`_set_widgets`): the browser then shows the new values."""
    if key not in st.session_state:
        st.session_state[key] = value


def _set_widgets(skey: str, edits: ReviewEdits, sops: Iterable[str], default_threshold: float) -> None:
    """Every edit widget of study ``skey`` set to ``edits`` (deleting a key would leave the browser's old value)."""
    state = st.session_state
    for sop in sops:
        e = edits.slice(sop)
        state[f"ex|{skey}|{sop}"] = e.excluded
        state[f"grow|{skey}|{sop}"] = e.grow_px
        state[f"thr|{skey}|{sop}"] = float(e.threshold or default_threshold)
    state[f"man|{skey}"] = edits.manual_kpa
    state[f"who|{skey}"] = edits.reviewer
    state[f"note|{skey}"] = edits.comment
    for k in edit_widget_keys(list(state), skey):
        if k.startswith(("drawon|", "drawmode|", "drawtool|")):
            del state[k]


def _adopt(skey: str, saved: Any, default_threshold: float) -> None:
    """Make the saved revision ``saved`` the review of ``skey``: its edits (a review or sign-off; an automatic
    revision is the model's result, so no edits), its number, its sign-off, and every edit widget shows them."""
    state = st.session_state
    reviewed = saved.kind != rst.RevisionKind.AUTO.value
    excluded = set(saved.slices.loc[saved.slices["excluded"].astype(bool), "sop_uid"]) if reviewed and \
        not saved.slices.empty else set()
    # an automatic revision has no reviewer: the review starts with the signed-in user's name (if any)
    edits = ReviewEdits.from_saved(saved.edits, saved.rois, excluded) if reviewed else \
        ReviewEdits().with_comment("", state.get(DEFAULT_REVIEWER_KEY, ""))
    state["rv_edits"][skey] = edits
    state["rv_saved"][skey] = int(saved.revision)
    state.setdefault("rv_signed", {})[skey] = saved.reviewer if saved.kind == rst.RevisionKind.SIGNED_OFF.value \
        else None
    state.setdefault("rv_baseline", {})[skey] = edits.content_key()
    sops = list(saved.slices["sop_uid"]) if not saved.slices.empty else []
    _set_widgets(skey, edits, sops, default_threshold)
    roi_drawing.reset_study(skey)  # the restored ROIs already hold what was drawn: the canvases start empty


def load_saved_review(store: Any | None, auto: StudyResult, skey: str, default_threshold: float) -> None:
    """Once per study and browser session: start the review from the study's latest saved revision.

    Whichever way the study was opened (upload, worklist, cohort link), the page then shows what the store
    holds — the signed-off value, the slices used, the reviewer's edits, name and comment — not a fresh
    automatic result."""
    state = st.session_state
    loaded = state.setdefault("rv_loaded", {})
    if store is None or skey in loaded:
        return
    try:
        saved = store.load_revision(auto.study_uid, auto.series_uid)
    except StoreError:
        return  # the banner says the store is unavailable
    loaded[skey] = None if saved is None else int(saved.revision)
    if saved is not None:
        _adopt(skey, saved, default_threshold)


def restore(store: Any, study_uid: str, series_uid: str, skey: str, revision: int, default_threshold: float) -> None:
    """Callback of *Restore revision …*: that revision becomes the review (every field and widget)."""
    saved = store.load_revision(study_uid, series_uid, revision)
    _adopt(skey, saved, default_threshold)
    st.session_state.setdefault("rv_loaded", {})[skey] = int(revision)


def saved_revisions(box: DeltaGenerator, settings: Settings, auto: StudyResult, skey: str,
                    default_threshold: float, editable: bool = True) -> Any | None:
    """Load the latest saved review (first time only), then the *Saved before* banner and restore button in
    ``box`` (disabled unless ``editable``); returns the store (``None``: unavailable)."""
    try:
        store = get_store(settings)
        history = store.history(auto.study_uid, auto.series_uid)
    except StoreError as exc:
        box.error(f"The results store cannot be opened, so nothing can be saved: {exc}")
        return None
    load_saved_review(store, auto, skey, default_threshold)
    if history.empty:
        return store
    state = st.session_state
    shown = state["rv_saved"].get(skey)
    with box:
        latest = history.iloc[-1].to_dict()
        st.info(rst.saved_before_message(len(history), latest, shown), icon=":material/history:")
        if shown is not None and int(latest["revision"]) > shown and state.get("rv_loaded", {}).get(skey) != \
                int(latest["revision"]):
            st.warning(f"Revision {latest['revision']} was saved ({latest['kind']}, {latest['reviewer'] or 'no name'}) "
                       f"after this page loaded revision {shown}; restore it to see it.", icon=":material/sync_problem:")
        c1, c2 = st.columns([1, 3])
        rev = c1.selectbox("Revision", list(history["revision"]), index=len(history) - 1, key=f"rv_rev|{skey}",
                           label_visibility="collapsed")
        c2.button(f"Restore revision {rev} into the review", on_click=restore,
                  args=(store, auto.study_uid, auto.series_uid, skey, int(rev), default_threshold),
                  icon=":material/restore:", disabled=not editable)
    return store


# ----------------------------------------------------------------------------- edit controls
def _slice_controls(rs: ReviewableStudy, i: int, box: DeltaGenerator, edits: ReviewEdits, skey: str,
                    drawing: bool = True, editable: bool = True) -> ReviewEdits:
    """Exclude / erode-dilate / threshold widgets for slice ``i`` and, with ``drawing``, the drawing
    controls; returns the edits with their values. Without ``editable`` the widgets are disabled."""
    sop = rs.result.slices[i].sop_uid
    e = edits.slice(sop)
    _seed(f"ex|{skey}|{sop}", e.excluded)
    _seed(f"grow|{skey}|{sop}", e.grow_px)
    _seed(f"thr|{skey}|{sop}", float(e.threshold or rs.threshold))
    off = not editable
    ex = box.checkbox("Exclude this slice", key=f"ex|{skey}|{sop}", disabled=off)
    grow = box.number_input("Erode (−) / dilate (+), px", -MAX_GROW_PX, MAX_GROW_PX, step=1, key=f"grow|{skey}|{sop}",
                            disabled=off)
    thr = box.slider("Probability threshold", 0.05, 0.95, step=0.05, key=f"thr|{skey}|{sop}", disabled=off,
                     help=f"Model default {rs.threshold:.2f}; re-thresholds the stored probability map (no second "
                          "model run)")
    edits = (edits.with_excluded(sop, ex).with_grow(sop, int(grow))
             .with_threshold(sop, None if abs(thr - rs.threshold) < 1e-9 else thr))
    if drawing and editable:
        reader = str(st.session_state.get(f"who|{skey}", edits.reviewer) or "").strip()
        edits = roi_drawing.drawing_controls(box, rs.result.study.series.slices[i].shape, sop, skey, edits, reader)
    elif edits.drawing(sop):
        box.caption(f"ROI drawn by hand ({len(edits.drawing(sop))} shape(s)); show one slice at a time to "
                    "change the drawing.")
    return edits


def slice_edits(rs: ReviewableStudy, shown: list[int], ctl_boxes: Any, edits: ReviewEdits,
                skey: str, drawing: bool = True, editable: bool = True) -> ReviewEdits:
    """The edit widgets of every shown slice, each in its box; returns the edits with their values.

    ``drawing``: offer *Draw the ROI* (one slice at a time; side by side the slices are too small to draw on).
    ``editable``: the user may edit the review (``edit_review``); otherwise every widget is disabled.
    """
    for i in shown:
        edits = _slice_controls(rs, i, ctl_boxes[i], edits, skey, drawing, editable)
    return edits


def review_fields(edits: ReviewEdits, skey: str, editable: bool = True) -> ReviewEdits:
    """*Review and save*: manual value (kPa), reviewer and comment; returns the edits with them. The reviewer
    starts as the signed-in user's name (``rv_default_reviewer``) for a study not reviewed before."""
    st.markdown("#### Review and save")
    c_man, c_who, c_note = st.columns([1, 1, 2])
    _seed(f"man|{skey}", edits.manual_kpa)
    _seed(f"who|{skey}", edits.reviewer or st.session_state.get(DEFAULT_REVIEWER_KEY, ""))
    _seed(f"note|{skey}", edits.comment)
    off = not editable
    manual = c_man.number_input("Manual measurement (kPa)", min_value=0.0, max_value=30.0, step=0.01, format="%.2f",
                                key=f"man|{skey}", placeholder="optional", disabled=off)
    who = c_who.text_input("Reviewer", key=f"who|{skey}", disabled=off)
    note = c_note.text_area("Comment", key=f"note|{skey}", height=68, disabled=off)
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


def _provenance(auto: StudyResult, read_s: float, analyse_s: float, from_cache: bool = False) -> None:
    first = auto.study.series.slices[0]
    timing = auto.timings_s
    d1, d2, d3 = st.columns(3)
    d1.markdown(f"**Model** `{auto.model_name}` · version `{auto.model_sha256[:12]}`  \n**Device** {auto.device}")
    d2.markdown(f"**Unit profile** {first.profile.value} ({first.kpa_per_unit:g} kPa per stored unit)  \n"
                f"**Confidence marking** {first.encoding.value.replace('_', ' ')}")
    took = (f"{read_s + analyse_s:.2f} s (read {read_s:.2f} s, model {timing.get('model', 0):.2f} s, "
            f"post {timing.get('post', 0) + timing.get('stiffness', 0):.2f} s"
            + (f", stability check {timing['stability']:.2f} s" if "stability" in timing else "") + ")")
    if from_cache:
        d3.markdown(f"**Time** none now: this server analysed the same files with the same settings and model "
                    f"before (it took {took}); shown from its analysis cache")
    else:
        d3.markdown(f"**Time** {took} for the upload")
    if first.profile.value == "siemens":
        st.caption("Siemens profile: stored value = kPa × 100 (window 400/800 spans 0–8 kPa) is a working "
                   "assumption; change the unit profile in the sidebar if your scanner differs.")
    series = auto.study.series
    st.markdown(f"**Series measured** {series.description or '(no description)'} — chosen by "
                f"`{series.series_rule or 'unknown'}`  \n**Unit** {series.unit_rule or '—'}  \n"
                f"**Confidence region** {series.confidence_rule or '—'}  \n"
                f"**Magnitude image** {series.magnitude_rule or '—'} (shown under *Image*; nothing is measured on it)")


def study_summary(auto: StudyResult, reviewed: StudyResult, edits: ReviewEdits, status: ReviewStatus, read_s: float,
                  analyse_s: float, from_cache: bool = False) -> None:
    """Stiffness, stage, QC, what the review changed, model / unit / timing, and the staging table used."""
    _summary_metrics(auto, reviewed, edits)
    flags = reviewed.qc_flags
    if flags:
        notes = "".join(f"\n  - {n}" for n in reviewed.input_notes)
        st.warning("**Quality control**\n\n" + "\n".join(
            f"- **{f.value}**: {f.explanation}" + (notes if f.value == "input_unlike_training" else "")
            for f in flags), icon=":material/warning:")
    else:
        st.success("Quality control: no flags.", icon=":material/check_circle:")
    caption = rst.unsaved_review_caption(status, edits.describe(slice_label_map(auto)), auto.stiffness_kpa,
                                         auto.stage.stage.label if auto.stage else None)
    if caption is not None:
        st.caption(caption)
    _provenance(auto, read_s, analyse_s, from_cache)
    table = reviewed.settings.staging
    with st.expander(f"Staging table used: {table.title}"):
        st.table(table_text(pd.DataFrame([{"stage": c_.stage.label, "from (kPa)": c_.lower_kpa, "source": c_.source}
                                          for c_ in table.cutoffs])), hide_index=True)
        st.caption("Below the F1 bound: F0. Edit the table on the *Model & settings* page.")


# ----------------------------------------------------------------------------- save + sign off
def session_status(edits: ReviewEdits, skey: str, store_available: bool) -> ReviewStatus:
    """The study's :class:`~mre_core.app.review_status.ReviewStatus` from the edits and the saved revision they
    start from (``rv_saved`` / ``rv_signed`` / ``rv_baseline``, set from the store)."""
    state = st.session_state
    saved = state["rv_saved"].get(skey)
    baseline = state.get("rv_baseline", {}).get(skey)
    return ReviewStatus(is_reviewed=edits.is_reviewed, reviewer=edits.reviewer, store_available=store_available,
                        saved_revision=saved, signed_by=state.get("rv_signed", {}).get(skey),
                        unsaved_changes=saved is not None and baseline is not None and edits.content_key() != baseline)


def save_review(store: Any, user: User | None, reviewed: StudyResult, edits: ReviewEdits, kind: str,
                auto: StudyResult | None = None) -> int:
    """Save the reviewed result as ``user``; returns the revision number.

    First :func:`mre_core.access.require`: ``sign_off`` for a sign-off, ``edit_review`` for any other save (a
    refusal raises :class:`~mre_core.access.PermissionDenied`, is audited as ``access:denied`` and writes
    nothing). The audit entry ``save:<kind>`` names the user. The model's unedited value is kept beside the
    result for the cohort. The first review of a study never saved before also keeps the model's result as
    it came out (an ``auto`` revision first), so the automatic ROIs stay comparable with the reader's (Dice /
    IoU on the cohort page)."""
    signing = kind == rst.RevisionKind.SIGNED_OFF.value
    require(user, Action.SIGN_OFF if signing else Action.EDIT_REVIEW, store,
            detail=f"study {reviewed.study_uid} series {reviewed.series_uid}")
    actor = user.username if user is not None else None
    auto_kpa = None if auto is None else auto.stiffness_kpa
    if auto is not None and kind != rst.RevisionKind.AUTO.value and store.history(auto.study_uid,
                                                                                  auto.series_uid).empty:
        store.save(auto, kind=rst.RevisionKind.AUTO.value, auto_kpa=auto_kpa, actor=actor)
    return store.save(reviewed, kind=kind, reviewer=edits.reviewer, comment=edits.comment,
                      manual_kpa=edits.manual_kpa, edits=edits.to_json(), auto_kpa=auto_kpa, actor=actor)


def _record(skey: str, status: ReviewStatus, edits: ReviewEdits) -> None:
    """Remember the revision just written: the page now shows it (no "not saved yet")."""
    state = st.session_state
    state["rv_saved"][skey] = status.saved_revision
    state.setdefault("rv_signed", {})[skey] = status.signed_by
    state.setdefault("rv_baseline", {})[skey] = edits.content_key()
    state.setdefault("rv_loaded", {})[skey] = status.saved_revision


def _write(store: Any, reviewed: StudyResult, edits: ReviewEdits, skey: str, status: ReviewStatus, sign: bool,
           auto: StudyResult | None, user: User | None) -> tuple[str, str]:
    """Save (or sign off) the review; returns the message to show: ``(kind, text)``, kind success/info/error."""
    try:
        if sign:
            status = rst.after_sign_off(status, save_review(store, user, reviewed, edits,
                                                            rst.RevisionKind.SIGNED_OFF.value, auto))
            _record(skey, status, edits)
            return "success", rst.signed_off_message(status)
        status = rst.after_save(status, save_review(store, user, reviewed, edits, rst.save_kind(status).value, auto))
        _record(skey, status, edits)
        return "success", rst.saved_message(status.saved_revision)
    except PermissionDenied as denied:
        return "error", f"Not saved: {denied}"
    except AlreadySignedOff as done:  # the same content twice (e.g. two readers at once): one sign-off
        _record(skey, dataclasses.replace(status, saved_revision=done.revision, signed_by=done.reviewer,
                                          unsaved_changes=False), edits)
        return "info", f"Not signed off again: {done}."
    except Exception as exc:  # noqa: BLE001 - the reader must see why nothing was saved
        return "error", (rst.sign_off_failed_message if sign else rst.save_failed_message)(exc)


def _show_message(message: tuple[str, str] | None, box: Any = st) -> None:
    if message is not None:
        kind, text = message
        icon = {"success": ":material/task_alt:", "info": ":material/verified:", "error": ":material/error:"}[kind]
        getattr(box, kind)(text, icon=icon)


def save_buttons(store: Any | None, reviewed: StudyResult, edits: ReviewEdits, skey: str,
                 auto: StudyResult | None = None, user: User | None = None) -> ReviewStatus:
    """*Save to results store* and *Sign off*; returns the study's status.

    A click saves with this run's edits and then runs the page again, so that every part of it — the summary,
    these buttons (*Sign off* disabled once signed off), the downloads — shows what was just saved; the
    message of the click is shown in that run. Each button is disabled when ``user``'s role does not allow it
    (and :func:`save_review` refuses it anyway)."""
    state = st.session_state
    status = session_status(edits, skey, store is not None)
    message = state.setdefault("rv_msg", {}).pop(skey, None)
    save = st.button("Save to results store", type="primary", icon=":material/save:",
                     disabled=not (rst.can_save(status) and allowed(user, Action.EDIT_REVIEW)),
                     help="Adds a new revision; earlier revisions are kept")
    if message is not None and message[0] != "error":
        _show_message(message)
    elif (caption := rst.session_caption(status)) is not None:
        st.caption(caption)
    sign = st.button("Sign off", icon=":material/verified:",
                     disabled=not (rst.can_sign_off(status) and allowed(user, Action.SIGN_OFF)),
                     help="Save this review as signed off by the reviewer named above (enter your name first; a "
                          "signed-off revision is not signed off again unless something changed)")
    if message is not None and message[0] == "error":
        _show_message(message)
    if save or sign:
        state["rv_msg"][skey] = _write(store, reviewed, edits, skey, status, sign, auto, user)
        st.rerun()
    return status


__all__ = ["DEFAULT_REVIEWER_KEY", "EDIT_KEY_PREFIXES", "edit_widget_keys", "load_saved_review", "restore",
           "review_fields", "save_buttons", "save_review", "saved_revisions", "session_status", "show_saved_study",
           "slice_edits", "study_summary"]
