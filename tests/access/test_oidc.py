"""OIDC claims → role from the [roles] table; no match, no role; is [auth] configured."""

from __future__ import annotations

import pytest

from mre_core.access import Role
from mre_core.access.oidc import oidc_configured, oidc_providers, oidc_user, parse_role_mapping, role_for_claims

MAPPING = {"admin": ["Alice@Hospital.org"], "reader": ["bob@hospital.org", "alice@hospital.org"],
           "researcher": "dan@uni.edu", "group_claim": "roles_claim", "groups": {"reader": ["MRE-Readers"]}}


def test_listed_addresses_get_their_role_case_insensitively() -> None:
    assert role_for_claims({"email": "BOB@hospital.org"}, MAPPING) is Role.READER
    assert role_for_claims({"email": "dan@uni.edu"}, MAPPING) is Role.RESEARCHER


def test_several_matches_give_the_most_privileged_role() -> None:
    assert role_for_claims({"email": "alice@hospital.org"}, MAPPING) is Role.ADMIN
    claims = {"email": "dan@uni.edu", "roles_claim": ["mre-readers", "staff"]}
    assert role_for_claims(claims, MAPPING) is Role.READER


def test_default_is_no_role_and_so_no_access() -> None:
    assert role_for_claims({"email": "eve@evil.org"}, MAPPING) is None
    assert oidc_user({"email": "eve@evil.org", "name": "Eve"}, MAPPING) is None
    assert role_for_claims({"email": "bob@hospital.org"}, None) is None
    assert role_for_claims({}, MAPPING) is None


def test_unverified_address_or_signed_out_gets_nothing() -> None:
    assert role_for_claims({"email": "bob@hospital.org", "email_verified": False}, MAPPING) is None
    assert role_for_claims({"email": "bob@hospital.org", "is_logged_in": False}, MAPPING) is None


def test_groups_from_the_configured_claim() -> None:
    assert role_for_claims({"email": "x@y.org", "roles_claim": "MRE-readers"}, MAPPING) is Role.READER
    assert role_for_claims({"email": "x@y.org", "groups": ["mre-readers"]}, MAPPING) is None  # other claim


def test_oidc_user_is_named_by_address_with_the_display_name() -> None:
    user = oidc_user({"email": "Bob@Hospital.org", "name": "Dr Bob"}, MAPPING)
    assert user is not None
    assert (user.username, user.display_name, user.role, user.source) == ("bob@hospital.org", "Dr Bob", Role.READER,
                                                                          "oidc")


@pytest.mark.parametrize("section, match", [({"readers": ["a@b.org"]}, "readers"),
                                            ({"groups": {"boss": ["x"]}}, "boss"),
                                            ({"admin": [1]}, "list of strings"),
                                            ({"group_claim": ""}, "group_claim")])
def test_a_mistyped_roles_table_is_an_error_naming_it(section: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_role_mapping(section)


def test_oidc_is_configured_only_with_the_shared_and_provider_keys() -> None:
    shared = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32}
    provider = {"client_id": "id", "client_secret": "secret", "server_metadata_url": "https://idp/.well-known"}
    assert oidc_providers({"auth": {**shared, **provider}}) == ["default"]
    assert oidc_providers({"auth": {**shared, "hospital": provider}}) == ["hospital"]
    assert not oidc_configured({"auth": provider})  # no redirect_uri / cookie_secret
    assert not oidc_configured({"auth": {**shared, "client_id": "id"}})
    assert not oidc_configured({})
    assert not oidc_configured({"auth": {**shared, **provider, "client_secret": "CHANGE-ME"}})  # the example's
