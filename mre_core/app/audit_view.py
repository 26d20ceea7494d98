"""The Audit log page's filters: the widgets' choices → :func:`mre_core.store.audit.read_audit` arguments.

Pure; the page (``pages/audit.py``, admins only: ``view_audit``) draws the widgets and the table.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

#: The "no filter" choices of the user and action selectboxes.
ANY_USER = "(everyone)"
ANY_ACTION = "(all actions)"
#: The page shows at most this many entries (the most recent), the CSV the same rows.
MAX_ROWS = 5000
#: What each action area records, for the selectbox's labels.
AREAS = {
    "access:": "refused actions", "cohort:": "cohort (demo loaded)", "dicom:": "DICOM associations",
    "export:": "downloads", "intake:": "received files", "login:": "sign-in, failures, sign-out",
    "model:": "models", "save:": "saves and sign-offs", "settings:": "settings changes", "study:": "studies viewed",
    "users:": "accounts",
}


def area_label(area: str) -> str:
    """``"login:"`` → ``"login: sign-in, failures, sign-out"``."""
    return area if area == ANY_ACTION else f"{area} {AREAS.get(area, '')}".rstrip()


def filter_kwargs(user: str, area: str, dates: Sequence[_dt.date] | None, study: str) -> dict[str, Any]:
    """``read_audit`` keyword arguments for the chosen filters (a half-chosen date range filters from its start).

    >>> kw = filter_kwargs(ANY_USER, "login:", (_dt.date(2026, 1, 1), _dt.date(2026, 1, 31)), " 1.2.3 ")
    >>> kw["user"], kw["action_prefix"], str(kw["since"]), str(kw["until"]), kw["study_uid"]
    (None, 'login:', '2026-01-01', '2026-01-31', '1.2.3')
    """
    picked = list(dates or [])
    return {"user": None if user == ANY_USER else user, "action_prefix": None if area == ANY_ACTION else area,
            "since": picked[0] if picked else None, "until": picked[1] if len(picked) > 1 else None,
            "study_uid": study.strip() or None, "limit": MAX_ROWS}


def describe(kwargs: dict[str, Any]) -> str:
    """The filters in words, for the CSV export's audit entry."""
    parts = [f"{k}={v}" for k, v in kwargs.items() if v is not None and k != "limit"]
    return ", ".join(parts) or "no filter"


__all__ = ["ANY_ACTION", "ANY_USER", "AREAS", "MAX_ROWS", "area_label", "describe", "filter_kwargs"]
