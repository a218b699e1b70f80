"""The clinical model: XGBoost on age, PSA, Gleason, ISUP, hematuria and leukocyturia.

Missing values stay missing: XGBoost learns at each split which side a missing value goes
(its "default direction"), from training patients only, so nothing is imputed and no
statistic of validation, test or external patients reaches the model. Training patients get
out-of-fold predictions (:mod:`osteomet.models.out_of_fold`). With a ``tuning`` config the XGBoost
settings are chosen by CV among the rows ``fit`` is given (:mod:`osteomet.models.tuning`).

Saved as ``xgboost.json`` (XGBoost's format) and ``clinical_model.json`` (features, settings).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from osteomet.errors import InputError
from osteomet.layout import MODEL_DIR, PREDICTIONS, model_meta
from osteomet.models.out_of_fold import training_probabilities
from osteomet.models.predictions import prediction_table, write_predictions
from osteomet.models.tuning import (
    TuningConfig,
    TuningResult,
    maybe_tune,
    refit_factory,
    tuned_xgb,
    tuning_record,
    write_tuning,
)
from osteomet.models.xgb import (
    XGBConfig,
    check_feature_count,
    damaged_model_file,
    load_bundle,
    reading_meta,
    save_bundle,
)

FORMAT = "osteomet.clinical_model/1"
META = model_meta("clinical")
MODEL_NAME = "clinical"
#: The study's clinical variables, in the model's column order.
CLINICAL_FEATURES = ("age", "psa", "gleason", "isup", "hematuria", "leukocyturia")


def clinical_matrix(frame: pd.DataFrame, features: tuple[str, ...] = CLINICAL_FEATURES) -> pd.DataFrame:
    """The clinical columns as floats (NaN = missing); a column absent from the manifest is all missing."""
    return pd.DataFrame({name: pd.to_numeric(frame[name], errors="coerce") if name in frame else np.nan
                         for name in features}, index=frame.index).astype(float)


@dataclass
class ClinicalModel:
    """sklearn-style model on the clinical columns of a manifest frame."""

    xgb: XGBConfig = field(default_factory=lambda: XGBConfig(n_estimators=200, max_depth=2))
    features: tuple[str, ...] = CLINICAL_FEATURES
    classifier: Any = None
    #: nested tuning of the XGBoost settings on the rows ``fit`` is given (None: the preset as it is)
    tuning: TuningConfig | None = None
    tuned: TuningResult | None = None
    #: the JSON record it was loaded from
    source: Path | None = field(default=None, compare=False, repr=False)

    def design(self, X: pd.DataFrame) -> pd.DataFrame:
        """The matrix XGBoost sees, with its column names."""
        return clinical_matrix(X, self.features)

    def design_step(self, X: pd.DataFrame, y: np.ndarray):
        """Nothing is fitted before XGBoost: the clinical columns as they are."""
        features = self.features
        return lambda Z: clinical_matrix(Z, features).to_numpy()

    def fit(self, X: pd.DataFrame, y: Any) -> "ClinicalModel":
        y = np.asarray(y).astype(int)
        if set(np.unique(y)) != {0, 1}:
            raise InputError(f"training labels must contain both 0 and 1, got {sorted(set(np.unique(y).tolist()))}")
        self.tuned = maybe_tune(self, X, y, self.xgb, self.tuning)
        self.classifier = tuned_xgb(self.xgb, self.tuned).classifier().fit(self.design(X).to_numpy(), y)
        return self

    def fresh(self, nested: bool = True) -> "ClinicalModel":
        """Unfitted, same settings; ``nested=False`` fixes the values this model's tuning chose."""
        if nested:
            return ClinicalModel(self.xgb, self.features, tuning=self.tuning)
        return ClinicalModel(tuned_xgb(self.xgb, self.tuned), self.features)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.classifier is None:
            raise RuntimeError("ClinicalModel is not fitted")
        return self.classifier.predict_proba(clinical_matrix(X, self.features).to_numpy())

    def save(self, folder: str | Path) -> Path:
        return save_bundle(folder, self.classifier, META, {
            "format": FORMAT, "features": list(self.features), "xgb": asdict(tuned_xgb(self.xgb, self.tuned)),
            "tuning": tuning_record(self.tuning, self.tuned, self.xgb)})

    @classmethod
    def load(cls, folder: str | Path) -> "ClinicalModel":
        meta, classifier = load_bundle(folder, META, FORMAT, "clinical model")
        source = Path(folder) / META
        with reading_meta(source):
            model = cls(XGBConfig(**meta["xgb"]), tuple(str(f) for f in meta["features"]), classifier, source=source)
            check_feature_count(source, model.features, classifier)
        check_clinical_names(source, model.features)
        return model


def check_clinical_names(source: Path, names: Sequence[str]) -> None:
    """A clinical feature the manifest cannot hold would be silently all-missing: refuse it, naming the file."""
    unknown = [name for name in names if name not in CLINICAL_FEATURES]
    if unknown:
        raise damaged_model_file(source, f"unknown clinical feature(s) {', '.join(map(repr, unknown))}; the clinical "
                                         f"variables are {', '.join(CLINICAL_FEATURES)}")


def train_clinical(manifest: pd.DataFrame, out: str | Path, *, model: ClinicalModel | None = None,
                   train_split: str = "train", folds: int = 5) -> tuple[ClinicalModel, pd.DataFrame]:
    """Fit on labelled ``train_split`` patients; out-of-fold training predictions, the others from the full fit."""
    model = model or ClinicalModel()
    present = [c for c in model.features if c in manifest and manifest[c].notna().any()]
    if not present:
        raise InputError(f"the manifest has none of the clinical columns {', '.join(model.features)}")
    train = manifest[(manifest["split"] == train_split) & manifest["label"].notna()]
    if train.empty:
        raise InputError(f"no labelled patients with split == {train_split!r} to train the clinical model on")
    y = train["label"].astype(int).to_numpy()
    model.fit(train, y)
    model.save(Path(out) / MODEL_DIR)
    probs = pd.Series(model.predict_proba(manifest)[:, 1], index=manifest.index)
    refits = refit_factory(model)
    probs[train.index] = training_probabilities(refits, train, y, folds=folds, seed=model.xgb.seed)
    write_tuning(out, model, refits)
    predictions = prediction_table(manifest["patient_id"], manifest["split"].fillna("new"), manifest["label"], probs,
                                   MODEL_NAME)
    write_predictions(predictions, Path(out) / PREDICTIONS)
    return model, predictions
