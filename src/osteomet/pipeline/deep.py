"""The 3D-ResNet stages: the grid, the winner's prediction table (out-of-fold on training), features, Grad-CAM.

Training patients' deep probabilities are **cross-fitted**: the winning configuration is
retrained on k-1 folds of the training patients (early-stopped on the validation cohort, as
in the grid) and scores the held-out fold, so thresholds and probability stacking never see
in-sample outputs of a network that memorised its training labels. Validation, test and
external patients are scored by the winner itself. ``oof_folds: 0`` keeps the winner's
in-sample training scores and says so in the stage record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.layout import FEATURES, GRADCAM_TABLE, GRID_CONFIGS, GRID_TABLE, OOF_FOLDS, PREDICTIONS, WINNER
from osteomet.stage import Stage, StageOutcome

GRID_STAGE = "deep-grid"
PREDICT_STAGE = "deep-predict"
FEATURES_STAGE = "deep-features"
GRADCAM_STAGE = "deep-gradcam"
MODEL_NAME = "deep"


def deep_cohort(preprocessed: str | Path, manifest: str | Path, segdir: str | Path | None):
    """The manifest, the ROI patients' table (split, mask source) and the label guard of a classifier stage."""
    from osteomet.mri.classifier.data import roi_patients
    from osteomet.mri.classifier.labels import LabelGuard

    cohort = read_manifest(manifest, kind="mri")
    return cohort, roi_patients(preprocessed, cohort, segdir), LabelGuard.from_manifest(cohort)


def run_deep_grid(preprocessed: str | Path, manifest: str | Path, out: str | Path, config, *,
                  segdir: str | Path | None = None, jobs: int = 1, scheduler: str | None = None,
                  device: str | None = None, on_config: Callable | None = None,
                  on_epoch: Callable | None = None) -> tuple[StageOutcome, pd.DataFrame, dict[str, Any]]:
    """The grid as a stage: skipped when up to date, resumed when interrupted, restarted when settings change."""
    from osteomet.mri.classifier.grid import run_grid
    from osteomet.utils.files import read_json

    out = Path(out)
    stage = Stage(GRID_STAGE, out, settings=config, inputs={"manifest": manifest, "preprocessed": preprocessed,
                                                            "segdir": segdir}, outputs=(GRID_TABLE, WINNER))
    result: dict[str, Any] = {}

    def work() -> dict[str, Any]:
        _, patients, guard = deep_cohort(preprocessed, manifest, segdir)
        table, winner = run_grid(preprocessed, out, config, guard, patients, jobs=jobs, scheduler=scheduler,
                                 resume=True, device=device, on_config=on_config, on_epoch=on_epoch)
        result.update(table=table, winner=winner)
        return {"winner": winner["name"], "val_auc": winner["val_auc"], "configurations": len(table)}

    # configurations trained on other inputs or settings are discarded; an interrupted grid continues
    outcome = stage.run(work, partial=(GRID_CONFIGS,))
    table = result.get("table")
    return outcome, table if table is not None else pd.read_csv(out / GRID_TABLE), \
        result.get("winner") or read_json(out / WINNER)


