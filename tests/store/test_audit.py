"""The audit log: filters, CSV, append-only (no API to change it, and the database refuses), schema v5 → v6."""

from __future__ import annotations

import datetime as dt
import inspect
import io

import pandas as pd
import pytest
import sqlalchemy as sa

from mre_core.store import audit as audit_module
from mre_core.store import users as users_module
from mre_core.store.audit import AUDIT_COLUMNS, append_entry, audit_csv, read_audit
from mre_core.store.results import Store
from mre_core.store.schema import AUDIT_APPEND_ONLY, SCHEMA_VERSION, audit
from tests.result_factory import make_result


@pytest.fixture
def store(store_url: str) -> Store:
    s = Store(store_url)
    yield s
    s.dispose()


def _at(store: Store, when: str, action: str, user: str, detail: str = "") -> None:
    with store.writer() as conn:
        conn.execute(audit.insert().values(at_utc=when, user=user, action=action, detail=detail))


def _filled(store: Store) -> None:
    _at(store, "2025-01-01T08:00:00+00:00", "login:success", "bob", "local")
    _at(store, "2025-01-02T09:30:00+00:00", "login:failure", "mallory", "local: unknown user")
    _at(store, "2025-01-03T23:59:59+00:00", "users:add", "alice", "user 'carol' role=reader")
    _at(store, "2025-01-04T00:00:00+00:00", "access:denied", "dan", "export_identified: study 1.2.840.99")


def test_read_audit_filters_by_user_action_prefix_dates_and_study(store: Store) -> None:
    _filled(store)
    assert list(read_audit(store).columns) == list(AUDIT_COLUMNS)
    assert read_audit(store, user="bob")["action"].tolist() == ["login:success"]
    assert read_audit(store, action_prefix="login:")["user"].tolist() == ["bob", "mallory"]
    assert read_audit(store, since=dt.date(2025, 1, 2), until=dt.date(2025, 1, 3))["action"].tolist() == [
        "login:failure", "users:add"]  # until includes its whole day
    assert read_audit(store, since="2025-01-02T10:00:00", until="2025-01-04T00:00:00+00:00")["user"].tolist() == [
        "alice", "dan"]
    assert read_audit(store, study_uid="840.99")["user"].tolist() == ["dan"]
    assert read_audit(store, limit=2)["user"].tolist() == ["alice", "dan"]  # the latest, oldest first
    assert read_audit(store, action_prefix="nothing_").empty


def test_saves_are_found_by_their_study_uid_with_the_revision(store: Store) -> None:
    result = make_result([3.0, 3.1, 3.2])
    store.save(result, kind="review", reviewer="Dr Bob")
    found = read_audit(store, study_uid=result.study_uid[-6:])
    assert found[["action", "user", "study_uid", "series_uid"]].values.tolist() == [
        ["save:review", "Dr Bob", result.study_uid, result.series_uid]]
    assert found["revision"].tolist() == [1]


def test_the_csv_has_plain_snake_case_columns(store: Store) -> None:
    _filled(store)
    frame = pd.read_csv(io.BytesIO(audit_csv(read_audit(store))))
    assert list(frame.columns) == list(AUDIT_COLUMNS)
    assert all(c == c.lower() and " " not in c for c in frame.columns)
    assert len(frame) == 4 and frame["detail"].iloc[3] == "export_identified: study 1.2.840.99"


def test_the_public_api_offers_no_way_to_change_or_remove_an_entry() -> None:
    words = ("update", "delete", "remove", "purge", "truncate", "clear", "erase", "edit", "drop", "prune")
    names = [n for mod in (audit_module, users_module) for n in dir(mod) if not n.startswith("_")]
    names += [n for n, _ in inspect.getmembers(Store, callable) if not n.startswith("_")]
    assert [n for n in names if any(w in n.lower() for w in words)] == []


@pytest.mark.parametrize("statement", ["UPDATE audit SET detail = 'changed'", "DELETE FROM audit"])
def test_the_database_refuses_to_change_or_remove_an_entry(store: Store, statement: str) -> None:
    store.log_event("intake:rejected", "notes.txt: not a DICOM file")
    with pytest.raises(sa.exc.DBAPIError, match=AUDIT_APPEND_ONLY):
        with store.writer() as conn:
            conn.exec_driver_sql(statement)
    assert read_audit(store)["detail"].tolist() == ["notes.txt: not a DICOM file"]


def test_postgresql_also_refuses_truncate(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's; SQLite has none")
    store.log_event("intake:rejected", "x")
    with pytest.raises(sa.exc.DBAPIError, match=AUDIT_APPEND_ONLY):
        with store.writer() as conn:
            conn.exec_driver_sql("TRUNCATE audit")
    assert len(read_audit(store)) == 1


def test_a_version_5_store_is_upgraded_keeping_its_audit_log(store_url: str) -> None:
    old = Store(store_url, schema=5)
    assert old.version() == 5 and not sa.inspect(old.engine).has_table("users")
    old.log_event("intake:rejected", "before the upgrade")
    with old.writer() as conn:  # version 5 had no guard yet
        append_entry(conn, "test:scratch", detail="removed before the upgrade")
        conn.exec_driver_sql("DELETE FROM audit WHERE action = 'test:scratch'")
    old.dispose()
    store = Store(store_url)
    try:
        assert store.version() == SCHEMA_VERSION == 7
        assert sa.inspect(store.engine).has_table("users")
        assert read_audit(store)["detail"].tolist() == ["before the upgrade"]
        users_module.add_user(store, "bob", "reader", "correct horse battery", actor="upgrade-test")
        with pytest.raises(sa.exc.DBAPIError, match=AUDIT_APPEND_ONLY):
            with store.writer() as conn:
                conn.exec_driver_sql("DELETE FROM audit")
        assert len(read_audit(store)) == 2
    finally:
        store.dispose()


def test_a_save_names_the_signed_in_user_and_an_event_can_name_its_study(store: Store) -> None:
    from mre_core.store.audit import audit_choices

    result = make_result([3.0, 3.2])
    store.save(result, kind="review", reviewer="Dr Typed Name", actor="bob")
    store.log_event("study:view", f"study {result.study_uid}", user="carol", study_uid=result.study_uid,
                    series_uid=result.series_uid)
    store.log_event("study:view", "study 9.9.9 (not saved)", user="carol", study_uid="9.9.9")
    found = read_audit(store)
    assert found[["user", "action"]].values.tolist() == [["bob", "save:review"], ["carol", "study:view"],
                                                         ["carol", "study:view"]]
    assert found["study_uid"].iloc[:2].tolist() == [result.study_uid] * 2 and pd.isna(found["study_uid"].iloc[2])
    assert "reviewer 'Dr Typed Name'" in found["detail"].iloc[0]
    assert read_audit(store, study_uid="9.9.9")["detail"].tolist() == ["study 9.9.9 (not saved)"]
    assert audit_choices(store) == (["bob", "carol"], ["save:", "study:"])
