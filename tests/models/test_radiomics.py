"""Radiomics model: train-only selection, learning, JSON-only persistence."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from osteomet.models.radiomics import RadiomicsModel
from osteomet.models.selection import FeatureSelector, SelectionConfig


def _table(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """200 noise features, two informative ones, a near-copy of the first, a constant."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = pd.DataFrame(rng.normal(size=(n, 200)), columns=[f"t2_original_glcm_F{i}" for i in range(200)])
    X["adc_original_firstorder_Mean"] = y * 1.2 + rng.normal(0, 1, n)
    X["adc_original_firstorder_Median"] = X["adc_original_firstorder_Mean"] * 2 + rng.normal(0, 0.05, n)
    X["t2_original_shape_Volume"] = y * 0.9 + rng.normal(0, 1, n)
    X["dwi_original_firstorder_Constant"] = 3.0
    return X, y


def test_selection_keeps_signal_drops_redundant_and_constant():
    X, y = _table()
    selector = FeatureSelector(SelectionConfig()).fit(X, y)
    assert "dwi_original_firstorder_Constant" not in selector.after_variance
    informative = {"adc_original_firstorder_Mean", "adc_original_firstorder_Median"}
    assert len(informative & set(selector.after_correlation)) == 1  # one of the near-copies only
    assert "t2_original_shape_Volume" in selector.selected
    assert informative & set(selector.selected)
    assert not selector.fallback


def test_selection_sees_only_training_rows():
    X, y = _table()
    train = np.arange(len(y)) < 200
    first = FeatureSelector().fit(X[train], y[train])
    X2 = X.copy()
    X2.loc[~train] = np.random.default_rng(9).normal(size=X2.loc[~train].shape) * 100  # scramble test rows
    second = FeatureSelector().fit(X2[train], y[train])
    assert first.selected == second.selected and first.medians == second.medians


def test_model_learns_and_round_trips_through_json_only(tmp_path: Path):
    X, y = _table(400)
    train = np.arange(len(y)) < 250
    model = RadiomicsModel().fit(X[train], y[train])
    auc = roc_auc_score(y[~train], model.predict_proba(X[~train])[:, 1])
    assert auc > 0.75
    folder = model.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["radiomics_model.json", "xgboost.json"]
    for path in folder.iterdir():
        json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no pickle
    loaded = RadiomicsModel.load(folder)
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6)
    assert loaded.features == model.features


def test_clear_errors():
    X, y = _table(50)
    with pytest.raises(ValueError, match="both 0 and 1"):
        RadiomicsModel().fit(X, np.zeros(50))
    with pytest.raises(ValueError, match="50 feature rows but 49 labels"):
        RadiomicsModel().fit(X, y[:49])
    model = RadiomicsModel().fit(X, y)
    with pytest.raises(ValueError, match="lacks .* selected feature"):
        model.predict_proba(X.drop(columns=model.features[:1]))
    with pytest.raises(FileNotFoundError, match="not a saved radiomics model"):
        RadiomicsModel.load("/nonexistent")


def test_training_predictions_are_out_of_fold(tmp_path: Path):
    from osteomet.data.manifest import Manifest, MRIRecord
    from osteomet.models.radiomics import train_radiomics

    X, y = _table(160, seed=4)
    ids = [f"P{i:03d}" for i in range(len(y))]
    split = np.where(np.arange(len(y)) < 100, "train", "test")
    records = [MRIRecord.model_construct(patient_id=p, label=int(v), split=s, t2=None, dwi=None, adc=None, mask=None,
                                         centre="C1") for p, v, s in zip(ids, y, split)]
    features = X.assign(patient_id=ids)
    model, predictions = train_radiomics(features, Manifest(kind="mri", records=records, path=None), tmp_path)
    train = predictions["split"] == "train"
    in_sample = model.predict_proba(X)[:, 1]
    assert roc_auc_score(y[train], in_sample[train]) > roc_auc_score(y[train], predictions.loc[train, "prob"]) + 0.05
    np.testing.assert_allclose(predictions.loc[~train, "prob"], in_sample[~train], rtol=1e-6)
    assert not np.allclose(predictions.loc[train, "prob"], in_sample[train])


def test_a_model_saved_in_another_format_version_is_refused(tmp_path: Path):
    X, y = _table(80)
    folder = RadiomicsModel().fit(X, y).save(tmp_path / "model")
    meta = json.loads((folder / "radiomics_model.json").read_text(encoding="utf-8"))
    (folder / "radiomics_model.json").write_text(json.dumps({**meta, "format": "osteomet.radiomics_model/9"}))
    with pytest.raises(ValueError, match=r"unknown model format 'osteomet.radiomics_model/9' \(this osteomet reads"):
        RadiomicsModel.load(folder)
