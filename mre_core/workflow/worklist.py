"""The Review page's worklist: studies that arrived by DICOM (listener or watch folder), newest first.

Pure pandas over :class:`mre_core.store.inbox.Inbox` and :meth:`mre_core.store.results.Store.latest_table`:
one row per inbox study with the patient, the study date, when it arrived, its status in the
clinic's words, the latest stiffness and stage, who reviewed it, and whether the SEG/SR reached
the destination.
"""

from __future__ import annotations

import pandas as pd

from mre_core.store.inbox import DONE, FAILED, KEPT, NOT_ANALYSED, PROCESSING, RECEIVING, Inbox, fmt_time

#: Review status of a study whose analysis is done, by the kind of its latest revision.
REVIEW_STATUS = {"auto": "auto, awaiting review", "review": "reviewed, not signed off", "signed_off": "signed off"}
COLUMNS = ("patient_id", "patient_name", "study_date", "received", "status", "stiffness_kpa", "stage", "reviewer",
           "forwarded", "detail", "turnaround_s", "study_uid", "series_uid", "n_instances")


def forward_summary(forwards: pd.DataFrame) -> dict[str, str]:
    """``{study_uid: "SEG sent · SR pending (2 attempts: …)"}`` from the forwarding table."""
    out: dict[str, str] = {}
    for study_uid, rows in forwards.groupby("study_uid", sort=False):
        parts = []
        for _, r in rows.iterrows():
            text = f"{r['what']} {r['status']}"
            if r["status"] != "sent" and r["attempts"]:
                text += f" ({r['attempts']} attempt(s): {str(r['last_error'])[:80]})"
            parts.append(text)
        out[str(study_uid)] = " · ".join(parts)
    return out


def status_text(inbox_status: str, n_instances: int, kind: str | None) -> str:
    """The worklist status for one study."""
    if inbox_status == RECEIVING:
        return f"receiving ({n_instances} instances)" if kind is None else "new images, re-analysis pending"
    if inbox_status == PROCESSING:
        return "analysing"
    if inbox_status in (FAILED, NOT_ANALYSED):
        return inbox_status
    if inbox_status in (DONE, KEPT) and kind is not None:
        return REVIEW_STATUS.get(kind, kind)
    if inbox_status == KEPT:
        return "uploaded, files kept"
    return inbox_status


def worklist(inbox: Inbox) -> pd.DataFrame:
    """One row per inbox study (columns :data:`COLUMNS`), newest arrival first."""
    queue = inbox.studies_table()
    if queue.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    latest = inbox.store.latest_table()
    latest = latest.set_index(["study_uid", "series_uid"]) if not latest.empty else latest
    sent = forward_summary(inbox.forward_table())
    rows = []
    for _, q in queue.iterrows():
        key = (q["study_uid"], q["series_uid"])
        rev = latest.loc[key] if q["series_uid"] and not latest.empty and key in latest.index else None
        kind = None if rev is None else str(rev["kind"])
        finished = q["finished_at"]
        rows.append({
            "patient_id": q["patient_id"], "patient_name": q["patient_name"], "study_date": q["study_date"],
            "received": fmt_time(q["last_received_at"]),
            "status": status_text(q["status"], int(q["n_instances"]), kind),
            "stiffness_kpa": None if rev is None else rev["stiffness_kpa"],
            "stage": "" if rev is None else rev["stage"],
            "reviewer": "" if rev is None else rev["reviewer"],
            "forwarded": sent.get(q["study_uid"], ""),
            "detail": q["detail"],
            "turnaround_s": None if pd.isna(finished) else round(float(finished) - float(q["last_received_at"]), 2),
            "study_uid": q["study_uid"], "series_uid": q["series_uid"], "n_instances": int(q["n_instances"]),
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


__all__ = ["COLUMNS", "REVIEW_STATUS", "forward_summary", "status_text", "worklist"]
