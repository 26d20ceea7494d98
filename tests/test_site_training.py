"""The site's loop end to end: a simulated site (an exam style the shipped model was not trained on, a reader's
ROIs as DICOM SEG) → import-rois → train from the store as a job → held-out comparison → registry.

Small enough for CPU CI (about 3-4 minutes on 2 cores); ``tools/site_experiment.py`` is the longer run whose
numbers are in docs/SITE_TRAINING.md.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mre_core.config import Settings
from mre_core.model.site import SiteTrainParams
from mre_core.phantom.site import generate_site
from mre_core.store import models as registry
from mre_core.store.inbox import Inbox
from mre_core.store.labels import labelled_studies
from mre_core.store.results import Store
from mre_core.workflow import training_job as jobs
from mre_core.workflow.import_rois import import_rois

N_PATIENTS = 14
EPOCHS = 8


@pytest.fixture(scope="module")
def site_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    site = generate_site(root / "site", N_PATIENTS, seed=0)
    store = Store(f"sqlite:///{root / 'store.sqlite'}")
    settings = Settings(device="cpu", db_url=store.url, inbox_dir=root / "inbox", models_dir=root / "models")
    inbox = Inbox(store, settings.inbox_dir)
    report = import_rois([root / "site" / "archive" / "dicom", root / "site" / "reads"], store, inbox,
                         imported_by="test")
    job_id = jobs.create_job(store, SiteTrainParams(epochs=EPOCHS, seed=0), settings, "ada")
    messages: list[str] = []
    rc = jobs.run_job(store, inbox, job_id, settings, echo=messages.append)
    return {"site": site, "store": store, "settings": settings, "inbox": inbox, "report": report,
            "job_id": job_id, "rc": rc, "messages": messages}


@pytest.mark.slow
def test_every_read_of_the_site_is_imported_with_its_images(site_run) -> None:
    report = site_run["report"]
    assert not report.unmatched, report.unmatched
    assert len(report.imported) == N_PATIENTS
    studies = labelled_studies(site_run["store"])
    assert len(studies) == N_PATIENTS and {s.source for s in studies} == {"seg"}
    assert {s.reader for s in studies} == {"Site Reader"}


@pytest.mark.slow
def test_the_job_finishes_and_registers_a_model_that_is_not_active(site_run) -> None:
    store = site_run["store"]
    assert site_run["rc"] == 0, site_run["messages"]
    job = jobs.get_job(store, site_run["job_id"])
    assert job.status == jobs.FINISHED and job.model_version
    assert [r["epoch"] for r in job.progress["log"]] == list(range(1, EPOCHS + 1))
    entry = registry.get(store, job.model_version)
    shipped = registry.ensure_shipped(store, site_run["settings"])
    assert entry.origin == "site" and entry.created_by == "ada" and entry.parent_version == shipped.version
    assert registry.active(store).version == shipped.version  # registered, not activated
    split = entry.manifest["split"]
    assert set(entry.heldout) == set(split["test"]) and split["test"]
    assert not (set(split["test"]) & (set(split["train"]) | set(split["val"])))
    patients = split["patients"]
    assert not ({patients[u] for u in split["test"]} & {patients[u] for u in split["train"] + split["val"]})
    for name in ("split.json", "manifest.json", "heldout.json", "heldout_slices.csv", "checkpoint.pt"):
        assert (job.out_dir / name).is_file(), name
    # its card says what it was trained on, and every page and PDF then says so instead of "synthetic phantoms"
    from mre_core.outputs.wording import intended_use, model_card

    card = model_card(entry.weights_dir, entry.name)
    assert card["origin"] == "site" and f"{len(split['test'])} held-out test studies" in card["training_data"]
    assert "fine-tuned at this site" in intended_use(card)
    assert "trained on synthetic phantoms, not on patient data" not in intended_use(card)
    # the input check of the site model: its own training studies, widened to the shipped model's ranges
    from mre_core.analysis.input_check import ranges_from_card

    ranges, parent = ranges_from_card(card), ranges_from_card(model_card(shipped.weights_dir, shipped.name))
    assert card["input_ranges"]["n_studies"] == len(split["train"]) and "fine-tuned from" in card["input_ranges"]["source"]
    assert parent and all(ranges[k].low <= r.low and ranges[k].high >= r.high for k, r in parent.items())


@pytest.mark.slow
def test_on_the_sites_heldout_studies_the_site_model_beats_the_shipped_one(site_run) -> None:
    store = site_run["store"]
    entry = registry.get(store, jobs.get_job(store, site_run["job_id"]).model_version)
    h = entry.metrics["heldout"]
    cand, base = h["candidate"], h["baseline"]
    assert base["version"] == registry.ensure_shipped(store, site_run["settings"]).version
    assert cand["dice"]["value"] > base["dice"]["value"], (cand["dice"], base["dice"])
    assert cand["dice"]["ci_low"] is not None and cand["dice"]["ci_low"] <= cand["dice"]["value"]
    # the ROI the product measures stays on the reader's ROI more often (no liver mask at a site)
    assert (cand["roi_safety"]["outside_reader_fraction_mean"]
            < base["roi_safety"]["outside_reader_fraction_mean"])
    slices = pd.read_csv(jobs.get_job(store, site_run["job_id"]).out_dir / "heldout_slices.csv")
    assert set(slices["model"]) == {"candidate", "baseline"}
    assert len(slices) == 2 * h["n_slices"]
    json.dumps(h)  # the registry stores it as JSON


@pytest.mark.slow
def test_a_second_run_never_trains_on_what_the_active_site_model_was_measured_on(site_run) -> None:
    from mre_core.model.site import split_by_patient

    store = site_run["store"]
    entry = registry.get(store, jobs.get_job(store, site_run["job_id"]).model_version)
    registry.activate(store, entry.version, user="ada", reason="test: measure the guard", override=True)
    try:
        active = registry.active(store)
        assert active.version == entry.version
        studies = labelled_studies(store)
        for seed in range(4):
            split = split_by_patient(studies, 0.2, 0.25, seed, forced_test=active.heldout)
            assert set(active.heldout) <= set(split.test)
    finally:
        registry.rollback(store, user="ada", reason="test done")
    assert registry.active(store).version == registry.ensure_shipped(store, site_run["settings"]).version
