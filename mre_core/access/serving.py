"""The startup rule: the app serves other machines only with sign-in configured; when sign-in is asked for.

Bound to a loopback address (127.0.0.0/8, ``::1``, ``localhost``) the app is reachable from this machine
only, and runs without sign-in as it always has. Bound to anything else (``0.0.0.0``, a LAN address, a host
name, or no address at all, which Streamlit reads as every interface) it must have OIDC or at least one
active local account; :func:`serving_check` returns the refusal to show instead of the app.

>>> serving_check("127.0.0.1", auth_configured=False) is None
True
>>> serving_check("0.0.0.0", auth_configured=True) is None
True

:func:`login_required` says whether a person must sign in: always beyond loopback, and on loopback when the
site asks for it (``MRE_REQUIRE_LOGIN=1``, or ``[access] require_login = true`` in the secrets). Otherwise
the app runs in local single-user mode.

>>> login_required("127.0.0.1", {}, {}), login_required("127.0.0.1", {}, {"MRE_REQUIRE_LOGIN": "1"})
(False, True)
>>> login_required("0.0.0.0", {}, {"MRE_REQUIRE_LOGIN": "0"})  # beyond loopback it cannot be switched off
True
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
#: The environment variable that asks for sign-in on loopback too.
REQUIRE_LOGIN_ENV = "MRE_REQUIRE_LOGIN"
_TRUE = frozenset({"1", "true", "yes", "on"})


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ``::1`` (also ``[::1]`` and ``::ffff:127.x.y.z``) and ``localhost``; a blank
    address is every interface, so not loopback; another host name is not either (it is never resolved here)."""
    text = (address or "").strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id (fe80::1%eth0)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, (str, int)) and str(value).strip().lower() in _TRUE)


def login_required(address: str | None, secrets: Mapping[str, Any] | None = None,
                   environ: Mapping[str, str] | None = None) -> bool:
    """True when a person must sign in before any page is shown.

    Parameters
    ----------
    address:
        Streamlit's ``server.address`` (``None`` or blank: every interface).
    secrets:
        ``st.secrets`` as a mapping; ``[access] require_login = true`` asks for sign-in on loopback too.
    environ:
        The environment (default ``os.environ``); ``MRE_REQUIRE_LOGIN=1`` (or true/yes/on) does the same.
    """
    if not is_loopback(address or ""):
        return True
    env = os.environ if environ is None else environ
    section = (secrets or {}).get("access")
    asked = section.get("require_login") if isinstance(section, Mapping) else None
    return _true(env.get(REQUIRE_LOGIN_ENV, "")) or _true(asked)


def serving_check(address: str, auth_configured: bool) -> str | None:
    """``None`` when the app may serve on ``address``; otherwise the refusal message, naming the remedies.

    Parameters
    ----------
    address:
        Streamlit's ``server.address`` (``st.get_option("server.address")``; blank means every interface).
    auth_configured:
        True when an OIDC provider is configured (:func:`mre_core.access.oidc.oidc_configured`) or the store
        has an active local account (:func:`mre_core.store.users.has_active_users`).
    """
    if auth_configured or is_loopback(address):
        return None
    where = f"address {address!r}" if (address or "").strip() else "every network interface (no server.address)"
    return (f"Refusing to serve on {where}: other machines could reach patient data without signing in. "
            "Either configure sign-in, with OIDC in .streamlit/secrets.toml ([auth], see "
            ".streamlit/secrets.toml.example) or a local account (python -m mre_core users add NAME --role admin), "
            "or serve this machine only (server.address = \"127.0.0.1\" in .streamlit/config.toml).")


__all__ = ["LOOPBACK_NAMES", "REQUIRE_LOGIN_ENV", "is_loopback", "login_required", "serving_check"]
