"""End to end in a real browser: `streamlit run` + Playwright driving Debian chromium.

Upload a phantom study through the page's file input, wait for the result, check the stage
text against the pipeline run directly, download the study CSV and check it, and save
screenshots to ``docs/screenshots/``. Uses the shipped weights when present, otherwise a
tiny test model (``tests/app_support.py``). Needs ``/usr/bin/chromium`` (``make system-deps``).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, ROOT
from tests.browser_support import free_port as _free_port
from tests.browser_support import wait_healthy as _wait_healthy
from tests.browser_support import wait_until_idle as _wait_until_idle

from mre_core.config import Settings

pytestmark = pytest.mark.browser

# docs/screenshots is refreshed only on request (MRE_UPDATE_SCREENSHOTS=1), so a test run leaves the tree clean
SHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("MRE_UPDATE_SCREENSHOTS")
         else Path(tempfile.gettempdir()) / "mre_screenshots")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("browser")
    shipped = Settings.from_env({})
    out = {"MRE_DB_URL": f"sqlite:///{tmp / 'results.sqlite'}", "MRE_DEVICE": "cpu",
           "MRE_INBOX_DIR": str(tmp / "inbox")}
    if not shipped.weights_path.is_file():
        from tests.app_support import TEST_MODEL, write_everything_liver_weights

        write_everything_liver_weights(tmp / "weights")
        out.update(MRE_WEIGHTS_DIR=str(tmp / "weights"), MRE_MODEL_NAME=TEST_MODEL)
    out["_TMP"] = str(tmp)
    return out


@pytest.fixture(scope="module")
def server(env: dict[str, str]):
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc_env = {**os.environ, **{k: v for k, v in env.items() if not k.startswith("_")}}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _shot(page, name: str, height: int = 2200) -> None:
    """Screenshot the whole app: Streamlit scrolls inside its own container, so grow the viewport first."""
    page.set_viewport_size({"width": 1500, "height": height})
    page.wait_for_timeout(1500)  # let plotly redraw at the new size
    # data grids draw on a canvas once visible: wait until every grid's canvas has a size
    # (only grids that are on screen, e.g. not inside a collapsed expander). The screenshot is documentation,
    # so a grid that never draws is reported, not failed on.
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=stDataFrame], [data-testid=stDataEditor]')]"
            ".filter(g => g.getBoundingClientRect().height > 0)"
            ".every(g => [...g.querySelectorAll('canvas')].some(c => c.width > 0 && c.height > 0))",
            timeout=20_000)
    except Exception as exc:  # noqa: BLE001 - documentation screenshot only
        print(f"screenshot {name}: data grids not drawn yet ({type(exc).__name__})")
    page.wait_for_timeout(1000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)
    page.set_viewport_size({"width": 1500, "height": 1000})


def _shot_drawing(page, canvas) -> None:
    """Screenshot of the drawing UI: from the *Slices* heading down past the canvas and its controls."""
    page.set_viewport_size({"width": 1500, "height": 2700})  # Streamlit scrolls inside its own container
    page.evaluate("() => document.querySelectorAll('*').forEach(el => { if (el.scrollTop) el.scrollTop = 0; })")
    page.wait_for_timeout(1500)
    heading = page.get_by_role("heading", name="Slices").first.bounding_box()
    box = canvas.bounding_box()
    assert heading is not None and box is not None
    top = heading["y"] - 12
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "roi_drawing.png"),
                    clip={"x": box["x"] - 24, "y": top, "width": 1500 - box["x"], "height": box["y"] + box["height"]
                          - top + 330})
    page.set_viewport_size({"width": 1500, "height": 1100})


def _expected(study_dir: Path, env: dict[str, str]):
    """The pipeline run directly on the same files with the same model: the page must agree."""
    from mre_core.workflow.batch import analyze_sources

    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("MRE_")})
    return analyze_sources([study_dir], settings).results[0]


def _pointer_reads_the_dicom_value(page, expected) -> None:
    """The slice view (first slice shown: the most superior) reads out, under the pointer, the stiffness of that
    very pixel of the DICOM file, and whether it is in the ROI and the confidence region."""
    from mre_core.app.slice_image import encode_kpa
    from mre_core.outputs.tables import slice_numbers

    numbers = slice_numbers(expected.slices)
    i = min(range(len(expected.slices)), key=lambda k: numbers[expected.slices[k].sop_uid])
    s, e = expected.slices[i], expected.study.series.slices[i]
    inside = s.roi if s.roi.any() else e.confidence
    rows, cols = np.nonzero(inside)
    r, c = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
    frame = page.frame_locator("[data-testid=stIFrame]").first
    canvas = frame.locator("canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    canvas.hover(position={"x": (c + 0.5) * box["width"] / e.shape[1], "y": (r + 0.5) * box["height"] / e.shape[0]})
    want = (f"row {r}, col {c}: {int(encode_kpa(e.kpa)[r, c]) / 100:.2f} kPa" + (" · in ROI" if s.roi[r, c] else "")
            + (" · confident" if e.confidence[r, c] else " · outside confidence region"))
    readout = frame.get_by_test_id("slice-readout")
    from playwright.sync_api import expect

    expect(readout).to_have_text(want, timeout=10_000)
    assert abs(float(want.split(": ")[1].split(" kPa")[0]) - float(e.kpa[r, c])) <= 0.005 + 1e-6


def test_upload_review_download(server: str, browser, env: dict[str, str], tmp_path: Path) -> None:
    from mre_core.app.demo import demo_study

    study_dir = demo_study(Path(env["_TMP"]) / "phantom", seed=3)
    files = sorted(p for p in study_dir.rglob("*") if p.is_file())
    expected = _expected(study_dir, env)
    assert expected.stage is not None

    page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page.goto(server)
    page.get_by_text("Review study").first.wait_for(timeout=60_000)
    page.get_by_text("Intended use").first.wait_for()

    t0 = time.perf_counter()
    page.locator('input[type="file"]').first.set_input_files([str(p) for p in files])
    page.get_by_text(f"Stage: {expected.stage.stage.label}").first.wait_for(timeout=180_000)
    upload_to_result_s = time.perf_counter() - t0
    page.get_by_text("Slices used").first.wait_for()
    _pointer_reads_the_dicom_value(page, expected)
    assert expected.study.series.magnitude_rule.startswith("magnitude series")  # the exam's magnitude was paired
    page.get_by_text("Magnitude", exact=True).click()  # the anatomy under the same overlays
    frame = page.frame_locator("[data-testid=stIFrame]").first
    from playwright.sync_api import expect

    expect(frame.get_by_test_id("slice-readout")).to_contain_text("Magnitude image (anatomy)", timeout=30_000)
    _pointer_reads_the_dicom_value(page, expected)  # the pointer still reads the stiffness, not the magnitude
    page.get_by_text("Elastogram", exact=True).click()
    expect(frame.get_by_test_id("slice-readout")).to_contain_text("Grey 0–8 kPa", timeout=30_000)
    _shot(page, "review.png", 2300)
    (tmp_path / "timing.txt").write_text(f"{upload_to_result_s:.2f}\n")
    print(f"\nupload → result in the browser: {upload_to_result_s:.2f} s for {len(expected.slices)} slices "
          f"({expected.model_name} on {expected.device})")

    with page.expect_download(timeout=30_000) as dl:
        page.get_by_role("button", name="Study CSV").first.click()
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    assert len(rows) == 1
    assert rows[0]["patient_id"] == expected.patient_id
    assert rows[0]["stage"] == expected.stage.stage.label
    assert float(rows[0]["stiffness_kpa"]) == pytest.approx(expected.stiffness_kpa, abs=1e-3)

    with page.expect_download(timeout=30_000) as dl:
        page.get_by_role("button", name="Slices CSV").first.click()
    slices = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    assert len(slices) == len(expected.slices)

    page.get_by_role("button", name="Save to results store").first.click()
    page.get_by_text("Saved as revision 1").first.wait_for(timeout=30_000)

    page.get_by_text("Side by side", exact=True).click()
    page.get_by_text("Edit ROI").first.wait_for(timeout=30_000)
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=stIFrame]').length >= {len(expected.slices)}",
                           timeout=60_000)  # every slice's view
    _shot(page, "review_side_by_side.png", 2000)
    page.close()


def test_cohort_and_settings_pages_render(server: str, browser) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"{server}/model_settings")
    page.get_by_text("Staging table").first.wait_for(timeout=60_000)
    page.get_by_text("SHA-256").first.wait_for()
    page.get_by_text("Intended use").first.wait_for()
    _shot(page, "model_settings.png", 1700)
    page.goto(f"{server}/cohort")
    page.get_by_text("Load demo cohort").first.wait_for(timeout=60_000)
    page.get_by_text("Intended use").first.wait_for()
    page.get_by_role("button", name="Load demo cohort").click()
    # a wait limit, not a speed target (docs/PERFORMANCE.md): 24 studies with the stability check's extra passes
    # on a loaded 2-core CPU take several minutes
    page.get_by_text("Pearson r").first.wait_for(timeout=900_000)
    _shot(page, "cohort.png", 2600)
    page.close()


def test_study_sent_by_the_scanner_appears_in_the_worklist_and_is_signed_off(server: str, browser,
                                                                             env: dict[str, str]) -> None:
    """Scanner (dcmtk dcmsend) → listener → worklist in the browser → open → sign off."""
    import shutil

    from mre_core.app.demo import demo_study
    from mre_core.store.inbox import DONE, Inbox
    from mre_core.store.results import Store
    from mre_core.workflow.listener import Listener, ListenerConfig
    from mre_core.workflow.worker import IntakeConfig

    dcmsend = shutil.which("dcmsend")
    if dcmsend is None:
        pytest.fail("dcmsend is missing: run `make system-deps` (apt-get install dcmtk)")
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("MRE_")})
    study_dir = demo_study(Path(env["_TMP"]) / "scanner", seed=8)
    expected = _expected(study_dir, env)
    inbox = Inbox(Store(env["MRE_DB_URL"]), Path(env["MRE_INBOX_DIR"]))
    port = _free_port()
    listener = Listener(inbox, settings, ListenerConfig(port=port, host="127.0.0.1", allow=("SCANNER",)),
                        IntakeConfig(quiet_s=1.0, poll_s=0.2, write_pdf=False))
    listener.start()
    try:
        # dcmsend proposes each file's own transfer syntax (the phantom mixes uncompressed, RLE and JPEG-LS)
        sent = subprocess.run([dcmsend, "-aet", "SCANNER", "-aec", "MRE_REVIEW", "--scan-directories", "--recurse",
                               "127.0.0.1", str(port), str(study_dir)], capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 120
        while (inbox.status(expected.study_uid) or {}).get("status") != DONE:
            assert time.monotonic() < deadline, inbox.status(expected.study_uid)
            time.sleep(0.2)
    finally:
        listener.stop()

    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(server, timeout=120_000, wait_until="domcontentloaded")
    page.get_by_text("awaiting review").first.wait_for(timeout=120_000)
    grid = page.locator("[data-testid=stDataFrame]").first
    grid.wait_for()
    page.wait_for_timeout(1000)
    _shot(page, "worklist.png", 1200)
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the first row's selection box (row markers column)
    page.get_by_role("button", name=f"Open {expected.patient_id} for review").click(timeout=30_000)
    page.get_by_text(f"Stage: {expected.stage.stage.label}").first.wait_for(timeout=120_000)
    page.get_by_text("Saved before").first.wait_for()  # the listener's automatic revision
    page.get_by_label("Reviewer").fill("Dr Browser")
    page.get_by_label("Reviewer").press("Tab")
    page.get_by_role("button", name="Sign off").click()
    page.get_by_text("Signed off by Dr Browser").first.wait_for(timeout=30_000)
    page.close()
    assert list(Store(env["MRE_DB_URL"]).history(expected.study_uid)["kind"]) == ["auto", "signed_off"]


def test_reader_draws_a_polygon_roi_that_is_measured_saved_and_exported(server: str, browser,
                                                                        env: dict[str, str]) -> None:
    """Demo study → slice 3 → *Draw the ROI*, *Replace the automatic ROI* → a polygon drawn with the mouse →
    the page's mean and area are those of the pure rasterisation on the same native pixels → save → SEG."""
    import numpy as np
    import pydicom

    from mre_core.analysis.stiffness import roi_stats
    from mre_core.app.demo import demo_study
    from mre_core.app.review_status import fmt
    from mre_core.app.roi_drawing import DrawMode, Shape, canvas_scale, drawn_roi
    from mre_core.app.slice_viewer import slice_labels
    from mre_core.store.results import Store

    expected = _expected(demo_study(Path(env["_TMP"]) / "demo", seed=0), env)  # what "Load demo study" opens
    i = 2
    e = expected.study.series.slices[i]
    scale = canvas_scale(e.shape)
    assert scale != 1

    page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    page.goto(server)
    page.get_by_role("button", name="Load demo study").click(timeout=60_000)
    page.get_by_text("Slices used").first.wait_for(timeout=180_000)
    page.get_by_text(slice_labels(expected)[i], exact=True).click()
    page.get_by_role("radio", name=slice_labels(expected)[i]).wait_for(state="attached", timeout=30_000)
    _wait_until_idle(page)  # the slice switch reruns the page; a click before it finishes lands on the old slice
    page.get_by_text("Draw the ROI").first.click()
    _wait_until_idle(page)
    page.get_by_text("Replace the automatic ROI", exact=True).first.click(timeout=60_000)
    page.get_by_text("Drawing: Replace the automatic ROI").first.wait_for(timeout=30_000)
    canvas = page.locator("canvas.dc-canvas.upper-canvas").first
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)  # background image and the tool settle
    box = canvas.bounding_box()
    assert box is not None and round(box["width"]) == e.shape[1] * scale

    # the polygon, in whole page pixels (the browser reports whole-pixel mouse positions)
    corners = [(190, 120), (350, 140), (330, 290), (200, 270)]
    clicks = [(round(box["x"] + x), round(box["y"] + y)) for x, y in corners]
    for x, y in clicks:
        page.mouse.click(x, y)
        page.wait_for_timeout(250)
    page.mouse.click(*clicks[0])  # click the first corner again: the polygon closes and is sent

    # expected, from the same native pixels: canvas point = page point - canvas origin; native = canvas / scale
    outline = np.array([(x - box["x"], y - box["y"]) for x, y in clicks]) / scale
    roi = drawn_roi(np.zeros(e.shape, bool), [Shape(DrawMode.REPLACE, outline)], e.confidence, e.kpa)
    stats = roi_stats(e.kpa, roi, e.pixel_spacing_mm)
    assert stats.n_pixels > 100
    page.get_by_text(f"Mean {fmt(stats.mean_kpa, 'kPa')}").first.wait_for(timeout=60_000)
    page.get_by_text(f"ROI {fmt(stats.area_cm2, 'cm²', 1)}").first.wait_for(timeout=10_000)

    page.get_by_label("Reviewer").fill("Dr Draw")
    page.get_by_label("Reviewer").press("Tab")
    page.get_by_text("recorded as drawn by").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Save to results store").first.click()
    page.get_by_text("Saved as revision").first.wait_for(timeout=30_000)
    _shot_drawing(page, canvas)

    saved = Store(env["MRE_DB_URL"]).load_revision(expected.study_uid, expected.series_uid)
    assert saved is not None and saved.kind == "review"
    drawn = saved.edits["roi_drawn"][e.sop_uid]
    assert drawn["kind"] == "replaced" and drawn["by"] == "Dr Draw" and len(drawn["shapes"]) == 1
    np.testing.assert_allclose(drawn["shapes"][0]["points"], outline, atol=1e-3)
    assert np.array_equal(saved.rois[e.sop_uid], roi)  # the reader's ROI, pixel for pixel

    with page.expect_download(timeout=30_000) as dl:
        page.get_by_role("button", name="DICOM SEG").first.click()
    seg = pydicom.dcmread(dl.value.path())
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"  # one slice of five drawn by hand
    assert str(seg.ContentCreatorName) == "Dr Draw^" and "Dr Draw" in seg.SegmentSequence[0].SegmentDescription

    page.get_by_role("button", name="Sign off").click()
    page.get_by_text("Signed off by Dr Draw").first.wait_for(timeout=30_000)
    page.close()
    _reopen_signed_off(server, browser, env, expected, "Dr Draw")


