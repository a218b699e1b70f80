"""The radiomics stages: features per patient (cached, parallel), the XGBoost model and its predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError
from osteomet.layout import EXTRACTION_LOG, FEATURE_CACHE, FEATURES, FEATURES_CSV, MODEL_DIR, PREDICTIONS
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.radiomics.runner import ExtractionResult
from osteomet.stage import Stage, StageOutcome, refuse_overwriting_inputs
from osteomet.utils.progress import progress_bar

EXTRACT_STAGE = "radiomics-extract"
TRAIN_STAGE = "radiomics-train"


def extract_features(manifest: str | Path, out: str | Path, *, params: str | None = None, jobs: int = 1,
                     scheduler: str | None = None, cache: str | Path | None = None,
                     segdir: str | Path | None = None, masks: str | Path | None = None
                     ) -> tuple[StageOutcome, ExtractionResult]:
    """Features of every patient and sequence; the masks come from the manifest, ``segdir`` or ``masks``."""
    from osteomet.radiomics.params import load_params
    from osteomet.radiomics.runner import extract_cohort, write_features

    if segdir is not None and masks is not None:
        raise InputError("give either --segdir or --masks, not both")
    cohort = read_manifest(manifest)
    if masks is not None:
        from osteomet.data.masks import with_mask_folder

        cohort = with_mask_folder(cohort, masks)
    if segdir is not None:
        from osteomet.data.masks import apply_masks

        cohort = apply_masks(cohort, segdir)
    parameters = load_params(params, modality=cohort.kind)
    out = Path(out)
    stage = Stage(EXTRACT_STAGE, out, settings={"params": parameters, "mask_source": str(segdir or masks or "manifest")},
                  inputs=manifest_inputs(cohort, manifest), outputs=(FEATURES, FEATURES_CSV, EXTRACTION_LOG))
    result: dict[str, ExtractionResult] = {}

    def work() -> dict[str, Any]:
        with progress_bar("radiomics", len(cohort)) as advance:
            result["run"] = extract_cohort(cohort, parameters, cache_dir=cache or out / FEATURE_CACHE, jobs=jobs,
                                           scheduler=scheduler, progress=advance)
        write_features(result["run"], out)
        run = result["run"]
        return {"patients": len(run.log), "extracted": run.n_extracted, "cached": run.n_cached,
                "failed": len(run.failures)}

    outcome = stage.run(work)
    return outcome, result.get("run") or _recorded_extraction(out, outcome)


def _recorded_extraction(out: Path, outcome: StageOutcome) -> ExtractionResult:
    """The result of a finished extraction, read back from its folder (a skipped rerun)."""
    log = pd.read_csv(out / EXTRACTION_LOG, dtype={"patient_id": str})
    failed = log[log["status"] == "failed"]
    log["status"] = log["status"].where(log["status"] == "failed", "cached")
    return ExtractionResult(pd.read_parquet(out / FEATURES), log, outcome.seconds,
                            list(zip(failed["patient_id"], failed["error"])))


def train_radiomics_model(features: str | Path, manifest: str | Path, out: str | Path, *, train_split: str = "train",
                          max_features: int = 20, seed: int = 0, tuning: Any = None) -> tuple[StageOutcome, pd.DataFrame]:
    """Selection and XGBoost on ``train_split`` patients only; predictions for every patient (the contract).

    ``tuning``: a :class:`~osteomet.models.tuning.TuningConfig` (nested tuning, the selection refitted
    in every CV fold) or None (the preset values)."""
    from dataclasses import asdict

    from osteomet.models.radiomics import RadiomicsModel, train_radiomics
    from osteomet.models.selection import SelectionConfig
    from osteomet.models.xgb import XGBConfig
    from osteomet.radiomics.features import read_feature_table

    model = RadiomicsModel(SelectionConfig(max_features=max_features, seed=seed), XGBConfig(seed=seed), tuning=tuning)
    settings = {"train_split": train_split, "selection": asdict(model.selection), "xgboost": asdict(model.xgb),
                "tuning": asdict(tuning) if tuning else None}
    out = Path(out)
    stage = Stage(TRAIN_STAGE, out, settings=settings, inputs={"features": features, "manifest": manifest},
                  outputs=(PREDICTIONS,))

    def work() -> dict[str, Any]:
        fitted, _ = train_radiomics(read_feature_table(features), read_manifest(manifest), out,
                                    train_split=train_split, model=model)
        return {"features": fitted.features, "tuned": fitted.tuned.summary() if fitted.tuned else None}

    outcome = stage.run(work)
    from osteomet.models.predictions import read_predictions

    return outcome, read_predictions(out / PREDICTIONS)


def predict_radiomics(model_dir: str | Path, features: str | Path, out: str | Path) -> pd.DataFrame:
    """Score new patients with a saved model; ``out`` is a prediction table (split ``new``, no label)."""
    from osteomet.models.predictions import prediction_table, write_predictions
    from osteomet.models.radiomics import RadiomicsModel
    from osteomet.radiomics.features import read_feature_table

    model_dir = Path(model_dir)
    if model_dir.name != MODEL_DIR and (model_dir / MODEL_DIR).is_dir():
        model_dir = model_dir / MODEL_DIR
    refuse_overwriting_inputs([out], [features, *model_dir.glob("*.json")])
    model = RadiomicsModel.load(model_dir)
    table = read_feature_table(features)
    probs = model.predict_proba(table)[:, 1]
    predictions = prediction_table(table["patient_id"], ["new"] * len(table), [None] * len(table), probs, "radiomics")
    write_predictions(predictions, out)
    return predictions
