"""Agreement statistics between automatic and manual measurements (cohort page, evaluation).

Pure numpy/scipy over 1-D arrays of kPa (or stages, or masks). Conventions:

* Bland–Altman differences are ``auto − manual`` (a positive bias means the model reads higher);
* ICC is ICC(A,1): two-way random effects, absolute agreement, single measurement
  (McGraw & Wong 1996), with its F-distribution 95 % CI;
* Pearson r has a Fisher-z 95 % CI;
* kappa is Cohen's, linearly weighted over the ordinal stages F0..F4, with a percentile bootstrap 95 % CI
  over patients (2,000 resamples, fixed seed);
* Bland–Altman limits of agreement have the approximate 95 % CIs of Bland & Altman (1999, Stat Methods
  Med Res 8:135), SE(limit) = sqrt(3 SD² / n);
* sensitivity and specificity have Wilson score 95 % CIs (Newcombe 1998, Stat Med 17:857); the F2 AUC a
  percentile bootstrap 95 % CI over patients;
* Dice / IoU are pixel-wise per slice (an empty truth and an empty prediction agree: 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

from mre_core.analysis.staging import StagingTable, stage

N_STAGES = 5


@dataclass(frozen=True)
class Correlation:
    r: float
    ci_low: float
    ci_high: float
    p: float
    n: int


@dataclass(frozen=True)
class BlandAltman:
    """Mean difference (auto − manual, kPa) and 95 % limits of agreement."""

    bias: float
    sd: float
    loa_low: float
    loa_high: float
    bias_ci_low: float
    bias_ci_high: float
    n: int
    loa_low_ci: tuple[float, float] = (math.nan, math.nan)  #: 95 % CI of the lower limit
    loa_high_ci: tuple[float, float] = (math.nan, math.nan)  #: 95 % CI of the upper limit


@dataclass(frozen=True)
class Icc:
    value: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Binary:
    """Detection of significant fibrosis (>= F2 cut-off) by the automatic value, manual as reference."""

    threshold_kpa: float
    sensitivity: float
    specificity: float
    auc: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity_ci: tuple[float, float] = (math.nan, math.nan)  #: Wilson 95 %
    specificity_ci: tuple[float, float] = (math.nan, math.nan)  #: Wilson 95 %
    auc_ci: tuple[float, float] = (math.nan, math.nan)  #: bootstrap over patients, 95 %


@dataclass(frozen=True)
class AgreementReport:
    n: int
    pearson: Correlation
    bland_altman: BlandAltman
    icc: Icc
    mae_kpa: float
    kappa_linear: float
    stage_agreement: float  #: fraction of identical stages
    confusion: np.ndarray  #: int [5, 5], rows = manual stage, columns = automatic stage
    significant: Binary
    kappa_ci: tuple[float, float] = (math.nan, math.nan)  #: bootstrap over patients, 95 %


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two 1-D arrays of equal length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def pearson(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> Correlation:
    """Pearson r with a Fisher-z confidence interval (pairs with a NaN are dropped).

    >>> round(pearson(np.array([1., 2., 3., 4.]), np.array([1., 2., 3., 5.])).r, 3)
    0.983
    """
    x, y = _pair(x, y)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(math.nan, math.nan, math.nan, math.nan, n)
    r, p = stats.pearsonr(x, y)
    r = float(np.clip(r, -1.0, 1.0))
    if n > 3 and abs(r) < 1.0:
        z, se = math.atanh(r), 1.0 / math.sqrt(n - 3)
        q = stats.norm.ppf(0.5 + level / 2)
        lo, hi = math.tanh(z - q * se), math.tanh(z + q * se)
    else:
        lo = hi = r
    return Correlation(r, lo, hi, float(p), n)


def bland_altman(auto: np.ndarray, manual: np.ndarray) -> BlandAltman:
    """Bias and 95 % limits of agreement (bias ± 1.96 SD) of ``auto − manual``."""
    a, m = _pair(auto, manual)
    d = a - m
    n = len(d)
    if n < 2:
        nan = math.nan
        return BlandAltman(float(d.mean()) if n else nan, nan, nan, nan, nan, nan, n)
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    t = stats.t.ppf(0.975, n - 1)
    half = t * sd / math.sqrt(n)
    lo, hi = bias - 1.96 * sd, bias + 1.96 * sd
    half_limit = t * math.sqrt(3 * sd**2 / n)
    return BlandAltman(bias, sd, lo, hi, bias - half, bias + half, n,
                       (lo - half_limit, lo + half_limit), (hi - half_limit, hi + half_limit))


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN for n = 0).

    >>> tuple(round(v, 3) for v in wilson_ci(8, 10))
    (0.49, 0.943)
    """
    if n <= 0:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if successes == 0 else lo), (1.0 if successes == n else hi)  # exact ends, not 1 - 1e-16


