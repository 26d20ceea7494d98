"""Where the study under review stands — automatic, reviewed, saved, signed off — and what the page says about it.

Pure functions over plain data, no Streamlit: the Review page's components
(:mod:`.review_panel`, :mod:`.downloads`) read a :class:`ReviewStatus` built from the edits and
the session's record of saves, and ask this module

* which :class:`ReviewState` the study is in (:func:`review_state`) and its label in the
  reports (:func:`status_label`: "automatic result, not reviewed", "reviewed, not signed off",
  "signed off by …");
* whether *Save* and *Sign off* are enabled (:func:`can_save`, :func:`can_sign_off`) and which
  revision kind a save writes (:func:`save_kind`);
* the state after a save or a sign-off (:func:`after_save`, :func:`after_sign_off`) and the
  messages shown for each (:func:`saved_message`, :func:`signed_off_message`, …);
* the study-level texts that compare the review with the automatic result or with what was
  saved before (:func:`unsaved_review_caption`, :func:`stiffness_delta`, :func:`saved_before_message`).

The status comes from the store, not from the browser session: opening a study (upload, worklist, cohort
link) loads its latest saved revision (:func:`mre_core.app.review_panel.load_saved_review`), and a save or a
sign-off moves it on. ``unsaved_changes`` compares the edits with what that revision holds: an edit after a
sign-off makes the study *reviewed, not signed off* again until it is saved or signed off anew (the
exports then say so), and a signed-off study with no change cannot be signed off twice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pandas as pd


class RevisionKind(str, Enum):
    """The kind of a saved revision (the values of :data:`mre_core.store.results.KINDS`)."""

    AUTO = "auto"  #: the model's result as it came out
    REVIEW = "review"  #: the reader changed an ROI, the manual value or the comment
    SIGNED_OFF = "signed_off"  #: a named reader signed the review off


class ReviewState(Enum):
    """Where the study under review stands in this browser session."""

    AUTO = "auto"  #: the model's result, nothing edited (saved or not)
    REVIEWED = "reviewed"  #: edited (ROI, manual value or comment), the edits not saved yet
    SAVED = "saved"  #: what the page shows is a saved revision, not signed off
    SIGNED_OFF = "signed_off"  #: what the page shows is a revision signed off by :attr:`ReviewStatus.signed_by`


@dataclass(frozen=True)
class ReviewStatus:
    """What the decisions need to know about one study, as plain data.

    Attributes
    ----------
    is_reviewed : bool
        The reader changed an ROI, entered a manual value or wrote a comment
        (:attr:`~mre_core.app.review_state.ReviewEdits.is_reviewed`).
    reviewer : str
        The name in the *Reviewer* field (already stripped); "" when empty.
    store_available : bool
        The results store could be opened (nothing can be saved otherwise).
    saved_revision : int or None
        The saved revision the review starts from (loaded from the store, restored, or saved on this page;
        ``rv_saved``), ``None`` if the study was never saved.
    signed_by : str or None
        Who signed that revision off (``rv_signed``), ``None`` if it is not a sign-off.
    unsaved_changes : bool
        The edits differ from what ``saved_revision`` holds (always ``False`` when nothing was saved: then
        :attr:`is_reviewed` alone decides).
    """

    is_reviewed: bool = False
    reviewer: str = ""
    store_available: bool = True
    saved_revision: int | None = None
    signed_by: str | None = None
    unsaved_changes: bool = False


def fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    """A number as the Review page shows it: ``digits`` decimals and the unit, "—" when missing.

    >>> fmt(3.456, "kPa"), fmt(12.34, "cm²", 1), fmt(float("nan")), fmt(None, "kPa")
    ('3.46 kPa', '12.3 cm²', '—', '—')
    """
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}f}{(' ' + unit) if unit else ''}"


def table_text(frame: Any, digits: Mapping[str, int] | None = None) -> Any:
    """A small table for ``st.table`` (static HTML, no data-grid script): every cell as text, floats with the
    column's ``digits`` (default 2, via :func:`fmt`), missing values as "—".

    >>> table_text(pd.DataFrame({"slice": [1], "z (mm)": [48.1], "mean kPa": [1.8], "QC": ["ok"]}),
    ...            {"z (mm)": 1}).values.tolist()
    [['1', '48.1', '1.80', 'ok']]
    """
    digits = dict(digits or {})

    def cell(x: Any, col: str) -> str:
        if isinstance(x, float):
            return fmt(x, "", digits.get(col, 2))
        return "—" if x is None else str(x)

    return pd.DataFrame({c: [cell(x, c) for x in frame[c].tolist()] for c in frame.columns}, index=frame.index)


def review_state(status: ReviewStatus) -> ReviewState:
    """The state: unsaved changes beat everything, then signed off beats saved, saved beats reviewed.

    >>> review_state(ReviewStatus(is_reviewed=True, saved_revision=2)).value
    'saved'
    >>> review_state(ReviewStatus(is_reviewed=True, saved_revision=2, signed_by="Dr A", unsaved_changes=True)).value
    'reviewed'
    """
    if status.unsaved_changes and status.saved_revision is not None:
        return ReviewState.REVIEWED if status.is_reviewed else ReviewState.AUTO
    if status.signed_by:
        return ReviewState.SIGNED_OFF
    if status.saved_revision is not None:
        return ReviewState.SAVED
    return ReviewState.REVIEWED if status.is_reviewed else ReviewState.AUTO


def status_label(status: ReviewStatus) -> str:
    """The status printed on the PDF and in the download help (saving alone does not change it)."""
    if review_state(status) is ReviewState.SIGNED_OFF:
        return f"signed off by {status.signed_by}"
    label = "reviewed, not signed off" if status.is_reviewed else "automatic result, not reviewed"
    if status.unsaved_changes and status.saved_revision is not None:
        label += f" (changed since saved revision {status.saved_revision}; not saved)"
    return label


def save_kind(status: ReviewStatus) -> RevisionKind:
    """The kind *Save to results store* writes: a review once anything was edited, else auto."""
    return RevisionKind.REVIEW if status.is_reviewed else RevisionKind.AUTO


def can_save(status: ReviewStatus) -> bool:
    """*Save to results store* is enabled whenever the store is open."""
    return status.store_available


def can_sign_off(status: ReviewStatus) -> bool:
    """*Sign off* needs the store and a reviewer's name, and something not signed off yet (a signed-off
    revision with no change since is not signed off twice)."""
    return (status.store_available and bool(status.reviewer.strip())
            and review_state(status) is not ReviewState.SIGNED_OFF)


def after_save(status: ReviewStatus, revision: int) -> ReviewStatus:
    """The status once *Save* wrote ``revision`` (a plain save is not a sign-off)."""
    return dataclasses.replace(status, saved_revision=revision, signed_by=None, unsaved_changes=False)


def after_sign_off(status: ReviewStatus, revision: int) -> ReviewStatus:
    """The status once *Sign off* wrote ``revision``, signed by the reviewer named."""
    return dataclasses.replace(status, saved_revision=revision, signed_by=status.reviewer, unsaved_changes=False)


def verifying_observer(status: ReviewStatus) -> str | None:
    """Who the DICOM SR names as verifying observer (``None``: the SR stays UNVERIFIED; also after an edit
    made since the sign-off)."""
    return status.signed_by if review_state(status) is ReviewState.SIGNED_OFF else None


def saved_message(revision: int) -> str:
    """Shown after a successful save."""
    return f"Saved as revision {revision} of this study."


def signed_off_message(status: ReviewStatus) -> str:
    """Shown after a successful sign-off (``status`` is the one :func:`after_sign_off` returned)."""
    return f"Signed off by {status.signed_by} as revision {status.saved_revision}."


def save_failed_message(exc: Exception) -> str:
    """Why nothing was saved."""
    return f"Not saved: {type(exc).__name__}: {exc}"


def sign_off_failed_message(exc: Exception) -> str:
    """Why the study was not signed off."""
    return f"Not signed off: {type(exc).__name__}: {exc}"


def session_caption(status: ReviewStatus) -> str | None:
    """The line under *Save*: which saved revision the page shows, or that it changed since (``None``: never saved)."""
    if status.saved_revision is None:
        return None
    if status.unsaved_changes:
        return f"Changed since revision {status.saved_revision}; not saved yet."
    if review_state(status) is ReviewState.SIGNED_OFF:
        return (f"This is revision {status.saved_revision}, signed off by {status.signed_by}. "
                "Change something to save or sign off a new revision.")
    return f"This is saved revision {status.saved_revision}."


def sr_help(status: ReviewStatus) -> str:
    """The DICOM SR download's help text: verified only once signed off."""
    return ("TID 1500 measurement report referencing this SEG and the source images"
            + ("; VERIFIED" if verifying_observer(status) else "; UNVERIFIED until signed off"))


