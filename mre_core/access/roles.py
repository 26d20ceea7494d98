"""Who may do what: the actions, the three roles as cited data, and the checks the pages call.

A role is a named set of :class:`Action`\\ s (:data:`ROLES`, each with its source). The pages ask
:func:`allowed` to decide what to show and call :func:`require` before doing anything, so a refused
action is both an exception with a clear message and, given a store, an ``access:denied`` audit entry.

>>> reader = User("bob", "Dr Bob", Role.READER)
>>> allowed(reader, Action.SIGN_OFF), allowed(reader, Action.MANAGE_USERS)
(True, False)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, Protocol

log = logging.getLogger(__name__)


class Action(StrEnum):
    """Everything the app lets someone do that a role may or may not allow."""

    VIEW_STUDY = "view_study"  #: open a study on the Review page: images, ROI, values
    VIEW_NAMES = "view_names"  #: see patient names and identifiers (IDs, UIDs) rather than pseudonyms
    EDIT_REVIEW = "edit_review"  #: change ROIs, exclude slices, enter a manual value, save a review
    SIGN_OFF = "sign_off"  #: sign a review off under one's own name
    VIEW_COHORT = "view_cohort"  #: the Cohort page: agreement statistics over the saved studies
    EXPORT_IDENTIFIED = "export_identified"  #: download tables, SEG, SR or PDF that carry patient identifiers
    EXPORT_DEIDENTIFIED = "export_deidentified"  #: download de-identified research tables (:mod:`.deid`)
    VIEW_SETTINGS = "view_settings"  #: the Model & settings page, read-only: model card, staging table, store
    CHANGE_SETTINGS = "change_settings"  #: site settings, staging tables, the results store
    MANAGE_MODELS = "manage_models"  #: train, activate or retire segmentation models
    MANAGE_USERS = "manage_users"  #: add, disable, enable accounts; reset passwords; change roles
    VIEW_AUDIT = "view_audit"  #: read and export the audit log


class Role(StrEnum):
    """The three roles. Each one's actions are in :data:`ROLES`."""

    READER = "reader"
    RESEARCHER = "researcher"
    ADMIN = "admin"


#: Where the role definitions come from.
ROLES_SOURCE = "issue 15 'Access control and privacy' (MRE Liver Review tracker)"


@dataclass(frozen=True)
class RoleSpec:
    """One role: its actions, what it is for in one line, and where that definition comes from."""

    role: Role
    actions: frozenset[Action]
    summary: str
    source: str = ROLES_SOURCE


_READER = frozenset({Action.VIEW_STUDY, Action.VIEW_NAMES, Action.EDIT_REVIEW, Action.SIGN_OFF, Action.VIEW_COHORT,
                     Action.EXPORT_IDENTIFIED, Action.EXPORT_DEIDENTIFIED, Action.VIEW_SETTINGS})
_RESEARCHER = frozenset({Action.VIEW_COHORT, Action.EXPORT_DEIDENTIFIED})
_ADMIN = _READER | {Action.CHANGE_SETTINGS, Action.MANAGE_MODELS, Action.MANAGE_USERS, Action.VIEW_AUDIT}

#: The roles, least to most privileged; each role's actions include those of the one before it.
ROLES: tuple[RoleSpec, ...] = (
    RoleSpec(Role.RESEARCHER, _RESEARCHER,
             "cohort statistics and de-identified exports only: no patient names or identifiers, no review, no "
             "sign-off"),
    RoleSpec(Role.READER, _READER,
             "review, edit and sign off studies, with patient names; the cohort and exports (a reader already "
             "sees the identified data on screen, so an identified export grants nothing more); the model and "
             "settings in use, read-only"),
    RoleSpec(Role.ADMIN, _ADMIN,
             "everything a reader does, plus site settings, staging tables, models, accounts and the audit log"),
)

#: ``{role: actions}``, read-only.
PERMISSIONS: Mapping[Role, frozenset[Action]] = MappingProxyType({spec.role: spec.actions for spec in ROLES})

