"""Confusion-matrix metrics at a fixed threshold (ACC, sensitivity, specificity, PPV, NPV, F1).

The threshold is chosen once on training/validation data (e.g. :func:`youden_threshold`) and
applied unchanged to every test cohort; re-optimising it on a test cohort would bias every
metric upwards. A patient is positive when ``score >= threshold``. A ratio whose denominator is
zero (PPV when nobody is called positive) is NaN rather than 0, so it is not mistaken for a
measured value. Definitions follow the standard 2x2 table (as in ``pROC::coords`` and
``sklearn.metrics``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from osteomet.evaluation._validate import labels_and_scores
from osteomet.evaluation.errors import EvaluationInputError

METRICS: tuple[str, ...] = ("acc", "sensitivity", "specificity", "ppv", "npv", "precision", "recall", "f1")


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def confusion_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Metrics from boolean truth and boolean calls (no validation; for inner loops)."""
    tp = float(np.count_nonzero(labels & predicted))
    fp = float(np.count_nonzero(~labels & predicted))
    fn = float(np.count_nonzero(labels & ~predicted))
    tn = float(labels.size) - tp - fp - fn
    sens = _ratio(tp, tp + fn)
    ppv = _ratio(tp, tp + fp)
    return {
        "acc": _ratio(tp + tn, float(labels.size)),
        "sensitivity": sens,
        "specificity": _ratio(tn, tn + fp),
        "ppv": ppv,
        "npv": _ratio(tn, tn + fn),
        "precision": ppv,
        "recall": sens,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def threshold_metrics(y: Any, scores: Any, threshold: float) -> dict[str, float]:
    """ACC, sensitivity, specificity, PPV, NPV, precision, recall and F1 of ``score >= threshold``."""
    try:
        value = float(threshold)
    except (TypeError, ValueError) as exc:
        raise EvaluationInputError(f"threshold must be a number, got {threshold!r}") from exc
    if math.isnan(value):
        raise EvaluationInputError("threshold must be a number, got NaN")
    labels, values = labels_and_scores(y, scores)
    return confusion_metrics(labels, values >= value)
