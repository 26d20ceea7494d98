"""Browser benchmark of the web app (``python -m mre_core.bench --app``): what a reader waits for.

Starts ``streamlit run app.py`` (headless, a free loopback port, no file watcher, no usage statistics,
no secrets file) on a fresh temporary results store, inbox and temporary folder (the demo studies and
cohorts are written there), with the model of the default settings (the shipped weights, or
``MRE_WEIGHTS_DIR`` / ``MRE_MODEL_NAME``) on ``--device`` (default CPU). Then drives Debian's Chromium
with Playwright and times, in seconds, from the user's action until the page has finished: Streamlit's
script run has ended (its ``script_finished`` message has reached the browser) and the expected element
is visible. Before the next action it also waits until the "Running" status widget is gone.

``server_start_s``
    process start → ``/_stcore/health`` answers ``ok``;
``first_page_cold_s``
    first navigation to ``/`` → the title *Review study* and the intended-use banner (a fresh server);
``demo_study_cold_s``
    first click on *Load demo study* → the *Liver stiffness* metric (writes the phantom study, loads
    the model, analyses);
``demo_study_warm_s``
    the same in a new browser session, ``--repeats`` times (model loaded, phantom on disk; the server has
    analysed these files before, so the Review page shows its cached analysis, and says so:
    :mod:`mre_core.app.analysis_cache`);
``new_study_warm_s``
    in a new browser session, uploading a 5-slice phantom study this server has **not** analysed before
    (``--repeats`` studies, seeds 101, 102, …) → the *Liver stiffness* metric: the model runs (warm: loaded);
    includes sending the 25 files from the browser;
``page_switch_s``
    sidebar navigation Review → Cohort → Model & settings → Review in the last of those sessions
    (the demo study open on Review);
``demo_cohort_s``
    *Load demo cohort* on the Cohort page (``--cohort-patients``, default 24) → its statistics.

Where the time goes, seen from outside the app (no app file is changed), for each step:

- the browser (:mod:`.app_probe`): the server's first answer, the script's end, the element's appearance,
  the messages and KiB sent, the longest silences between messages with the element that came after each,
  the largest messages, and the renderer's main-thread seconds (JavaScript, layout, style: Chrome's
  ``Performance.getMetrics``);
- the server, with ``--sample-interval`` > 0 (default 10 ms): a stack sampler inside the server process
  (:mod:`.server_sampler`): the script thread's time by page call (top-down: which part of the page),
  by deepest project function and by innermost frame; ``--save-samples`` keeps the raw samples;
- the server's log lines.

``--server-option NAME=VALUE`` passes a Streamlit option to the server, to try a configuration change
without editing ``.streamlit/config.toml`` (e.g. ``runner.postScriptGC=false``).

Prints a table with the issue's targets and appends one JSON line to ``--json`` (default
``bench_results.jsonl``). Needs ``/usr/bin/chromium`` (``make system-deps``) and Playwright.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mre_core.bench import server_sampler
from mre_core.bench.app_probe import Step, Tab
from mre_core.bench.study import append_json_line, hardware
from mre_core.config import DEVICES, REPO_ROOT, Settings

CHROMIUM = Path("/usr/bin/chromium")
#: the same flags as tests/test_browser.py
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: pages/cohort.py: the *Patients* input (6–60, default ``mre_core.app.demo.DEMO_PATIENTS``)
COHORT_DEFAULT, COHORT_MIN, COHORT_MAX = 24, 6, 60
#: the issue's targets, seconds ("demo study <= 2 s warm and <= 6 s cold, page switch <= 1 s, demo cohort
#: of 24 <= 30 s"); the cohort target holds for 24 patients
TARGETS = {"demo_study_warm_s": 2.0, "demo_study_cold_s": 6.0, "page_switch_s": 1.0, "demo_cohort_s": 30.0}
METRICS = ("server_start_s", "first_page_cold_s", "demo_study_cold_s", "demo_study_warm_s", "new_study_warm_s",
           "page_switch_s", "demo_cohort_s")
PAGES = ("Review study", "Cohort", "Model & settings")


# ----------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(tmp: Path, device: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: ours, with a private store, inbox and temporary folder under ``tmp``."""
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if base is None else base)
    env.update(MRE_DB_URL=f"sqlite:///{tmp / 'results.sqlite'}", MRE_INBOX_DIR=str(tmp / "inbox"),
               MRE_DEVICE=device, TMPDIR=str(tmp / "tmp"), PYTHONUNBUFFERED="1")
    return env


