"""The Review page's intake: which study is reviewed, from the worklist, an upload or the demo.

Owns

* the worklist panel (:func:`show_worklist`): studies that arrived by DICOM (listener or watch
  folder), with *Open … for review* and *Analyse again*;
* the upload / demo inputs (:func:`study_input`) and the request they make (``rv_request``);
* opening the requested study (:func:`open_batch`): reading and analysing it once per request and
  settings (``rv_batch``, ``rv_key``), the files left out (:func:`show_left_out`) and, for an
  upload holding several studies, which one is reviewed (:func:`pick_study`);
* a study opened from a link (the cohort page's ``?study_uid=…``): from its kept or received files
  (:func:`request_for_link`);
* keeping an uploaded study's files once it is saved (:func:`keep_files`), so it opens with its images later.

The decisions are pure functions (:func:`worklist_caption`, :func:`next_request`,
:func:`analysis_key`, :func:`study_labels`); the rest draws Streamlit widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from mre_core.app.analysis_cache import CACHE, cache_key
from mre_core.app.context import demo_root, get_inbox, get_model, inference_lock, model_missing_message
from mre_core.app.demo import demo_study
from mre_core.app.review_state import ReviewableStudy, ReviewBatch, analyze_sources_for_review, skipped_summary
from mre_core.app.review_status import table_text
from mre_core.config import Settings
from mre_core.model.network import WeightsError
from mre_core.store.results import StoreError
from mre_core.workflow.keep import keep_study_files
from mre_core.workflow.worklist import REVIEW_STATUS, worklist

#: ``rv_request``: ``("demo", seed)``, ``("inbox", study_uid)`` or ``("upload", upload signature)``
Request = tuple[str, Any]
WORKLIST_COLUMNS = ["patient_id", "patient_name", "study_date", "received", "status", "stiffness_kpa", "stage",
                    "reviewer", "forwarded", "detail"]


def worklist_caption(wl: pd.DataFrame) -> str:
    """``"3 studies received · 1 awaiting review. …"`` for a non-empty worklist."""
    awaiting = int((wl["status"] == REVIEW_STATUS["auto"]).sum())
    return f"{len(wl)} studies received · {awaiting} awaiting review. Select a row, then open it."


def show_worklist(settings: Settings) -> None:
    """Studies sent by the scanner/PACS (listener) or exported to the watch folder."""
    try:
        inbox = get_inbox(settings)
        wl = worklist(inbox)
    except (StoreError, OSError) as exc:
        st.error(f"The worklist cannot be read: {exc}")
        return
    if wl.empty:
        st.caption("No study has arrived by DICOM yet. Start the listener (`python -m mre_core listen --port 11112 "
                   "--ae-title MRE_REVIEW`) or a watch folder (`python -m mre_core watch DIR`); see the README.")
        return
    c_text, c_refresh = st.columns([5, 1])
    c_text.caption(worklist_caption(wl))
    c_refresh.button("Refresh", icon=":material/refresh:", key="wl_refresh", help="Show studies that arrived since")
    picked = st.dataframe(wl[WORKLIST_COLUMNS], hide_index=True, width="stretch", on_select="rerun",
                          selection_mode="single-row", key="wl_table", column_config={
                              "stiffness_kpa": st.column_config.NumberColumn("stiffness (kPa)", format="%.2f")})
    rows = picked.selection.rows if picked is not None else []
    if rows:
        _row_actions(wl.iloc[rows[0]], inbox)


def _row_actions(row: pd.Series, inbox: Any) -> None:
    """*Open … for review* (sets ``rv_request``) and *Analyse again* (re-queues) for the selected row."""
    c1, c2, _ = st.columns([1, 1, 2])
    if c1.button(f"Open {row['patient_id']} for review", type="primary", icon=":material/open_in_new:",
                 disabled=not row["series_uid"], key="wl_open"):
        st.session_state["rv_request"] = ("inbox", row["study_uid"])
    if c2.button("Analyse again", icon=":material/refresh:", key="wl_retry",
                 help="Put the study back in the queue (e.g. after a failure); the listener's worker analyses it"):
        st.toast("Queued again." if inbox.requeue(row["study_uid"]) else "The study is still being received or "
                 "analysed.")


def next_request(demo_clicked: bool, upload_sig: tuple, last_upload_sig: tuple | None) -> Request | None:
    """The new request this run makes: the demo button wins, then a changed upload; ``None``: keep the old one."""
    if demo_clicked:
        return ("demo", 0)
    if upload_sig and upload_sig != last_upload_sig:
        return ("upload", upload_sig)
    return None


def study_input() -> tuple[Request | None, list[Any]]:
    """The upload and demo widgets; returns the current request (``rv_request``) and the uploaded files."""
    state = st.session_state
    c_files, c_folder, c_demo = st.columns([3, 3, 2])
    files = c_files.file_uploader("DICOM files or a .zip (files without extension are fine)",
                                  accept_multiple_files=True, key="rv_files")
    folder = c_folder.file_uploader("…or a whole study folder", accept_multiple_files="directory", key="rv_folder")
    with c_demo:
        st.write("")
        demo_clicked = st.button("Load demo study", icon=":material/science:", width="stretch",
                                 help="A synthetic 5-slice phantom study (known truth), made on the fly")
        st.caption("Phantom study, Siemens-style, 5 slices")
    uploads = list(files or []) + list(folder or [])
    upload_sig = tuple((f.name, f.size, f.file_id) for f in uploads)
    request = next_request(demo_clicked, upload_sig, state.get("rv_last_upload"))
    if request is not None:
        if request[0] == "upload":
            state["rv_last_upload"] = upload_sig
        state["rv_request"] = request
    return state.get("rv_request"), uploads


def request_for_link(settings: Settings, study_uid: str) -> Request | None:
    """``("inbox", study_uid)`` when the store has the study's files (received by DICOM, or kept when an upload
    was saved), once per link and browser session; ``None``: no files (the page shows the saved numbers)."""
    state = st.session_state
    if state.get("rv_link") == study_uid:
        return state.get("rv_link_request")
    try:
        files = get_inbox(settings).files(study_uid)
    except (StoreError, OSError):
        files = []
    request = ("inbox", study_uid) if any(Path(f).is_file() for f in files) else None
    state["rv_link"], state["rv_link_request"] = study_uid, request
    if request is not None:
        state["rv_request"] = request
    return request


def keep_files(request: Request, uploads: list[Any], settings: Settings, rs: ReviewableStudy, skey: str) -> None:
    """After a save: file the upload's instances of this study into the inbox (once per study and session), so
    that the cohort page, the worklist and a later session open it with its images."""
    state = st.session_state
    kept = state.setdefault("rv_kept", {})
    if request[0] == "inbox" or kept.get(skey):
        return
    try:
        done = keep_study_files(get_inbox(settings), _sources(request, uploads, settings), rs.result.study_uid,
                                rs.result.series_uid, settings.max_file_bytes)
    except (StoreError, OSError) as exc:
        st.warning(f"The result is saved, but the study's files could not be kept ({exc}); to see its images "
                   "later, upload it again.", icon=":material/warning:")
        return
    kept[skey] = True
    st.caption(f"Files: {done.describe()} (the study opens with its images from the cohort page and the worklist).")


def analysis_key(request: Request, settings: Settings) -> tuple:
    """What the analysis depends on: the same key means the batch in session state is still valid."""
    return (request, settings.profile, settings.custom_kpa_per_unit, settings.device, settings.model_name,
            str(settings.weights_dir))


def _sources(request: Request, uploads: list[Any], settings: Settings) -> list[Any]:
    if request[0] == "demo":
        return [demo_study(Path(demo_root()), seed=request[1])]
    if request[0] == "inbox":
        return get_inbox(settings).files(request[1])
    return [(f.name, f.getvalue()) for f in uploads]


def open_batch(request: Request, uploads: list[Any], settings: Settings) -> ReviewBatch | None:
    """The analysed batch for ``request`` (analysed once, then kept in ``rv_batch``); ``None``: no model.

    A batch this server analysed before from the same file bytes, settings and model comes from
    :data:`~mre_core.app.analysis_cache.CACHE` (``from_cache``) instead of running the model again."""
    state = st.session_state
    key = analysis_key(request, settings)
    if state.get("rv_key") != key:
        try:
            model = get_model(settings)
        except (WeightsError, RuntimeError) as exc:
            st.error(model_missing_message(exc, settings), icon=":material/error:")
            return None
        sources = _sources(request, uploads, settings)
        cached = cache_key(sources, settings, model)
        batch = CACHE.get(cached)
        if batch is None:
            bar = st.progress(0.0, "Reading files…")
            with inference_lock():
                batch = analyze_sources_for_review(sources, settings, model,
                                                   progress=lambda f, t: bar.progress(f, t))
            bar.empty()
            CACHE.put(cached, batch)
        state["rv_batch"], state["rv_key"] = batch, key
    return state["rv_batch"]


def show_left_out(batch: ReviewBatch) -> bool:
    """The files left out, with their reasons; ``False`` when no study at all could be analysed."""
    if not batch.skipped:
        return True
    skipped = pd.DataFrame(skipped_summary(batch.skipped))
    if not batch.studies:
        lines = "\n".join(f"- {s.describe()}" for s in batch.skipped[:20])
        st.error(f"**No study could be analysed.** Every series was left out:\n\n{lines}", icon=":material/error:")
        return False
    n_files = sum(s.n_files for s in batch.skipped)
    with st.expander(f"{len(batch.skipped)} series or file(s) left out ({n_files} files: other series of the exam, "
                     "or unreadable) — the rule and reason for each", icon=":material/report:"):
        st.table(table_text(skipped), hide_index=True)
    return True


def study_labels(batch: ReviewBatch) -> list[str]:
    """``"P01 · 20240101 · 5 slices"`` for each study of the batch."""
    return [f"{rs.result.patient_id} · {rs.result.study.meta.get('StudyDate', '')} · "
            f"{len(rs.result.slices)} slices" for rs in batch.studies]


def pick_study(batch: ReviewBatch) -> ReviewableStudy:
    """The study to review: the only one, or the one chosen when an upload holds several."""
    if len(batch.studies) <= 1:
        return batch.studies[0]
    labels = study_labels(batch)
    pick = st.selectbox(f"{len(batch.studies)} studies in this upload", range(len(labels)),
                        format_func=lambda i: labels[i], key="rv_pick")
    return batch.studies[pick]


__all__ = ["analysis_key", "keep_files", "next_request", "open_batch", "pick_study", "request_for_link",
           "show_left_out", "show_worklist", "study_input", "study_labels", "worklist_caption"]
