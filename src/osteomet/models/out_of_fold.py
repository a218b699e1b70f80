"""Out-of-fold predictions for training patients: honest inputs for thresholds and for stacking.

A model scoring the patients it was fitted on is optimistic (an XGBoost model reaches a
training AUC near 1), so a Youden threshold chosen on such scores, or a meta-model stacked
on them, inherits the optimism. Each training patient is therefore scored by a model fitted
on the other folds of the training cohort only (stratified k-fold, seeded); validation,
test and external patients are scored by the model fitted on the whole training cohort.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd

from osteomet.errors import InputError


class Classifier(Protocol):
    def fit(self, X: pd.DataFrame, y: Any) -> Any: ...

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...


def out_of_fold_probabilities(make_model: Callable[[], Classifier], X: pd.DataFrame, y: Any, *, folds: int = 5,
                              seed: int = 0) -> np.ndarray:
    """Probability of class 1 for every row of ``X``, each from a model that did not see that row."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y).astype(int)
    smallest = int(np.bincount(y, minlength=2).min())
    k = min(folds, smallest)
    if k < 2:
        raise InputError(f"out-of-fold predictions need at least 2 training patients of each class, got {smallest}")
    probs = np.full(len(y), np.nan)
    for fit_rows, held_out in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        model = make_model().fit(X.iloc[fit_rows], y[fit_rows])
        probs[held_out] = model.predict_proba(X.iloc[held_out])[:, 1]
    return probs


def training_probabilities(make_model: Callable[[], Classifier], X: pd.DataFrame, y: Any, *, folds: int = 5,
                           seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities, or NaN for every training patient (with a warning) when a class has < 2 patients.

    Never the in-sample scores: an empty training prediction is left out of thresholds and
    stacking, an optimistic one would bias them silently.
    """
    import warnings

    counts = np.bincount(np.asarray(y).astype(int), minlength=2)
    if counts.min() < 2:
        warnings.warn(f"only {int(counts.min())} training patient(s) of one class: too few for out-of-fold "
                      "predictions, so training patients get no prediction", UserWarning, stacklevel=2)
        return np.full(len(y), np.nan)
    return out_of_fold_probabilities(make_model, X, y, folds=folds, seed=seed)
