"""MRE Liver Review core: DICOM elastograms → liver ROI → stiffness (kPa) → fibrosis stage.

Public API (imported lazily, so ``mre_core.analysis.staging`` and ``mre_core.config`` load without torch):

* :class:`Settings` — every tunable, from ``MRE_*`` env vars and overrides;
* :func:`read_inputs` — files / folders / zips → studies + skipped files with reasons;
* :func:`load_model` — weights from ``weights/`` with SHA-256 check;
* :func:`analyze_study` — one study → :class:`StudyResult` (ROI, kPa, stage, QC).

Intended use: research and clinical decision support; not a certified medical device.
The shipped weights are trained on synthetic phantoms.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Settings": "mre_core.config",
    "read_inputs": "mre_core.io.reader",
    "load_model": "mre_core.model.network",
    "analyze_study": "mre_core.analysis.pipeline",
    "StudyResult": "mre_core.analysis.pipeline",
    "stage": "mre_core.analysis.staging",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mre_core' has no attribute {name!r}")
