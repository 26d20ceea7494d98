import json

import pytest

from mre_core.bench import study as bench


@pytest.mark.slow
def test_benchmark_times_every_stage_and_writes_a_json_line(tmp_path, all_liver_weights, monkeypatch):
    monkeypatch.setenv("MRE_WEIGHTS_DIR", str(all_liver_weights))
    monkeypatch.setenv("MRE_MODEL_NAME", "all_liver")
    out = tmp_path / "bench.jsonl"
    assert bench.main(["--studies", "1", "--repeats", "2", "--device", "cpu", "--json", str(out)]) == 0
    record = json.loads(out.read_text().splitlines()[-1])
    assert set(record["median_s"]) == set(bench.STAGES)
    assert all(v >= 0 for v in record["median_s"].values())
    assert record["studies_timed"] == 2 and record["slices_per_study"] >= 4
    assert record["peak_rss_mb"] > 50 and record["slices_per_s"] > 0
    assert record["study_latency_median_s"] >= record["median_s"]["model"]


def test_benchmark_without_weights_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MRE_WEIGHTS_DIR", str(tmp_path))
    assert bench.main(["--studies", "1", "--repeats", "1", "--json", str(tmp_path / "b.jsonl")]) == 1
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_listener_benchmark_measures_last_instance_to_result(tmp_path, all_liver_weights, monkeypatch):
    from mre_core.bench import listener as bench_listener

    monkeypatch.setenv("MRE_WEIGHTS_DIR", str(all_liver_weights))
    monkeypatch.setenv("MRE_MODEL_NAME", "all_liver")
    out = tmp_path / "bench.jsonl"
    assert bench_listener.main(["--studies", "1", "--quiet-s", "0.5", "--device", "cpu", "--json", str(out)]) == 0
    record = json.loads(out.read_text().splitlines()[-1])
    assert record["benchmark"] == "listener" and record["files_per_study"] >= 5
    # the quiet period is a lower bound: a study is never analysed before it has been quiet that long
    assert record["last_to_done_median_s"] >= 0.5
    assert record["processing_median_s"] == pytest.approx(record["last_to_done_median_s"] - 0.5)
