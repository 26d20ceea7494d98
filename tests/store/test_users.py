"""Local accounts on both backends: argon2id hashes, sign-in, disabling, rehashing, and the audit of each."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from mre_core.access import Role
from mre_core.store import users as accounts
from mre_core.store.audit import read_audit
from mre_core.store.results import Store
from mre_core.store.schema import users as users_table
from mre_core.store.users import UserError, add_user, disable_user, enable_user, list_users, verify_login

#: Cheap argon2id parameters so the tests stay fast (production uses argon2-cffi's RFC 9106 defaults).
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture
def store(store_url: str) -> Store:
    s = Store(store_url)
    yield s
    s.dispose()


def _audit(store: Store) -> list[tuple[str, str, str]]:
    return [(r.action, r.user, r.detail) for r in read_audit(store).itertuples()]


def _hash(store: Store, username: str) -> str:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(users_table.c.password_hash).where(users_table.c.username == username)).scalar()


def test_the_password_is_stored_only_as_an_argon2id_hash(store: Store) -> None:
    account = add_user(store, "Bob", "reader", PASSWORD, actor="admin1", display_name="Dr Bob", hasher=FAST)
    assert (account.username, account.role, account.active) == ("bob", Role.READER, True)
    stored = _hash(store, "bob")
    assert stored != PASSWORD and PASSWORD not in stored and stored.startswith("$argon2id$")


def test_sign_in_with_the_right_password_only(store: Store) -> None:
    add_user(store, "bob", "reader", PASSWORD, actor="admin1", display_name="Dr Bob", hasher=FAST)
    user = verify_login(store, "BOB ", PASSWORD, hasher=FAST)
    assert user is not None and (user.username, user.display_name, user.role, user.source) == (
        "bob", "Dr Bob", Role.READER, "local")
    assert verify_login(store, "bob", PASSWORD + "x", hasher=FAST) is None
    assert verify_login(store, "nobody", PASSWORD, hasher=FAST) is None
    assert verify_login(store, "bad name!", PASSWORD, hasher=FAST) is None


def test_every_sign_in_is_audited_with_its_reason(store: Store) -> None:
    add_user(store, "bob", "reader", PASSWORD, actor="admin1", hasher=FAST)
    verify_login(store, "bob", PASSWORD, hasher=FAST)
    verify_login(store, "bob", "wrong password!!", hasher=FAST)
    verify_login(store, "mallory", PASSWORD, hasher=FAST)
    assert _audit(store) == [("users:add", "admin1", "user 'bob' role=reader"), ("login:success", "bob", "local"),
                             ("login:failure", "bob", "local: wrong password"),
                             ("login:failure", "mallory", "local: unknown user")]
    assert not any(PASSWORD in d or "wrong password!!" in d for _, _, d in _audit(store))  # no password logged


def test_a_disabled_account_cannot_sign_in_until_enabled(store: Store) -> None:
    add_user(store, "bob", "reader", PASSWORD, actor="admin1", hasher=FAST)
    disable_user(store, "bob", actor="admin1")
    assert verify_login(store, "bob", PASSWORD, hasher=FAST) is None
    assert not accounts.has_active_users(store)
    enable_user(store, "bob", actor="admin2")
    assert verify_login(store, "bob", PASSWORD, hasher=FAST) is not None
    assert accounts.has_active_users(store)
    assert [(a, u, d) for a, u, d in _audit(store) if a != "login:success"] == [
        ("users:add", "admin1", "user 'bob' role=reader"), ("users:disable", "admin1", "user 'bob'"),
        ("login:failure", "bob", "local: account disabled"), ("users:enable", "admin2", "user 'bob'")]


def test_a_password_change_takes_effect_and_is_audited(store: Store) -> None:
    add_user(store, "bob", "reader", PASSWORD, actor="admin1", hasher=FAST)
    accounts.set_password(store, "bob", "a brand new passphrase", actor="bob", hasher=FAST)
    assert verify_login(store, "bob", PASSWORD, hasher=FAST) is None
    assert verify_login(store, "bob", "a brand new passphrase", hasher=FAST) is not None
    assert ("users:passwd", "bob", "user 'bob'") in _audit(store)


def test_a_role_change_is_audited(store: Store) -> None:
    add_user(store, "dan", "researcher", PASSWORD, actor="admin1", hasher=FAST)
    accounts.set_role(store, "dan", Role.READER, actor="admin1")
    assert accounts.get_account(store, "dan").role is Role.READER
    assert ("users:role", "admin1", "user 'dan' role=reader") in _audit(store)


def test_a_hash_with_old_parameters_is_replaced_at_sign_in(store: Store) -> None:
    add_user(store, "bob", "reader", PASSWORD, actor="admin1", hasher=FAST)
    before = _hash(store, "bob")
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    assert verify_login(store, "bob", PASSWORD, hasher=stronger) is not None
    after = _hash(store, "bob")
    assert after != before and "m=16,t=2,p=1" in after and not stronger.check_needs_rehash(after)
    assert ("users:rehash", "bob", "user 'bob': argon2 parameters updated") in _audit(store)
    assert verify_login(store, "bob", PASSWORD, hasher=stronger) is not None


def test_the_default_hasher_is_argon2id_with_rfc_9106_parameters(store: Store) -> None:
    add_user(store, "alice", "admin", PASSWORD, actor="setup")
    assert "$argon2id$v=19$m=65536,t=3,p=4$" in _hash(store, "alice")
    assert verify_login(store, "alice", PASSWORD) is not None


@pytest.mark.parametrize("call, match", [
    (lambda s: add_user(s, "bob", "reader", PASSWORD, actor="a", hasher=FAST), "already exists"),
    (lambda s: add_user(s, "BOB", "reader", PASSWORD, actor="a", hasher=FAST), "already exists"),
    (lambda s: add_user(s, "carol", "superuser", PASSWORD, actor="a", hasher=FAST), "unknown role"),
    (lambda s: add_user(s, "carol", "reader", "short", actor="a", hasher=FAST), "at least 12"),
    (lambda s: add_user(s, "no spaces", "reader", PASSWORD, actor="a", hasher=FAST), "invalid username"),
    (lambda s: disable_user(s, "ghost", actor="a"), "no user 'ghost'"),
    (lambda s: accounts.set_password(s, "ghost", PASSWORD, actor="a", hasher=FAST), "no user 'ghost'"),
])
def test_bad_requests_are_user_errors_that_change_nothing(store: Store, call, match: str) -> None:
    add_user(store, "bob", "reader", PASSWORD, actor="a", hasher=FAST)
    with pytest.raises(UserError, match=match):
        call(store)
    assert [a.username for a in list_users(store)] == ["bob"]
    assert [a for a, _, _ in _audit(store)] == ["users:add"]


def test_an_account_change_needs_an_acting_user(store: Store) -> None:
    with pytest.raises(ValueError, match="actor"):
        add_user(store, "bob", "reader", PASSWORD, actor="", hasher=FAST)


def test_list_users_has_no_hashes(store: Store) -> None:
    add_user(store, "bob", "reader", PASSWORD, actor="a", display_name="Dr Bob", hasher=FAST)
    add_user(store, "alice", "admin", PASSWORD, actor="a", hasher=FAST)
    listed = list_users(store)
    assert [(a.username, a.role) for a in listed] == [("alice", Role.ADMIN), ("bob", Role.READER)]
    assert not any("argon2" in str(v) for a in listed for v in vars(a).values())
    assert "password_hash" not in pd.DataFrame([vars(a) for a in listed]).columns
