"""Warm the server process: import the heavy modules once, then keep them out of the garbage collector's way.

Measured with ``python -m mre_core.bench --app`` (2-core CPU, 2026-12-02): the first visit to the Review page
spent 7.8 s importing torch / segmentation-models-pytorch / timm (2.4 s), the pipeline (2.2 s), scipy.stats
(1.6 s) and the PDF writer (0.8 s) while the browser showed an empty page; and Streamlit's full garbage
collection after every script run (``runner.postScriptGC``) took 0.4–0.9 s of each page switch, walking
those modules' millions of objects every time.

:func:`warm_up` imports them and calls :func:`gc.freeze`, which moves every object alive now into the
permanent generation: later collections (Streamlit's included) skip them, while everything created
afterwards is collected as usual. ``python -m mre_core.app.serve`` (``make run``) calls it before the
server accepts a connection, so the first page is not the one that pays; ``app.py`` calls it too
(idempotent), so ``streamlit run app.py`` gets the same once its first run has imported them.
"""

from __future__ import annotations

import gc
import importlib
import logging
import time

log = logging.getLogger(__name__)

#: what the pages need that is slow to import (the first visit paid for them)
HEAVY_MODULES = ("torch", "segmentation_models_pytorch", "mre_core.analysis.pipeline", "mre_core.app.review_state",
                 "mre_core.stats.agreement", "mre_core.outputs.pdf", "mre_core.outputs.seg", "mre_core.outputs.sr",
                 "mre_core.app.figures", "mre_core.app.exports", "plotly.graph_objects")

_warmed_s: float | None = None


def warm_up() -> float:
    """Import :data:`HEAVY_MODULES` and freeze what exists into the permanent generation, once per process;
    returns the seconds the first call took (0 on later calls)."""
    global _warmed_s
    if _warmed_s is not None:
        return 0.0
    t = time.perf_counter()
    for name in HEAVY_MODULES:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    _warmed_s = time.perf_counter() - t
    log.info("warmed up in %.1f s (%d objects frozen)", _warmed_s, gc.get_freeze_count())
    return _warmed_s


__all__ = ["HEAVY_MODULES", "warm_up"]
