"""Who is using the web app: sign-in, sign-out, the pages a role gets, and the guards every page calls.

Sign-in is required when the server is bound beyond loopback, or when the site asks for it
(:func:`mre_core.access.serving.login_required`). Then the user is, in order:

1. an OIDC sign-in (Streamlit's ``st.login``; ``st.user``), given a role by the ``[roles]`` table of the
   secrets (:func:`mre_core.access.oidc.oidc_user`; listed nowhere: no role, no access);
2. the local account signed in on this browser session (:func:`mre_core.store.users.verify_login`); the
   session keeps only the username and the account is read again on every run, so a disabled account or a
   changed role takes effect at the next click;
3. nobody (``None``): the sign-in page, and no page at all.

Otherwise the app runs in local single-user mode as :data:`LOCAL_USER` (an admin; nothing to sign in to).

Bound beyond loopback with neither OIDC nor an active local account the app refuses to serve
(:func:`refusal`; :mod:`.serve` refuses before it starts the server).

The checks themselves are :func:`mre_core.access.allowed` / :func:`~mre_core.access.require`; every page
calls :func:`page_guard` first (a page reached by its URL is refused too, not only left out of the
navigation), and :func:`act` checks an action and writes its audit entry. :func:`act` and
:func:`pages_for` do not touch Streamlit, so deferred download callables (which run without a script
context) and tests can call them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from mre_core.access import Action, PermissionDenied, Role, User, allowed, require
from mre_core.access.oidc import oidc_providers, oidc_user
from mre_core.access.serving import is_loopback, login_required, serving_check

#: Nobody signed in, on an app served to this machine only (local single-user mode).
LOCAL_USER = User("local", "Local user (no sign-in)", Role.ADMIN, source="loopback")
#: Session-state keys: the signed-in local account's username; OIDC sign-ins already audited; studies viewed.
ACCOUNT_KEY = "auth_account"
OIDC_AUDITED_KEY = "auth_oidc_audited"
VIEWED_KEY = "auth_viewed"


@dataclass(frozen=True)
class PageSpec:
    """One page of the navigation and the action that opens it."""

    key: str  #: the file ``pages/<key>.py`` and the URL path
    title: str
    icon: str
    action: Action


PAGES: tuple[PageSpec, ...] = (
    PageSpec("review", "Review study", ":material/biotech:", Action.VIEW_STUDY),
    PageSpec("cohort", "Cohort", ":material/groups:", Action.VIEW_COHORT),
    PageSpec("model_settings", "Model & settings", ":material/tune:", Action.VIEW_SETTINGS),
    PageSpec("site_training", "Site training", ":material/model_training:", Action.MANAGE_MODELS),
    PageSpec("audit", "Audit log", ":material/policy:", Action.VIEW_AUDIT),
)


def pages_for(user: User | None) -> list[PageSpec]:
    """The pages ``user`` may open, in navigation order (the first is the landing page); none for nobody."""
    return [p for p in PAGES if allowed(user, p.action)]


class AuditUnavailable(RuntimeError):
    """A signed-in user's action could not be audited (no results store), so it is not done."""


def act(user: User | None, action: Action, store: Any | None, event: str, detail: str = "", *,
        study_uid: str | None = None, series_uid: str | None = None) -> None:
    """Check that ``user`` may do ``action`` (:func:`~mre_core.access.require`: a refusal raises
    :class:`~mre_core.access.PermissionDenied` and is audited as ``access:denied``), then write ``event``
    (e.g. ``export:study_csv``) to the audit log. Call it just before doing the action.

    Without a store a signed-in user's action raises :class:`AuditUnavailable` (nothing unaudited); the
    implicit :data:`LOCAL_USER` goes ahead. Touches no Streamlit state."""
    require(user, action, store, detail=detail)
    assert user is not None  # require() passed
    if store is None:
        if user.signed_in:
            raise AuditUnavailable(f"the results store is unavailable, so {event} cannot be audited; not done")
        return
    store.log_event(event, detail, user=user.username, study_uid=study_uid, series_uid=series_uid)


def audited(build: Callable[[], bytes], *, user: User | None, store: Any | None, action: Action, kind: str,
            detail: str = "", study_uid: str | None = None, series_uid: str | None = None) -> Callable[[], bytes]:
    """A deferred download (``st.download_button(data=...)``) that checks ``action``, builds the bytes and
    writes ``export:<kind>`` to the audit log when clicked. Store and user are bound here: the callable runs
    without a script context."""

    def data() -> bytes:
        require(user, action, store, detail=detail)
        payload = build()
        act(user, action, store, f"export:{kind}", detail, study_uid=study_uid, series_uid=series_uid)
        return payload

    return data


