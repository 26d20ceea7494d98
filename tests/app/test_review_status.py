"""Review status decisions: auto / reviewed / saved / signed off, labels, enabled buttons, transitions."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from mre_core.app.review_state import ReviewEdits
from mre_core.app.review_status import (
    ReviewState,
    ReviewStatus,
    RevisionKind,
    after_save,
    after_sign_off,
    can_save,
    can_sign_off,
    fmt,
    review_state,
    save_failed_message,
    save_kind,
    saved_before_message,
    saved_message,
    session_caption,
    sign_off_failed_message,
    signed_off_message,
    sr_help,
    status_label,
    stiffness_delta,
    unsaved_review_caption,
    verifying_observer,
)
from mre_core.store.results import KINDS

AUTO = ReviewStatus()
REVIEWED = ReviewStatus(is_reviewed=True, reviewer="Dr A")


# ----------------------------------------------------------------------------- states and labels
@pytest.mark.parametrize(("status", "state", "label"), [
    (AUTO, ReviewState.AUTO, "automatic result, not reviewed"),
    (REVIEWED, ReviewState.REVIEWED, "reviewed, not signed off"),
    (ReviewStatus(saved_revision=1), ReviewState.SAVED, "automatic result, not reviewed"),
    (ReviewStatus(is_reviewed=True, saved_revision=2), ReviewState.SAVED, "reviewed, not signed off"),
    (ReviewStatus(is_reviewed=True, saved_revision=3, signed_by="Dr A"), ReviewState.SIGNED_OFF,
     "signed off by Dr A"),
    (ReviewStatus(is_reviewed=False, saved_revision=3, signed_by="Dr B"), ReviewState.SIGNED_OFF,
     "signed off by Dr B"),
])
def test_each_state_has_its_label(status: ReviewStatus, state: ReviewState, label: str) -> None:
    assert review_state(status) is state
    assert status_label(status) == label


def test_empty_signed_by_is_not_a_sign_off() -> None:
    status = ReviewStatus(is_reviewed=True, signed_by="")
    assert review_state(status) is ReviewState.REVIEWED
    assert verifying_observer(status) is None


def test_state_follows_the_edits() -> None:
    assert review_state(ReviewStatus(is_reviewed=ReviewEdits().is_reviewed)) is ReviewState.AUTO
    edited = ReviewEdits().with_comment("motion on slice 2", "Dr A")
    status = ReviewStatus(is_reviewed=edited.is_reviewed, reviewer=edited.reviewer)
    assert review_state(status) is ReviewState.REVIEWED and status_label(status) == "reviewed, not signed off"
    named_only = ReviewEdits().with_comment("", "Dr A")  # a name alone is not a review
    assert review_state(ReviewStatus(is_reviewed=named_only.is_reviewed)) is ReviewState.AUTO


# ----------------------------------------------------------------------------- what a save writes, what is enabled
def test_save_kind_is_review_once_anything_was_edited() -> None:
    assert save_kind(AUTO) is RevisionKind.AUTO and save_kind(AUTO).value == "auto"
    assert save_kind(REVIEWED) is RevisionKind.REVIEW and save_kind(REVIEWED).value == "review"


def test_revision_kinds_are_the_store_kinds() -> None:
    assert tuple(k.value for k in RevisionKind) == KINDS


@pytest.mark.parametrize(("status", "save", "sign"), [
    (ReviewStatus(), True, False),  # no reviewer name yet
    (ReviewStatus(reviewer="   "), True, False),  # blanks are no name
    (ReviewStatus(reviewer="Dr A"), True, True),
    (ReviewStatus(is_reviewed=True, reviewer="Dr A", store_available=False), False, False),
    (ReviewStatus(store_available=False), False, False),
])
def test_save_and_sign_off_enabled(status: ReviewStatus, save: bool, sign: bool) -> None:
    assert can_save(status) is save
    assert can_sign_off(status) is sign


# ----------------------------------------------------------------------------- transitions
def test_save_then_sign_off() -> None:
    saved = after_save(AUTO, 1)
    assert review_state(saved) is ReviewState.SAVED and saved.saved_revision == 1
    assert status_label(saved) == "automatic result, not reviewed"  # saving alone does not change the label
    assert session_caption(saved) == "This is saved revision 1."
    assert AUTO.saved_revision is None  # the old status is unchanged

    named = ReviewStatus(is_reviewed=True, reviewer="Dr A", saved_revision=saved.saved_revision)
    signed = after_sign_off(named, 2)
    assert review_state(signed) is ReviewState.SIGNED_OFF
    assert (signed.signed_by, signed.saved_revision) == ("Dr A", 2)
    assert signed_off_message(signed) == "Signed off by Dr A as revision 2."
    assert session_caption(signed).startswith("This is revision 2, signed off by Dr A.")
    assert named.signed_by is None


def test_reviewed_then_saved_keeps_the_review_label() -> None:
    saved = after_save(REVIEWED, 4)
    assert review_state(saved) is ReviewState.SAVED
    assert status_label(saved) == "reviewed, not signed off"
    assert saved_message(4) == "Saved as revision 4 of this study."


def test_a_signed_off_revision_is_not_signed_off_twice_and_an_edit_since_undoes_the_label() -> None:
    signed = after_sign_off(REVIEWED, 3)
    assert not can_sign_off(signed) and can_save(signed)  # nothing changed since the sign-off
    later = dataclasses.replace(signed, unsaved_changes=True)  # the reader edits after signing off
    assert review_state(later) is ReviewState.REVIEWED
    assert status_label(later) == "reviewed, not signed off (changed since saved revision 3; not saved)"
    assert verifying_observer(later) is None  # the SR of the edited content is not the signed-off one
    assert can_sign_off(later)
    assert session_caption(later) == "Changed since revision 3; not saved yet."
    assert unsaved_review_caption(later, ["manual measurement 3.10 kPa"], 3.0, "F1").startswith(
        ":pencil2: **Reviewed, not saved yet** (changed since revision 3) — manual measurement 3.10 kPa.")
    back = dataclasses.replace(later, is_reviewed=False)  # every edit undone, then the reviewed content changed
    assert review_state(back) is ReviewState.AUTO
    resaved = after_save(later, 4)
    assert review_state(resaved) is ReviewState.SAVED and resaved.signed_by is None


def test_failure_messages_name_the_error() -> None:
    assert save_failed_message(ValueError("bad")) == "Not saved: ValueError: bad"
    assert sign_off_failed_message(RuntimeError("locked")) == "Not signed off: RuntimeError: locked"


def test_no_session_caption_before_a_save() -> None:
    assert session_caption(AUTO) is None
    assert session_caption(REVIEWED) is None


def test_sr_is_verified_only_once_signed_off() -> None:
    assert sr_help(REVIEWED).endswith("; UNVERIFIED until signed off")
    assert verifying_observer(REVIEWED) is None
    signed = after_sign_off(REVIEWED, 1)
    assert sr_help(signed) == "TID 1500 measurement report referencing this SEG and the source images; VERIFIED"
    assert verifying_observer(signed) == "Dr A"


# ----------------------------------------------------------------------------- review vs automatic, saved before
def test_unsaved_review_caption() -> None:
    assert unsaved_review_caption(AUTO, ["manual measurement 3.10 kPa"], 3.0, "F1") is None
    assert unsaved_review_caption(REVIEWED, [], 3.0, "F1") == (
        ":pencil2: **Reviewed, not saved yet** — comment only. Automatic value: 3.00 kPa (F1).")
    assert unsaved_review_caption(after_save(REVIEWED, 2), ["comment"], 3.0, "F1") is None  # saved: no contradiction
    assert unsaved_review_caption(REVIEWED, ["slice …12345678: excluded", "manual measurement 3.10 kPa"],
                                  float("nan"), None) == (
        ":pencil2: **Reviewed, not saved yet** — slice …12345678: excluded; manual measurement 3.10 kPa. "
        "Automatic value: — (—).")


def test_stiffness_delta_only_when_an_roi_changed() -> None:
    assert stiffness_delta(False, 3.5, 3.0) is None
    assert stiffness_delta(True, 3.25, 3.0) == "+0.25 vs automatic"
    assert stiffness_delta(True, 2.9, 3.0) == "-0.10 vs automatic"


def test_saved_before_message() -> None:
    last = {"revision": 2, "kind": "review", "reviewer": "Dr A", "created_utc": "2025-03-01T10:00:00+00:00",
            "stiffness_kpa": 3.456, "stage": "F1", "comment": "motion"}
    assert saved_before_message(2, last) == (
        "**Saved before:** 2 revision(s). Latest: revision 2 (review, Dr A, 2025-03-01T10:00:00+00:00): "
        "3.46 kPa, F1 — “motion”")
    bare = {**last, "revision": 1, "kind": "auto", "reviewer": "", "stiffness_kpa": None, "stage": None,
            "comment": ""}
    assert saved_before_message(1, bare) == (
        "**Saved before:** 1 revision(s). Latest: revision 1 (auto, no name, 2025-03-01T10:00:00+00:00): "
        "—, no stage")
    assert saved_before_message(2, last, 2).endswith("“motion”. **The page shows this revision.**")
    assert saved_before_message(2, last, 1).endswith(". **The page shows revision 1** (restored).")
    signed = {**last, "kind": "signed_off"}
    assert "(signed off, Dr A," in saved_before_message(2, signed)


def test_fmt() -> None:
    assert fmt(3.456, "kPa") == "3.46 kPa"
    assert fmt(3.456) == "3.46"
    assert fmt(12.34, "cm²", 1) == "12.3 cm²"
    assert fmt(float("inf"), "kPa") == "—" and fmt(None) == "—"


def test_review_status_does_not_import_streamlit() -> None:
    code = "import sys, mre_core.app.review_status; sys.exit('streamlit' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=root, capture_output=True).returncode == 0
