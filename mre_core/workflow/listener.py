"""Studies arrive by themselves: a DICOM Storage SCP (``listen``) and a watch folder (``watch``).

``python -m mre_core listen --port 11112 --ae-title MRE_REVIEW --allow SCANNER,PACS [--host 0.0.0.0] [--forward-to H:P:AET]``
    A pynetdicom SCP for every Storage SOP class (so a PACS can re-send a whole study, our own SEG and SR
    included) in any transfer syntax, and Verification (C-ECHO). Only MR elastograms are analysed; the
    other objects are filed with the study and reported by the reader with their reason.
    Every instance is written to the inbox on disk and registered **before** the C-STORE
    response (so an acknowledged instance is never lost), in the network thread; analysis runs in
    :class:`mre_core.workflow.worker.Worker` once the study has been quiet for ``--quiet-s`` seconds.
    Bound to 127.0.0.1 unless ``--host`` says otherwise. Associations from calling AE titles not in
    ``--allow`` (required unless ``--allow-any`` is given), from addresses outside ``--allow-network``,
    or addressed to another called AE title are rejected and written to the audit log. DICOM TLS with
    ``--tls-cert/--tls-key`` (``--tls-ca``: senders must present a certificate signed by that CA).
``python -m mre_core watch DIR``
    For sites that export files: every file that appears under ``DIR`` (recursively) and has not
    changed for ``--settle-s`` seconds is copied into the inbox the same way; files that are not
    DICOM are reported by name and reason (log + audit) and left where they are.

``python -m mre_core work``
    A worker without a network port: analyses and forwards from the same store and inbox as a
    listener. Run any number of them beside one listener (or several listeners) on a shared
    PostgreSQL store and a shared inbox folder; studies and forwards are claimed so that each is
    analysed and sent by one process (:mod:`mre_core.store.inbox`).

All run until SIGINT/SIGTERM; after a restart, whatever was received but not finished is finished
(:meth:`mre_core.store.inbox.Inbox.recover` and :mod:`mre_core.workflow.steps`).
"""

from __future__ import annotations

import argparse
import logging
import ipaddress
import signal
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from mre_core.config import Settings
from mre_core.store.inbox import Inbox, InstanceKeys
from mre_core.workflow.forwarder import Forwarder
from mre_core.workflow.watch import Watcher
from mre_core.workflow.worker import BackgroundLoop, Destination, IntakeConfig, Worker

log = logging.getLogger(__name__)

#: Storage SOP classes the listener accepts (anything else is refused at association).
#: every Storage SOP class pynetdicom knows (MR, Enhanced MR, SEG, SR, CT, secondary capture, …)
ACCEPTED_STORAGE = tuple(str(c.abstract_syntax) for c in AllStoragePresentationContexts)
STATUS_SUCCESS, STATUS_CANNOT_UNDERSTAND, STATUS_OUT_OF_RESOURCES = 0x0000, 0xC210, 0xA700


#: A-ASSOCIATE-RJ for a sender not on the lists: rejected-permanent, by the service user, calling AE title not
#: recognised (PS3.8 Table 9-21; also what an archive answers to an unknown host, e.g. dcm4chee's host check)
REJECT_PERMANENT, REJECT_BY_USER, REJECT_CALLING_AE = 0x01, 0x01, 0x03


