"""Decoding the 95 % confidence marking on synthetic arrays with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mre_core.io import confidence as conf
from tests.dicom_factory import burn_hatch, synthetic_slice, zero_fill


def _agreement(found: np.ndarray, truth: np.ndarray, body: np.ndarray) -> float:
    return float(np.mean(found[body] == truth[body]))


@pytest.mark.parametrize(("value", "period", "phase"), [(800, 6, (0, 0)), (1000, 7, (2, 3)), (4095, 10, (5, 1)),
                                                        (600, 9, (0, 4))])
def test_hatch_value_period_and_region_are_found_without_knowing_them(value, period, phase):
    stored, body, low = synthetic_slice(96, 96, seed=period)
    hatched = burn_hatch(stored, low, value, period, phase)
    assert conf.find_hatch_value(hatched) == value
    decoded = conf.decode_hatch(hatched, value)
    assert decoded.period_px == period
    assert _agreement(body & ~decoded.hatched_area, body & ~low, body) > 0.97
    assert np.all(hatched[decoded.hatch_pixels] == value)
    assert not decoded.hatched_area[body & ~low].sum() > 0.03 * (body & ~low).sum()


def test_hatch_value_that_also_occurs_by_chance_in_the_liver_keeps_those_liver_pixels():
    stored, body, low = synthetic_slice(96, 96, seed=3)
    value = 300  # inside the liver's value range (250-450): ~1 % of liver pixels hold it by chance
    chance = (stored == value) & ~low
    assert chance.sum() > 5
    hatched = burn_hatch(stored, low, value, 8, (1, 1))
    assert conf.find_hatch_value(hatched) == value
    decoded = conf.decode_hatch(hatched, value)
    assert _agreement(body & ~decoded.hatched_area, body & ~low, body) > 0.97
    # isolated chance pixels far from the hatch are not hatch lines: they keep their stiffness value
    far = chance & ~ndimage.binary_dilation(low, iterations=4)
    assert far.sum() > 3
    assert not np.any(decoded.hatch_pixels & far)


def test_no_hatch_in_noisy_or_zero_filled_maps():
    stored, body, low = synthetic_slice(96, 96, seed=1)
    assert conf.find_hatch_value(stored) is None
    assert conf.find_hatch_value(zero_fill(stored, low)) is None


def test_saturated_plateau_is_not_a_hatch():
    stored, _, _ = synthetic_slice(96, 96, seed=2)
    stored[30:60, 30:60] = 4095  # a clipped, solid block
    assert conf.find_hatch_value(stored) is None


def test_zero_fill_detected_inside_body_but_not_in_plain_map():
    stored, _, low = synthetic_slice(96, 96, seed=4)
    assert not conf.has_zero_fill(stored)
    assert conf.has_zero_fill(zero_fill(stored, low))


def test_pair_confidence_is_nonzero_and_equal_to_full_map():
    full, body, low = synthetic_slice(64, 64, seed=5)
    masked = zero_fill(full, low)
    masked[10, 30] = full[10, 30] + 1 if body[10, 30] else 7  # disagreeing pixel is not confident
    assert conf.is_masked_copy(full, masked)
    assert not conf.is_masked_copy(masked, full)
    found = conf.decode_pair(full, masked)
    truth = body & ~low
    truth[10, 30] = False
    assert np.array_equal(found, truth)


def test_series_period_helps_a_slice_with_a_tiny_hatched_patch():
    stored, body, low = synthetic_slice(96, 96, seed=6)
    big = burn_hatch(stored, low, 900, 8)
    small_low = np.zeros_like(low)
    small_low[40:47, 40:47] = True
    small = burn_hatch(stored, small_low, 900, 8)
    assert conf.series_period(np.stack([big, small]), 900) == 8
    decoded = conf.decode_hatch(small, 900, period_hint=8)
    assert decoded.period_px == 8
    assert np.mean(decoded.hatched_area[body] == small_low[body]) > 0.99


def test_line_pixels_are_exactly_scipys_binary_openings() -> None:
    """The shifted-slice openings (12x faster) give the pixels scipy.ndimage's openings give, borders included."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < rng.random()
        thin = m & ~ndimage.binary_opening(m, structure=np.ones((3, 3), bool))
        down, up = conf.line_pixels(m)
        assert np.array_equal(down, ndimage.binary_opening(thin, structure=np.eye(3, dtype=bool)))
        assert np.array_equal(up, ndimage.binary_opening(thin, structure=np.fliplr(np.eye(3, dtype=bool))))
