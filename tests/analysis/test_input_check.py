"""Input unlike the training data: descriptors, the training ranges in the weights card, the QC flag and its
notes on the page's result, after a reader's edits, in the SR and in the PDF text."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from mre_core.analysis.input_check import (DESCRIPTORS, InputRange, describe, ranges_from_card, ranges_to_json,
                                           training_ranges, unlike_training)
from mre_core.analysis.pipeline import analyze_study
from mre_core.analysis.stiffness import QcFlag
from mre_core.config import DEFAULT_MODEL_NAME, DEFAULT_WEIGHTS_DIR, Settings
from mre_core.model import ranges as ranges_cli
from mre_core.model.dataset import cohort_records, read_patient
from mre_core.model.network import load_model, sha256_file


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from mre_core.phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("ranges_cohort")
    generate_cohort(out, 6, seed=11, progress=False, workers=1)
    return out


@pytest.fixture(scope="module")
def study(cohort):
    return read_patient(cohort_records(cohort)[0], Settings(device="cpu"))


@pytest.fixture(scope="module")
def shipped():
    return load_model(DEFAULT_WEIGHTS_DIR, DEFAULT_MODEL_NAME, "cpu")


def test_descriptors_are_the_exams_own_numbers(study) -> None:
    d = describe(study)
    assert set(d) == set(DESCRIPTORS)
    slices = study.series.slices
    e = slices[0]
    assert d["field_of_view_mm"] == pytest.approx(max(max(s.shape[0] * s.pixel_spacing_mm[0],
                                                          s.shape[1] * s.pixel_spacing_mm[1]) for s in slices))
    assert d["pixel_spacing_mm"] == pytest.approx(np.mean([sum(s.pixel_spacing_mm) / 2 for s in slices]))
    known = sum(int(np.isfinite(s.kpa).sum()) for s in slices)
    conf = np.concatenate([s.kpa[s.confidence & np.isfinite(s.kpa)] for s in slices])
    assert d["stiffness_coverage"] == pytest.approx(known / sum(s.kpa.size for s in slices))
    assert d["confidence_coverage"] == pytest.approx(conf.size / known)
    assert d["median_kpa"] == pytest.approx(float(np.median(conf)))
    assert d["p95_kpa"] == pytest.approx(float(np.percentile(conf, 95)))
    assert 0.5 < d["median_kpa"] < 12 and e.pixel_spacing_mm[0] > 0
    empty = replace(study, series=replace(study.series, slices=()))
    assert all(np.isnan(v) for v in describe(empty).values())


def test_ranges_are_min_and_max_and_a_value_outside_is_named() -> None:
    rows = [{"field_of_view_mm": 300.0, "median_kpa": 2.0}, {"field_of_view_mm": 440.0, "median_kpa": float("nan")},
            {"field_of_view_mm": 380.0, "median_kpa": 6.5}]
    r = training_ranges(rows)
    assert r["field_of_view_mm"] == InputRange(300.0, 440.0) and r["median_kpa"] == InputRange(2.0, 6.5)
    assert "p95_kpa" not in r  # no value: no range, nothing checked
    assert unlike_training({"field_of_view_mm": 440.0, "median_kpa": 2.0}, r) == ()  # the bounds are inside
    notes = unlike_training({"field_of_view_mm": 480.0, "median_kpa": 9.1, "p95_kpa": 50.0}, r)
    assert len(notes) == 2 and notes[0].startswith("field of view 480.00 mm") and "300.00–440.00 mm" in notes[0]
    assert notes[1].startswith("median stiffness in the confidence region 9.10 kPa")
    assert unlike_training({"field_of_view_mm": float("nan")}, r) == ()
    back = ranges_from_card({"input_ranges": json.loads(json.dumps(ranges_to_json(r, "test", 3)))})
    assert back == r
    assert ranges_from_card({}) == {}


def _with_ranges(model, ranges: dict[str, InputRange]):
    card = {**model.config.card, "input_ranges": ranges_to_json(ranges, "test", 1)}
    return replace(model, config=replace(model.config, card=card))


def test_an_exam_outside_the_training_ranges_is_flagged_with_the_reason(study, shipped) -> None:
    settings = Settings(device="cpu")
    d = describe(study)
    inside = {k: InputRange(v - 1.0, v + 1.0) for k, v in d.items()}
    ok = analyze_study(study, _with_ranges(shipped, inside), settings)
    assert QcFlag.INPUT_UNLIKE_TRAINING not in ok.qc_flags and ok.input_notes == ()
    narrow = {**inside, "field_of_view_mm": InputRange(d["field_of_view_mm"] + 10, d["field_of_view_mm"] + 50)}
    flagged = analyze_study(study, _with_ranges(shipped, narrow), settings)
    assert QcFlag.INPUT_UNLIKE_TRAINING in flagged.qc_flags
    (note,) = flagged.input_notes
    assert note.startswith(f"field of view {d['field_of_view_mm']:.2f} mm")
    from mre_core.outputs.tables import studies_table

    row = studies_table([flagged, ok]).iloc
    assert "input_unlike_training" in row[0]["qc_flags"] and row[0]["input_notes"] == note and row[1]["input_notes"] == ""
    # the flag is a warning, not a verdict: the measurement is the same
    assert flagged.stiffness_kpa == ok.stiffness_kpa and [s.roi.sum() for s in flagged.slices] == \
        [s.roi.sum() for s in ok.slices]
    # a model whose card records no ranges checks nothing
    bare = replace(shipped, config=replace(shipped.config, card={k: v for k, v in shipped.config.card.items()
                                                                  if k != "input_ranges"}))
    assert QcFlag.INPUT_UNLIKE_TRAINING not in analyze_study(study, bare, settings).qc_flags


def test_the_flag_and_its_notes_survive_the_readers_edits_and_reach_the_sr_and_pdf(study, shipped) -> None:
    from mre_core.app.review_state import ReviewEdits, analyze_for_review, apply_edits
    from mre_core.outputs import pdf, sr

    d = describe(study)
    narrow = {"median_kpa": InputRange(d["median_kpa"] + 1, d["median_kpa"] + 2)}
    settings = Settings(device="cpu")
    rs = analyze_for_review(study, _with_ranges(shipped, narrow), settings)
    assert QcFlag.INPUT_UNLIKE_TRAINING in rs.result.qc_flags
    first = study.series.slices[0].sop_uid
    edited = apply_edits(rs, ReviewEdits().with_excluded(first).with_grow(study.series.slices[-1].sop_uid, 2))
    assert edited.slices[0].excluded
    assert QcFlag.INPUT_UNLIKE_TRAINING in edited.qc_flags and edited.input_notes == rs.result.input_notes
    texts = [t.TextValue for t in sr._qc_texts(edited.qc_flags, edited.input_notes)]
    (text,) = [t for t in texts if t.startswith("input_unlike_training:")]
    assert "median stiffness in the confidence region" in text
    blocks = pdf._lower_blocks(edited, 500.0, "reader", "", None, "draft")
    assert any("Input notes: median stiffness" in " ".join(b.lines) for b in blocks)


def test_the_shipped_weights_record_their_training_ranges(shipped) -> None:
    entry = shipped.config.card["input_ranges"]
    assert entry["n_studies"] >= 200 and "physics240" in entry["source"] and "legacy90" in entry["source"]
    r = ranges_from_card(shipped.config.card)
    assert set(r) == set(DESCRIPTORS) and all(v.low <= v.high for v in r.values())


def test_cli_writes_the_ranges_and_leaves_the_weights_alone(cohort, tmp_path, shipped, capsys) -> None:
    import shutil

    for suffix in (".json", ".safetensors"):
        shutil.copy(DEFAULT_WEIGHTS_DIR / f"{DEFAULT_MODEL_NAME}{suffix}", tmp_path / f"m{suffix}")
    before = sha256_file(tmp_path / "m.safetensors")
    p = argparse.ArgumentParser()
    ranges_cli.configure_parser(p)
    assert ranges_cli.run_cli(p.parse_args(["--data", str(cohort), "--split", "all", "--weights-dir",
                                            str(tmp_path), "--model", "m"])) == 0
    out = capsys.readouterr().out
    assert "input ranges from 6 studies" in out and "field_of_view_mm" in out
    loaded = load_model(tmp_path, "m", "cpu")  # the checksum still holds
    assert sha256_file(tmp_path / "m.safetensors") == before
    rows = [describe(read_patient(r, Settings(device="cpu"))) for r in cohort_records(cohort)]
    assert ranges_from_card(loaded.config.card)["median_kpa"] == InputRange(min(r["median_kpa"] for r in rows),
                                                                           max(r["median_kpa"] for r in rows))
    assert ranges_cli.run_cli(p.parse_args(["--data", str(cohort), "--weights-dir", str(tmp_path),
                                            "--model", "nope"])) == 2
    assert "nope.json not found" in capsys.readouterr().out


def test_a_patient_that_does_not_read_is_named_and_the_others_still_count(cohort, tmp_path, capsys) -> None:
    import shutil

    copy = tmp_path / "cohort"
    shutil.copytree(cohort, copy)
    broken = cohort_records(copy)[1]
    for f in broken.dicom_dir.rglob("*"):
        if f.is_file():
            f.write_bytes(b"not dicom")
    rows, problems = ranges_cli.cohort_descriptors([copy], None, Settings(device="cpu"))
    assert len(rows) == 5 and len(problems) == 1
    assert problems[0][0].endswith(f":{broken.patient_id}") and "expected one study" in problems[0][1]
    for suffix in (".json", ".safetensors"):
        shutil.copy(DEFAULT_WEIGHTS_DIR / f"{DEFAULT_MODEL_NAME}{suffix}", tmp_path / f"m{suffix}")
    entry = ranges_cli.record_input_ranges(tmp_path, "m", [copy], Settings(device="cpu"), None)
    assert entry["n_studies"] == 5 and entry["unread"][0].startswith(f"{copy}:{broken.patient_id}: ")


def test_a_result_rebuilt_from_its_saved_revision_keeps_the_flag_and_with_its_model_the_notes(study, shipped) -> None:
    """A resumed PACS job rewrites the SEG/SR from the store (workflow.steps.result_from_revision): what the
    model was given must still be said there."""
    from mre_core.store.results import Store
    from mre_core.workflow.steps import result_from_revision

    settings = Settings(device="cpu")
    d = describe(study)
    model = _with_ranges(shipped, {"p95_kpa": InputRange(d["p95_kpa"] + 1, d["p95_kpa"] + 2)})
    flagged = analyze_study(study, model, settings)
    store = Store("sqlite://")
    store.save(flagged, kind="auto")
    saved = store.load_revision(study.study_uid, study.series.series_uid, 1)
    bare = result_from_revision(study, saved, settings)
    assert QcFlag.INPUT_UNLIKE_TRAINING in bare.qc_flags and bare.stiffness_kpa == pytest.approx(flagged.stiffness_kpa)
    rebuilt = result_from_revision(study, saved, settings, model)
    assert rebuilt.input_notes == flagged.input_notes and rebuilt.input_notes[0].startswith("95th percentile of stiffness")
    other = replace(model, sha256="0" * 64)  # another model: the flag, not notes made from a card it did not use
    assert result_from_revision(study, saved, settings, other).input_notes == ()
    plain = analyze_study(study, shipped, settings)
    store.save(plain, kind="auto")
    again = store.load_revision(study.study_uid, study.series.series_uid, 2)
    assert QcFlag.INPUT_UNLIKE_TRAINING not in result_from_revision(study, again, settings, model).qc_flags


def test_a_site_models_ranges_are_its_training_studies_widened_to_its_parents(cohort) -> None:
    from types import SimpleNamespace

    from mre_core.model.site import site_input_ranges

    studies = [read_patient(r, Settings(device="cpu")) for r in cohort_records(cohort)[:3]]
    items = [SimpleNamespace(study=s) for s in studies]
    own = site_input_ranges(items)
    fov = [describe(s)["field_of_view_mm"] for s in studies]
    assert own["n_studies"] == 3 and own["ranges"]["field_of_view_mm"] == [min(fov), max(fov)]
    assert own["source"] == "3 training studies of this site's store"
    parent = {"input_ranges": ranges_to_json({"field_of_view_mm": InputRange(100.0, 200.0)}, "p", 9)}
    wide = site_input_ranges(items, parent)
    assert wide["ranges"]["field_of_view_mm"] == [100.0, max(fov)] and "fine-tuned from" in wide["source"]
    assert wide["ranges"]["median_kpa"] == own["ranges"]["median_kpa"]  # the parent has no range for it
    assert site_input_ranges([]) == {}
