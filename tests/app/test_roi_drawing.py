"""The reader draws the ROI: Fabric.js canvas objects → native pixel masks, modes, undo, and the edits.

The rasterisation is checked against the rule it promises (a native pixel is in a shape when its
centre lies inside the outline; only pixels within 1/SUPERSAMPLE px of the outline may be counted in),
at canvas scales other than 1, for shapes as the canvas sends them (points, paths, moved,
rotated, scaled) and through :func:`~mre_core.app.review_state.apply_edits`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from mre_core.analysis.stiffness import roi_stats
from mre_core.app.review_state import ReviewableStudy, ReviewEdits, apply_edits
from mre_core.app.roi_drawing import (
    MODE_STROKE,
    SUPERSAMPLE,
    DrawMode,
    Shape,
    apply_shapes,
    canvas_background,
    canvas_scale,
    canvas_shapes,
    drawing_kind,
    drawn_roi,
    object_outline,
    shape_mask,
    undo_last,
)
from tests.result_factory import COLS, ROWS, SPACING_MM, make_result


def polygon(points_canvas, mode: DrawMode = DrawMode.ADD, **transform) -> dict:
    """A closed polygon as the canvas (Fabric 7) sends it: centre origin at the points' bounding-box centre."""
    pts = np.asarray(points_canvas, float)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    obj = {"type": "Polygon", "version": "7.4.0", "originX": "center", "originY": "center",
           "left": round(float(lo[0] + hi[0]) / 2, 4), "top": round(float(lo[1] + hi[1]) / 2, 4),
           "width": float(hi[0] - lo[0]), "height": float(hi[1] - lo[1]), "fill": "rgba(0,0,0,0.1)",
           "stroke": MODE_STROKE[mode], "strokeWidth": 2, "strokeUniform": False, "scaleX": 1, "scaleY": 1,
           "angle": 0, "flipX": False, "flipY": False, "skewX": 0, "skewY": 0,
           "points": [{"x": float(x), "y": float(y)} for x, y in pts]}
    obj.update(transform)
    return obj


def centre_rule(points_native, shape=(64, 64)) -> np.ndarray:
    """The exact rule, independently: pixel centres (c + ½, r + ½) inside the outline (matplotlib)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    inside = MplPath(np.asarray(points_native)).contains_points(np.c_[xx.ravel() + 0.5, yy.ravel() + 0.5])
    return inside.reshape(shape)


def distance_to_outline(points_native, shape=(64, 64)) -> np.ndarray:
    """Distance (native px) of each pixel centre to the closed outline."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    p = np.stack([xx + 0.5, yy + 0.5], axis=-1).astype(float)
    pts = np.asarray(points_native, float)
    best = np.full(shape, np.inf)
    for a, b in zip(pts, np.roll(pts, -1, axis=0)):
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
        best = np.minimum(best, np.linalg.norm(p - (a + t[..., None] * ab), axis=-1))
    return best


# ----------------------------------------------------------------------------- canvas → native, exactly
def test_a_rectangle_drawn_at_scale_3_covers_exactly_the_pixels_whose_centres_it_encloses() -> None:
    # canvas (30.6, 30.6)–(90.6, 60.6) at 3 canvas px per pixel = native (10.2, 10.2)–(30.2, 20.2):
    # centres c + ½ in [10.2, 30.2] → columns 10..29, rows 10..19: 20 × 10 = 200 pixels
    obj = polygon([(30.6, 30.6), (90.6, 30.6), (90.6, 60.6), (30.6, 60.6)])
    shapes, ignored = canvas_shapes({"objects": [obj]}, 3)
    assert ignored == 0 and len(shapes) == 1
    np.testing.assert_allclose(shapes[0].points, [[10.2, 10.2], [30.2, 10.2], [30.2, 20.2], [10.2, 20.2]])
    mask = shape_mask(shapes[0].points, (ROWS, COLS))
    expected = np.zeros((ROWS, COLS), bool)
    expected[10:20, 10:30] = True
    assert int(mask.sum()) == 200 and np.array_equal(mask, expected)
    assert roi_stats(np.ones((ROWS, COLS), np.float32), mask, SPACING_MM).area_cm2 == pytest.approx(
        200 * SPACING_MM[0] * SPACING_MM[1] / 100)


