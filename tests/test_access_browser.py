"""Access control in a real browser: `streamlit run` with sign-in required, local accounts, Playwright + chromium.

The server runs with ``MRE_REQUIRE_LOGIN=1`` on a store holding one saved study (patient ``NAMED01``,
``Phantom^Ann``) and two local accounts made with :func:`mre_core.store.users.add_user`. Without signing in
the browser gets the sign-in page and no patient data, whichever URL it opens; a researcher gets the Cohort
page only, with pseudonyms, no names, no links to a study, and the Review page's URL does not open; a reader
opens the demo study and signs it off. Each test then reads the audit log (:func:`read_audit`) for what its
user did. Single sign-on (OIDC) in a browser: ``tests/test_oidc_browser.py``.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from tests.app_support import TEST_MODEL, write_everything_liver_weights
from tests.browser_support import chromium, streamlit_server, wait_until_idle
from tests.result_factory import make_result

from mre_core.store.audit import read_audit
from mre_core.store.results import Store
from mre_core.store.users import add_user

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
SECRET_WORDS = ("NAMED01", "Phantom^Ann", "seen at the clinic")  # what the saved study must never show unasked


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("access_browser")
    write_everything_liver_weights(tmp / "weights")
    env = {"MRE_DB_URL": f"sqlite:///{tmp / 'results.sqlite'}", "MRE_DEVICE": "cpu",
           "MRE_INBOX_DIR": str(tmp / "inbox"), "MRE_WEIGHTS_DIR": str(tmp / "weights"), "MRE_MODEL_NAME": TEST_MODEL,
           "MRE_REQUIRE_LOGIN": "1", "MRE_DEID_KEY": "browser-test-key-" + "0" * 48}
    store = Store(env["MRE_DB_URL"])
    store.save(make_result([3.0, 3.2, 3.4], patient_id="NAMED01"), kind="review", reviewer="Dr Old", manual_kpa=3.1,
               comment="seen at the clinic")
    add_user(store, "rob", "reader", PASSWORD, actor="test", display_name="Dr Rob")
    add_user(store, "rita", "researcher", PASSWORD, actor="test", display_name="Rita Research")
    store.dispose()
    return env


@pytest.fixture(scope="module")
def server(site: dict[str, str]):
    with streamlit_server(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    context.add_init_script("delete window.showSaveFilePicker")  # the grid's CSV button then downloads
    return context.new_page()


def _no_patient_data(page) -> None:
    body = page.locator("body").inner_text()
    assert not [w for w in SECRET_WORDS if w in body], body
    assert page.locator('input[type="file"]').count() == 0
    assert page.locator("[data-testid=stDataFrame]").count() == 0
    assert page.get_by_role("button", name="Load demo study").count() == 0


def _sign_in(page, username: str, password: str = PASSWORD) -> None:
    page.get_by_role("heading", name="Sign in").wait_for(timeout=120_000)
    page.get_by_label("Username").fill(username)
    page.locator('input[type="password"]').fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def _audit(site: dict[str, str], user: str):
    store = Store(site["MRE_DB_URL"])
    try:
        return read_audit(store, user=user)
    finally:
        store.dispose()


def test_without_sign_in_every_url_shows_the_sign_in_page_and_no_patient_data(server: str, browser) -> None:
    page = _page(browser)
    for path in ("/review", "/", "/cohort", "/audit", "/model_settings"):  # a deep link first: a fresh server
        page.goto(f"{server}{path}")
        page.get_by_role("heading", name="Sign in").wait_for(timeout=120_000)
        wait_until_idle(page)
        _no_patient_data(page)
        assert page.get_by_text("Review study").count() == 0
    page.context.close()


def test_a_researcher_sees_the_cohort_only_deidentified_and_the_review_url_does_not_open(
        server: str, browser, site: dict[str, str]) -> None:
    page = _page(browser)
    page.goto(f"{server}/review")
    _sign_in(page, "rita", "not the password at all")
    page.get_by_text("Not signed in").wait_for(timeout=60_000)
    _no_patient_data(page)
    _sign_in(page, "rita")
    page.get_by_role("heading", name="Cohort").wait_for(timeout=120_000)  # asked for Review, got the Cohort
    page.get_by_text("De-identified view").first.wait_for()
    wait_until_idle(page)
    assert page.get_by_text("Signed in as Rita Research · researcher").count() == 1
    for other in ("Review study", "Model & settings", "Audit log", "Include patient names", "Load demo study"):
        assert page.get_by_text(other, exact=True).count() == 0, other  # not in the navigation, not on the page
    assert page.locator('input[type="file"]').count() == 0
    body = page.locator("body").inner_text()
    assert not [w for w in SECRET_WORDS if w in body]

    grid = page.locator("[data-testid=stDataFrame]").last  # the studies table, as the browser has it
    grid.hover()
    with page.expect_download(timeout=30_000) as dl:
        page.locator("[data-testid=stElementToolbar]").last.get_by_role("button", name="Download as CSV").click()
    shown = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8-sig"))))
    assert len(shown) == 1 and shown[0]["patient_id"].startswith("pt-") and shown[0]["study_date"] == "2025"
    assert not {"open", "patient_name", "comment", "study_uid"} & set(shown[0])
    assert not [w for w in SECRET_WORDS if w in str(shown)]

    with page.expect_download(timeout=30_000) as dl:
        page.get_by_role("button", name="Cohort (de-identified)").click()
    with zipfile.ZipFile(dl.value.path()) as z:
        assert sorted(z.namelist()) == ["cohort.csv", "cohort.deidentification.json"]
        exported = z.read("cohort.csv").decode()
        assert "HMAC-SHA256" in z.read("cohort.deidentification.json").decode()
    assert shown[0]["patient_id"] in exported and not [w for w in SECRET_WORDS if w in exported]

    page.goto(f"{server}/review")  # the Review page's URL again, in a new session of this browser
    _sign_in(page, "rita")
    page.get_by_role("heading", name="Cohort").wait_for(timeout=120_000)
    wait_until_idle(page)
    assert page.get_by_text("Review study").count() == 0 and page.locator('input[type="file"]').count() == 0
    page.context.close()

    entries = _audit(site, "rita")
    assert entries["action"].tolist() == ["login:failure", "login:success", "export:cohort_deid", "login:success"]
    assert "cohort.zip" in entries["detail"].iloc[2]


def test_a_reader_opens_the_demo_study_signs_it_off_and_each_action_is_in_the_audit_log(
        server: str, browser, site: dict[str, str]) -> None:
    page = _page(browser)
    page.goto(server)
    _sign_in(page, "rob")
    page.get_by_role("heading", name="Review study").wait_for(timeout=120_000)
    nav = page.locator("[data-testid=stSidebarNav]")
    assert [nav.get_by_text(t, exact=True).count() for t in ("Review study", "Cohort", "Model & settings",
                                                             "Audit log")] == [1, 1, 1, 0]
    page.get_by_role("button", name="Load demo study").click()
    page.get_by_text("Slices used").first.wait_for(timeout=180_000)
    wait_until_idle(page)
    assert page.get_by_label("Reviewer").input_value() == "Dr Rob"  # the signed-in user's name
    page.get_by_role("button", name="Sign off").click()
    page.get_by_text("Signed off by Dr Rob").first.wait_for(timeout=60_000)
    wait_until_idle(page)
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Study CSV").first.click()
    row = next(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for(timeout=60_000)
    page.context.close()

    entries = _audit(site, "rob")
    assert entries["action"].tolist() == ["login:success", "study:view", "save:auto", "save:signed_off",
                                          "export:study_csv", "login:sign_out"]
    by_action = entries.set_index("action")
    assert row["study_uid"] in by_action.loc["study:view", "detail"]  # viewed before it was ever saved
    assert by_action.loc["save:signed_off", "study_uid"] == by_action.loc["export:study_csv", "study_uid"] == \
        row["study_uid"]
    assert "reviewer 'Dr Rob'" in by_action.loc["save:signed_off", "detail"]
    assert by_action.loc["export:study_csv", "detail"].endswith("_study.csv (study " + row["study_uid"] +
                                                                ", signed off by Dr Rob)")