class Server:
    """``streamlit run app.py`` in a subprocess (under the stack sampler when ``samples`` is given);
    its output lines are kept with their arrival time."""

    def __init__(self, env: dict[str, str], tmp: Path, samples: Path | None, interval: float,
                 extra: list[str] | None = None, launcher: str = "serve") -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.lines: list[tuple[float, str]] = []
        options = ["--server.port", str(self.port), "--server.address", "127.0.0.1", "--server.headless", "true",
                   "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
                   "--secrets.files", str(tmp / "no_secrets.toml"),  # a user's secrets.toml could name their store
                   *(extra or [])]
        serve = ["--serve"] if launcher == "serve" else []
        if samples is not None:
            self.cmd = [sys.executable, "-m", "mre_core.bench.server_sampler", "--out", str(samples),
                        "--interval", str(interval), *serve, "--", "run", str(REPO_ROOT / "app.py"), *options]
        elif launcher == "serve":  # what `make run` starts
            self.cmd = [sys.executable, "-m", "mre_core.app.serve", *options]
        else:
            self.cmd = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app.py"), *options]
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.append((time.time(), line.rstrip()))

    def start(self, timeout_s: float = 120.0) -> float:
        """Start the process; seconds until ``/_stcore/health`` answers ``ok``."""
        self.started_at = time.time()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO_ROOT, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        while time.perf_counter() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200 and r.read().strip() == b"ok":
                        return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"streamlit did not answer at {self.url} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # Streamlit stops on SIGTERM; the sampler flushes at exit
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(f"  {t - self.started_at:8.2f} s  {line}" for t, line in self.lines[-n:])


# ----------------------------------------------------------------------------- the steps
def nav_link(tab: Tab, title: str) -> Any:
    return tab.page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)


def load_demo(tab: Tab, name: str) -> Step:
    return tab.timed(name, lambda: tab.page.get_by_role("button", name="Load demo study").click(),
                     tab.page.get_by_text("Liver stiffness", exact=True), timeout_s=600.0)


def upload_study(tab: Tab, files: list[Path], name: str) -> Step:
    return tab.timed(name, lambda: tab.page.locator('input[type="file"]').first.set_input_files([str(f) for f in files]),
                     tab.page.get_by_text("Liver stiffness", exact=True), timeout_s=600.0)


def new_studies(root: Path, n: int) -> list[list[Path]]:
    """``n`` 5-slice phantom studies (seeds 101, 102, …) the server has not seen: their files, each."""
    from mre_core.phantom.cohort import write_demo_study

    return [sorted(p for p in Path(write_demo_study(root / f"study_{101 + i}", seed=101 + i)).rglob("*") if p.is_file())
            for i in range(n)]


def switch(tab: Tab, title: str, name: str | None = None) -> Step:
    return tab.timed(name or f"page switch → {title}", lambda: nav_link(tab, title).click(), tab.heading(title),
                     timeout_s=120.0)


def load_cohort(tab: Tab, n_patients: int, timeout_s: float) -> Step:
    """On the Cohort page: set *Patients* (a rerun, not timed), then time *Load demo cohort*."""
    box = tab.page.locator('input[aria-label="Patients"]')
    if box.input_value() != str(n_patients):
        n0, _ = tab.marks()
        box.fill(str(n_patients))
        box.press("Enter")
        tab.page.wait_for_function(f"() => window.__mreWs.finished > {n0}", timeout=60_000, polling=50)
        tab.wait_idle(60.0)
    return tab.timed(f"demo cohort ({n_patients} patients)",
                     lambda: tab.page.get_by_role("button", name="Load demo cohort").click(),
                     tab.page.get_by_text("Pearson r").first, timeout_s=timeout_s)


@dataclass
class Run:
    server_start_s: float = math.nan
    steps: list[Step] = field(default_factory=list)
    cohort_error: str | None = None

    def of(self, prefix: str) -> list[Step]:
        return [s for s in self.steps if s.name.startswith(prefix)]


