"""The radiomics model: train-only feature selection, then an XGBoost classifier.

With a ``tuning`` config the XGBoost settings are chosen by CV among the training rows, the
selection refitted inside every fold (:mod:`osteomet.models.tuning`).

Saved as two JSON files and nothing else (no pickle): ``xgboost.json`` (XGBoost's own
format) and ``radiomics_model.json`` (selected features, imputation medians, selection
record, hyper-parameters), so a model can be shared and loaded without trusting code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from osteomet.data.manifest import Manifest
from osteomet.errors import InputError
from osteomet.layout import MODEL_DIR, PREDICTIONS, model_meta
from osteomet.models.out_of_fold import training_probabilities
from osteomet.models.predictions import prediction_table, write_predictions
from osteomet.models.selection import FeatureSelector, SelectionConfig
from osteomet.models.tuning import (
    TuningConfig,
    TuningResult,
    maybe_tune,
    refit_factory,
    tuned_xgb,
    tuning_record,
    write_tuning,
)
from osteomet.models.xgb import XGBConfig, check_feature_count, feature_mismatch, load_bundle, reading_meta, save_bundle

FORMAT = "osteomet.radiomics_model/1"
META = model_meta("radiomics")
MODEL_NAME = "radiomics"


@dataclass
class RadiomicsModel:
    """sklearn-style: ``fit(X, y)``, ``predict_proba(X)`` with X a feature DataFrame."""

    selection: SelectionConfig = field(default_factory=SelectionConfig)
    xgb: XGBConfig = field(default_factory=XGBConfig)
    selector: FeatureSelector | None = None
    classifier: Any = None
    #: nested tuning of the XGBoost settings, the selection refitted in every CV fold (None: the preset)
    tuning: TuningConfig | None = None
    tuned: TuningResult | None = None
    #: the JSON record it was loaded from (named when a feature table does not match it)
    source: Path | None = field(default=None, compare=False, repr=False)

    def design_step(self, X: pd.DataFrame, y: np.ndarray):
        """The selection fitted on these rows only, as a transform of any rows (what a CV fold needs)."""
        selector = FeatureSelector(self.selection).fit(numeric_features(X), y)
        return lambda Z: selector.transform(Z).to_numpy()

    def design(self, X: pd.DataFrame) -> pd.DataFrame:
        """The matrix XGBoost sees (the selected features), with its column names."""
        if self.selector is None:
            raise RuntimeError("RadiomicsModel is not fitted")
        return self.selector.transform(X)

    def fit(self, X: pd.DataFrame, y: Any) -> "RadiomicsModel":
        y = _labels(y, len(X))
        X = numeric_features(X)
        self.tuned = maybe_tune(self, X, y, self.xgb, self.tuning)
        self.selector = FeatureSelector(self.selection).fit(X, y)
        self.classifier = tuned_xgb(self.xgb, self.tuned).classifier()
        self.classifier.fit(self.selector.transform(X).to_numpy(), y)
        return self

    def fresh(self, nested: bool = True) -> "RadiomicsModel":
        """Unfitted, same settings; ``nested=False`` fixes the values this model's tuning chose."""
        if nested:
            return RadiomicsModel(self.selection, self.xgb, tuning=self.tuning)
        return RadiomicsModel(self.selection, tuned_xgb(self.xgb, self.tuned))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.selector is None or self.classifier is None:
            raise RuntimeError("RadiomicsModel is not fitted")
        self.check_columns(X.columns)
        return self.classifier.predict_proba(self.selector.transform(X).to_numpy())

    def check_columns(self, columns: Sequence[str], table: str = "the feature table") -> None:
        """Refuse a table without every selected feature, naming this model's feature list (a renamed feature)."""
        missing = [c for c in self.features if c not in set(columns)]
        if missing:
            raise feature_mismatch(self.source, missing, [c for c in columns if c not in set(self.features)], table)

    @property
    def features(self) -> list[str]:
        return list(self.selector.selected) if self.selector else []

    def save(self, folder: str | Path) -> Path:
        return save_bundle(folder, self.classifier, META, {
            "format": FORMAT, "selection": asdict(self.selection), "xgb": asdict(tuned_xgb(self.xgb, self.tuned)),
            "selector": self.selector.to_dict(), "tuning": tuning_record(self.tuning, self.tuned, self.xgb)})

    @classmethod
    def load(cls, folder: str | Path) -> "RadiomicsModel":
        meta, classifier = load_bundle(folder, META, FORMAT, "radiomics model")
        source = Path(folder) / META
        with reading_meta(source):
            model = cls(SelectionConfig(**meta["selection"]), XGBConfig(**meta["xgb"]),
                        FeatureSelector.from_dict(meta["selector"]), classifier, source=source)
            check_feature_count(source, [str(c) for c in model.features], classifier)
        return model


