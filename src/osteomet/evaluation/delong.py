"""DeLong AUC confidence interval and DeLong tests, matching pROC 1.18 exactly.

* :func:`delong_ci` = ``pROC::ci.auc(roc, method = "delong")``: normal approximation on the AUC
  scale (not logit), ``auc +/- z * sqrt(S)`` with ``S = var(V10)/m + var(V01)/n`` (sample
  variances, ``ddof = 1``), clipped to ``[0, 1]``.
* :func:`delong_test` = ``pROC::roc.test(r1, r2, method = "delong", paired = TRUE)``:
  ``Z = (auc1 - auc2) / sqrt(var1 + var2 - 2 cov)``, two-sided ``p = 2 * Phi(-|Z|)`` (the
  p-value itself, not its log). Like pROC, ``0/0`` (two identical perfect models) gives Z = 0.
* :func:`delong_test_unpaired` = ``pROC::roc.test(..., method = "delong", paired = FALSE)``:
  pROC's two-sample version is a t statistic ``D = (auc1 - auc2) / sqrt(S1 + S2)`` with
  Welch-Satterthwaite degrees of freedom and a Student-t p-value; ``z`` holds D and ``df`` the
  degrees of freedom.

Placements use the fast algorithm of Sun & Xu (2014, IEEE SPL 21:1389): midranks of the pooled,
case-only and control-only scores give every structural component in O(n log n), ties counted
one half. Direction is fixed to ``controls < cases`` (pROC ``direction = "<"``). With fewer
than 2 cases or 2 controls the DeLong variance is undefined: pROC returns NA, these functions
raise :class:`EvaluationInputError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import norm, rankdata
from scipy.stats import t as student_t

from osteomet.evaluation._validate import as_scores, labels_and_scores
from osteomet.evaluation.errors import EvaluationInputError


class AUCInterval(NamedTuple):
    """AUC with the bounds of its confidence interval."""

    auc: float
    low: float
    high: float


@dataclass(frozen=True)
class DeLongTest:
    """Result of a DeLong comparison of two AUCs (``auc1 - auc2``).

    ``z`` is the test statistic (Z for paired, pROC's D for unpaired), ``p`` the two-sided
    p-value, ``df`` the t degrees of freedom (``inf`` for the paired normal test), and
    ``diff_low``/``diff_high`` the confidence interval of ``auc1 - auc2`` (paired only, as
    pROC reports it; NaN for unpaired).
    """

    z: float
    p: float
    auc1: float
    auc2: float
    df: float = math.inf
    diff_low: float = math.nan
    diff_high: float = math.nan
    paired: bool = True


class Placements(NamedTuple):
    """DeLong structural components: per-case ``v10`` and per-control ``v01`` placements."""

    theta: float
    v10: np.ndarray
    v01: np.ndarray


def placements(labels: np.ndarray, values: np.ndarray) -> Placements:
    """Sun & Xu midrank placements on validated arrays (bool labels, float scores).

    For a case, ``v10`` is the fraction of controls scoring below it (ties 1/2); for a
    control, ``v01`` is the fraction of cases scoring above it (ties 1/2).
    """
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    pooled = rankdata(values)
    rank_pos = rankdata(values[labels])
    rank_neg = rankdata(values[~labels])
    v10 = (pooled[labels] - rank_pos) / n_neg
    v01 = 1.0 - (pooled[~labels] - rank_neg) / n_pos
    return Placements(float(v10.mean()), v10, v01)


def _check_sizes(labels: np.ndarray, name: str = "y") -> None:
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos < 2 or n_neg < 2:
        raise EvaluationInputError(
            f"DeLong variance needs at least 2 cases and 2 controls in {name}; got {n_pos} case(s), {n_neg} control(s)"
        )


def _variance(p: Placements) -> float:
    return float(np.var(p.v10, ddof=1) / p.v10.size + np.var(p.v01, ddof=1) / p.v01.size)


def delong_covariance(y: Any, *scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of several models on the same patients and their DeLong covariance matrix."""
    if not scores:
        raise EvaluationInputError("delong_covariance needs at least one score vector")
    labels, first = labels_and_scores(y, scores[0], scores_name="scores1")
    values = [first] + [labels_and_scores(labels, s, scores_name=f"scores{i + 2}")[1] for i, s in enumerate(scores[1:])]
    _check_sizes(labels)
    comps = [placements(labels, v) for v in values]
    v10 = np.vstack([c.v10 for c in comps])
    v01 = np.vstack([c.v01 for c in comps])
    cov = np.atleast_2d(np.cov(v10, ddof=1)) / v10.shape[1] + np.atleast_2d(np.cov(v01, ddof=1)) / v01.shape[1]
    return np.array([c.theta for c in comps]), cov


def delong_ci(y: Any, scores: Any, level: float = 0.95) -> AUCInterval:
    """AUC and its DeLong confidence interval (``pROC::ci.auc(method = "delong")``)."""
    if not 0.0 < level < 1.0:
        raise EvaluationInputError(f"level must be in (0, 1), got {level}")
    labels, values = labels_and_scores(y, scores)
    _check_sizes(labels)
    p = placements(labels, values)
    sd = math.sqrt(_variance(p))
    z = float(norm.ppf(1.0 - (1.0 - level) / 2.0))
    low, high = p.theta - z * sd, p.theta + z * sd
    return AUCInterval(p.theta, min(max(low, 0.0), 1.0), min(max(high, 0.0), 1.0))


def _ratio(d: float, sig: float) -> float:
    if sig == 0.0:
        return 0.0 if d == 0.0 else math.copysign(math.inf, d)
    return d / sig


def delong_test(y: Any, scores1: Any, scores2: Any, level: float = 0.95) -> DeLongTest:
    """Paired DeLong test of two models scored on the same patients (``roc.test(paired = TRUE)``)."""
    labels, v1 = labels_and_scores(y, scores1, scores_name="scores1")
    v2 = as_scores(scores2, "scores2")
    if v2.size != v1.size:
        raise EvaluationInputError(
            f"length mismatch: scores1 has {v1.size} scores but scores2 has {v2.size}; "
            "a paired test needs the same patients"
        )
    _check_sizes(labels)
    p1, p2 = placements(labels, v1), placements(labels, v2)
    m, n = p1.v10.size, p1.v01.size
    d10, d01 = p1.v10 - p2.v10, p1.v01 - p2.v01
    var_diff = float(np.var(d10, ddof=1) / m + np.var(d01, ddof=1) / n)  # = var1 + var2 - 2 cov
    sig = math.sqrt(max(var_diff, 0.0))  # rounding can make an exact 0 slightly negative
    d = p1.theta - p2.theta
    z = _ratio(d, sig)
    crit = float(norm.ppf(1.0 - (1.0 - level) / 2.0))
    return DeLongTest(
        z=z,
        p=float(2.0 * norm.sf(abs(z))),
        auc1=p1.theta,
        auc2=p2.theta,
        diff_low=d - crit * sig,
        diff_high=d + crit * sig,
        paired=True,
    )


def delong_test_unpaired(y1: Any, scores1: Any, y2: Any, scores2: Any) -> DeLongTest:
    """Two-sample DeLong comparison of AUCs on different patients (``roc.test(paired = FALSE)``)."""
    l1, v1 = labels_and_scores(y1, scores1, y_name="y1", scores_name="scores1")
    l2, v2 = labels_and_scores(y2, scores2, y_name="y2", scores_name="scores2")
    _check_sizes(l1, "y1")
    _check_sizes(l2, "y2")
    p1, p2 = placements(l1, v1), placements(l2, v2)
    s1, s2 = _variance(p1), _variance(p2)
    d = p1.theta - p2.theta
    stat = _ratio(d, math.sqrt(s1 + s2))
    denom = s1**2 / (l1.size - 1) + s2**2 / (l2.size - 1)
    df = (s1 + s2) ** 2 / denom if denom > 0 else math.inf
    return DeLongTest(
        z=stat, p=float(2.0 * student_t.sf(abs(stat), df)), auc1=p1.theta, auc2=p2.theta, df=df, paired=False
    )
