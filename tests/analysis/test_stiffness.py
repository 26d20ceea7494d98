import numpy as np
import pytest

from mre_core.analysis.stiffness import QcFlag, RoiStats, SliceResult, area_cm2, roi_stats, study_stiffness


def test_area_is_cm2_not_pixels():
    assert area_cm2(100, (1.5625, 1.5625)) == pytest.approx(2.44140625)


def test_roi_stats_ignore_nan_pixels_inside_the_roi():
    kpa = np.array([[2.0, 4.0], [np.nan, 6.0]], dtype=np.float32)
    roi = np.ones((2, 2), bool)
    s = roi_stats(kpa, roi, (10.0, 10.0))
    assert s.n_pixels == 3 and s.mean_kpa == pytest.approx(4.0) and s.median_kpa == pytest.approx(4.0)
    assert s.area_cm2 == pytest.approx(3.0) and s.sd_kpa == pytest.approx(2.0)
    assert s.iqr_kpa == pytest.approx(2.0)


def test_empty_roi_gives_zero_pixels_and_nan_stats():
    s = roi_stats(np.ones((3, 3), np.float32), np.zeros((3, 3), bool), (1.0, 1.0))
    assert s.n_pixels == 0 and np.isnan(s.mean_kpa)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        roi_stats(np.ones((3, 3)), np.ones((2, 2), bool), (1.0, 1.0))


def _slice(mean: float, n: int, excluded: bool = False) -> SliceResult:
    stats = RoiStats(n, n / 100, mean, mean, 0.1, mean, mean)
    z = np.zeros((2, 2), bool)
    return SliceResult("1.2.3", 1, 0.0, z, z, stats, 1.0, (), excluded or n == 0)


def test_study_value_is_mean_of_slice_means_and_area_weighted_is_stored_too():
    r = study_stiffness([_slice(2.0, 100), _slice(4.0, 300), _slice(3.0, 100)], 3, 0.5, (0.5, 20))
    assert r.stiffness_kpa == pytest.approx(3.0)
    assert r.stiffness_kpa_area_weighted == pytest.approx((200 + 1200 + 300) / 500)
    assert r.n_slices_used == 3 and r.qc_flags == ()


def test_excluded_and_empty_slices_do_not_count_and_few_slices_are_flagged():
    r = study_stiffness([_slice(2.0, 100), _slice(9.0, 100, excluded=True), _slice(5.0, 0)], 3, 0.5, (0.5, 20))
    assert r.stiffness_kpa == pytest.approx(2.0) and r.n_slices_used == 1
    assert QcFlag.FEW_SLICES in r.qc_flags


def test_high_spread_and_implausible_values_are_flagged():
    r = study_stiffness([_slice(20.0, 10), _slice(40.0, 10), _slice(60.0, 10)], 3, 0.2, (0.5, 20))
    assert QcFlag.HIGH_SLICE_SPREAD in r.qc_flags and QcFlag.IMPLAUSIBLE_VALUES in r.qc_flags


def test_no_usable_slice_gives_nan_and_a_flag():
    r = study_stiffness([_slice(2.0, 0)], 3, 0.2, (0.5, 20))
    assert np.isnan(r.stiffness_kpa) and r.qc_flags == (QcFlag.NO_USABLE_SLICE,)


def test_every_flag_has_an_explanation():
    assert all(len(f.explanation) > 20 for f in QcFlag)