def drive(url: str, args: argparse.Namespace, run: Run) -> None:
    """Every timed step, in order, on the running server."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(args.chromium), args=CHROMIUM_ARGS)
        tab = None
        try:
            tab = Tab.open(browser)
            run.steps.append(tab.first_page(url))
            run.steps.append(load_demo(tab, "demo study cold"))
            for i in range(args.repeats):
                tab.close()
                tab = Tab.open(browser)
                tab.first_page(url)  # a new session, not timed
                run.steps.append(load_demo(tab, f"demo study warm {i + 1}"))
            for i, files in enumerate(args.new_studies):
                tab.close()
                tab = Tab.open(browser)
                tab.first_page(url)
                run.steps.append(upload_study(tab, files, f"new study warm {i + 1}"))
            if args.new_studies:  # the page switches start from the demo study, as before
                tab.close()
                tab = Tab.open(browser)
                tab.first_page(url)
                load_demo(tab, "demo study again (not timed)")
            for title in (*PAGES[1:], PAGES[0]):  # Review → Cohort → Model & settings → Review
                run.steps.append(switch(tab, title))
            if not args.skip_cohort:
                switch(tab, "Cohort", "to the cohort page")
                try:
                    run.steps.append(load_cohort(tab, args.cohort_patients, args.cohort_timeout_s))
                except PlaywrightTimeout as exc:
                    run.cohort_error = f"no statistics within {args.cohort_timeout_s:.0f} s ({exc.__class__.__name__})"
        except Exception:
            if tab is not None:
                _failure_screenshot(tab.page)
            raise
        finally:
            browser.close()


def _failure_screenshot(page: Any) -> None:
    path = Path(tempfile.gettempdir()) / "mre_app_bench_failure.png"
    try:
        page.screenshot(path=str(path), full_page=True)
        print(f"page at the failure: {path}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - a diagnostic only
        pass


def attach_profiles(run: Run, samples_path: Path) -> None:
    """Each step's server-side samples (from the step's action to its end)."""
    samples = server_sampler.load(samples_path)
    for s in run.steps:
        s.server = server_sampler.summarize(samples, s.t0, s.t0 + s.seconds)


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The checked-out commit, read from ``.git`` (no git process); ``None`` when it cannot be read."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        bases = [git]
        if (git / "commondir").is_file():
            bases.append((git / (git / "commondir").read_text().strip()).resolve())
        for base in bases:
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
            if (base / "packed-refs").is_file():
                for line in (base / "packed-refs").read_text().splitlines():
                    if line.endswith(f" {ref}"):
                        return line.split(" ", 1)[0]
    except (OSError, IndexError):
        return None
    return None


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def record(run: Run, args: argparse.Namespace, settings: Settings, server: Server) -> dict[str, Any]:
    """The JSON line: every number, the machine, the model, the breakdowns and the server's log."""
    warm = [s.seconds for s in run.of("demo study warm")]
    new = [s.seconds for s in run.of("new study warm")]
    switches = [s.seconds for s in run.of("page switch")]
    cohort = run.of("demo cohort")
    hw = hardware()
    return {
        "benchmark": "app",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "hardware": hw,
        "cpu_count": os.cpu_count(),
        "torch_threads": hw["cpu_threads_torch"],
        "load_avg_1m_at_start": args.load_at_start,
        "load_avg_1m_at_end": os.getloadavg()[0],
        "device": settings.device,
        "model": settings.model_name,
        "weights_dir": str(settings.weights_dir),
        "repeats": args.repeats,
        "cohort_patients": None if args.skip_cohort else args.cohort_patients,
        "sample_interval_s": args.sample_interval,
        "server_options": args.server_option, "launcher": args.launcher,
        "server_start_s": run.server_start_s,
        "first_page_cold_s": run.of("first page")[0].seconds,
        "demo_study_cold_s": run.of("demo study cold")[0].seconds,
        "demo_study_warm_s": warm,
        "demo_study_warm_median_s": _median(warm),
        "new_study_warm_s": new,
        "new_study_warm_median_s": _median(new),
        "page_switch_s": switches,
        "page_switch_median_s": _median(switches),
        "demo_cohort_s": cohort[0].seconds if cohort else None,
        "demo_cohort_error": run.cohort_error,
        "targets_s": TARGETS,
        "steps": [{"name": s.name, "t0": s.t0, "seconds": s.seconds, "until_idle_s": s.idle_s, "browser": s.browser,
                   "server": s.server} for s in run.steps],
        "server_log": [[round(t - server.started_at, 3), line] for t, line in server.lines[-60:]],
    }


