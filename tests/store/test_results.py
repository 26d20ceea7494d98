"""Results store: revisions never overwrite, ROIs round-trip, schema migrations, concurrent writers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from tests.result_factory import make_result

from mre_core.store.results import Store, StoreError, pack_mask, unpack_mask
from mre_core.store.schema import SCHEMA_VERSION, schema_version, studies


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite'}"


def test_pack_mask_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((204, 256)) > 0.7
    assert np.array_equal(unpack_mask(pack_mask(mask), 204, 256), mask)


def test_saves_are_new_revisions_and_keep_uids_model_and_settings(tmp_path: Path) -> None:
    store = Store(_url(tmp_path))
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


def test_latest_table_has_one_row_per_study_with_the_latest_values(tmp_path: Path) -> None:
    store = Store(_url(tmp_path))
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


def test_new_file_is_at_the_current_schema_and_reopening_is_idempotent(tmp_path: Path) -> None:
    Store(_url(tmp_path)).dispose()
    store = Store(_url(tmp_path))
    assert store.version() == SCHEMA_VERSION
    with store.engine.connect() as conn:
        versions = [r[0] for r in conn.execute(sa.select(schema_version.c.version).order_by(schema_version.c.version))]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_version_1_file_is_migrated_forward_keeping_its_data(tmp_path: Path) -> None:
    old = Store(_url(tmp_path), schema=1)  # a file as schema version 1 wrote it: no audit table yet
    assert old.version() == 1 and not sa.inspect(old.engine).has_table("audit")
    with old.engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            conn.execute(studies.insert().values(study_uid="1.2.3", series_uid="1.2.3.4", patient_id="OLD",
                                                 created_utc="2025-01-01T00:00:00+00:00"))
    old.dispose()
    upgraded = Store(_url(tmp_path))
    assert upgraded.version() == SCHEMA_VERSION
    assert sa.inspect(upgraded.engine).has_table("audit")
    assert upgraded.counts()["studies"] == 1
    assert upgraded.save(make_result([3.0, 3.1, 3.2])) == 1


def test_newer_schema_than_the_software_is_refused_with_the_remedy(tmp_path: Path) -> None:
    store = Store(_url(tmp_path))
    with store.engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1, applied_utc="future"))
    store.dispose()
    with pytest.raises(StoreError, match="newer than this software"):
        Store(_url(tmp_path))


def test_concurrent_sessions_get_distinct_revisions(tmp_path: Path) -> None:
    url = _url(tmp_path)
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


def test_password_is_hidden_in_the_display_url() -> None:
    store = Store.__new__(Store)
    store.url = "postgresql://reader:secret@db.example/mre"
    assert "secret" not in store.display_url
