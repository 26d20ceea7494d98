"""The site's loop in the browser only (Chromium): import reads, start training, watch it, read the comparison,
activate the new model (with the gate's override when it asks for one), roll it back; each step audited."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from mre_core.phantom.site import generate_site
from mre_core.store import models as registry
from mre_core.store.audit import read_audit
from mre_core.store.results import Store
from mre_core.store.users import add_user
from tests.browser_support import chromium, streamlit_server, wait_until_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
N_PATIENTS = 5


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site_browser")
    generate_site(tmp / "site", N_PATIENTS, seed=1)
    env = {"MRE_DB_URL": f"sqlite:///{tmp / 'results.sqlite'}", "MRE_DEVICE": "cpu",
           "MRE_INBOX_DIR": str(tmp / "inbox"), "MRE_MODELS_DIR": str(tmp / "models"), "MRE_REQUIRE_LOGIN": "1"}
    store = Store(env["MRE_DB_URL"])
    add_user(store, "ada", "admin", PASSWORD, actor="test", display_name="Ada Admin")
    store.dispose()
    files = sorted(p for p in (tmp / "site" / "archive" / "dicom").rglob("*") if p.is_file())
    files += sorted((tmp / "site" / "reads").glob("*.dcm"))
    return {"env": env, "files": [str(f) for f in files], "shot": tmp / "failure.png"}


def _audit_actions(env) -> list[str]:
    store = Store(env["MRE_DB_URL"])
    try:
        return read_audit(store, user="ada")["action"].tolist()
    finally:
        store.dispose()


def test_an_admin_imports_reads_trains_compares_activates_and_rolls_back_in_the_browser(site) -> None:
    with streamlit_server(site["env"]) as url, chromium() as browser:
        page = browser.new_context(viewport={"width": 1500, "height": 1200}).new_page()
        try:
            _story(page, url, site)
        except Exception:
            page.screenshot(path=str(site["shot"]), full_page=True)
            raise
    actions = _audit_actions(site["env"])
    for action in ("labels:import", "training:create", "model:activate", "model:rollback"):
        assert action in actions, (action, actions)
    store = Store(site["env"]["MRE_DB_URL"])
    try:
        history = registry.activation_history(store)
        assert [h["user"] for h in history][:2] == ["ada", "ada"]
        assert registry.active(store).origin == "shipped"
    finally:
        store.dispose()


def _story(page, url: str, site) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Sign in").wait_for(timeout=120_000)
    page.get_by_label("Username").fill("ada")
    page.locator('input[type="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("link", name="Site training").click(timeout=120_000)
    page.get_by_role("heading", name="Site training & models").wait_for(timeout=60_000)
    wait_until_idle(page)

    # reads in: the site's exams and its reader's SEGs, uploaded together
    page.get_by_role("tab", name="Reader ROIs").click()
    page.locator('input[type="file"]').set_input_files(site["files"])
    expect(page.get_by_role("button", name="Import", exact=True)).to_be_enabled(timeout=120_000)
    wait_until_idle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_text(re.compile(rf"{N_PATIENTS} read\(s\) imported")).wait_for(timeout=180_000)
    wait_until_idle(page)

    # train: one epoch, watch it finish
    page.get_by_role("tab", name="Train").click()
    page.get_by_text(f"{N_PATIENTS} labelled studies of {N_PATIENTS} patients").wait_for(timeout=60_000)
    epochs = page.get_by_label("Epochs")
    epochs.fill("1")
    epochs.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"Training job 1")).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Registered as\s*site_job1@")).wait_for(timeout=600_000)

    # read the comparison (the page reran itself when the job ended), then activate; the gate may ask for an
    # override: give it, with a reason
    wait_until_idle(page)
    page.get_by_role("tab", name="Models").click()
    page.get_by_text("Held-out comparison").wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"this model vs\s*unet_resnext50_32x4d@")).wait_for(timeout=30_000)
    assert page.locator("[data-testid=stDataFrame]").count() >= 4  # registry, comparison, IoU by stage, safety
    page.screenshot(path=str(site["shot"].with_name("comparison.png")), full_page=True)
    override = page.get_by_text("Override: activate it anyway")
    if override.count():
        override.click()
        wait_until_idle(page)
    page.get_by_label("Reason (recorded in the audit log)").fill("browser test: site model")
    page.get_by_label("Reason (recorded in the audit log)").press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Activate this model").click()
    page.get_by_text(re.compile(r"Active model\s*site_job1@")).wait_for(timeout=60_000)

    # roll back to the shipped model
    page.get_by_label("Reason for rolling back").fill("browser test done")
    page.get_by_label("Reason for rolling back").press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Roll back to the previous model").click()
    page.get_by_text(re.compile(r"Active model\s*unet_resnext50_32x4d@")).wait_for(timeout=60_000)
