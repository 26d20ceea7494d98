"""Re-analysing a cohort with another model (one table, no revision written), and the worker following the
registry's active model."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from tests.store.test_models import heldout, save_tiny

from mre_core.config import Settings
from mre_core.io.reader import read_inputs
from mre_core.model.network import load_model
from mre_core.store import models as reg
from mre_core.store.audit import read_audit
from mre_core.store.inbox import DONE, Inbox, InstanceKeys
from mre_core.store.results import Store
from mre_core.workflow import loop
from mre_core.workflow.keep import keep_study_files
from mre_core.workflow.loop import ActiveModel
from mre_core.workflow.reanalyse import COLUMNS, comparison_csv, reanalyse
from mre_core.workflow.worker import IntakeConfig, Worker


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reanalyse_weights")
    return {"shipped": save_tiny(root / "shipped", "tiny_shipped", logit=10.0),  # every pixel: the confidence ROI
            "site": save_tiny(root / "site", "site_a", logit=8.0)}  # other weights, the same ROI


@pytest.fixture
def configured(weights: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings naming the (fake) shipped default model."""
    monkeypatch.setattr(reg, "DEFAULT_WEIGHTS_DIR", weights["shipped"])
    monkeypatch.setattr(reg, "DEFAULT_MODEL_NAME", "tiny_shipped")
    return Settings(device="cpu", weights_dir=weights["shipped"], model_name="tiny_shipped")


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    box = Inbox(Store(f"sqlite:///{tmp_path / 'store.sqlite'}"), tmp_path / "inbox")
    yield box
    box.store.dispose()


def _entries(store: Store, weights: dict[str, Path]) -> tuple[reg.ModelEntry, reg.ModelEntry]:
    base = reg.ensure_shipped(store)
    site = reg.register(store, weights["site"], "site_a", origin="site", metrics=heldout(base.version))
    return base, site


# ------------------------------------------------------------------------------------------- the worker
class _BrokenStore:
    @property
    def engine(self):
        raise RuntimeError("database is locked")