# ----------------------------------------------------------------------------- the report
def _verdict(value: float | None, target: float | None) -> str:
    if target is None or value is None or not math.isfinite(value):
        return ""
    return "ok" if value <= target else f"over ({value / target:.1f}x)"


def format_table(r: dict[str, Any]) -> str:
    """metric · seconds · target · verdict, with the single timings of the repeated steps."""
    n = r["cohort_patients"]
    rows: list[tuple[str, float | None, float | None, str]] = [
        ("server_start_s", r["server_start_s"], None, ""),
        ("first_page_cold_s", r["first_page_cold_s"], None, ""),
        ("demo_study_cold_s", r["demo_study_cold_s"], TARGETS["demo_study_cold_s"], ""),
        ("demo_study_warm_s (median)", r["demo_study_warm_median_s"], TARGETS["demo_study_warm_s"],
         " ".join(f"{x:.2f}" for x in r["demo_study_warm_s"])),
        ("new_study_warm_s (median)", r.get("new_study_warm_median_s"), None,
         " ".join(f"{x:.2f}" for x in r.get("new_study_warm_s", [])) + "  (not analysed before: the model runs)"),
        ("page_switch_s (median)", r["page_switch_median_s"], TARGETS["page_switch_s"],
         " ".join(f"{x:.2f}" for x in r["page_switch_s"]) + "  (→ Cohort, → Model & settings, → Review)"),
    ]
    if n is not None:
        rows.append((f"demo_cohort_s ({n} patients)", r["demo_cohort_s"],
                     TARGETS["demo_cohort_s"] if n == COHORT_DEFAULT else None, r["demo_cohort_error"] or ""))
    lines = [f"model {r['model']} on {r['device']} · {r['cpu_count']} CPUs · torch threads {r['torch_threads']} · "
             f"load average {r['load_avg_1m_at_start']:.2f} at the start · commit {(r['git_commit'] or '?')[:12]}",
             f"{'metric':<30} {'seconds':>8}  {'target':>7}  {'':<12} each"]
    for name, value, target, each in rows:
        shown = f"{value:8.2f}" if value is not None and math.isfinite(value) else f"{'—':>8}"
        lines.append(f"{name:<30} {shown}  {('≤ %g' % target) if target else '':>7}  "
                     f"{_verdict(value, target):<12} {each}")
    return "\n".join(lines)


