import math

import numpy as np
import pytest
from scipy import stats

from mre_core.analysis.staging import PAPER_TABLE
from mre_core.stats.agreement import (
    agreement,
    auc,
    bland_altman,
    bootstrap_ci,
    confusion,
    dice,
    icc_a1,
    iou,
    pearson,
    weighted_kappa,
    wilson_ci,
)


def test_dice_and_iou_on_a_known_mask_pair_are_exact():
    a = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b = np.zeros((10, 10), bool)
    b[2:6, 0:5] = True  # 20 px, overlap 10
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(10 / 30)
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_pearson_matches_numpy_and_ci_contains_r():
    rng = np.random.default_rng(0)
    x = rng.normal(4, 2, 100)
    y = x + rng.normal(0, 0.5, 100)
    c = pearson(x, y)
    assert c.r == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert c.ci_low < c.r < c.ci_high and c.p < 1e-10 and c.n == 100


def test_bland_altman_bias_is_auto_minus_manual():
    manual = np.array([2.0, 3.0, 4.0, 5.0])
    auto = manual + np.array([0.1, 0.3, 0.1, 0.3])
    ba = bland_altman(auto, manual)
    assert ba.bias == pytest.approx(0.2)
    assert ba.loa_high - ba.bias == pytest.approx(1.96 * np.std([0.1, 0.3, 0.1, 0.3], ddof=1))


def test_icc_a1_matches_a_hand_computed_example():
    # Shrout & Fleiss-style check: identical raters → 1; constant offset lowers absolute agreement
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert icc_a1(x, x).value == pytest.approx(1.0)
    shifted = icc_a1(x, x + 1.0)
    # MSR = 5.0, MSC = 2.5, MSE = 0 → ICC = 5 / (5 + 2*2.5/5) = 0.8333
    assert shifted.value == pytest.approx(5 / 6)


def test_linear_weighted_kappa_perfect_and_chance():
    perfect = np.diag([3, 4, 5, 6, 7])
    assert weighted_kappa(perfect) == pytest.approx(1.0)
    assert weighted_kappa(np.ones((5, 5))) == pytest.approx(0.0)


def test_confusion_rows_are_manual_columns_auto():
    m = confusion(np.array([0, 2, 2]), np.array([1, 2, 4]))
    assert m[0, 1] == 1 and m[2, 2] == 1 and m[2, 4] == 1 and m.sum() == 3


def test_auc_is_mann_whitney():
    assert auc(np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert auc(np.array([1, 2, 3, 4]), np.array([1, 0, 0, 1], bool)) == pytest.approx(0.5)


def test_agreement_report_on_a_known_cohort():
    manual = np.array([2.0, 2.6, 3.0, 4.5, 6.0, 7.5])
    auto = manual + 0.05
    rep = agreement(auto, manual, PAPER_TABLE)
    assert rep.n == 6 and rep.pearson.r == pytest.approx(1.0)
    assert rep.bland_altman.bias == pytest.approx(0.05) and rep.mae_kpa == pytest.approx(0.05)
    assert rep.stage_agreement == 1.0 and rep.kappa_linear == pytest.approx(1.0)
    assert rep.significant.sensitivity == 1.0 and rep.significant.specificity == 1.0


def test_bootstrap_ci_brackets_the_mean():
    v = np.random.default_rng(1).normal(0.9, 0.05, 200)
    lo, hi = bootstrap_ci(v, n_boot=500)
    assert lo < v.mean() < hi and hi - lo < 0.03


def test_limits_of_agreement_cis_follow_bland_altman_1999():
    rng = np.random.default_rng(4)
    manual = rng.uniform(2, 6, 40)
    auto = manual + rng.normal(0.1, 0.3, 40)
    ba = bland_altman(auto, manual)
    se = math.sqrt(3 * ba.sd**2 / 40)
    t = stats.t.ppf(0.975, 39)
    assert ba.loa_low_ci == pytest.approx((ba.loa_low - t * se, ba.loa_low + t * se))
    assert ba.loa_high_ci[0] < ba.loa_high < ba.loa_high_ci[1]


def test_wilson_ci_known_values_and_edges():
    assert wilson_ci(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # Newcombe 1998, method 3
    lo, hi = wilson_ci(10, 10)
    assert hi == 1.0 and 0.69 < lo < 0.73
    assert all(math.isnan(v) for v in wilson_ci(0, 0))


def test_report_carries_cis_for_kappa_sensitivity_specificity_and_auc():
    rng = np.random.default_rng(7)
    manual = rng.uniform(1.8, 7.0, 60)
    auto = manual * rng.normal(1.0, 0.08, 60)
    rep = agreement(auto, manual, PAPER_TABLE)
    sig = rep.significant
    assert sig.sensitivity_ci[0] <= sig.sensitivity <= sig.sensitivity_ci[1]
    assert sig.specificity_ci[0] <= sig.specificity <= sig.specificity_ci[1]
    assert sig.auc_ci[0] <= sig.auc <= sig.auc_ci[1] <= 1.0
    assert rep.kappa_ci[0] <= rep.kappa_linear <= rep.kappa_ci[1]
    assert rep.kappa_ci[1] - rep.kappa_ci[0] > 0.01  # a real interval, not a point