def predict_deep(grid: str | Path, preprocessed: str | Path, manifest: str | Path, out: str | Path, *,
                 segdir: str | Path | None = None, oof_folds: int = 5, device: str | None = None,
                 progress: Callable | None = None, jobs: int = 1,
                 scheduler: str | None = None) -> tuple[StageOutcome, pd.DataFrame]:
    """The winner's prediction table (model ``deep``), training rows out-of-fold unless ``oof_folds`` is 0.

    The cross-fitted folds are Dask tasks with ``jobs > 1`` or a ``scheduler`` (same table as in turn here).
    """
    from osteomet.models.predictions import read_predictions, write_predictions
    from osteomet.mri.classifier.predict import resolve_run
    from osteomet.training.checkpoint import best_checkpoint

    out = Path(out)
    run = resolve_run(grid)
    stage = Stage(PREDICT_STAGE, out, settings={"oof_folds": oof_folds, "model": str(run)},
                  inputs={"manifest": manifest, "preprocessed": preprocessed, "weights": best_checkpoint(run)},
                  outputs=(PREDICTIONS,))

    def work() -> dict[str, Any]:
        cohort, patients, guard = deep_cohort(preprocessed, manifest, segdir)
        table = deep_prediction_table(grid, preprocessed, cohort, patients, guard, oof_folds=oof_folds,
                                      folds_dir=out / OOF_FOLDS, device=device, progress=progress, jobs=jobs,
                                      scheduler=scheduler)
        table["model"] = MODEL_NAME
        write_predictions(table, out / PREDICTIONS)
        return {"patients": len(table), "training_predictions": "out-of-fold" if oof_folds else "in-sample"}

    outcome = stage.run(work, partial=(OOF_FOLDS,))
    return outcome, read_predictions(out / PREDICTIONS)


def deep_prediction_table(grid: str | Path, preprocessed: str | Path, cohort, patients: pd.DataFrame, guard, *,
                          oof_folds: int, folds_dir: Path, device: str | None = None,
                          progress: Callable | None = None, jobs: int = 1,
                          scheduler: str | None = None) -> pd.DataFrame:
    """The model's scores of every patient with a ROI crop; training rows cross-fitted unless ``oof_folds`` is 0."""
    from osteomet.mri.classifier.predict import predict_patients, resolve_run

    table = predict_patients(grid, preprocessed, patients, cohort.to_frame(), device=device)
    if oof_folds:
        oof = cross_fitted_training(resolve_run(grid), preprocessed, patients, guard, folds_dir, folds=oof_folds,
                                    device=device, progress=progress, jobs=jobs, scheduler=scheduler)
        train = table["split"] == "train"
        table.loc[train, "prob"] = table.loc[train, "patient_id"].map(oof).to_numpy()
    return table


def cross_fitted_training(run: Path, preprocessed: str | Path, patients: pd.DataFrame, guard, folds_dir: Path, *,
                          folds: int, device: str | None = None, progress: Callable | None = None,
                          jobs: int = 1, scheduler: str | None = None) -> dict[str, float]:
    """Out-of-fold probabilities of the training patients: the run's configuration refitted per fold.

    Each fold is one independent task (:func:`fold_task`): in turn here, or on Dask with ``jobs > 1``
    or a ``scheduler``. Every fold trains on the cores shared by the folds side by side
    (``worker_threads(jobs, folds)``) wherever it runs and seeds itself, so the probabilities are the same either way.
    """
    from dataclasses import asdict

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from osteomet.mri.classifier.data import split_ids
    from osteomet.mri.classifier.train import read_run
    from osteomet.utils.cores import worker_threads
    from osteomet.utils.dask_tasks import dask_map

    spec, config = read_run(run)
    train = guard.labels("train", "fit", split_ids(patients, "train"))
    val = {k: int(v) for k, v in guard.labels("val", "select", split_ids(patients, "val")).items()}
    ids, y = np.array(train.index.tolist()), train.to_numpy().astype(int)
    folds = min(folds, int(np.bincount(y).min()))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    tasks = [{"preprocessed": str(preprocessed), "fold_dir": str(folds_dir / f"fold_{k}"),
              "config": config.model_dump(mode="json"), "spec": asdict(spec),
              "train_labels": dict(zip(ids[fit].tolist(), y[fit].tolist())), "val_labels": val,
              "held_out": ids[held].tolist(), "device": device, "threads": worker_threads(jobs, folds)}
             for k, (fit, held) in enumerate(splitter.split(ids, y))]
    oof: dict[str, float] = {}
    for fold in dask_map(fold_task, tasks, jobs=jobs, scheduler=scheduler):
        oof.update(fold)
        if progress:
            progress()
    return {i: oof[i] for i in ids.tolist()}  # training order, however the folds finished


