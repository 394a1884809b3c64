"""Small statistics shared by the report, the claims and the regression gate."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def welch_interval(a, b, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(difference, low, high): confidence interval of mean(a) - mean(b).

    Welch's t interval (Welch 1947; Welch-Satterthwaite degrees of freedom): no equal-variance
    assumption, since a model or code change may well change the seed-to-seed spread. Equals
    scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence). Needs at
    least 2 values on each side; with no spread on either side (deterministic runs) the
    interval is the point difference.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    var_a, var_b = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se2 = var_a + var_b
    if se2 == 0:
        return diff, diff, diff
    dof = se2**2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof) * math.sqrt(se2))
    return diff, diff - half, diff + half


def prediction_interval(x, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): interval expected to hold ONE new draw from the population of x.

    mean ± t_{(1+c)/2, n-1} · s · √(1 + 1/n) for n normal values with sample sd s: the new
    value and the sample mean are independent, so their difference has variance σ²(1 + 1/n)
    (Hahn & Meeker, "Statistical Intervals", 1991, ch. 4; Wikipedia "Prediction interval",
    unknown mean and variance). Equals scipy.stats.t.interval(c, n - 1, mean,
    s·√(1 + 1/n)). Needs n >= 2; with no spread it is the point.
    """
    x = np.asarray(x, dtype=float)
    n, mean = len(x), float(np.mean(x))
    s = float(np.std(x, ddof=1))
    if s == 0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * s * math.sqrt(1 + 1 / n)
    return mean, mean - half, mean + half


def _quiet(test):
    """Run a scipy test without its 'precision loss' warning for near-identical seeds: the
    interval is still right, and a CI log should not fill with it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return test()


def mean_interval(x, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student t interval of mean(x); the point when x has no spread."""
    x = np.asarray(x, dtype=float)
    if np.var(x) == 0:
        return float(np.mean(x)), float(np.mean(x))
    ci = _quiet(lambda: stats.ttest_1samp(x, 0.0).confidence_interval(confidence))
    return float(ci.low), float(ci.high)


def rate_difference_interval(
    k1: int, n1: int, k2: int, n2: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Interval of k1/n1 - k2/n2: Newcombe (1998) method 10, the hybrid of two Wilson
    score intervals. Unlike the Wald interval it stays sensible at 0/n and n/n."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = stats.binomtest(k1, n1).proportion_ci(confidence, method="wilson")
    l2, u2 = stats.binomtest(k2, n2).proportion_ci(confidence, method="wilson")
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def variance_ratio_interval(a, b, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(s_a² / s_b², low, high): interval of the variance ratio from the F distribution
    with (n_a - 1, n_b - 1) degrees of freedom (assumes normal seeds; Snedecor & Cochran)."""
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(va) / np.float64(vb)
    dfs = (len(a) - 1, len(b) - 1)
    q = (1 + confidence) / 2
    return float(ratio), ratio / stats.f.ppf(q, *dfs), ratio / stats.f.ppf(1 - q, *dfs)
