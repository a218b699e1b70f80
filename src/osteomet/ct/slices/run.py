"""The run folder of the CT slice models, the same for slice detection and lesion segmentation.

``RUN/settings.yaml`` (the settings, with the architectures to train), ``RUN/patients.csv``
and ``RUN/class_balance.csv`` (the patient split and its slice counts, copied from the
slice cache) and ``RUN/<architecture>/checkpoints/best.pt`` per trained network.
Prediction reads the folder back: the recorded settings, the architectures that finished
training, and the training split of every patient the run has seen, so a training patient
is never reported as a test patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd
from pydantic import BaseModel

from osteomet.errors import InputError, MissingInputError
from osteomet.layout import CLASS_BALANCE, PATIENTS, SLICE_CACHE, open_run_dir
from osteomet.utils.files import write_text_atomic

Config = TypeVar("Config", bound=BaseModel)


def prepare_slice_run(manifest, run_dir: str | Path, config: Config, *, architectures: list[str] | None = None,
                      cache: str | Path | None = None,
                      on_patient: Callable[[], None] | None = None) -> tuple[Path, Config]:
    """Build the slice dataset (split by patient) and record the run's settings and split; returns (slice root, config).

    ``config`` is a detection or segmentation config: it has ``slices`` and ``architectures``.
    """
    from osteomet.config import write_settings
    from osteomet.ct.slices.cache import settings_root
    from osteomet.ct.slices.dataset import build_slice_dataset

    run_dir = open_run_dir(run_dir, "ct-slice-models")  # never a folder of the user's
    root = settings_root(cache if cache is not None else run_dir / SLICE_CACHE, config.slices)
    build_slice_dataset(manifest, root, config.slices, progress=on_patient)
    config = config.model_copy(update={"architectures": list(architectures or config.architectures)})
    write_settings(run_dir, config)
    for name in (PATIENTS, CLASS_BALANCE):
        if (root / name).is_file():
            write_text_atomic(run_dir / name, (root / name).read_text(encoding="utf-8"))
    return root, config


def labelled_split(index: pd.DataFrame, split: str) -> pd.DataFrame:
    """The slices of one split with integer labels; a patient there without a lesion mask is refused by name."""
    part = index[index["split"] == split].reset_index(drop=True)
    unlabelled = part.loc[part["label"].isna(), "patient_id"].unique()
    if len(unlabelled):
        raise InputError(f"{split} patients without a lesion mask cannot be used for training: {', '.join(unlabelled[:10])}")
    return part.astype({"label": int})


def read_run_config(run_dir: str | Path, model: type[Config]) -> Config:
    """The settings a run was trained with (its ``settings.yaml``)."""
    from osteomet.config import read_settings

    return read_settings(run_dir, model, what="training run")


def trained_architectures(run_dir: str | Path, model: type[BaseModel], what: str) -> list[str]:
    """The run's architectures that have a best checkpoint, in the config's order; ``what`` names them in the error."""
    from osteomet.training.checkpoint import best_checkpoint

    run_dir = Path(run_dir)
    found = [a for a in read_run_config(run_dir, model).architectures if best_checkpoint(run_dir / a).is_file()]
    if not found:
        raise MissingInputError(f"{run_dir}: no trained {what} (no <architecture>/checkpoints/best.pt)")
    return found


def prediction_cache(out: str | Path, cache: str | Path | None = None) -> Path:
    """Where prediction caches a cohort's slices: ``cache`` when given (shared with training), else ``OUT/slices``."""
    return Path(cache) if cache is not None else Path(out) / SLICE_CACHE


def cache_for_prediction(manifest, run_dir: str | Path, out: str | Path, slice_config, *,
                         cache: str | Path | None = None,
                         on_cached: Callable[[], None] | None = None) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """Cache the cohort's slices with the run's slice settings (under ``cache``, default ``OUT/slices``).

    Returns (slice root, slice table, patient table); each patient carries the training
    run's split where the run knows it (:func:`assign_known_splits`).
    """
    from osteomet.ct.slices.cache import cache_cohort, settings_root

    root = settings_root(prediction_cache(out, cache), slice_config)
    slices, patients = cache_cohort(manifest, root, slice_config, progress=on_cached)
    patients["split"] = assign_known_splits(patients, Path(run_dir))
    return root, slices, patients


def assign_known_splits(patients: pd.DataFrame, run_dir: Path) -> pd.Series:
    """The training run's split for its own patients; else the manifest's split; else 'new'."""
    known = {}
    path = run_dir / PATIENTS
    if path.is_file():
        table = pd.read_csv(path, dtype={"patient_id": str})
        known = dict(zip(table["patient_id"], table["split"]))
    return pd.Series([known.get(p, s if isinstance(s, str) else "new") for p, s in
                      zip(patients["patient_id"], patients["split"])], index=patients.index)


def resumed_settings(out: str | Path, settings: Config, max_epochs: int | None) -> Config:
    """The run's recorded ``settings.yaml`` (a resume trains exactly what was started), ``--max-epochs`` applied."""
    from osteomet.config import read_settings, settings_path

    if not settings_path(out).is_file():
        raise MissingInputError(f"{settings_path(out)}: nothing to resume (no run was started in {out})")
    recorded = read_settings(out, type(settings))
    return recorded.model_copy(update={"max_epochs": max_epochs}) if max_epochs is not None else recorded
