"""The DICOM side of access control (issue 15): bound to loopback by default, an allow-list required unless
explicitly open, source networks, refused associations audited, DICOM TLS with and without a certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from mre_core.config import Settings
from mre_core.store.inbox import Inbox
from mre_core.store.results import Store
from mre_core.store.schema import audit
from mre_core.workflow.listener import Listener, ListenerConfig, TlsConfig
from mre_core.workflow.worker import IntakeConfig
from tests.workflow.test_listener import REPO, free_port

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed (Debian package openssl)")


def _listener(tmp_path: Path, net: ListenerConfig) -> Listener:
    inbox = Inbox(Store(f"sqlite:///{tmp_path / 's.sqlite'}"), tmp_path / "inbox")
    listener = Listener(inbox, Settings(device="cpu"), net, IntakeConfig(quiet_s=600))
    listener.start()
    return listener


def _echo(port: int, calling: str = "SCANNER", tls: tuple | None = None) -> bool:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="MRE_REVIEW", tls_args=tls)
    if not assoc.is_established:
        return False
    ok = int(assoc.send_c_echo().Status) == 0
    assoc.release()
    return ok


def _audited(listener: Listener) -> list[str]:
    with listener.inbox.store.engine.connect() as conn:
        return [r.detail for r in conn.execute(sa.select(audit).where(audit.c.action == "dicom:association_rejected"))]


def test_the_default_is_loopback_and_an_allow_list_is_required() -> None:
    assert ListenerConfig().host == "127.0.0.1"
    with pytest.raises(ValueError, match="--allow AET,... .* or --allow-any"):
        ListenerConfig().check()
    ListenerConfig(allow=("PACS",)).check()
    ListenerConfig(allow_any=True).check()
    with pytest.raises(ValueError):
        ListenerConfig(allow_any=True, networks=("10.0.0.0/33",)).check()


def test_the_cli_refuses_to_start_without_an_allow_list(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "mre_core", "listen", "--port", str(free_port())], cwd=REPO,
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "MRE_DB_URL": f"sqlite:///{tmp_path / 's.sqlite'}",
                              "MRE_INBOX_DIR": str(tmp_path / "inbox")})
    assert run.returncode == 1
    assert "--allow AET" in run.stderr and "--allow-any" in run.stderr and "Traceback" not in run.stderr


def test_a_sender_outside_the_allowed_networks_or_titles_is_refused_and_audited(tmp_path: Path) -> None:
    port = free_port()
    listener = _listener(tmp_path, ListenerConfig(port=port, allow=("SCANNER",), networks=("10.0.0.0/8",)))
    try:
        assert not _echo(port)  # 127.0.0.1 is not in 10.0.0.0/8
    finally:
        listener.stop()
    assert any("SCANNER@127.0.0.1" in d and "networks" in d for d in _audited(listener))
    port = free_port()
    listener = _listener(tmp_path / "b", ListenerConfig(port=port, allow=("SCANNER",), networks=("127.0.0.0/8",)))
    try:
        assert _echo(port) and not _echo(port, calling="ROGUE")
    finally:
        listener.stop()
    assert any("ROGUE@127.0.0.1" in d and "calling AE title" in d for d in _audited(listener))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    if OPENSSL is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")
    run = lambda *args: subprocess.run([OPENSSL, *args], cwd=d, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=MRE test CA")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=mre {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", *(["-extfile", "san.cnf"] if name == "server" else []))
    return {p.stem + p.suffix: p for p in d.iterdir()}


def _client_context(pki: dict[str, Path], with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca.pem"]))
    if with_cert:
        ctx.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
    return ctx


@needs_openssl
def test_dicom_tls_on_loopback_with_and_without_a_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    port = free_port()
    tls = TlsConfig(pki["server.pem"], pki["server.key"], ca=pki["ca.pem"])  # mutual TLS
    listener = _listener(tmp_path, ListenerConfig(port=port, allow=("SCANNER",), tls=tls))
    try:
        assert _echo(port, tls=(_client_context(pki, with_cert=True), "127.0.0.1"))
        assert not _echo(port, tls=(_client_context(pki, with_cert=False), "127.0.0.1"))  # no client certificate
        assert not _echo(port)  # plain DICOM to a TLS port
    finally:
        listener.stop()


@needs_openssl
def test_server_only_tls_accepts_a_client_without_a_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    port = free_port()
    listener = _listener(tmp_path, ListenerConfig(port=port, allow=("SCANNER",),
                                                  tls=TlsConfig(pki["server.pem"], pki["server.key"])))
    try:
        assert _echo(port, tls=(_client_context(pki, with_cert=False), "127.0.0.1"))
    finally:
        listener.stop()


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothere.pem not found"):
        TlsConfig(tmp_path / "nothere.pem", tmp_path / "k.pem").server_context()
