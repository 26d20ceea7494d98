"""The body of one writer process in the concurrent-save test (a module of its own so spawn can import it).

Each process opens its own :class:`Store` (its own engine and connections, as the app, the worker and the
listener do), waits at a barrier so that all writers start saving at the same moment, then saves the same
study ``n`` times and reports the revision numbers it was given, or the exception it met.
"""

from __future__ import annotations

import traceback
from typing import Any

from mre_core.analysis.pipeline import StudyResult
from mre_core.store.results import Store


def save_many(url: str, result: StudyResult, n: int, name: str, barrier: Any, outcomes: Any) -> None:
    """Save ``result`` ``n`` times as reviewer ``name``; put ``(name, numbers, error)`` on ``outcomes``."""
    numbers: list[int] = []
    error = ""
    try:
        store = Store(url)
        try:
            barrier.wait(timeout=120)
            for _ in range(n):
                numbers.append(store.save(result, kind="review", reviewer=name))
        finally:
            store.dispose()
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test with it
        error = traceback.format_exc()
    outcomes.put((name, numbers, error))
