"""The Site training page through AppTest, and its actions checked in ``mre_core`` whatever the buttons showed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mre_core.access import PermissionDenied, Role, User
from mre_core.app import auth
from mre_core.app import site_training_view as view
from mre_core.config import Settings
from mre_core.model.site import SiteTrainParams
from mre_core.store import models as registry
from mre_core.store.audit import read_audit
from mre_core.store.labels import ReaderRoi, save_imported
from mre_core.store.results import Store
from mre_core.store.users import add_user
from mre_core.workflow import training_job as jobs
from tests.app_support import TEST_MODEL, write_everything_liver_weights

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PASSWORD = "correct horse battery staple"
READER = User("rob", "Dr Rob", Role.READER)
ADMIN = User("ada", "Ada Admin", Role.ADMIN)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    weights = tmp_path / "weights"
    write_everything_liver_weights(weights)
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    values = {"MRE_WEIGHTS_DIR": str(weights), "MRE_MODEL_NAME": TEST_MODEL, "MRE_DB_URL": url,
              "MRE_DEVICE": "cpu", "MRE_INBOX_DIR": str(tmp_path / "inbox"), "MRE_MODELS_DIR": str(tmp_path / "m"),
              "MRE_REQUIRE_LOGIN": "1"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    store = Store(url)
    add_user(store, "rob", "reader", PASSWORD, actor="test", display_name="Dr Rob")
    add_user(store, "ada", "admin", PASSWORD, actor="test", display_name="Ada Admin")
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    for i in range(4):  # four imported reads of four patients (metadata is what the page's preview needs)
        save_imported(store, [ReaderRoi(f"1.2.{i}", f"1.3.{i}", f"1.4.{i}", mask, patient_id=f"P{i}",
                                        study_date="20260110", manufacturer="GE MEDICAL SYSTEMS",
                                        reader="Dr Site", read_date="20260111", source="seg")],
                      source_file=f"read{i}.dcm", source_sop_uid=f"1.5.{i}", imported_by="test")
    return store, Settings.from_env()


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _page(account: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[auth.ACCOUNT_KEY] = account
    _run(at)
    at.switch_page("pages/site_training.py")
    return _run(at)


def _text(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "warning", "error", "success")
             for e in getattr(at, kind)]
    return " ".join(str(p) for p in parts)


def test_a_reader_is_refused_the_page_and_the_refusal_is_audited(env) -> None:
    store, _ = env
    at = _page("ada")  # every page registered in this session
    at.session_state[auth.ACCOUNT_KEY] = "rob"  # then the session belongs to a reader
    at.switch_page("pages/site_training.py")
    _run(at)
    assert any("manage models" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.title and not at.tabs and not at.dataframe
    assert "access:denied" in read_audit(store, user="rob")["action"].tolist()


def test_an_admin_sees_the_models_the_reads_and_the_split_the_choices_give(env) -> None:
    at = _page("ada")
    assert at.title[0].value == "Site training & models"
    text = _text(at)
    assert "4 labelled studies" in text
    assert "4 labelled studies of 4 patients → training 2, validation 1, held-out test 1" in text
    assert "configured model" in text  # MRE_MODEL_NAME chose the model: the registry's choice is not used
    start = next(b for b in at.button if b.label == "Start training")
    assert not start.disabled
    at.multiselect(key="st_readers").set_value(["Dr Site"])
    _run(at)
    assert "4 labelled studies of 4 patients" in _text(at)


def test_the_actions_refuse_a_reader_in_mre_core_and_do_nothing(env) -> None:
    store, settings = env
    with pytest.raises(PermissionDenied):
        view.start_training(SiteTrainParams(epochs=1), store, settings, READER)
    assert jobs.list_jobs(store) == []
    shipped = registry.ensure_shipped(store, settings)
    with pytest.raises(PermissionDenied):
        view.rollback_model(store, READER)
    with pytest.raises(PermissionDenied):
        view.activate_model(shipped.version, store, READER, reason="x", override=True)
    assert registry.activation_history(store) == []
    denied = read_audit(store, user="rob", action_prefix="access:")
    assert len(denied) == 3


def test_a_model_without_a_heldout_comparison_needs_a_recorded_override(env, tmp_path) -> None:
    store, settings = env
    registry.ensure_shipped(store, settings)
    entry = registry.register(store, Path(settings.weights_dir), TEST_MODEL, origin="site", created_by="ada")
    with pytest.raises(registry.ActivationRefused):
        view.activate_model(entry.version, store, ADMIN)
    view.activate_model(entry.version, store, ADMIN, reason="pilot on this site", override=True)
    assert registry.active(store).version == entry.version
    last = registry.activation_history(store)[0]
    assert last["override"] and last["reason"] == "pilot on this site" and last["user"] == "ada"
    view.rollback_model(store, ADMIN, "pilot over")
    assert registry.active(store).origin == "shipped"
    actions = read_audit(store, user="ada")["action"].tolist()
    assert "model:activate" in actions and "model:rollback" in actions
