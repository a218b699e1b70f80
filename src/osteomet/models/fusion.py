"""The fusion model (ResNet-C): an XGBoost meta-model stacked on clinical, radiomics and deep information.

Two ways to stack, both fitted on training patients only:

* ``features`` (the default, the published method): the clinical variables, the radiomics
  features chosen by the radiomics selection (variance, correlation, LASSO, refitted inside
  this model on its own training rows) and the 3D-ResNet's deep features side by side.
* ``probabilities``: the base models' predicted probabilities (clinical, radiomics, deep).
  For training patients these are the base models' **out-of-fold** predictions (the
  prediction-table contract), so the meta-model never learns from in-sample outputs that are
  optimistic by construction.

Either way the fusion model's own training predictions are out-of-fold (every step,
selection and tuning included, refitted per fold; :mod:`osteomet.models.tuning`), and it is saved as ``xgboost.json`` plus
``fusion_model.json`` (mode, columns, selection), never pickled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from osteomet.errors import InputError
from osteomet.layout import MODEL_DIR, PREDICTIONS, model_meta
from osteomet.models.clinical import CLINICAL_FEATURES, clinical_matrix
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

FORMAT = "osteomet.fusion_model/1"
META = model_meta("fusion")
MODEL_NAME = "fusion"
Mode = Literal["features", "probabilities"]
#: Column prefixes of the fusion input table, by source.
RADIOMICS, DEEP, PROB = "radiomics:", "deep:", "prob:"


def fusion_inputs(manifest: pd.DataFrame, *, radiomics: pd.DataFrame | None = None,
                  deep: pd.DataFrame | None = None,
                  predictions: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per manifest patient: clinical columns, ``radiomics:<feature>``, ``deep:<feature>``, ``prob:<model>``.

    Feature tables have a ``patient_id`` column; prediction tables follow the contract. A
    patient missing from a source gets NaN there (XGBoost routes missing values natively).
    """
    frame = manifest[["patient_id"]].copy()
    frame["patient_id"] = frame["patient_id"].astype(str)
    frame = pd.concat([frame, clinical_matrix(manifest)], axis=1)

    def join(table: pd.DataFrame, prefix: str) -> None:
        nonlocal frame
        numeric = table.drop(columns=["patient_id"]).select_dtypes("number")
        numeric.columns = [f"{prefix}{c}" for c in numeric.columns]
        numeric.insert(0, "patient_id", table["patient_id"].astype(str).to_numpy())
        frame = frame.merge(numeric, on="patient_id", how="left")

    if radiomics is not None:
        join(radiomics, RADIOMICS)
    if deep is not None:
        join(deep, DEEP)
    for name, table in (predictions or {}).items():
        frame = frame.merge(table[["patient_id", "prob"]].rename(columns={"prob": f"{PROB}{name}"}).astype(
            {"patient_id": str}), on="patient_id", how="left")
    return frame.set_index("patient_id")


