"""Nested tuning: scores match a plain refit per fold, only training labels are read, selection stays inside the
folds, the choice is recorded and the out-of-fold refits tune again."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from osteomet.data.splits import assign_splits
from osteomet.data.synth.clinical import sample_patients
from osteomet.models import tuning as tuning_module
from osteomet.models.clinical import ClinicalModel, train_clinical
from osteomet.models.fusion import FusionModel, fusion_inputs, train_fusion
from osteomet.models.radiomics import RadiomicsModel, train_radiomics
from osteomet.models.selection import SelectionConfig
from osteomet.models.tuning import TuningConfig, tune
from osteomet.models.xgb import XGBConfig

GRID = {"max_depth": [1, 3], "n_estimators": [10, 40]}
SMALL = TuningConfig(folds=3, grid=GRID, seed=4)


def _cohort(n: int = 160, seed: int = 1) -> pd.DataFrame:
    frame = sample_patients(n, seed=seed, missing_rate=0.1)
    frame["patient_id"] = [f"P{i:04d}" for i in range(n)]
    frame["split"] = assign_splits(frame, ratios=(0.6, 0.1, 0.3), seed=seed)
    frame.loc[frame.index[-20:], "split"] = "external"
    return frame


def _features(frame: pd.DataFrame, seed: int = 0, noise: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.normal(size=(len(frame), noise)), columns=[f"t2_original_glcm_F{i}" for i in range(noise)])
    table["adc_original_firstorder_Mean"] = frame["label"].to_numpy() * 1.0 + rng.normal(0, 1, len(frame))
    table.insert(0, "patient_id", frame["patient_id"].to_numpy())
    return table


class _Frame:
    """What train_radiomics reads of a manifest."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()


def test_scores_equal_a_plain_refit_per_fold_and_the_best_is_chosen() -> None:
    """Reference: sklearn's fold split, one XGBoost fit per grid point, sklearn's AUC (no tree-prefix shortcut)."""
    frame = _cohort()
    train = frame[frame["split"] == "train"]
    y = train["label"].to_numpy()
    model = ClinicalModel(XGBConfig(seed=0))
    result = tune(model, train, y, model.xgb, SMALL)
    X = model.design(train).to_numpy()
    folds = list(StratifiedKFold(3, shuffle=True, random_state=4).split(X, y))
    for _, row in result.table.iterrows():
        config = XGBConfig(seed=0, max_depth=int(row["max_depth"]), n_estimators=int(row["n_estimators"]))
        aucs = [roc_auc_score(y[held], config.classifier().fit(X[fit], y[fit]).predict_proba(X[held])[:, 1])
                for fit, held in folds]
        assert row["mean_auc"] == pytest.approx(np.mean(aucs), abs=1e-9)
    best = result.table["mean_auc"].idxmax()
    assert bool(result.table.loc[best, "chosen"]) and result.table["chosen"].sum() == 1
    assert result.chosen == {"max_depth": int(result.table.loc[best, "max_depth"]),
                             "n_estimators": int(result.table.loc[best, "n_estimators"])}
    assert result.cv_auc == pytest.approx(result.table["mean_auc"].max())


class _HeldOutLabel:
    """A validation, test or external label: any use of its value (number, comparison, truth) fails the test."""

    def _trip(self, *args, **kwargs):
        raise AssertionError("a held-out label was read before the prediction table")

    __int__ = __float__ = __index__ = __bool__ = __eq__ = __ne__ = __lt__ = __gt__ = __le__ = __ge__ = _trip
    __hash__ = _trip


class _Reported(Exception):
    pass


def _poisoned(frame: pd.DataFrame) -> pd.DataFrame:
    poisoned = frame.copy()
    poisoned["label"] = poisoned["label"].astype(object)
    held_out = poisoned["split"] != "train"
    poisoned.loc[held_out, "label"] = [_HeldOutLabel() for _ in range(int(held_out.sum()))]
    return poisoned


@pytest.mark.parametrize("kind", ["clinical", "radiomics", "fusion"])
def test_tuning_never_reads_a_held_out_label_nor_sees_a_held_out_patient(kind, tmp_path, monkeypatch) -> None:
    """Leakage guard: held-out labels trip on any use; tuning, fit and out-of-fold refits all run before the
    prediction table (the report, the only reader of those labels) is reached, and tuning sees training rows only."""
    frame = _cohort()
    features = _features(frame)
    train_ids = set(frame.loc[frame["split"] == "train", "patient_id"])
    seen: list[set[str]] = []
    real_tune = tuning_module.tune

    def spy(model, X, y, base, config):
        ids = set(X.index) if kind == "fusion" else set(frame.loc[X.index, "patient_id"])
        seen.append(ids)
        return real_tune(model, X, y, base, config)

    def reported(*args, **kwargs):
        raise _Reported

    monkeypatch.setattr(tuning_module, "tune", spy)
    poisoned = _poisoned(frame)
    with pytest.raises(_Reported):
        if kind == "clinical":
            monkeypatch.setattr("osteomet.models.clinical.prediction_table", reported)
            train_clinical(poisoned, tmp_path, model=ClinicalModel(tuning=SMALL), folds=3)
        elif kind == "radiomics":
            monkeypatch.setattr("osteomet.models.radiomics.prediction_table", reported)
            train_radiomics(features, _Frame(poisoned), tmp_path, folds=3,
                            model=RadiomicsModel(SelectionConfig(max_features=5, lasso_cs=4, cv_folds=3), tuning=SMALL))
        else:
            monkeypatch.setattr("osteomet.models.fusion.prediction_table", reported)
            inputs = fusion_inputs(frame, radiomics=features)
            train_fusion(inputs, poisoned, tmp_path, folds=3,
                         model=FusionModel(selection=SelectionConfig(max_features=5, lasso_cs=4, cv_folds=3),
                                           tuning=SMALL))
    assert len(seen) == 1 + 3  # the final model and each nested out-of-fold refit
    assert seen[0] == train_ids and all(ids < train_ids for ids in seen[1:])


