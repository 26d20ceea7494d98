"""Where a Streamlit server spends its time, seen from inside its process without changing the app.

``python -m mre_core.bench.server_sampler --out FILE --interval S -- run app.py …`` starts a sampling thread,
then runs ``streamlit`` exactly as ``python -m streamlit run app.py …`` would (:func:`runpy.run_module`).
Every ``S`` seconds the thread reads every thread's Python stack (:func:`sys._current_frames`) and writes
the stacks of Streamlit's script threads (``ScriptRunner.scriptThread``: the pages running) and of the
main thread (Tornado: websocket traffic, message serialisation) to ``FILE``:

``# <id> <frame;frame;…>``
    a stack seen for the first time, root first, each frame ``<file>:<function>``;
``<time> <weight> <S|M> <id>``
    one sample: wall-clock time (``time.time()``), the seconds it stands for (time since the previous
    tick), script (``S``) or main (``M``) thread, stack id.

:func:`load` reads the file back and :func:`summarize` says, for a time window, how long the script
threads ran and under which project function (the deepest frame in ``mre_core/``, ``pages/`` or ``app.py``)
and which library function (the innermost frame) the time went. Native threads (torch's intra-op
pool) have no Python stack; their work shows under the Python frame that called into torch.

Imports nothing from the app and not Streamlit itself (the server is started by module name).
"""

from __future__ import annotations

import argparse
import atexit
import runpy
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT_THREAD = "ScriptRunner.scriptThread"
#: the innermost frames of an idle Tornado main thread (waiting in epoll)
IDLE_LEAVES = frozenset({"selectors.py:select"})
MAX_WEIGHT_S = 2.0


_SHORT: dict[str, str] = {}  #: file name → its short form (one server sees a few thousand files)


def frame_name(filename: str, function: str) -> str:
    """``mre_core/app/demo.py:demo_study``, ``torch/nn/modules/conv.py:forward`` or ``threading.py:wait``."""
    short = _SHORT.get(filename)
    if short is None:
        path = filename.replace("\\", "/")
        root = str(REPO_ROOT).replace("\\", "/") + "/"
        if "/site-packages/" in path:
            short = path.split("/site-packages/", 1)[1]
        elif path.startswith(root):
            short = path[len(root):]
        else:
            short = path.rsplit("/", 1)[-1]
        _SHORT[filename] = short
    return f"{short}:{function}"


def is_project_frame(name: str) -> bool:
    """A frame of this repository's code (not the venv, not the standard library)."""
    return name.startswith(("mre_core/", "pages/", "app.py:")) and not name.startswith("mre_core/bench/")


class StackSampler(threading.Thread):
    """Writes the script and main threads' stacks to ``out`` every ``interval`` seconds (a daemon thread)."""

    def __init__(self, out: Path, interval: float) -> None:
        super().__init__(name="mre-bench-sampler", daemon=True)
        self.interval = interval
        self._file = open(out, "w", buffering=1 << 16)  # noqa: SIM115 - closed in stop()
        self._stacks: dict[tuple[str, ...], int] = {}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    @staticmethod
    def _thread_name(ident: int) -> str:
        # looked up on every tick: a new thread (every script run starts one) may reuse a dead thread's ident
        thread = threading._active.get(ident)  # type: ignore[attr-defined]  # CPython's id → Thread map
        return thread.name if thread is not None else ""

    def _stack_id(self, frame) -> int:
        names = []
        while frame is not None:
            names.append(frame_name(frame.f_code.co_filename, frame.f_code.co_name))
            frame = frame.f_back
        stack = tuple(reversed(names))
        sid = self._stacks.get(stack)
        if sid is None:
            sid = self._stacks[stack] = len(self._stacks)
            self._file.write(f"#\t{sid}\t{';'.join(stack)}\n")
        return sid

    def run(self) -> None:
        me = threading.get_ident()
        previous = time.time()
        next_flush = previous + 1.0
        while not self._stop_event.wait(self.interval):
            now = time.time()
            # the time since the previous tick: longer than the interval when another thread held the GIL (a C
            # extension, the garbage collector); capped, so that a suspended process does not count as work
            weight = min(now - previous, MAX_WEIGHT_S)
            previous = now
            with self._lock:
                if self._file.closed:
                    return
                for ident, frame in sys._current_frames().items():
                    if ident == me:
                        continue
                    name = self._thread_name(ident)
                    kind = "S" if name.startswith(SCRIPT_THREAD) else "M" if name == "MainThread" else None
                    if kind is not None:
                        self._file.write(f"{now:.4f}\t{weight:.4f}\t{kind}\t{self._stack_id(frame)}\n")
                if now >= next_flush:
                    self._file.flush()
                    next_flush = now + 1.0

    def stop(self) -> None:
        self._stop_event.set()
        with self._lock:
            if not self._file.closed:
                self._file.close()


@dataclass
class Samples:
    """A sampler file read back: stacks by id and (time, weight, kind, stack id) rows in time order."""

    stacks: dict[int, tuple[str, ...]] = field(default_factory=dict)
    rows: list[tuple[float, float, str, int]] = field(default_factory=list)


