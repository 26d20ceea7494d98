"""Site training: the site teaches the model its scanners, protocol and readers, and decides which model is used.

Reader ROIs (reviewed studies, imported SEG/RTSTRUCT) → train from the store as a background job (progress,
cancel, resume) → held-out comparison with the active model, with CIs → activate (gated) or roll back → re-analyse
the cohort with any model. Access: ``manage_models`` (admins); every action is checked again in
:mod:`mre_core.app.site_training_view` and audited.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from mre_core.access import Action, PermissionDenied
from mre_core.app import auth
from mre_core.app import site_training_view as view
from mre_core.app.context import current_settings, get_inbox, get_store, model_choice_note
from mre_core.model.site import SiteTrainParams
from mre_core.store import models as registry
from mre_core.store.labels import label_summary
from mre_core.store.results import StoreError
from mre_core.workflow import training_job as jobs

user = auth.page_guard(Action.MANAGE_MODELS)
settings = current_settings()
st.title("Site training & models")
st.caption("The shipped weights were trained on synthetic phantoms only. Train them on this site's reviewed "
           "studies and existing reads, compare on held-out studies of this site, then decide which model the "
           "app uses. Research and decision support; not a certified medical device.")
try:
    store, inbox = get_store(settings), get_inbox(settings)
except StoreError as exc:
    st.error(f"The results store cannot be opened: {exc}")
    st.stop()
registry.ensure_shipped(store, settings)
active = registry.active(store)
active_version = active.version if active else ""

tab_models, tab_labels, tab_train, tab_reanalyse = st.tabs(
    ["Models", "Reader ROIs", "Train", "Re-analyse the cohort"])

# ----------------------------------------------------------------------------- models
with tab_models:
    why = model_choice_note()
    st.markdown(f"**Active model** `{active_version or 'none registered'}` — {why}")
    entries = registry.list_models(store)
    if entries:
        st.dataframe(view.models_frame(entries, active_version), hide_index=True, width="stretch")
        pick = st.selectbox("Model", [e.version for e in entries], key="st_model_pick",
                            format_func=lambda v: f"{v} (active)" if v == active_version else v)
        entry = next(e for e in entries if e.version == pick)
        st.markdown(f"**Origin** {entry.origin} · **created** {entry.created_utc} by {entry.created_by or '—'} · "
                    f"**fine-tuned from** `{entry.parent_version or '—'}` · **SHA-256** `{entry.sha256}`")
        heldout = (entry.metrics or {}).get("heldout")
        if heldout:
            base_v = (heldout.get("baseline") or {}).get("version", "—")
            st.markdown(f"**Held-out comparison** on {heldout.get('n_studies')} studies "
                        f"({heldout.get('n_slices')} slices) of this site, never trained on: this model vs "
                        f"`{base_v}`. 95 % CIs: bootstrap over patients (Dice, IoU, kappa), Wilson (F2), Fisher "
                        "z (r), ICC(A,1) F-based.")
            st.dataframe(view.comparison_display(heldout), hide_index=True, width="stretch")
            c1, c2 = st.columns(2)
            c1.dataframe(view.iou_by_stage_frame(heldout), hide_index=True, width="stretch")
            c2.dataframe(view.safety_frame(heldout), hide_index=True, width="stretch")
            st.caption("ROI safety at a site: there is no liver mask, so the share of automatic ROI pixels outside "
                       "the reader's ROI stands in for the share outside the liver.")
            st.download_button("Comparison CSV", auth.audited(
                lambda h=heldout: view.comparison_frame(h).to_csv(index=False).encode(), user=user, store=store,
                action=Action.MANAGE_MODELS, kind="model_comparison_csv", detail=entry.version),
                file_name=f"comparison_{entry.name}.csv", mime="text/csv", key="st_cmp_csv")
        elif entry.origin == "site":
            st.warning("No held-out comparison is recorded for this model.")
        if entry.version != active_version:
            check = registry.activation_check(store, entry.version)
            if check.ok:
                st.success("It is at least as good as the active model on its held-out studies (Dice and F2 "
                           "specificity).", icon=":material/check_circle:")
            else:
                st.warning("Activation needs an override:\n" + "\n".join(f"- {r}" for r in check.reasons),
                           icon=":material/warning:")
            override = (not check.ok) and st.checkbox("Override: activate it anyway (recorded with the reason)",
                                                      key="st_override")
            reason = st.text_input("Reason (recorded in the audit log)", key="st_reason")
            if st.button("Activate this model", key="st_activate", type="primary",
                         disabled=not check.ok and not (override and reason.strip())):
                try:
                    view.activate_model(entry.version, store, user, reason=reason, override=bool(override))
                except (PermissionDenied, ValueError) as exc:
                    st.error(f"Not activated: {exc}")
                else:
                    st.rerun()
        history = registry.activation_history(store)
        if history:
            st.markdown("**Activation history**")
            st.dataframe(pd.DataFrame(history), hide_index=True, width="stretch")
            rb_reason = st.text_input("Reason for rolling back", key="st_rb_reason")
            if st.button("Roll back to the previous model", key="st_rollback", icon=":material/undo:"):
                try:
                    view.rollback_model(store, user, rb_reason)
                except (PermissionDenied, ValueError) as exc:
                    st.error(f"Not rolled back: {exc}")
                else:
                    st.rerun()

summary = label_summary(store)  # every labelled study, once per run (both tabs below use it)

# ----------------------------------------------------------------------------- labels
with tab_labels:
    st.markdown(f"**{len(summary)} labelled studies** (reader ROIs): reviews signed off or saved in the app, and "
                "imported reads. A slice the reader left out of the study value is not used as a label.")
    if not summary.empty:
        st.dataframe(summary, hide_index=True, width="stretch")
    st.markdown("**Import existing reads** — DICOM SEG (manual or semi-automatic segments) or RTSTRUCT that "
                "reference a stored study's elastogram images. Put the study's images with them if the study "
                "is not in the store yet.")
    reader_default = st.text_input("Reader, when a file names none", key="st_import_reader")
    uploads = st.file_uploader("SEG / RTSTRUCT files (and images)", accept_multiple_files=True, key="st_reads")
    if st.button("Import", key="st_import", disabled=not uploads):
        try:
            report = view.import_reads([(u.name, u.getvalue()) for u in uploads], store, inbox, settings, user,
                                       reader_default.strip() or None)
        except PermissionDenied as exc:
            st.error(str(exc))
        else:
            st.session_state["st_import_report"] = report
            st.rerun()  # the tables above and the Train tab then count the new reads
    report = st.session_state.get("st_import_report")
    if report is not None:
        st.info(report.describe())
        if report.imported:
            st.dataframe(pd.DataFrame([vars(o) for o in report.imported]), hide_index=True, width="stretch")
        if report.unmatched:
            st.warning(f"{len(report.unmatched)} file(s) not imported:")
            st.dataframe(pd.DataFrame(report.unmatched, columns=["file", "reason"]), hide_index=True,
                         width="stretch")

# ----------------------------------------------------------------------------- train
with tab_train:
    c = st.columns(4)
    d_from = c[0].date_input("Studies from", value=None, key="st_from")
    d_to = c[1].date_input("Studies up to", value=None, key="st_to")
    scanners = c[2].multiselect("Scanner", sorted(set(summary.get("manufacturer", pd.Series(dtype=str)))),
                                key="st_scanners")
    readers = c[3].multiselect("Reader", sorted(set(summary.get("reader", pd.Series(dtype=str)))),
                               key="st_readers")
    c = st.columns(4)
    init = c[0].radio("Start from", ("active", "scratch"), key="st_init",
                      format_func={"active": "the active model (fine-tune)", "scratch": "scratch"}.get)
    epochs = c[1].number_input("Epochs", 1, 64, SiteTrainParams().epochs, key="st_epochs")
    seed = c[2].number_input("Split seed", 0, 10_000, 0, key="st_seed")
    ymd = (lambda d: d.strftime("%Y%m%d") if isinstance(d, dt.date) else "")  # noqa: E731
    params = SiteTrainParams(date_from=ymd(d_from), date_to=ymd(d_to), manufacturers=tuple(scanners),
                             readers=tuple(readers), init=init, epochs=int(epochs), seed=int(seed))
    filtered = (label_summary(store, date_from=params.date_from or None, date_to=params.date_to or None,
                              manufacturers=params.manufacturers or None, readers=params.readers or None)
                if any((params.date_from, params.date_to, params.manufacturers, params.readers)) else summary)
    chosen = list(filtered.itertuples(index=False))  # the split needs study_uid and patient_id only
    sentence, split = view.preview_split(chosen, params, active.heldout if active else ())
    (st.info if split is not None else st.warning)(sentence)
    st.caption("Settings: AdamW lr 3e-4, batch 8, BCE + soft Dice, cosine schedule, augmentation without "
               "left-right flips — those the shipped model was fine-tuned with; the input size of the starting "
               f"model. Runs on {settings.device} in its own process: closing this page does not stop it.")
    busy = [j for j in jobs.list_jobs(store, 5) if j.status in jobs.ACTIVE_STATES]
    if st.button("Start training", key="st_start", type="primary", disabled=split is None or bool(busy)):
        try:
            view.start_training(params, store, settings, user)
        except (PermissionDenied, RuntimeError, ValueError) as exc:
            st.error(f"Not started: {exc}")
        else:
            st.rerun()

    latest = jobs.list_jobs(store, 1)
    st.session_state["st_job_at_run"] = (latest[0].id, latest[0].status) if latest else None

    @st.fragment(run_every=3)
    def job_panel() -> None:
        recent = jobs.list_jobs(store, 5)
        if not recent:
            st.caption("No training job yet.")
            return
        job = recent[0]
        ended = job.status in (jobs.FINISHED, jobs.FAILED, jobs.CANCELLED, jobs.INTERRUPTED)
        if ended and st.session_state.get("st_job_at_run") != (job.id, job.status):
            if job.model_version:
                st.session_state["st_model_pick"] = job.model_version  # the Models tab opens on the new model
            st.rerun()  # the whole page: the Models tab then lists the new model, the Start button is enabled
        p = job.progress
        st.markdown(f"**Training job {job.id}** — {job.status} · started by {job.created_by or '—'} "
                    f"at {job.created_utc}")
        st.write(job.describe())
        if p.get("epochs"):
            done = p.get("epoch", 0)
            running = (p.get("slices_done", 0) / p["slices_total"]) if p.get("slices_total") else 0.0
            frac = min(1.0, (done + (running if job.status == jobs.RUNNING and done < p["epochs"] else 0))
                       / p["epochs"])
            st.progress(frac, text=f"epoch {done}/{p['epochs']}"
                        + (f" · loss {p['running_loss']:.3f}" if p.get("running_loss") is not None else ""))
        log = view.epoch_log_frame(p)
        if not log.empty:
            st.line_chart(log.set_index("epoch")[["train_loss", "val_loss", "val_dice"]], height=200)
        b = st.columns(3)
        if job.status in (jobs.QUEUED, jobs.RUNNING) and b[0].button("Cancel", key=f"st_cancel_{job.id}"):
            view.cancel_training(job.id, store, user)
            st.rerun()
        if job.resumable and b[1].button("Resume", key=f"st_resume_{job.id}"):
            try:
                view.resume_training(job.id, store, settings, user)
            except (PermissionDenied, ValueError) as exc:
                st.error(str(exc))
            st.rerun()
        if job.status == jobs.FINISHED and job.model_version:
            st.success(f"Registered as `{job.model_version}` (not active): compare and activate it on the "
                       "Models tab.", icon=":material/check_circle:")
        if job.status == jobs.INTERRUPTED:
            st.warning("The training process is no longer running (the machine restarted or it was killed). "
                       "Resume continues from the last whole epoch.")
        for left in p.get("left_out", []):
            st.caption(f"left out: {left['study_uid']} — {left['reason']}")
        if job.log_path.is_file():
            with st.expander("Process log (last lines)"):
                st.code("\n".join(job.log_path.read_text(errors="replace").splitlines()[-15:]) or "(empty)")

    job_panel()

# ----------------------------------------------------------------------------- re-analyse
with tab_reanalyse:
    versions = [e.version for e in registry.list_models(store)]
    st.markdown("Run a model on every stored study whose images are kept and compare with the stored automatic "
                "result and the reader's value. Nothing is saved: the comparison is the result.")
    version = st.selectbox("Model", versions, key="st_re_version") if versions else None
    if version and st.button("Re-analyse the cohort", key="st_re_go"):
        bar = st.progress(0.0, text="re-analysing")
        try:
            rep = view.reanalyse_cohort(version, store, inbox, settings, user,
                                        progress=lambda i, n: bar.progress(i / max(n, 1), text=f"{i}/{n} studies"))
        except (PermissionDenied, ValueError) as exc:
            st.error(str(exc))
        else:
            st.session_state["st_re_report"] = rep
    rep = st.session_state.get("st_re_report")
    if rep is not None:
        st.json(rep.summary, expanded=False)
        st.dataframe(rep.table, hide_index=True, width="stretch")
        for uid, why in rep.skipped:
            st.caption(f"not re-analysed: {uid} — {why}")
        from mre_core.workflow.reanalyse import comparison_csv

        st.download_button("Comparison CSV", auth.audited(lambda r=rep: comparison_csv(r), user=user, store=store,
                                                          action=Action.MANAGE_MODELS, kind="reanalysis_csv"),
                           file_name="reanalysis.csv", mime="text/csv", key="st_re_csv")