def test_held_out_patients_change_nothing_in_the_tuning(tmp_path) -> None:
    """Flip every held-out label and wipe their features: the grid table and the chosen values stay the same."""
    frame = _cohort()
    changed = frame.copy()
    held_out = changed["split"] != "train"
    changed.loc[held_out, "label"] = 1 - changed.loc[held_out, "label"]
    changed.loc[held_out, ["psa", "age", "gleason"]] = np.nan
    train_clinical(frame, tmp_path / "a", model=ClinicalModel(tuning=SMALL), folds=3)
    train_clinical(changed, tmp_path / "b", model=ClinicalModel(tuning=SMALL), folds=3)
    first, second = (pd.read_csv(tmp_path / d / "tuning.csv") for d in ("a", "b"))
    pd.testing.assert_frame_equal(first, second)
    assert (json.loads((tmp_path / "a" / "model" / "clinical_model.json").read_text(encoding="utf-8"))["tuning"]["chosen"]
            == json.loads((tmp_path / "b" / "model" / "clinical_model.json").read_text(encoding="utf-8"))["tuning"]["chosen"])


def test_selection_inside_the_folds_keeps_noise_at_chance() -> None:
    """Pure-noise features (the truth: AUC 0.5): selecting on all training rows before the CV makes its AUC
    optimistic; refitting the selection inside each fold does not. Averaged over three cohorts (one CV is noisy)."""
    selection = SelectionConfig(max_features=5, lasso_cs=4, cv_folds=3, seed=0)
    config = TuningConfig(folds=4, grid={"max_depth": [2], "n_estimators": [50]}, seed=1)
    inside, outside = [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 120)
        X = pd.DataFrame(rng.normal(size=(120, 400)), columns=[f"f{i}" for i in range(400)])
        inside.append(tune(RadiomicsModel(selection), X, y, XGBConfig(), config).cv_auc)
        chosen = RadiomicsModel(selection).fit(X, y).features  # the leak: every training row helps choose

        class SelectedOnAllRows:
            def design_step(self, X_fit, y_fit, columns=chosen):
                return lambda Z: Z[columns].to_numpy()

        outside.append(tune(SelectedOnAllRows(), X, y, XGBConfig(), config).cv_auc)
    assert np.mean(inside) < 0.58, inside
    assert np.mean(outside) > np.mean(inside) + 0.1, (outside, inside)


def test_chosen_values_are_recorded_and_reloaded(tmp_path) -> None:
    frame = _cohort()
    model, predictions = train_clinical(frame, tmp_path, model=ClinicalModel(tuning=SMALL), folds=3)
    meta = json.loads((tmp_path / "model" / "clinical_model.json").read_text(encoding="utf-8"))
    chosen = meta["tuning"]["chosen"]
    assert set(chosen) == set(GRID) and meta["tuning"]["folds"] == 3
    assert {k: meta["xgb"][k] for k in chosen} == chosen  # the saved settings are the tuned ones
    table = pd.read_csv(tmp_path / "tuning.csv")
    assert len(table) == 4 and table["chosen"].sum() == 1
    outer = pd.read_csv(tmp_path / "tuning_out_of_fold.csv")
    assert list(outer["fold"]) == [1, 2, 3] and set(GRID) <= set(outer.columns)
    loaded = ClinicalModel.load(tmp_path / "model")
    held = frame[frame["split"] != "train"]
    np.testing.assert_allclose(loaded.predict_proba(held)[:, 1], model.predict_proba(held)[:, 1], rtol=1e-6)
    assert loaded.xgb.max_depth == chosen["max_depth"] and loaded.xgb.n_estimators == chosen["n_estimators"]


def test_not_nested_reuses_the_chosen_values_and_off_removes_the_grid(tmp_path) -> None:
    frame = _cohort()
    flat = TuningConfig(folds=3, grid=GRID, seed=4, nested_out_of_fold=False)
    model, _ = train_clinical(frame, tmp_path, model=ClinicalModel(tuning=flat), folds=3)
    assert (tmp_path / "tuning.csv").is_file() and not (tmp_path / "tuning_out_of_fold.csv").exists()
    refit = model.fresh(nested=False)
    assert refit.tuning is None and refit.xgb.max_depth == model.tuned.chosen["max_depth"]
    train_clinical(frame, tmp_path, model=ClinicalModel(), folds=3)
    assert not (tmp_path / "tuning.csv").exists()
    assert json.loads((tmp_path / "model" / "clinical_model.json").read_text(encoding="utf-8"))["tuning"] is None


def test_a_grid_naming_an_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown XGBoost setting"):
        TuningConfig(grid={"depth": [2]}).points()
