"""One tidy table of a model's discrimination and threshold metrics on one cohort.

Rows are ``(model, cohort, metric, estimate, ci_low, ci_high, ci_method, threshold, n, n_pos)``:
the AUC with its DeLong CI (pROC ``ci.auc(method = "delong")``), then AUC, ACC, sensitivity,
specificity, PPV, NPV, precision, recall and F1 with stratified percentile-bootstrap CIs at a
threshold fixed beforehand (chosen on training/validation data). A cohort with fewer than 2
cases or 2 controls gets its AUC with a NaN DeLong interval (the variance is undefined) rather
than an error, so one tiny split does not stop the evaluation of the others. Concatenating the tables of
several models and cohorts gives the long format that plots and the HTML report read.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from osteomet.evaluation._validate import labels_and_scores
from osteomet.evaluation.bootstrap import bootstrap_threshold_metrics
from osteomet.evaluation.delong import AUCInterval, delong_ci
from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.roc import auc_from_validated

REPORT_COLUMNS: tuple[str, ...] = (
    "model",
    "cohort",
    "metric",
    "estimate",
    "ci_low",
    "ci_high",
    "ci_method",
    "threshold",
    "n",
    "n_pos",
)


def evaluate_model(
    y: Any,
    scores: Any,
    threshold: float,
    *,
    model: str = "model",
    cohort: str = "test",
    n_resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Tidy metrics of one model on one cohort (AUC with DeLong and bootstrap CIs; threshold metrics)."""
    labels, values = labels_and_scores(y, scores)
    try:
        delong = delong_ci(labels, values, level)
    except EvaluationInputError:  # fewer than 2 cases or controls: AUC defined, its DeLong variance is not
        delong = AUCInterval(auc_from_validated(labels, values), math.nan, math.nan)
    boot = bootstrap_threshold_metrics(labels, values, threshold, n_resamples=n_resamples, seed=seed, level=level)
    boot["ci_method"] = "bootstrap"
    first = pd.DataFrame(
        [{"metric": "auc", "estimate": delong.auc, "ci_low": delong.low, "ci_high": delong.high, "ci_method": "delong"}]
    )
    table = pd.concat([first, boot], ignore_index=True)
    table["model"] = model
    table["cohort"] = cohort
    table["threshold"] = float(threshold)
    table["n"] = int(labels.size)
    table["n_pos"] = int(labels.sum())
    return table[list(REPORT_COLUMNS)]
