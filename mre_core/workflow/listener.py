"""Studies arrive by themselves: a DICOM Storage SCP (``listen``) and a watch folder (``watch``).

``python -m mre_core listen --port 11112 --ae-title MRE_REVIEW [--allow SCANNER,PACS] [--forward-to H:P:AET]``
    A pynetdicom SCP for every Storage SOP class (so a PACS can re-send a whole study, our own SEG and SR
    included) in any transfer syntax, and Verification (C-ECHO). Only MR elastograms are analysed; the
    other objects are filed with the study and reported by the reader with their reason.
    Every instance is written to the inbox on disk and registered **before** the C-STORE
    response (so an acknowledged instance is never lost), in the network thread; analysis runs in
    :class:`mre_core.workflow.worker.Worker` once the study has been quiet for ``--quiet-s`` seconds.
    With ``--allow``, associations from any other calling AE title are rejected.
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
import signal
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


@dataclass(frozen=True)
class ListenerConfig:
    """Network side of the listener."""

    port: int = 11112
    ae_title: str = "MRE_REVIEW"
    host: str = "0.0.0.0"
    allow: tuple[str, ...] = ()  #: calling AE titles allowed; empty = anyone


class Listener:
    """The SCP plus its worker and forwarder threads; :meth:`start` returns once it accepts associations."""

    def __init__(self, inbox: Inbox, settings: Settings, net: ListenerConfig, intake: IntakeConfig,
                 model: Any = None) -> None:
        self.inbox, self.net, self.intake = inbox, net, intake
        self.worker = Worker(inbox, settings, intake, model)
        self.forwarder = Forwarder(inbox, intake) if intake.forward_to else None
        self.ae = AE(ae_title=net.ae_title)
        for sop_class in ACCEPTED_STORAGE:
            self.ae.add_supported_context(sop_class, AllTransferSyntaxes)
        self.ae.add_supported_context(Verification)
        self.ae.require_calling_aet = list(net.allow)
        self.ae.require_called_aet = True  # a sender that addresses another AE title is refused
        self.server: Any = None
        self._counts: dict[int, list[int]] = {}  #: per association: [new, duplicate] instances
        self._counts_lock = threading.Lock()

    def start(self) -> None:
        recovered = self.inbox.recover()
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_C_ECHO, lambda event: STATUS_SUCCESS), (evt.EVT_CONN_CLOSE, self._on_close)]
        self.server = self.ae.start_server((self.net.host, self.net.port), block=False, evt_handlers=handlers)
        self.worker.start()
        if self.forwarder:
            self.forwarder.start()
        log.info("listening on %s:%d as %s (allow: %s); inbox %s; recovered %s", self.net.host, self.net.port,
                 self.net.ae_title, ",".join(self.net.allow) or "any calling AE", self.inbox.root, recovered)

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

    def _on_rejected(self, event: Any) -> None:
        requestor = event.assoc.requestor
        log.warning("association from %s (%s) rejected: calling AE title not allowed, or wrong called AE title",
                    requestor.ae_title, requestor.address)


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
    p.add_argument("--host", default=ListenerConfig.host, help="address to bind (default %(default)s)")
    p.add_argument("--allow", default="", metavar="AET,...", help="calling AE titles allowed (default: any)")
    _common(p)


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
        settings, inbox, config, model = _setup(args)
        net = ListenerConfig(port=args.port, ae_title=args.ae_title, host=args.host,
                             allow=tuple(a.strip() for a in args.allow.split(",") if a.strip()))
        listener = Listener(inbox, settings, net, config, model)
        listener.start()
    except Exception as exc:  # noqa: BLE001 - port in use, weights missing, store unavailable: say which
        print(f"error: the listener could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"MRE listener ready: {net.ae_title} on {net.host}:{net.port}; inbox {inbox.root}; "
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
    inbox.recover()
    threads: list[BackgroundLoop] = [Watcher(args.folder, inbox, config.poll_s, args.settle_s),
                            Worker(inbox, settings, config, model)]
    if config.forward_to:
        threads.append(Forwarder(inbox, config))
    for t in threads:
        t.start()
    print(f"MRE watcher ready: {args.folder} → inbox {inbox.root}; store {inbox.store.display_url}", flush=True)
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
    inbox.recover()
    threads: list[BackgroundLoop] = [Worker(inbox, settings, config, model)]
    if config.forward_to:
        threads.append(Forwarder(inbox, config))
    for t in threads:
        t.start()
    print(f"MRE worker ready: inbox {inbox.root}; store {inbox.store.display_url}"
          + (f"; forwarding to {config.forward_to}" if config.forward_to else ""), flush=True)
    _wait_for_signal()
    for t in threads:
        t.stop()
        t.join(timeout=60)
    return 0


__all__ = ["ACCEPTED_STORAGE", "Listener", "ListenerConfig", "configure_listen_parser",
           "configure_watch_parser", "configure_work_parser", "run_listen", "run_watch", "run_work"]
