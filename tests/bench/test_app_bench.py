"""The browser benchmark of the app (``python -m mre_core.bench --app``): it runs and records every metric.

The run uses the smallest settings (one warm repeat, the Cohort page's smallest cohort, the tiny test
model) so that it is quick; no timing is asserted here (the targets are the benchmark's business).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tests.app_support import TEST_MODEL, write_everything_liver_weights

from mre_core.bench import app as bench_app
from mre_core.bench import app_probe


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.browser
@pytest.mark.slow
def test_app_benchmark_records_every_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not bench_app.CHROMIUM.is_file():
        pytest.fail(f"{bench_app.CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)")
    write_everything_liver_weights(tmp_path / "weights")
    monkeypatch.setenv("MRE_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("MRE_MODEL_NAME", TEST_MODEL)
    out = tmp_path / "app.jsonl"
    assert bench_app.main(["--repeats", "1", "--cohort-patients", str(bench_app.COHORT_MIN),
                           "--json", str(out)]) == 0
    record = json.loads(out.read_text().splitlines()[-1])
    assert record["benchmark"] == "app" and record["model"] == TEST_MODEL
    for name in bench_app.METRICS:
        values = record[name] if isinstance(record[name], list) else [record[name]]
        assert values and all(_positive(v) for v in values), (name, record[name])
    assert len(record["demo_study_warm_s"]) == 1 and len(record["page_switch_s"]) == 3
    assert len(record["new_study_warm_s"]) == 1  # a study the server had not analysed: the model ran
    assert _positive(record["cpu_count"]) and _positive(record["torch_threads"])
    # where the time went: the browser saw the run end, and the sampler saw the server's script thread
    cold = next(s for s in record["steps"] if s["name"] == "demo study cold")
    assert _positive(cold["browser"]["script_end_s"]) and cold["browser"]["messages"] > 0
    assert cold["server"]["script_s"] > 0 and cold["server"]["by_project_function"]


def test_cohort_default_and_range_are_the_pages() -> None:
    from mre_core.app.demo import DEMO_PATIENTS

    text = (Path(bench_app.REPO_ROOT) / "pages" / "cohort.py").read_text()
    assert bench_app.COHORT_DEFAULT == DEMO_PATIENTS
    assert f'number_input("Patients", {bench_app.COHORT_MIN}, {bench_app.COHORT_MAX}, DEMO_PATIENTS' in text


def test_probe_knows_streamlits_message_types() -> None:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    numbers = {f.name: f.number for f in ForwardMsg.DESCRIPTOR.fields}
    assert {name: numbers.get(name) for name in app_probe.FORWARD_MSG_TYPES.values()} == {
        name: number for number, name in app_probe.FORWARD_MSG_TYPES.items()}
    assert {numbers["hash"], numbers["metadata"]} == {1, 2}  # the probe skips these to find the type
    from streamlit.proto.Delta_pb2 import Delta
    from streamlit.proto.Element_pb2 import Element

    elements = {f.number: f.name for f in Element.DESCRIPTOR.fields}
    assert {n: elements.get(n) for n in app_probe.ELEMENT_TYPES} == app_probe.ELEMENT_TYPES
    deltas = {f.name: f.number for f in Delta.DESCRIPTOR.fields}
    assert (deltas["new_element"], deltas["add_block"]) == (app_probe.NEW_ELEMENT, app_probe.ADD_BLOCK)


def test_probe_decodes_a_delta_and_a_finished_run() -> None:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = ForwardMsg()
    msg.hash = "abc"
    msg.metadata.delta_path[:] = [0, 3]
    msg.delta.new_element.metric.label = "Liver stiffness"
    msg.delta.new_element.metric.body = "2.91 kPa"
    raw = {"t": 1000.0, "n": msg.ByteSize(), "f": 5, "v": -1, "head": list(msg.SerializeToString()[:400])}
    decoded = app_probe.decode(raw)
    assert decoded.kind == "delta" and decoded.label == "metric: Liver stiffness · 2.91 kPa" and decoded.t == 1.0
    done = ForwardMsg()
    done.script_finished = ForwardMsg.FINISHED_SUCCESSFULLY
    fields = app_probe.fields(done.SerializeToString())
    assert fields[-1][:2] == (6, 0) and fields[-1][2] == 0
    assert app_probe.decode({"t": 0, "n": 2, "f": 6, "v": 0, "head": []}).label == "finished"
