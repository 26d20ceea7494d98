"""Sign-in through an OpenID Connect provider (Streamlit's ``st.login``): is it configured, and which role.

Streamlit validates the provider's ID token and exposes its claims as ``st.user`` (``email``, ``name``,
``email_verified``, any group claim the provider sends). :func:`role_for_claims` maps them to a
:class:`~mre_core.access.roles.Role` with the site's ``[roles]`` table of ``.streamlit/secrets.toml``::

    [roles]
    admin = ["alice@hospital.org"]
    reader = ["bob@hospital.org", "carol@hospital.org"]
    researcher = ["dan@university.edu"]
    group_claim = "groups"        # optional: the claim that lists a person's groups (default "groups")

    [roles.groups]                # optional: provider groups -> role
    reader = ["mre-readers"]

**Default: no role, so no access.** A signed-in person whose address and groups are listed nowhere gets
``None``, not a reduced role, and so does one whose provider says the address is unverified
(``email_verified = false``). Addresses compare case-insensitively. When several entries match, the most
privileged role wins (the roles nest: researcher ⊂ reader ⊂ admin). Only the ``email`` claim is matched,
never ``preferred_username``, which some providers let the user change.

>>> mapping = {"reader": ["Bob@Hospital.org"]}
>>> role_for_claims({"email": "bob@hospital.org"}, mapping), role_for_claims({"email": "eve@x.org"}, mapping)
(<Role.READER: 'reader'>, None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mre_core.access.roles import ROLES, Role, User
from mre_core.config import SECRET_PLACEHOLDER

#: The settings every Streamlit provider needs, at ``[auth]`` (the default provider) or ``[auth.NAME]``.
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
#: The settings ``[auth]`` itself must have for any provider.
SHARED_AUTH_KEYS = ("redirect_uri", "cookie_secret")

_ROLE_KEYS = tuple(r.value for r in Role)
_RANK = {spec.role: i for i, spec in enumerate(ROLES)}


@dataclass(frozen=True)
class RoleMapping:
    """The ``[roles]`` table, checked: addresses and groups per role, and the claim that holds the groups."""

    emails: Mapping[Role, frozenset[str]]
    groups: Mapping[Role, frozenset[str]]
    group_claim: str = "groups"


def _names(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise ValueError(f"{where} must be a list of strings, got {value!r}")
    out = []
    for v in value:
        if not isinstance(v, str):
            raise ValueError(f"{where} must be a list of strings, found {v!r}")
        out.append(v.strip().lower())
    return frozenset(v for v in out if v)


def parse_role_mapping(section: Mapping[str, Any] | None) -> RoleMapping:
    """Check a ``[roles]`` table (``st.secrets.get("roles")``); ``None`` or empty maps nobody to any role.

    An unknown key (``readers``, ``admins``) raises :class:`ValueError` naming the valid ones: a typo must
    not quietly lock everyone out or, worse, be ignored in a way nobody notices.
    """
    section = dict(section or {})
    unknown = sorted(set(section) - {*_ROLE_KEYS, "group_claim", "groups"})
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [roles]: use {', '.join(_ROLE_KEYS)}, group_claim or a "
                         "[roles.groups] table")
    emails = {Role(k): _names(section[k], f"[roles] {k}") for k in _ROLE_KEYS if k in section}
    groups_section = section.get("groups") or {}
    if not isinstance(groups_section, Mapping):
        raise ValueError("[roles] groups must be a table: [roles.groups] reader = [\"group name\"]")
    bad = sorted(set(groups_section) - set(_ROLE_KEYS))
    if bad:
        raise ValueError(f"unknown role(s) {bad} in [roles.groups]: use {', '.join(_ROLE_KEYS)}")
    groups = {Role(k): _names(v, f"[roles.groups] {k}") for k, v in groups_section.items()}
    claim = section.get("group_claim", "groups")
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError(f"[roles] group_claim must name a claim, e.g. \"groups\"; got {claim!r}")
    return RoleMapping(emails=emails, groups=groups, group_claim=claim.strip())


def _false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def role_for_claims(claims: Mapping[str, Any], mapping: RoleMapping | Mapping[str, Any] | None) -> Role | None:
    """The role an OIDC sign-in gets from its claims; ``None`` (no access) unless the mapping names it."""
    m = mapping if isinstance(mapping, RoleMapping) else parse_role_mapping(mapping)
    if _false(claims.get("is_logged_in", True)):
        return None
    email = str(claims.get("email") or "").strip().lower()
    found: list[Role] = []
    if email and not _false(claims.get("email_verified")):
        found += [role for role, names in m.emails.items() if email in names]
    raw = claims.get(m.group_claim)
    if isinstance(raw, str):
        member_of = {raw.strip().lower()}
    else:
        member_of = {str(g).strip().lower() for g in raw} if isinstance(raw, (list, tuple, set, frozenset)) else set()
    found += [role for role, names in m.groups.items() if names & member_of]
    return max(found, key=_RANK.__getitem__) if found else None


def oidc_user(claims: Mapping[str, Any], mapping: RoleMapping | Mapping[str, Any] | None) -> User | None:
    """The :class:`User` for an OIDC sign-in (username = the e-mail address), or ``None``: no role, no access."""
    role = role_for_claims(claims, mapping)
    email = str(claims.get("email") or "").strip().lower()
    if role is None or not email:
        return None
    name = str(claims.get("name") or "").strip() or email
    return User(username=email, display_name=name, role=role, source="oidc")


def oidc_providers(secrets: Mapping[str, Any] | None) -> list[str]:
    """The providers ``st.login`` can use with these secrets: ``"default"`` (``st.login()``) and the names of
    complete ``[auth.NAME]`` tables (``st.login("NAME")``); empty when ``[auth]`` lacks ``redirect_uri`` or
    ``cookie_secret``. A value still holding the example file's ``CHANGE-ME`` counts as missing."""
    auth = (secrets or {}).get("auth")
    if not isinstance(auth, Mapping) or not _filled(auth, SHARED_AUTH_KEYS):
        return []
    names = ["default"] if _filled(auth, PROVIDER_KEYS) else []
    names += sorted(k for k, v in auth.items() if isinstance(v, Mapping) and _filled(v, PROVIDER_KEYS))
    return names


def _filled(section: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    """Every key set, to something other than the example file's placeholder."""
    return all(section.get(k) and SECRET_PLACEHOLDER not in str(section.get(k)) for k in keys)


def oidc_configured(secrets: Mapping[str, Any] | None) -> bool:
    """True when at least one OIDC provider is fully configured (see :func:`oidc_providers`)."""
    return bool(oidc_providers(secrets))


__all__ = ["PROVIDER_KEYS", "RoleMapping", "SHARED_AUTH_KEYS", "oidc_configured", "oidc_providers", "oidc_user",
           "parse_role_mapping", "role_for_claims"]
