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

A sign-off is remembered for the browser session: later edits do not undo it (as before the split).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any


class RevisionKind(str, Enum):
    """The kind of a saved revision (the values of :data:`mre_core.store.results.KINDS`)."""

    AUTO = "auto"  #: the model's result as it came out
    REVIEW = "review"  #: the reader changed an ROI, the manual value or the comment
    SIGNED_OFF = "signed_off"  #: a named reader signed the review off


class ReviewState(Enum):
    """Where the study under review stands in this browser session."""

    AUTO = "auto"  #: the model's result, nothing edited, not saved in this session
    REVIEWED = "reviewed"  #: edited (ROI, manual value or comment), not saved in this session
    SAVED = "saved"  #: saved in this session (a new revision), not signed off
    SIGNED_OFF = "signed_off"  #: signed off in this session, by :attr:`ReviewStatus.signed_by`


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
        The revision number saved in this session (``rv_saved``), ``None`` if none.
    signed_by : str or None
        Who signed the study off in this session (``rv_signed``), ``None`` if nobody.
    """

    is_reviewed: bool = False
    reviewer: str = ""
    store_available: bool = True
    saved_revision: int | None = None
    signed_by: str | None = None


def fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    """A number as the Review page shows it: ``digits`` decimals and the unit, "—" when missing.

    >>> fmt(3.456, "kPa"), fmt(12.34, "cm²", 1), fmt(float("nan")), fmt(None, "kPa")
    ('3.46 kPa', '12.3 cm²', '—', '—')
    """
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}f}{(' ' + unit) if unit else ''}"


def review_state(status: ReviewStatus) -> ReviewState:
    """The state: signed off beats saved, saved beats reviewed.

    >>> review_state(ReviewStatus(is_reviewed=True, saved_revision=2)).value
    'saved'
    """
    if status.signed_by:
        return ReviewState.SIGNED_OFF
    if status.saved_revision is not None:
        return ReviewState.SAVED
    return ReviewState.REVIEWED if status.is_reviewed else ReviewState.AUTO


def status_label(status: ReviewStatus) -> str:
    """The status printed on the PDF and in the download help (saving alone does not change it)."""
    if review_state(status) is ReviewState.SIGNED_OFF:
        return f"signed off by {status.signed_by}"
    return "reviewed, not signed off" if status.is_reviewed else "automatic result, not reviewed"


def save_kind(status: ReviewStatus) -> RevisionKind:
    """The kind *Save to results store* writes: a review once anything was edited, else auto."""
    return RevisionKind.REVIEW if status.is_reviewed else RevisionKind.AUTO


def can_save(status: ReviewStatus) -> bool:
    """*Save to results store* is enabled whenever the store is open."""
    return status.store_available


def can_sign_off(status: ReviewStatus) -> bool:
    """*Sign off* needs the store and a reviewer's name."""
    return status.store_available and bool(status.reviewer.strip())


def after_save(status: ReviewStatus, revision: int) -> ReviewStatus:
    """The status once *Save* wrote ``revision``."""
    return dataclasses.replace(status, saved_revision=revision)


def after_sign_off(status: ReviewStatus, revision: int) -> ReviewStatus:
    """The status once *Sign off* wrote ``revision``, signed by the reviewer named."""
    return dataclasses.replace(status, saved_revision=revision, signed_by=status.reviewer)


def verifying_observer(status: ReviewStatus) -> str | None:
    """Who the DICOM SR names as verifying observer (``None``: the SR stays UNVERIFIED)."""
    return status.signed_by or None


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
    """The reminder under *Save* when this session saved the study before (``None``: nothing to say)."""
    if status.saved_revision is None:
        return None
    return f"Last saved in this session: revision {status.saved_revision}."


def sr_help(status: ReviewStatus) -> str:
    """The DICOM SR download's help text: verified only once signed off."""
    return ("TID 1500 measurement report referencing this SEG and the source images"
            + ("; VERIFIED" if verifying_observer(status) else "; UNVERIFIED until signed off"))


def unsaved_review_caption(is_reviewed: bool, edit_lines: Sequence[str], auto_kpa: float | None,
                           auto_stage: str | None) -> str | None:
    """The summary's note that the review differs from the automatic result (``None`` when it does not).

    Parameters
    ----------
    is_reviewed : bool
        See :attr:`ReviewStatus.is_reviewed`.
    edit_lines : sequence of str
        The edits in words (:meth:`~mre_core.app.review_state.ReviewEdits.describe`).
    auto_kpa : float or None
        The automatic study stiffness, kPa.
    auto_stage : str or None
        The automatic stage label, ``None`` when unstaged.
    """
    if not is_reviewed:
        return None
    return (":pencil2: **Reviewed, not saved yet** — " + ("; ".join(edit_lines) or "comment only")
            + f". Automatic value: {fmt(auto_kpa, 'kPa')} ({auto_stage if auto_stage is not None else '—'}).")


def stiffness_delta(changes_roi: bool, reviewed_kpa: float, auto_kpa: float) -> str | None:
    """The stiffness metric's delta, reviewed minus automatic in kPa, once an ROI changed."""
    return None if not changes_roi else f"{reviewed_kpa - auto_kpa:+.2f} vs automatic"


def saved_before_message(n_revisions: int, last: Mapping[str, Any]) -> str:
    """The banner of a study with saved revisions; ``last`` is the latest row of the store's history."""
    return (f"**Saved before:** {n_revisions} revision(s). Latest: revision {last['revision']} "
            f"({last['kind']}, {last['reviewer'] or 'no name'}, {last['created_utc']}): "
            f"{fmt(last['stiffness_kpa'], 'kPa')}, {last['stage'] or 'no stage'}"
            + (f" — “{last['comment']}”" if last["comment"] else ""))


__all__ = ["ReviewState", "ReviewStatus", "RevisionKind", "after_save", "after_sign_off", "can_save",
           "can_sign_off", "fmt", "review_state", "save_failed_message", "save_kind", "saved_before_message",
           "saved_message", "session_caption", "sign_off_failed_message", "signed_off_message", "sr_help",
           "status_label", "stiffness_delta", "unsaved_review_caption", "verifying_observer"]