def unsaved_review_caption(status: ReviewStatus, edit_lines: Sequence[str], auto_kpa: float | None,
                           auto_stage: str | None) -> str | None:
    """The summary's note that the review has edits not saved yet (``None`` when what is shown is saved, or
    is the untouched automatic result).

    Parameters
    ----------
    status : ReviewStatus
        The study's status (:func:`review_state` must be *reviewed*).
    edit_lines : sequence of str
        The edits in words (:meth:`~mre_core.app.review_state.ReviewEdits.describe`).
    auto_kpa : float or None
        The automatic study stiffness, kPa.
    auto_stage : str or None
        The automatic stage label, ``None`` when unstaged.
    """
    if review_state(status) is not ReviewState.REVIEWED:
        return None
    since = f" (changed since revision {status.saved_revision})" if status.unsaved_changes else ""
    return (f":pencil2: **Reviewed, not saved yet**{since} — " + ("; ".join(edit_lines) or "comment only")
            + f". Automatic value: {fmt(auto_kpa, 'kPa')} ({auto_stage if auto_stage is not None else '—'}).")


def stiffness_delta(changes_roi: bool, reviewed_kpa: float, auto_kpa: float) -> str | None:
    """The stiffness metric's delta, reviewed minus automatic in kPa, once an ROI changed."""
    return None if not changes_roi else f"{reviewed_kpa - auto_kpa:+.2f} vs automatic"


