"""The fast slice view: what is sent to the browser is the slice's own values and masks, exactly."""

from __future__ import annotations

import json
import re

import numpy as np

from mre_core.app.slice_image import (
    MAX_KPA,
    NO_VALUE,
    ViewerLayers,
    decode_kpa,
    encode_kpa,
    pack_mask,
    unpack_mask,
    viewer_height,
    viewer_html,
    viewer_payload,
    viewer_scale,
)


def test_stiffness_round_trips_to_the_hundredth_of_a_kpa_and_no_value_stays_no_value() -> None:
    rng = np.random.default_rng(0)
    kpa = rng.uniform(0, 12, (37, 53)).astype(np.float32)
    kpa[3, 4] = np.nan
    kpa[5, 6] = -1.0  # not a stiffness
    back = decode_kpa(encode_kpa(kpa))
    ok = np.isfinite(kpa) & (kpa >= 0)
    assert np.nanmax(np.abs(back[ok] - kpa[ok])) <= 0.005 + 1e-6
    assert np.isnan(back[3, 4]) and np.isnan(back[5, 6])
    assert encode_kpa(np.array([[1e6]]))[0, 0] == NO_VALUE - 1 and decode_kpa(np.array([[NO_VALUE - 1]]))[0, 0] == MAX_KPA


def test_masks_round_trip_for_widths_that_are_not_whole_bytes() -> None:
    rng = np.random.default_rng(1)
    for cols in (1, 7, 8, 9, 204, 256):
        m = rng.random((11, cols)) > 0.5
        assert np.array_equal(unpack_mask(pack_mask(m), m.shape), m)


def test_the_payload_carries_the_slice_grid_layers_and_scale() -> None:
    kpa = np.full((4, 10), 2.5, np.float32)
    conf = np.zeros((4, 10), bool)
    conf[1:3, 2:8] = True
    roi = conf.copy()
    roi[:, 5:] = False
    pred = np.ones((4, 10), bool)
    p = viewer_payload(kpa, conf, roi, pred, ViewerLayers(0.3, True, False, True), scale=3, label="slice 2")
    assert (p["rows"], p["cols"], p["scale"], p["label"]) == (4, 10, 3, "slice 2")
    assert p["opacity"] == 0.3 and p["showConfidence"] and not p["showRoi"] and p["showPredicted"]
    assert np.array_equal(unpack_mask(p["roi"], (4, 10)), roi)
    assert np.array_equal(unpack_mask(p["confidence"], (4, 10)), conf)
    import base64
    units = np.frombuffer(base64.b64decode(p["kpa"]), dtype="<u2").reshape(4, 10)
    assert (units == 250).all()
    json.dumps(p)  # JSON-able as sent


def test_the_page_embeds_the_payload_and_fetches_nothing() -> None:
    p = viewer_payload(np.ones((2, 3)), np.ones((2, 3), bool), np.zeros((2, 3), bool), np.zeros((2, 3), bool),
                       ViewerLayers(), scale=2)
    html = viewer_html(p)
    assert json.dumps(p, separators=(",", ":")) in html and "__PAYLOAD__" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']https?:""", html)  # self-contained: no script or style fetched
    assert viewer_height(204, 2) == 204 * 2 + 56


def test_scale_is_a_whole_factor_near_the_target_width() -> None:
    assert viewer_scale((204, 256), 600) == 2
    assert viewer_scale((128, 128), 600) == 5
    assert viewer_scale((1024, 1024), 360) == 1
    assert viewer_scale((16, 16), 600) == 8  # capped


def test_the_magnitude_is_sent_only_when_asked_for_and_on_the_slice_grid() -> None:
    import base64

    from mre_core.app.slice_image import magnitude_grey

    kpa, mask = np.ones((3, 4)), np.ones((3, 4), bool)
    mag = np.arange(12.0).reshape(3, 4) * 100
    on = viewer_payload(kpa, mask, mask, mask, ViewerLayers(magnitude=True), 1, magnitude=mag)
    grey = np.frombuffer(base64.b64decode(on["magnitude"]), dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(grey, magnitude_grey(mag)) and grey.min() == 0 and grey.max() == 255
    assert viewer_payload(kpa, mask, mask, mask, ViewerLayers(magnitude=False), 1, magnitude=mag)["magnitude"] is None
    assert viewer_payload(kpa, mask, mask, mask, ViewerLayers(magnitude=True), 1, magnitude=None)["magnitude"] is None
    wrong_grid = np.ones((6, 8))
    assert viewer_payload(kpa, mask, mask, mask, ViewerLayers(magnitude=True), 1, magnitude=wrong_grid)["magnitude"] is None
    assert not magnitude_grey(np.full((4, 4), 7.0)).any()  # a flat image has no contrast to show
