"""A reader draws the ROI: canvas shapes → a mask on the native pixel grid, and the drawing panel.

The Review page shows each slice's elastogram on a drawing canvas (``streamlit-drawable-canvas``,
Fabric.js) scaled by a whole factor (:func:`canvas_scale`), with the 95 % confidence region and the
ROI being measured painted into the background (:func:`canvas_background`). The reader draws
freehand or polygon outlines in one of three modes (:class:`DrawMode`): *add to ROI*, *erase from
ROI*, *replace the automatic ROI*. Each outline's mode is its colour (:data:`MODE_STROKE`), so a
drawing that mixes modes is read back in order.

Pure part (no Streamlit, unit-tested)

* :func:`canvas_shapes`: the canvas's Fabric.js JSON → :class:`Shape` outlines in **native pixel
  coordinates**. A Fabric object stores its own points plus a transform (position, origin, scale,
  flip, rotation: moved or resized shapes included); :func:`object_outline` applies it exactly as
  Fabric does, then dividing by the canvas scale gives native coordinates. A canvas point ``(x, y)``
  (CSS px) is the native point ``(x / sx, y / sy)``, in which native pixel ``(row r, column c)``
  spans ``[c, c + 1) × [r, r + 1)`` and has its centre at ``(c + ½, r + ½)``: the background image is
  the native image enlarged by whole pixels, so this is exactly what the reader sees.
* :func:`shape_mask`: one outline → bool mask ``[rows, cols]``: the pixels **whose centre lies
  inside the outline**. Filled with OpenCV ``fillPoly`` (fixed-point vertices) on a grid
  :data:`SUPERSAMPLE` (odd) times finer, read back at each native pixel's centre; ``fillPoly`` counts
  the outline itself as inside, so a pixel whose centre is within ``1 / SUPERSAMPLE`` px (< 0.07
  px) of the outline may be counted in; no other pixel differs from the exact centre rule. A
  freehand stroke is closed (last point joined to the first) and filled: draw *around* the region.
* :func:`apply_shapes`: the ROI after the shapes, in drawing order (add: ∪, erase: −); any
  *replace* shape starts from an empty ROI instead of the automatic one. :func:`drawn_roi` then
  keeps the app's rule: ROI ∩ 95 % confidence region ∩ pixels holding a stiffness value.
* :func:`undo_last`: the drawing without its last shape (the *Undo last shape* button).

Streamlit part: :func:`drawing_controls` (the widgets beside the slice, which put the shapes into
the :class:`~mre_core.app.review_state.ReviewEdits`) and :func:`show_canvas` (the canvas in the
slice's figure box). The canvas objects of each slice are kept in ``rv_draw`` (see
:func:`drawing_state`); the page measures the drawn ROI at once through
:func:`~mre_core.app.review_state.apply_edits` and saves it as the reader's ROI.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import cv2
import numpy as np

#: The finer grid's factor (odd, so that one fine pixel sits exactly on each native pixel's centre).
SUPERSAMPLE = 15
#: Fractional bits of the fixed-point vertices handed to ``cv2.fillPoly``.
FILL_SHIFT = 8
#: Canvas width the scale aims at (CSS px); the scale is a whole number, at least 1.
TARGET_CANVAS_PX = 600
MAX_SCALE = 6
#: Grey window of the background image (kPa), as the slice figures.
WINDOW_KPA = (0.0, 8.0)


class DrawMode(str, Enum):
    """What a drawn outline does to the ROI."""

    ADD = "add"  #: the pixels inside join the ROI
    ERASE = "erase"  #: the pixels inside leave the ROI
    REPLACE = "replace"  #: the automatic ROI is dropped; the outlines drawn in this mode are the ROI


MODE_LABELS = {DrawMode.ADD: "Add to ROI", DrawMode.ERASE: "Erase from ROI",
               DrawMode.REPLACE: "Replace the automatic ROI"}
#: Stroke colour of each mode on the canvas: the colour is how a shape's mode is read back.
MODE_STROKE = {DrawMode.ADD: "#00e676", DrawMode.ERASE: "#2979ff", DrawMode.REPLACE: "#ff00ff"}
MODE_FILL = {DrawMode.ADD: "rgba(0, 230, 118, 0.15)", DrawMode.ERASE: "rgba(41, 121, 255, 0.15)",
             DrawMode.REPLACE: "rgba(255, 0, 255, 0.15)"}
_MODE_BY_STROKE = {v.lower(): k for k, v in MODE_STROKE.items()}
#: Tools offered, and the canvas's drawing mode of each.
TOOLS = {"Polygon": "polygon", "Freehand": "freedraw"}


@dataclass(frozen=True, eq=False)
class Shape:
    """One closed outline drawn by the reader, in native pixel coordinates.

    ``points`` is float [N, 2] of ``(x, y)`` = (column, row) in the native grid's continuous
    coordinates: pixel ``(r, c)`` spans ``[c, c + 1) × [r, r + 1)``.
    """

    mode: DrawMode
    points: np.ndarray
    kind: str = "polygon"  #: "polygon", "freehand" or "rect" (what the reader drew)

    def to_json(self, digits: int = 3) -> dict[str, Any]:
        return {"mode": self.mode.value, "kind": self.kind,
                "points": [[round(float(x), digits), round(float(y), digits)] for x, y in self.points]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Shape:
        return cls(DrawMode(d["mode"]), np.asarray(d["points"], dtype=np.float64).reshape(-1, 2), d.get("kind", "polygon"))


# ----------------------------------------------------------------------------- Fabric.js objects → outlines
_ORIGIN = {"left": -0.5, "top": -0.5, "center": 0.0, "bottom": 0.5, "right": 0.5}


def _origin(value: Any) -> float:
    """Fabric's ``resolveOrigin``: a name, or a number in [0, 1] (0 = left/top)."""
    return _ORIGIN[value] if isinstance(value, str) else float(value) - 0.5