def saved_before_message(n_revisions: int, last: Mapping[str, Any], shown: int | None = None) -> str:
    """The banner of a study with saved revisions; ``last`` is the latest row of the store's history, ``shown``
    the revision the review on the page starts from (``None``: the model's result, not a saved revision)."""
    text = (f"**Saved before:** {n_revisions} revision(s). Latest: revision {last['revision']} "
            f"({str(last['kind']).replace('_', ' ')}, {last['reviewer'] or 'no name'}, {last['created_utc']}): "
            f"{fmt(last['stiffness_kpa'], 'kPa')}, {last['stage'] or 'no stage'}"
            + (f" — “{last['comment']}”" if last["comment"] else ""))
    if shown is None:
        return text
    if int(shown) == int(last["revision"]):
        return text + ". **The page shows this revision.**"
    return text + f". **The page shows revision {shown}** (restored)."


__all__ = ["ReviewState", "ReviewStatus", "RevisionKind", "after_save", "after_sign_off", "can_save",
           "can_sign_off", "fmt", "review_state", "table_text", "save_failed_message", "save_kind", "saved_before_message",
           "saved_message", "session_caption", "sign_off_failed_message", "signed_off_message", "sr_help",
           "status_label", "stiffness_delta", "unsaved_review_caption", "verifying_observer"]
