"""The browser side of the app benchmark: what reaches the page over Streamlit's websocket, and when.

:data:`PROBE_JS` is added to every page before Streamlit's own code runs. It wraps ``window.WebSocket``
and records, for each message the server sends, the arrival time (epoch ms), its size, its
``ForwardMsg`` type and its first 400 bytes; ``window.__mreWs.finished`` counts the ``script_finished``
messages that end a run (not those that end it early for a rerun). So the benchmark knows exactly when
the server's script run ended, and :func:`decode` / :func:`breakdown` say afterwards where the time
between a click and that end went: the wait for the server's first answer, the gaps between elements
(a long gap before an element is the time the page spent computing it) and the bytes sent.
:class:`Tab` is one such page in its own browser context (its own Streamlit session): it times an action
until the run has ended and an element is visible, with the renderer's main-thread seconds meanwhile.

No Streamlit import: the message types are ``ForwardMsg``'s field numbers (Streamlit 1.67; a test checks
them against ``streamlit.proto``), the labels are the text found in an element's first bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROBE_JS = r"""
(() => {
  if (window.__mreWs) return;
  const log = window.__mreWs = {msgs: [], finished: 0, finishedAt: null, opened: null};
  const now = () => performance.timeOrigin + performance.now();
  const varint = (b, i) => {
    let x = 0, s = 1, c;
    do { c = b[i++]; x += (c & 127) * s; s *= 128; } while ((c & 128) && i < b.length);
    return [x, i];
  };
  const kind = (b) => {  // the ForwardMsg's type: its first field after hash (1) and metadata (2)
    let i = 0;
    while (i < b.length) {
      let tag, n, v;
      [tag, i] = varint(b, i);
      const f = Math.floor(tag / 8), w = tag & 7;
      if (w === 0) { [v, i] = varint(b, i); if (f > 2) return [f, v]; }
      else if (w === 2) { [n, i] = varint(b, i); if (f > 2) return [f, -1]; i += n; }
      else if (w === 1) i += 8;
      else if (w === 5) i += 4;
      else break;
    }
    return [0, -1];
  };
  const record = (t, buf) => {
    const b = new Uint8Array(buf);
    const [f, v] = kind(b);
    log.msgs.push({t, n: b.length, f, v, head: Array.from(b.subarray(0, 400))});
    if (f === 6 && v !== 2) { log.finished += 1; log.finishedAt = t; }  // 2: FINISHED_EARLY_FOR_RERUN
  };
  const Native = window.WebSocket;
  class Probed extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('open', () => { log.opened = now(); });
      this.addEventListener('message', (ev) => {  // registered before Streamlit's onmessage: arrival time
        const t = now();
        if (ev.data instanceof ArrayBuffer) record(t, ev.data);
        else if (ev.data && ev.data.arrayBuffer) ev.data.arrayBuffer().then((buf) => record(t, buf));
      });
    }
  }
  window.WebSocket = Probed;
})();
"""

#: the page is idle: no status widget, or one that no longer says it is running
IDLE_JS = ("() => { const w = document.querySelector('[data-testid=\"stStatusWidget\"]');"
           " return !w || (!w.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')"
           " && !/Running/i.test(w.innerText)); }")

#: ``ForwardMsg`` field number → type (Streamlit 1.67, ``streamlit/proto/ForwardMsg.proto``)
FORWARD_MSG_TYPES = {4: "new_session", 5: "delta", 6: "script_finished", 9: "session_status_changed",
                     10: "session_event", 11: "ref_hash", 12: "page_info_changed", 13: "page_config_changed",
                     14: "git_info_changed", 15: "page_not_found", 18: "page_profile", 19: "file_urls_response",
                     20: "parent_message", 21: "auto_rerun", 22: "logo", 23: "navigation", 24: "auth_redirect",
                     26: "heartbeat_ack", 27: "backend_operation_response", 28: "stop_auto_rerun"}


#: ``Element`` field number → element type (Streamlit 1.67, ``Element.proto``), the ones worth naming
ELEMENT_TYPES = {1: "text", 2: "empty", 5: "progress", 6: "imgs", 16: "plotly_chart", 19: "button", 20: "checkbox",
                 21: "slider", 23: "radio", 25: "selectbox", 28: "multiselect", 29: "markdown", 30: "alert",
                 31: "json", 32: "number_input", 33: "file_uploader", 37: "component_instance", 38: "iframe",
                 40: "dataframe", 42: "metric", 43: "download_button", 44: "spinner", 47: "heading", 50: "toast",
                 54: "html", 55: "button_group", 59: "bidi_component"}
#: ``Delta`` field numbers: a new element, a new block (container, columns, expander)
NEW_ELEMENT, ADD_BLOCK = 3, 6


@dataclass(frozen=True)
class Message:
    """One websocket message from the server: arrival (epoch s), bytes, type and a label for people."""

    t: float
    n_bytes: int
    kind: str
    label: str


def _varint(b: bytes, i: int) -> tuple[int, int]:
    x = shift = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return x, i


def fields(b: bytes) -> list[tuple[int, int, bytes | int]]:
    """Protobuf wire fields ``(number, wire type, value)`` of ``b``; stops quietly where ``b`` is cut short.

    >>> fields(bytes([0x08, 0x96, 0x01, 0x12, 0x02, 0x68, 0x69]))
    [(1, 0, 150), (2, 2, b'hi')]
    """
    out: list[tuple[int, int, bytes | int]] = []
    i = 0
    try:
        while i < len(b):
            tag, i = _varint(b, i)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                break
            if wire == 0:
                value, i = _varint(b, i)
                out.append((number, wire, value))
            elif wire == 2:
                n, i = _varint(b, i)
                out.append((number, wire, b[i:i + n]))
                i += n
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            else:
                break
    except ValueError:
        pass
    return out


def _texts(b: bytes, depth: int = 0) -> list[str]:
    """Readable strings inside a (possibly truncated) protobuf message, in order."""
    out: list[str] = []
    for _, wire, value in fields(b):
        if wire != 2 or not isinstance(value, bytes) or not value:
            continue
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if len(text) >= 2 and text.isprintable():
            out.append(text)
        elif depth < 12:
            out.extend(_texts(value, depth + 1))
    return out


def _label(texts: list[str]) -> str:
    """The first words an element shows (not its ids, keys or hashes)."""
    words = [t for t in texts if not t.startswith(("$$", "{", "[")) and t != "streamlit"  # plotly's theme
             and not (len(t) >= 16 and all(c in "0123456789abcdef-_" for c in t.lower()))]
    return " · ".join(w[:48] for w in words[:2])


def _delta_type(delta: bytes) -> str:
    """``plotly_chart``, ``metric``, … for a new element, ``block`` for a new container."""
    for number, _, value in fields(delta):
        if number == ADD_BLOCK:
            return "block"
        if number == NEW_ELEMENT and isinstance(value, bytes):
            for inner, _, _ in fields(value):
                if inner in ELEMENT_TYPES:
                    return ELEMENT_TYPES[inner]
            return "element"
    return ""


def decode(raw: dict) -> Message:
    """A message as recorded by :data:`PROBE_JS` (``{t, n, f, v, head}``)."""
    kind = FORWARD_MSG_TYPES.get(int(raw["f"]), f"field {raw['f']}")
    label = ""
    if kind == "delta":
        payload = next((v for n, w, v in fields(bytes(raw["head"])) if n == 5 and isinstance(v, bytes)), b"")
        label = _delta_type(payload)
        words = _label(_texts(payload))
        label = f"{label}: {words}" if label and words else label or words
    elif kind == "script_finished":
        label = {0: "finished", 1: "compile error", 2: "early, for a rerun", 3: "fragment finished"}.get(
            int(raw["v"]), str(raw["v"]))
    return Message(t=float(raw["t"]) / 1000.0, n_bytes=int(raw["n"]), kind=kind, label=label)


def breakdown(messages: list[Message], t0: float, t_end: float, gaps: int = 3) -> dict[str, object]:
    """Where the time from the action (``t0``) to the end of the page (``t_end``) went, seen by the browser.

    ``first_message_s``: the server's first answer; ``script_end_s``: the last ``script_finished``;
    ``messages``, ``kib``: what was sent; ``longest_gaps``: ``[seconds, "before <kind: label>"]``, the
    longest silences (the first one counts from the action), longest first; ``largest``: ``[KiB, "<kind:
    label>"]``, the largest messages.
    """
    msgs = [m for m in messages if t0 <= m.t <= t_end + 1e-3]
    finished = [m for m in msgs if m.kind == "script_finished" and m.label != "early, for a rerun"]
    silences: list[tuple[float, str]] = []
    previous = t0
    for m in msgs:
        silences.append((m.t - previous, f"before {m.kind}{': ' + m.label if m.label else ''}"))
        previous = m.t
    silences.sort(key=lambda s: -s[0])
    largest = sorted(msgs, key=lambda m: -m.n_bytes)[:gaps]
    return {
        "first_message_s": msgs[0].t - t0 if msgs else None,
        "script_end_s": finished[-1].t - t0 if finished else None,
        "messages": len(msgs),
        "kib": sum(m.n_bytes for m in msgs) / 1024.0,
        "longest_gaps": [[round(s, 3), what] for s, what in silences[:gaps]],
        "largest": [[round(m.n_bytes / 1024.0, 1), f"{m.kind}{': ' + m.label if m.label else ''}"] for m in largest],
    }


# ----------------------------------------------------------------------------- timed actions in a browser tab
#: Chrome's renderer counters (``Performance.getMetrics``, cumulative seconds of the page's main thread)
RENDERER_METRICS = {"tasks_s": "TaskDuration", "script_s": "ScriptDuration", "layout_s": "LayoutDuration",
                    "style_s": "RecalcStyleDuration"}


@dataclass
class Step:
    """One timed action: its name, start (epoch s), the seconds it took and what was seen meanwhile."""

    name: str
    t0: float
    seconds: float
    idle_s: float  #: until the status widget was gone too
    browser: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tab:
    """A page in its own browser context (so its own Streamlit session), probed, with a CDP session."""

    page: Any
    cdp: Any

    @classmethod
    def open(cls, browser: Any) -> Tab:
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        context.add_init_script(PROBE_JS)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        return cls(page, cdp)

    def renderer(self) -> dict[str, float]:
        """The renderer's main-thread seconds so far: all tasks, JavaScript, layout, style."""
        got = {m["name"]: float(m["value"]) for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return {k: got.get(name, 0.0) for k, name in RENDERER_METRICS.items()}

    def close(self) -> None:
        self.page.context.close()

    def heading(self, title: str) -> Any:
        return self.page.locator("h1", has_text=title)

    def wait_idle(self, timeout_s: float) -> None:
        self.page.wait_for_function(IDLE_JS, timeout=timeout_s * 1000.0, polling=50)

    def marks(self) -> tuple[int, int]:
        """(runs finished, messages received) so far."""
        n, m = self.page.evaluate("[window.__mreWs.finished, window.__mreWs.msgs.length]")
        return int(n), int(m)

    def timed(self, name: str, action: Callable[[], None], expect: Any, timeout_s: float = 300.0) -> Step:
        """Run ``action``; seconds until a script run has ended and ``expect`` is visible (then wait until idle)."""
        n0, mark = self.marks()
        before = self.renderer()
        t0 = time.time()
        action()
        step = self.finish(name, t0, n0, mark, expect, timeout_s)
        after = self.renderer()
        step.browser["renderer"] = {k: after[k] - before[k] for k in after}
        return step

    def finish(self, name: str, t0: float, n0: int, mark: int, expect: Any, timeout_s: float) -> Step:
        """Wait for ``expect`` and for a run after the ``n0``-th to end; the step from ``t0``."""
        expect.first.wait_for(state="visible", timeout=timeout_s * 1000.0)
        t_visible = time.time()
        self.page.wait_for_function(f"() => window.__mreWs.finished > {n0}", timeout=timeout_s * 1000.0, polling=50)
        self.wait_idle(timeout_s)
        t_idle = time.time()
        raw = self.page.evaluate(f"[window.__mreWs.msgs.slice({mark}), window.__mreWs.finishedAt]")
        t_end = max(t_visible, float(raw[1]) / 1000.0)
        step = Step(name, t0, t_end - t0, t_idle - t0, breakdown([decode(m) for m in raw[0]], t0, t_end))
        step.browser["element_visible_s"] = t_visible - t0
        return step

    def first_page(self, url: str, timeout_s: float = 120.0) -> Step:
        """The tab's first load of ``url``: until *Review study* and the intended-use banner, with the navigation
        timing of the HTML, the static files and the websocket."""
        t0 = time.time()
        self.page.goto(url, wait_until="commit", timeout=timeout_s * 1000.0)
        self.heading("Review study").first.wait_for(state="visible", timeout=timeout_s * 1000.0)
        step = self.finish("first page", t0, 0, 0, self.page.get_by_text("Intended use.").first, timeout_s)
        nav = self.page.evaluate(NAVIGATION_JS)
        origin = float(nav["origin"]) / 1000.0
        step.browser.update({
            "html_first_byte_s": origin + float(nav["ttfb"]) / 1000.0 - t0,
            "dom_content_loaded_s": origin + float(nav["dcl"]) / 1000.0 - t0,
            "static_files": int(nav["n_res"]), "static_kib": float(nav["res_kib"]),
            "static_files_done_s": origin + float(nav["res_end"]) / 1000.0 - t0,
            "websocket_open_s": (float(nav["opened"]) / 1000.0 - t0) if nav["opened"] else None,
            "renderer": self.renderer(),  # since the document started: the whole first load
        })
        return step


NAVIGATION_JS = """() => {
    const n = performance.getEntriesByType('navigation')[0];
    const r = performance.getEntriesByType('resource');
    return {origin: performance.timeOrigin, ttfb: n.responseStart, dcl: n.domContentLoadedEventEnd,
            opened: window.__mreWs.opened, n_res: r.length,
            res_kib: r.reduce((a, e) => a + (e.transferSize || e.encodedBodySize || 0), 0) / 1024,
            res_end: r.reduce((a, e) => Math.max(a, e.responseEnd), 0)};
}"""
