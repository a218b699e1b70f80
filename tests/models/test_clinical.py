"""The clinical XGBoost model learns from the synthetic study's clinical variables, with missing values,
from training patients only; training predictions are out-of-fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteomet.data.splits import assign_splits
from osteomet.data.synth.clinical import sample_patients
from osteomet.evaluation import auc, delong_ci
from osteomet.models.clinical import ClinicalModel, train_clinical
from osteomet.models.out_of_fold import out_of_fold_probabilities
from osteomet.models.predictions import read_predictions
from osteomet.models.xgb import XGBConfig


def _cohort(n: int = 400, seed: int = 1) -> pd.DataFrame:
    frame = sample_patients(n, seed=seed, missing_rate=0.1)
    frame["patient_id"] = [f"P{i:04d}" for i in range(n)]
    frame["split"] = assign_splits(frame, ratios=(0.6, 0.1, 0.3), seed=seed)
    return frame


def test_learns_with_missing_values_and_beats_chance_on_test(tmp_path: Path) -> None:
    frame = _cohort()
    assert frame["psa"].isna().any()  # missing values are there, and nothing imputes them
    model, predictions = train_clinical(frame, tmp_path)
    test = predictions[predictions["split"] == "test"]
    ci = delong_ci(test["label"], test["prob"])
    assert ci.low > 0.5, f"test AUC {ci.auc:.3f} (95% CI {ci.low:.3f}-{ci.high:.3f}) does not beat chance"
    back = read_predictions(tmp_path / "predictions.csv")
    assert set(back["model"]) == {"clinical"} and len(back) == len(frame)
    loaded = ClinicalModel.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict_proba(frame)[:, 1], model.predict_proba(frame)[:, 1], rtol=1e-6)


def test_held_out_patients_do_not_influence_the_model(tmp_path: Path) -> None:
    frame = _cohort(200, seed=2)
    _, first = train_clinical(frame, tmp_path / "a")
    changed = frame.copy()
    held_out = changed["split"] != "train"
    changed.loc[held_out, ["psa", "age"]] = np.nan  # wipe held-out patients' values and flip their labels
    changed.loc[held_out, "label"] = 1 - changed.loc[held_out, "label"]
    _, second = train_clinical(changed, tmp_path / "b")
    train = first["split"] == "train"
    np.testing.assert_array_equal(first.loc[train, "prob"], second.loc[train, "prob"])


def test_out_of_fold_training_predictions_are_honest() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 5)), columns=list("abcde"))
    y = rng.integers(0, 2, 200)  # no signal at all
    model = ClinicalModel(XGBConfig(n_estimators=200, max_depth=6), features=tuple("abcde")).fit(X, y)
    in_sample = auc(y, model.predict_proba(X)[:, 1])
    oof = out_of_fold_probabilities(lambda: ClinicalModel(XGBConfig(n_estimators=200, max_depth=6),
                                                          features=tuple("abcde")), X, y, seed=3)
    assert in_sample > 0.9 and abs(auc(y, oof) - 0.5) < 0.15
    again = out_of_fold_probabilities(lambda: ClinicalModel(XGBConfig(n_estimators=200, max_depth=6),
                                                            features=tuple("abcde")), X, y, seed=3)
    np.testing.assert_array_equal(oof, again)
    with pytest.raises(ValueError, match="at least 2 training patients of each class"):
        out_of_fold_probabilities(lambda: ClinicalModel(), X.iloc[:3], np.array([0, 0, 1]))
