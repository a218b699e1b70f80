"""Threshold metrics against scikit-learn's confusion-matrix metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from osteomet.evaluation import EvaluationInputError, threshold_metrics


@pytest.mark.parametrize("threshold", [-0.5, 0.0, 0.3, 1.1])
def test_matches_sklearn(threshold: float) -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    m = threshold_metrics(y, s, threshold)
    assert m["acc"] == pytest.approx(accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred))
    assert m["recall"] == m["sensitivity"]
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["ppv"] == pytest.approx(precision_score(y, pred))
    assert m["precision"] == m["ppv"]
    assert m["npv"] == pytest.approx(tn / (tn + fn))
    assert m["f1"] == pytest.approx(f1_score(y, pred))


def test_score_equal_to_threshold_is_positive() -> None:
    m = threshold_metrics([0, 1], [0.5, 0.5], 0.5)
    assert (m["sensitivity"], m["specificity"]) == (1.0, 0.0)


def test_undefined_ratio_is_nan_not_zero() -> None:
    m = threshold_metrics([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 0.9)  # nobody called positive
    assert math.isnan(m["ppv"]) and m["npv"] == 0.5 and m["sensitivity"] == 0.0


def test_bad_threshold_and_lengths() -> None:
    with pytest.raises(EvaluationInputError, match="threshold"):
        threshold_metrics([0, 1], [0.1, 0.2], float("nan"))
    with pytest.raises(EvaluationInputError, match="length mismatch"):
        threshold_metrics([0, 1, 1], [0.1, 0.2], 0.1)
