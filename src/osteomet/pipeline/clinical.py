"""The clinical-model stage: a bpMRI manifest, or a clinical-only table, to the clinical prediction table."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError
from osteomet.layout import PREDICTIONS
from osteomet.stage import Stage, StageOutcome

STAGE = "clinical-train"


def train_clinical_model(manifest: str | Path, out: str | Path, *, train_split: str = "train", folds: int = 5,
                         seed: int = 0, tuning: Any = None) -> tuple[StageOutcome, pd.DataFrame]:
    """XGBoost on the clinical variables of ``train_split`` patients; predictions for every patient.

    ``tuning``: a :class:`~osteomet.models.tuning.TuningConfig` (nested tuning on the training
    patients) or None (the preset values)."""
    from osteomet.models.clinical import ClinicalModel, train_clinical
    from osteomet.models.predictions import read_predictions
    from osteomet.models.xgb import XGBConfig

    cohort = read_manifest(manifest, check_files=False, require=("label",))
    if cohort.kind == "ct":
        raise InputError(f"{manifest}: a CT manifest has no clinical variables; give a bpMRI or clinical manifest")
    model = ClinicalModel(XGBConfig(n_estimators=200, max_depth=2, seed=seed), tuning=tuning)
    out = Path(out)
    stage = Stage(STAGE, out, settings={"train_split": train_split, "folds": folds, "xgboost": asdict(model.xgb),
                                        "features": list(model.features),
                                        "tuning": asdict(tuning) if tuning else None},
                  inputs={"manifest": manifest}, outputs=(PREDICTIONS,))

    def work() -> dict:
        fitted, _ = train_clinical(cohort.to_frame(), out, model=model, train_split=train_split, folds=folds)
        return {"patients": len(cohort), "tuned": fitted.tuned.summary() if fitted.tuned else None}

    outcome = stage.run(work)
    return outcome, read_predictions(out / PREDICTIONS)
