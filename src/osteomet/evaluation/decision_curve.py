"""Decision curve analysis: net benefit of acting on a model's predictions (Vickers & Elkin 2006).

At threshold probability ``pt`` (the risk at which one would act: here, work up bone
metastasis), a patient is treated when ``p >= pt`` and

    net benefit = TP / n - FP / n * pt / (1 - pt)

with the two reference strategies "treat all" (``prevalence - (1 - prevalence) * pt / (1 - pt)``)
and "treat none" (0). A model is useful at ``pt`` where its net benefit exceeds both.

This is what ``dcurves.dca`` (the method authors' implementation, binary outcome, no harm)
computes, with the same ``p >= pt`` rule; the tests compare the two to 1e-9. The optional
:func:`net_benefit_ci` adds percentile bootstrap bands (patients resampled with replacement, as
rmda::decision_curve does), for reading how much of a curve's shape is sampling noise.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from osteomet.evaluation._validate import labels_and_scores
from osteomet.evaluation.errors import EvaluationInputError

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.01, 1.0, 0.01), 2))


def _thresholds(thresholds: Sequence[float]) -> np.ndarray:
    pts = np.asarray(thresholds, dtype=float)
    if pts.ndim != 1 or pts.size == 0:
        raise EvaluationInputError("decision-curve thresholds must be a non-empty list of probabilities")
    if ((pts <= 0) | (pts >= 1)).any() or np.isnan(pts).any():
        raise EvaluationInputError("decision-curve thresholds must lie strictly between 0 and 1")
    return pts


def _net_benefits(labels: np.ndarray, p: np.ndarray, pts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model and treat-all net benefit per threshold (rows) and per weighting of the patients (columns).

    ``counts`` (patients x resamples) says how often each patient is drawn: 1 for the data itself.
    """
    n = counts.sum(axis=0)
    odds = (pts / (1 - pts))[:, None]
    treated = (p[None, :] >= pts[:, None]).astype(float)
    tp = treated @ (counts * labels[:, None]) / n
    fp = treated @ (counts * ~labels[:, None]) / n
    prevalence = (counts * labels[:, None]).sum(axis=0) / n
    return tp - fp * odds, prevalence[None, :] - (1 - prevalence[None, :]) * odds


def net_benefit(y: Any, probs: Any, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """``threshold, model, treat_all, treat_none`` net benefits, one row per threshold in (0, 1)."""
    labels, p = labels_and_scores(y, probs, scores_name="probabilities", both_classes=False)
    pts = _thresholds(thresholds)
    model, treat_all = _net_benefits(labels, p, pts, np.ones((p.size, 1)))
    return pd.DataFrame({"threshold": pts, "model": model[:, 0], "treat_all": treat_all[:, 0], "treat_none": 0.0})


def net_benefit_ci(y: Any, probs: Any, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *,
                   n_resamples: int = 1000, seed: int | None = 0, level: float = 0.95) -> pd.DataFrame:
    """:func:`net_benefit` plus percentile bootstrap bands ``model_low, model_high, treat_all_low, treat_all_high``.

    Patients are resampled with replacement (not by class: the prevalence varies as it would in a
    new cohort), with :func:`osteomet.evaluation.bootstrap.resample_indices` and ``seed``, so a
    rerun gives the same band; quantiles are R's type 7.
    """
    from osteomet.evaluation.bootstrap import resample_indices

    if not 0 < level < 1:
        raise EvaluationInputError(f"confidence level must lie strictly between 0 and 1, got {level}")
    labels, p = labels_and_scores(y, probs, scores_name="probabilities", both_classes=False)
    pts = _thresholds(thresholds)
    table = net_benefit(labels, p, pts)
    counts = np.stack([np.bincount(index, minlength=p.size)
                       for index in resample_indices(labels, n_resamples, seed=seed, stratified=False)], axis=1)
    model, treat_all = _net_benefits(labels, p, pts, counts.astype(float))
    tails = [(1 - level) / 2, (1 + level) / 2]
    for name, values in (("model", model), ("treat_all", treat_all)):
        low, high = np.quantile(values, tails, axis=1)
        table[f"{name}_low"], table[f"{name}_high"] = low, high
    return table