@dataclass(frozen=True)
class TlsConfig:
    """DICOM TLS (PS3.15 Annex B): our certificate and key; with ``ca``, senders must present a certificate
    signed by it (mutual TLS)."""

    cert: Path
    key: Path
    ca: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        """The listener's TLS context (TLS 1.2 or newer); a missing or unreadable file is a ``ValueError``."""
        for path in (self.cert, self.key, *([self.ca] if self.ca else [])):
            if not Path(path).is_file():
                raise ValueError(f"TLS file {path} not found")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert), str(self.key))
        if self.ca:
            ctx.load_verify_locations(str(self.ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@dataclass(frozen=True)
class ListenerConfig:
    """Network side of the listener.

    Safe by default: bound to loopback; a listener reachable from elsewhere must name who may send
    (``allow`` calling AE titles, optionally ``networks`` of source addresses) or be started with an
    explicit ``allow_any``.
    """

    port: int = 11112
    ae_title: str = "MRE_REVIEW"
    host: str = "127.0.0.1"
    allow: tuple[str, ...] = ()  #: calling AE titles allowed
    allow_any: bool = False  #: accept any calling AE title (must be asked for)
    networks: tuple[str, ...] = ()  #: source networks allowed (CIDR, e.g. 10.1.0.0/16); empty = any address
    tls: TlsConfig | None = None

    def check(self) -> None:
        """``ValueError`` saying what to add when the configuration would accept anyone without being asked to."""
        if not self.allow and not self.allow_any:
            raise ValueError("no calling AE titles allowed: give --allow AET,... (the scanners and PACS that send "
                             "to us) or --allow-any to accept any sender")
        for net in self.networks:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad network

    def address_allowed(self, address: str) -> bool:
        if not self.networks:
            return True
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.networks)


class Listener:
    """The SCP plus its worker and forwarder threads; :meth:`start` returns once it accepts associations."""

    def __init__(self, inbox: Inbox, settings: Settings, net: ListenerConfig, intake: IntakeConfig,
                 model: Any = None) -> None:
        net.check()
        self.inbox, self.net, self.intake = inbox, net, intake
        self.worker = Worker(inbox, settings, intake, model)
        self.forwarder = Forwarder(inbox, intake) if intake.forward_to else None
        self.ae = AE(ae_title=net.ae_title)
        for sop_class in ACCEPTED_STORAGE:
            self.ae.add_supported_context(sop_class, AllTransferSyntaxes)
        self.ae.add_supported_context(Verification)
        self.ae.require_calling_aet = [] if net.allow_any else list(net.allow)
        self.ae.require_called_aet = True  # a sender that addresses another AE title is refused
        self.server: Any = None
        self._counts: dict[int, list[int]] = {}  #: per association: [new, duplicate] instances
        self._counts_lock = threading.Lock()

    def start(self) -> None:
        recovered = self.inbox.recover()
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_C_ECHO, lambda event: STATUS_SUCCESS), (evt.EVT_CONN_CLOSE, self._on_close),
                    (evt.EVT_REQUESTED, self._on_requested)]
        ssl_context = self.net.tls.server_context() if self.net.tls else None
        self.server = self.ae.start_server((self.net.host, self.net.port), block=False, evt_handlers=handlers,
                                           ssl_context=ssl_context)
        self.worker.start()
        if self.forwarder:
            self.forwarder.start()
        log.info("listening on %s:%d%s as %s (allow: %s; networks: %s); inbox %s; recovered %s", self.net.host,
                 self.net.port, " with TLS" if self.net.tls else "", self.net.ae_title,
                 "any calling AE" if self.net.allow_any else ",".join(self.net.allow),
                 ",".join(self.net.networks) or "any", self.inbox.root, recovered)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        for thread in (self.worker, self.forwarder):
            if thread is not None:
                thread.stop()
                thread.join(timeout=60)

    def _on_store(self, event: Any) -> int:
        requestor = event.assoc.requestor
        origin = f"{requestor.ae_title}@{requestor.address}"
        try:
            keys = InstanceKeys.from_dataset(event.dataset)
        except Exception as exc:  # noqa: BLE001 - an undecodable dataset is refused with a reason
            log.warning("C-STORE from %s refused: %s", origin, exc)
            return STATUS_CANNOT_UNDERSTAND
        try:
            new = self.inbox.add(keys, event.encoded_dataset(), origin)
        except Exception:  # disk full, database unavailable: the sender must retry
            log.exception("C-STORE of %s from %s could not be filed", keys.sop_uid, origin)
            return STATUS_OUT_OF_RESOURCES
        if not new:
            log.debug("duplicate instance %s from %s: already in the inbox", keys.sop_uid, origin)
        with self._counts_lock:
            self._counts.setdefault(id(event.assoc), [0, 0])[0 if new else 1] += 1
        return STATUS_SUCCESS

    def _on_close(self, event: Any) -> None:
        """One line per association that stored anything (a re-sent study does not flood the log)."""
        with self._counts_lock:
            counts = self._counts.pop(id(event.assoc), None)
        if counts:
            requestor = event.assoc.requestor
            log.info("association from %s@%s: %d new instance(s) filed, %d already in the inbox (acknowledged, "
                     "not filed again)", requestor.ae_title, requestor.address, counts[0], counts[1])

    def _on_requested(self, event: Any) -> None:
        """Refuse an association from a source address outside ``networks`` (before any data is accepted)."""
        requestor = event.assoc.requestor
        if not self.net.address_allowed(requestor.address):
            event.assoc.acse.send_reject(REJECT_PERMANENT, REJECT_BY_USER, REJECT_CALLING_AE)
            calling = str(getattr(requestor.primitive, "calling_ae_title", "") or requestor.ae_title).strip()
            self._audit_refusal(calling, requestor.address, "source address not in the allowed networks")

    def _on_rejected(self, event: Any) -> None:
        requestor = event.assoc.requestor
        if self.net.address_allowed(requestor.address):  # (the address check audits its own refusals)
            self._audit_refusal(requestor.ae_title, requestor.address,
                                "calling AE title not allowed, or wrong called AE title")

    def _audit_refusal(self, ae_title: str, address: str, reason: str) -> None:
        log.warning("association from %s (%s) rejected: %s", ae_title, address, reason)
        try:
            self.inbox.store.log_event("dicom:association_rejected", f"{ae_title}@{address}: {reason}")
        except Exception:  # noqa: BLE001 - the refusal stands even if the audit database is unavailable
            log.exception("could not write the refused association to the audit log")


