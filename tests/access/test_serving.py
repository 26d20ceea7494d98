"""The startup rule: loopback without sign-in is fine, any other address needs sign-in."""

from __future__ import annotations

import pytest

from mre_core.access.serving import is_loopback, serving_check


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST",
                                     "::ffff:127.0.0.1"])
def test_loopback_needs_no_sign_in(address: str) -> None:
    assert is_loopback(address)
    assert serving_check(address, auth_configured=False) is None


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", "  ", "192.168.1.20", "10.0.0.5", "mre.hospital.org",
                                     "fe80::1%eth0", "128.0.0.1"])
def test_any_other_address_without_sign_in_is_refused_with_the_remedies(address: str) -> None:
    assert not is_loopback(address)
    message = serving_check(address, auth_configured=False)
    assert message is not None
    assert "users add" in message and "[auth]" in message and "127.0.0.1" in message


def test_sign_in_configured_allows_any_address() -> None:
    assert serving_check("0.0.0.0", auth_configured=True) is None


@pytest.mark.parametrize(("address", "secrets", "environ", "required"), [
    ("127.0.0.1", {}, {}, False),
    ("localhost", {"access": {"require_login": False}}, {"MRE_REQUIRE_LOGIN": "0"}, False),
    ("127.0.0.1", {}, {"MRE_REQUIRE_LOGIN": "1"}, True),
    ("::1", {}, {"MRE_REQUIRE_LOGIN": "yes"}, True),
    ("127.0.0.1", {"access": {"require_login": True}}, {}, True),
    ("0.0.0.0", {}, {}, True),
    (None, {}, {}, True),  # no server.address: Streamlit binds every interface
    ("10.0.0.5", {"access": {"require_login": False}}, {"MRE_REQUIRE_LOGIN": "0"}, True),  # cannot be turned off
])
def test_sign_in_is_required_beyond_loopback_and_on_loopback_when_asked(address, secrets, environ,
                                                                        required: bool) -> None:
    from mre_core.access.serving import login_required

    assert login_required(address, secrets, environ) is required
