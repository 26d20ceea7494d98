"""Local sign-in accounts: add, disable, enable, change password or role, list, verify a sign-in.

For sites without an OIDC provider. Passwords are stored only as argon2id hashes (``argon2-cffi``'s
:class:`~argon2.PasswordHasher`, RFC 9106 parameters by default); a hash made with older parameters is
replaced at the next successful sign-in. :func:`verify_login` takes about the same time whether the account
exists or not (an unknown name is checked against a dummy hash), and tells the caller only "user" or
``None``; the reason of a failure goes to the audit log. Every change and every sign-in, successful or not,
is written to the audit log in the same transaction, naming the acting user.

Accounts are never deleted (the audit log keeps referring to them); :func:`disable_user` blocks sign-in.
The CLI verb ``python -m mre_core users`` (:func:`configure_parser`, :func:`run_cli`) wraps these functions.
"""

from __future__ import annotations

import argparse
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from mre_core.access.roles import Role, User
from mre_core.store.audit import append_entry, utc_now
from mre_core.store.schema import users

if TYPE_CHECKING:
    from mre_core.store.results import Store

#: Shortest password accepted, in characters (a site policy may ask for more; there is no upper-case/digit rule).
MIN_PASSWORD_LENGTH = 12
#: Longest password accepted (argon2 does not need a limit; this only bounds the work one request can cause).
MAX_PASSWORD_LENGTH = 1024
#: Usernames: lower case letters, digits and ``. _ @ -``, starting with a letter or digit (an e-mail fits).
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,127}$")


class UserError(ValueError):
    """An account request that cannot be done (duplicate, unknown user, bad role or password); says why."""


@dataclass(frozen=True)
class Account:
    """A local account as listed (never with its hash)."""

    username: str
    display_name: str
    role: Role
    active: bool
    created_utc: str
    updated_utc: str

    def as_user(self) -> User:
        return User(username=self.username, display_name=self.display_name or self.username, role=self.role,
                    source="local")


def normalise_username(username: str) -> str:
    """Accounts are case-insensitive: ``Bob`` signs in as ``bob``."""
    return (username or "").strip().lower()


def _valid_username(username: str) -> str:
    name = normalise_username(username)
    if not USERNAME_PATTERN.match(name):
        raise UserError(f"invalid username {username!r}: use 1-128 letters, digits and . _ @ -, starting with a "
                        "letter or digit")
    return name


def _role(role: Role | str) -> Role:
    try:
        return Role(str(role).strip().lower())
    except ValueError:
        raise UserError(f"unknown role {role!r}: use one of {', '.join(r.value for r in Role)}") from None


def check_password(password: str) -> None:
    """:class:`UserError` when ``password`` is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters (a passphrase of a "
                        "few words is easiest)")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")


def _actor(actor: str) -> str:
    if not (actor or "").strip():
        raise ValueError("say who is acting (actor=...): every account change is audited with its author")
    return actor.strip()


@functools.lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int, hash_len: int, salt_len: int) -> str:
    """A hash of nothing in particular with these parameters, checked for unknown usernames (same cost)."""
    return PasswordHasher(time_cost, memory_cost, parallelism, hash_len, salt_len).hash("no such user")


def _hasher(hasher: PasswordHasher | None) -> PasswordHasher:
    return hasher if hasher is not None else PasswordHasher()


def _row(conn: Connection, username: str) -> sa.RowMapping | None:
    return conn.execute(sa.select(users).where(users.c.username == username)).mappings().first()


def _account(row: sa.RowMapping) -> Account:
    return Account(username=row["username"], display_name=row["display_name"], role=Role(row["role"]),
                   active=bool(row["active"]), created_utc=row["created_utc"], updated_utc=row["updated_utc"])


def _update(conn: Connection, username: str, **values: object) -> None:
    done = conn.execute(users.update().where(users.c.username == username).values(updated_utc=utc_now(), **values))
    if done.rowcount == 0:
        raise UserError(f"no user {username!r} (see: python -m mre_core users list)")


def add_user(store: Store, username: str, role: Role | str, password: str, *, actor: str, display_name: str = "",
             hasher: PasswordHasher | None = None) -> Account:
    """Create an active account; :class:`UserError` if the name is taken or invalid, the role unknown or the
    password too short. Audited as ``users:add`` by ``actor``."""
    name, role, actor = _valid_username(username), _role(role), _actor(actor)
    check_password(password)
    now = utc_now()
    row = {"username": name, "display_name": display_name.strip(), "role": role.value,
           "password_hash": _hasher(hasher).hash(password), "active": True, "created_utc": now, "updated_utc": now}
    try:
        with store.writer() as conn:
            conn.execute(users.insert().values(**row))
            append_entry(conn, "users:add", user=actor, detail=f"user {name!r} role={role.value}")
    except IntegrityError:
        raise UserError(f"user {name!r} already exists (change it with: python -m mre_core users passwd/enable/"
                        "disable)") from None
    return Account(name, row["display_name"], role, True, now, now)


def set_password(store: Store, username: str, password: str, *, actor: str,
                 hasher: PasswordHasher | None = None) -> None:
    """Replace a user's password (audited as ``users:passwd``)."""
    name, actor = normalise_username(username), _actor(actor)
    check_password(password)
    with store.writer() as conn:
        _update(conn, name, password_hash=_hasher(hasher).hash(password))
        append_entry(conn, "users:passwd", user=actor, detail=f"user {name!r}")


