"""The startup rule: the app serves other machines only with sign-in configured.

Bound to a loopback address (127.0.0.0/8, ``::1``, ``localhost``) the app is reachable from this machine
only, and runs without sign-in as it always has. Bound to anything else (``0.0.0.0``, a LAN address, a host
name, or no address at all, which Streamlit reads as every interface) it must have OIDC or at least one
active local account; :func:`serving_check` returns the refusal to show instead of the app.

>>> serving_check("127.0.0.1", auth_configured=False) is None
True
>>> serving_check("0.0.0.0", auth_configured=True) is None
True
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


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


__all__ = ["LOOPBACK_NAMES", "is_loopback", "serving_check"]