def test_each_axis_has_its_own_scale() -> None:
    obj = polygon([(20.4, 30.6), (60.4, 30.6), (60.4, 60.6), (20.4, 60.6)])  # native x 10.2–30.2, y 10.2–20.2
    shapes, _ = canvas_shapes([obj], (2, 3))
    assert int(shape_mask(shapes[0].points, (64, 64)).sum()) == 200


def test_a_triangle_and_random_polygons_follow_the_centre_rule_but_on_the_outline() -> None:
    tol = 1 / SUPERSAMPLE
    tri = np.array([[5.3, 4.1], [40.7, 12.9], [18.2, 50.6]])
    got, want = shape_mask(tri, (64, 64)), centre_rule(tri)
    far = distance_to_outline(tri) > tol
    assert np.array_equal(got[far], want[far])
    rng = np.random.default_rng(0)
    for _ in range(60):
        c = rng.uniform(20, 44, 2)
        ang = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 9)))
        rad = rng.uniform(4, 18, ang.size)
        poly = np.c_[c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)]
        got, want = shape_mask(poly, (64, 64)), centre_rule(poly)
        differ = got != want
        assert not (differ & (distance_to_outline(poly) > tol)).any()
        assert not (want & ~got).any()  # fillPoly counts the outline in: it never loses an enclosed centre


def test_a_moved_rotated_scaled_or_left_anchored_shape_is_placed_where_the_canvas_draws_it() -> None:
    base = [(30.6, 30.6), (90.6, 30.6), (90.6, 60.6), (30.6, 60.6)]
    plain = polygon(base)
    moved = polygon(base, left=plain["left"] + 6)  # 6 canvas px = 2 native columns at scale 3
    m0 = shape_mask(canvas_shapes([plain], 3)[0][0].points, (64, 64))
    m1 = shape_mask(canvas_shapes([moved], 3)[0][0].points, (64, 64))
    assert np.array_equal(np.roll(m0, 2, axis=1), m1)
    # rotated 90° about its centre (60.6, 45.6) = native (20.2, 15.2): x 15.2–25.2, y 5.2–25.2
    rotated = canvas_shapes([polygon(base, angle=90)], 3)[0][0]
    want = np.zeros((64, 64), bool)
    want[5:25, 15:25] = True
    assert np.array_equal(shape_mask(rotated.points, (64, 64)), want)
    # scaled ×2 about its centre: native x 0.2–40.2, y 5.2–25.2
    scaled = canvas_shapes([polygon(base, scaleX=2, scaleY=2)], 3)[0][0]
    np.testing.assert_allclose(scaled.points.min(axis=0), [0.2, 5.2])
    # Fabric 6 style: origin at the top left, the stroke counted in the object's size
    left = polygon(base, originX="left", originY="top", left=30.6 - 1, top=30.6 - 1)
    np.testing.assert_allclose(canvas_shapes([left], 3)[0][0].points, canvas_shapes([plain], 3)[0][0].points)


#: A freehand stroke exactly as streamlit-drawable-canvas 0.13 (Fabric 7.4) sent it from chromium.
FREEHAND = {"type": "Path", "originX": "center", "originY": "center", "left": 59.6091, "top": 33.7418,
            "width": 59.2222, "height": 59.425, "fill": None, "stroke": MODE_STROKE[DrawMode.ERASE],
            "strokeWidth": 2, "strokeUniform": False, "scaleX": 1, "scaleY": 1, "angle": 0, "flipX": False,
            "flipY": False, "skewX": 0, "skewY": 0, "path": [
                ["M", 29.998, 4.02925], ["Q", 30, 4.03125, 33.5, 4.53125], ["Q", 37, 5.03125, 41, 5.53125],
                ["Q", 45, 6.03125, 48.5, 7.03125], ["Q", 52, 8.03125, 56, 8.53125], ["Q", 60, 9.03125, 63.5, 12.03125],
                ["Q", 67, 15.03125, 71, 18.03125], ["Q", 75, 21.03125, 78.5, 24.53125], ["Q", 82, 28.03125, 86, 31.03125],
                ["Q", 90, 34.03125, 87.5, 37.53125], ["Q", 85, 41.03125, 82.5, 45.03125],
                ["Q", 80, 49.03125, 77.5, 52.53125], ["Q", 75, 56.03125, 72.5, 60.03125], ["Q", 70, 64.03125, 66, 62.53125],
                ["Q", 62, 61.03125, 58.5, 60.03125], ["Q", 55, 59.03125, 51, 57.53125], ["Q", 47, 56.03125, 43.5, 55.03125],
                ["Q", 40, 54.03125, 39, 49.03125], ["Q", 38, 44.03125, 37, 39.03125], ["Q", 36, 34.03125, 34, 24.03125],
                ["L", 31.998, 14.02925]]}