def set_role(store: Store, username: str, role: Role | str, *, actor: str) -> None:
    """Change a user's role (audited as ``users:role``)."""
    name, role, actor = normalise_username(username), _role(role), _actor(actor)
    with store.writer() as conn:
        _update(conn, name, role=role.value)
        append_entry(conn, "users:role", user=actor, detail=f"user {name!r} role={role.value}")


def _set_active(store: Store, username: str, active: bool, actor: str) -> None:
    name, actor = normalise_username(username), _actor(actor)
    with store.writer() as conn:
        _update(conn, name, active=active)
        append_entry(conn, "users:enable" if active else "users:disable", user=actor, detail=f"user {name!r}")


def disable_user(store: Store, username: str, *, actor: str) -> None:
    """Block a user's sign-in, keeping the account (audited as ``users:disable``)."""
    _set_active(store, username, False, actor)


def enable_user(store: Store, username: str, *, actor: str) -> None:
    """Allow a disabled user to sign in again (audited as ``users:enable``)."""
    _set_active(store, username, True, actor)


def get_account(store: Store, username: str) -> Account | None:
    with store.engine.connect() as conn:
        row = _row(conn, normalise_username(username))
    return None if row is None else _account(row)


def list_users(store: Store) -> list[Account]:
    """Every account, by username; no password hashes."""
    q = sa.select(*(c for c in users.c if c.name != "password_hash")).order_by(users.c.username)
    with store.engine.connect() as conn:
        return [_account(r) for r in conn.execute(q).mappings()]


def has_active_users(store: Store) -> bool:
    """True when at least one local account may sign in (one input of :func:`mre_core.access.serving_check`)."""
    with store.engine.connect() as conn:
        return conn.execute(sa.select(users.c.id).where(users.c.active.is_(True)).limit(1)).first() is not None


