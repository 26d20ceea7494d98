"""De-identified research exports: identifying columns dropped, identifiers replaced by keyed pseudonyms.

:func:`deidentify` is pure pandas. Each identifier (patient ID, study, series and accession numbers) becomes
``<prefix>-<16 hex digits>``: the first 64 bits of HMAC-SHA256 over the identifier's kind and value with the
site's secret key (:func:`mre_core.config.deid_key`). The same patient gets the same pseudonym in every export
made with the same key, so exports can be joined, while nobody without the key can compute or reverse one.
Names, birth dates, free text and similar columns are dropped; dates keep only their year by default
(HIPAA Safe Harbor keeps no date element finer than the year, 45 CFR 164.514(b)(2)(i)(C)).

The returned :class:`DeidRecord` says what was done, with a fingerprint of the key (never the key); write
its :meth:`~DeidRecord.to_json` beside the export.

Pseudonymised data can still be personal data (GDPR recital 26): whoever holds the key can re-link it, and
the remaining columns (dates, values, manufacturer) can narrow a person down in a small cohort.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd

from mre_core.config import check_deid_key as _check_key

#: Columns whose values become pseudonyms.
DEFAULT_ID_COLUMNS = ("patient_id", "study_uid", "series_uid", "accession_number")
#: Columns removed outright: names, birth dates, contact details, free text, file paths (folder names often
#: carry a patient's name).
DEFAULT_DROP = ("patient_name", "birth_date", "patient_birth_date", "patient_address", "patient_telephone_numbers",
                "other_patient_ids", "other_patient_names", "patient_mothers_birth_name", "referring_physician_name",
                "comment", "path", "source_path")
#: Columns that hold dates of the patient's care, reduced to the year (``dates="year"``) or removed.
DEFAULT_DATE_COLUMNS = ("study_date", "study_day", "created_utc")
#: The pseudonym prefix of each kind of identifier; another ID column gets ``id``.
PREFIXES: Mapping[str, str] = {"patient_id": "pt", "study_uid": "st", "series_uid": "se", "accession_number": "acc",
                               "sop_uid": "sop"}
#: Hex digits kept of each HMAC (16 = 64 bits: a collision is unlikely below some 10^8 distinct values).
PSEUDONYM_HEX_DIGITS = 16

METHOD = (f"HMAC-SHA256 keyed pseudonyms (prefix-kind, value), first {PSEUDONYM_HEX_DIGITS} hex digits, "
          "one prefix per kind of identifier")

Dates = Literal["year", "keep", "drop"]


def _norm(name: object) -> str:
    """``PatientName``, ``patient_name`` and ``Patient Name`` are one column."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


_PREFIX_BY_NORM = {_norm(k): v for k, v in PREFIXES.items()}


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible name for a key, so two exports can be seen to share one (it is not the key)."""
    digest = hmac.new(_check_key(key), b"mre-liver-review deid key fingerprint v1", hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:16]}"


def pseudonym(value: object, key: bytes, prefix: str = "id") -> str:
    """The pseudonym of one identifier: ``<prefix>-<16 hex digits>``; the prefix is part of the hashed text,
    so a patient ID and a study UID with the same characters get different pseudonyms."""
    mac = hmac.new(_check_key(key), f"{prefix}\x1f{value}".encode(), hashlib.sha256).hexdigest()
    return f"{prefix}-{mac[:PSEUDONYM_HEX_DIGITS]}"


@dataclass(frozen=True)
class DeidRecord:
    """What :func:`deidentify` did, to be written beside the export (no key in it, only its fingerprint)."""

    method: str
    key_fingerprint: str
    replaced: dict[str, str]  # column -> pseudonym prefix
    dropped: tuple[str, ...]
    dates: str  # what was done to date_columns: "year", "keep" or "drop"
    date_columns: tuple[str, ...]
    kept: tuple[str, ...]
    n_rows: int
    created_utc: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _blank(v: object) -> bool:
    if isinstance(v, str):
        return v.strip() == ""
    return v is None or bool(pd.isna(v))


def _pseudonymise(column: pd.Series, key: bytes, prefix: str) -> pd.Series:
    """Each value's pseudonym (computed once per distinct value); a blank stays blank, since one pseudonym for
    every blank would look like one patient."""
    seen: dict[str, str] = {}

    def one(v: object) -> object:
        if _blank(v):
            return v
        text = str(v).strip()
        if text not in seen:
            seen[text] = pseudonym(text, key, prefix)
        return seen[text]

    return column.astype(object).map(one)


def _year(column: pd.Series) -> pd.Series:
    """The year of each date (``YYYYMMDD``, ISO date or timestamp, or datetime values); unreadable -> blank."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.dt.year.map(lambda y: "" if pd.isna(y) else str(int(y))).astype(object)
    text = column.astype(object).map(lambda v: "" if _blank(v) else str(v)).astype(str)
    return text.str.extract(r"^\s*(\d{4})", expand=False).fillna("").astype(object)


