"""Review study: upload (or demo) → ROI overlays, stiffness, stage → edit → save → download.

Thin: the panels are components of :mod:`mre_core.app` — :mod:`~mre_core.app.worklist_panel` (which
study), :mod:`~mre_core.app.slice_viewer` (the slices), :mod:`~mre_core.app.review_panel` (edits,
summary, save / sign off, revisions), :mod:`~mre_core.app.roi_drawing` (the reader draws the ROI) and :mod:`~mre_core.app.downloads`; the one computation is
:func:`~mre_core.app.review_state.apply_edits`. Access: :func:`~mre_core.app.auth.page_guard` (``view_study``);
edits need ``edit_review``, sign-off ``sign_off``, downloads ``export_identified``.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from mre_core.access import Action, allowed
from mre_core.app import auth, downloads, review_panel, slice_viewer, worklist_panel
from mre_core.app.context import current_settings, model_missing_message
from mre_core.app.review_state import ReviewableStudy, ReviewEdits, apply_edits

user = auth.page_guard(Action.VIEW_STUDY)
editable = allowed(user, Action.EDIT_REVIEW)
settings = current_settings()
state = st.session_state
state.setdefault("rv_edits", {})
state.setdefault("rv_saved", {})
state[review_panel.DEFAULT_REVIEWER_KEY] = auth.default_reviewer(user)

st.title("Review study")

# ----------------------------------------------------------------------------- saved study from a link
if "study_uid" in st.query_params and worklist_panel.request_for_link(settings, st.query_params["study_uid"]) is None:
    with st.expander("Opened from the cohort page", expanded=True):  # its files are not in the store
        review_panel.show_saved_study(settings, st.query_params["study_uid"], st.query_params.get("series_uid"), user)

if not settings.weights_path.is_file():
    st.warning(model_missing_message(FileNotFoundError(f"{settings.weights_path} does not exist."), settings),
               icon=":material/warning:")

# ----------------------------------------------------------------------------- which study: worklist, upload, demo
with st.expander("Worklist — studies received from the scanner / PACS", icon=":material/inbox:",
                 expanded="rv_request" not in state):
    worklist_panel.show_worklist(settings)

request, uploads = worklist_panel.study_input()
if request is None:
    st.markdown("Upload an MRE study (the elastogram series with its 95 % confidence map; other series are "
                "recognised and left out with a reason), or load the demo study.")
    st.stop()
batch = worklist_panel.open_batch(request, uploads, settings)
if batch is None or not worklist_panel.show_left_out(batch):
    st.stop()
rs: ReviewableStudy = worklist_panel.pick_study(batch)
auto = rs.result
skey = f"{auto.study_uid}|{auto.series_uid}"
review_settings = dataclasses.replace(auto.settings, staging=settings.staging)

# ----------------------------------------------------------------------------- layout skeleton
meta = auto.study.meta
st.subheader(f"Patient {auto.patient_id}  ·  {meta.get('StudyDate', 'no date')}  ·  "
             f"{auto.study.series.manufacturer or 'unknown vendor'}  ·  {auto.study.series.description}")
saved_box = st.container()
summary_box = st.container()
st.divider()
st.markdown("#### Slices")
store = review_panel.saved_revisions(saved_box, settings, auto, skey, rs.threshold,  # loads the latest saved review,
                                     editable)                                          # once
auth.audit_view(store, user, auto.study_uid, auto.series_uid)
edits: ReviewEdits = state["rv_edits"].get(skey, ReviewEdits())

# ----------------------------------------------------------------------------- widgets → the edits
view = slice_viewer.view_options(auto, skey)
fig_boxes, ctl_boxes = slice_viewer.slice_boxes(view, len(auto.slices))
edits = review_panel.slice_edits(rs, view.shown, ctl_boxes, edits, skey,  # before the figures: they show this run
                                 drawing=not view.side_by_side, editable=editable)
table_box = st.container()  # filled below, once this run's edits are applied
edits = review_panel.review_fields(edits, skey, editable)
state["rv_edits"][skey] = edits

# ----------------------------------------------------------------------------- one call → render
reviewed = apply_edits(rs, edits, review_settings)
slice_viewer.show_slices(reviewed, view, skey, fig_boxes, ctl_boxes)
slice_viewer.show_slice_table(table_box, reviewed, view)

save_col, dl_col = st.columns([1, 2])
with save_col:  # before the summary and the downloads, so that they show what a click just saved
    status = review_panel.save_buttons(store, reviewed, edits, skey, auto=auto, user=user)
    if status.saved_revision is not None:
        worklist_panel.keep_files(request, uploads, settings, rs, skey)
with summary_box:
    review_panel.study_summary(auto, reviewed, edits, status, batch.read_s, batch.analyse_s, batch.from_cache)
with dl_col:
    downloads.download_buttons(reviewed, edits, status, user, store)
