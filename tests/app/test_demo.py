"""The app's demo cohort: every patient analysed and saved with its manual value; a broken one is reported."""

from __future__ import annotations

import pytest

from mre_core.app.demo import analyze_cohort, demo_cohort, manual_values
from mre_core.config import Settings
from mre_core.model.network import load_model
from mre_core.store.results import Store


@pytest.mark.slow
def test_demo_cohort_is_analysed_and_saved_and_a_broken_patient_is_named(tmp_path, all_liver_weights):
    cohort = demo_cohort(tmp_path, n_patients=3, seed=4)
    broken = cohort / "dicom" / "P9999"
    broken.mkdir()
    (broken / "IM0001").write_text("not dicom")
    store = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    model = load_model(all_liver_weights, "all_liver", "cpu")
    seen = []
    run = analyze_cohort(cohort, model, Settings(device="cpu"), store, progress=lambda i, n, p: seen.append((i, n)))
    assert len(run.results) == 3 and run.saved == 3 and seen[-1] == (4, 4)
    assert [f.file for f in run.failed] == ["P9999"] and "not a DICOM file" in run.failed[0].reason
    assert set(manual_values(cohort)) == {r.patient_id for r in run.results}
    assert store.counts()["revisions"] == 3
