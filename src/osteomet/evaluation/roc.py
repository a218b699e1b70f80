"""ROC curve, AUC and the Youden threshold, matching pROC with ``direction = "<"``.

Direction is fixed, never guessed: a higher score means "more likely a case" (controls < cases,
pROC's ``direction = "<"``). pROC's default ``direction = "auto"`` flips a model whose cases
have the lower median score, which silently turns an AUC of 0.3 into 0.7; a fixed direction
keeps a poor model visible as a poor model.

A patient is called positive when ``score >= threshold`` everywhere in this package.
The AUC is the Mann-Whitney statistic with ties counted one half (identical to the trapezoidal
area under the empirical ROC curve and to ``pROC::auc``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from osteomet.evaluation._validate import labels_and_scores


def roc_curve(y: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC curve: ``(fpr, tpr, thresholds)``, thresholds decreasing.

    Point ``i`` is the operating point of the rule ``score >= thresholds[i]``; the first point
    is ``(0, 0)`` at ``+inf`` (nobody positive), the last is ``(1, 1)`` at the lowest score.
    """
    labels, values = labels_and_scores(y, scores)
    order = np.argsort(-values, kind="mergesort")
    sorted_scores, sorted_labels = values[order], labels[order]
    # last index of each run of equal scores: the rule ">= that score" includes the whole run
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tp = np.cumsum(sorted_labels)[ends]
    fp = (ends + 1) - tp
    tpr = np.r_[0.0, tp / labels.sum()]
    fpr = np.r_[0.0, fp / (~labels).sum()]
    thresholds = np.r_[np.inf, sorted_scores[ends]]
    return fpr, tpr, thresholds


def auc_from_validated(labels: np.ndarray, values: np.ndarray) -> float:
    """AUC on already-validated arrays (used in bootstrap loops to skip re-validation)."""
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    ranks = rankdata(values)  # midranks for ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc(y: Any, scores: Any) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count 1/2); equals ``pROC::auc(direction="<")``."""
    labels, values = labels_and_scores(y, scores)
    return auc_from_validated(labels, values)


def youden_threshold(y: Any, scores: Any) -> float:
    """Cut-off maximising Youden's J = sensitivity + specificity - 1 on these (training) data.

    Like ``pROC::coords(roc, "best", best.method = "youden")`` the threshold returned is the
    midpoint between the optimal cut score and the next lower distinct score, so the rule
    ``score >= threshold`` gives the same calls on these data and a neutral cut for new
    cohorts. Ties in J go to the higher threshold (the more specific rule); when the optimum is
    "everybody positive" the lowest score itself is returned.
    """
    fpr, tpr, thresholds = roc_curve(y, scores)
    j = tpr[1:] - fpr[1:]  # skip the +inf point (J = 0, nobody positive)
    best = int(np.argmax(j))
    cut = thresholds[1:]
    if best + 1 < cut.size:
        return float((cut[best] + cut[best + 1]) / 2.0)
    return float(cut[best])