def _matches(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return bool(hasher.verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


def verify_login(store: Store, username: str, password: str, *, hasher: PasswordHasher | None = None) -> User | None:
    """The signed-in :class:`User`, or ``None`` for an unknown name, a wrong password or a disabled account.

    Audited as ``login:success`` or ``login:failure`` (the reason in the detail, the name tried as user). A
    hash whose argon2 parameters differ from ``hasher``'s is replaced after a successful check.
    """
    hasher = _hasher(hasher)
    name = normalise_username(username)
    with store.engine.connect() as conn:
        row = _row(conn, name) if USERNAME_PATTERN.match(name) else None
    if row is None:
        _matches(hasher, _dummy_hash(hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.hash_len,
                                     hasher.salt_len), password)
        reason = "unknown user"
    elif not _matches(hasher, row["password_hash"], password):
        reason = "wrong password"
    elif not row["active"]:
        reason = "account disabled"
    else:
        with store.writer() as conn:
            if hasher.check_needs_rehash(row["password_hash"]):
                _update(conn, name, password_hash=hasher.hash(password))
                append_entry(conn, "users:rehash", user=name, detail=f"user {name!r}: argon2 parameters updated")
            append_entry(conn, "login:success", user=name, detail="local")
        return _account(row).as_user()
    with store.writer() as conn:
        append_entry(conn, "login:failure", user=name or username[:128], detail=f"local: {reason}")
    return None


# ---------------------------------------------------------------------- CLI: python -m mre_core users …
def configure_parser(p: argparse.ArgumentParser) -> None:
    """``users add|disable|enable|passwd|role|list`` on the store of ``MRE_DB_URL``."""
    roles = [r.value for r in Role]
    sub = p.add_subparsers(dest="users_verb", required=True)
    a = sub.add_parser("add", help="create an account (password prompted, or --password-stdin)")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=roles, help="what the account may do")
    a.add_argument("--name", default="", help='name shown on pages and sign-offs, e.g. "Dr X"')
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    for verb, words in (("disable", "block an account's sign-in (kept for the audit log)"),
                        ("enable", "allow a disabled account to sign in again")):
        sub.add_parser(verb, help=words).add_argument("username")
    w = sub.add_parser("passwd", help="set a new password (prompted, or --password-stdin)")
    w.add_argument("username")
    w.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    r = sub.add_parser("role", help="change an account's role")
    r.add_argument("username")
    r.add_argument("role", choices=roles)
    sub.add_parser("list", help="list the accounts (no password hashes)")


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def _read_password(args: argparse.Namespace) -> str:
    """The first line of stdin (``--password-stdin``), else typed twice at a prompt that does not echo."""
    import getpass
    import sys

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UserError("--password-stdin: standard input held no password")
        return password
    password = getpass.getpass(f"password for {normalise_username(args.username)}: ")
    check_password(password)
    if getpass.getpass("the same password again: ") != password:
        raise UserError("the two passwords differ; nothing changed")
    return password


def _print_accounts(accounts: list[Account]) -> None:
    header = ("username", "role", "active", "name", "created_utc", "updated_utc")
    rows = [header] + [(a.username, a.role.value, "yes" if a.active else "no", a.display_name, a.created_utc,
                        a.updated_utc) for a in accounts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if not accounts:
        print("(no local accounts: python -m mre_core users add NAME --role admin)")


def run_cli(args: argparse.Namespace) -> int:
    import sys

    from mre_core.config import Settings
    from mre_core.store.results import Store, StoreError

    try:
        store = Store(Settings.from_env().db_url)
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    actor, verb = _cli_actor(), args.users_verb
    try:
        if verb == "list":
            _print_accounts(list_users(store))
            return 0
        if verb == "add":
            _valid_username(args.username)
            account = add_user(store, args.username, args.role, _read_password(args), actor=actor,
                               display_name=args.name)
            print(f"added {account.username} ({account.role.value})")
        elif verb == "passwd":
            if get_account(store, args.username) is None:
                raise UserError(f"no user {normalise_username(args.username)!r} (see: python -m mre_core users list)")
            set_password(store, args.username, _read_password(args), actor=actor)
            print(f"password changed for {normalise_username(args.username)}")
        elif verb == "role":
            set_role(store, args.username, args.role, actor=actor)
            print(f"{normalise_username(args.username)} is now {args.role}")
        else:
            (enable_user if verb == "enable" else disable_user)(store, args.username, actor=actor)
            print(f"{verb}d {normalise_username(args.username)}")
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except sa.exc.SQLAlchemyError as exc:
        print(f"error: the results store {store.display_url} failed: {exc.__class__.__name__}: "
              f"{str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("\nerror: no password given; nothing changed", file=sys.stderr)
        return 1
    finally:
        store.dispose()


__all__ = ["Account", "MIN_PASSWORD_LENGTH", "USERNAME_PATTERN", "UserError", "add_user", "check_password",
           "configure_parser", "disable_user", "enable_user", "get_account", "has_active_users", "list_users",
           "normalise_username", "run_cli", "set_password", "set_role", "verify_login"]
