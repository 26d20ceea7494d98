"""Streamlit glue shared by ``app.py`` and the pages: settings, cached model and store, banner.

The only module of ``mre_core`` that imports Streamlit. Settings are built, in order, from
``MRE_*`` environment variables (:meth:`Settings.from_env`), ``.streamlit/secrets.toml``
(a ``[mre]`` table, or top-level keys named like :class:`~mre_core.config.Settings` fields),
then the sidebar (unit profile, staging table, device); :func:`current_settings` then puts the model
registry's active model in place of the default one (:func:`mre_core.store.models.active_settings`, asked on
every run, so an activation applies on the next run; :func:`model_choice_note` says which model is used). The
model and the store are ``st.cache_resource`` objects shared by every browser session; inference is serialised
by a lock because one torch module is not safe to drive from two threads at once.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import streamlit as st

from mre_core.analysis.staging import TABLES, StagingTable
from mre_core.config import Settings
from mre_core.outputs.wording import intended_use, model_card

SECRET_KEYS = ("db_url", "weights_dir", "model_name", "device", "profile")


def secret_overrides() -> dict[str, Any]:
    """Settings fields found in ``.streamlit/secrets.toml`` (empty when there is no secrets file)."""
    try:
        secrets = dict(st.secrets)
    except Exception:  # noqa: BLE001 - no secrets file: Streamlit raises on first access
        return {}
    section = secrets.get("mre", secrets)
    out: dict[str, Any] = {k: section[k] for k in SECRET_KEYS if k in section}
    if "weights_dir" in out:
        out["weights_dir"] = Path(out["weights_dir"])
    return out


def base_settings() -> Settings:
    """Environment, then secrets (no sidebar yet)."""
    return Settings.from_env(**secret_overrides())


def _resolve_model(settings: Settings) -> tuple[Settings, str]:
    """``settings`` using the registry's active model (:func:`mre_core.store.models.active_settings`), and the
    sentence saying which model is used; a store that cannot be read leaves the configured model, and says so."""
    from mre_core.store.models import active_settings

    try:
        return active_settings(settings, get_store(settings))
    except Exception as exc:  # noqa: BLE001 - a store error must not break the page: keep the configured model
        return settings, (f"The configured model {settings.model_name} in {settings.weights_dir} is used: the "
                          f"model registry could not be read ({type(exc).__name__}: {exc}).")


def model_choice_note(settings: Settings | None = None) -> str:
    """One sentence for the pages: which model this run analyses with, and why (registry, configuration or a
    fallback). Without ``settings``: this run's settings before the registry is applied (what
    :func:`current_settings` resolves; passing its already-resolved result would read as an explicit choice)."""
    if settings is None:
        s = st.session_state.get("settings")
        settings = s if isinstance(s, Settings) else base_settings()
    return _resolve_model(settings)[1]


def staging_tables() -> dict[str, StagingTable]:
    """The selectable staging tables: the cited ones plus the user's edited table, if any."""
    tables = dict(TABLES)
    edited = st.session_state.get("edited_staging")
    if isinstance(edited, StagingTable):
        tables[edited.name] = edited
    return tables


def current_settings() -> Settings:
    """The settings of this run (set by ``app.py``'s sidebar; the base settings when run without it), with the
    model registry's active model when they name the default model (one query per call, so an activation
    applies on the next run; the cached model is keyed by the weights, so it is loaded once per model)."""
    s = st.session_state.get("settings")
    return _resolve_model(s if isinstance(s, Settings) else base_settings())[0]


@st.cache_resource(show_spinner="Loading the segmentation model (once per server)…")
def _cached_model(weights_dir: str, name: str, device: str, stamp: tuple[float, int]) -> Any:
    from mre_core.model.network import load_model

    return load_model(Path(weights_dir), name, device)


def model_stamp(settings: Settings) -> tuple[float, int]:
    """Modification time and size of the weights file (so replaced weights are reloaded)."""
    p = settings.weights_path
    if not p.is_file():
        return (0.0, 0)
    stat = p.stat()
    return (stat.st_mtime, stat.st_size)


def get_model(settings: Settings) -> Any:
    """The cached :class:`~mre_core.model.network.LoadedModel`; raises :class:`~mre_core.model.network.WeightsError`."""
    return _cached_model(str(settings.weights_dir), settings.model_name, settings.device, model_stamp(settings))


@st.cache_resource
def inference_lock() -> threading.Lock:
    return threading.Lock()


@st.cache_resource(show_spinner=False)
def _cached_store(url: str) -> Any:
    from mre_core.store.results import Store

    return Store(url)


def get_store(settings: Settings) -> Any:
    """The cached :class:`~mre_core.store.results.Store` for ``settings.db_url``; raises StoreError."""
    return _cached_store(settings.db_url)


def get_inbox(settings: Settings) -> Any:
    """The DICOM inbox (listener / watch folder) that shares the results store; raises StoreError."""
    from mre_core.store.inbox import Inbox

    return Inbox(get_store(settings), settings.inbox_dir)


@st.cache_resource(show_spinner=False)
def demo_root() -> str:
    """A folder for demo studies and cohorts, kept while the server runs: ``MRE_DEMO_DIR`` when set (``make run``
    sets it and writes the demo files there in the background: :mod:`mre_core.app.demo_files`), else a new
    temporary folder."""
    given = os.environ.get("MRE_DEMO_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return given
    return tempfile.mkdtemp(prefix="mre_demo_")


def banner() -> None:
    """The intended-use statement, on every page, naming what the model in use was trained on."""
    settings = current_settings()
    st.info(f"**Intended use.** {intended_use(model_card(settings.weights_dir, settings.model_name))}",
            icon=":material/info:")


def model_missing_message(exc: Exception, settings: Settings) -> str:
    """Why no model could be loaded and how to fix it, in words for the page."""
    return (
        f"**The segmentation model could not be loaded.** {exc}\n\n"
        f"Expected `{settings.weights_path}` and `{settings.model_config_path}`. Trained weights ship with the "
        "repository once training has finished; until then, train them with `python -m mre_core train`, or point "
        "`MRE_WEIGHTS_DIR` / `MRE_MODEL_NAME` (or the *Model & settings* page) at a folder that has them. "
        "Nothing else in the app needs the model: saved studies and the cohort page still work."
    )


__all__ = ["banner", "base_settings", "current_settings", "demo_root", "get_model", "get_store",
           "inference_lock", "model_choice_note", "model_missing_message", "secret_overrides", "staging_tables"]