def test_a_freehand_stroke_is_closed_and_filled_where_it_was_drawn() -> None:
    (ring,) = object_outline(FREEHAND)  # unmoved: left/top (Fabric's pathOffset) agree with our curve bounds
    assert ring[0].tolist() == [29.998, 4.02925] and ring[-1].tolist() == [31.998, 14.02925]
    shapes, _ = canvas_shapes([FREEHAND], 2)
    assert shapes[0].mode is DrawMode.ERASE and shapes[0].kind == "freehand"
    mask = shape_mask(shapes[0].points, (64, 64))
    assert mask[15, 30] and not mask[1, 1] and not mask[40, 40]  # inside the loop; far outside it
    far = distance_to_outline(shapes[0].points) > 1 / SUPERSAMPLE
    assert np.array_equal(mask[far], centre_rule(shapes[0].points)[far])
    moved = dict(FREEHAND, left=FREEHAND["left"] + 4)  # moved 4 canvas px = 2 native px
    np.testing.assert_allclose(canvas_shapes([moved], 2)[0][0].points - shapes[0].points, [[2, 0]] * len(ring),
                               atol=1e-3)


def test_objects_not_drawn_as_roi_outlines_are_ignored_and_counted() -> None:
    stray = polygon([(1, 1), (9, 1), (9, 9)], stroke="#123456")
    text = {"type": "Textbox", "stroke": MODE_STROKE[DrawMode.ADD], "text": "hello"}
    skewed = polygon([(1, 1), (9, 1), (9, 9)], skewX=10)
    shapes, ignored = canvas_shapes({"objects": [stray, text, skewed, polygon([(1, 1), (9, 1), (9, 9)])]}, 2)
    assert len(shapes) == 1 and ignored == 3
    with pytest.raises(ValueError):
        canvas_shapes([], 0)


# ----------------------------------------------------------------------------- modes, undo
def _rect(x0, y0, x1, y1, mode=DrawMode.ADD) -> Shape:
    """Native rectangle whose centres-inside are columns x0..x1-1, rows y0..y1-1."""
    return Shape(mode, np.array([[x0 + 0.1, y0 + 0.1], [x1 - 0.1, y0 + 0.1], [x1 - 0.1, y1 - 0.1], [x0 + 0.1, y1 - 0.1]]))


def test_add_erase_and_replace_in_drawing_order() -> None:
    base = np.zeros((40, 40), bool)
    base[10:20, 10:20] = True  # 100 px "automatic" ROI
    add = _rect(20, 10, 25, 20)  # 50 px next to it
    erase = _rect(10, 10, 15, 15, DrawMode.ERASE)  # 25 px off its corner
    assert apply_shapes(base, [add]).sum() == 150
    assert apply_shapes(base, [add, erase]).sum() == 125
    assert apply_shapes(base, [erase, _rect(10, 10, 12, 12)]).sum() == 100 - 25 + 4  # order matters
    replaced = apply_shapes(base, [_rect(30, 30, 35, 35, DrawMode.REPLACE), erase])
    assert replaced.sum() == 25 and replaced[30:35, 30:35].all() and not replaced[10:20, 10:20].any()
    assert not base[20:25].any()  # the base is not changed
    assert drawing_kind([add, erase]) == "edited" and drawing_kind([add, _rect(0, 0, 2, 2, DrawMode.REPLACE)]) == \
        "replaced" and drawing_kind([]) is None


def test_the_drawn_roi_stays_inside_the_confidence_region_and_the_pixels_with_a_value() -> None:
    conf = np.zeros((40, 40), bool)
    conf[5:30, 5:30] = True
    kpa = np.full((40, 40), 3.0, np.float32)
    kpa[5:30, 5] = np.nan
    roi = drawn_roi(np.zeros((40, 40), bool), [_rect(0, 0, 10, 10)], conf, kpa)
    assert roi.sum() == 5 * 5 - 5 and not roi[:5].any() and not roi[:, 5].any()


