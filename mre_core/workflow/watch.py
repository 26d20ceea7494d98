"""The watch folder: DICOM files exported to a folder enter the same inbox as the listener's.

:class:`Watcher` polls a folder; a file unchanged for ``settle_s`` seconds is parsed, filed in the inbox
(the same atomic write and registration as a C-STORE), and a non-DICOM file is named with its reason in
the log and the audit table.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import pydicom

from mre_core.store.inbox import Inbox, InstanceKeys
from mre_core.workflow.worker import BackgroundLoop

log = logging.getLogger(__name__)


class Watcher(BackgroundLoop):
    """Copies settled files from ``folder`` into the inbox (a file is settled when unchanged for ``settle_s``)."""

    def __init__(self, folder: Path, inbox: Inbox, poll_s: float, settle_s: float) -> None:
        super().__init__("mre-watcher", poll_s)
        self.folder, self.inbox, self.settle_s = Path(folder), inbox, settle_s
        self._done: dict[Path, tuple[int, int]] = {}

    def step(self) -> None:
        now = time.time()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            try:
                st = path.stat()
            except FileNotFoundError:  # moved away meanwhile
                continue
            signature = (st.st_size, st.st_mtime_ns)
            if self._done.get(path) == signature or now - st.st_mtime < self.settle_s:
                continue
            self._done[path] = signature
            self.ingest(path)

    def ingest(self, path: Path) -> bool:
        """Copy one file into the inbox; ``False`` (reported with the reason) when it is not usable DICOM."""
        try:
            data = path.read_bytes()
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            keys = InstanceKeys.from_dataset(ds)
        except Exception as exc:  # noqa: BLE001 - reported by name and reason; the others go on
            reason = str(exc) if isinstance(exc, ValueError) and "cannot be filed" in str(exc) else \
                f"not a readable DICOM file ({type(exc).__name__})"
            log.warning("watch folder: %s left out: %s", path, reason)
            self.inbox.store.log_event("intake:rejected", f"{path}: {reason}")
            return False
        if not self.inbox.add(keys, data, f"watch:{self.folder}"):
            log.info("watch folder: %s is already in the inbox (SOP Instance UID %s)", path, keys.sop_uid)
        return True