# ------------------------------------------------------------------------------------------- CLI
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store-dir", type=Path, help="inbox folder for received instances (default: MRE_INBOX_DIR "
                                                 "or data/inbox)")
    p.add_argument("--quiet-s", type=float, default=IntakeConfig.quiet_s,
                   help="a study is complete when no instance arrived for this many seconds (default %(default)s)")
    p.add_argument("--forward-to", type=Destination.parse, metavar="HOST:PORT:AET",
                   help="send the DICOM SEG and SR of every result to this C-STORE SCP")
    p.add_argument("--ae-title", default=IntakeConfig.ae_title, help="our AE title (default %(default)s)")
    p.add_argument("--no-pdf", action="store_true", help="do not write a PDF report per study")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the model runs")


def configure_listen_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=ListenerConfig.port, help="TCP port (default %(default)s)")
    p.add_argument("--host", default=ListenerConfig.host,
                   help="address to bind (default %(default)s: this machine only; e.g. 0.0.0.0 for every interface)")
    p.add_argument("--allow", default="", metavar="AET,...",
                   help="calling AE titles allowed to send (required unless --allow-any)")
    p.add_argument("--allow-any", action="store_true", help="accept any calling AE title (explicitly open)")
    p.add_argument("--allow-network", default="", metavar="CIDR,...",
                   help="source networks allowed, e.g. 10.20.0.0/16,192.168.5.7/32 (default: any address)")
    p.add_argument("--tls-cert", type=Path, help="DICOM TLS: our certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="DICOM TLS: our private key (PEM)")
    p.add_argument("--tls-ca", type=Path, help="DICOM TLS: require sender certificates signed by this CA (PEM)")
    _common(p)


def listener_config(args: argparse.Namespace) -> ListenerConfig:
    """The CLI's :class:`ListenerConfig`; ``ValueError`` for a half-given TLS setup or a bad network."""
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_ca and not args.tls_cert):
        raise ValueError("DICOM TLS needs --tls-cert and --tls-key (and optionally --tls-ca)")
    tls = TlsConfig(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    split = lambda text: tuple(a.strip() for a in text.split(",") if a.strip())  # noqa: E731
    net = ListenerConfig(port=args.port, ae_title=args.ae_title, host=args.host, allow=split(args.allow),
                         allow_any=args.allow_any, networks=split(args.allow_network), tls=tls)
    net.check()
    return net


def configure_watch_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, help="folder the scanner or PACS exports DICOM files into")
    p.add_argument("--settle-s", type=float, default=2.0,
                   help="a file is taken once unchanged for this many seconds (default %(default)s)")
    _common(p)


