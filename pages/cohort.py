"""Cohort: every saved study, automatic vs manual agreement, stages, filters, downloads.

Access: :func:`~mre_core.app.auth.page_guard` (``view_cohort``). Without ``view_names`` (researchers) every
table and figure is de-identified (:func:`~mre_core.app.cohort_data.for_viewer`) and the exports are
de-identified ZIPs with their record; names and the links to a study need ``view_names`` / ``view_study``.
Every download is audited (``export:<kind>``).
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from mre_core.access import Action, allowed
from mre_core.app import auth, figures
from mre_core.app import cohort_data as cd
from mre_core.app.context import (
    current_settings,
    demo_root,
    get_model,
    get_store,
    inference_lock,
    model_missing_message,
)
from mre_core.app.demo import DEMO_DATASET, DEMO_PATIENTS, analyze_cohort, demo_cohort
from mre_core.model.network import WeightsError
from mre_core.store.results import StoreError

user = auth.page_guard(Action.VIEW_COHORT)
identified = allowed(user, Action.VIEW_NAMES)  # readers and admins; researchers see pseudonyms
settings = current_settings()
table = settings.staging
state = st.session_state
st.title("Cohort")
key, key_help = cd.research_key(auth.secrets_dict())
if not identified:
    st.info("**De-identified view.** Patient IDs and UIDs are keyed pseudonyms (`pt-…`, `st-…`), names and "
            "comments are left out and dates keep only their year; the exports are de-identified too."
            if key else f"**De-identified view.** Identifiers are hidden, and no table can be exported until a "
            f"de-identification key is set ({key_help}).", icon=":material/shield_person:")

try:
    store = get_store(settings)
except StoreError as exc:
    st.error(f"The results store cannot be opened: {exc}")
    st.stop()


def fmt(x: float, digits: int = 2) -> str:
    """A number for the page: "—" when missing, never "-0.00"."""
    if x is None or not math.isfinite(x):
        return "—"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def ci(pair: tuple[float, float], digits: int = 2, scale: float = 1.0) -> str:
    return f"95% CI {fmt(pair[0] * scale, digits)}–{fmt(pair[1] * scale, digits)}"


def audited(build, action: Action, kind: str, detail: str):
    """The download's data: checked and written to the audit log when clicked."""
    return auth.audited(build, user=user, store=store, action=action, kind=kind, detail=detail)


def research_download(container, label: str, frame, stem: str, kind: str, dl_key: str) -> None:
    """A de-identified ZIP (CSV + its de-identification record), or, without a key, the reason there is none."""
    if key is None:
        container.caption(f"{label} (de-identified): no key set — see below.")
        return
    container.download_button(f"{label} (de-identified)",
                              audited(lambda: cd.deidentified_zip(frame, key, stem)[0], Action.EXPORT_DEIDENTIFIED,
                                      kind, f"{stem}.zip: {len(frame)} rows, keyed pseudonyms"),
                              f"{stem}.zip", "application/zip", icon=":material/download:", key=dl_key,
                              on_click="ignore", help="A ZIP: the de-identified CSV and the record of how it was "
                                                      "de-identified (method, key fingerprint, columns)")


# ----------------------------------------------------------------------------- demo cohort + CSV import
c_demo, c_csv = st.columns(2)
with c_demo.container(border=True):
    st.markdown("**Phantom demo cohort** — synthetic studies with known manual values, analysed and saved "
                "(dataset “demo cohort”).")
    d1, d2 = st.columns([1, 1])
    may_save = allowed(user, Action.EDIT_REVIEW)  # the demo cohort is analysed and saved to the store
    n_patients = d1.number_input("Patients", 6, 60, DEMO_PATIENTS, step=6, key="co_n", disabled=not may_save,
                                 help="Each patient is generated, read and segmented: about 10–15 s per patient on a 2-core CPU with the "
                                      "full model, well under 1 s on a GPU; 60 is paper-like")
    if not may_save:
        st.caption("Loading the demo cohort saves results to the store: it needs the reader or admin role.")
    elif d2.button("Load demo cohort", icon=":material/science:", key="co_demo"):
        try:
            model = get_model(settings)
        except (WeightsError, RuntimeError) as exc:
            st.error(model_missing_message(exc, settings))
        else:
            auth.act(user, Action.EDIT_REVIEW, store, "cohort:load_demo",
                     f"{int(n_patients)} phantom patients, dataset {DEMO_DATASET!r}")
            bar = st.progress(0.0, "Generating phantom studies…")
            folder = demo_cohort(Path(demo_root()), n_patients=int(n_patients))
            with inference_lock():
                run = analyze_cohort(folder, model, settings, store, dataset=DEMO_DATASET,
                                     progress=lambda i, n, pid: bar.progress(i / n, f"Analysed {pid} ({i}/{n})"))
            bar.empty()
            # demo results are automatic (never reviewed): show them, and only them, until the user changes it
            state["co_review"], state["co_ds"] = "all", [DEMO_DATASET]
            st.success(f"Demo cohort: {run.saved} studies analysed and saved in {run.seconds:.0f} s. Showing the "
                       "demo dataset with unreviewed results included (filters below).")
            for s in run.failed:
                st.warning(f"Patient {s.file} not analysed: {s.reason}")