def deidentify(frame: pd.DataFrame, key: bytes | None, *, id_columns: Sequence[str] = DEFAULT_ID_COLUMNS,
               drop: Sequence[str] = DEFAULT_DROP, dates: Dates = "year",
               date_columns: Sequence[str] = DEFAULT_DATE_COLUMNS) -> tuple[pd.DataFrame, DeidRecord]:
    """A de-identified copy of ``frame`` and the record of what was done.

    Parameters
    ----------
    frame:
        A table such as the cohort export or :meth:`mre_core.store.results.Store.latest_table`.
    key:
        The site's secret (:func:`mre_core.config.deid_key`), at least 32 bytes. ``None`` or empty raises
        :class:`~mre_core.config.DeidKeyError`: there is no default key, since a key shipped with the
        software would let anyone recompute the pseudonyms from a list of patient IDs.
    id_columns:
        Columns whose values are replaced by pseudonyms (prefix from :data:`PREFIXES`).
    drop:
        Columns removed. A column named in both ``drop`` and ``id_columns`` is an error.
    dates:
        ``"year"`` (default) keeps only the year of ``date_columns``, ``"drop"`` removes them, ``"keep"``
        leaves them (recorded).

    Column names match ignoring case, spaces and underscores (``PatientName`` is ``patient_name``).
    Other columns are kept as they are and listed in the record's ``kept``: check them.
    """
    key = _check_key(key)
    if dates not in ("year", "keep", "drop"):
        raise ValueError(f"dates must be 'year', 'keep' or 'drop', got {dates!r}")
    both = {_norm(c) for c in id_columns} & {_norm(c) for c in drop}
    if both:
        raise ValueError(f"column(s) {sorted(both)} are both to drop and to pseudonymise: choose one")
    ids = {_norm(c): _PREFIX_BY_NORM.get(_norm(c), "id") for c in id_columns}
    date_cols = {_norm(c) for c in date_columns}
    drops = {_norm(c) for c in drop} | (date_cols if dates == "drop" else set())
    out = frame.drop(columns=[c for c in frame.columns if _norm(c) in drops])
    replaced: dict[str, str] = {}
    for col in out.columns:
        n = _norm(col)
        if n in ids:
            out[col] = _pseudonymise(out[col], key, ids[n])
            replaced[str(col)] = ids[n]
        elif n in date_cols and dates == "year":
            out[col] = _year(out[col])
    dated = tuple(str(c) for c in frame.columns if _norm(c) in date_cols and _norm(c) not in ids)
    record = DeidRecord(
        method=METHOD, key_fingerprint=key_fingerprint(key), replaced=replaced,
        dropped=tuple(str(c) for c in frame.columns if _norm(c) in drops), dates=dates, date_columns=dated,
        kept=tuple(str(c) for c in out.columns if str(c) not in replaced and str(c) not in dated), n_rows=len(out),
        created_utc=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    return out, record


__all__ = ["DEFAULT_DATE_COLUMNS", "DEFAULT_DROP", "DEFAULT_ID_COLUMNS", "DeidRecord", "METHOD", "PREFIXES",
           "deidentify", "key_fingerprint", "pseudonym"]