def numeric_features(table: pd.DataFrame) -> pd.DataFrame:
    """Feature columns only (drops ids, labels, errors and any other non-numeric column)."""
    drop = {"patient_id", "case_id", "error", "label", "split", "centre"}
    columns = [c for c in table.columns if c not in drop and pd.api.types.is_numeric_dtype(table[c])]
    if not columns:
        raise InputError("the feature table has no numeric feature columns")
    return table[columns]


def _labels(y: Any, n: int) -> np.ndarray:
    y = np.asarray(y)
    if len(y) != n:
        raise InputError(f"{n} feature rows but {len(y)} labels")
    if pd.isna(y).any():
        raise InputError(f"{int(pd.isna(y).sum())} training patients have no label")
    y = y.astype(int)
    if set(np.unique(y)) != {0, 1}:
        raise InputError(f"training labels must contain both 0 and 1, got {sorted(set(np.unique(y).tolist()))}")
    return y


def joined(features: pd.DataFrame, manifest: Manifest) -> pd.DataFrame:
    """Features with label and split from the manifest; patients absent from either are reported."""
    meta = manifest.to_frame()[["patient_id", "label", "split"]]
    unknown = sorted(set(features["patient_id"]) - set(meta["patient_id"]))
    if unknown:
        raise InputError(f"feature table has patients not in the manifest: {', '.join(unknown[:5])}")
    return meta.merge(features, on="patient_id", how="left")


def train_radiomics(features: pd.DataFrame, manifest: Manifest, out: str | Path, *, train_split: str = "train",
                    model: RadiomicsModel | None = None, folds: int = 5) -> tuple[RadiomicsModel, pd.DataFrame]:
    """Fit on ``split == train_split`` only (no other patient influences selection or fit).

    Training patients get out-of-fold predictions (:mod:`osteomet.models.out_of_fold`); the
    others are scored by the model fitted on all training patients.
    """
    data = joined(features, manifest)
    usable = data["error"].isna() if "error" in data else pd.Series(True, index=data.index)
    usable &= data[numeric_features(features).columns].notna().any(axis=1)
    train = data[(data["split"] == train_split) & usable & data["label"].notna()]
    if train.empty:
        raise InputError(f"no usable training patients: none has split == {train_split!r}, a label and features")
    model = model or RadiomicsModel()
    X, y = numeric_features(train), train["label"].to_numpy()
    model.fit(X, y)
    model.save(Path(out) / MODEL_DIR)
    probs = pd.Series(np.nan, index=data.index)
    probs[usable] = model.predict_proba(data.loc[usable])[:, 1]
    # training patients: out-of-fold (each scored by a model that never saw it), for thresholds and stacking
    refits = refit_factory(model)
    probs[train.index] = training_probabilities(refits, X, y, folds=folds, seed=model.xgb.seed)
    write_tuning(out, model, refits)
    splits = data["split"].fillna("new")
    predictions = prediction_table(data["patient_id"], splits, data["label"], probs, MODEL_NAME)
    write_predictions(predictions, Path(out) / PREDICTIONS)
    return model, predictions
