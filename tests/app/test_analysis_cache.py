"""The server-wide analysis cache: the same files, settings and model give the cached batch; anything else misses."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from mre_core.app.analysis_cache import AnalysisCache, batch_bytes, cache_key, sources_digest
from mre_core.app.demo import demo_study
from mre_core.app.review_state import analyze_sources_for_review
from mre_core.config import Settings
from mre_core.model.network import load_model


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, all_liver_weights):
    root = tmp_path_factory.mktemp("cache")
    folder = demo_study(root, seed=3)
    settings = Settings(weights_dir=all_liver_weights, model_name="all_liver", device="cpu")
    model = load_model(settings.weights_dir, settings.model_name, "cpu")
    return folder, settings, model, analyze_sources_for_review([folder], settings, model)


def test_the_same_files_settings_and_model_hit_and_say_so(analysed) -> None:
    folder, settings, model, batch = analysed
    cache = AnalysisCache(max_entries=2)
    key = cache_key([folder], settings, model)
    assert cache.get(key) is None
    cache.put(key, batch)
    hit = cache.get(cache_key([folder], settings, model))
    assert hit is not None and hit.from_cache and not batch.from_cache
    assert hit.studies[0].result.stiffness_kpa == batch.studies[0].result.stiffness_kpa
    assert hit.studies is not batch.studies  # a session's list, not the cache's


def test_a_changed_file_other_settings_or_another_model_miss(analysed, tmp_path, all_liver_weights) -> None:
    folder, settings, model, batch = analysed
    key = cache_key([folder], settings, model)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert sources_digest([copy]) == sources_digest([folder])  # the content, not the path
    victim = sorted(p for p in copy.rglob("*") if p.is_file())[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert cache_key([copy], settings, model) != key
    assert cache_key([folder], dataclasses.replace(settings, profile="ge"), model) != key
    other = load_model(all_liver_weights, "all_liver", "cpu")  # the same weights, another loaded network
    assert cache_key([folder], settings, other) != key
    assert sources_digest([("a.dcm", b"x")]) != sources_digest([("b.dcm", b"x")])
    assert sources_digest([tmp_path / "missing"]) is None and cache_key([object()], settings, model) is None


def test_cached_arrays_are_read_only_so_no_session_can_change_another_s_result(analysed) -> None:
    folder, settings, model, _ = analysed
    batch = analyze_sources_for_review([folder], settings, model)
    cache = AnalysisCache()
    cache.put(cache_key([folder], settings, model), batch)
    rs = cache.get(cache_key([folder], settings, model)).studies[0]
    with pytest.raises(ValueError):
        rs.probabilities[0][0, 0] = 0.0
    with pytest.raises(ValueError):
        rs.result.slices[0].roi[0, 0] = True
    with pytest.raises(ValueError):
        rs.result.study.series.slices[0].kpa[0, 0] = np.nan


def test_the_oldest_entry_goes_and_failures_are_not_kept(analysed) -> None:
    from mre_core.io.elastogram import SkippedFile

    _, _, _, batch = analysed
    cache = AnalysisCache(max_entries=2)
    for k in ("a", "b", "c"):
        cache.put((k,), batch)
    assert len(cache) == 2 and cache.get(("a",)) is None and cache.get(("c",)) is not None
    failed = dataclasses.replace(batch, skipped=[SkippedFile("x.dcm", "analysis failed: RuntimeError: boom")])
    cache.put(("f",), failed)
    assert cache.get(("f",)) is None
    cache.put(("none",), dataclasses.replace(batch, studies=[]))
    assert cache.get(("none",)) is None


def test_the_memory_budget_holds_and_a_batch_larger_than_it_is_not_kept(analysed) -> None:
    _, _, _, batch = analysed
    size = batch_bytes(batch)
    assert size > 0
    cache = AnalysisCache(max_entries=10, max_bytes=int(2.5 * size))
    for k in ("a", "b", "c"):
        cache.put((k,), batch)
    assert len(cache) == 2 and cache.get(("a",)) is None  # the oldest went to stay within the bytes budget
    small = AnalysisCache(max_bytes=size - 1)
    small.put(("big",), batch)
    assert small.get(("big",)) is None and len(small) == 0