def configure_work_parser(p: argparse.ArgumentParser) -> None:
    _common(p)


def _setup(args: argparse.Namespace) -> tuple[Settings, Inbox, IntakeConfig, Any]:
    from mre_core.model.network import load_model
    from mre_core.store.results import open_store

    settings = Settings.from_env(device=args.device)
    root = args.store_dir or settings.inbox_dir
    inbox = Inbox(open_store(settings), root)
    config = IntakeConfig(quiet_s=args.quiet_s, forward_to=args.forward_to, write_pdf=not args.no_pdf,
                          ae_title=args.ae_title)
    model = load_model(settings.weights_dir, settings.model_name, settings.device)  # fail before listening
    return settings, inbox, config, model


def _wait_for_signal() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def _logging() -> None:
    logging.getLogger("mre_core").setLevel(logging.INFO)
    logging.getLogger("mre_core.io.reader").setLevel(logging.WARNING)  # one line per study, not per skipped file
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))


def run_listen(args: argparse.Namespace) -> int:
    _logging()
    try:
        net = listener_config(args)  # before loading anything: a refused configuration fails at once
        settings, inbox, config, model = _setup(args)
        listener = Listener(inbox, settings, net, config, model)
        listener.start()
    except Exception as exc:  # noqa: BLE001 - port in use, weights missing, store unavailable: say which
        print(f"error: the listener could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"MRE listener ready: {net.ae_title} on {net.host}:{net.port}{' (TLS)' if net.tls else ''}; "
          f"inbox {inbox.root}; "
          f"store {inbox.store.display_url}", flush=True)
    _wait_for_signal()
    listener.stop()
    return 0


def run_watch(args: argparse.Namespace) -> int:
    _logging()
    if not args.folder.is_dir():
        print(f"error: watch folder {args.folder} does not exist", file=sys.stderr)
        return 1
    try:
        settings, inbox, config, model = _setup(args)
    except Exception as exc:  # noqa: BLE001
        print(f"error: the watcher could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return _run_loops(inbox, config, [Watcher(args.folder, inbox, config.poll_s, args.settle_s),
                                      Worker(inbox, settings, config, model)],
                      f"MRE watcher ready: {args.folder} → inbox {inbox.root}; store {inbox.store.display_url}")


def _run_loops(inbox: Inbox, config: IntakeConfig, threads: list[BackgroundLoop], ready: str) -> int:
    """Recover the inbox, start the loops (plus the forwarder when forwarding), print ``ready``, run until a
    signal, stop them."""
    inbox.recover()
    if config.forward_to:
        threads.append(Forwarder(inbox, config))
    for t in threads:
        t.start()
    print(ready, flush=True)
    _wait_for_signal()
    for t in threads:
        t.stop()
        t.join(timeout=60)
    return 0


def run_work(args: argparse.Namespace) -> int:
    _logging()
    try:
        settings, inbox, config, model = _setup(args)
    except Exception as exc:  # noqa: BLE001
        print(f"error: the worker could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return _run_loops(inbox, config, [Worker(inbox, settings, config, model)],
                      f"MRE worker ready: inbox {inbox.root}; store {inbox.store.display_url}"
                      + (f"; forwarding to {config.forward_to}" if config.forward_to else ""))


__all__ = ["ACCEPTED_STORAGE", "Listener", "ListenerConfig", "TlsConfig", "listener_config", "configure_listen_parser",
           "configure_watch_parser", "configure_work_parser", "run_listen", "run_watch", "run_work"]
