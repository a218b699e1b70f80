"""One table of ROC statistics for one or two scores on the same patients, as pROC reports them.

Per score: the AUC with its DeLong CI (``ci.auc(method = "delong")``) and a stratified
percentile-bootstrap CI (``ci.auc(method = "bootstrap", boot.stratified = TRUE)``; random,
so it agrees with pROC only within Monte Carlo error), and the Youden threshold
(``coords(roc, "best")``). With two scores, the DeLong test of their AUCs: paired
(``roc.test(paired = TRUE)``: Z, normal p) or unpaired (``paired = FALSE``: pROC's D with
Welch-type degrees of freedom and a t p-value).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from osteomet.evaluation._validate import labels_and_scores
from osteomet.evaluation.bootstrap import bootstrap_ci
from osteomet.evaluation.delong import delong_ci, delong_test, delong_test_unpaired
from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.roc import auc_from_validated, youden_threshold


def roc_summary(y: Any, scores: Mapping[str, Any], *, paired: bool = True, level: float = 0.95,
                n_resamples: int = 2000, seed: int | None = 0) -> dict[str, Any]:
    """``{"scores": {name: {auc, ci_delong, ci_bootstrap, threshold}}, "test": {...}}`` (test with two scores)."""
    if not 1 <= len(scores) <= 2:
        raise EvaluationInputError(f"give one or two scores, got {len(scores)}")
    out: dict[str, Any] = {"scores": {}}
    for name, values in scores.items():
        labels, array = labels_and_scores(y, values, y_name="truth", scores_name=str(name))
        ci = delong_ci(labels, array, level)
        boot = bootstrap_ci(labels, array, auc_from_validated, n_resamples=n_resamples, seed=seed, level=level)
        out["scores"][str(name)] = {"auc": ci.auc, "ci_delong": [ci.low, ci.high], "ci_bootstrap": [boot.low, boot.high],
                                    "threshold": youden_threshold(labels, array), "n": int(labels.size),
                                    "n_positive": int(labels.sum())}
    if len(scores) == 2:
        (_, a), (_, b) = scores.items()
        test = delong_test(y, a, b, level) if paired else delong_test_unpaired(y, a, y, b)
        out["test"] = {"method": "delong", "paired": paired, "z": test.z, "p": test.p,
                       "df": None if np.isinf(test.df) else test.df}
    return out
