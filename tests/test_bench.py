import json

import pytest

from mre_core import bench


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