def format_breakdown(r: dict[str, Any]) -> str:
    """Per step: the browser's view and, when sampled, the server's."""
    out = ["", "where the time goes (browser: from the action; server: stack samples of the script thread)"]
    for s in r["steps"]:
        b = s["browser"]
        out.append(f"{s['name']}: {s['seconds']:.2f} s · first server message {_s(b.get('first_message_s'))} · "
                   f"script end {_s(b.get('script_end_s'))} · element visible {_s(b.get('element_visible_s'))} · "
                   f"status widget gone {_s(s['until_idle_s'])} · {b.get('messages', 0)} messages, "
                   f"{b.get('kib', 0):.0f} KiB")
        rd = b.get("renderer")
        if rd:
            out.append(f"    browser main thread: tasks {rd['tasks_s']:.2f} s (JavaScript {rd['script_s']:.2f} s, layout "
                       f"{rd['layout_s']:.2f} s, style {rd['style_s']:.2f} s)")
        if "html_first_byte_s" in b:
            out.append(f"    HTML first byte {_s(b['html_first_byte_s'])} · DOM ready {_s(b['dom_content_loaded_s'])}"
                       f" · {b['static_files']} static files ({b['static_kib']:.0f} KiB) done "
                       f"{_s(b['static_files_done_s'])} · websocket open {_s(b['websocket_open_s'])}")
        gaps = "; ".join(f"{g:.2f} s {what}" for g, what in b.get("longest_gaps", []))
        if gaps:
            out.append(f"    longest silences: {gaps}")
        big = "; ".join(f"{k:.0f} KiB {what}" for k, what in b.get("largest", []))
        if big:
            out.append(f"    largest messages: {big}")
        sv = s.get("server") or {}
        if sv:
            out.append(f"    server ({sv['sampled_s']:.2f} s sampled): script thread {sv['script_s']:.2f} s, main thread "
                       f"busy {sv['main_busy_s']:.2f} s ("
                       + "; ".join(f"{k} {v:.2f} s" for k, v in sv["main_by_leaf"]) + ")")
            out.append("      by page call:        " + "; ".join(f"{k} {v:.2f} s" for k, v in sv["by_page_call"]))
            out.append("      by project function: " + "; ".join(f"{k} {v:.2f} s" for k, v in sv["by_project_function"]))
            out.append("      by innermost frame:  " + "; ".join(f"{k} {v:.2f} s" for k, v in sv["by_leaf"]))
    if r["server_log"]:
        out += ["", "server log (seconds since the process started):"]
        out += [f"  {t:8.2f}  {line}" for t, line in r["server_log"]]
    return "\n".join(out)


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def streamlit_flags(options: list[str]) -> list[str]:
    """``["runner.postScriptGC=false"]`` → ``["--runner.postScriptGC", "false"]``.

    >>> streamlit_flags(["runner.postScriptGC=false", "server.enableXsrfProtection=true"])
    ['--runner.postScriptGC', 'false', '--server.enableXsrfProtection', 'true']
    """
    flags = []
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name:
            raise ValueError(f"--server-option {option!r}: use NAME=VALUE")
        flags += [f"--{name}", value]
    return flags


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mre_core.bench --app", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="warm demo-study loads, each in a new session (default 3)")
    p.add_argument("--cohort-patients", type=int, default=COHORT_DEFAULT,
                   help=f"patients of the demo cohort ({COHORT_MIN}–{COHORT_MAX}, the page's range; default 24)")
    p.add_argument("--skip-cohort", action="store_true", help="leave out the demo cohort")
    p.add_argument("--cohort-timeout-s", type=float, default=600.0, help="give up on the cohort after this long")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="the server's device (default cpu)")
    p.add_argument("--sample-interval", type=float, default=0.01,
                   help="seconds between the server's stack samples; 0: no sampler (default %(default)s)")
    p.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE",
                   help="a Streamlit config option for the server, e.g. runner.postScriptGC=false (an experiment "
                        "without editing .streamlit/config.toml; repeatable)")
    p.add_argument("--save-samples", type=Path, default=None,
                   help="keep the server's stack samples here (format: mre_core/bench/server_sampler.py)")
    p.add_argument("--launcher", choices=("serve", "streamlit"), default="serve",
                   help="serve: as `make run` starts the app (python -m mre_core.app.serve, modules loaded before the "
                        "first connection); streamlit: plain `streamlit run app.py` (default %(default)s)")
    p.add_argument("--chromium", type=Path, default=CHROMIUM)
    p.add_argument("--json", type=Path, default=Path("bench_results.jsonl"), help="append the JSON line here")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if not COHORT_MIN <= args.cohort_patients <= COHORT_MAX:
        p.error(f"--cohort-patients must lie in {COHORT_MIN}–{COHORT_MAX} (the Cohort page's range)")
    try:
        streamlit_flags(args.server_option)
    except ValueError as exc:
        p.error(str(exc))
    if not args.chromium.is_file():
        print(f"error: {args.chromium} is missing: run `make system-deps` (apt-get install chromium)", file=sys.stderr)
        return 1
    args.load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mre_app_bench_") as tmp_name:
        tmp = Path(tmp_name)
        env = server_env(tmp, args.device)
        settings = Settings.from_env(env)
        if not settings.weights_path.is_file():
            print(f"error: model weights not found: {settings.weights_path}", file=sys.stderr)
            return 1
        args.new_studies = new_studies(tmp / "new_studies", args.repeats)
        samples = tmp / "samples.tsv" if args.sample_interval > 0 else None
        server = Server(env, tmp, samples, args.sample_interval, streamlit_flags(args.server_option), args.launcher)
        run = Run()
        try:
            run.server_start_s = server.start()
            drive(server.url, args, run)
        except Exception as exc:  # noqa: BLE001 - report what was measured and the server's last words
            print(f"error: {type(exc).__name__}: {exc}\nserver log:\n{server.log_tail()}", file=sys.stderr)
            return 1
        finally:
            server.stop()
        if samples is not None and samples.is_file():
            attach_profiles(run, samples)
            if args.save_samples is not None:
                shutil.copyfile(samples, args.save_samples)
        result = record(run, args, settings, server)
    print(format_table(result))
    print(format_breakdown(result))
    append_json_line(args.json, result)
    if run.cohort_error:
        print(f"error: demo cohort: {run.cohort_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