def fold_task(task: dict[str, Any]) -> dict[str, float]:
    """One cross-fitted fold as a Dask task (plain arguments): refit on its patients, score its held-out ones.

    The fold folder is written where a local run writes it; an interrupted fold continues from its ``last.pt``.
    """
    import numpy as np

    from osteomet.mri.classifier.config import ClassifierConfig
    from osteomet.mri.classifier.data import RoiDataset
    from osteomet.mri.classifier.predict import load_model
    from osteomet.mri.classifier.train import RunSpec, predict_probabilities, train_run
    from osteomet.training.checkpoint import run_started
    from osteomet.utils.torch import torch_threads

    fold_dir, config = Path(task["fold_dir"]), ClassifierConfig.model_validate(task["config"])
    held = list(task["held_out"])
    with torch_threads(task["threads"]):
        train_run(task["preprocessed"], fold_dir, config, RunSpec(**task["spec"]), train_labels=task["train_labels"],
                  val_labels=task["val_labels"], resume=run_started(fold_dir), device=task["device"])
        network, _, _, dev = load_model(fold_dir, task["device"])
        probs = predict_probabilities(network, RoiDataset(task["preprocessed"], held, None, config, augment=False),
                                      dev, config.batch_size)
    return dict(zip(held, np.asarray(probs, dtype=float).tolist()))


def deep_feature_table(grid: str | Path, preprocessed: str | Path, manifest: str | Path, out: str | Path, *,
                       segdir: str | Path | None = None, pca: int | None = None,
                       device: str | None = None) -> tuple[StageOutcome, pd.DataFrame]:
    """Penultimate-layer activations of the winner for every patient with a ROI crop (``features.parquet``)."""
    from osteomet.mri.classifier.features import deep_features, write_features
    from osteomet.mri.classifier.predict import resolve_run
    from osteomet.training.checkpoint import best_checkpoint

    out = Path(out)
    run = resolve_run(grid)
    stage = Stage(FEATURES_STAGE, out, settings={"pca": pca, "model": str(run)},
                  inputs={"manifest": manifest, "preprocessed": preprocessed, "weights": best_checkpoint(run)},
                  outputs=(FEATURES,))

    def work() -> dict[str, Any]:
        _, patients, _ = deep_cohort(preprocessed, manifest, segdir)
        table, meta = deep_features(grid, preprocessed, patients, pca_components=pca, device=device)
        write_features(table, meta, out)
        return {"patients": len(table), "features": table.shape[1] - 1}

    outcome = stage.run(work)
    return outcome, pd.read_parquet(out / FEATURES)


def gradcam_examples(grid: str | Path, preprocessed: str | Path, manifest: str | Path, out: str | Path, *,
                     patient_ids: list[str], device: str | None = None) -> tuple[StageOutcome, pd.DataFrame]:
    """Grad-CAM maps and overlays of a few patients (NIfTI in ROI and T2 geometry, PNG)."""
    from osteomet.mri.classifier.gradcam import gradcam_cohort
    from osteomet.mri.classifier.predict import resolve_run
    from osteomet.training.checkpoint import best_checkpoint

    out = Path(out)
    run = resolve_run(grid)
    stage = Stage(GRADCAM_STAGE, out, settings={"patients": list(patient_ids), "model": str(run)},
                  inputs={"preprocessed": preprocessed, "weights": best_checkpoint(run)}, outputs=(GRADCAM_TABLE,))

    def work() -> dict[str, Any]:
        table = gradcam_cohort(grid, preprocessed, patient_ids, out, device=device)
        return {"maps": len(table), "empty": int(table["cam_empty"].sum())}

    outcome = stage.run(work)
    return outcome, pd.read_csv(out / GRADCAM_TABLE, dtype={"patient_id": str})