def test_the_worker_model_follows_activation_and_rollback(inbox: Inbox, configured: Settings,
                                                          weights: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = inbox.store
    handed_in = load_model(configured.weights_dir, configured.model_name, "cpu")
    tracker = ActiveModel(configured, handed_in)
    assert tracker.current(store) == (handed_in, configured)  # no registry yet: the model handed in
    base, site = _entries(store, weights)
    assert tracker.current(store)[0] is handed_in
    loads: list[str] = []
    real = loop._load
    monkeypatch.setattr(loop, "_load", lambda s: loads.append(s.model_name) or real(s))
    reg.activate(store, site.version, user="admin")
    model, settings = tracker.current(store)
    assert model.version == site.version and settings.model_name == "site_a" and loads == ["site_a"]
    assert tracker.current(store)[0] is model and loads == ["site_a"]  # unchanged: no reload
    assert tracker.current(_BrokenStore())[0] is model  # a store error keeps the model in hand
    reg.rollback(store, user="admin")
    model, settings = tracker.current(store)
    assert model.version == base.version and settings.model_name == "tiny_shipped" and loads == ["site_a",
                                                                                                  "tiny_shipped"]
    explicit = Settings(device="cpu", weights_dir=weights["shipped"].parent / "elsewhere", model_name="other")
    reg.activate(store, site.version, user="admin", override=True, reason="test")
    pinned = ActiveModel(explicit, handed_in)
    assert pinned.current(store)[0] is handed_in and "is not used" in pinned.note  # explicit settings win


def test_the_worker_saves_results_under_the_active_model(inbox: Inbox, configured: Settings,
                                                         weights: dict[str, Path],
                                                         phantom_studies: dict[str, Path]) -> None:
    _base, site = _entries(inbox.store, weights)
    reg.activate(inbox.store, site.version, user="admin")
    for f in sorted(p for p in phantom_studies["siemens_zero"].rglob("*") if p.is_file()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        inbox.add(InstanceKeys.from_dataset(ds), f.read_bytes(), "test", now=time.time() - 60)
    handed_in = load_model(configured.weights_dir, configured.model_name, "cpu")
    worker = Worker(inbox, configured, IntakeConfig(quiet_s=1.0, write_pdf=False,
                                                    outbox=inbox.root.parent / "out"), handed_in)
    worker.step()
    uid = str(ds.StudyInstanceUID)
    assert inbox.status(uid)["status"] == DONE, inbox.status(uid)["detail"]
    (series,) = inbox.store.latest_table()["series_uid"]
    saved = inbox.store.load_revision(uid, series)
    assert (saved.model_name, saved.model_sha256) == ("site_a", site.sha256)
    assert saved.settings["model_name"] == "site_a"


# ------------------------------------------------------------------------------------------- reanalyse
def _save(inbox: Inbox, folder: Path, settings: Settings, model, keep: bool) -> tuple[str, str]:
    study = read_inputs(folder, settings).studies[0]
    from mre_core.analysis.pipeline import analyze_study

    result = analyze_study(study, model, settings)
    inbox.store.save(result)
    if keep:
        keep_study_files(inbox, [folder], study.study_uid, study.series.series_uid, settings.max_file_bytes)
    return study.study_uid, study.series.series_uid


def test_reanalyse_compares_two_kept_studies_and_writes_no_revision(inbox: Inbox, configured: Settings,
                                                                    weights: dict[str, Path],
                                                                    phantom_studies: dict[str, Path]) -> None:
    store = inbox.store
    base, site = _entries(store, weights)
    model = load_model(configured.weights_dir, configured.model_name, "cpu")
    kept = [_save(inbox, phantom_studies[k], configured, model, keep=True) for k in ("siemens_hatch", "ge_pair")]
    lost = _save(inbox, phantom_studies["siemens_zero"], configured, model, keep=False)
    first = store.load_revision(*kept[0])
    from mre_core.workflow.steps import result_from_revision

    study = read_inputs(phantom_studies["siemens_hatch"], configured).studies[0]
    store.save(result_from_revision(study, first, configured), kind="signed_off", reviewer="Dr R", manual_kpa=3.1)
    before = store.counts()
    calls: list[tuple[int, int]] = []
    report = reanalyse(store, inbox, configured, site.version, user="admin", progress=lambda i, n: calls.append((i, n)))
    assert store.counts()["revisions"] == before["revisions"]  # a comparison, not a new result
    table = report.table.set_index("study_uid")
    assert list(report.table.columns) == list(COLUMNS) and set(table.index) == {kept[0][0], kept[1][0]}
    assert report.skipped == [(lost[0], report.skipped[0][1])] and "not in the inbox" in report.skipped[0][1]
    assert calls[-1] == (3, 3)
    assert set(table["before_model"]) == {base.version} and set(table["after_model"]) == {site.version}
    row = table.loc[kept[0][0]]
    assert row["reader_kpa"] == pytest.approx(3.1) and row["reader_stage"] == "F2"
    assert row["before_kpa"] == pytest.approx(first.stiffness_kpa)
    # both models take the whole confidence region: the same values, so no change anywhere
    assert table["after_kpa"].tolist() == pytest.approx(table["before_kpa"].tolist())
    assert table["delta_kpa"].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert not table["stage_changed"].any() and (table["after_stage"] == table["before_stage"]).all()
    assert pd.isna(table.loc[kept[1][0], "reader_kpa"])
    summary = report.summary
    assert summary["n_studies"] == 2 and summary["n_skipped"] == 1 and summary["n_stage_changed"] == 0
    assert summary["mean_abs_delta_kpa"] == pytest.approx(0.0, abs=1e-9)
    assert summary["before_n_with_reader"] == summary["after_n_with_reader"] == 1
    assert summary["after_f2_agreement"] == summary["before_f2_agreement"] == 1.0  # both F2, as the reader
    (entry,) = read_audit(store, action_prefix="model:reanalyse").to_dict("records")
    assert entry["user"] == "admin" and "2 studies re-analysed, 1 skipped" in entry["detail"]
    back = pd.read_csv(io.BytesIO(comparison_csv(report)))
    assert list(back.columns) == list(COLUMNS) and len(back) == 2
    assert back["before_kpa"].dtype.kind == "f" and set(back["stage_changed"].dropna()) <= {0, 1}


def test_reanalyse_of_named_studies_and_unknown_versions(inbox: Inbox, configured: Settings,
                                                         weights: dict[str, Path]) -> None:
    _base, site = _entries(inbox.store, weights)
    report = reanalyse(inbox.store, inbox, configured, site.version, ["9.9.9"])
    assert report.table.empty and report.skipped == [("9.9.9", "not in the results store")]
    with pytest.raises(reg.RegistryError, match="no model 'absent@000'"):
        reanalyse(inbox.store, inbox, configured, "absent@000")