def _cubic_extrema(p0: float, p1: float, p2: float, p3: float) -> list[float]:
    """Values of a cubic Bézier coordinate at its end points and interior extrema (Fabric's curve bounds)."""
    out = [p0, p3]
    a = -p0 + 3 * p1 - 3 * p2 + p3
    b = 2 * (p0 - 2 * p1 + p2)
    c = p1 - p0
    if abs(a) < 1e-12:
        roots = [-c / b] if abs(b) > 1e-12 else []
    else:
        disc = b * b - 4 * a * c
        roots = [] if disc < 0 else [(-b + s * math.sqrt(disc)) / (2 * a) for s in (1, -1)]
    for t in roots:
        if 0 < t < 1:
            u = 1 - t
            out.append(u ** 3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t ** 3 * p3)
    return out


def _path_rings(path: Sequence[Sequence[Any]], steps: int = 8) -> tuple[list[np.ndarray], np.ndarray]:
    """A Fabric path (absolute M/L/Q/C/Z commands) → (sub-path polylines, bounds-centre = ``pathOffset``).

    Curves are sampled at ``steps`` points each. The bounds follow Fabric's ``_calcBoundsFromPath``
    (which bounds a ``Q`` as the cubic with both control points at the quadratic's one), so the
    centre is Fabric's ``pathOffset`` and a moved path is placed where Fabric draws it.
    """
    rings: list[list[tuple[float, float]]] = []
    xs: list[float] = []
    ys: list[float] = []
    cur = start = (0.0, 0.0)
    t = np.linspace(0, 1, steps + 1)[1:]
    for cmd in path:
        op, args = str(cmd[0]).upper(), [float(v) for v in cmd[1:]]
        if op == "M":
            cur = start = (args[0], args[1])
            rings.append([cur])
        elif op == "L":
            xs += [cur[0], args[0]]
            ys += [cur[1], args[1]]
            cur = (args[0], args[1])
            rings[-1].append(cur)
        elif op in ("Q", "C"):
            if op == "Q":
                (cx, cy), end = (args[0], args[1]), (args[2], args[3])
                xs += _cubic_extrema(cur[0], cx, cx, end[0])
                ys += _cubic_extrema(cur[1], cy, cy, end[1])
                px = (1 - t) ** 2 * cur[0] + 2 * (1 - t) * t * cx + t ** 2 * end[0]
                py = (1 - t) ** 2 * cur[1] + 2 * (1 - t) * t * cy + t ** 2 * end[1]
            else:
                c1, c2, end = (args[0], args[1]), (args[2], args[3]), (args[4], args[5])
                xs += _cubic_extrema(cur[0], c1[0], c2[0], end[0])
                ys += _cubic_extrema(cur[1], c1[1], c2[1], end[1])
                u = 1 - t
                px = u ** 3 * cur[0] + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t ** 3 * end[0]
                py = u ** 3 * cur[1] + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t ** 3 * end[1]
            rings[-1].extend(zip(px.tolist(), py.tolist()))
            cur = end
        elif op == "Z":
            cur = start
        else:
            raise ValueError(f"path command {cmd[0]!r} is not supported")
    if not xs:  # a path of moves only: Fabric bounds it by nothing
        xs, ys = [cur[0]], [cur[1]]
    offset = np.array([(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2])
    return [np.asarray(r, dtype=np.float64) for r in rings if len(r) >= 3], offset


def _to_canvas(obj: Mapping[str, Any], local: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Object-local points → canvas (scene) points, as Fabric's ``calcOwnMatrix`` places them.

    centre = (left, top) moved from the object's origin to its centre by the transformed
    dimensions (``(width + strokeWidth) × scale``, or ``width × scale + strokeWidth`` for a uniform
    stroke) and rotated about (left, top); point = centre + R(angle) · S(±scale) · (local − offset).
    """
    if float(obj.get("skewX", 0) or 0) or float(obj.get("skewY", 0) or 0):
        raise ValueError("skewed shapes are not supported")
    sx, sy = float(obj.get("scaleX", 1)), float(obj.get("scaleY", 1))
    angle = math.radians(float(obj.get("angle", 0) or 0))
    sw = float(obj.get("strokeWidth", 0) or 0)
    if obj.get("strokeUniform"):
        dim = np.array([float(obj.get("width", 0)) * sx + sw, float(obj.get("height", 0)) * sy + sw])
    else:
        dim = np.array([(float(obj.get("width", 0)) + sw) * sx, (float(obj.get("height", 0)) + sw) * sy])
    anchor = np.array([float(obj.get("left", 0)), float(obj.get("top", 0))])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shift = -np.array([_origin(obj.get("originX", "left")), _origin(obj.get("originY", "top"))]) * dim
    centre = anchor + rot @ shift
    flip = np.array([-1.0 if obj.get("flipX") else 1.0, -1.0 if obj.get("flipY") else 1.0])
    untransformed = angle == 0 and sx == 1 and sy == 1 and (flip == 1).all()
    if untransformed and np.all(np.abs(centre - offset) <= 0.02):  # never moved: Fabric's rounding of left/top only
        return np.asarray(local, dtype=np.float64)
    rel = (np.asarray(local, dtype=np.float64) - offset) * np.array([sx, sy]) * flip
    return centre + rel @ rot.T


def object_outline(obj: Mapping[str, Any]) -> list[np.ndarray]:
    """The closed outline(s) of one Fabric object in canvas coordinates (``[]`` for other kinds)."""
    kind = str(obj.get("type", "")).lower()
    if kind in ("polygon", "polyline"):
        pts = np.asarray([[float(p["x"]), float(p["y"])] for p in obj.get("points", [])], dtype=np.float64)
        if len(pts) < 3:
            return []
        offset = (pts.min(axis=0) + pts.max(axis=0)) / 2
        return [_to_canvas(obj, pts, offset)]
    if kind == "path":
        rings, offset = _path_rings(obj.get("path", []))
        return [_to_canvas(obj, r, offset) for r in rings]
    if kind == "rect":
        w, h = float(obj.get("width", 0)), float(obj.get("height", 0))
        corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
        return [_to_canvas(obj, corners, np.zeros(2))]
    return []


def object_mode(obj: Mapping[str, Any]) -> DrawMode | None:
    """The mode an object was drawn in, read from its stroke colour (``None``: not one of ours)."""
    return _MODE_BY_STROKE.get(str(obj.get("stroke") or "").lower())


def canvas_objects(json_data: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The objects of a canvas's JSON (``{"objects": [...]}``), or the list itself."""
    if json_data is None:
        return []
    if isinstance(json_data, Mapping):
        return list(json_data.get("objects") or [])
    return list(json_data)


def _scale_pair(scale: float | tuple[float, float]) -> np.ndarray:
    sx, sy = (scale, scale) if isinstance(scale, (int, float)) else scale
    if sx <= 0 or sy <= 0:
        raise ValueError(f"the canvas scale must be positive, got {scale}")
    return np.array([float(sx), float(sy)])


def canvas_shapes(json_data: Any, scale: float | tuple[float, float]) -> tuple[list[Shape], int]:
    """Fabric.js canvas JSON → the reader's :class:`Shape` outlines in native pixel coordinates.

    ``scale`` is canvas px per native pixel (``(sx, sy)`` or one number): a canvas point ``(x, y)``
    is the native point ``(x / sx, y / sy)``. Returns ``(shapes, n_ignored)``: objects of another
    colour (not drawn in one of the :class:`DrawMode`), kind or with a skew are ignored and counted.
    """
    s = _scale_pair(scale)
    shapes: list[Shape] = []
    ignored = 0
    for obj in canvas_objects(json_data):
        mode = object_mode(obj)
        try:
            rings = object_outline(obj) if mode is not None else []
        except (ValueError, KeyError, TypeError, IndexError):
            rings = []
        if not rings:
            ignored += 1
            continue
        kind = {"path": "freehand", "rect": "rect"}.get(str(obj.get("type", "")).lower(), "polygon")
        assert mode is not None
        shapes.extend(Shape(mode, ring / s, kind) for ring in rings)
    return shapes, ignored


# ----------------------------------------------------------------------------- outlines → native masks
def shape_mask(points: np.ndarray, shape_hw: tuple[int, int], supersample: int = SUPERSAMPLE) -> np.ndarray:
    """The native pixels whose centre lies inside the closed outline ``points`` (bool [rows, cols]).

    ``points`` is float [N, 2] of native ``(x, y)``. Filled with ``cv2.fillPoly`` on a grid
    ``supersample`` (odd) times finer, limited to the outline's bounding box, and read at the fine
    pixel on each native pixel's centre (see the module docstring for the ``1 / supersample`` px
    tolerance on the outline itself). Self-crossing outlines are filled even-odd, as ``fillPoly`` does.
    """
    if supersample < 1 or supersample % 2 == 0:
        raise ValueError(f"supersample must be odd and positive, got {supersample}")
    rows, cols = shape_hw
    mask = np.zeros((rows, cols), dtype=bool)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3 or not np.isfinite(pts).all():
        return mask
    x0, y0 = max(0, math.floor(pts[:, 0].min()) - 1), max(0, math.floor(pts[:, 1].min()) - 1)
    x1, y1 = min(cols, math.ceil(pts[:, 0].max()) + 1), min(rows, math.ceil(pts[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return mask
    k = supersample
    fine = np.zeros(((y1 - y0) * k, (x1 - x0) * k), dtype=np.uint8)
    # fine pixel j has its centre at native (x0 + (j + 1/2) / k); fillPoly puts pixel centres at integers
    fine_xy = (pts - np.array([x0, y0])) * k - 0.5
    fixed = np.round(fine_xy * (1 << FILL_SHIFT)).astype(np.int64)
    limit = np.iinfo(np.int32).max // 2
    fixed = np.clip(fixed, -limit, limit).astype(np.int32)
    cv2.fillPoly(fine, [fixed.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=FILL_SHIFT)
    mask[y0:y1, x0:x1] = fine[k // 2::k, k // 2::k].astype(bool)
    return mask


def apply_shapes(base_roi: np.ndarray, shapes: Iterable[Shape]) -> np.ndarray:
    """The ROI after the reader's shapes, in drawing order: add → ∪, erase → −.

    With any *replace* shape the automatic ROI is dropped and the drawing starts from an empty ROI
    (the replace shapes add to it, erase shapes still erase).
    """
    shapes = list(shapes)
    roi = np.zeros_like(base_roi, dtype=bool) if any(s.mode is DrawMode.REPLACE for s in shapes) \
        else np.asarray(base_roi, dtype=bool).copy()
    for s in shapes:
        m = shape_mask(s.points, roi.shape)
        if s.mode is DrawMode.ERASE:
            roi &= ~m
        else:
            roi |= m
    return roi


def drawn_roi(base_roi: np.ndarray, shapes: Iterable[Shape], confidence: np.ndarray, kpa: np.ndarray) -> np.ndarray:
    """:func:`apply_shapes`, kept inside the 95 % confidence region and the pixels holding a value (the app's rule)."""
    return apply_shapes(base_roi, shapes) & np.asarray(confidence, dtype=bool) & np.isfinite(kpa)


def drawing_kind(shapes: Sequence[Shape]) -> str | None:
    """``"replaced"`` (a replace shape: the ROI is the reader's own), ``"edited"`` (the automatic ROI changed
    by hand) or ``None`` (nothing drawn)."""
    if not shapes:
        return None
    return "replaced" if any(s.mode is DrawMode.REPLACE for s in shapes) else "edited"


def undo_last(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The canvas objects without the last one drawn (``[]`` stays ``[]``)."""
    return [dict(o) for o in list(objects)[:-1]]


# ----------------------------------------------------------------------------- the canvas picture
def canvas_scale(shape_hw: tuple[int, int], target_px: int = TARGET_CANVAS_PX) -> int:
    """Canvas px per native pixel: the whole number that brings the wider side nearest ``target_px`` (1–6)."""
    return int(min(MAX_SCALE, max(1, round(target_px / max(shape_hw)))))


def _outline(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return mask & ~cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def canvas_background(kpa: np.ndarray, confidence: np.ndarray, roi: np.ndarray, scale: int,
                      roi_opacity: float = 0.45) -> np.ndarray:
    """The canvas background, RGB uint8 [rows × scale, cols × scale]: grey elastogram (0–8 kPa), dimmed
    outside the 95 % confidence region with a yellow outline, the measured ROI in red.

    Each native pixel becomes a ``scale × scale`` block (nearest neighbour), so canvas point ``(x, y)``
    lies over native pixel ``(floor(y / scale), floor(x / scale))``.
    """
    lo, hi = WINDOW_KPA
    grey = np.clip((np.nan_to_num(np.asarray(kpa, np.float64), nan=lo) - lo) / (hi - lo), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2)
    conf = np.asarray(confidence, dtype=bool)
    rgb[~conf] *= 0.45
    roi = np.asarray(roi, dtype=bool)
    red = np.array([230.0, 40.0, 40.0])
    rgb[roi] = (1 - roi_opacity) * rgb[roi] + roi_opacity * red
    big = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    big_conf = np.repeat(np.repeat(conf, scale, axis=0), scale, axis=1)
    big_roi = np.repeat(np.repeat(roi, scale, axis=0), scale, axis=1)
    big[_outline(big_roi)] = red
    big[_outline(big_conf)] = (255, 210, 0)
    return big.astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- Streamlit: controls and canvas
def _keys(skey: str, sop: str) -> dict[str, str]:
    return {"on": f"drawon|{skey}|{sop}", "mode": f"drawmode|{skey}|{sop}", "tool": f"drawtool|{skey}|{sop}",
            "store": f"{skey}|{sop}"}


def drawing_state(skey: str, sop: str) -> dict[str, Any]:
    """``rv_draw[<study>|<sop>]``: ``objects`` (the canvas objects now), ``initial`` (what the canvas was
    last started with) and ``gen`` (bumped to restart the canvas: undo, clear, restore)."""
    import streamlit as st

    return st.session_state.setdefault("rv_draw", {}).setdefault(_keys(skey, sop)["store"],
                                                                  {"objects": [], "initial": [], "gen": 0})


def canvas_key(skey: str, sop: str) -> str:
    return f"draw|{skey}|{sop}|{drawing_state(skey, sop)['gen']}"


def _latest_objects(skey: str, sop: str) -> list[dict[str, Any]]:
    """The objects the canvas sent last (its state at the start of this run), else those kept in ``rv_draw``."""
    import streamlit as st

    ds = drawing_state(skey, sop)
    value = st.session_state.get(canvas_key(skey, sop))
    try:
        raw = value["drawing"]["raw"] if value is not None else None
    except (KeyError, TypeError):
        raw = None
    if raw is not None:
        ds["objects"] = canvas_objects(raw)
    else:  # no canvas this run yet (first open, or it was hidden): it starts from what was drawn so far
        ds["initial"] = ds["objects"]
    return ds["objects"]


def _restart(skey: str, sop: str, objects: list[dict[str, Any]]) -> None:
    ds = drawing_state(skey, sop)
    ds["objects"], ds["initial"], ds["gen"] = objects, objects, ds["gen"] + 1


def _undo(skey: str, sop: str) -> None:
    _restart(skey, sop, undo_last(_latest_objects(skey, sop)))


def _clear(skey: str, sop: str) -> None:
    _restart(skey, sop, [])


def reset_study(skey: str) -> None:
    """Forget every slice's drawing of study ``skey`` (a revision is restored): each canvas restarts empty."""
    import streamlit as st

    for k, ds in st.session_state.setdefault("rv_draw", {}).items():
        if k.startswith(f"{skey}|"):
            ds["objects"], ds["initial"], ds["gen"] = [], [], ds["gen"] + 1


def is_drawing(skey: str, sop: str) -> bool:
    """True when the slice's drawing panel is open this run."""
    import streamlit as st

    return bool(st.session_state.get(_keys(skey, sop)["on"]))


def drawing_controls(box: Any, shape_hw: tuple[int, int], sop: str, skey: str, edits: Any,
                     reader: str) -> Any:
    """*Draw the ROI* and, when on, the mode, tool, *Undo last shape* and *Clear drawing* in ``box``.

    Returns the edits with this slice's drawing (shapes in native coordinates) from the canvas objects.
    """
    keys = _keys(skey, sop)
    has_drawing = bool(edits.drawing(sop))
    on = box.toggle("Draw the ROI", value=has_drawing, key=keys["on"],
                    help="Draw on the elastogram at its native pixels: add, erase, or replace the automatic ROI")
    if not on:
        if has_drawing:
            box.caption(f"ROI drawn by hand ({len(edits.drawing(sop))} shape(s)); open *Draw the ROI* to change it.")
        return edits
    box.segmented_control("Mode", list(DrawMode), format_func=lambda m: MODE_LABELS[m], default=DrawMode.ADD,
                          key=keys["mode"], selection_mode="single")
    box.radio("Tool", list(TOOLS), horizontal=True, key=keys["tool"],
              help="Polygon: click the corners, then click the first corner again to close it. "
                   "Freehand: hold the button and draw around the region (the outline is closed for you).")
    objects = _latest_objects(skey, sop)
    box.button("Undo last shape", icon=":material/undo:", key=f"drawundo|{skey}|{sop}", on_click=_undo,
               args=(skey, sop), disabled=not objects, width="stretch")
    box.button("Clear drawing", icon=":material/delete:", key=f"drawclear|{skey}|{sop}", on_click=_clear,
               args=(skey, sop), disabled=not objects, width="stretch")
    scale = canvas_scale(shape_hw)
    shapes, ignored = canvas_shapes(objects, scale)
    if ignored:
        box.caption(f":warning: {ignored} object(s) on the canvas are not ROI outlines and are not used.")
    box.caption("The drawn ROI is measured at once on the original kPa pixels. As every ROI in this app, it is "
                "kept inside the 95 % confidence region (yellow): pixels outside it are never measured. "
                + (f"It is recorded as drawn by **{reader}** when saved." if reader else
                   "Enter your name under *Reviewer* below: the drawn ROI is saved as yours."))
    return edits.with_drawing(sop, shapes)


def show_canvas(box: Any, e: Any, s: Any, skey: str, roi_opacity: float = 0.45) -> None:
    """The drawing canvas of slice ``e`` in ``box``: background = elastogram, confidence region and the ROI
    ``s.roi`` being measured; the stroke colour of the chosen mode."""
    import streamlit as st
    from streamlit_drawable_canvas import st_canvas

    keys = _keys(skey, e.sop_uid)
    mode = DrawMode(st.session_state.get(keys["mode"]) or DrawMode.ADD)
    tool = TOOLS.get(st.session_state.get(keys["tool"]) or "Polygon", "polygon")
    scale = canvas_scale(e.shape)
    rows, cols = e.shape
    background = png_bytes(canvas_background(e.kpa, e.confidence, s.roi, scale, roi_opacity))
    ds = drawing_state(skey, e.sop_uid)
    tool_name = next((k for k, v in TOOLS.items() if v == tool), tool)
    with box:
        # short, left: the canvas's toolbar floats over the right end of the line above the canvas
        st.markdown(f"**Drawing: {MODE_LABELS[mode]}** ({tool_name.lower()})")
        st_canvas(fill_color=MODE_FILL[mode], stroke_width=2, stroke_color=MODE_STROKE[mode],
                  background_image=background, update_streamlit=True, height=rows * scale, width=cols * scale,
                  drawing_mode=tool, initial_drawing={"objects": ds["initial"]}, point_display_radius=3,
                  key=canvas_key(skey, e.sop_uid), background_image_fit="stretch")
        st.caption(f"Red: the ROI measured · yellow: the 95 % confidence region (dimmed outside) · green / blue / "
                   f"magenta outlines: add / erase / replace. {cols} × {rows} native pixels, each shown as "
                   f"{scale} × {scale} screen pixels. The canvas's own toolbar (above its right corner): ↶ / ↷ undo "
                   "and redo, ✎ moves or resizes a shape, the bin clears it; in polygon mode press its ⇧ (send) "
                   "after using them, or use *Undo last shape*.")


__all__ = [
    "FILL_SHIFT",
    "MODE_FILL",
    "MODE_LABELS",
    "MODE_STROKE",
    "SUPERSAMPLE",
    "TOOLS",
    "DrawMode",
    "Shape",
    "apply_shapes",
    "canvas_background",
    "canvas_key",
    "canvas_objects",
    "canvas_scale",
    "canvas_shapes",
    "drawing_controls",
    "drawing_kind",
    "drawing_state",
    "drawn_roi",
    "is_drawing",
    "object_mode",
    "object_outline",
    "png_bytes",
    "reset_study",
    "shape_mask",
    "show_canvas",
    "undo_last",
]