with c_csv.container(border=True):
    st.markdown("**Import manual measurements** — CSV with `study_uid` or `patient_id` and `manual_kpa`; "
                "matched on the ID, used on this page for this session.")
    manual_file = None
    if identified:
        manual_file = st.file_uploader("Manual values CSV", type=["csv"], key="co_csv", label_visibility="collapsed")
    else:
        st.caption("Matching on patient IDs needs a role that may see them (reader or admin).")

frame = store.latest_table()
if frame.empty:
    st.info("No saved studies yet. Analyse and save studies on **Review study**, or load the demo cohort above."
            if allowed(user, Action.EDIT_REVIEW) else "No saved studies yet: readers save them as they review.")
    st.stop()
frame = cd.prepare(frame)
frame["manual_source"] = frame["manual_kpa"].notna().map({True: "store", False: ""})
if manual_file is not None:
    try:
        imported = cd.merge_manual(frame, cd.read_manual_csv(manual_file.getvalue(), manual_file.name))
    except cd.ManualCsvError as exc:
        st.error(str(exc))
    else:
        frame = imported.frame
        msg = f"{manual_file.name}: {imported.matched} row(s) matched."
        if imported.unmatched.empty:
            st.success(msg)
        else:
            st.warning(f"{msg} {len(imported.unmatched)} row(s) not used:")
            st.dataframe(imported.unmatched, hide_index=True)

# ----------------------------------------------------------------------------- filters
with st.container(border=True):
    f = st.columns([2, 2, 2, 1.2]) + st.columns([2, 3])  # two rows: the date range and the status fit
    datasets = sorted(x for x in frame["dataset"].unique())
    pick_ds = f[0].multiselect("Dataset", datasets, key="co_ds", format_func=lambda x: x or "(uploaded)")
    pick_mf = f[1].multiselect("Manufacturer", sorted(frame["manufacturer"].unique()), key="co_mf")
    pick_st = f[2].multiselect("Automatic stage", list(cd.STAGES), key="co_st")
    qc = f[3].selectbox("QC", ["all", "ok", "flagged"], key="co_qc")
    days = frame["study_day"].dropna()
    dates = None
    if identified and not days.empty and days.min() < days.max():  # exact dates are identifying
        dates = f[4].date_input("Study date", (days.min().date(), days.max().date()), key="co_dates")
        dates = tuple(dates) if isinstance(dates, (tuple, list)) and len(dates) == 2 else None
    review_options = {"reviewed": "Reviewed or signed off", "signed_off": "Signed off only",
                      "no_unreviewed_inbox": "Reviewed + uploaded + demo (no unreviewed inbox results)",
                      "all": "All, including unreviewed automatic results"}
    review = f[5].selectbox("Review status", list(review_options), format_func=review_options.get, key="co_review",
                            help="By default only studies a reader has reviewed or signed off are counted")
shown = cd.apply_filters(frame, datasets=pick_ds, manufacturers=pick_mf, stages=pick_st, qc=qc, dates=dates,
                         review=review)
st.caption(f"{len(shown)} of {len(frame)} saved studies · staging table: {table.title}")
compare = st.radio("Agreement of", list(cd.COMPARISONS), format_func=cd.COMPARISONS.get, horizontal=True,
                   key="co_compare", help="The automatic value is the model's output before any reader edit; the "
                                          "reviewed value is the latest saved one")

stats = cd.cohort_stats(shown, table, value=compare)
if stats is None:
    st.info("Agreement statistics need at least 3 studies with both an automatic and a manual value "
            "(enter manual values on Review, import a CSV above, or load the demo cohort).")
