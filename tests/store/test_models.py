"""The model registry: registration by checksum, the activation gate, overrides, rollback, the active model's
settings, and results that name the model that produced them."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from mre_core.analysis.pipeline import analyze_study
from mre_core.analysis.preprocess import InputSpec
from mre_core.config import DEFAULT_MODEL_NAME, DEFAULT_WEIGHTS_DIR, Settings
from mre_core.io.reader import read_inputs
from mre_core.model.network import ModelConfig, build_model, load_model, save_weights
from mre_core.store import models as reg
from mre_core.store.audit import read_audit
from mre_core.store.results import Store
from mre_core.store.schema import model_activations


def save_tiny(weights_dir: Path, name: str, logit: float | None = None, seed: int = 0) -> Path:
    """An untrained plain U-Net (8 channels, 128 px) saved like shipped weights; ``logit`` fixes its output."""
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, arch="unet_plain", plain_base_channels=8, input=InputSpec(size=128))
    net = build_model(cfg)
    if logit is not None:
        with torch.no_grad():
            net.head.weight.zero_()
            net.head.bias.fill_(logit)
    save_weights(net, cfg, weights_dir)
    return weights_dir


def heldout(baseline: str, dice: tuple[float, float] = (0.85, 0.80),
            spec: tuple[float | None, float | None] = (1.0, 0.9)) -> dict:
    """The ``metrics`` a training run writes: candidate vs ``baseline`` on its held-out studies."""
    def side(version: str, d: float, s: float | None) -> dict:
        return {"version": version, "dice": {"value": d, "ci_low": d - 0.05, "ci_high": d + 0.05},
                "f2_specificity": {"value": s, "ci_low": None, "ci_high": None},
                "f2_sensitivity": {"value": 0.9, "ci_low": 0.6, "ci_high": 1.0}}
    return {"heldout": {"n_studies": 4, "n_slices": 16, "study_uids": ["1.2", "1.3", "1.4", "1.5"],
                        "candidate": side("candidate", dice[0], spec[0]),
                        "baseline": side(baseline, dice[1], spec[1])}}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three small models, each in its own folder: the fake shipped one, and two site models."""
    root = tmp_path_factory.mktemp("registry_weights")
    return {"shipped": save_tiny(root / "shipped", "tiny_shipped", logit=10.0),
            "site_a": save_tiny(root / "site_a", "site_a", seed=1),
            "site_b": save_tiny(root / "site_b", "site_b", seed=2)}


