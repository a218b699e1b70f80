"""SHAP explanations: per patient the values add up to the model's margin, and they equal Shapley values computed
by brute force from the trees (every feature subset, path-dependent expectations from XGBoost's own tree dump)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from osteomet.models.clinical import ClinicalModel
from osteomet.models.explain import explain, patient_figure, summary_figure
from osteomet.models.fusion import FusionModel, fusion_inputs
from osteomet.models.radiomics import RadiomicsModel
from osteomet.models.selection import SelectionConfig
from osteomet.models.xgb import XGBConfig
from tests.models.test_tuning import _cohort, _features


def _margin(model, X: pd.DataFrame) -> np.ndarray:
    return model.classifier.predict(model.design(X).to_numpy(), output_margin=True)


def test_shap_values_sum_to_the_margin_of_every_model_per_patient() -> None:
    frame = _cohort()
    features = _features(frame)
    train = frame["split"] == "train"
    y = frame.loc[train, "label"].to_numpy()
    selection = SelectionConfig(max_features=5, lasso_cs=4, cv_folds=3)
    clinical = ClinicalModel(XGBConfig(n_estimators=60, max_depth=3)).fit(frame[train], y)
    radiomics = RadiomicsModel(selection, XGBConfig(n_estimators=60)).fit(features[train.to_numpy()], y)
    inputs = fusion_inputs(frame, radiomics=features)
    fusion = FusionModel(selection=selection, xgb=XGBConfig(n_estimators=60)).fit(inputs[train.to_numpy()], y)
    assert frame["psa"].isna().any()  # missing values are explained along XGBoost's default directions
    for model, X in ((clinical, frame), (radiomics, features), (fusion, inputs)):
        explanation = explain(model, X)
        assert list(explanation.values.columns) == list(model.design(X).columns)
        np.testing.assert_allclose(explanation.margin().to_numpy(), _margin(model, X), atol=1e-4)
        probs = model.predict_proba(X)[:, 1]
        np.testing.assert_allclose(1 / (1 + np.exp(-explanation.margin().to_numpy())), probs, atol=1e-5)


def _conditional(tree: pd.DataFrame, x: np.ndarray, known: set[int]) -> float:
    """E[tree(x) | x_S] the path-dependent way: follow x on features in S, else average children by cover."""
    nodes = tree.set_index("ID")

    def walk(node_id: str) -> float:
        node = nodes.loc[node_id]
        if node["Feature"] == "Leaf":
            return float(node["Gain"])
        j = int(node["Feature"][1:])
        if j in known:
            value = x[j]
            child = node["Missing"] if np.isnan(value) else (node["Yes"] if value < node["Split"] else node["No"])
            return walk(child)
        yes, no = nodes.loc[node["Yes"]], nodes.loc[node["No"]]
        return (yes["Cover"] * walk(node["Yes"]) + no["Cover"] * walk(node["No"])) / (yes["Cover"] + no["Cover"])

    return walk(tree["ID"].iloc[0])


def test_shap_values_equal_brute_force_shapley_values_of_the_trees() -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(80, 3)), columns=["age", "psa", "gleason"])
    X.loc[::7, "psa"] = np.nan
    y = (X["age"].fillna(0) + 0.8 * X["psa"].fillna(0) + rng.normal(0, 0.8, 80) > 0).astype(int).to_numpy()
    model = ClinicalModel(XGBConfig(n_estimators=6, max_depth=2, subsample=1.0, colsample_bytree=1.0),
                          features=("age", "psa", "gleason")).fit(X, y)
    trees = model.classifier.get_booster().trees_to_dataframe()
    explanation = explain(model, X.iloc[:6])
    m = 3

    def v(x: np.ndarray, subset: set[int]) -> float:
        return sum(_conditional(tree, x, subset) for _, tree in trees.groupby("Tree"))

    for row in range(6):
        x = X.iloc[row].to_numpy(dtype=float)
        for i in range(m):
            others = [j for j in range(m) if j != i]
            phi = sum(math.factorial(len(s)) * math.factorial(m - len(s) - 1) / math.factorial(m)
                      * (v(x, set(s) | {i}) - v(x, set(s)))
                      for r in range(m) for s in itertools.combinations(others, r))
            assert explanation.values.iloc[row, i] == pytest.approx(phi, abs=1e-5)
    constant = _margin(model, X.iloc[:1])[0] - v(X.iloc[0].to_numpy(dtype=float), {0, 1, 2})
    assert explanation.base == pytest.approx(constant + v(X.iloc[0].to_numpy(dtype=float), set()), abs=1e-5)


def test_top_contributions_and_figures(tmp_path) -> None:
    from osteomet.models.explain import contributions
    from osteomet.utils.figures import save_figure

    frame = _cohort()
    train = frame["split"] == "train"
    model = ClinicalModel(XGBConfig(n_estimators=40)).fit(frame[train], frame.loc[train, "label"].to_numpy())
    explanation = explain(model, frame)
    row = explanation.values.index[0]
    top = explanation.top(row, 3)
    magnitudes = [abs(t["shap"]) for t in top]
    assert len(top) == 3 and magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[0] == pytest.approx(explanation.values.loc[row].abs().max())
    importance = explanation.importance()
    assert importance["mean_abs_shap"].is_monotonic_decreasing and importance["rank"].tolist()[0] == 1
    one = contributions(model, frame.iloc[[0]], 4)
    assert one["probability"] == pytest.approx(model.predict_proba(frame.iloc[[0]])[0, 1], abs=1e-5)
    assert one["base"] + sum(explanation.values.iloc[0]) == pytest.approx(one["margin"], abs=1e-4)
    for name, fig in (("summary.png", summary_figure(explanation, "clinical")),
                      ("patient.png", patient_figure({"clinical": one}, "P0000"))):
        path = save_figure(fig, tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
