"""Training from the store, the parts that need no store: the split by patient, the targets, the summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from mre_core.analysis.preprocess import InputSpec
from mre_core.config import Settings
from mre_core.model.site import (SiteDataError, SiteTrainParams, arrays_for, comparison_table, read_labelled,
                                 split_by_patient, summarise)


@dataclass
class Labelled:
    study_uid: str
    patient_id: str
    series_uid: str = ""
    rois: dict | None = None
    reader_kpa: float | None = None


def _studies(n_patients: int, per_patient: int = 1) -> list[Labelled]:
    return [Labelled(f"1.2.{p}.{k}", f"P{p:02d}") for p in range(n_patients) for k in range(per_patient)]


def test_the_split_is_by_patient_deterministic_and_covers_every_study_once() -> None:
    studies = _studies(12, per_patient=2)
    a = split_by_patient(studies, 0.2, 0.25, seed=3)
    b = split_by_patient(studies, 0.2, 0.25, seed=3)
    assert a == b
    parts = [set(a.train), set(a.val), set(a.test)]
    assert sum(len(p) for p in parts) == 24 and set().union(*parts) == {s.study_uid for s in studies}
    owners = [{a.patients[u] for u in p} for p in parts]
    assert not (owners[0] & owners[1]) and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
    assert len(owners[2]) == 3 and len(owners[1]) == 2 and len(owners[0]) == 7
    assert split_by_patient(studies, 0.2, 0.25, seed=4) != a


def test_studies_held_out_by_the_compared_model_are_never_trained_on() -> None:
    studies = _studies(10, per_patient=2)
    forced = ["1.2.4.0", "1.2.7.1"]  # one study each of patients 4 and 7
    for seed in range(5):
        split = split_by_patient(studies, 0.2, 0.2, seed=seed, forced_test=forced)
        assert {"1.2.4.0", "1.2.4.1", "1.2.7.0", "1.2.7.1"} <= set(split.test)  # the whole patient
        assert not ({"1.2.4.0", "1.2.4.1", "1.2.7.0", "1.2.7.1"} & (set(split.train) | set(split.val)))
        assert split.forced_test == tuple(sorted(forced))


def test_too_few_patients_is_a_clear_error() -> None:
    with pytest.raises(SiteDataError, match="at least 3"):
        split_by_patient(_studies(2, per_patient=4), 0.2, 0.25, seed=0)
    with pytest.raises(SiteDataError, match="too few left to train on"):
        split_by_patient(_studies(3), 0.2, 0.25, seed=0, forced_test=["1.2.0.0", "1.2.1.0"])


def test_targets_are_the_reader_roi_inside_the_confidence_region(phantom_studies) -> None:
    from mre_core.io.reader import read_inputs

    settings = Settings(device="cpu")
    study = read_inputs([phantom_studies["siemens_hatch"]], settings).studies[0]
    e = study.series.slices[0]
    roi = np.zeros(e.shape, bool)
    roi[: e.shape[0] // 2] = True  # the reader's ROI covers the upper half, inside and outside the confidence
    item = read_labelled(Labelled(study.study_uid, "P1", study.series.series_uid, {e.sop_uid: roi}),
                         [p for p in phantom_studies["siemens_hatch"].rglob("*") if p.is_file()], settings)
    assert len(item.elastograms) == 1 and item.elastograms[0].sop_uid == e.sop_uid
    np.testing.assert_array_equal(item.reader_rois[0], roi & e.confidence)
    spec = InputSpec(size=64)
    data = arrays_for([item], spec)
    assert data.inputs.shape == (1, 3, 64, 64) and data.targets.shape == (1, 1, 64, 64)
    assert data.patient_ids == ("P1",)
    assert 0 < data.targets.mean() < (roi & e.confidence).mean() + 0.05


def test_a_study_without_kept_files_or_labelled_slices_says_why(phantom_studies) -> None:
    settings = Settings(device="cpu")
    with pytest.raises(ValueError, match="no source files"):
        read_labelled(Labelled("1.2", "P1", "1.3", {}), [], settings)
    files = [p for p in phantom_studies["siemens_hatch"].rglob("*") if p.is_file()]
    with pytest.raises(ValueError, match="not found|none of its labelled images"):
        read_labelled(Labelled("1.2", "P1", "9.9.9", {"9.9.9.1": np.zeros((4, 4), bool)}), files, settings)


def test_the_summary_has_the_gate_fields_with_cis_and_f2_counts() -> None:
    settings = Settings(device="cpu")
    slices = pd.DataFrame({"patient_id": ["A", "A", "B", "C", "D"], "dice": [0.8, 0.6, 0.9, 0.7, 0.5], "dice_product": [0.7, 0.6, 0.0, 0.7, 0.5],
                           "iou": [0.6, 0.4, 0.8, 0.5, 0.3], "reader_stage": ["F0", "F0", "F2", "F4", "F1"],
                           "outside_reader_fraction": [0.05, 0.2, np.nan, 0.0, 0.3],
                           "empty": [False, False, True, False, False]})
    studies = pd.DataFrame({"patient_id": list("ABCD"), "auto_kpa": [2.0, 3.1, 6.0, 2.5],
                            "reader_kpa": [2.1, 3.0, 5.5, 2.9], "reader_stage": ["F0", "F2", "F4", "F1"]})
    s = summarise(slices, studies, settings, "m@1")
    assert s["dice"]["value"] == pytest.approx(0.7) and s["dice"]["ci_low"] <= 0.7 <= s["dice"]["ci_high"]
    assert s["f2_counts"] == {"tp": 2, "fp": 0, "tn": 1, "fn": 1}  # reader 2.9 kPa is F2, auto 2.5 is not
    assert s["f2_specificity"]["value"] == 1.0 and s["f2_sensitivity"]["value"] == pytest.approx(2 / 3)
    assert s["roi_safety"]["empty_slices"] == 1 and s["roi_safety"]["slices_over_10pct_outside_reader"] == 2
    assert set(s["iou_by_stage"]) == {"F0", "F1", "F2", "F4"}
    table = comparison_table({"candidate": s, "baseline": s})
    assert list(table["metric"])[:2] == ["dice", "iou"]
    assert table.loc[table.metric == "dice", "candidate_value"].item() == pytest.approx(0.7)


def test_too_few_study_values_leave_agreement_out_and_say_so() -> None:
    s = summarise(pd.DataFrame({"patient_id": ["A"], "dice": [0.5], "iou": [0.3], "reader_stage": ["F1"],
                                "outside_reader_fraction": [0.1], "empty": [False]}),
                  pd.DataFrame({"patient_id": ["A"], "auto_kpa": [2.0], "reader_kpa": [2.2],
                                "reader_stage": ["F1"]}), Settings(device="cpu"), "m@1")
    assert "f2_specificity" not in s and "need 2" in s["note"]
    assert math.isnan(float(s["dice"]["ci_low"] or math.nan))


def test_params_round_trip_through_json() -> None:
    p = SiteTrainParams(manufacturers=("GE",), readers=("Dr A",), epochs=3, init="scratch")
    assert SiteTrainParams.from_json(p.to_json()) == p


def test_the_intended_use_names_a_site_models_training_and_keeps_the_phantom_sentence_otherwise() -> None:
    from mre_core.outputs.wording import INTENDED_USE, SYNTHETIC_TRAINING, intended_use, training_statement

    assert intended_use(None) == INTENDED_USE and training_statement({}) == SYNTHETIC_TRAINING
    card = {"origin": "site", "training_data": "12 studies with reader ROIs from this site's store."}
    text = intended_use(card)
    assert "not a certified medical device" in text and "12 studies with reader ROIs" in text
    assert "synthetic phantoms, not on patient data" not in text
    assert training_statement(card).startswith("Model fine-tuned at this site")
