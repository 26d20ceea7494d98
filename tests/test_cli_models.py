"""`python -m mre_core.workflow.models_cli …`: list / register / activate / rollback / reanalyse, exit codes and
one-line errors (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.store.test_models import save_tiny

from mre_core.config import DEFAULT_MODEL_NAME
from mre_core.store import models as reg
from mre_core.store.audit import read_audit
from mre_core.store.results import Store
from mre_core.workflow.models_cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'models.sqlite'}"


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mre_core.workflow.models_cli", *args, "--db-url", db_url],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ}, timeout=300, check=False)


def _run(capsys: pytest.CaptureFixture[str], db_url: str, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--db-url", db_url])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_register_activate_refused_then_overridden_through_the_module(db_url: str, tmp_path: Path) -> None:
    save_tiny(tmp_path / "w", "site_cli", seed=3)
    proc = _cli(db_url, "register", str(tmp_path / "w"), "site_cli", "--user", "trainer")
    assert proc.returncode == 0, proc.stderr
    version = proc.stdout.split()[1]
    assert proc.stdout.startswith(f"registered {version} (site)") and version.startswith("site_cli@")
    proc = _cli(db_url, "activate", version, "--user", "admin")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: refused: {version} was not activated: ") and len(
        proc.stderr.strip().splitlines()) == 1
    assert "no held-out comparison" in proc.stderr
    proc = _cli(db_url, "activate", version, "--user", "admin", "--override", "--reason", "site data")
    assert proc.returncode == 0, proc.stderr
    assert f"{version} is now the active model (was {DEFAULT_MODEL_NAME}@" in proc.stdout
    store = Store(db_url)
    try:
        assert reg.active(store).version == version and reg.activation_history(store)[0]["override"] is True
        assert read_audit(store, action_prefix="model:activate")["user"].tolist() == ["admin"]
    finally:
        store.dispose()


def test_list_rollback_and_the_errors_in_process(db_url: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run(capsys, db_url, "rollback", "--user", "admin")
    assert code == 1 and err.startswith("error: nothing to roll back to") and "Traceback" not in err
    code, _out, err = _run(capsys, db_url, "activate", "nope@000", "--user", "admin")
    assert code == 1 and "no model 'nope@000' in the registry" in err
    code, _out, err = _run(capsys, db_url, "register", str(tmp_path / "empty"), "absent")
    assert code == 1 and err.startswith("error: model 'absent' not found")
    save_tiny(tmp_path / "w", "site_b", seed=4)
    assert _run(capsys, db_url, "register", str(tmp_path / "w"), "site_b")[0] == 0
    version = next(e.version for e in _entries(db_url) if e.name == "site_b")
    code, _out, err = _run(capsys, db_url, "activate", version, "--user", "admin", "--override")
    assert code == 1 and "needs a reason" in err
    assert _run(capsys, db_url, "activate", version, "--user", "admin", "--override", "--reason", "why")[0] == 0
    code, out, _err = _run(capsys, db_url, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["version", "origin", "created_utc", "created_by", "heldout_dice",
                                              "parent"]
    assert lines[1].startswith("*") and version in lines[1] and DEFAULT_MODEL_NAME in lines[2]
    code, out, _err = _run(capsys, db_url, "rollback", "--user", "admin", "--reason", "back")
    assert code == 0 and f"rolled back: {DEFAULT_MODEL_NAME}@" in out
    code, out, err = _run(capsys, db_url, "reanalyse", version, "--csv", str(tmp_path / "cmp.csv"),
                          "--inbox-dir", str(tmp_path / "inbox"), "--device", "cpu")
    assert code == 0, err
    assert "0 studies re-analysed" in out and (tmp_path / "cmp.csv").read_text().startswith("study_uid,patient_id")
    code, _out, err = _run(capsys, db_url, "reanalyse", "absent@000", "--inbox-dir", str(tmp_path / "inbox"))
    assert code == 1 and "no model 'absent@000'" in err


def _entries(db_url: str) -> list[reg.ModelEntry]:
    store = Store(db_url)
    try:
        return reg.list_models(store)
    finally:
        store.dispose()
