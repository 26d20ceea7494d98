"""``python -m mre_core.app.serve [streamlit options]``: the web app, warmed up before it takes a connection.

The same as ``streamlit run app.py [options]`` (``.streamlit/config.toml`` applies), except that

* it refuses to start, with :func:`mre_core.access.serving.serving_check`'s message and exit code 2, when
  the server would be bound beyond loopback with no way to sign in (no OIDC provider in the secrets and no
  active local account in the store): :func:`startup_refusal`;
* the heavy modules are imported and frozen first (:func:`mre_core.app.warm.warm_up`), in the server's own
  process, so the first reader after a restart does not wait for them;
* unless ``MRE_DEMO_DIR`` is set, it gives the server a demo folder and writes the demo study and cohort
  into it in a separate lowest-priority process (:func:`mre_core.app.demo_files.start_preparing`).

``make run`` uses it. The address is read as Streamlit reads it (:func:`server_address`): the command line
(``--server.address X``), else ``STREAMLIT_SERVER_ADDRESS``, else the last ``[server] address`` of the config
files ``~/.streamlit/config.toml``, ``./.streamlit/config.toml`` and the app folder's
``.streamlit/config.toml``; none of them means every interface.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parents[2] / "app.py"


def _option(argv: Sequence[str], name: str) -> list[str]:
    """Every value of ``--name VALUE`` / ``--name=VALUE`` on the command line, in order."""
    flag, out = f"--{name}", []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            out.append(arg[len(flag) + 1:])
    return out


def _streamlit_files(name: str, cwd: Path, home: Path) -> list[Path]:
    """Where Streamlit looks for ``name`` (config.toml, secrets.toml), later files winning."""
    folders = [home / ".streamlit", cwd / ".streamlit", APP.parent / ".streamlit"]
    out: list[Path] = []
    for folder in folders:
        path = (folder / name).resolve()
        if path not in out:
            out.append(path)
    return out


def read_toml(paths: Sequence[Path]) -> dict[str, Any]:
    """The TOML files that exist, merged table by table, later ones winning (as Streamlit merges them)."""
    merged: dict[str, Any] = {}
    for path in paths:
        if not path.is_file():
            continue
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def server_address(argv: Sequence[str], environ: Mapping[str, str], config_files: Sequence[Path]) -> str | None:
    """The ``server.address`` Streamlit will bind: command line, then environment, then config files."""
    given = _option(argv, "server.address")
    if given:
        return given[-1]
    if "STREAMLIT_SERVER_ADDRESS" in environ:
        return environ["STREAMLIT_SERVER_ADDRESS"]
    server = read_toml(config_files).get("server")
    value = server.get("address") if isinstance(server, dict) else None
    return None if value is None else str(value)


def startup_refusal(argv: Sequence[str], environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                    home: Path | None = None) -> str | None:
    """Why the server must not start (beyond loopback, no way to sign in), or ``None``.

    Sign-in counts as configured when the secrets (``--secrets.files``, else Streamlit's default secrets
    files) hold a complete OIDC provider, or the store (``MRE_DB_URL`` / ``db_url`` in the secrets) has an
    active local account. The store is opened only for an address beyond loopback without OIDC.
    """
    from mre_core.access.oidc import oidc_configured
    from mre_core.access.serving import is_loopback, serving_check

    env = os.environ if environ is None else environ
    cwd, home = cwd or Path.cwd(), home or Path.home()
    address = server_address(argv, env, _streamlit_files("config.toml", cwd, home))
    if is_loopback(address or ""):
        return None
    files = [Path(p) for p in _option(argv, "secrets.files")] or _streamlit_files("secrets.toml", cwd, home)
    secrets = read_toml(files)
    if oidc_configured(secrets):
        return None
    return serving_check(address or "", _has_local_accounts(secrets, env))


def _has_local_accounts(secrets: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    from mre_core.config import Settings
    from mre_core.store.results import Store, StoreError
    from mre_core.store.users import has_active_users

    section = secrets.get("mre", secrets)
    db_url = section.get("db_url") if isinstance(section, Mapping) else None
    try:
        store = Store(Settings.from_env(environ, db_url=db_url).db_url)
    except (StoreError, ValueError):
        return False  # the app could not check an account either
    try:
        return has_active_users(store)
    finally:
        store.dispose()


def _stop(child: subprocess.Popen, folder: Path) -> None:
    """At exit: a demo preparation still running stops with the server, and the demo folder this launcher made
    is removed (the demo is written again at the next start; reviews saved from it keep their own copies)."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    refused = startup_refusal(args)
    if refused is not None:
        print(f"MRE Liver Review: {refused}", file=sys.stderr, flush=True)
        return 2
    from mre_core.app.warm import warm_up

    if not os.environ.get("MRE_DEMO_DIR"):
        import tempfile

        from mre_core.app.demo_files import start_preparing

        # a SIGTERM before Streamlit installs its own handler (during the warm-up) still runs the atexit below
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        folder = Path(tempfile.mkdtemp(prefix="mre_demo_"))
        os.environ["MRE_DEMO_DIR"] = str(folder)
        atexit.register(_stop, start_preparing(folder), folder)
        print(f"MRE Liver Review: writing the demo study and cohort in the background to {os.environ['MRE_DEMO_DIR']}",
              flush=True)
    seconds = warm_up()
    print(f"MRE Liver Review: modules loaded in {seconds:.1f} s; starting the server", flush=True)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *args]
    return int(cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