def load(path: Path) -> Samples:
    """Read a sampler file (a line cut short by the server's exit is skipped)."""
    out = Samples()
    for line in Path(path).read_text(errors="replace").splitlines():
        parts = line.split("\t")
        try:
            if parts[0] == "#" and len(parts) == 3:
                out.stacks[int(parts[1])] = tuple(parts[2].split(";"))
            elif len(parts) == 4:
                out.rows.append((float(parts[0]), float(parts[1]), parts[2], int(parts[3])))
        except ValueError:
            continue
    out.rows.sort()
    return out


def page_call(stack: tuple[str, ...]) -> str:
    """What a page was doing: the first project function it called (``mre_core/app/downloads.py:
    download_buttons``), the page's own line when it called only Streamlit or a library, ``app.py`` for the
    router and sidebar, or ``(streamlit) <innermost Streamlit frame>`` outside any page (e.g. after the run).

    >>> page_call(("threading.py:run", "pages/review.py:<module>", "streamlit/x.py:f", "mre_core/app/a.py:g",
    ...            "mre_core/io/b.py:h", "numpy/c.py:k"))
    'mre_core/app/a.py:g'
    """
    pages = [i for i, f in enumerate(stack) if f.startswith("pages/")]
    if pages:
        below = stack[pages[-1] + 1:]
        return next((f for f in below if is_project_frame(f)), stack[pages[-1]])
    routers = [f for f in stack if f.startswith("app.py:")]
    if routers:
        return routers[-1]
    return "(streamlit) " + next((f for f in reversed(stack) if f.startswith("streamlit/")), stack[-1] if stack else "?")


def summarize(samples: Samples, t0: float, t1: float, top: int = 6) -> dict[str, object]:
    """Seconds the server spent between wall-clock ``t0`` and ``t1``.

    ``sampled_s``: the time the samples cover (about ``t1 - t0``; less means the sampler was starved);
    ``script_s``: script threads running (summed over threads: two sessions at once count twice);
    ``main_busy_s``: the main thread not waiting in epoll; ``by_page_call``: script time by :func:`page_call`
    (top-down: which part of the page); ``by_project_function``: script time by the
    deepest project frame on the stack (so a call into torch or Streamlit counts for the project function
    that made it; ``(streamlit) <its innermost frame>`` when no project frame is on the stack); ``by_leaf``:
    script time by the
    innermost frame; ``main_by_leaf``: the busy main thread's time by innermost frame. Seconds, largest
    first, ``top`` of each.
    """
    script = main_busy = sampled = 0.0
    by_page: Counter[str] = Counter()
    by_project: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    main_leaf: Counter[str] = Counter()
    for t, w, kind, sid in samples.rows:
        if not t0 <= t <= t1:
            continue
        stack = samples.stacks.get(sid, ())
        leaf = stack[-1] if stack else "?"
        if kind == "M":  # the main thread is in every tick
            sampled += w
            if leaf not in IDLE_LEAVES:
                main_busy += w
                main_leaf[leaf] += w
            continue
        script += w
        project = next((f for f in reversed(stack) if is_project_frame(f)), None)
        if project is None:  # Streamlit's own work (e.g. its gc.collect after each run): its innermost frame
            project = "(streamlit) " + next((f for f in reversed(stack) if f.startswith("streamlit/")), leaf)
        by_project[project] += w
        by_page[page_call(stack)] += w
        by_leaf[leaf] += w
    return {"sampled_s": sampled, "script_s": script, "main_busy_s": main_busy,
            "by_page_call": [[k, v] for k, v in by_page.most_common(top)],
            "by_project_function": [[k, v] for k, v in by_project.most_common(top)],
            "by_leaf": [[k, v] for k, v in by_leaf.most_common(top)],
            "main_by_leaf": [[k, v] for k, v in main_leaf.most_common(3)]}


def self_check(samples: Samples) -> dict[str, int]:
    """How many samples of each kind the file holds (0 script samples: the sampler saw no page run)."""
    counts: dict[str, int] = defaultdict(int)
    for _, _, kind, _ in samples.rows:
        counts[kind] += 1
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mre_core.bench.server_sampler", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the samples file (overwritten)")
    p.add_argument("--interval", type=float, default=0.01, help="seconds between samples (default %(default)s)")
    p.add_argument("--serve", action="store_true",
                   help="start the app as `make run` does (python -m mre_core.app.serve: warmed up first); the "
                        "arguments after -- are then `run app.py OPTIONS` as for streamlit")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="-- then the arguments of `streamlit`")
    args = p.parse_args(argv)
    rest = args.streamlit_args[1:] if args.streamlit_args[:1] == ["--"] else args.streamlit_args
    sampler = StackSampler(args.out, args.interval)
    sampler.start()
    atexit.register(sampler.stop)
    if args.serve:  # run as a program, like `python -m mre_core.app.serve OPTIONS` (bench does not import the app)
        sys.argv = ["mre_core.app.serve", *(rest[2:] if rest[:1] == ["run"] else rest)]
        runpy.run_module("mre_core.app.serve", run_name="__main__", alter_sys=True)
        return 0
    sys.argv = ["streamlit", *rest]
    runpy.run_module("streamlit", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
