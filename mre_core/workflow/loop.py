"""A background thread that calls ``step()`` every ``poll_s`` seconds until stopped (worker, forwarder, watch folder)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)



class BackgroundLoop(threading.Thread):
    """A daemon thread calling :meth:`step` every ``poll_s`` until :meth:`stop`."""

    def __init__(self, name: str, poll_s: float) -> None:
        super().__init__(name=name, daemon=True)
        self.poll_s = poll_s
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.step()
            except Exception:  # a broken step (e.g. the database briefly locked) must not end the thread
                log.exception("%s: step failed; trying again", self.name)
            self._stop_event.wait(self.poll_s)

    def step(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError
