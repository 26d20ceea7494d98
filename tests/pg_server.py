"""A throwaway PostgreSQL 15 server for the test suite, and a ``store_url`` fixture over both backends.

The store is meant to run on PostgreSQL in a hospital, so its tests must run there too, not only on
SQLite. The suite starts its own server (``initdb`` + ``pg_ctl`` in a temporary folder, listening on
127.0.0.1 on a free port and on a unix socket in that folder), so no shared database and no
credentials are needed. Each test gets a database of its own, dropped afterwards, so no test sees
another's rows. Without the server binaries the PostgreSQL tests are skipped, naming the package.

Registered from ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB_USER = "mre_test"
OS_USER_WHEN_ROOT = "postgres"  # initdb refuses to run as root; Debian's package creates this user

#: Fast and disposable: the data folder is deleted at the end of the session anyway.
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"


@dataclass(frozen=True)
class PgServer:
    """A running server: where it listens and how the tests' superuser logs in."""

    host: str
    port: int
    user: str
    password: str
    root: Path

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server, through psycopg 3 (as production uses)."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        """An autocommit connection to the maintenance database (CREATE / DROP DATABASE cannot run in a transaction)."""
        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname="postgres", autocommit=True, connect_timeout=10)

    def create_database(self) -> str:
        name = f"test_{secrets.token_hex(6)}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name`` even if a test left engines connected to it (WITH (FORCE) ends their sessions)."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _os_user() -> pwd.struct_passwd | None:
    """The account that owns the server: ``postgres`` when running as root, else nobody to switch to."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER_WHEN_ROOT)
    except KeyError:
        pytest.skip(f"running as root and there is no {OS_USER_WHEN_ROOT!r} user to own the test server "
                    "(initdb refuses root); install postgresql-15, which creates it")


def _as_owner(cmd: list[str], owner: pwd.struct_passwd | None) -> list[str]:
    """``cmd`` run as ``owner`` (runuser, or setpriv where runuser is missing); as is when not root."""
    if owner is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", owner.pw_name, "--", *cmd]
    return ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups", *cmd]


def _run(cmd: list[str], owner: pwd.struct_passwd | None, what: str) -> None:
    done = subprocess.run(_as_owner(cmd, owner), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _give(path: Path, owner: pwd.struct_passwd | None) -> None:
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)


def _initdb(root: Path, password: str, owner: pwd.struct_passwd | None) -> Path:
    """A new cluster in ``root/data`` whose superuser logs in with ``password`` (no trust, even on 127.0.0.1)."""
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    _give(pwfile, owner)
    data = root / "data"
    _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
          "-E", "UTF8", "--locale=C", "--no-sync"], owner, "initdb")
    pwfile.unlink()
    return data


def _start(data: Path, root: Path, owner: pwd.struct_passwd | None, attempts: int = 3) -> int:
    """Start the server on a free port; another port is tried if one was taken between choosing and binding."""
    log = root / "server.log"
    for attempt in range(attempts):
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} {SERVER_OPTIONS}"
        try:
            _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
                 owner, "pg_ctl start")
            return port
        except RuntimeError as exc:
            if attempt == attempts - 1:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{exc}\nserver log:\n{tail}") from exc
    raise AssertionError("unreachable")


def _stop(data: Path, owner: pwd.struct_passwd | None) -> None:
    _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"], owner, "pg_ctl stop")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL 15 server for the session, in a temporary folder removed at the end.

    The folder comes from :func:`tempfile.mkdtemp` rather than pytest's tmp_path: when the suite runs as
    root, the server runs as ``postgres``, which cannot enter pytest's root-only ``pytest-of-root`` folder.
    """
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        pytest.skip(f"PostgreSQL 15 server binaries not found in {PG_BIN}: install the Debian package "
                    "postgresql-15 (`make system-deps` does)")
    owner = _os_user()
    root = Path(tempfile.mkdtemp(prefix="mre-pg-"))
    data: Path | None = None
    try:
        _give(root, owner)
        password = secrets.token_urlsafe(16)
        data = _initdb(root, password, owner)
        port = _start(data, root, owner)
        yield PgServer(host="127.0.0.1", port=port, user=DB_USER, password=password, root=root)
    finally:
        try:
            if data is not None and (data / "postmaster.pid").exists():
                _stop(data, owner)
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A new, empty database for this test only; its SQLAlchemy URL."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty results store on each backend: a SQLite file in tmp_path, a PostgreSQL database.

    The server is only started (or skipped) when a ``[postgresql]`` test runs.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.sqlite'}"
    return str(request.getfixturevalue("pg_url"))
