"""The permission table and the checks: researcher ⊂ reader ⊂ admin, refusals raise and are audited."""

from __future__ import annotations

import pytest

from mre_core.access import PERMISSIONS, ROLES, Action, PermissionDenied, Role, User, allowed, require

READER = User("bob", "Dr Bob", Role.READER)
RESEARCHER = User("dan", "Dan", Role.RESEARCHER)
ADMIN = User("alice", "Alice", "admin")


class FakeStore:
    """Records log_event calls as the store would write them."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.fail = fail

    def log_event(self, action: str, detail: str, user: str = "") -> None:
        if self.fail:
            raise RuntimeError("database down")
        self.events.append((action, detail, user))


def test_every_role_has_an_entry_and_every_action_a_role() -> None:
    assert set(PERMISSIONS) == set(Role)
    assert set().union(*PERMISSIONS.values()) == set(Action)
    assert all(spec.source and spec.summary for spec in ROLES)


def test_the_roles_nest_researcher_in_reader_in_admin() -> None:
    assert PERMISSIONS[Role.RESEARCHER] < PERMISSIONS[Role.READER] < PERMISSIONS[Role.ADMIN]


@pytest.mark.parametrize("action", [Action.SIGN_OFF, Action.EDIT_REVIEW, Action.EXPORT_IDENTIFIED,
                                    Action.VIEW_NAMES, Action.VIEW_STUDY, Action.MANAGE_USERS, Action.VIEW_AUDIT])
def test_a_researcher_cannot_review_sign_off_see_names_or_export_identified(action: Action) -> None:
    assert not allowed(RESEARCHER, action)


def test_a_researcher_gets_the_cohort_and_deidentified_exports() -> None:
    assert allowed(RESEARCHER, Action.VIEW_COHORT) and allowed(RESEARCHER, "export_deidentified")


def test_a_reader_reviews_and_signs_off_but_does_not_administer() -> None:
    for action in (Action.VIEW_STUDY, Action.VIEW_NAMES, Action.EDIT_REVIEW, Action.SIGN_OFF):
        assert allowed(READER, action)
    for action in (Action.MANAGE_USERS, Action.CHANGE_SETTINGS, Action.MANAGE_MODELS, Action.VIEW_AUDIT):
        assert not allowed(READER, action)


def test_an_admin_manages_users_and_does_everything() -> None:
    assert ADMIN.role is Role.ADMIN
    assert all(allowed(ADMIN, a) for a in Action)


def test_nobody_signed_in_may_do_nothing() -> None:
    assert not any(allowed(None, a) for a in Action)


def test_an_unknown_action_is_an_error_not_a_refusal() -> None:
    with pytest.raises(ValueError, match="sign-off"):
        allowed(ADMIN, "sign-off")


def test_require_passes_silently_when_allowed() -> None:
    store = FakeStore()
    require(READER, Action.SIGN_OFF, store)
    assert store.events == []


def test_require_raises_with_the_action_and_the_roles_that_may() -> None:
    with pytest.raises(PermissionDenied, match=r"'dan' \(researcher\) may not sign off.*reader, admin") as info:
        require(RESEARCHER, Action.SIGN_OFF)
    assert isinstance(info.value, ValueError) and info.value.action is Action.SIGN_OFF


def test_require_audits_the_refusal() -> None:
    store = FakeStore()
    with pytest.raises(PermissionDenied):
        require(RESEARCHER, Action.EXPORT_IDENTIFIED, store, detail="study 1.2.3")
    assert store.events == [("access:denied", "export_identified: study 1.2.3", "dan")]
    with pytest.raises(PermissionDenied, match="nobody signed in"):
        require(None, Action.VIEW_STUDY, store)
    assert store.events[-1] == ("access:denied", "view_study", "")


def test_a_failing_audit_write_does_not_turn_a_refusal_into_something_else() -> None:
    with pytest.raises(PermissionDenied):
        require(RESEARCHER, Action.SIGN_OFF, FakeStore(fail=True))


def test_user_rejects_an_unknown_role_or_source() -> None:
    with pytest.raises(ValueError):
        User("x", "X", "superuser")
    with pytest.raises(ValueError, match="source"):
        User("x", "X", Role.READER, source="ldap")  # type: ignore[arg-type]
