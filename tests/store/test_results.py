"""Results store: revisions never overwrite, ROIs round-trip, schema migrations, concurrent writers.

The tests of the store's database behaviour take ``store_url`` (``tests/pg_server.py``) and run twice:
``[sqlite]`` on a file, ``[postgresql]`` on a database of the suite's own PostgreSQL 15 server.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool
from tests.pg_server import free_port
from tests.result_factory import make_result
from tests.store.writer_process import save_many

from mre_core.store.results import Store, StoreError, pack_mask, unpack_mask
from mre_core.store.schema import SCHEMA_VERSION, audit, revisions, schema_version, studies


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite'}"


def _side_engine(url: str) -> sa.Engine:
    """An engine outside the store under test, for looking at the server (no pool: nothing stays open)."""
    return sa.create_engine(url, poolclass=NullPool)


def _in_thread(call: Callable[[], int]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a started thread; the dict receives ``number`` or ``error`` (the exception)."""
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["number"] = call()
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until_blocked(url: str, thread: threading.Thread) -> None:
    """Return once ``thread``'s save waits for the open transaction (so the race is really run).

    PostgreSQL shows a session waiting for a lock in pg_stat_activity; SQLite gives no such view, so
    there a short pause stands in (the waiter is held at BEGIN IMMEDIATE by the busy timeout).
    """
    if not url.startswith("postgresql"):
        time.sleep(0.5)
    else:
        engine = _side_engine(url)
        q = sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    if conn.execute(q).scalar():
                        break
                time.sleep(0.05)
            else:
                raise AssertionError("the second writer never waited for the first one's lock")
        finally:
            engine.dispose()
    assert thread.is_alive(), "the second save finished before the first transaction committed"


def test_pack_mask_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((204, 256)) > 0.7
    assert np.array_equal(unpack_mask(pack_mask(mask), 204, 256), mask)


def test_saves_are_new_revisions_and_keep_uids_model_and_settings(store_url: str) -> None:
    store = Store(store_url)
    result = make_result([3.0, 3.2, 3.4])
    assert store.save(result) == 1
    assert store.save(result, kind="review", reviewer="Dr A", comment="checked", manual_kpa=3.1,
                      edits={"slices": {}}) == 2
    history = store.history(result.study_uid)
    assert list(history["revision"]) == [1, 2]
    assert list(history["kind"]) == ["auto", "review"]
    first = store.load_revision(result.study_uid, result.series_uid, 1)
    latest = store.load_revision(result.study_uid, result.series_uid)
    assert first.manual_kpa is None and first.comment == ""  # revision 1 untouched by the second save
    assert latest.revision == 2 and latest.manual_kpa == pytest.approx(3.1) and latest.reviewer == "Dr A"
    assert latest.model_sha256 == result.model_sha256
    assert latest.settings["staging"]["name"] == result.settings.staging.name
    assert "db_url" not in latest.settings  # may hold a password
    assert list(latest.slices["sop_uid"]) == [s.sop_uid for s in result.slices]
    for s in result.slices:
        assert np.array_equal(latest.rois[s.sop_uid], s.roi)
    with store.engine.connect() as conn:
        uids = json.loads(conn.execute(sa.text("select source_uids_json from studies")).scalar())
    assert uids == [e.sop_uid for e in result.study.series.slices]


def test_latest_table_has_one_row_per_study_with_the_latest_values(store_url: str) -> None:
    store = Store(store_url)
    a, b = make_result([2.0, 2.2, 2.4], patient_id="A"), make_result([5.0, 5.5, 6.0], patient_id="B")
    store.save(a, dataset="demo cohort")
    store.save(a, kind="review", manual_kpa=2.5)
    store.save(b)
    table = store.latest_table()
    assert list(table["patient_id"]) == ["A", "B"]
    row = table.set_index("patient_id").loc["A"]
    assert row["revision"] == 2 and row["manual_kpa"] == pytest.approx(2.5) and row["dataset"] == "demo cohort"
    assert table.set_index("patient_id").loc["B", "stage"] == "F4"
    assert len(store.latest_table(dataset="demo cohort")) == 1


def test_new_store_is_at_the_current_schema_and_reopening_is_idempotent(store_url: str) -> None:
    Store(store_url).dispose()
    store = Store(store_url)
    assert store.version() == SCHEMA_VERSION
    with store.engine.connect() as conn:
        versions = [r[0] for r in conn.execute(sa.select(schema_version.c.version).order_by(schema_version.c.version))]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_version_1_store_is_migrated_forward_keeping_its_data(store_url: str) -> None:
    old = Store(store_url, schema=1)  # a store as schema version 1 wrote it: no audit table yet
    assert old.version() == 1 and not sa.inspect(old.engine).has_table("audit")
    with old.engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            conn.execute(studies.insert().values(study_uid="1.2.3", series_uid="1.2.3.4", patient_id="OLD",
                                                 created_utc="2025-01-01T00:00:00+00:00"))
    old.dispose()
    upgraded = Store(store_url)
    assert upgraded.version() == SCHEMA_VERSION
    assert sa.inspect(upgraded.engine).has_table("audit")
    assert upgraded.counts()["studies"] == 1
    assert upgraded.save(make_result([3.0, 3.1, 3.2])) == 1


