"""Single sign-on in a real browser: Streamlit's own ``st.login`` against a local OpenID Connect provider.

The provider is ``oidc-provider-mock`` (PyPI; pinned in requirements.txt), started here as a separate process
on a free port: a real OIDC server with discovery, an authorisation page, signed ID tokens and JWKS. Streamlit
runs with a secrets file in a temporary folder holding the documented ``[auth]`` keys (redirect_uri,
cookie_secret, client_id, client_secret, server_metadata_url = the provider's discovery document) and a
``[roles]`` table that makes one address a reader. Chromium signs in on the provider's page and comes back
signed in; a researcher's sign-in opens the Cohort only and the Review page's URL is refused; an address the
table does not name gets "no access". Streamlit is reached on ``localhost``, the
host of the redirect URI, so that its identity cookie is sent back.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests.app_support import TEST_MODEL, write_everything_liver_weights
from tests.browser_support import chromium, free_port, stop, streamlit_server, wait_healthy, wait_until_idle

from mre_core.store.audit import read_audit
from mre_core.store.results import Store

pytestmark = pytest.mark.browser

READER = {"sub": "bob", "email": "bob@hospital.test", "name": "Dr Bob OIDC", "email_verified": True}
RESEARCHER = "dan@university.test"


@pytest.fixture(scope="module")
def provider():
    """``python -m oidc_provider_mock`` on a free port of 127.0.0.1, with the reader as a predefined user."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port),
                             "--user-claims", json.dumps(READER)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://localhost:{port}"
    try:
        wait_healthy(url, proc, timeout_s=60, path="/.well-known/openid-configuration")
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, provider: str):
    tmp = tmp_path_factory.mktemp("oidc_browser")
    write_everything_liver_weights(tmp / "weights")
    port = free_port()
    secrets = tmp / "secrets.toml"
    secrets.write_text(f"""
[auth]
redirect_uri = "http://localhost:{port}/oauth2callback"
cookie_secret = "test-cookie-secret-{'0' * 40}"
client_id = "mre-liver-review"
client_secret = "test-client-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"

[access]
require_login = true

[roles]
reader = ["{READER['email']}"]
researcher = ["{RESEARCHER}"]
""")
    env = {"MRE_DB_URL": f"sqlite:///{tmp / 'results.sqlite'}", "MRE_DEVICE": "cpu",
           "MRE_INBOX_DIR": str(tmp / "inbox"), "MRE_WEIGHTS_DIR": str(tmp / "weights"), "MRE_MODEL_NAME": TEST_MODEL}
    with streamlit_server(env, ["--secrets.files", str(secrets)], host="localhost", port=port) as url:
        yield {"url": url, "db": env["MRE_DB_URL"]}


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _to_the_provider(browser, site: dict):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(site["url"])
    page.get_by_role("heading", name="Sign in").wait_for(timeout=120_000)
    assert page.locator('input[type="file"]').count() == 0
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.get_by_role("heading", name="Authorize Client").wait_for(timeout=60_000)  # the provider's own page
    assert page.url.startswith(site["url"].rsplit(":", 1)[0]) and "/oauth2/authorize" in page.url
    return page


def _audit(site: dict, user: str):
    store = Store(site["db"])
    try:
        return read_audit(store, user=user)["action"].tolist()
    finally:
        store.dispose()


def test_a_reader_signs_in_through_the_provider_and_reviews(browser, site: dict) -> None:
    page = _to_the_provider(browser, site)
    page.get_by_role("button", name=READER["sub"], exact=True).click()  # the provider's predefined user
    page.get_by_role("heading", name="Review study").wait_for(timeout=120_000)
    wait_until_idle(page)
    assert page.get_by_text("Signed in as Dr Bob OIDC · reader (single sign-on)").count() == 1
    assert page.get_by_role("button", name="Load demo study").count() == 1
    assert _audit(site, READER["email"]) == ["login:success"]
    page.context.close()


def test_an_address_without_a_role_gets_no_access(browser, site: dict) -> None:
    page = _to_the_provider(browser, site)
    page.locator('input[name="sub"]').fill("eve@elsewhere.test")  # a user the provider makes up: email = sub
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.get_by_text("no access").first.wait_for(timeout=120_000)
    wait_until_idle(page)
    assert page.get_by_text("Signed in as eve@elsewhere.test").count() == 1
    assert page.locator('input[type="file"]').count() == 0 and page.get_by_text("Review study").count() == 0
    assert _audit(site, "eve@elsewhere.test") == ["login:failure"]
    page.context.close()


def test_a_researcher_signed_in_by_the_provider_is_refused_the_review_url(browser, site: dict) -> None:
    page = _to_the_provider(browser, site)
    page.locator('input[name="sub"]').fill(RESEARCHER)
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.get_by_role("heading", name="Cohort").wait_for(timeout=120_000)
    wait_until_idle(page)
    assert page.locator("[data-testid=stSidebarNav]").get_by_text("Review study").count() == 0  # not in the menu
    page.goto(f"{site['url']}/review")  # a new session of the same browser: signed in by the identity cookie
    page.get_by_text("may not open a study for review").first.wait_for(timeout=120_000)
    wait_until_idle(page)
    assert page.locator('input[type="file"]').count() == 0
    assert page.get_by_role("button", name="Load demo study").count() == 0
    assert _audit(site, RESEARCHER) == ["login:success", "login:success", "access:denied"]
    page.context.close()
