"""Input checks shared by the evaluation functions, so every function fails the same way."""

from __future__ import annotations

from typing import Any

import numpy as np

from osteomet.evaluation.errors import EvaluationInputError


def as_labels(y: Any, name: str = "y") -> np.ndarray:
    """Binary labels as a 1-D bool array (1/True = case/positive); rejects NaN and other values."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise EvaluationInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    try:
        values = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise EvaluationInputError(f"{name} must be binary 0/1 labels, got dtype {arr.dtype}") from exc
    if np.isnan(values).any():
        raise EvaluationInputError(f"{name} contains {int(np.isnan(values).sum())} NaN label(s)")
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise EvaluationInputError(
            f"{name} must be binary 0/1 labels, found value(s) {sorted(set(values[bad].tolist()))[:5]}"
        )
    return values == 1.0


def as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """Scores as a 1-D float array without NaN (a NaN score would silently shift ranks)."""
    try:
        arr = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as exc:
        raise EvaluationInputError(f"{name} must be numeric; {_first_non_number(scores)}") from exc
    if arr.ndim != 1:
        raise EvaluationInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise EvaluationInputError(f"{name} contains {n_nan} NaN score(s); drop or impute those patients first")
    if np.isinf(arr).any():
        raise EvaluationInputError(f"{name} contains infinite score(s)")
    return arr


def _first_non_number(values: Any) -> str:
    """Where the first value that is not a number sits, for the error message."""
    for i, value in enumerate(np.asarray(values, dtype=object).ravel()):
        try:
            float(value)
        except (TypeError, ValueError):
            return f"element {i} (0-based) is {value!r}"
    return "a value cannot be read as a number"


def labels_and_scores(
    y: Any, scores: Any, *, y_name: str = "y", scores_name: str = "scores", both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels, scores) of equal length; by default both classes must be present."""
    labels = as_labels(y, y_name)
    values = as_scores(scores, scores_name)
    if labels.shape[0] != values.shape[0]:
        raise EvaluationInputError(
            f"length mismatch: {y_name} has {labels.shape[0]} labels but {scores_name} has {values.shape[0]} scores"
        )
    if both_classes:
        n_pos = int(labels.sum())
        if n_pos == 0 or n_pos == labels.shape[0]:
            only = "positive (1)" if n_pos else "negative (0)"
            raise EvaluationInputError(
                f"{y_name} has only {only} labels ({labels.shape[0]} patients); "
                "ROC statistics need both cases and controls"
            )
    return labels, values
