"""Access control in the app, through AppTest and the functions the pages call: sign-in, roles, audit.

Fast (no browser): the sign-in page shows no patient data, each role gets its pages and nothing else, a
page run directly refuses a role it does not allow, the actions refuse in ``mre_core`` whatever the
buttons showed, and every action lands in the audit log with the acting user. The real-browser versions
(local accounts and OIDC) are ``tests/test_access_browser.py``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from tests.app_support import TEST_MODEL, write_everything_liver_weights
from tests.result_factory import make_result

from mre_core.access import Action, PermissionDenied, Role, User
from mre_core.app import auth
from mre_core.app.review_panel import save_review
from mre_core.app.review_state import ReviewEdits
from mre_core.config import Settings
from mre_core.store.audit import read_audit
from mre_core.store.results import Store
from mre_core.store.users import add_user, disable_user

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PASSWORD = "correct horse battery staple"
KEY = "k" * 64
READER = User("rob", "Dr Rob", Role.READER)
RESEARCHER = User("rita", "Rita Research", Role.RESEARCHER)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    write_everything_liver_weights(folder)
    return folder


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights_dir: Path) -> Store:
    """A store with one saved study (patient NAMED01, "Phantom^Ann") and three accounts; sign-in required."""
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    for k, v in {"MRE_WEIGHTS_DIR": str(weights_dir), "MRE_MODEL_NAME": TEST_MODEL, "MRE_DB_URL": url,
                 "MRE_DEVICE": "cpu", "MRE_INBOX_DIR": str(tmp_path / "inbox"), "MRE_REQUIRE_LOGIN": "1",
                 "MRE_DEID_KEY": KEY}.items():
        monkeypatch.setenv(k, v)
    s = Store(url)
    s.save(make_result([3.0, 3.2, 3.4], patient_id="NAMED01"), kind="review", reviewer="Dr Old", manual_kpa=3.1,
           comment="seen at the clinic")
    for name, role, display in (("rob", "reader", "Dr Rob"), ("rita", "researcher", "Rita Research"),
                                ("ada", "admin", "Ada Admin")):
        add_user(s, name, role, PASSWORD, actor="test", display_name=display)
    return s


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _signed_in(account: str | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if account:
        at.session_state[auth.ACCOUNT_KEY] = account  # what a successful sign-in form leaves in the session
    return _run(at)


def _text(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "warning", "error", "success", "subheader")
             for e in getattr(at, kind)]
    parts += [str(df.value.to_csv()) for df in at.dataframe]
    parts += [str(t.value.to_csv()) for t in at.table]
    return " ".join(str(p) for p in parts)


def _actions(store: Store, user: str) -> list[str]:
    return read_audit(store, user=user)["action"].tolist()


# ----------------------------------------------------------------------------- pure decisions
def test_each_role_gets_its_pages_in_order() -> None:
    keys = lambda u: [p.key for p in auth.pages_for(u)]  # noqa: E731
    assert keys(RESEARCHER) == ["cohort"]
    assert keys(READER) == ["review", "cohort", "model_settings"]
    assert keys(User("ada", "Ada", Role.ADMIN)) == ["review", "cohort", "model_settings", "site_training", "audit"]
    assert keys(auth.LOCAL_USER) == keys(User("ada", "Ada", Role.ADMIN)) and not auth.LOCAL_USER.signed_in
    assert keys(None) == []


def test_save_review_refuses_a_researcher_in_mre_core_and_writes_nothing(store: Store) -> None:
    result = make_result([3.0, 3.1, 3.2], patient_id="SAVE01")
    with pytest.raises(PermissionDenied, match="sign off"):
        save_review(store, RESEARCHER, result, ReviewEdits().with_comment("", "Rita"), "signed_off")
    with pytest.raises(PermissionDenied, match="edit a review"):
        save_review(store, RESEARCHER, result, ReviewEdits(), "review")
    assert store.history(result.study_uid).empty
    assert _actions(store, "rita") == ["access:denied", "access:denied"]


def test_save_review_by_a_reader_records_the_acting_user(store: Store) -> None:
    result = make_result([3.0, 3.1, 3.2], patient_id="SAVE02")
    revision = save_review(store, READER, result, ReviewEdits().with_comment("ok", "Dr Rob (typed)"), "signed_off",
                           auto=result)
    assert revision == 2 and list(store.history(result.study_uid)["kind"]) == ["auto", "signed_off"]
    entries = read_audit(store, study_uid=result.study_uid)
    assert entries[["user", "action"]].values.tolist() == [["rob", "save:auto"], ["rob", "save:signed_off"]]
    assert "reviewer 'Dr Rob (typed)'" in entries["detail"].iloc[1]


def test_an_audited_download_checks_the_role_then_logs_what_was_exported(store: Store) -> None:
    result = make_result([3.0], patient_id="DL01")
    store.save(result)
    data = auth.audited(lambda: b"csv", user=READER, store=store, action=Action.EXPORT_IDENTIFIED, kind="study_csv",
                        detail="x_study.csv", study_uid=result.study_uid, series_uid=result.series_uid)
    assert data() == b"csv"
    entry = read_audit(store, user="rob").iloc[-1]
    assert (entry["action"], entry["study_uid"], entry["detail"]) == ("export:study_csv", result.study_uid,
                                                                      "x_study.csv")
    refused = auth.audited(lambda: b"csv", user=RESEARCHER, store=store, action=Action.EXPORT_IDENTIFIED,
                           kind="study_csv", detail="x_study.csv")
    with pytest.raises(PermissionDenied):
        refused()
    assert _actions(store, "rita") == ["access:denied"]
    with pytest.raises(auth.AuditUnavailable):  # a signed-in user's export is never unaudited
        auth.act(READER, Action.EXPORT_IDENTIFIED, None, "export:study_csv")
    auth.act(auth.LOCAL_USER, Action.EXPORT_IDENTIFIED, None, "export:study_csv")  # local mode: no store, fine


# ----------------------------------------------------------------------------- the app
def test_local_mode_is_an_implicit_admin_and_the_sidebar_says_so(store: Store, monkeypatch) -> None:
    monkeypatch.delenv("MRE_REQUIRE_LOGIN")
    at = _signed_in(None)
    assert at.title[0].value == "Review study"
    assert any("bound to 127.0.0.1 only; set MRE_REQUIRE_LOGIN=1" in c.value for c in at.sidebar.caption)


def test_without_sign_in_only_the_sign_in_page_and_no_patient_data(store: Store) -> None:
    at = _signed_in(None)
    assert [t.value for t in at.title] == ["Sign in"]
    assert not at.get("file_uploader") and not at.dataframe and not at.get("download_button")
    text = _text(at)
    assert "NAMED01" not in text and "Phantom^Ann" not in text and "Review study" not in text
    assert [b.label for b in at.button if b.label.startswith("Sign in")] == ["Sign in"]  # the local form
    assert not at.sidebar.selectbox  # not even the settings sidebar
    # AppTest runs the router on the first run only: the next run is the page file itself, as Streamlit runs a
    # deep link that is the first request after a server start; its guard shows the sign-in page too
    at.run()
    assert [t.value for t in at.title] == ["Sign in"]
    assert not at.get("file_uploader") and not at.dataframe and "NAMED01" not in _text(at)


def _sign_in_form() -> None:
    from mre_core.app import auth

    auth.sign_in_page(auth.store_or_none(), auth.access_config())


def test_the_local_sign_in_form_refuses_a_wrong_password_and_signs_in_with_the_right_one(store: Store) -> None:
    at = _run(AppTest.from_function(_sign_in_form, default_timeout=60))
    at.text_input(key="auth_username").input("rob")
    at.text_input(key="auth_password").input("wrong password, surely")
    next(b for b in at.button if b.label == "Sign in").click()
    _run(at)
    assert any("Not signed in: unknown username, wrong password" in e.value for e in at.error)
    assert auth.ACCOUNT_KEY not in at.session_state
    assert read_audit(store, action_prefix="login:")[["user", "action"]].values.tolist() == [["rob", "login:failure"]]

    at.text_input(key="auth_password").input(PASSWORD)
    next(b for b in at.button if b.label == "Sign in").click()
    _run(at)
    assert at.session_state[auth.ACCOUNT_KEY] == "rob"
    assert _actions(store, "rob")[-1] == "login:success"


def test_a_researcher_gets_the_cohort_only_with_pseudonyms_and_no_names_or_links(store: Store) -> None:
    at = _signed_in("rita")
    assert [t.value for t in at.title] == ["Cohort"]
    assert any("Signed in as **Rita Research** · researcher" in m.value for m in at.sidebar.markdown)
    at.selectbox(key="co_review").set_value("all")
    _run(at)
    studies = at.dataframe[-1].value
    assert "open" not in studies.columns and "comment" not in studies.columns
    assert studies["patient_id"].str.startswith("pt-").all()
    text = _text(at)
    assert "NAMED01" not in text and "Phantom^Ann" not in text and "seen at the clinic" not in text
    assert not [c for c in at.checkbox if c.label == "Include patient names"]
    labels = [d.proto.label for d in at.get("download_button")]
    assert "Cohort (de-identified)" in labels and "Cohort CSV" not in labels
    assert not at.get("file_uploader")  # matching manual values on patient IDs needs a role that sees them


def test_the_deidentified_cohort_export_carries_its_record_and_is_audited(store: Store) -> None:
    from mre_core.app import cohort_data as cd

    frame = cd.prepare(store.latest_table())
    data = auth.audited(lambda: cd.deidentified_zip(cd.cohort_export(frame, Settings().staging), KEY.encode(),
                                                    "cohort")[0],
                        user=RESEARCHER, store=store, action=Action.EXPORT_DEIDENTIFIED, kind="cohort_deid",
                        detail="cohort.zip")()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["cohort.csv", "cohort.deidentification.json"]
        table = pd.read_csv(z.open("cohort.csv"), dtype=str)
        record = z.read("cohort.deidentification.json").decode()
    assert table["patient_id"].str.startswith("pt-").all() and "NAMED01" not in table.to_csv()
    assert "patient_name" not in table.columns and table["study_date"].tolist() == ["2025"]
    assert "HMAC-SHA256" in record and "key_fingerprint" in record and KEY not in record
    assert _actions(store, "rita") == ["export:cohort_deid"]


def test_a_researcher_without_a_key_is_told_how_to_set_one_and_gets_no_export(store: Store, monkeypatch) -> None:
    monkeypatch.delenv("MRE_DEID_KEY")
    at = _signed_in("rita")
    at.selectbox(key="co_review").set_value("all")
    _run(at)
    assert any("no table can be exported until a de-identification key is set" in i.value and "MRE_DEID_KEY" in i.value
               for i in at.info)
    assert not [d for d in at.get("download_button") if "Cohort" in d.proto.label]
    assert set(at.dataframe[-1].value["patient_id"]) == {"(hidden: no key)"}


@pytest.mark.parametrize(("account", "page", "words"), [
    ("rita", "pages/review.py", "may not open a study for review"),
    ("rita", "pages/model_settings.py", "may not view the model and settings"),
    ("rob", "pages/audit.py", "may not view the audit log"),
])
def test_a_page_run_directly_refuses_a_role_it_does_not_allow(store: Store, account: str, page: str,
                                                              words: str) -> None:
    at = _signed_in("ada")  # every page registered in this session
    at.session_state[auth.ACCOUNT_KEY] = account  # then the session belongs to someone else
    at.switch_page(page)
    _run(at)
    assert any(words in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("file_uploader") and not at.dataframe and not at.title
    assert read_audit(store, user=account, action_prefix="access:").shape[0] == 1


def test_a_disabled_account_is_signed_out_at_its_next_run(store: Store) -> None:
    at = _signed_in("rob")
    assert at.title[0].value == "Review study"
    disable_user(store, "rob", actor="test")
    at.switch_page("pages/cohort.py")
    _run(at)
    assert [t.value for t in at.title] == ["Sign in"] and not at.dataframe
    assert auth.ACCOUNT_KEY not in at.session_state


def test_a_reader_sees_settings_read_only_and_an_admin_changes_them_audited(store: Store) -> None:
    at = _signed_in("rob")
    at.switch_page("pages/model_settings.py")
    _run(at)
    assert next(b for b in at.button if b.label == "Use this table").disabled
    admin = _signed_in("ada")
    admin.switch_page("pages/model_settings.py")
    _run(admin)
    admin.selectbox(key="ms_base").set_value("rdes149")
    _run(admin)
    next(b for b in admin.button if b.label == "Use this table").click()
    _run(admin)
    entry = read_audit(store, user="ada", action_prefix="settings:").iloc[-1]
    assert entry["action"] == "settings:change" and "rdes149" in entry["detail"]


def test_the_audit_page_filters_and_exports(store: Store) -> None:
    store.log_event("login:failure", "local: wrong password", user="mallory")
    at = _signed_in("ada")
    at.switch_page("pages/audit.py")
    _run(at)
    assert at.title[0].value == "Audit log"
    at.selectbox(key="au_user").set_value("mallory")
    _run(at)
    assert at.dataframe[0].value["action"].tolist() == ["login:failure"]
    at.selectbox(key="au_user").set_value("(everyone)")
    at.selectbox(key="au_area").set_value("users:")
    _run(at)
    assert set(at.dataframe[0].value["action"]) == {"users:add"}
    assert [d.proto.label for d in at.get("download_button")] == ["Audit log CSV"]


def test_a_reader_opens_the_demo_study_under_their_name_and_signs_it_off(store: Store) -> None:
    at = _signed_in("rob")
    next(b for b in at.button if b.label == "Load demo study").click()
    _run(at)
    who = next(t for t in at.text_input if t.key.startswith("who|"))
    assert who.value == "Dr Rob"  # signed in: the reviewer starts as the user's name
    next(b for b in at.button if b.label == "Sign off").click()
    _run(at)
    assert any("Signed off by Dr Rob" in s.value for s in at.success)
    actions = _actions(store, "rob")
    assert "study:view" in actions and actions[-1] == "save:signed_off"
    view = read_audit(store, user="rob", action_prefix="study:view")
    assert len(view) == 1  # once per session and study, not once per run


def test_an_oidc_sign_in_gets_the_role_mapped_to_its_address(store: Store) -> None:
    at = AppTest.from_file(APP, default_timeout=120)
    at.user = {"is_logged_in": True, "email": "Bob@Hospital.org", "name": "Dr Bob", "email_verified": True}
    at.secrets["roles"] = {"reader": ["bob@hospital.org"]}
    _run(at)
    assert at.title[0].value == "Review study"
    assert any("Signed in as **Dr Bob** · reader (single sign-on)" in m.value for m in at.sidebar.markdown)
    assert _actions(store, "bob@hospital.org") == ["login:success"]

    eve = AppTest.from_file(APP, default_timeout=120)
    eve.user = {"is_logged_in": True, "email": "eve@elsewhere.org"}
    eve.secrets["roles"] = {"reader": ["bob@hospital.org"]}
    _run(eve)
    assert any("no access" in e.value for e in eve.error) and not eve.get("file_uploader")
    assert _actions(store, "eve@elsewhere.org") == ["login:failure"]


@pytest.fixture
def bound_to_every_interface():
    """Streamlit's server.address as if started with --server.address 0.0.0.0 (AppTest runs in this process)."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0", where_defined="test")
    yield
    config.set_option("server.address", before, where_defined="test")


def test_beyond_loopback_without_any_sign_in_the_app_shows_only_the_refusal(bound_to_every_interface, tmp_path,
                                                                             monkeypatch, weights_dir) -> None:
    monkeypatch.setenv("MRE_DB_URL", f"sqlite:///{tmp_path / 'empty.sqlite'}")
    monkeypatch.setenv("MRE_INBOX_DIR", str(tmp_path / "inbox"))
    Store(f"sqlite:///{tmp_path / 'empty.sqlite'}").save(make_result([3.0], patient_id="NAMED02"))
    at = _signed_in(None)
    assert any("Refusing to serve on address '0.0.0.0'" in e.value and "users add" in e.value for e in at.error)
    assert not at.title and not at.dataframe and not at.text_input and "NAMED02" not in _text(at)


def test_beyond_loopback_with_an_account_sign_in_is_required(bound_to_every_interface, store: Store,
                                                              monkeypatch) -> None:
    monkeypatch.delenv("MRE_REQUIRE_LOGIN")  # not needed: the address asks for it
    at = _signed_in(None)
    assert [t.value for t in at.title] == ["Sign in"]
    assert any("listens on 0.0.0.0, so other machines can reach it" in m.value for m in at.markdown)