# ----------------------------------------------------------------------------- configuration
def secrets_dict() -> dict[str, Any]:
    """``st.secrets`` as a plain dict (empty when there is no secrets file)."""
    try:
        return st.secrets.to_dict()
    except Exception:  # noqa: BLE001 - no secrets file: Streamlit raises on first access
        return {}


@dataclass(frozen=True)
class AccessConfig:
    """How this server is set up for sign-in."""

    address: str | None  #: Streamlit's server.address (None or "": every interface)
    required: bool  #: sign-in before any page (:func:`~mre_core.access.serving.login_required`)
    providers: tuple[str, ...]  #: OIDC providers for st.login ("default" = st.login())
    secrets: Mapping[str, Any]


def access_config() -> AccessConfig:
    secrets = secrets_dict()
    address = st.get_option("server.address")
    return AccessConfig(address=address, required=login_required(address, secrets),
                        providers=tuple(oidc_providers(secrets)), secrets=secrets)


def _has_accounts(store: Any | None) -> bool:
    from mre_core.store.users import has_active_users

    return store is not None and has_active_users(store)


def refusal(config: AccessConfig, store: Any | None) -> str | None:
    """The refusal to show instead of the app (bound beyond loopback with no way to sign in), else ``None``."""
    address = config.address or ""
    if is_loopback(address):
        return None
    return serving_check(address, bool(config.providers) or _has_accounts(store))


def store_or_none(settings: Any | None = None) -> Any | None:
    """The cached results store of ``settings`` (default: env and secrets), ``None`` when it cannot be opened."""
    from mre_core.app.context import base_settings, get_store
    from mre_core.store.results import StoreError

    try:
        return get_store(settings or base_settings())
    except StoreError:
        return None


# ----------------------------------------------------------------------------- who is it
def _oidc_claims() -> dict[str, Any]:
    claims = st.user.to_dict()
    return claims if claims.get("is_logged_in") is True else {}


def current_user(store: Any | None = None, config: AccessConfig | None = None) -> User | None:
    """The user of this run: an OIDC sign-in, else the session's local account, else :data:`LOCAL_USER` when
    sign-in is not required, else ``None``. A ``[roles]`` table with a typo raises :class:`ValueError`."""
    config = config or access_config()
    claims = _oidc_claims()
    if claims:
        return oidc_user(claims, config.secrets.get("roles"))
    name = st.session_state.get(ACCOUNT_KEY)
    if name:
        from mre_core.store.users import get_account

        account = get_account(store, name) if store is not None else None
        if account is not None and account.active:
            return account.as_user()
        st.session_state.pop(ACCOUNT_KEY, None)  # disabled or removed since: signed out
        return None
    return None if config.required else LOCAL_USER


def default_reviewer(user: User | None) -> str:
    """The name the Review page starts with: the signed-in user's display name (none in local mode)."""
    return user.display_name if user is not None and user.signed_in else ""


def _audit_oidc_sign_in(store: Any | None, claims: Mapping[str, Any], user: User | None) -> None:
    """Once per browser session and identity: ``login:success`` (with a role) or ``login:failure`` (none)."""
    email = str(claims.get("email") or claims.get("sub") or "?").strip().lower()
    seen = st.session_state.setdefault(OIDC_AUDITED_KEY, set())
    if store is None or email in seen:
        return
    seen.add(email)
    if user is not None:
        store.log_event("login:success", f"oidc: role {user.role.value}", user=user.username)
    else:
        store.log_event("login:failure", "oidc: signed in at the provider, but no role in [roles]: no access",
                        user=email)


def audit_view(store: Any | None, user: User | None, study_uid: str, series_uid: str | None = None) -> None:
    """``study:view`` once per browser session, user and study."""
    if store is None or user is None:
        return
    viewed = st.session_state.setdefault(VIEWED_KEY, set())
    key = (user.username, study_uid, series_uid or "")
    if key in viewed:
        return
    store.log_event("study:view", f"study {study_uid}" + (f" series {series_uid}" if series_uid else ""),
                    user=user.username, study_uid=study_uid, series_uid=series_uid)
    viewed.add(key)