@dataclass
class FusionModel:
    """sklearn-style meta-model on a :func:`fusion_inputs` table."""

    mode: Mode = "features"
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    xgb: XGBConfig = field(default_factory=lambda: XGBConfig(n_estimators=300, max_depth=3))
    clinical: tuple[str, ...] = CLINICAL_FEATURES
    selector: FeatureSelector | None = None
    columns: list[str] = field(default_factory=list)
    classifier: Any = None
    #: nested tuning of the XGBoost settings, the selection refitted in every CV fold (None: the preset)
    tuning: TuningConfig | None = None
    tuned: TuningResult | None = None
    #: the JSON record it was loaded from (named when the inputs do not match it)
    source: Path | None = field(default=None, compare=False, repr=False)

    def _design(self, X: pd.DataFrame) -> pd.DataFrame:
        self.check_columns(X.columns)
        return X[self.columns].astype(float)

    def check_columns(self, columns: Sequence[str], table: str = "the fusion inputs") -> None:
        """Refuse inputs without every column the model was fitted on, naming its column list (a renamed feature)."""
        missing = [c for c in self.columns if c not in set(columns)]
        if missing:
            raise feature_mismatch(self.source, missing, [c for c in columns if c not in set(self.columns)], table)

    def _choose_columns(self, X: pd.DataFrame, y: np.ndarray) -> tuple[list[str], FeatureSelector | None]:
        """The columns XGBoost sees, chosen on these rows only (the radiomics selection fitted here)."""
        if self.mode == "probabilities":
            columns = [c for c in X.columns if c.startswith(PROB)]
            if not columns:
                raise InputError("probability stacking needs base-model predictions (prob:<model> columns)")
            return columns, None
        if self.mode != "features":
            raise InputError(f"fusion mode must be 'features' or 'probabilities', got {self.mode!r}")
        radiomics = [c for c in X.columns if c.startswith(RADIOMICS)]
        selector, selected = None, []
        if radiomics:
            selector = FeatureSelector(self.selection).fit(X[radiomics].astype(float), y)
            selected = list(selector.selected)
        columns = [c for c in self.clinical if c in X.columns] + selected + [c for c in X.columns if c.startswith(DEEP)]
        return columns, selector

    def design_step(self, X: pd.DataFrame, y: np.ndarray):
        """The column choice fitted on these rows only, as a transform of any rows (what a CV fold needs)."""
        columns, _ = self._choose_columns(X, np.asarray(y).astype(int))
        return lambda Z: Z[columns].astype(float).to_numpy()

    def design(self, X: pd.DataFrame) -> pd.DataFrame:
        """The matrix XGBoost sees, with its column names."""
        return self._design(X)

    def fit(self, X: pd.DataFrame, y: Any) -> "FusionModel":
        y = np.asarray(y).astype(int)
        self.tuned = maybe_tune(self, X, y, self.xgb, self.tuning)
        self.columns, self.selector = self._choose_columns(X, y)
        self.classifier = tuned_xgb(self.xgb, self.tuned).classifier().fit(self._design(X).to_numpy(), y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.classifier is None:
            raise RuntimeError("FusionModel is not fitted")
        return self.classifier.predict_proba(self._design(X).to_numpy())

    def fresh(self, nested: bool = True) -> "FusionModel":
        """An unfitted model with the same settings (for out-of-fold refits); ``nested=False`` fixes the tuned values."""
        if nested:
            return FusionModel(self.mode, self.selection, self.xgb, self.clinical, tuning=self.tuning)
        return FusionModel(self.mode, self.selection, tuned_xgb(self.xgb, self.tuned), self.clinical)

    def save(self, folder: str | Path) -> Path:
        return save_bundle(folder, self.classifier, META, {
            "format": FORMAT, "mode": self.mode, "columns": self.columns, "clinical": list(self.clinical),
            "selection": asdict(self.selection), "xgb": asdict(tuned_xgb(self.xgb, self.tuned)),
            "selector": self.selector.to_dict() if self.selector else None,
            "tuning": tuning_record(self.tuning, self.tuned, self.xgb)})

    @classmethod
    def load(cls, folder: str | Path) -> "FusionModel":
        from osteomet.models.clinical import check_clinical_names

        meta, classifier = load_bundle(folder, META, FORMAT, "fusion model")
        source = Path(folder) / META
        with reading_meta(source):
            selector = FeatureSelector.from_dict(meta["selector"]) if meta.get("selector") else None
            model = cls(meta["mode"], SelectionConfig(**meta["selection"]), XGBConfig(**meta["xgb"]),
                        tuple(meta["clinical"]), selector, [str(c) for c in meta["columns"]], classifier, source=source)
            check_feature_count(source, model.columns, classifier)
        check_clinical_names(source, [c for c in model.columns if ":" not in c])
        return model


def train_fusion(inputs: pd.DataFrame, manifest: pd.DataFrame, out: str | Path, *, model: FusionModel | None = None,
                 train_split: str = "train", folds: int = 5) -> tuple[FusionModel, pd.DataFrame]:
    """Fit on labelled training patients; out-of-fold training predictions, the others from the full fit."""
    model = model or FusionModel()
    meta = manifest.set_index(manifest["patient_id"].astype(str))[["split", "label"]].reindex(inputs.index)
    train = meta.index[(meta["split"] == train_split) & meta["label"].notna()]
    if len(train) == 0:
        raise InputError(f"no labelled patients with split == {train_split!r} to train the fusion model on")
    y = meta.loc[train, "label"].astype(int).to_numpy()
    model.fit(inputs.loc[train], y)
    model.save(Path(out) / MODEL_DIR)
    probs = pd.Series(model.predict_proba(inputs)[:, 1], index=inputs.index)
    refits = refit_factory(model)
    probs[train] = training_probabilities(refits, inputs.loc[train], y, folds=folds, seed=model.xgb.seed)
    write_tuning(out, model, refits)
    predictions = prediction_table(inputs.index, meta["split"].fillna("new"), meta["label"], probs, MODEL_NAME)
    write_predictions(predictions, Path(out) / PREDICTIONS)
    return model, predictions
