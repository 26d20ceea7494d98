"""Review study: upload (or demo) → ROI overlays, stiffness, stage → edit → save → download."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from mre_core.app import exports
from mre_core.app.context import (
    current_settings,
    demo_root,
    get_inbox,
    get_model,
    get_store,
    inference_lock,
    model_missing_message,
)
from mre_core.app.demo import demo_study
from mre_core.app.figures import elastogram_figure
from mre_core.app.review_state import (
    MAX_GROW_PX,
    ReviewableStudy,
    ReviewEdits,
    analyze_sources_for_review,
    apply_edits,
    skipped_summary,
)
from mre_core.model.network import WeightsError
from mre_core.store.results import StoreError
from mre_core.workflow.worklist import worklist

settings = current_settings()
state = st.session_state
state.setdefault("rv_edits", {})
state.setdefault("rv_saved", {})

st.title("Review study")


# ----------------------------------------------------------------------------- helpers
def fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}f}{(' ' + unit) if unit else ''}"


def show_saved(study_uid: str, series_uid: str | None) -> None:
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


def sources_from(uploads: list) -> list[tuple[str, bytes]]:
    return [(f.name, f.getvalue()) for f in uploads]


# ----------------------------------------------------------------------------- saved study from a link
if "study_uid" in st.query_params:
    with st.expander("Opened from the cohort page", expanded=True):
        show_saved(st.query_params["study_uid"], st.query_params.get("series_uid"))

if not settings.weights_path.is_file():
    st.warning(model_missing_message(FileNotFoundError(f"{settings.weights_path} does not exist."), settings),
               icon=":material/warning:")

# ----------------------------------------------------------------------------- worklist (DICOM inbox)
def show_worklist() -> None:
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
    awaiting = int((wl["status"] == "auto, awaiting review").sum())
    c_text, c_refresh = st.columns([5, 1])
    c_text.caption(f"{len(wl)} studies received · {awaiting} awaiting review. Select a row, then open it.")
    c_refresh.button("Refresh", icon=":material/refresh:", key="wl_refresh", help="Show studies that arrived since")
    shown = wl[["patient_id", "patient_name", "study_date", "received", "status", "stiffness_kpa", "stage",
                "reviewer", "forwarded", "detail"]]
    picked = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                          key="wl_table", column_config={"stiffness_kpa": st.column_config.NumberColumn(
                              "stiffness (kPa)", format="%.2f")})
    rows = picked.selection.rows if picked is not None else []
    if not rows:
        return
    row = wl.iloc[rows[0]]
    c1, c2, _ = st.columns([1, 1, 2])
    if c1.button(f"Open {row['patient_id']} for review", type="primary", icon=":material/open_in_new:",
                 disabled=not row["series_uid"], key="wl_open"):
        state["rv_request"] = ("inbox", row["study_uid"])
    if c2.button("Analyse again", icon=":material/refresh:", key="wl_retry",
                 help="Put the study back in the queue (e.g. after a failure); the listener's worker analyses it"):
        st.toast("Queued again." if inbox.requeue(row["study_uid"]) else "The study is still being received or "
                 "analysed.")


with st.expander("Worklist — studies received from the scanner / PACS", icon=":material/inbox:",
                 expanded="rv_request" not in state):
    show_worklist()

# ----------------------------------------------------------------------------- input
c_files, c_folder, c_demo = st.columns([3, 3, 2])
files = c_files.file_uploader("DICOM files or a .zip (files without extension are fine)", accept_multiple_files=True,
                              key="rv_files")
folder = c_folder.file_uploader("…or a whole study folder", accept_multiple_files="directory", key="rv_folder")
with c_demo:
    st.write("")
    demo_clicked = st.button("Load demo study", icon=":material/science:", width="stretch",
                             help="A synthetic 5-slice phantom study (known truth), made on the fly")
    st.caption("Phantom study, Siemens-style, 5 slices")

uploads = list(files or []) + list(folder or [])
upload_sig = tuple((f.name, f.size, f.file_id) for f in uploads)
if demo_clicked:
    state["rv_request"] = ("demo", 0)
elif upload_sig and upload_sig != state.get("rv_last_upload"):
    state["rv_last_upload"] = upload_sig
    state["rv_request"] = ("upload", upload_sig)

request = state.get("rv_request")
if request is None:
    st.markdown("Upload an MRE study (the elastogram series with its 95 % confidence map; other series are "
                "recognised and left out with a reason), or load the demo study.")
    st.stop()

analysis_key = (request, settings.profile, settings.custom_kpa_per_unit, settings.device, settings.model_name,
                str(settings.weights_dir))
if state.get("rv_key") != analysis_key:
    try:
        model = get_model(settings)
    except (WeightsError, RuntimeError) as exc:
        st.error(model_missing_message(exc, settings), icon=":material/error:")
        st.stop()
    if request[0] == "demo":
        sources = [demo_study(Path(demo_root()), seed=request[1])]
    elif request[0] == "inbox":
        sources = get_inbox(settings).files(request[1])
    else:
        sources = sources_from(uploads)
    bar = st.progress(0.0, "Reading files…")
    with inference_lock():
        batch = analyze_sources_for_review(sources, settings, model, progress=lambda f, t: bar.progress(f, t))
    bar.empty()
    state["rv_batch"], state["rv_key"] = batch, analysis_key
batch = state["rv_batch"]

# ----------------------------------------------------------------------------- files left out
if batch.skipped:
    skipped = pd.DataFrame(skipped_summary(batch.skipped))
    if not batch.studies:
        lines = "\n".join(f"- `{s.file}`: {s.reason}" for s in batch.skipped[:20])
        st.error(f"**No study could be analysed.** Every file was left out:\n\n{lines}", icon=":material/error:")
        st.stop()
    with st.expander(f"{len(batch.skipped)} file(s) left out (other series of the exam, or unreadable) — "
                     "the reasons", icon=":material/report:"):
        st.dataframe(skipped, hide_index=True, width="stretch")

if len(batch.studies) > 1:
    labels = [f"{rs.result.patient_id} · {rs.result.study.meta.get('StudyDate', '')} · "
              f"{len(rs.result.slices)} slices" for rs in batch.studies]
    pick = st.selectbox(f"{len(batch.studies)} studies in this upload", range(len(labels)),
                        format_func=lambda i: labels[i], key="rv_pick")
else:
    pick = 0
rs: ReviewableStudy = batch.studies[pick]
auto = rs.result
skey = f"{auto.study_uid}|{auto.series_uid}"
edits: ReviewEdits = state["rv_edits"].get(skey, ReviewEdits())
review_settings = dataclasses.replace(auto.settings, staging=settings.staging)

# ----------------------------------------------------------------------------- layout skeleton
meta = auto.study.meta
st.subheader(f"Patient {auto.patient_id}  ·  {meta.get('StudyDate', 'no date')}  ·  "
             f"{auto.study.series.manufacturer or 'unknown vendor'}  ·  {auto.study.series.description}")
saved_box = st.container()
summary_box = st.container()
st.divider()
st.markdown("#### Slices")

# ----------------------------------------------------------------------------- store: saved revisions
try:
    store = get_store(settings)
    history = store.history(auto.study_uid, auto.series_uid)
except StoreError as exc:
    store, history = None, pd.DataFrame()
    saved_box.error(f"The results store cannot be opened, so nothing can be saved: {exc}")


def restore(revision: int) -> None:
    saved = store.load_revision(auto.study_uid, auto.series_uid, revision)
    state["rv_edits"][skey] = ReviewEdits.from_saved(saved.edits, saved.rois)
    for k in [k for k in state if isinstance(k, str) and k.startswith(("ex|", "grow|", "thr|", "man|", "who|",
                                                                      "note|")) and skey in k]:
        del state[k]


if not history.empty:
    last = history.iloc[-1]
    with saved_box:
        st.info(f"**Saved before:** {len(history)} revision(s). Latest: revision {last['revision']} "
                f"({last['kind']}, {last['reviewer'] or 'no name'}, {last['created_utc']}): "
                f"{fmt(last['stiffness_kpa'], 'kPa')}, {last['stage'] or 'no stage'}"
                + (f" — “{last['comment']}”" if last["comment"] else ""), icon=":material/history:")
        c1, c2 = st.columns([1, 3])
        rev = c1.selectbox("Revision", list(history["revision"]), index=len(history) - 1, key=f"rv_rev|{skey}",
                           label_visibility="collapsed")
        c2.button(f"Restore revision {rev} into the review", on_click=restore, args=(int(rev),),
                  icon=":material/restore:")

# ----------------------------------------------------------------------------- slice viewer + per-slice edits
opts = st.columns([2, 2, 1, 1, 1])
layout = opts[0].segmented_control("Layout", ["One slice at a time", "Side by side"], default="One slice at a time",
                                   key="rv_layout") or "One slice at a time"
opacity = opts[1].slider("ROI opacity", 0.0, 1.0, 0.45, 0.05, key="rv_opacity")
show_conf = opts[2].toggle("Confidence", True, key="rv_conf", help="Outline of the 95 % confidence region (yellow)")
show_roi = opts[3].toggle("ROI", True, key="rv_roi", help="Final ROI, red fill")
show_pred = opts[4].toggle("Model mask", False, key="rv_pred", help="Model liver mask before ∩ confidence (dotted)")

elastograms = auto.study.series.slices
n = len(auto.slices)
slice_labels = [f"{i + 1} · z {s.position_mm:.0f} mm" for i, s in enumerate(auto.slices)]
if layout == "Side by side":
    shown = list(range(n))
else:
    current = st.radio("Slice", range(n), format_func=lambda i: slice_labels[i], horizontal=True, key=f"rv_slice|{skey}")
    shown = [current]


def slice_controls(i: int, box, edits: ReviewEdits) -> ReviewEdits:
    """Exclude / erode-dilate / threshold widgets for slice ``i``; returns the edits with their values."""
    sop = auto.slices[i].sop_uid
    e = edits.slice(sop)
    ex = box.checkbox("Exclude this slice", value=e.excluded, key=f"ex|{skey}|{sop}")
    grow = box.number_input("Erode (−) / dilate (+), px", -MAX_GROW_PX, MAX_GROW_PX, value=e.grow_px, step=1,
                            key=f"grow|{skey}|{sop}")
    thr = box.slider("Probability threshold", 0.05, 0.95, value=float(e.threshold or rs.threshold), step=0.05,
                     key=f"thr|{skey}|{sop}", help=f"Model default {rs.threshold:.2f}; re-thresholds the stored "
                                                   "probability map (no second model run)")
    return (edits.with_excluded(sop, ex).with_grow(sop, int(grow))
            .with_threshold(sop, None if abs(thr - rs.threshold) < 1e-9 else thr))


def slice_numbers(s, box) -> None:
    st_ = s.stats
    box.markdown(
        f"**Mean {fmt(st_.mean_kpa, 'kPa')}** · median {fmt(st_.median_kpa)} · SD {fmt(st_.sd_kpa)} · "
        f"IQR {fmt(st_.iqr_kpa)} · ROI {fmt(st_.area_cm2, 'cm²', 1)} · confidence {fmt(s.confidence_area_cm2, 'cm²', 1)}"
        + ("  \n:orange[**Excluded from the study value**]" if s.excluded else ""))
    for f in s.qc_flags:
        box.caption(f":warning: {f.explanation}")


# controls first (so the figures and numbers below reflect this run's edits)
if layout == "Side by side":
    cols = st.columns(min(n, 3))
    boxes = [cols[i % len(cols)].container(border=True) for i in range(n)]
    fig_boxes, ctl_boxes = [b.container() for b in boxes], [b.expander("Edit ROI") for b in boxes]
else:
    left, right = st.columns([3, 1])
    fig_boxes, ctl_boxes = {shown[0]: left.container()}, {shown[0]: right.container(border=True)}
for i in shown:
    edits = slice_controls(i, ctl_boxes[i], edits)

table_box = st.container()  # filled below, once this run's edits are applied

# study-level review fields
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
state["rv_edits"][skey] = edits
reviewed = apply_edits(rs, edits, review_settings)

for i in shown:
    s, e = reviewed.slices[i], elastograms[i]
    box = fig_boxes[i]
    fig = elastogram_figure(e, s, roi_opacity=opacity, show_confidence=show_conf, show_roi=show_roi,
                            show_predicted=show_pred, height=300 if layout == "Side by side" else 460,
                            title=slice_labels[i] if layout == "Side by side" else None)
    box.plotly_chart(fig, key=f"fig|{skey}|{i}", config={"displaylogo": False}, width="stretch")
    slice_numbers(s, box if layout == "Side by side" else ctl_boxes[i])

slice_df = pd.DataFrame([{
    "slice": i + 1, "z (mm)": round(s.position_mm, 1), "used": "no" if not s.usable else "yes",
    "mean kPa": round(s.stats.mean_kpa, 2), "median kPa": round(s.stats.median_kpa, 2),
    "SD kPa": round(s.stats.sd_kpa, 2), "IQR kPa": round(s.stats.iqr_kpa, 2), "ROI cm²": round(s.stats.area_cm2, 1),
    "QC": ", ".join(f.value for f in s.qc_flags) or "ok"} for i, s in enumerate(reviewed.slices)])
with table_box.expander("All slices (table)", expanded=layout != "Side by side"):
    st.dataframe(slice_df, hide_index=True, width="stretch")

# ----------------------------------------------------------------------------- study summary (top of the page)
with summary_box:
    table = review_settings.staging
    stage = reviewed.stage
    edited = edits.changes_roi
    c = st.columns([1.2, 1.2, 1.4, 1.2, 1])
    c[0].metric("Liver stiffness", fmt(reviewed.stiffness_kpa, "kPa"),
                help="Mean of the slice means (the primary value, as in the paper)", delta=None if not edited else f"{reviewed.stiffness_kpa - auto.stiffness_kpa:+.2f} vs automatic",
                delta_color="off", delta_arrow="off")
    c[1].metric("Area-weighted mean", fmt(reviewed.stiffness.stiffness_kpa_area_weighted, "kPa"))
    c[2].metric("Fibrosis stage", f"Stage: {stage.stage.label}" if stage else "No stage",
                help=f"Table: {table.title}")
    c[3].metric(f"Significant fibrosis (≥ {table.significant_kpa:.1f} kPa)",
                ("Yes (≥ F2)" if stage.significant_fibrosis else "No (< F2)") if stage else "—")
    c[4].metric("Slices used", f"{reviewed.stiffness.n_slices_used} / {len(reviewed.slices)}")
    flags = reviewed.qc_flags
    if flags:
        st.warning("**Quality control**\n\n" + "\n".join(f"- **{f.value}**: {f.explanation}" for f in flags),
                   icon=":material/warning:")
    else:
        st.success("Quality control: no flags.", icon=":material/check_circle:")
    if edits.is_reviewed:
        st.caption(":pencil2: **Reviewed, not saved yet** — " + ("; ".join(edits.describe()) or "comment only")
                   + f". Automatic value: {fmt(auto.stiffness_kpa, 'kPa')} ({auto.stage.stage.label if auto.stage else '—'}).")
    first = elastograms[0]
    timing = auto.timings_s
    d1, d2, d3 = st.columns(3)
    d1.markdown(f"**Model** `{auto.model_name}` · version `{auto.model_sha256[:12]}`  \n**Device** {auto.device}")
    d2.markdown(f"**Unit profile** {first.profile.value} ({first.kpa_per_unit:g} kPa per stored unit)  \n"
                f"**Confidence marking** {first.encoding.value.replace('_', ' ')}")
    d3.markdown(f"**Time** {batch.read_s + batch.analyse_s:.2f} s for the upload "
                f"(read {batch.read_s:.2f} s, model {timing.get('model', 0):.2f} s, "
                f"post {timing.get('post', 0) + timing.get('stiffness', 0):.2f} s)")
    if first.profile.value == "siemens":
        st.caption("Siemens profile: stored value = kPa × 100 (window 400/800 spans 0–8 kPa) is a working "
                   "assumption; change the unit profile in the sidebar if your scanner differs.")
    with st.expander(f"Staging table used: {table.title}"):
        st.dataframe(pd.DataFrame([{"stage": c_.stage.label, "from (kPa)": c_.lower_kpa, "source": c_.source}
                                   for c_ in table.cutoffs]), hide_index=True, width="stretch")
        st.caption("Below the F1 bound: F0. Edit the table on the *Model & settings* page.")

# ----------------------------------------------------------------------------- save + downloads
save_col, dl_col = st.columns([1, 2])
with save_col:
    kind = "review" if edits.is_reviewed else "auto"
    if st.button("Save to results store", type="primary", icon=":material/save:", disabled=store is None,
                 help="Adds a new revision; earlier revisions are kept"):
        try:
            number = store.save(reviewed, kind=kind, reviewer=edits.reviewer, comment=edits.comment,
                                manual_kpa=edits.manual_kpa, edits=edits.to_json())
            state["rv_saved"][skey] = number
            st.success(f"Saved as revision {number} of this study.", icon=":material/task_alt:")
        except Exception as exc:  # noqa: BLE001 - the reader must see why nothing was saved
            st.error(f"Not saved: {type(exc).__name__}: {exc}")
    elif skey in state["rv_saved"]:
        st.caption(f"Last saved in this session: revision {state['rv_saved'][skey]}.")
    if st.button("Sign off", icon=":material/verified:", disabled=store is None or not edits.reviewer.strip(),
                 help="Save this review as signed off by the reviewer named above (enter your name first)"):
        try:
            number = store.save(reviewed, kind="signed_off", reviewer=edits.reviewer, comment=edits.comment,
                                manual_kpa=edits.manual_kpa, edits=edits.to_json())
            state["rv_saved"][skey] = number
            state.setdefault("rv_signed", {})[skey] = edits.reviewer
            st.success(f"Signed off by {edits.reviewer} as revision {number}.", icon=":material/verified:")
        except Exception as exc:  # noqa: BLE001 - the reader must see why nothing was saved
            st.error(f"Not signed off: {type(exc).__name__}: {exc}")
with dl_col:
    stem = exports.file_stem(reviewed)
    signed_by = state.get("rv_signed", {}).get(skey)
    status = (f"signed off by {signed_by}" if signed_by else
              "reviewed, not signed off" if edits.is_reviewed
              else "automatic result, not reviewed")
    d = st.columns(3)
    d[0].download_button("Study CSV", exports.study_csv(reviewed, edits, state["rv_saved"].get(skey)),
                         f"{stem}_study.csv", "text/csv", icon=":material/download:", key="dl_study", on_click="ignore")
    d[1].download_button("Slices CSV", exports.slices_csv(reviewed), f"{stem}_slices.csv", "text/csv",
                         icon=":material/download:", key="dl_slices", on_click="ignore")
    d[2].download_button("PDF report", lambda: exports.pdf_bytes(reviewed, edits, status), f"{stem}_report.pdf",
                         "application/pdf", icon=":material/picture_as_pdf:", key="dl_pdf", on_click="ignore",
                         help=f"One page: images, per-slice table, stiffness, stage with cut-offs, QC; {status}")
    d = st.columns(3)
    try:
        seg, sr = exports.seg_and_sr_bytes(reviewed, verifying_observer=signed_by)
        d[0].download_button("DICOM SEG", seg, f"{stem}_roi_seg.dcm", "application/dicom",
                             icon=":material/download:", key="dl_seg", on_click="ignore")
        d[1].download_button("DICOM SR", sr, f"{stem}_sr.dcm", "application/dicom", icon=":material/download:",
                             key="dl_sr", on_click="ignore",
                             help="TID 1500 measurement report referencing this SEG and the source images"
                                  + ("; VERIFIED" if signed_by else "; UNVERIFIED until signed off"))
    except Exception as exc:  # noqa: BLE001 - shown, the rest of the page still works
        d[0].error(f"DICOM SEG/SR unavailable: {exc}")
    d[2].download_button("Overlay PNG", lambda: exports.overlay_png_bytes(reviewed), f"{stem}_overlay.png",
                         "image/png", icon=":material/download:", key="dl_png", on_click="ignore")