# ----------------------------------------------------------------------------- pages
#: The URL path of the sign-in page itself (the root URL while nobody is signed in).
SIGN_IN_PATH = "sign_in"


def _hidden_navigation(body: Callable[[str, Mapping[str, Any]], None]) -> None:
    """Every page's URL shows ``body(key, pages)`` (the sign-in page, a refusal); no menu. A deep link (a study
    link from the cohort page) keeps its URL, so it opens once the user has signed in."""
    pages: dict[str, Any] = {}
    pages[""] = st.Page(lambda: body("", pages), title="Sign in", url_path=SIGN_IN_PATH, default=True)
    for spec in PAGES:
        pages[spec.key] = st.Page(lambda key=spec.key: body(key, pages), title="Sign in", url_path=spec.key)
    st.navigation(list(pages.values()), position="hidden").run()


def _land(user: User, key: str, pages: Mapping[str, Any]) -> None:
    """After a sign-in on the page ``key``: stay there if the role allows it (a deep link keeps its study),
    else go to the role's first page (a researcher who asked for /review lands on the Cohort)."""
    keys = [p.key for p in pages_for(user)]
    if key in keys or not keys or keys[0] not in pages:
        st.rerun()
    st.switch_page(pages[keys[0]])


def navigation(user: User, folder: Any) -> list[Any]:
    """``st.navigation``'s pages for ``user``: the files of the pages the role allows (the first is the landing
    page), and, hidden from the menu, each other page's URL, which shows an audited refusal."""
    allowed_pages = pages_for(user)
    out = [st.Page(folder / f"{p.key}.py", title=p.title, icon=p.icon, url_path=p.key, default=i == 0)
           for i, p in enumerate(allowed_pages)]
    out += [st.Page(lambda spec=spec: _refused(user, spec), title=spec.title, url_path=spec.key,
                    visibility="hidden") for spec in PAGES if spec not in allowed_pages]
    return out


def _refused(user: User, spec: PageSpec) -> None:
    try:
        require(user, spec.action, store_or_none(), detail=f"page {spec.key}")
    except PermissionDenied as exc:
        st.title(spec.title)
        st.error(str(exc), icon=":material/block:")


def gate() -> User:
    """The user of this run; otherwise draws the refusal or the sign-in page (no patient data) and stops."""
    config = access_config()
    store = store_or_none()
    message = refusal(config, store)
    if message is None and config.required and store is None and not config.providers:
        message = ("Sign-in is required, but the results store that holds the local accounts cannot be opened: "
                   "check MRE_DB_URL (or db_url in .streamlit/secrets.toml).")
    if message is not None:
        _hidden_navigation(lambda _key, _pages: st.error(message, icon=":material/block:"))
        st.stop()
    try:
        user = current_user(store, config)
    except ValueError as exc:  # a [roles] table with a typo: nobody gets in until it is fixed
        text = f"The [roles] table of .streamlit/secrets.toml is invalid: {exc}"
        _hidden_navigation(lambda _key, _pages: st.error(text, icon=":material/block:"))
        st.stop()
    claims = _oidc_claims()
    if claims:
        _audit_oidc_sign_in(store, claims, user)
    if user is None:
        _hidden_navigation(lambda key, pages: sign_in_page(store, config, claims,
                                                           on_success=lambda u: _land(u, key, pages)))
        st.stop()
    return user


def _why_sign_in(config: AccessConfig) -> str:
    if config.address is None or not str(config.address).strip():
        return "This server listens on every network interface."
    if not is_loopback(config.address):
        return f"This server listens on {config.address}, so other machines can reach it."
    return "This site requires sign-in (MRE_REQUIRE_LOGIN or [access] require_login)."