else:
    rep = stats.report
    p, ba, icc, sig = rep.pearson, rep.bland_altman, rep.icc, rep.significant
    st.markdown(f"**Comparing {cd.COMPARISONS[compare]}** ({rep.n} studies with both values; 95 % confidence "
                "intervals: Fisher z for r, F for ICC, t for the bias, Bland & Altman 1999 for the limits, Wilson "
                "for sensitivity and specificity, patient bootstrap for kappa and AUC)")
    m = st.columns(7)
    m[0].metric("Pearson r", f"r = {fmt(p.r, 3)}", f"95% CI {fmt(p.ci_low, 3)}–{fmt(p.ci_high, 3)}",
                delta_color="off", delta_arrow="off", help=f"p = {p.p:.2g}, n = {p.n}")
    m[1].metric("ICC(A,1)", fmt(icc.value, 3), f"95% CI {fmt(icc.ci_low, 3)}–{fmt(icc.ci_high, 3)}",
                delta_color="off", delta_arrow="off")
    m[2].metric("Bias (value − manual)", f"{fmt(ba.bias)} kPa", ci((ba.bias_ci_low, ba.bias_ci_high)),
                delta_color="off", delta_arrow="off",
                help=f"Limits of agreement {fmt(ba.loa_low)} kPa ({ci(ba.loa_low_ci)}) to {fmt(ba.loa_high)} kPa "
                     f"({ci(ba.loa_high_ci)})")
    m[3].metric("Weighted kappa (stages)", fmt(rep.kappa_linear, 3), ci(rep.kappa_ci, 3),
                delta_color="off", delta_arrow="off", help=f"same stage {rep.stage_agreement:.0%}")
    m[4].metric(f"F2 sensitivity (≥ {sig.threshold_kpa:g} kPa)", fmt(sig.sensitivity * 100, 0) + " %",
                ci(sig.sensitivity_ci, 0, 100), delta_color="off", delta_arrow="off", help=f"TP {sig.tp} / FN {sig.fn}")
    m[5].metric("F2 specificity", fmt(sig.specificity * 100, 0) + " %", ci(sig.specificity_ci, 0, 100),
                delta_color="off", delta_arrow="off", help=f"TN {sig.tn} / FP {sig.fp}")
    m[6].metric("F2 AUC", fmt(sig.auc, 3), ci(sig.auc_ci, 3), delta_color="off", delta_arrow="off",
                help="Area under the ROC curve of the value for manual ≥ F2")
    st.caption(f"Limits of agreement {fmt(ba.loa_low)} kPa ({ci(ba.loa_low_ci)}) to {fmt(ba.loa_high)} kPa "
               f"({ci(ba.loa_high_ci)}).")
    st.caption(f"Pearson r = {p.r:.3f} (95% CI {p.ci_low:.3f}–{p.ci_high:.3f}, p = {p.p:.2g}, n = {p.n}); "
               f"mean absolute error {rep.mae_kpa:.2f} kPa. Manual = reference for stages and F2.")
    paired = cd.for_viewer(stats.paired, identified, key)  # the figures' hover names each study
    a, b = st.columns(2)
    a.plotly_chart(figures.scatter_figure(paired, stats.slope, stats.intercept), key="co_scatter",
                   config={"displaylogo": False})
    b.plotly_chart(figures.bland_altman_figure(paired, ba), key="co_ba", config={"displaylogo": False})
    a, b = st.columns(2)
    with a:
        st.markdown("**Stage confusion** (rows manual, columns automatic)")
        st.plotly_chart(figures.confusion_figure(rep.confusion), key="co_cm", config={"displaylogo": False})
    with b:
        value_label = "automatic" if compare == "auto_kpa" else "reviewed"
        st.markdown(f"**{value_label.capitalize()} stiffness by manual stage**")
        st.plotly_chart(figures.stage_box_figure(stats.paired, table, value_label), key="co_box",
                        config={"displaylogo": False})
    with st.container(border=True):
        from mre_core.outputs.cohort_figures import FIGURES, figure_bytes

        e = st.columns([2, 1, 1])
        kind = e[0].selectbox("Figure for a paper", list(FIGURES), format_func=FIGURES.get, key="co_fig")
        fmt_ = e[1].radio("Format", ["svg", "pdf"], horizontal=True, key="co_fig_fmt")
        label = "automatic" if compare == "auto_kpa" else "reviewed"
        e[2].download_button(f"Download {fmt_.upper()}",
                             audited(lambda: figure_bytes(kind, stats.paired, rep, fmt_, label),
                                     Action.EXPORT_DEIDENTIFIED, "figure", f"cohort_{kind}.{fmt_} ({rep.n} studies)"),
                             f"cohort_{kind}.{fmt_}", "image/svg+xml" if fmt_ == "svg" else "application/pdf",
                             icon=":material/download:", key="co_dl_fig", on_click="ignore")
    st.markdown("**Per stage** (manual stage as reference)")
    st.dataframe(stats.per_stage, hide_index=True, width="stretch", column_config={
        "manual_stage": "manual stage", "manual_kpa_mean": st.column_config.NumberColumn("manual kPa (mean)", format="%.2f"),
        "auto_kpa_mean": st.column_config.NumberColumn("value kPa (mean)", format="%.2f"),
        "bias_kpa": st.column_config.NumberColumn("bias kPa", format="%.2f"),
        "same_stage_fraction": st.column_config.NumberColumn("same stage", format="percent"),
    })