#: How a refusal names each action ("may not …").
ACTION_WORDS: Mapping[Action, str] = MappingProxyType({
    Action.VIEW_STUDY: "open a study for review", Action.VIEW_NAMES: "see patient names and identifiers",
    Action.EDIT_REVIEW: "edit a review", Action.SIGN_OFF: "sign off a review",
    Action.VIEW_COHORT: "view the cohort", Action.EXPORT_IDENTIFIED: "export identified data",
    Action.VIEW_SETTINGS: "view the model and settings",
    Action.EXPORT_DEIDENTIFIED: "export de-identified data", Action.CHANGE_SETTINGS: "change the site settings",
    Action.MANAGE_MODELS: "manage models", Action.MANAGE_USERS: "manage user accounts",
    Action.VIEW_AUDIT: "view the audit log",
})


#: How a :class:`User` came to be using the app.
SOURCES = ("local", "oidc", "loopback")


@dataclass(frozen=True)
class User:
    """A signed-in person, however they signed in.

    Parameters
    ----------
    username:
        The local account name, or the e-mail address an OIDC provider vouched for (lower case).
    display_name:
        The name shown on pages and written beside a sign-off.
    role:
        What they may do (:data:`PERMISSIONS`).
    source:
        ``"local"`` (an account of :mod:`mre_core.store.users`), ``"oidc"`` (Streamlit's ``st.login``) or
        ``"loopback"`` (nobody signed in: the implicit user of an app served on this machine only, see
        :func:`mre_core.access.serving.login_required`).
    """

    username: str
    display_name: str
    role: Role
    source: Literal["local", "oidc", "loopback"] = "local"

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        if self.source not in SOURCES:
            raise ValueError(f"user source must be one of {', '.join(map(repr, SOURCES))}, got {self.source!r}")

    @property
    def signed_in(self) -> bool:
        """True for a person who signed in (a local account or OIDC), False for the implicit loopback user."""
        return self.source != "loopback"

    def describe(self) -> str:
        return f"{self.username!r} ({self.role.value})"


class PermissionDenied(ValueError):
    """An action the user's role does not allow; the message names the action and the roles that allow it."""

    def __init__(self, user: User | None, action: Action) -> None:
        who = f"user {user.describe()}" if user else "nobody signed in"
        roles = ", ".join(r.value for r, acts in PERMISSIONS.items() if action in acts)
        super().__init__(f"{who} may not {ACTION_WORDS[action]} ({action.value}); roles that may: {roles}. "
                         "Ask an administrator if you need it.")
        self.user, self.action = user, action


class AuditLog(Protocol):
    """What :func:`require` needs of a store: :meth:`mre_core.store.results.Store.log_event`."""

    def log_event(self, action: str, detail: str, user: str = "") -> None: ...


def allowed(user: User | None, action: Action | str) -> bool:
    """True when ``user``'s role allows ``action``; nobody signed in (``None``) may do nothing.

    An unknown action name raises :class:`ValueError` (a typo must not pass as "refused").
    """
    action = Action(action)
    return user is not None and action in PERMISSIONS[user.role]


def require(user: User | None, action: Action | str, store: AuditLog | None = None, detail: str = "") -> None:
    """Return when ``user`` may do ``action``; otherwise raise :class:`PermissionDenied`.

    With a ``store`` the refusal is written to its audit log as ``access:denied`` (detail: the action, then
    ``detail``, e.g. the study UID). The refusal stands even if that write fails (the failure is logged).
    """
    action = Action(action)
    if allowed(user, action):
        return
    denied = PermissionDenied(user, action)
    if store is not None:
        text = action.value + (f": {detail}" if detail else "")
        try:
            store.log_event("access:denied", text, user=user.username if user else "")
        except Exception:  # noqa: BLE001 - never let an audit failure turn a refusal into something else
            log.exception("could not write the refused %s to the audit log", action.value)
    raise denied


__all__ = ["ACTION_WORDS", "Action", "AuditLog", "PERMISSIONS", "PermissionDenied", "ROLES", "ROLES_SOURCE", "Role",
           "RoleSpec", "SOURCES", "User", "allowed", "require"]
