"""The web app's server-wide cache of analysed studies: the same files, settings and model give the same analysis.

Opening a study again — in a new browser session, from another reader's browser, after a reload, or
the demo study once more — would run the network again on exactly the same input and produce exactly
the same result (inference is deterministic on a given device). The Review page therefore keeps the
last :data:`MAX_ENTRIES` analysed batches of this server process, keyed by:

* the **bytes** of every input file (SHA-256 over the relative names and contents, :func:`sources_digest`;
  a folder is every file under it), so a changed or added file is a new analysis;
* the **settings** (their full ``repr``: unit profile, thresholds, guardrails, staging table, …);
* the **model**: its version (``name@sha12`` of the weights file) and the identity of the loaded network
  object, so another model — a new active site model included — is a new analysis.

The cached arrays are made read-only (:func:`freeze`): a page that tried to change a cached result in
place would raise instead of silently changing what another session shows. Every edit already makes
new arrays (:func:`~mre_core.app.review_state.apply_edits`). The page says when a result comes from
the cache (``ReviewBatch.from_cache``), with the time the analysis took when it ran.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mre_core.app.review_state import ReviewBatch
from mre_core.config import Settings
from mre_core.model.network import LoadedModel

#: analysed batches kept per server process (a 5-slice study with its probability maps is about 3 MB)
MAX_ENTRIES = 8
#: and at most this many bytes of arrays in all (a large multi-study upload is not kept whole in memory)
MAX_BYTES = 256 * 2**20


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def sources_digest(sources: Iterable[Any]) -> str | None:
    """SHA-256 over every input's name and bytes, in order; ``None`` when a source is of a kind not hashed here
    (the batch is then analysed without the cache)."""
    h = hashlib.sha256()
    for src in sources:
        if isinstance(src, tuple) and len(src) == 2 and isinstance(src[1], (bytes, bytearray)):
            name, data = src
            parts = [(str(name), bytes(data))]
        elif isinstance(src, (str, Path)):
            path = Path(src)
            if path.is_dir():
                parts = [(str(p.relative_to(path)), p.read_bytes()) for p in _files_under(path)]
            elif path.is_file():
                parts = [(path.name, path.read_bytes())]
            else:
                return None
        else:
            return None
        h.update(b"source\0")
        for name, data in parts:
            h.update(name.encode("utf-8", "surrogateescape") + b"\0")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()


def cache_key(sources: Iterable[Any], settings: Settings, model: LoadedModel) -> tuple[str, str, str, int] | None:
    """``(files digest, settings digest, model version, network id)``, or ``None`` when the files cannot be hashed."""
    digest = sources_digest(sources)
    if digest is None:
        return None
    settings_digest = hashlib.sha256(repr(settings).encode()).hexdigest()
    return digest, settings_digest, model.version, id(model.net)


def _arrays(batch: ReviewBatch) -> Iterable[np.ndarray]:
    for rs in batch.studies:
        yield from rs.probabilities
        for e in rs.result.study.series.slices:
            yield from (e.kpa, e.confidence)
        for s in rs.result.slices:
            yield from (s.roi, s.predicted_mask)


def batch_bytes(batch: ReviewBatch) -> int:
    """Bytes held by the arrays of ``batch``."""
    return sum(int(a.nbytes) for a in _arrays(batch) if isinstance(a, np.ndarray))


def freeze(batch: ReviewBatch) -> ReviewBatch:
    """Make every array of ``batch`` read-only (in place) and return it."""
    for a in _arrays(batch):
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    return batch


class AnalysisCache:
    """A small thread-safe LRU of analysed batches (one per server process)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, ReviewBatch] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple | None) -> ReviewBatch | None:
        """A copy of the cached batch marked ``from_cache`` (its lists are new; its results are shared and read-only)."""
        if key is None:
            return None
        with self._lock:
            batch = self._items.get(key)
            if batch is None:
                return None
            self._items.move_to_end(key)
        return replace(batch, studies=list(batch.studies), skipped=list(batch.skipped), from_cache=True)

    def put(self, key: tuple | None, batch: ReviewBatch) -> None:
        """Keep ``batch`` (frozen) unless a study of it failed (a failure is retried on the next opening) or it is
        larger than the whole budget; the least recently used batches go first when either limit is passed."""
        if key is None or not batch.studies or any("analysis failed" in str(s.reason) for s in batch.skipped):
            return
        size = batch_bytes(batch)
        if size > self.max_bytes:
            return
        freeze(batch)
        with self._lock:
            self._items[key] = batch
            self._sizes[key] = size
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries or sum(self._sizes.values()) > self.max_bytes:
                old, _ = self._items.popitem(last=False)
                self._sizes.pop(old, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._sizes.clear()

    def __len__(self) -> int:
        return len(self._items)


#: the cache of this server process
CACHE = AnalysisCache()

__all__ = ["CACHE", "MAX_BYTES", "MAX_ENTRIES", "AnalysisCache", "batch_bytes", "cache_key", "freeze", "sources_digest"]