def test_undo_by_history_gives_back_each_earlier_roi() -> None:
    base = np.zeros((40, 40), bool)
    base[10:20, 10:20] = True
    objs = [polygon([(x * 2 + 0.2, 2.2), (x * 2 + 8.2, 2.2), (x * 2 + 8.2, 10.2)], mode)
            for x, mode in [(20, DrawMode.ADD), (0, DrawMode.ADD), (10, DrawMode.ERASE)]]
    history = [apply_shapes(base, canvas_shapes(objs[:n], 2)[0]) for n in range(len(objs) + 1)]
    state = list(objs)
    for n in range(len(objs), 0, -1):
        assert np.array_equal(apply_shapes(base, canvas_shapes(state, 2)[0]), history[n])
        state = undo_last(state)
    assert state == [] and undo_last([]) == [] and np.array_equal(apply_shapes(base, []), base)
    assert len(objs) == 3  # undo leaves the list it was given alone


# ----------------------------------------------------------------------------- the canvas picture
def test_the_background_is_the_native_image_in_whole_pixel_blocks() -> None:
    assert canvas_scale((204, 256)) == 2 and canvas_scale((64, 64)) == 6 and canvas_scale((1024, 1024)) == 1
    kpa = np.full((10, 12), 4.0, np.float32)
    conf = np.zeros((10, 12), bool)
    conf[2:8, 2:10] = True
    roi = np.zeros((10, 12), bool)
    roi[4:6, 4:7] = True
    img = canvas_background(kpa, conf, roi, 3)
    assert img.shape == (30, 36, 3) and img.dtype == np.uint8
    # canvas point (x, y) lies over native pixel (y // 3, x // 3): the block of a ROI pixel is red
    r, c = 4, 5
    assert img[r * 3 + 1, c * 3 + 1, 0] > img[r * 3 + 1, c * 3 + 1, 1] + 50
    assert tuple(img[0, 0]) != tuple(img[3 * 3 + 1, 3 * 3 + 1])  # dimmed outside the confidence region
    assert tuple(img[2 * 3, 5 * 3 + 1]) == (255, 210, 0)  # yellow confidence outline


# ----------------------------------------------------------------------------- through the review edits
def _reviewable() -> ReviewableStudy:
    result = make_result([3.0, 3.2, 3.4])
    e = result.study.series.slices[0]
    e.kpa[:] = np.where(np.isfinite(e.kpa), 2.0 + np.arange(COLS, dtype=np.float32)[None, :] / 100, np.nan)
    probs = tuple(np.where(s.roi, 0.9, 0.1).astype(np.float32) for s in result.slices)
    return ReviewableStudy(result, probs, 0.5)


def test_a_drawn_polygon_is_measured_at_once_on_the_native_kpa_pixels() -> None:
    rs = _reviewable()
    s0, e0 = rs.result.slices[0], rs.result.study.series.slices[0]
    # replace the automatic ROI by a canvas polygon (scale 2) that reaches outside the confidence region
    obj = polygon([(100.5, 80.5), (300.5, 90.5), (250.5, 250.5), (110.5, 220.5)], DrawMode.REPLACE)
    shapes, _ = canvas_shapes([obj], 2)
    out = apply_edits(rs, ReviewEdits().with_drawing(s0.sop_uid, shapes))
    expected = shape_mask(shapes[0].points, e0.shape) & e0.confidence & np.isfinite(e0.kpa)
    assert np.array_equal(out.slices[0].roi, expected)
    assert (shape_mask(shapes[0].points, e0.shape) & ~e0.confidence).any()  # it did reach outside
    want = roi_stats(e0.kpa, expected, e0.pixel_spacing_mm)
    assert out.slices[0].stats.n_pixels == want.n_pixels and out.slices[0].stats.mean_kpa == pytest.approx(
        want.mean_kpa)
    assert out.slices[0].stats.mean_kpa != pytest.approx(s0.stats.mean_kpa)
    # an erase on top of the automatic ROI: an edited automatic ROI
    erase, _ = canvas_shapes([polygon([(120.5, 100.5), (200.5, 100.5), (200.5, 200.5), (120.5, 200.5)],
                                      DrawMode.ERASE)], 2)
    edits = ReviewEdits().with_drawing(s0.sop_uid, erase).with_comment("", "Dr Draw")
    edited = apply_edits(rs, edits).slices[0]
    assert edited.stats.n_pixels == int((s0.roi & ~shape_mask(erase[0].points, e0.shape)).sum())
    assert edits.changes_roi and edits.is_reviewed and "ROI drawn by hand (1 shape(s): erase)" in edits.describe()[0]
    assert edits.manual_rois() == {s0.sop_uid: {"kind": "edited", "by": "Dr Draw"}}
    assert apply_edits(rs, edits.with_drawing(s0.sop_uid, [])).slices[0].stats.n_pixels == s0.stats.n_pixels


