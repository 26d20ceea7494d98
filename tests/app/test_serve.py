"""``python -m mre_core.app.serve`` (``make run``): the address as Streamlit reads it, and the refusal to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mre_core.app import serve
from mre_core.store.results import Store
from mre_core.store.users import add_user, disable_user


def _config(folder: Path, text: str) -> Path:
    (folder / ".streamlit").mkdir(parents=True, exist_ok=True)
    path = folder / ".streamlit" / "config.toml"
    path.write_text(text)
    return path


def test_the_address_comes_from_the_command_line_then_the_environment_then_the_config_files(tmp_path: Path) -> None:
    home = _config(tmp_path / "home", '[server]\naddress = "10.0.0.1"\n')
    local = _config(tmp_path / "cwd", '[server]\naddress = "0.0.0.0"\nport = 8501\n')
    files = [home, local]
    assert serve.server_address([], {}, [home]) == "10.0.0.1"
    assert serve.server_address([], {}, files) == "0.0.0.0"  # the later file wins
    assert serve.server_address([], {"STREAMLIT_SERVER_ADDRESS": "127.0.0.1"}, files) == "127.0.0.1"
    assert serve.server_address(["--server.address", "192.168.1.5"], {"STREAMLIT_SERVER_ADDRESS": "x"},
                                files) == "192.168.1.5"
    assert serve.server_address(["--server.port=9000", "--server.address=::1"], {}, files) == "::1"
    assert serve.server_address([], {}, [tmp_path / "missing.toml"]) is None  # every interface


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A fresh working folder and home (no config or secrets files) and an empty store."""
    (tmp_path / "cwd").mkdir()
    (tmp_path / "home").mkdir()
    url = f"sqlite:///{tmp_path / 'site.sqlite'}"
    return {"cwd": tmp_path / "cwd", "home": tmp_path / "home", "environ": {"MRE_DB_URL": url}, "url": url}


def _refusal(site: dict, argv: list[str]) -> str | None:
    return serve.startup_refusal(argv, environ=site["environ"], cwd=site["cwd"], home=site["home"])


def test_beyond_loopback_without_sign_in_it_refuses_with_the_remedies(site: dict) -> None:
    message = _refusal(site, ["--server.address", "0.0.0.0"])
    assert message is not None and "users add" in message and "[auth]" in message
    assert _refusal(site, ["--server.address", "127.0.0.1"]) is None  # this machine only: no sign-in needed
    # the app folder's .streamlit/config.toml (read last, as Streamlit does) binds 127.0.0.1: `make run` starts
    _config(site["cwd"], '[server]\naddress = "192.168.1.20"\n')
    assert _refusal(site, []) is None
    site["environ"]["STREAMLIT_SERVER_ADDRESS"] = "192.168.1.20"  # the environment wins over config files
    assert _refusal(site, []) is not None


def test_an_active_local_account_or_oidc_lets_it_start(site: dict, tmp_path: Path) -> None:
    store = Store(site["url"])
    add_user(store, "ada", "admin", "correct horse battery staple", actor="test")
    assert _refusal(site, ["--server.address", "0.0.0.0"]) is None
    disable_user(store, "ada", actor="test")
    assert _refusal(site, ["--server.address", "0.0.0.0"]) is not None  # a disabled account cannot sign in
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "https://mre.example.org/oauth2callback"\ncookie_secret = "s3cr3t"\n'
                       'client_id = "mre"\nclient_secret = "abc"\n'
                       'server_metadata_url = "https://sso.example.org/.well-known/openid-configuration"\n')
    assert _refusal(site, ["--server.address", "0.0.0.0", "--secrets.files", str(secrets)]) is None


def test_main_exits_with_the_message_before_starting_anything(site: dict, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(site["cwd"])
    monkeypatch.setenv("HOME", str(site["home"]))
    monkeypatch.setenv("MRE_DB_URL", site["url"])
    monkeypatch.setattr("mre_core.app.warm.warm_up", lambda: pytest.fail("the server must not be started"))
    assert serve.main(["--server.address", "0.0.0.0", "--server.port", "8599"]) == 2
    assert "Refusing to serve on address '0.0.0.0'" in capsys.readouterr().err
