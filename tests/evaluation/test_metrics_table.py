"""The tidy per-model table: DeLong AUC row plus bootstrap rows, consistent with the parts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteomet.evaluation import EvaluationInputError, delong_ci, evaluate_model, threshold_metrics, youden_threshold


def test_evaluate_model_rows_match_components() -> None:
    rng = np.random.default_rng(0)
    y_train = rng.integers(0, 2, 120)
    s_train = rng.normal(size=120) + y_train
    threshold = youden_threshold(y_train, s_train)  # chosen on training data
    y, s = rng.integers(0, 2, 90), rng.normal(size=90)
    s = s + y
    table = evaluate_model(y, s, threshold, model="radiomics", cohort="external", n_resamples=200, seed=3)
    assert list(table["metric"]) == [
        "auc",
        "auc",
        "acc",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "precision",
        "recall",
        "f1",
    ]
    assert list(table["ci_method"]) == ["delong"] + ["bootstrap"] * 9
    assert set(table["model"]) == {"radiomics"} and set(table["cohort"]) == {"external"}
    assert (table["n"] == 90).all() and (table["n_pos"] == y.sum()).all() and (table["threshold"] == threshold).all()
    ci = delong_ci(y, s)
    assert table.iloc[0][["estimate", "ci_low", "ci_high"]].tolist() == pytest.approx(list(ci))
    point = threshold_metrics(y, s, threshold)
    est = table.iloc[2:].set_index("metric")["estimate"]
    assert est.to_dict() == pytest.approx(point)
    both = pd.concat([table, evaluate_model(y, s, threshold, model="clinical", n_resamples=50)])
    assert both.groupby("model").size().to_dict() == {"clinical": 10, "radiomics": 10}


def test_evaluate_model_rejects_one_class_cohort() -> None:
    with pytest.raises(EvaluationInputError, match="only negative"):
        evaluate_model([0, 0, 0], [0.1, 0.2, 0.3], 0.5)
