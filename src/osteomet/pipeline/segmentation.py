"""The UNETR stages: training on the preprocessed cohort, and masks for every patient in T2 geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from osteomet.config import read_settings
from osteomet.data.manifest import Manifest, read_manifest
from osteomet.errors import MissingInputError
from osteomet.layout import CHECKPOINTS, HISTORY, INDEX, LAST_CHECKPOINT, METRICS, RESULT, SUMMARY
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.files import write_text_atomic
from osteomet.utils.progress import progress_bar

TRAIN_STAGE = "segment-train"
#: What a UNETR run writes as it trains: continued after an interruption, discarded when its inputs change.
TRAINING_FILES = (CHECKPOINTS, HISTORY, RESULT)
PREDICT_STAGE = "segment-predict"


def ready_patients(preprocessed: str | Path, cohort: Manifest) -> dict[str, list[str]]:
    """Training and validation patients that were preprocessed with a mask, by the manifest's split."""
    path = Path(preprocessed) / INDEX
    if not path.is_file():
        raise MissingInputError(f"{preprocessed}: no {INDEX}; run `osteomet preprocess mri` first")
    index = pd.read_csv(path, dtype={"patient_id": str})
    ready = set(index.loc[index["has_mask"].astype(bool) & (index["status"] != "failed"), "patient_id"])
    return {s: [r.patient_id for r in cohort if r.split == s and r.patient_id in ready] for s in ("train", "val")}


def train_segmentation(preprocessed: str | Path, manifest: str | Path, out: str | Path, settings, *,
                       resume: bool | Literal["auto"] = False, device: str | None = None) -> StageOutcome:
    """Train the UNETR on split=train, early-stop on split=val.

    ``resume``: True continues the run in ``out`` (``segment train --resume``); ``"auto"`` (the pipeline's)
    continues it when the stage was interrupted with the same inputs and settings and starts over when
    they changed; False refuses a folder that holds a run.
    """
    from osteomet.mri.segmentation.train import train_unetr
    from osteomet.training.checkpoint import refuse_existing_run, run_started

    cohort = read_manifest(manifest, kind="mri")
    ids = ready_patients(preprocessed, cohort)
    stage = Stage(TRAIN_STAGE, Path(out), settings=settings,
                  inputs={"manifest": manifest, "preprocessed": preprocessed})
    if resume == "auto":
        resume = stage.state() == "interrupted" and run_started(out)
        force = False
    else:
        force = bool(resume)
        if not resume:
            if stage.up_to_date():
                return stage.run(lambda: None)
            refuse_existing_run(out, "a training run", "pass --resume to continue it or use a new folder",
                                checkpoint=LAST_CHECKPOINT)

    def work() -> dict:
        with progress_bar("train unetr", settings.max_epochs) as advance:
            result = train_unetr(preprocessed, out, settings, train_ids=ids["train"], val_ids=ids["val"],
                                 resume=bool(resume), device=device, progress=advance)
        return {"best_dice": result.best_score, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "stopped_early": result.stopped_early}

    return stage.run(work, force=force, partial=TRAINING_FILES)


def read_segmentation_settings(model: str | Path):
    """The settings a UNETR run was trained with."""
    from osteomet.mri.segmentation.config import SegmentationConfig

    return read_settings(model, SegmentationConfig, what="`segment train` run")


def predict_segmentation(preprocessed: str | Path, manifest: str | Path, model: str | Path, out: str | Path, *,
                         postprocess: bool = True, device: str | None = None) -> tuple[StageOutcome, pd.DataFrame]:
    """Masks in each patient's T2 geometry (``OUT/auto``); per-case metrics and a summary where references exist."""
    from osteomet.mri.segmentation.infer import predict_cohort, summarise
    from osteomet.training.checkpoint import best_checkpoint

    settings = read_segmentation_settings(model)
    cohort = read_manifest(manifest, kind="mri")
    out = Path(out)
    stage = Stage(PREDICT_STAGE, out, settings={"postprocess": postprocess, "model": str(model)},
                  inputs={**manifest_inputs(cohort, manifest), "preprocessed": preprocessed,
                          "weights": best_checkpoint(model)}, outputs=(METRICS, SUMMARY))

    def work() -> dict:
        with progress_bar("segment", len(cohort)) as advance:
            table = predict_cohort(preprocessed, model, out, settings, cohort, device=device,
                                   postprocess=postprocess, progress=advance)
        if "dice" in table:
            write_text_atomic(out / SUMMARY, summarise(table).to_csv(index=False))
        return {"masks": len(table)}

    outcome = stage.run(work)
    return outcome, pd.read_csv(out / METRICS, dtype={"patient_id": str})


def segmentation_summary(out: str | Path) -> pd.DataFrame | None:
    path = Path(out) / SUMMARY
    return pd.read_csv(path) if path.is_file() else None