# ----------------------------------------------------------------------------- automatic vs reader ROIs
overlap, ov = cd.roi_overlap(store, shown["study_uid"])
st.markdown("#### Automatic vs reader ROIs")
if ov is None:
    st.caption("Dice and IoU between the automatic and the reader's ROI appear here for studies that have both "
               "(a study reviewed on Review keeps the model's result as it came out next to the reader's).")
else:
    o = st.columns(4)
    o[0].metric("Dice (mean over slices)", fmt(ov.dice_mean, 3), ci(ov.dice_ci, 3), delta_color="off",
                delta_arrow="off", help="95 % CI: bootstrap over patients (2,000 resamples)")
    o[1].metric("IoU", fmt(ov.iou_mean, 3), ci(ov.iou_ci, 3), delta_color="off", delta_arrow="off")
    o[2].metric("Studies / slices", f"{ov.n_patients} / {ov.n_slices}",
                help="Slices the reader left out, or where both ROIs are empty, are not counted")
    o[3].metric("Slices the reader changed", f"{ov.changed_slices} of {ov.n_slices}")
    st.plotly_chart(figures.dice_figure(cd.for_viewer(overlap, identified, key)), key="co_dice",
                    config={"displaylogo": False})
    if identified:
        st.download_button("ROI overlap CSV (per slice)",
                           audited(lambda: cd.csv_bytes(overlap), Action.EXPORT_IDENTIFIED, "roi_overlap_csv",
                                   f"cohort_roi_overlap.csv: {len(overlap)} slices"),
                           "cohort_roi_overlap.csv", "text/csv", icon=":material/download:", key="co_dl_overlap",
                           on_click="ignore")
    else:
        research_download(st, "ROI overlap (per slice)", overlap, "cohort_roi_overlap", "roi_overlap_deid",
                          "co_dl_overlap")

# ----------------------------------------------------------------------------- studies table + downloads
st.markdown("#### Studies")
view = cd.for_viewer(shown, identified, key)
if allowed(user, Action.VIEW_STUDY):
    view = view.assign(open=[f"./?{urlencode({'study_uid': s, 'series_uid': r})}"
                             for s, r in zip(shown["study_uid"], shown["series_uid"])])
cols = [c for c in ("open", "patient_id", "study_date", "manufacturer", "dataset", "auto_kpa", "reviewed_kpa",
                    "manual_kpa", "stage", "significant_fibrosis", "qc_status", "qc_flags", "revision",
                    "review_status", "reviewer", "comment", "model_name") if c in view]
st.dataframe(view[cols], hide_index=True, width="stretch", column_config={
    "open": st.column_config.LinkColumn("Review", display_text="open", help="Open the saved study on Review"),
    "auto_kpa": st.column_config.NumberColumn("auto kPa", format="%.2f", help="The model's value before any edit"),
    "reviewed_kpa": st.column_config.NumberColumn("reviewed kPa", format="%.2f", help="The latest saved value"),
    "manual_kpa": st.column_config.NumberColumn("manual kPa", format="%.2f"),
})
d = st.columns(5)
if allowed(user, Action.EXPORT_IDENTIFIED):
    names = d[4].checkbox("Include patient names", key="co_names",
                          help="Identifying data: leave off for research exports") \
        if allowed(user, Action.VIEW_NAMES) else False
    d[0].download_button("Cohort CSV", audited(lambda: cd.csv_bytes(cd.cohort_export(shown, table, identifying=names)),
                                               Action.EXPORT_IDENTIFIED, "cohort_csv",
                                               f"cohort.csv: {len(shown)} studies, names "
                                               f"{'included' if names else 'left out'}"),
                         "cohort.csv", "text/csv", icon=":material/download:", key="co_dl_csv", on_click="ignore")
research_download(d[1], "Cohort", cd.cohort_export(shown, table), "cohort", "cohort_deid", "co_dl_deid")
if key is None:
    st.caption(f"De-identified exports need a de-identification key: {key_help}.")
if stats is not None:
    d[2].download_button("Statistics summary CSV",
                         audited(lambda: cd.csv_bytes(stats.summary), Action.EXPORT_DEIDENTIFIED, "stats_csv",
                                 f"cohort_stats.csv: {rep.n} studies"),
                         "cohort_stats.csv", "text/csv", icon=":material/download:", key="co_dl_stats",
                         on_click="ignore")
    d[3].download_button("Per-stage CSV",
                         audited(lambda: cd.csv_bytes(stats.per_stage), Action.EXPORT_DEIDENTIFIED, "per_stage_csv",
                                 f"cohort_per_stage.csv: {rep.n} studies"),
                         "cohort_per_stage.csv", "text/csv", icon=":material/download:", key="co_dl_stage",
                         on_click="ignore")
