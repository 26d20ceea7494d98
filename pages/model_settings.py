"""Model & settings: model card, SHA-256, device, staging table (editable, with sources), units, database.

Access: :func:`~mre_core.app.auth.page_guard` (``view_settings``: readers see it read-only); using an edited
staging table needs ``change_settings`` and is audited as ``settings:change``.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st
import torch

from mre_core.access import Action, PermissionDenied, allowed
from mre_core.analysis.staging import TABLES
from mre_core.app import auth
from mre_core.app import model_card_view as mcv
from mre_core.app.context import current_settings, get_model, get_store, model_choice_note, model_missing_message
from mre_core.model.network import WeightsError
from mre_core.store.results import StoreError
from mre_core.store.schema import SCHEMA_VERSION

user = auth.page_guard(Action.VIEW_SETTINGS)
may_change = allowed(user, Action.CHANGE_SETTINGS)
settings = current_settings()
st.title("Model & settings")

# ----------------------------------------------------------------------------- model card
st.markdown("#### Model")
st.caption(model_choice_note() + (" Admins choose the active model on the *Site training* page."
                                          if allowed(user, Action.MANAGE_MODELS) else ""))
card_path = settings.model_config_path
if not card_path.is_file():
    st.warning(model_missing_message(FileNotFoundError(f"{card_path} does not exist."), settings))
else:
    record = json.loads(card_path.read_text())
    try:
        model = get_model(settings)
        st.success(f"Weights `{settings.weights_path.name}` loaded on **{model.device}**; SHA-256 verified "
                   f"against the model card.", icon=":material/verified:")
    except (WeightsError, RuntimeError) as exc:
        model = None
        st.error(model_missing_message(exc, settings))
    c = st.columns([3, 2, 1, 1])  # the model name is long: give it room (no "unet_re…")
    c[0].markdown(f"**Model**  \n`{record.get('name', '?')}@{str(record.get('sha256', ''))[:12]}`")
    c[1].markdown(f"**Architecture**  \n`{record.get('arch', '?')}` (U-Net, ResNeXt50-32x4d encoder)")
    c[2].metric("Input", f"{record.get('input', {}).get('size', '?')} px")
    c[3].metric("Threshold", record.get("threshold", "?"))
    st.markdown(f"**SHA-256** `{record.get('sha256', '?')}`  \n**Saved** {record.get('saved_utc', '?')}  \n"
                f"**Folder** `{settings.weights_dir}`")
    card = record.get("card", {})
    if card:
        st.info(f"**Intended use.** {card.get('intended_use', mcv.DEFAULT_LIMITATIONS[-1])}",
                icon=":material/info:")
        st.markdown(f"**Training data.** {card.get('training_data', 'not recorded in the card')}")
        st.warning("**Limitations**\n" + "\n".join(f"- {x}" for x in mcv.limitations(card)),
                   icon=":material/warning:")
        for title, block in [("Test metrics", card.get("test_metrics")),
                             *[(f"On a style it was not trained on: {k}", v)
                               for k, v in (card.get("generalisation") or {}).items()]]:
            if isinstance(block, dict) and block:
                st.markdown(f"**{title}** — {mcv.provenance(block)}")
                st.dataframe(mcv.metrics_table(block), hide_index=True, width="stretch", column_config={
                    "value": st.column_config.NumberColumn(format="%.3f"),
                    "ci_low": st.column_config.NumberColumn("95% CI low", format="%.3f"),
                    "ci_high": st.column_config.NumberColumn("95% CI high", format="%.3f")})
        with st.expander("Full model card (raw JSON)"):
            st.json(card, expanded=1)
    with st.expander("Input specification"):
        st.json(record.get("input", {}))
cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
st.caption(f"Device setting: **{settings.device}** · CUDA GPU: {cuda} · torch {torch.__version__} · "
           f"CPU threads {torch.get_num_threads()}")

# ----------------------------------------------------------------------------- staging table
st.markdown("#### Staging table")
base_name = st.selectbox("Start from", list(TABLES), format_func=lambda n: TABLES[n].title, key="ms_base")
base = TABLES[base_name]
edited = st.data_editor(
    pd.DataFrame([{"stage": c.stage.label, "lower bound (kPa)": c.lower_kpa, "source": c.source}
                  for c in base.cutoffs]),
    hide_index=True, width="stretch", disabled=["stage", "source"] if may_change else True,
    key=f"ms_editor|{base_name}",
    column_config={"lower bound (kPa)": st.column_config.NumberColumn(min_value=0.1, max_value=30.0, step=0.05,
                                                                       format="%.2f", width="small"),
                   "stage": st.column_config.TextColumn(width="small"),
                   "source": st.column_config.TextColumn(width="large")},
)
note = st.text_input("Source of the edited cut-offs", "user-edited (local validation)", key="ms_source",
                     disabled=not may_change)
if not may_change:
    st.caption("Changing the staging table needs the admin role (the sidebar still chooses among the cited tables).")
if st.button("Use this table", icon=":material/check:", key="ms_apply", disabled=not may_change):
    try:
        bounds = [float(x) for x in edited["lower bound (kPa)"]]
        table = base.with_bounds(*bounds, source=note) if bounds != list(base.bounds_kpa) else base
        auth.act(user, Action.CHANGE_SETTINGS, auth.store_or_none(settings), "settings:change",
                 f"staging table {table.name}: " + ", ".join(f"{c.stage.label} >= {c.lower_kpa:g} kPa"
                                                             for c in table.cutoffs) + f" (source: {note})")
    except (ValueError, TypeError, PermissionDenied, auth.AuditUnavailable) as exc:
        st.error(f"Table not used: {exc}")
    else:
        if table.name == "custom":
            st.session_state["edited_staging"] = table
        st.session_state["pending_staging"] = table.name
        st.rerun()
st.caption(f"In use now: **{settings.staging.title}** — "
           + ", ".join(f"{c.stage.label} ≥ {c.lower_kpa:g} kPa" for c in settings.staging.cutoffs)
           + ". Below F1: F0. Significant fibrosis = F2 or above.")

# ----------------------------------------------------------------------------- unit profiles
st.markdown("#### Unit profiles")
st.dataframe(pd.DataFrame([
    {"profile": "siemens", "stored value": "kPa × 100", "kPa per unit": "0.01",
     "note": "working assumption (window 400/800 spans 0–8 kPa); used when Manufacturer contains SIEMENS"},
    {"profile": "ge", "stored value": "Pa", "kPa per unit": "0.001", "note": "used when Manufacturer contains GE"},
    {"profile": "rwvm", "stored value": "RealWorldValueMapping kPa / Pa", "kPa per unit": "from the header",
     "note": "wins over the manufacturer when present"},
    {"profile": "custom", "stored value": "user factor", "kPa per unit": str(settings.custom_kpa_per_unit or "—"),
     "note": "set in the sidebar"},
]), hide_index=True, width="stretch", column_config={"note": st.column_config.TextColumn(width="large")})
st.caption(f"Current choice: **{settings.profile}** (change it in the sidebar; the study is read again).")

# ----------------------------------------------------------------------------- database
st.markdown("#### Results store")
try:
    store = get_store(settings)
    counts = store.counts()
    st.markdown(f"**Location** `{store.display_url}`  \n**Schema version** {store.version()} "
                f"(this software: {SCHEMA_VERSION})  \n**Contents** {counts['studies']} studies, "
                f"{counts['revisions']} revisions, {counts['slices']} slices, {counts['audit']} audit entries")
    st.caption("Set `MRE_DB_URL` (or `db_url` in `.streamlit/secrets.toml`) to another SQLite file or a "
               "PostgreSQL URL. Saves never overwrite: each is a new revision.")
except StoreError as exc:
    st.error(f"The results store cannot be opened: {exc}")
