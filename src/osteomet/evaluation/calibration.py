"""Calibration of predicted probabilities: Brier score, calibration intercept and slope, binned curve.

* **Brier score**: mean squared difference between probability and outcome.
* **Calibration slope**: the coefficient of ``logit(p)`` in a logistic regression of the
  outcome on ``logit(p)`` (R: ``glm(y ~ qlogis(p), family = binomial)``); 1 is ideal, below 1
  means predictions too extreme (overfitting).
* **Calibration intercept** (calibration-in-the-large): the intercept of a logistic
  regression with ``logit(p)`` as offset (R: ``glm(y ~ offset(qlogis(p)), family = binomial)``);
  0 is ideal, negative means probabilities too high on average.
* **Curve**: observed event rate against mean predicted probability in quantile bins.

Probabilities of exactly 0 or 1 are moved by 1e-12 inside (0, 1) before the logit.
(Van Calster et al., "Calibration: the Achilles heel of predictive analytics", BMC Med 2019.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from osteomet.evaluation._validate import labels_and_scores
from osteomet.evaluation.errors import EvaluationInputError

EPS = 1e-12


@dataclass(frozen=True)
class Calibration:
    brier: float
    intercept: float
    slope: float
    n: int


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def calibration(y: Any, probs: Any) -> Calibration:
    """Brier score, calibration intercept (with logit offset) and slope of probabilities against outcomes."""
    import statsmodels.api as sm

    labels, p = labels_and_scores(y, probs, scores_name="probabilities")
    if (p < 0).any() or (p > 1).any():
        raise EvaluationInputError("calibration needs probabilities in [0, 1]")
    outcome = labels.astype(float)
    lp = _logit(p)
    import warnings

    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    with warnings.catch_warnings():  # a perfectly separating model (small cohorts) gets an extreme slope, as in R
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        warnings.filterwarnings("ignore", "overflow encountered in exp", RuntimeWarning)  # same cases, IRLS steps
        offset_fit = sm.GLM(outcome, np.ones_like(lp), family=sm.families.Binomial(), offset=lp).fit()
        if np.ptp(lp) == 0:  # one predicted value for everyone: the slope is aliased (NA in R's glm)
            slope = float("nan")
        else:
            slope_fit = sm.GLM(outcome, sm.add_constant(lp, has_constant="add"),
                               family=sm.families.Binomial()).fit()
            slope = float(slope_fit.params[1])
    return Calibration(brier=float(np.mean((p - outcome) ** 2)), intercept=float(offset_fit.params[0]),
                       slope=slope, n=int(p.size))


def calibration_curve(y: Any, probs: Any, bins: int = 10) -> pd.DataFrame:
    """Observed rate and mean prediction per quantile bin: ``bin, n, mean_predicted, observed``."""
    labels, p = labels_and_scores(y, probs, scores_name="probabilities", both_classes=False)
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(bins, p.size))
    return pd.DataFrame([{"bin": i, "n": int(g.size), "mean_predicted": float(p[g].mean()),
                          "observed": float(labels[g].mean())} for i, g in enumerate(groups) if g.size])
