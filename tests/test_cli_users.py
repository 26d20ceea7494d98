"""`python -m mre_core users …`: add / disable / enable / passwd / role / list on the store of MRE_DB_URL."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mre_core.__main__ import main
from mre_core.store.audit import read_audit
from mre_core.store.results import Store
from mre_core.store.users import verify_login

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'users.sqlite'}"
    monkeypatch.setenv("MRE_DB_URL", url)
    return url


def _users(monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["users", *args])


def _login(url: str, name: str, password: str) -> bool:
    store = Store(url)
    try:
        return verify_login(store, name, password) is not None
    finally:
        store.dispose()


def test_add_through_the_real_entry_point_reads_the_password_from_stdin(db_url: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "mre_core", "users", "add", "drx", "--role", "reader", "--name",
                           "Dr X", "--password-stdin"], input=PASSWORD + "\n", cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "MRE_DB_URL": db_url}, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "added drx (reader)" in proc.stdout and "Traceback" not in proc.stderr
    assert _login(db_url, "drx", PASSWORD)


def test_add_list_disable_enable_passwd_role(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _users(monkeypatch, "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n") == 0
    assert _users(monkeypatch, "add", "Bob", "--role", "reader", "--name", "Dr Bob", "--password-stdin",
                  stdin=PASSWORD + "\n") == 0
    capsys.readouterr()
    assert _users(monkeypatch, "list") == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0].split() == ["username", "role", "active", "name", "created_utc", "updated_utc"]
    assert "bob" in listing and "Dr Bob" in listing and "argon2" not in listing
    assert _users(monkeypatch, "disable", "bob") == 0
    assert not _login(db_url, "bob", PASSWORD)
    assert _users(monkeypatch, "enable", "bob") == 0
    assert _users(monkeypatch, "passwd", "bob", "--password-stdin", stdin="another long passphrase\n") == 0
    assert _login(db_url, "bob", "another long passphrase") and not _login(db_url, "bob", PASSWORD)
    assert _users(monkeypatch, "role", "bob", "researcher") == 0
    store = Store(db_url)
    actions = read_audit(store, action_prefix="users:")
    store.dispose()
    assert actions["action"].tolist() == ["users:add", "users:add", "users:disable", "users:enable", "users:passwd",
                                          "users:role"]
    assert all(u.startswith("cli") for u in actions["user"])


def test_the_password_is_prompted_twice_without_stdin(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    typed = iter([PASSWORD, PASSWORD + "typo"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    assert _users(monkeypatch, "add", "carol", "--role", "reader") == 1
    assert "differ" in capsys.readouterr().err
    typed = iter([PASSWORD, PASSWORD])
    assert _users(monkeypatch, "add", "carol", "--role", "reader") == 0
    assert _login(db_url, "carol", PASSWORD)


@pytest.mark.parametrize("args, stdin, message", [
    (("add", "bob", "--role", "reader", "--password-stdin"), PASSWORD + "\n", "already exists"),
    (("add", "eve", "--role", "reader", "--password-stdin"), "short\n", "at least 12"),
    (("add", "eve", "--role", "reader", "--password-stdin"), "", "held no password"),
    (("disable", "ghost"), "", "no user 'ghost'"),
    (("enable", "ghost"), "", "no user 'ghost'"),
    (("passwd", "ghost", "--password-stdin"), PASSWORD + "\n", "no user 'ghost'"),
])
def test_errors_are_one_line_and_exit_1(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], args: tuple[str, ...], stdin: str,
                                        message: str) -> None:
    assert _users(monkeypatch, "add", "bob", "--role", "reader", "--password-stdin", stdin=PASSWORD + "\n") == 0
    capsys.readouterr()
    assert _users(monkeypatch, *args, stdin=stdin) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_an_unknown_role_is_a_usage_error(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _users(monkeypatch, "add", "bob", "--role", "superuser", "--password-stdin", stdin=PASSWORD)
    assert exit_info.value.code == 2 and "invalid choice: 'superuser'" in capsys.readouterr().err


def test_an_unopenable_store_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MRE_DB_URL", f"sqlite:///{blocker / 'sub' / 'db.sqlite'}")
    assert _users(monkeypatch, "list") == 1
    assert capsys.readouterr().err.startswith("error: cannot open the results store")
