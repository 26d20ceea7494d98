"""Every page through Streamlit's AppTest: upload, result, save, cohort statistics, settings, errors.

A tiny "everything is liver" model (``tests/app_support.py``) stands in for the shipped
weights, so these tests run in seconds on a CPU and do not depend on training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.app_support import TEST_MODEL, study_files, write_everything_liver_weights
from tests.result_factory import make_result
from streamlit.testing.v1 import AppTest

from mre_core.app.demo import demo_study
from mre_core.config import Settings
from mre_core.stats.agreement import pearson
from mre_core.store.results import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    write_everything_liver_weights(folder)
    return folder


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_study(tmp_path_factory.mktemp("phantom"), seed=5)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights_dir: Path) -> str:
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    monkeypatch.setenv("MRE_WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("MRE_MODEL_NAME", TEST_MODEL)
    monkeypatch.setenv("MRE_DB_URL", url)
    monkeypatch.setenv("MRE_DEVICE", "cpu")
    monkeypatch.setenv("MRE_INBOX_DIR", str(tmp_path / "inbox"))
    return url


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metric(at: AppTest, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def _expected(phantom: Path, weights_dir: Path):
    from mre_core.workflow.batch import analyze_sources

    settings = Settings(weights_dir=weights_dir, model_name=TEST_MODEL, device="cpu")
    return analyze_sources([phantom], settings).results[0]


def _upload(at: AppTest, files: list[tuple[str, bytes, str]]) -> AppTest:
    at.file_uploader(key="rv_files").set_value(files)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_landing_page_is_review_with_the_intended_use_banner(env: str) -> None:
    at = _app()
    assert at.title[0].value == "Review study"
    assert any("Intended use" in i.value and "not a certified medical device" in i.value for i in at.info)


def test_upload_phantom_shows_stage_and_kpa_then_saves_revisions(env: str, phantom: Path, weights_dir: Path) -> None:
    expected = _expected(phantom, weights_dir)
    at = _upload(_app(), study_files(phantom))
    assert _metric(at, "Liver stiffness") == f"{expected.stiffness_kpa:.2f} kPa"
    assert _metric(at, "Fibrosis stage") == f"Stage: {expected.stage.stage.label}"
    assert _metric(at, "Significant fibrosis").startswith("Yes" if expected.stage.significant_fibrosis else "No")
    assert any("Model" in m.value and TEST_MODEL in m.value for m in at.markdown)
    rule = expected.study.series.series_rule
    assert rule and any("Series measured" in m.value and rule in m.value for m in at.markdown)
    assert [d.label for d in at.get("download_button")] == ["Study CSV", "Slices CSV", "PDF report", "DICOM SEG",
                                                             "DICOM SR", "Overlay PNG"]

    store = Store(env)
    assert store.history(expected.study_uid).empty  # nothing is saved without the user saying so
    next(b for b in at.button if b.label == "Save to results store").click()
    at.run()
    assert any("Saved as revision 1" in s.value for s in at.success)

    # edit: exclude the first slice, add a manual value and a comment, save again -> revision 2, revision 1 kept
    sop0 = expected.slices[0].sop_uid
    radio = at.radio(key=f"rv_slice|{expected.study_uid}|{expected.series_uid}")
    assert radio.value == max(range(len(expected.slices)), key=lambda i: expected.slices[i].position_mm)  # head first
    radio.set_value(0).run()
    at.checkbox(key=f"ex|{expected.study_uid}|{expected.series_uid}|{sop0}").check()
    at.number_input(key=f"man|{expected.study_uid}|{expected.series_uid}").set_value(3.1)
    at.text_area(key=f"note|{expected.study_uid}|{expected.series_uid}").input("slice 1 breathing artefact")
    at.run()
    assert _metric(at, "Slices used").startswith(f"{expected.stiffness.n_slices_used - 1} /")
    next(b for b in at.button if b.label == "Save to results store").click()
    at.run()
    assert any("Saved as revision 2" in s.value for s in at.success)
    history = store.history(expected.study_uid)
    assert list(history["kind"]) == ["auto", "review"]
    assert history["manual_kpa"].iloc[1] == pytest.approx(3.1)
    assert history["stiffness_kpa"].iloc[0] == pytest.approx(expected.stiffness_kpa, abs=1e-4)
    # the cohort keeps the model's unedited value beside the reviewed one
    latest = store.latest_table().set_index("study_uid").loc[expected.study_uid]
    assert latest["auto_kpa"] == pytest.approx(expected.stiffness_kpa, abs=1e-4)
    assert latest["stiffness_kpa"] != pytest.approx(latest["auto_kpa"], abs=1e-6)  # slice 1 left out

    # re-opening the study shows what was saved
    again = _upload(_app(), study_files(phantom))
    assert any("Saved before" in i.value and "revision 2" in i.value for i in again.info)


def test_the_same_files_in_a_new_session_come_from_the_analysis_cache_and_the_page_says_so(
        env: str, phantom: Path, weights_dir: Path) -> None:
    from mre_core.app.analysis_cache import CACHE

    CACHE.clear()
    expected = _expected(phantom, weights_dir)
    first = _upload(_app(), study_files(phantom))
    assert any("for the upload" in m.value for m in first.markdown)
    assert not any("analysis cache" in m.value for m in first.markdown)
    again = _upload(_app(), study_files(phantom))  # another browser session, the same bytes, settings and model
    assert any("analysis cache" in m.value and "analysed the same files" in m.value for m in again.markdown)
    assert _metric(again, "Liver stiffness") == f"{expected.stiffness_kpa:.2f} kPa"
    changed = study_files(phantom)
    name, data, mime = changed[0]
    other = _upload(_app(), [(name, data + b"\0", mime), *changed[1:]])  # one file's bytes differ: analysed anew
    assert _metric(other, "Liver stiffness").endswith("kPa")
    assert not any("analysis cache" in m.value for m in other.markdown)


def test_bad_file_gives_an_error_naming_it(env: str) -> None:
    at = _upload(_app(), [("notes.txt", b"this is not DICOM", "text/plain")])
    errors = " ".join(e.value for e in at.error)
    assert "No study could be analysed" in errors and "notes.txt" in errors


def test_missing_weights_is_a_message_not_a_traceback(env: str, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("MRE_WEIGHTS_DIR", str(tmp_path / "no_weights_here"))
    at = _app()
    assert any("could not be loaded" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Load demo study").click()
    at.run()
    assert not at.exception
    assert any("could not be loaded" in e.value and "MRE_WEIGHTS_DIR" in e.value for e in at.error)


def _known_cohort(url: str, results: list | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(3)
    store = Store(url)
    auto, manual, ids = [], [], []
    for i, base in enumerate(np.linspace(2.0, 7.0, 12)):
        kpa = [base, base + 0.1, base + 0.2]  # slice 1 is empty in the factory: study value = base + 0.1
        r = make_result(kpa, patient_id=f"C{i:02d}")
        m = float(base + 0.1 + rng.normal(0, 0.4))
        store.save(r, kind="review", reviewer="Dr Test", manual_kpa=m, dataset="known", auto_kpa=r.stiffness_kpa)
        auto.append(r.stiffness_kpa)
        manual.append(m)
        if results is not None:
            results.append(r)
        ids.append(r.study_uid)
    return np.array(auto), np.array(manual), ids


def test_cohort_page_shows_the_right_pearson_r(env: str) -> None:
    auto, manual, _ = _known_cohort(env)
    expected = pearson(auto, manual)
    at = _app()
    at.switch_page("pages/cohort.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert _metric(at, "Pearson r") == f"r = {expected.r:.3f}"
    assert any(f"n = {len(auto)}" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 4
    assert {d.label for d in at.get("download_button")} >= {"Cohort CSV", "Statistics summary CSV"}
    assert _metric(at, "F2 AUC") != "—" and "95% CI" in str(at.get("metric")[0].proto.delta)


def test_cohort_counts_reviewed_studies_by_default_and_compares_unedited_values(env: str) -> None:
    import dataclasses

    results: list = []
    auto, manual, _ = _known_cohort(env, results)
    store = Store(env)
    extra = make_result([3.0, 3.1, 3.2], patient_id="UNREVIEWED")
    store.save(extra, kind="auto", manual_kpa=9.0, dataset="known")  # an automatic result nobody reviewed
    first = results[0]  # the reader edited C00's ROI: a new revision with another value
    edited = dataclasses.replace(first, stiffness=dataclasses.replace(first.stiffness, stiffness_kpa=5.0))
    store.save(edited, kind="review", reviewer="Dr Test", manual_kpa=float(manual[0]), dataset="known",
               auto_kpa=float(auto[0]))
    at = _app()
    at.switch_page("pages/cohort.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert _metric(at, "Pearson r") == f"r = {pearson(auto, manual).r:.3f}"  # unedited values, no unreviewed row
    at.radio(key="co_compare").set_value("stiffness_kpa").run()
    reviewed = auto.copy()
    reviewed[0] = edited.stiffness_kpa
    assert _metric(at, "Pearson r") == f"r = {pearson(reviewed, manual).r:.3f}"


def test_cohort_csv_import_matches_ids_and_reports_unmatched_rows(env: str) -> None:
    auto, _, ids = _known_cohort(env)
    csv = pd.DataFrame({"study_uid": ids[:10] + ["9.9.9"], "manual_kpa": list(auto[:10]) + [4.0]}).to_csv(index=False)
    at = _app()
    at.switch_page("pages/cohort.py")
    at.run()
    at.file_uploader(key="co_csv").set_value(("manual.csv", csv.encode(), "text/csv"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("10 row(s) matched" in w.value and "1 row(s) not used" in w.value for w in at.warning)
    assert any("9.9.9" in str(df.value.to_csv()) for df in at.dataframe)


def test_empty_cohort_page_says_what_to_do(env: str) -> None:
    at = _app()
    at.switch_page("pages/cohort.py")
    at.run()
    assert not at.exception
    assert any("No saved studies yet" in i.value for i in at.info)


def test_model_settings_page_shows_card_sha_and_edits_the_staging_table(env: str, weights_dir: Path) -> None:
    at = _app()
    at.switch_page("pages/model_settings.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    import json

    sha = json.loads((weights_dir / f"{TEST_MODEL}.json").read_text())["sha256"]
    assert sha in text and "Schema version" in text
    assert any("SHA-256 verified" in s.value for s in at.success)
    # The page hands the chosen table to the router through "pending_staging" and reruns; AppTest 1.67 runs
    # only the page script after switch_page, but that rerun goes through the router (mre_core.app.auth's
    # page_guard leaves Streamlit's pages/-directory mode), whose sidebar takes the table.
    at.selectbox(key="ms_base").set_value("rdes149")
    at.run()
    next(b for b in at.button if b.label == "Use this table").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "pending_staging" not in at.session_state and at.session_state["sb_staging"] == "rdes149"
    assert at.session_state["settings"].staging.name == "rdes149"


def test_router_takes_the_table_chosen_on_the_settings_page(env: str) -> None:
    # AppTest 1.67 runs the router (app.py) on the first run only; later runs execute the page alone
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["pending_staging"] = "rdes149"
    at.run()
    assert at.sidebar.selectbox(key="sb_staging").value == "rdes149"
    assert at.session_state["settings"].staging.name == "rdes149"


def test_link_from_the_cohort_opens_the_saved_study_on_review(env: str) -> None:
    result = make_result([3.0, 3.2, 3.4], patient_id="LINK")
    store = Store(env)
    store.save(result)
    store.save(result, kind="review", reviewer="Dr L", comment="second look", manual_kpa=3.0)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["study_uid"] = result.study_uid
    at.query_params["series_uid"] = result.series_uid
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("revision 2" in h.value for h in at.subheader)
    assert _metric(at, "Manual measurement") == "3.00 kPa"
    assert any("second look" in m.value for m in at.markdown)


def test_worklist_study_from_the_listener_is_opened_signed_off_and_joins_the_cohort(
        env: str, phantom: Path, weights_dir: Path, tmp_path: Path) -> None:
    import os
    import time

    import pydicom

    from mre_core.model.network import load_model
    from mre_core.store.inbox import Inbox, InstanceKeys
    from mre_core.workflow.worker import IntakeConfig, Worker

    # a study arrives through the DICOM inbox and the listener's worker analyses it
    settings = Settings.from_env()
    inbox = Inbox(Store(env), Path(os.environ["MRE_INBOX_DIR"]))
    for f in sorted(p for p in phantom.rglob("*") if p.is_file()):
        keys = InstanceKeys.from_dataset(pydicom.dcmread(f, stop_before_pixels=True))
        inbox.add(keys, f.read_bytes(), "SCANNER@127.0.0.1", now=time.time() - 60)
    model = load_model(weights_dir, TEST_MODEL, "cpu")
    Worker(inbox, settings, IntakeConfig(quiet_s=1.0, write_pdf=False), model).step()
    expected = _expected(phantom, weights_dir)

    at = _app()
    assert any("1 studies received · 1 awaiting review" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert table["status"].tolist() == ["auto, awaiting review"] and table["stage"].iloc[0] == \
        expected.stage.stage.label
    at.session_state["rv_request"] = ("inbox", expected.study_uid)  # what "Open for review" does
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert _metric(at, "Liver stiffness") == f"{expected.stiffness_kpa:.2f} kPa"
    sign = next(b for b in at.button if b.label == "Sign off")
    assert sign.disabled  # no reviewer name yet
    at.text_input(key=f"who|{expected.study_uid}|{expected.series_uid}").input("Dr Reader")
    at.run()
    next(b for b in at.button if b.label == "Sign off").click()
    at.run()
    assert any("Signed off by Dr Reader" in s.value for s in at.success)
    assert list(Store(env).history(expected.study_uid)["kind"]) == ["auto", "signed_off"]
    # the page agrees with the store: no "not saved yet", and the same content cannot be signed off twice
    assert not any("not saved yet" in c.value for c in at.caption), [c.value for c in at.caption]
    assert next(b for b in at.button if b.label == "Sign off").disabled
    at.run()  # the next run (any widget) still shows the sign-off
    assert next(b for b in at.button if b.label == "Sign off").disabled
    assert any("This is revision 2, signed off by Dr Reader" in c.value for c in at.caption)
    assert list(Store(env).history(expected.study_uid)["kind"]) == ["auto", "signed_off"]

    cohort = AppTest.from_file(APP, default_timeout=120)
    cohort.switch_page("pages/cohort.py").run()
    assert any("1 of 1 saved studies" in c.value for c in cohort.caption)
    cohort.selectbox(key="co_review").set_value("signed_off").run()
    assert any("1 of 1 saved studies" in c.value for c in cohort.caption)


def test_model_page_says_the_shipped_cards_limitations_in_words_and_metrics_as_a_table(monkeypatch) -> None:
    shipped = Settings()
    monkeypatch.setenv("MRE_WEIGHTS_DIR", str(shipped.weights_dir))
    monkeypatch.setenv("MRE_MODEL_NAME", shipped.model_name)
    monkeypatch.setenv("MRE_DEVICE", "cpu")
    at = _app()
    at.switch_page("pages/model_settings.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    warning = " ".join(w.value for w in at.warning)
    assert "Limitations" in warning and "synthetic phantoms only" in warning and "real scanner data is unknown" in warning
    assert any("not a certified medical device" in i.value for i in at.info)
    tables = [df.value for df in at.dataframe if "metric" in df.value.columns]
    assert tables and "Dice (slice mean)" in set(tables[0]["metric"])
    assert all(len(str(v).split(".")[-1]) <= 3 for v in tables[0]["value"].dropna())  # rounded, not 0.8923196…


def test_draw_the_roi_opens_the_drawing_canvas_with_the_confidence_rule_said(env: str, phantom: Path,
                                                                             weights_dir: Path) -> None:
    expected = _expected(phantom, weights_dir)
    at = _upload(_app(), study_files(phantom))
    skey, sop = f"{expected.study_uid}|{expected.series_uid}", expected.slices[0].sop_uid
    at.radio(key=f"rv_slice|{skey}").set_value(0).run()  # slices are offered head to feet: pick this one
    at.toggle(key=f"drawon|{skey}|{sop}").set_value(True)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("kept inside the 95 % confidence region" in c.value for c in at.caption)
    assert any("Drawing: Add to ROI" in m.value for m in at.markdown)
    assert [b.label for b in at.button if b.label in ("Undo last shape", "Clear drawing")] == \
        ["Undo last shape", "Clear drawing"]
    assert _metric(at, "Liver stiffness") == f"{expected.stiffness_kpa:.2f} kPa"  # nothing drawn yet: unchanged


def _show_slice(at: AppTest, skey: str, i: int) -> AppTest:
    at.radio(key=f"rv_slice|{skey}").set_value(i).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_signed_off_study_reopened_in_a_new_session_shows_the_sign_off_with_every_field(
        env: str, phantom: Path, weights_dir: Path) -> None:
    expected = _expected(phantom, weights_dir)
    skey = f"{expected.study_uid}|{expected.series_uid}"
    sop0, sop1 = expected.slices[0].sop_uid, expected.slices[1].sop_uid
    at = _show_slice(_upload(_app(), study_files(phantom)), skey, 0)
    at.slider(key=f"thr|{skey}|{sop0}").set_value(0.8)
    at.number_input(key=f"grow|{skey}|{sop0}").set_value(-1)
    at.text_input(key=f"who|{skey}").input("Dr Sign")
    at.text_area(key=f"note|{skey}").input("slice 2 left out: motion")
    at.run()
    _show_slice(at, skey, 1).checkbox(key=f"ex|{skey}|{sop1}").check().run()
    signed_kpa, signed_used = _metric(at, "Liver stiffness"), _metric(at, "Slices used")
    assert signed_used.startswith(f"{expected.stiffness.n_slices_used - 1} /")
    next(b for b in at.button if b.label == "Sign off").click().run()
    assert any("Signed off by Dr Sign as revision 2" in s.value for s in at.success)
    assert not any("not saved yet" in c.value for c in at.caption)  # the page agrees with what it just saved

    # a new browser session: reload and upload again -> the signed-off review, not a fresh automatic result
    again = _upload(_app(), study_files(phantom))
    assert _metric(again, "Liver stiffness") == signed_kpa
    assert _metric(again, "Slices used") == signed_used != f"{expected.stiffness.n_slices_used} / {len(expected.slices)}"
    assert any("The page shows this revision" in i.value and "signed off" in i.value for i in again.info)
    assert again.text_input(key=f"who|{skey}").value == "Dr Sign"
    assert again.text_area(key=f"note|{skey}").value == "slice 2 left out: motion"
    assert not any("not saved yet" in c.value for c in again.caption)
    assert next(b for b in again.button if b.label == "Sign off").disabled  # not twice
    pdf = next(d for d in again.get("download_button") if d.proto.label == "PDF report")
    assert pdf.proto.help.endswith("signed off by Dr Sign")
    _show_slice(again, skey, 0)
    assert again.slider(key=f"thr|{skey}|{sop0}").value == pytest.approx(0.8)
    assert again.number_input(key=f"grow|{skey}|{sop0}").value == -1
    _show_slice(again, skey, 1)
    assert again.checkbox(key=f"ex|{skey}|{sop1}").value is True

    # an edit after the sign-off: the page and the exports say it is no longer the signed-off content
    again.number_input(key=f"man|{skey}").set_value(2.5).run()
    assert any("Reviewed, not saved yet" in c.value and "changed since revision 2" in c.value for c in again.caption)
    pdf = next(d for d in again.get("download_button") if d.proto.label == "PDF report")
    assert "not saved" in pdf.proto.help and "signed off by" not in pdf.proto.help
    assert not next(b for b in again.button if b.label == "Sign off").disabled
    # the model's result as it came out was kept before the first review (for auto vs reader ROI overlap)
    assert list(Store(env).history(expected.study_uid)["kind"]) == ["auto", "signed_off"]


def test_restore_brings_back_every_field_of_an_older_revision(env: str, phantom: Path, weights_dir: Path) -> None:
    expected = _expected(phantom, weights_dir)
    skey = f"{expected.study_uid}|{expected.series_uid}"
    sop0 = expected.slices[0].sop_uid
    at = _show_slice(_upload(_app(), study_files(phantom)), skey, 0)
    at.slider(key=f"thr|{skey}|{sop0}").set_value(0.8)
    at.text_input(key=f"who|{skey}").input("Dr One")
    at.text_area(key=f"note|{skey}").input("first read")
    at.run()
    next(b for b in at.button if b.label == "Save to results store").click().run()
    at.text_area(key=f"note|{skey}").input("second read").run()
    at.slider(key=f"thr|{skey}|{sop0}").set_value(0.5).run()
    next(b for b in at.button if b.label == "Save to results store").click().run()
    assert list(Store(env).history(expected.study_uid)["kind"]) == ["auto", "review", "review"]

    at.selectbox(key=f"rv_rev|{skey}").set_value(2).run()
    next(b for b in at.button if b.label.startswith("Restore revision 2")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key=f"who|{skey}").value == "Dr One"
    assert at.text_area(key=f"note|{skey}").value == "first read"
    _show_slice(at, skey, 0)
    assert at.slider(key=f"thr|{skey}|{sop0}").value == pytest.approx(0.8)
    assert any("The page shows revision 2" in i.value for i in at.info)
    assert not any("not saved yet" in c.value for c in at.caption)
    assert any("This is saved revision 2." in c.value for c in at.caption)


def test_a_study_saved_from_an_upload_opens_with_its_images_from_the_cohort_link(
        env: str, phantom: Path, weights_dir: Path) -> None:
    expected = _expected(phantom, weights_dir)
    skey = f"{expected.study_uid}|{expected.series_uid}"
    at = _upload(_app(), study_files(phantom))
    at.text_input(key=f"who|{skey}").input("Dr Link")
    at.run()
    next(b for b in at.button if b.label == "Sign off").click().run()
    assert any("kept with the study" in c.value for c in at.caption)

    linked = AppTest.from_file(APP, default_timeout=120)  # another session, opened by the cohort page's link
    linked.query_params["study_uid"] = expected.study_uid
    linked.query_params["series_uid"] = expected.series_uid
    linked.run()
    assert not linked.exception, [e.value for e in linked.exception]
    assert not any(e.label == "Opened from the cohort page" for e in linked.expander)  # the study itself opened
    assert _metric(linked, "Liver stiffness") == f"{expected.stiffness_kpa:.2f} kPa"
    assert linked.text_input(key=f"who|{skey}").value == "Dr Link"
    assert any("signed off" in i.value and "The page shows this revision" in i.value for i in linked.info)
    assert linked.session_state[f"rv_slice|{skey}"] is not None  # the slices (images) are there to browse
    worklist = _app().dataframe[0].value  # and it is on the worklist, with its result
    assert worklist["status"].tolist() == ["signed off"]


def test_cohort_shows_dice_between_the_automatic_and_the_reader_roi(env: str, phantom: Path,
                                                                      weights_dir: Path) -> None:
    expected = _expected(phantom, weights_dir)
    skey = f"{expected.study_uid}|{expected.series_uid}"
    sop0 = expected.slices[0].sop_uid
    at = _show_slice(_upload(_app(), study_files(phantom)), skey, 0)
    at.number_input(key=f"grow|{skey}|{sop0}").set_value(-2)  # the reader erodes one slice's ROI
    at.text_input(key=f"who|{skey}").input("Dr Dice")
    at.run()
    next(b for b in at.button if b.label == "Sign off").click().run()

    cohort = AppTest.from_file(APP, default_timeout=120)
    cohort.switch_page("pages/cohort.py").run()
    assert not cohort.exception, [e.value for e in cohort.exception]
    counted = sum(1 for s in expected.slices if s.stats.n_pixels)
    assert _metric(cohort, "Slices the reader changed") == f"1 of {counted}"
    dice = float(_metric(cohort, "Dice (mean over slices)"))
    assert 0.5 < dice < 1.0
    assert any(d.proto.label == "ROI overlap CSV (per slice)" for d in cohort.get("download_button"))