def _signed_off_shown(page, value: str, reviewer: str) -> None:
    """The page shows the signed-off revision: banner, value, reviewer, and Sign off disabled."""
    page.get_by_text("The page shows this revision").first.wait_for(timeout=180_000)
    _wait_until_idle(page)
    banner = page.locator("[data-testid=stAlert]").filter(has_text="Saved before").first.inner_text()
    assert "signed off" in banner, banner
    page.get_by_text(value, exact=True).first.wait_for(timeout=10_000)
    assert page.get_by_label("Reviewer").input_value() == reviewer
    assert page.get_by_role("button", name="Sign off").is_disabled()
    assert page.get_by_text("not saved yet").count() == 0


def _reopen_signed_off(server: str, browser, env: dict[str, str], expected, reviewer: str) -> None:
    """Reload (a new session) and re-open the signed-off study by the demo button, from the cohort page's link and
    from the worklist: each shows the signed-off state; then restore the earlier automatic revision."""
    from urllib.parse import urlencode

    from mre_core.app.review_status import fmt
    from mre_core.store.inbox import Inbox
    from mre_core.store.results import Store
    from mre_core.workflow.worklist import worklist

    store = Store(env["MRE_DB_URL"])
    signed = store.load_revision(expected.study_uid, expected.series_uid)
    assert signed.kind == "signed_off" and signed.reviewer == reviewer
    value = fmt(signed.stiffness_kpa, "kPa")

    page = browser.new_page(viewport={"width": 1500, "height": 1100})  # reload: a new browser session
    page.goto(server)
    page.get_by_role("button", name="Load demo study").click(timeout=60_000)
    _signed_off_shown(page, value, reviewer)
    page.close()

    page = browser.new_page(viewport={"width": 1500, "height": 1100})  # the cohort page's "open" link
    page.goto(f"{server}/?{urlencode({'study_uid': expected.study_uid, 'series_uid': expected.series_uid})}")
    _signed_off_shown(page, value, reviewer)
    page.get_by_text("Slices used").first.wait_for()  # the study itself, with its images, not only its numbers
    page.locator("[data-testid=stIFrame]").first.wait_for(timeout=60_000)  # the elastogram with its ROI overlay
    page.close()

    page = browser.new_page(viewport={"width": 1500, "height": 1100})  # the worklist (its files were kept)
    page.goto(server)
    row = worklist(Inbox(store, Path(env["MRE_INBOX_DIR"]))).reset_index(drop=True)
    i = int(row.index[row["study_uid"] == expected.study_uid][0])
    assert row.loc[i, "status"] == "signed off"
    grid = page.locator("[data-testid=stDataFrame]").first
    grid.wait_for(timeout=120_000)
    page.wait_for_timeout(1000)
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 17 + 35 * i)  # row i's selection box
    page.get_by_role("button", name=f"Open {expected.patient_id} for review").click(timeout=30_000)
    _signed_off_shown(page, value, reviewer)

    # restore the earlier automatic revision: the page says which revision it shows, and the reviewer is cleared
    page.get_by_label("Revision").first.click()
    page.get_by_role("option", name="1", exact=True).click()
    _wait_until_idle(page)
    page.get_by_role("button", name="Restore revision 1 into the review").click()
    page.get_by_text("The page shows revision 1").first.wait_for(timeout=60_000)
    _wait_until_idle(page)
    assert page.get_by_label("Reviewer").input_value() == ""
    assert page.get_by_text("This is saved revision 1.").count() == 1
    page.close()
