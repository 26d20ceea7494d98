"""A background thread that calls ``step()`` every ``poll_s`` seconds until stopped (worker, forwarder, watch folder),
and :class:`ActiveModel`, the model a long-running worker analyses with (the registry's active one)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the forwarder and the watch folder use this module without torch
    from mre_core.config import Settings
    from mre_core.model.network import LoadedModel
    from mre_core.store.results import Store

log = logging.getLogger(__name__)


@dataclass
class ActiveModel:
    """The model and settings a worker analyses with, kept in step with the model registry.

    :meth:`current` is called before each study: one query for the active version; only when it changed since
    the last call are the settings resolved again (:func:`mre_core.store.models.active_settings`: the registry's
    model while ``configured`` names the default one) and, when they name other weights, the model reloaded, so
    every saved result names the model that produced it. A ``model`` handed in at start is taken to be the one
    ``configured`` names and is kept while that is the model to use. When the registry cannot be read, or the
    active model fails to load, the model in hand (else the configured one) is used and the log says why.
    Weights replaced in place under the same folder and name are picked up when the worker restarts (a
    registered version never changes; site models get a folder each).
    """

    configured: Settings
    model: LoadedModel | None = None
    settings: Settings | None = None  #: what :attr:`model` was loaded from (None: ``configured``)
    seen: str | None = None  #: the active version at the last check (None: never checked)
    note: str = ""  #: the sentence of the last resolution

    def current(self, store: Store) -> tuple[LoadedModel, Settings]:
        """The model to analyse the next study with, and its settings (reloaded when the active model changed)."""
        from mre_core.store.models import active_settings, active_version

        try:
            version = active_version(store)
            if self.model is not None and version == self.seen:
                return self.model, self.settings or self.configured
            wanted, self.note = active_settings(self.configured, store)
        except Exception as exc:  # noqa: BLE001 - a locked or unreachable store must not stop the worker
            log.warning("model registry not readable (%s); analysing with the model in hand", exc)
            return self._fallback()
        self.seen = version
        if self.model is None or not _same_weights(self.settings or self.configured, wanted):
            try:
                self.model = _load(wanted)
            except Exception as exc:  # noqa: BLE001 - a broken active model: say so, analyse with what we have
                log.error("model %s in %s could not be loaded (%s); analysing with the model in hand",
                          wanted.model_name, wanted.weights_dir, exc)
                return self._fallback()
            log.info("worker model: %s — %s", self.model.version, self.note)
        self.settings = wanted
        return self.model, wanted

    def _fallback(self) -> tuple[LoadedModel, Settings]:
        if self.model is None:
            self.model, self.settings = _load(self.configured), self.configured
        return self.model, self.settings or self.configured


def _load(settings: Settings) -> LoadedModel:
    from mre_core.model.network import load_model

    return load_model(settings.weights_dir, settings.model_name, settings.device)


def _same_weights(a: Settings, b: Settings) -> bool:
    return (Path(a.weights_dir).resolve(), a.model_name, a.device) == (Path(b.weights_dir).resolve(), b.model_name,
                                                                       b.device)


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
