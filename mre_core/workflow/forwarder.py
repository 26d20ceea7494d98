"""Send our SEG and SR objects back to a DICOM destination, with retries.

:class:`Forwarder` is a background loop over the store's ``forwards`` queue: each due object is
claimed (:meth:`~mre_core.store.inbox.Inbox.claim_forward`: of several forwarders sharing a store,
exactly one takes it), sent by C-STORE (:func:`send_file`) to its destination AE and marked sent;
a failure is retried after 5 s, 30 s, 2 min and 10 min, and the last error is kept for the worklist.
A forwarder that dies mid-send leaves a claim that is released at the next start on the same host
or when its lease runs out elsewhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mre_core.store.inbox import Inbox, worker_id
from mre_core.workflow.loop import BackgroundLoop
from mre_core.workflow.steps import fault_point
from mre_core.workflow.worker import Destination, IntakeConfig

log = logging.getLogger(__name__)


def send_file(path: Path, destination: Destination, calling_ae: str, timeout_s: float = 30.0) -> None:
    """C-STORE one DICOM file to ``destination``; raises ``ConnectionError`` saying what failed."""
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise ConnectionError(f"association with {destination} {'rejected' if assoc.is_rejected else 'failed'}")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise ConnectionError(f"no C-STORE response from {destination} (timeout or aborted)")
    if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success or warning
        raise ConnectionError(f"{destination} answered C-STORE status 0x{code:04X}")


class Forwarder(BackgroundLoop):
    """Sends queued SEG/SR files; a failed attempt is retried after ``config.retry_delays_s``."""

    def __init__(self, inbox: Inbox, config: IntakeConfig) -> None:
        super().__init__("mre-forwarder", config.poll_s)
        self.inbox, self.config = inbox, config
        self.worker = worker_id()

    def step(self) -> None:
        delays = self.config.retry_delays_s
        for job in self.inbox.due_forwards():
            if self._stop_event.is_set():
                return
            if not self.inbox.claim_forward(job["id"], self.worker, self.config.lease_s):
                continue  # another forwarder took it
            try:
                send_file(Path(job["path"]), Destination.parse(job["destination"]), self.config.ae_title)
            except Exception as exc:  # noqa: BLE001 - recorded and retried
                attempt = int(job["attempts"])
                retry = delays[attempt] if attempt < len(delays) else None
                self.inbox.forward_done(job["id"], False, f"{type(exc).__name__}: {exc}", retry)
                log.warning("forward %s of study %s to %s failed (attempt %d): %s; %s", job["what"],
                            job["study_uid"], job["destination"], attempt + 1, exc,
                            f"next try in {retry:.0f} s" if retry is not None else "giving up")
            else:
                self.inbox.forward_done(job["id"], True, "", None)
                log.info("forwarded %s of study %s to %s", job["what"], job["study_uid"], job["destination"])
                fault_point("forwarded")
