"""The audit log: append an entry, read entries back with filters, export them as CSV.

Append-only by design: this module offers no way to change or remove an entry, and from schema version 6
the database itself refuses UPDATE and DELETE on the table (:func:`mre_core.store.schema._migrate_to_6`).
Actions are ``<area>:<what>`` (``save:signed_off``, ``intake:rejected``, ``login:failure``, ``users:add``,
``access:denied``), so a prefix filters an area.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mre_core.store.schema import audit, revisions, studies

if TYPE_CHECKING:
    from mre_core.store.results import Store

#: Columns of :func:`read_audit` and of the CSV, in order.
AUDIT_COLUMNS = ("entry_id", "at_utc", "user", "action", "study_uid", "series_uid", "revision", "detail")


def utc_now() -> str:
    """The timestamp format of every ``*_utc`` column: ISO 8601 to the second, ``+00:00``."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def append_entry(conn: Connection, action: str, *, user: str = "", detail: str = "") -> None:
    """Add one entry inside the caller's transaction (so the entry and the change it records commit together)."""
    conn.execute(audit.insert().values(at_utc=utc_now(), user=user[:128], action=action[:32], detail=detail))


def _stamp(value: _dt.date | _dt.datetime | str) -> tuple[str, bool]:
    """A filter bound as stored text, and whether it is a whole day (a date) rather than an instant.
    A naive datetime is read as UTC."""
    if isinstance(value, str):
        text = value.strip()
        value = _dt.datetime.fromisoformat(text) if len(text) > 10 else _dt.date.fromisoformat(text)
    if isinstance(value, _dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
        return aware.astimezone(_dt.UTC).isoformat(timespec="seconds"), False
    return _dt.datetime.combine(value, _dt.time(), tzinfo=_dt.UTC).isoformat(timespec="seconds"), True


def _day_after(stamp: str) -> str:
    return (_dt.datetime.fromisoformat(stamp) + _dt.timedelta(days=1)).isoformat(timespec="seconds")


def read_audit(store: Store, *, user: str | None = None, action_prefix: str | None = None,
               since: _dt.date | _dt.datetime | str | None = None, until: _dt.date | _dt.datetime | str | None = None,
               study_uid: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Audit entries, oldest first, with the columns :data:`AUDIT_COLUMNS`.

    Parameters
    ----------
    user:
        Exactly this user (the acting user, or the name tried at a failed sign-in).
    action_prefix:
        Actions starting with this text (``"login:"``, ``"users:"``, ``"save:"``).
    since, until:
        From ``since`` and up to ``until``, as dates (``until`` includes the whole day), datetimes (naive
        ones are UTC) or ISO text.
    study_uid:
        Entries whose study UID, or whose detail, contains this text.
    limit:
        At most this many entries, the most recent ones.
    """
    q = (sa.select(audit.c.id.label("entry_id"), audit.c.at_utc, audit.c.user, audit.c.action, studies.c.study_uid,
                   studies.c.series_uid, revisions.c.revision, audit.c.detail)
         .select_from(audit.outerjoin(studies, studies.c.id == audit.c.study_id)
                      .outerjoin(revisions, revisions.c.id == audit.c.revision_id)))
    if user is not None:
        q = q.where(audit.c.user == user)
    if action_prefix:
        q = q.where(audit.c.action.startswith(action_prefix, autoescape=True))
    if since is not None:
        q = q.where(audit.c.at_utc >= _stamp(since)[0])
    if until is not None:
        stamp, whole_day = _stamp(until)
        q = q.where(audit.c.at_utc < _day_after(stamp) if whole_day else audit.c.at_utc <= stamp)
    if study_uid:
        q = q.where(studies.c.study_uid.contains(study_uid, autoescape=True)
                    | audit.c.detail.contains(study_uid, autoescape=True))
    if limit is not None:
        q = q.order_by(audit.c.id.desc()).limit(int(limit))
    with store.engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    frame = pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))
    frame = frame.sort_values("entry_id", kind="stable").reset_index(drop=True)
    frame["revision"] = frame["revision"].astype("Int64")
    return frame


def audit_choices(store: Store) -> tuple[list[str], list[str]]:
    """The users and the action areas (``"login:"``, ``"export:"``, …) found in the log, sorted: the choices of
    the audit page's filters."""
    with store.engine.connect() as conn:
        users = conn.execute(sa.select(audit.c.user).distinct()).scalars().all()
        actions = conn.execute(sa.select(audit.c.action).distinct()).scalars().all()
    areas = {a.split(":", 1)[0] + ":" for a in actions if a}
    return sorted(u for u in users if u), sorted(areas)


def audit_csv(frame: pd.DataFrame) -> bytes:
    """An audit table (:func:`read_audit`) as UTF-8 CSV with the snake_case columns of :data:`AUDIT_COLUMNS`."""
    return frame.reindex(columns=list(AUDIT_COLUMNS)).to_csv(index=False).encode("utf-8")


__all__ = ["AUDIT_COLUMNS", "append_entry", "audit_choices", "audit_csv", "read_audit", "utc_now"]
