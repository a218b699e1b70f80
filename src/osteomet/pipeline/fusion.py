"""The fusion stage (ResNet-C): clinical variables, radiomics and deep information stacked in one XGBoost model."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Mapping

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError
from osteomet.layout import PREDICTIONS
from osteomet.stage import Stage, StageOutcome

STAGE = "fusion-train"


def train_fusion_model(manifest: str | Path, out: str | Path, *, mode: Literal["features", "probabilities"],
                       radiomics: str | Path | None = None, deep: str | Path | None = None,
                       predictions: Mapping[str, str | Path] | None = None, folds: int = 5, seed: int = 0,
                       max_features: int = 20, tuning: Any = None) -> tuple[StageOutcome, pd.DataFrame]:
    """``features``: clinical + radiomics (``radiomics`` feature table) + deep (``deep`` feature table);
    ``probabilities``: the base models' prediction tables (out-of-fold on training patients). ``tuning``: a
    :class:`~osteomet.models.tuning.TuningConfig` (nested tuning on the training patients) or None (the preset)."""
    from osteomet.models.fusion import FusionModel, train_fusion
    from osteomet.models.predictions import read_predictions
    from osteomet.models.selection import SelectionConfig
    from osteomet.models.xgb import XGBConfig

    if mode == "features" and radiomics is None and deep is None:
        raise InputError("feature fusion needs a radiomics and/or a deep feature table")
    if mode == "probabilities" and not predictions:
        raise InputError("probability fusion needs the base models' prediction tables")
    model = FusionModel(mode, SelectionConfig(max_features=max_features, seed=seed),
                        XGBConfig(n_estimators=300, max_depth=3, seed=seed), tuning=tuning)
    out = Path(out)
    inputs: dict[str, Any] = {"manifest": manifest}
    if mode == "features":
        inputs.update(radiomics=radiomics, deep=deep)
    else:
        inputs.update({f"predictions_{k}": v for k, v in (predictions or {}).items()})
    settings = {"mode": mode, "folds": folds, "selection": asdict(model.selection), "xgboost": asdict(model.xgb),
                "tuning": asdict(tuning) if tuning else None}
    stage = Stage(STAGE, out, settings=settings, inputs=inputs, outputs=(PREDICTIONS,))

    def work() -> dict[str, Any]:
        cohort = read_manifest(manifest, check_files=False).to_frame()
        table = fusion_table(cohort, mode, radiomics=radiomics, deep=deep, predictions=predictions)
        fitted, _ = train_fusion(table, cohort, out, model=model, folds=folds)
        return {"columns": len(fitted.columns), "mode": mode,
                "tuned": fitted.tuned.summary() if fitted.tuned else None}

    outcome = stage.run(work)
    return outcome, read_predictions(out / PREDICTIONS)


def fusion_table(cohort: pd.DataFrame, mode: str, *, radiomics: str | Path | None = None,
                 deep: str | Path | None = None, predictions: Mapping[str, str | Path] | None = None) -> pd.DataFrame:
    """The fusion model's input table from the stage files it was trained on (also read by the explanations)."""
    from osteomet.models.fusion import fusion_inputs
    from osteomet.models.predictions import read_predictions
    from osteomet.radiomics.features import read_feature_table

    if mode == "features":
        return fusion_inputs(cohort, radiomics=read_feature_table(radiomics) if radiomics else None,
                             deep=pd.read_parquet(deep) if deep else None)
    return fusion_inputs(cohort, predictions={k: read_predictions(v) for k, v in (predictions or {}).items()})
