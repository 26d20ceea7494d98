"""Audit log (admins): who viewed, edited, saved, signed off and exported what, changed a setting, signed in.

Thin: filters → :func:`mre_core.store.audit.read_audit` → table and CSV (:mod:`mre_core.app.audit_view`).
The log is append-only; this page only reads it. Access: ``view_audit``.
"""

from __future__ import annotations

import datetime as dt

import streamlit as st

from mre_core.access import Action
from mre_core.app import audit_view as av
from mre_core.app import auth
from mre_core.app.context import current_settings, get_store
from mre_core.store.audit import audit_choices, audit_csv, read_audit
from mre_core.store.results import StoreError

user = auth.page_guard(Action.VIEW_AUDIT)
st.title("Audit log")
try:
    store = get_store(current_settings())
except StoreError as exc:
    st.error(f"The results store cannot be opened: {exc}")
    st.stop()

users, areas = audit_choices(store)
today = dt.datetime.now(dt.UTC).date()
f = st.columns([2, 2, 2, 3])
who = f[0].selectbox("User", [av.ANY_USER, *users], key="au_user")
area = f[1].selectbox("Action", [av.ANY_ACTION, *areas], format_func=av.area_label, key="au_area")
dates = f[2].date_input("Dates (UTC)", (today - dt.timedelta(days=30), today), key="au_dates")
study = f[3].text_input("Study UID (or any text of the detail)", key="au_study")
kwargs = av.filter_kwargs(who, area, dates if isinstance(dates, (tuple, list)) else (dates,), study)
frame = read_audit(store, **kwargs)

st.caption(f"{len(frame)} entries" + (f" (the latest {av.MAX_ROWS})" if len(frame) >= av.MAX_ROWS else "")
           + ", oldest first. Append-only: the database refuses to change or remove an entry.")
st.dataframe(frame, hide_index=True, width="stretch", column_config={
    "detail": st.column_config.TextColumn(width="large")})
st.download_button("Audit log CSV", auth.audited(lambda: audit_csv(frame), user=user, store=store,
                                                 action=Action.VIEW_AUDIT, kind="audit_csv",
                                                 detail=f"audit_log.csv: {len(frame)} entries, {av.describe(kwargs)}"),
                   "audit_log.csv", "text/csv", icon=":material/download:", key="au_dl", on_click="ignore")