def sign_in_page(store: Any | None, config: AccessConfig, claims: Mapping[str, Any] | None = None,
                 on_success: Callable[[User], None] | None = None) -> None:
    """OIDC buttons, the local username/password form, and what to do when neither is set up. After a local
    sign-in: ``on_success(user)`` (default: run the app again)."""
    st.title("Sign in")
    if claims:  # signed in at the provider, but the address has no role here
        who = claims.get("email") or claims.get("sub") or "this account"
        st.error(f"Signed in as **{who}**, but this address has no role in MRE Liver Review: **no access**. Ask "
                 "an administrator to add it to the [roles] table of .streamlit/secrets.toml.",
                 icon=":material/block:")
        if st.button("Sign out", key="auth_oidc_out"):
            st.logout()
        return
    st.markdown(f"{_why_sign_in(config)} Sign in to see studies and results.")
    for provider in config.providers:
        label = "Sign in with single sign-on" if provider == "default" else f"Sign in with {provider}"
        if st.button(label, type="primary", icon=":material/login:", key=f"auth_sso|{provider}"):
            st.login(None if provider == "default" else provider)
    if _has_accounts(store):
        _local_form(store, on_success or (lambda _user: st.rerun()))
    elif not config.providers:
        st.warning("No way to sign in is set up yet. Add a local account (`python -m mre_core users add NAME "
                   "--role admin`) or configure single sign-on ([auth] in .streamlit/secrets.toml, see "
                   ".streamlit/secrets.toml.example); see *Deploying for several users* in the README.",
                   icon=":material/warning:")


def _local_form(store: Any, on_success: Callable[[User], None]) -> None:
    from mre_core.store.users import verify_login

    with st.form("auth_local", border=True):
        st.markdown("**Local account**")
        name = st.text_input("Username", key="auth_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="auth_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    if submitted:
        user = verify_login(store, name, password)  # audited: login:success / login:failure
        if user is None:
            st.error("Not signed in: unknown username, wrong password or disabled account.", icon=":material/error:")
            return
        st.session_state[ACCOUNT_KEY] = user.username
        st.session_state.pop("auth_password", None)
        on_success(user)


def sign_out(store: Any | None, user: User) -> None:
    """Audited ``login:sign_out``; OIDC: ``st.logout()`` (new session); local: the whole session is cleared."""
    if store is not None:
        store.log_event("login:sign_out", user.source, user=user.username)
    if user.source == "oidc":
        st.logout()
        return
    st.session_state.clear()
    st.rerun()


def sidebar_user(user: User) -> None:
    """Who is signed in and *Sign out*; in local mode, that nobody signs in and why."""
    with st.sidebar:
        if not user.signed_in:
            address = st.get_option("server.address") or "127.0.0.1"
            st.caption(f"**{user.display_name}**: bound to {address} only; set MRE_REQUIRE_LOGIN=1 to require "
                       "sign-in.")
            return
        how = "single sign-on" if user.source == "oidc" else "local account"
        st.markdown(f"Signed in as **{user.display_name}** · {user.role.value} ({how})")
        if st.button("Sign out", icon=":material/logout:", key="auth_sign_out"):
            sign_out(store_or_none(), user)


def _router_skipped() -> bool:
    """True when Streamlit runs a page file without ``app.py`` (its ``pages/``-directory mode, which it keeps
    until a run calls ``st.navigation``: the first request after a server start, if it is a page's URL) and
    makes the next run go through ``app.py``, as ``st.navigation`` itself does (Streamlit 1.67's
    ``PagesManager.uses_pages_directory``)."""
    from streamlit.runtime.pages_manager import PagesManager

    skipped = bool(PagesManager.uses_pages_directory)
    PagesManager.uses_pages_directory = False
    return skipped


def page_guard(action: Action) -> User:
    """First call of every page: the user, when allowed ``action``; otherwise a refusal (audited as
    ``access:denied``) and ``st.stop()``. The page then runs only for a user the role allows.

    A page file run without the router (:func:`_router_skipped`) for nobody signed in shows the sign-in page
    itself; once signed in, the next run goes through the router."""
    config = access_config()
    store = store_or_none()
    message = refusal(config, store)
    try:
        user = None if message else current_user(store, config)
    except ValueError:
        user = None
    if _router_skipped() and user is None and message is None:
        sign_in_page(store, config, _oidc_claims())
        st.stop()
    try:
        require(user, action, store, detail=f"page {st.context.url or ''}".strip())
    except PermissionDenied as exc:
        st.error(str(exc), icon=":material/block:")
        st.stop()
    assert user is not None
    return user


__all__ = ["ACCOUNT_KEY", "AccessConfig", "AuditUnavailable", "LOCAL_USER", "PAGES", "PageSpec", "access_config",
           "act", "audit_view", "audited", "current_user", "default_reviewer", "gate", "navigation", "page_guard",
           "pages_for",
           "refusal", "secrets_dict", "sidebar_user", "sign_in_page", "sign_out", "store_or_none"]
