"""ROC curve, AUC and Youden threshold against scikit-learn and pROC (fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from osteomet.evaluation import EvaluationInputError, auc, roc_curve, threshold_metrics, youden_threshold
from tests.evaluation.r_reference import TOL, roc_data, roc_results


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_roc_curve_and_auc_match_sklearn(decimals) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    if decimals is not None:
        s = np.round(s, decimals)
    fpr, tpr, thr = roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert thr[0] == np.inf
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auc(y, s) == pytest.approx(np.trapezoid(tpr, fpr), abs=1e-12)


def test_roc_points_are_the_rule_score_at_least_threshold() -> None:
    y = np.array([0, 1, 0, 1, 1, 0, 1])
    s = np.array([0.2, 0.5, 0.5, 0.9, 0.1, 0.3, 0.7])
    fpr, tpr, thr = roc_curve(y, s)
    for f, t, c in zip(fpr[1:], tpr[1:], thr[1:]):
        m = threshold_metrics(y, s, c)
        assert (t, 1 - f) == pytest.approx((m["sensitivity"], m["specificity"]))


def test_auc_and_youden_match_proc_fixtures() -> None:
    data, results = roc_data(), roc_results().set_index("case")
    for case, ref in results.iterrows():
        a = data[(data["case"] == case) & (data["cohort"] == "A")]
        assert auc(a["y"], a["score1"]) == pytest.approx(ref["auc1"], abs=TOL)
        assert youden_threshold(a["y"], a["score1"]) == pytest.approx(ref["youden1"], abs=TOL), case


def test_youden_threshold_maximises_j_by_brute_force() -> None:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.normal(size=80) + y, 1)
    t = youden_threshold(y, s)
    j = lambda c: sum(threshold_metrics(y, s, c)[k] for k in ("sensitivity", "specificity")) - 1  # noqa: E731
    best = max(j(c) for c in np.unique(s))
    assert j(t) == pytest.approx(best)
    assert t not in set(s)  # a midpoint between two observed scores


def test_one_class_and_nonbinary_labels_are_rejected() -> None:
    with pytest.raises(EvaluationInputError, match="only negative"):
        auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(EvaluationInputError, match="binary"):
        auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(EvaluationInputError, match="NaN label"):
        roc_curve([0, np.nan, 1], [0.1, 0.2, 0.3])
