"""The Review page says when an exam is unlike the model's training data, and which number is outside its range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from tests.app_support import TEST_MODEL, study_files, write_everything_liver_weights

from mre_core.analysis.input_check import describe
from mre_core.app.demo import demo_study
from mre_core.config import Settings
from mre_core.io.reader import read_inputs

APP = str(Path(__file__).resolve().parent.parent.parent / "app.py")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_study(tmp_path_factory.mktemp("phantom_ood"), seed=6)


@pytest.fixture(scope="module")
def narrow_weights(tmp_path_factory: pytest.TempPathFactory, phantom: Path) -> Path:
    """The everything-liver test model with a card whose field-of-view range excludes the phantom's."""
    folder = tmp_path_factory.mktemp("weights_ood")
    write_everything_liver_weights(folder)
    fov = describe(read_inputs([phantom], Settings(device="cpu")).studies[0])["field_of_view_mm"]
    path = folder / f"{TEST_MODEL}.json"
    doc = json.loads(path.read_text())
    doc["card"]["input_ranges"] = {"source": "test", "n_studies": 1,
                                   "ranges": {"field_of_view_mm": [fov + 20.0, fov + 60.0]}}
    path.write_text(json.dumps(doc))
    return folder


def test_the_review_page_names_the_input_outside_the_training_range(monkeypatch, tmp_path, phantom,
                                                                      narrow_weights) -> None:
    for k, v in {"MRE_WEIGHTS_DIR": str(narrow_weights), "MRE_MODEL_NAME": TEST_MODEL, "MRE_DEVICE": "cpu",
                 "MRE_DB_URL": f"sqlite:///{tmp_path / 'r.sqlite'}", "MRE_INBOX_DIR": str(tmp_path / "inbox")}.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.file_uploader(key="rv_files").set_value(study_files(phantom))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (qc,) = [w.value for w in at.warning if "Quality control" in w.value]
    assert "input_unlike_training" in qc and "Input unlike the model's training data" in qc
    assert "field of view" in qc and "of the training data" in qc