def icc_a1(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> Icc:
    """ICC(A,1) of two raters (two-way random, absolute agreement, single measures)."""
    x, y = _pair(x, y)
    data = np.stack([x, y], axis=1)
    n, k = data.shape
    if n < 3:
        return Icc(math.nan, math.nan, math.nan, n)
    grand = data.mean()
    ms_r = k * ((data.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    ms_c = n * ((data.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    sse = ((data - data.mean(axis=1, keepdims=True) - data.mean(axis=0, keepdims=True) + grand) ** 2).sum()
    ms_e = sse / ((n - 1) * (k - 1))
    denom = ms_r + (k - 1) * ms_e + k * (ms_c - ms_e) / n
    if denom <= 0:
        return Icc(math.nan, math.nan, math.nan, n)
    icc = (ms_r - ms_e) / denom
    lo, hi = _icc_a1_ci(ms_r, ms_c, ms_e, n, k, icc, level)
    return Icc(float(icc), lo, hi, n)


def _icc_a1_ci(ms_r: float, ms_c: float, ms_e: float, n: int, k: int, icc: float, level: float) -> tuple[float, float]:
    """McGraw & Wong (1996) case 2A confidence interval."""
    a = k * icc / (n * (1 - icc)) if icc < 1 else math.inf
    b = 1 + k * icc * (n - 1) / (n * (1 - icc)) if icc < 1 else math.inf
    if not math.isfinite(a) or ms_e == 0:
        return icc, icc
    v_num = (a * ms_c + b * ms_e) ** 2
    v_den = (a * ms_c) ** 2 / (k - 1) + (b * ms_e) ** 2 / ((n - 1) * (k - 1))
    v = v_num / v_den if v_den > 0 else math.inf
    alpha = 1 - level
    f_hi = stats.f.ppf(1 - alpha / 2, n - 1, v)
    f_lo = stats.f.ppf(1 - alpha / 2, v, n - 1)
    lo = n * (ms_r - f_hi * ms_e) / (f_hi * (k * ms_c + (k * n - k - n) * ms_e) + n * ms_r)
    hi = n * (f_lo * ms_r - ms_e) / (k * ms_c + (k * n - k - n) * ms_e + n * f_lo * ms_r)
    return float(lo), float(hi)


def confusion(manual_stages: np.ndarray, auto_stages: np.ndarray) -> np.ndarray:
    """int [5, 5] counts; rows = manual (reference) stage, columns = automatic stage."""
    m = np.zeros((N_STAGES, N_STAGES), dtype=np.int64)
    for r, c in zip(np.asarray(manual_stages, int), np.asarray(auto_stages, int)):
        m[r, c] += 1
    return m


def weighted_kappa(matrix: np.ndarray) -> float:
    """Linearly weighted Cohen's kappa of a square confusion matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    total = m.sum()
    if total == 0:
        return math.nan
    k = m.shape[0]
    i, j = np.indices((k, k))
    w = np.abs(i - j) / (k - 1)
    expected = np.outer(m.sum(axis=1), m.sum(axis=0)) / total
    denom = (w * expected).sum()
    return float(1 - (w * m).sum() / denom) if denom > 0 else 1.0


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney), ties counted half."""
    s = np.asarray(scores, float)
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def significant_fibrosis(auto_kpa: np.ndarray, manual_kpa: np.ndarray, threshold_kpa: float) -> Binary:
    """Sensitivity/specificity of ``auto >= threshold`` against ``manual >= threshold``; AUC of the auto value."""
    a, m = _pair(auto_kpa, manual_kpa)
    truth, call = m >= threshold_kpa, a >= threshold_kpa
    tp, fp = int((truth & call).sum()), int((~truth & call).sum())
    tn, fn = int((~truth & ~call).sum()), int((truth & ~call).sum())
    sens = tp / (tp + fn) if tp + fn else math.nan
    spec = tn / (tn + fp) if tn + fp else math.nan
    pairs = np.stack([a, truth.astype(float)], axis=1)
    auc_ci = bootstrap_ci(pairs, lambda v: auc(v[:, 0], v[:, 1] > 0.5)) if len(a) >= 2 else (math.nan, math.nan)
    return Binary(threshold_kpa, sens, spec, auc(a, truth), tp, fp, tn, fn,
                  wilson_ci(tp, tp + fn), wilson_ci(tn, tn + fp), auc_ci)


def agreement(auto_kpa: np.ndarray, manual_kpa: np.ndarray, table: StagingTable) -> AgreementReport:
    """Every agreement number of the cohort page for paired study values (kPa)."""
    a, m = _pair(auto_kpa, manual_kpa)
    sa = np.array([int(stage(v, table).stage) for v in np.clip(a, 0, None)], dtype=int)
    sm = np.array([int(stage(v, table).stage) for v in np.clip(m, 0, None)], dtype=int)
    cm = confusion(sm, sa)
    stages_paired = np.stack([sm, sa], axis=1)
    kappa_ci = (bootstrap_ci(stages_paired, lambda v: weighted_kappa(confusion(v[:, 0], v[:, 1])))
                if len(a) >= 2 else (math.nan, math.nan))
    return AgreementReport(
        n=len(a),
        pearson=pearson(a, m),
        bland_altman=bland_altman(a, m),
        icc=icc_a1(a, m),
        mae_kpa=float(np.abs(a - m).mean()) if len(a) else math.nan,
        kappa_linear=weighted_kappa(cm),
        stage_agreement=float(np.trace(cm) / cm.sum()) if cm.sum() else math.nan,
        confusion=cm,
        significant=significant_fibrosis(a, m, table.significant_kpa),
        kappa_ci=kappa_ci,
    )


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; both empty → 1.0.

    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[1:3] = True
    >>> dice(a, b)
    0.5
    """
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    s = int(p.sum()) + int(t.sum())
    return 1.0 if s == 0 else 2.0 * int((p & t).sum()) / s


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; both empty → 1.0."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    union = int((p | t).sum())
    return 1.0 if union == 0 else int((p & t).sum()) / union


def bootstrap_ci(values: np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over the first axis of ``values`` (resampling units, e.g. patients)."""
    v = np.asarray(values)
    if len(v) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    boots = np.array([statistic(v[i]) for i in idx], dtype=float)
    if not np.isfinite(boots).any():
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    return float(np.nanpercentile(boots, tail)), float(np.nanpercentile(boots, 100 - tail))