def test_newer_schema_than_the_software_is_refused_with_the_remedy(store_url: str) -> None:
    store = Store(store_url)
    with store.engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1, applied_utc="future"))
    store.dispose()
    with pytest.raises(StoreError, match="newer than this software"):
        Store(store_url)


def test_concurrent_sessions_get_distinct_revisions(store_url: str) -> None:
    url = store_url
    Store(url).dispose()
    result = make_result([3.0, 3.2, 3.4])
    numbers: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        store = Store(url)  # one engine per "browser session"
        try:
            for _ in range(5):
                numbers.append(store.save(result, kind="review", reviewer=threading.current_thread().name))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            store.dispose()

    threads = [threading.Thread(target=worker, name=f"reader{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(numbers) == list(range(1, 21))
    store = Store(url)
    assert store.counts()["revisions"] == 20 and store.counts()["studies"] == 1
    assert store.counts()["slices"] == 20 * len(result.slices)


def test_unreachable_database_is_a_store_error_naming_it() -> None:
    with pytest.raises(StoreError, match="cannot open the results store"):
        Store("sqlite:////proc/definitely/not/here.sqlite")


def test_unreachable_postgresql_is_a_store_error_without_the_password() -> None:
    url = f"postgresql+psycopg://reader:s3cret-pw@127.0.0.1:{free_port()}/mre"  # nobody listens there
    with pytest.raises(StoreError, match="cannot open the results store") as caught:
        Store(url)
    assert "s3cret-pw" not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_password_is_hidden_in_the_display_url() -> None:
    store = Store.__new__(Store)
    store.url = "postgresql://reader:secret@db.example/mre"
    assert "secret" not in store.display_url


def test_concurrent_first_opens_of_a_new_store_all_succeed(store_url: str) -> None:
    """Listener, worker and app may open a brand-new database at the same moment: one creates the schema."""
    barrier = threading.Barrier(4)
    versions: list[int] = []
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            barrier.wait(timeout=60)
            store = Store(store_url)
            versions.append(store.version())
            store.dispose()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert versions == [SCHEMA_VERSION] * 4
    store = Store(store_url)
    with store.engine.connect() as conn:
        applied = conn.execute(sa.select(schema_version.c.version).order_by(schema_version.c.version)).scalars().all()
    assert applied == list(range(1, SCHEMA_VERSION + 1))  # each migration ran once


def test_a_save_waiting_on_an_uncommitted_revision_takes_the_next_number(store_url: str) -> None:
    """The second writer waits for the first (the study row is locked) instead of colliding on its number."""
    result = make_result([3.0, 3.2, 3.4])
    holder, waiter = Store(store_url), Store(store_url)
    assert holder.save(result) == 1
    with holder.writer() as conn:
        assert holder._save(conn, result, kind="review", reviewer="A", comment="", manual_kpa=None, edits={},
                            dataset="") == 2
        thread, outcome = _in_thread(lambda: waiter.save(result, kind="review", reviewer="B", retries=1))
        _wait_until_blocked(store_url, thread)
    thread.join(60)
    assert outcome == {"number": 3}  # retries=1: no second attempt hides a collision
    assert list(waiter.history(result.study_uid)["reviewer"]) == ["", "A", "B"]


def test_a_first_save_racing_an_uncommitted_first_save_reuses_its_study_row(store_url: str) -> None:
    """Two first saves of one study: the later one's insert hits uq_study_series and reads the row instead."""
    result = make_result([3.0, 3.2, 3.4])
    holder, waiter = Store(store_url), Store(store_url)
    with holder.writer() as conn:
        assert holder._save(conn, result, kind="auto", reviewer="", comment="", manual_kpa=None, edits={},
                            dataset="") == 1
        thread, outcome = _in_thread(lambda: waiter.save(result, kind="review", reviewer="B", retries=1))
        _wait_until_blocked(store_url, thread)
    thread.join(60)
    assert outcome == {"number": 2}
    assert waiter.counts()["studies"] == 1 and waiter.counts()["revisions"] == 2


def test_writer_processes_saving_the_same_study_get_revisions_1_to_n(store_url: str) -> None:
    """Three real processes (as app, worker and listener are) save one study 30 times each, all at once."""
    n_procs, n_saves = 3, 30
    Store(store_url).dispose()  # the schema exists; the study row does not: the first saves race for it too
    result = make_result([3.0, 3.2, 3.4])
    ctx = multiprocessing.get_context("spawn")
    barrier, outcomes = ctx.Barrier(n_procs), ctx.Queue()
    procs = [ctx.Process(target=save_many, args=(store_url, result, n_saves, f"writer{i}", barrier, outcomes))
             for i in range(n_procs)]
    for p in procs:
        p.start()
    try:
        reports = [outcomes.get(timeout=600) for _ in procs]  # before join: a full queue blocks its writer
    finally:
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
    errors = [f"{name}:\n{error}" for name, _, error in reports if error]
    assert not errors, "\n".join(errors)
    total = n_procs * n_saves
    assert sorted(number for _, numbers, _ in reports for number in numbers) == list(range(1, total + 1))
    assert all(len(numbers) == n_saves and numbers == sorted(numbers) for _, numbers, _ in reports)
    store = Store(store_url)
    assert list(store.history(result.study_uid)["revision"]) == list(range(1, total + 1))  # no gap, no duplicate
    assert store.counts() == {"studies": 1, "revisions": total, "slices": total * len(result.slices), "audit": total}
    with store.engine.connect() as conn:
        audited = conn.execute(sa.select(audit.c.revision_id, audit.c.user, audit.c.detail)).all()
        ids = dict(conn.execute(sa.select(revisions.c.id, revisions.c.revision)).all())
    assert sorted(r.revision_id for r in audited) == sorted(ids)  # one audit row per saved revision
    assert all(r.detail == f"revision {ids[r.revision_id]}" for r in audited)
    assert sorted(r.user for r in audited) == sorted(f"writer{i}" for i in range(n_procs) for _ in range(n_saves))


def test_save_retries_a_unique_conflict_with_growing_backoff_then_gives_up(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry is the last resort behind the lock: it still backs off and, when exhausted, lets the error out."""
    store, result = Store(_url(tmp_path)), make_result([3.0, 3.2, 3.4])
    real_save, calls, pauses = Store._save, [], []

    def conflicting_twice(self: Store, *args: Any) -> int:
        calls.append(1)
        if len(calls) <= 2:
            raise IntegrityError("INSERT INTO revisions", {}, Exception("uq_study_revision"))
        return real_save(self, *args)

    monkeypatch.setattr(Store, "_save", conflicting_twice)
    monkeypatch.setattr("mre_core.store.results.time.sleep", pauses.append)
    assert store.save(result) == 1
    assert len(calls) == 3 and len(pauses) == 2 and 0 < pauses[0] < pauses[1]
    pauses.clear()
    monkeypatch.setattr(Store, "_save", _always_conflicting)
    with pytest.raises(IntegrityError):
        store.save(result, retries=4)
    assert len(pauses) == 3
    assert store.counts()["revisions"] == 1  # the failed attempts left nothing behind


def _always_conflicting(self: Store, *args: Any) -> int:
    raise IntegrityError("INSERT INTO revisions", {}, Exception("uq_study_revision"))


def _terminate_other_sessions(url: str) -> list[int]:
    """End every other session on the database of ``url`` (as a server restart does); wait until they are gone.

    Each look at pg_stat_activity runs in a new transaction: within one, PostgreSQL shows a frozen snapshot.
    """
    engine = _side_engine(url)
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    try:
        with engine.connect() as conn:
            pids = conn.execute(sa.text(f"SELECT pid {others}")).scalars().all()
            conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) {others}"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if not conn.execute(sa.text(f"SELECT count(*) {others}")).scalar():
                    return list(pids)
            time.sleep(0.05)
        raise AssertionError("the terminated sessions did not end")
    finally:
        engine.dispose()


def test_postgresql_connection_dropped_by_the_server_is_replaced_on_next_use(pg_url: str) -> None:
    """A pooled connection the server ended (restart, idle timeout) is noticed by the pre-ping and replaced."""
    store, result = Store(pg_url), make_result([3.0, 3.2, 3.4])
    assert store.save(result) == 1
    assert _terminate_other_sessions(pg_url)  # the store's idle pooled connection was there and is gone now
    assert store.save(result) == 2
    assert list(store.history(result.study_uid)["revision"]) == [1, 2]


def test_signing_off_the_same_content_twice_is_refused_and_a_change_is_not(store_url: str) -> None:
    from mre_core.store.results import AlreadySignedOff

    store = Store(store_url)
    r = make_result([3.0, 3.2, 3.4])
    assert store.save(r, kind="signed_off", reviewer="Dr A", comment="ok", manual_kpa=3.1) == 1
    with pytest.raises(AlreadySignedOff, match="already signed off as revision 1 by Dr A"):
        store.save(r, kind="signed_off", reviewer="Dr A", comment="ok", manual_kpa=3.1)
    assert store.history(r.study_uid)["revision"].tolist() == [1]
    assert store.save(r, kind="signed_off", reviewer="Dr A", comment="ok, re-read", manual_kpa=3.1) == 2
    excluded = dataclasses.replace(r, slices=(dataclasses.replace(r.slices[0], excluded=True), *r.slices[1:]))
    assert store.save(excluded, kind="signed_off", reviewer="Dr A", comment="ok, re-read", manual_kpa=3.1) == 3
    assert store.save(excluded, kind="review", reviewer="Dr A", comment="ok, re-read", manual_kpa=3.1) == 4
