import numpy as np

from mre_core.analysis.segment import adjust_roi, drop_specks, final_roi, min_area_px


def test_specks_below_the_area_are_dropped_and_larger_pieces_kept():
    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:15] = True  # 100 px
    mask[30, 30] = True  # 1 px speck
    mask[20:23, 30:33] = True  # 9 px
    kept = drop_specks(mask, 10)
    assert kept[5:15, 5:15].all() and not kept[30, 30] and not kept[20:23, 30:33].any()
    assert drop_specks(mask, 9)[20:23, 30:33].all()


def test_speck_area_is_mm2_not_pixels():
    assert min_area_px(50.0, (1.0, 1.0)) == 50
    assert min_area_px(50.0, (2.0, 2.0)) == 13


def test_final_roi_is_prediction_inside_confidence_and_never_on_nan_pixels():
    pred = np.ones((20, 20), bool)
    conf = np.zeros((20, 20), bool)
    conf[:, :10] = True
    kpa = np.full((20, 20), 3.0, np.float32)
    kpa[::4, :] = np.nan  # hatch-like lines with no value
    roi = final_roi(pred, conf, kpa, 1)
    assert not roi[:, 10:].any() and not roi[::4, :].any() and roi[1, :10].all()


def test_adjust_roi_erodes_and_dilates_within_confidence():
    conf = np.zeros((30, 30), bool)
    conf[5:25, 5:25] = True
    kpa = np.ones((30, 30), np.float32)
    roi = np.zeros((30, 30), bool)
    roi[10:20, 10:20] = True
    assert adjust_roi(roi, conf, kpa, -1).sum() == 64
    grown = adjust_roi(roi, conf, kpa, 10)
    assert grown.sum() == conf.sum() and not (grown & ~conf).any()
