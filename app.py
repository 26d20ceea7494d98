"""MRE Liver Review — the web app's router: page config, sign-in, the settings sidebar, navigation by role.

Run with ``make run`` (``streamlit run app.py``). Pages live in ``pages/`` and call
``mre_core`` for every computation. Who may open which page is :func:`mre_core.app.auth.pages_for`;
each page checks it again itself (:func:`mre_core.app.auth.page_guard`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mre_core.app import auth
from mre_core.app.context import banner, base_settings, staging_tables
from mre_core.app.warm import warm_up
from mre_core.config import PROFILES

HERE = Path(__file__).resolve().parent
PROFILE_LABELS = {
    "auto": "Auto (from the DICOM headers)",
    "siemens": "Siemens: stored = kPa × 100",
    "ge": "GE: stored = Pa",
    "custom": "Custom factor",
}


def sidebar_settings() -> None:
    """Build this run's Settings from env/secrets and the sidebar; keep them in session state."""
    base = base_settings()
    with st.sidebar:
        st.header("Settings")
        profile = st.selectbox("Unit profile", PROFILES, index=PROFILES.index(base.profile),
                               format_func=PROFILE_LABELS.get, key="sb_profile",
                               help="How stored pixel values become kPa. Siemens kPa × 100 is a working "
                                    "assumption (window 400/800 spans 0–8 kPa); check it against your scanner.")
        factor = None
        if profile == "custom":
            factor = st.number_input("kPa per stored unit", min_value=1e-6, value=base.custom_kpa_per_unit or 0.01,
                                     format="%.6f", key="sb_factor")
        tables = staging_tables()
        names = list(tables)
        pending = st.session_state.pop("pending_staging", None)  # set by the Model & settings page
        if pending in names:
            st.session_state["sb_staging"] = pending
        if st.session_state.get("sb_staging") not in names:
            st.session_state["sb_staging"] = base.staging.name if base.staging.name in names else names[0]
        staging = st.selectbox("Staging table", names, format_func=lambda n: tables[n].title, key="sb_staging")
        device = st.selectbox("Device", ("auto", "cpu", "cuda"), index=("auto", "cpu", "cuda").index(base.device),
                              key="sb_device", help="auto = CUDA when available, else CPU")
    try:
        settings = base.replace(profile=profile, custom_kpa_per_unit=factor, staging=tables[staging], device=device)
    except ValueError as exc:
        st.sidebar.error(str(exc))
        settings = base
    st.session_state["settings"] = settings


def run() -> None:
    st.set_page_config(page_title="MRE Liver Review", page_icon=":material/monitor_heart:", layout="wide")
    user = auth.gate()  # the sign-in page (or the refusal to serve) and st.stop() when nobody may see data
    page = st.navigation(auth.navigation(user, HERE / "pages"))  # the role's pages; other URLs: a refusal
    auth.sidebar_user(user)
    sidebar_settings()
    banner()
    page.run()


if __name__ == "__main__":
    run()
    warm_up()  # once per process (already done by `make run`): later runs' garbage collection skips these modules