@pytest.fixture
def shipped(weights: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the tiny model the registry's 'shipped default' (the real one is slow to run on a CPU)."""
    monkeypatch.setattr(reg, "DEFAULT_WEIGHTS_DIR", weights["shipped"])
    monkeypatch.setattr(reg, "DEFAULT_MODEL_NAME", "tiny_shipped")
    return weights["shipped"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    yield s
    s.dispose()


def _default(shipped: Path) -> Settings:
    return Settings(device="cpu", weights_dir=shipped, model_name="tiny_shipped")


def _site(store: Store, weights: dict[str, Path], name: str = "site_a", **metrics_kw) -> reg.ModelEntry:
    base = reg.active(store)
    metrics = heldout(base.version, **metrics_kw) if base is not None else {}
    return reg.register(store, weights[name], name, origin="site", created_by="trainer", metrics=metrics,
                        manifest={"studies": ["1.2"]}, settings={"epochs": 1}, heldout=["1.2"], job_id=7,
                        parent_version=base.version if base else "")


def _audit(store: Store, prefix: str) -> list[dict]:
    return read_audit(store, action_prefix=prefix).to_dict("records")


# ------------------------------------------------------------------------------------------- register
def test_the_real_shipped_weights_register_once_with_their_card_metrics(store: Store) -> None:
    card = json.loads((DEFAULT_WEIGHTS_DIR / f"{DEFAULT_MODEL_NAME}.json").read_text())
    entry = reg.ensure_shipped(store, Settings())
    assert entry is not None and entry.version == f"{DEFAULT_MODEL_NAME}@{card['sha256'][:12]}"
    assert entry.origin == "shipped" and entry.arch == "unet_resnext50" and entry.sha256 == card["sha256"]
    assert entry.metrics["test_metrics"]["dice"]["mean"] == card["card"]["test_metrics"]["dice"]["mean"]
    assert reg.ensure_shipped(store, Settings()) == entry  # idempotent
    assert [e.version for e in reg.list_models(store)] == [entry.version]
    assert len(_audit(store, "model:register")) == 1
    assert reg.active(store) == entry  # nothing activated yet: the shipped model


def test_ensure_shipped_is_none_without_its_files(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "DEFAULT_WEIGHTS_DIR", tmp_path / "nothing")
    assert reg.ensure_shipped(store) is None and reg.active(store) is None


def test_register_records_everything_and_lists_newest_first(store: Store, shipped: Path,
                                                            weights: dict[str, Path]) -> None:
    first = reg.ensure_shipped(store)
    entry = _site(store, weights)
    assert entry.version.startswith("site_a@") and len(entry.version) == len("site_a@") + 12
    assert (entry.origin, entry.created_by, entry.parent_version, entry.job_id) == ("site", "trainer",
                                                                                     first.version, 7)
    assert entry.manifest == {"studies": ["1.2"]} and entry.settings == {"epochs": 1} and entry.heldout == ("1.2",)
    assert entry.metrics["heldout"]["baseline"]["version"] == first.version
    assert entry.weights_dir == weights["site_a"].resolve() and reg.get(store, entry.version) == entry
    assert [e.version for e in reg.list_models(store)] == [entry.version, first.version]


def test_register_refuses_weights_that_do_not_match_their_checksum(store: Store, weights: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(weights["site_a"], copy)
    with open(copy / "site_a.safetensors", "ab") as f:
        f.write(b"\0")
    with pytest.raises(reg.ModelFilesError, match="does not match site_a.json"):
        reg.register(store, copy, "site_a", origin="site")
    with pytest.raises(reg.ModelFilesError, match="not found"):
        reg.register(store, copy, "absent", origin="site")
    with pytest.raises(reg.RegistryError, match="origin"):
        reg.register(store, weights["site_a"], "site_a", origin="elsewhere")
    assert reg.list_models(store) == [] and _audit(store, "model:register") == []


# ------------------------------------------------------------------------------------------- the gate
def test_a_better_model_is_activated_and_audited(store: Store, shipped: Path, weights: dict[str, Path]) -> None:
    base = reg.ensure_shipped(store)
    cand = _site(store, weights, dice=(0.85, 0.80), spec=(1.0, 0.9))
    check = reg.activation_check(store, cand.version)
    assert check.ok and check.reasons == []
    assert check.candidate["dice"] == 0.85 and check.active == {"version": base.version, "compared_version":
                                                                base.version, "dice": 0.80, "f2_specificity": 0.9,
                                                                "f2_sensitivity": 0.9}
    assert reg.activate(store, cand.version, user="admin", reason="better on held-out") == cand
    assert reg.active(store) == cand
    (row,) = reg.activation_history(store)
    assert row["version"] == cand.version and row["previous_version"] == base.version
    assert row["user"] == "admin" and row["override"] is False and row["reason"] == "better on held-out"
    (entry,) = _audit(store, "model:activate")
    assert cand.version in entry["detail"] and base.version in entry["detail"] and "OVERRIDE" not in entry["detail"]


@pytest.mark.parametrize(("kw", "reason"), [
    ({"dice": (0.79, 0.80)}, "held-out Dice 0.790 is below the active model's 0.800"),
    ({"spec": (0.8, 0.9)}, "held-out F2 specificity 0.800 is below the active model's 0.900"),
    ({"spec": (None, 0.9)}, reg.NO_SPECIFICITY),
    ({"spec": (1.0, math.nan)}, reg.NO_SPECIFICITY),
])
def test_a_worse_or_unmeasured_model_is_refused(store: Store, shipped: Path, weights: dict[str, Path], kw: dict,
                                                reason: str) -> None:
    base = reg.ensure_shipped(store)
    cand = _site(store, weights, **kw)
    check = reg.activation_check(store, cand.version)
    assert not check.ok and check.reasons == [reason]
    with pytest.raises(reg.ActivationRefused) as refused:
        reg.activate(store, cand.version, user="admin")
    assert refused.value.reasons == [reason] and "Override" in str(refused.value)
    assert reg.active(store) == base and reg.activation_history(store) == []


def test_a_stale_comparison_and_missing_metrics_are_refused(store: Store, shipped: Path,
                                                            weights: dict[str, Path], tmp_path: Path) -> None:
    base = reg.ensure_shipped(store)
    a = _site(store, weights, "site_a")
    b = _site(store, weights, "site_b")  # compared with the shipped model too
    reg.activate(store, a.version, user="admin")
    check = reg.activation_check(store, b.version)
    assert check.reasons == [f"compared with {base.version}, but {a.version} is active now: re-evaluate or override"]
    bare = reg.register(store, weights["site_b"].parent / "site_b", "site_b", origin="site")
    assert bare == b  # the same version: registering again returns the first entry
    copy = tmp_path / "bare"
    save_tiny(copy, "bare", seed=5)
    no_metrics = reg.register(store, copy, "bare", origin="site")
    (reason,) = reg.activation_check(store, no_metrics.version).reasons
    assert "no held-out comparison" in reason
    assert "already the active model" in reg.activation_check(store, a.version).reasons[0]
    with pytest.raises(reg.ActivationRefused, match="already the active model"):
        reg.activate(store, a.version, user="admin", override=True, reason="again")


def test_an_override_needs_a_reason_and_is_recorded(store: Store, shipped: Path, weights: dict[str, Path]) -> None:
    base = reg.ensure_shipped(store)
    worse = _site(store, weights, dice=(0.5, 0.8))
    with pytest.raises(reg.ActivationRefused, match="needs a reason"):
        reg.activate(store, worse.version, user="admin", override=True, reason="  ")
    with pytest.raises(reg.RegistryError, match="name of the user"):
        reg.activate(store, worse.version, user="", override=True, reason="local data differ")
    assert reg.activate(store, worse.version, user="admin", override=True, reason="local data differ") == worse
    with sa.create_engine(store.url).connect() as conn:
        (row,) = conn.execute(sa.select(model_activations)).mappings().all()
    assert row["override"] and row["reason"] == "local data differ" and row["previous_version"] == base.version
    (entry,) = _audit(store, "model:activate")
    assert "OVERRIDE of: held-out Dice 0.500 is below the active model's 0.800" in entry["detail"]
    assert "reason: local data differ" in entry["detail"] and entry["user"] == "admin"


def test_unknown_versions_and_missing_files_cannot_be_activated(store: Store, shipped: Path,
                                                                weights: dict[str, Path], tmp_path: Path) -> None:
    reg.ensure_shipped(store)
    with pytest.raises(reg.RegistryError, match="no model 'nope@000' in the registry"):
        reg.activate(store, "nope@000", user="admin", override=True, reason="x")
    copy = tmp_path / "gone"
    save_tiny(copy, "gone", seed=3)
    gone = reg.register(store, copy, "gone", origin="site", metrics=heldout(reg.active(store).version))
    (copy / "gone.safetensors").unlink()
    with pytest.raises(reg.ModelFilesError, match="cannot be activated"):
        reg.activate(store, gone.version, user="admin", override=True, reason="x")


# ------------------------------------------------------------------------------------------- rollback
def test_rollback_returns_to_the_previous_model_and_is_audited(store: Store, shipped: Path,
                                                               weights: dict[str, Path]) -> None:
    with pytest.raises(reg.RegistryError, match="nothing to roll back to"):
        reg.rollback(store, user="admin")
    base = reg.ensure_shipped(store)
    a = _site(store, weights)
    reg.activate(store, a.version, user="admin")
    refused = reg.activation_check(store, base.version).reasons[0]
    assert "shipped model" in refused and "rollback" in refused  # the way back to a shipped model is rollback
    assert reg.rollback(store, user="admin", reason="worse on real exams") == base
    assert reg.active(store) == base
    latest = reg.activation_history(store)[0]
    assert (latest["version"], latest["previous_version"], latest["reason"]) == (
        base.version, a.version, "rollback: worse on real exams")
    (entry,) = _audit(store, "model:rollback")
    assert entry["user"] == "admin" and a.version in entry["detail"] and base.version in entry["detail"]
    assert reg.rollback(store, user="admin") == a  # a second rollback undoes the first


# ------------------------------------------------------------------------------------------- settings
def test_active_settings_use_the_registry_only_for_the_default_model(store: Store, shipped: Path,
                                                                     weights: dict[str, Path]) -> None:
    configured = _default(shipped)
    same, note = reg.active_settings(configured, store)
    assert same == configured and "no model is registered" in note
    reg.ensure_shipped(store)
    a = _site(store, weights)
    reg.activate(store, a.version, user="admin")
    chosen, note = reg.active_settings(configured, store)
    assert (chosen.weights_dir, chosen.model_name) == (a.weights_dir, "site_a") and chosen.device == "cpu"
    assert a.version in note and "site-trained" in note and "admin" in note
    explicit = Settings(device="cpu", weights_dir=weights["site_b"], model_name="site_b")
    kept, note = reg.active_settings(explicit, store)
    assert kept == explicit and f"the registry's active model {a.version} is not used" in note
    assert reg.active_settings(chosen, store)[0] == chosen  # already resolved: unchanged


def test_active_settings_fall_back_loudly_when_the_active_files_are_gone(store: Store, shipped: Path,
                                                                          tmp_path: Path) -> None:
    reg.ensure_shipped(store)
    folder = tmp_path / "fragile"
    save_tiny(folder, "fragile", seed=4)
    entry = reg.register(store, folder, "fragile", origin="site", metrics=heldout(reg.active(store).version))
    reg.activate(store, entry.version, user="admin")
    save_tiny(folder, "fragile", seed=9)  # replaced in place: no longer the registered weights
    configured = _default(shipped)
    chosen, note = reg.active_settings(configured, store)
    assert chosen == configured
    assert f"active model {entry.version} cannot be used" in note and "configured model tiny_shipped" in note
    (folder / "fragile.json").unlink()
    assert "not found" in reg.active_settings(configured, store)[1]


def test_results_name_the_active_model_before_and_after_a_rollback(store: Store, shipped: Path,
                                                                   weights: dict[str, Path],
                                                                   phantom_studies: dict[str, Path]) -> None:
    study = read_inputs(phantom_studies["siemens_hatch"], _default(shipped)).studies[0]
    base = reg.ensure_shipped(store)
    a = _site(store, weights)

    def analyse_and_save() -> tuple[str, str]:
        s, _note = reg.active_settings(_default(shipped), store)
        model = load_model(s.weights_dir, s.model_name, s.device)
        store.save(analyze_study(study, model, s))
        saved = store.load_revision(study.study_uid, study.series.series_uid)
        return f"{saved.model_name}@{saved.model_sha256[:12]}", saved.model_sha256

    assert analyse_and_save() == (base.version, base.sha256)
    reg.activate(store, a.version, user="admin")
    assert analyse_and_save() == (a.version, a.sha256)
    reg.rollback(store, user="admin")
    assert analyse_and_save() == (base.version, base.sha256)
    assert store.history(study.study_uid)["model_name"].tolist() == ["tiny_shipped", "site_a", "tiny_shipped"]
