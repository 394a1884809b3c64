"""Small statistics shared by the report, the claims and the regression gate."""

from __future__ import annotations

import math

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