def test_drawn_rois_are_saved_per_slice_with_who_drew_them_and_restored() -> None:
    rs = _reviewable()
    s0, s2 = rs.result.slices[0], rs.result.slices[2]
    shapes = [_rect(70, 60, 90, 80, DrawMode.REPLACE)]
    edits = ReviewEdits().with_drawing(s0.sop_uid, shapes).with_drawing(s2.sop_uid, [_rect(60, 50, 70, 60)])
    edits = edits.with_comment("redrawn", "Dr Draw")
    out = apply_edits(rs, edits)
    js = edits.to_json()
    assert js["roi_drawn"][s0.sop_uid]["kind"] == "replaced" and js["roi_drawn"][s0.sop_uid]["by"] == "Dr Draw"
    assert js["roi_drawn"][s2.sop_uid]["kind"] == "edited"
    assert Shape.from_json(js["roi_drawn"][s0.sop_uid]["shapes"][0]).points.tolist() == \
        np.round(shapes[0].points, 3).tolist()
    import json

    json.dumps(js)  # JSON-safe
    saved_rois = {s.sop_uid: s.roi for s in out.slices}
    again = ReviewEdits.from_saved(json.loads(json.dumps(js)), saved_rois)
    assert again.manual_rois() == edits.manual_rois() and not again.drawings
    restored = apply_edits(rs, again)
    assert all(np.array_equal(a.roi, b.roi) for a, b in zip(restored.slices, out.slices))
    assert again.to_json()["roi_drawn"] == js["roi_drawn"]  # saving the restored review keeps the record
    # another reader draws on the restored, replaced ROI: still replaced, now theirs
    later = again.with_drawing(s0.sop_uid, [_rect(91, 60, 95, 80)]).with_comment("", "Dr Two")
    assert later.manual_rois()[s0.sop_uid] == {"kind": "replaced", "by": "Dr Two"}
    assert apply_edits(rs, later).slices[0].stats.n_pixels == out.slices[0].stats.n_pixels + 4 * 20
    assert math.isfinite(apply_edits(rs, later).stiffness_kpa)


def test_the_seg_download_says_which_rois_the_reader_drew_and_who() -> None:
    import io

    import pydicom

    from mre_core.app import exports

    rs = _reviewable()
    s0 = rs.result.slices[0]
    edits = ReviewEdits().with_drawing(s0.sop_uid, [_rect(70, 60, 90, 80, DrawMode.REPLACE)]).with_comment("", "Dr D")
    out = apply_edits(rs, edits)
    assert exports.seg_authorship(ReviewEdits()) == {} and exports.seg_authorship(None) == {}
    seg = pydicom.dcmread(io.BytesIO(exports.seg_bytes(out, edits)))
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC" and str(seg.ContentCreatorName) == "Dr D^"
    seg_data, _ = exports.seg_and_sr_bytes(out, edits=edits)
    assert pydicom.dcmread(io.BytesIO(seg_data)).SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    every = ReviewEdits(drawings={s.sop_uid: (_rect(70, 60, 90, 80, DrawMode.REPLACE),) for s in out.slices},
                        reviewer="Dr D")
    manual = pydicom.dcmread(io.BytesIO(exports.seg_bytes(apply_edits(rs, every), every)))
    assert manual.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    assert pydicom.dcmread(io.BytesIO(exports.seg_bytes(out))).SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
