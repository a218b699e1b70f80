"""Proportions (sensitivities, specificities over lesions, patients or bones) with Wilson score intervals.

The Wilson interval keeps its coverage near the nominal level for small counts and for
proportions near 0 or 1, where the Wald interval does not (Brown, Cai & DasGupta 2001);
per-bone-group lesion counts are often that small.
"""

from __future__ import annotations


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """Proportion and its Wilson score interval (statsmodels); NaN when ``n`` is 0."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=1.0 - level, method="wilson")
    return successes / n, float(low), float(high)
