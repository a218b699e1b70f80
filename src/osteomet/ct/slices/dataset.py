"""The slice dataset of a CT cohort: every patient cached, split by patient, indexed slice by slice.

``ROOT/index.csv`` (patient_id, slice, label, lesion_voxels, split), ``patients.csv`` and
``class_balance.csv`` beside the slice cache (:mod:`osteomet.ct.slices.cache`).

Splits are by patient only, drawn by the project's one split policy
(:func:`osteomet.data.splits.assign_splits`): 80:20 train/test by default, stratified by
whether the patient has any lesion, validation patients taken from train; a manifest
``split`` column is respected. :func:`osteomet.data.splits.check_no_leakage` refuses any table in
which one patient appears in two splits (slices of one patient are near copies of each other, so
a patient in two splits inflates every test metric).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from osteomet.ct.slices.cache import cache_cohort
from osteomet.ct.slices.config import SliceConfig
from osteomet.data.manifest import Manifest
from osteomet.data.splits import assign_splits, check_no_leakage
from osteomet.errors import MissingInputError
from osteomet.layout import CLASS_BALANCE, INDEX, PATIENTS
from osteomet.utils.files import write_text_atomic


def patient_splits(patients: pd.DataFrame, config: SliceConfig) -> pd.Series:
    """Split per patient (index aligned): the manifest's where given, else 80:20 train/test, val from train.

    ``patients`` has ``patient_id``, ``split`` (may be empty) and ``label`` (any lesion; may be
    missing). Stratified by label; a manifest that gives train/test but no val gets its
    validation patients drawn from its training patients.
    """
    t, v = config.test_fraction, config.val_fraction
    return assign_splits(patients, ratios=((1 - t) * (1 - v), (1 - t) * v, t), seed=config.split_seed,
                         given_column="split")


def class_balance(index: pd.DataFrame) -> pd.DataFrame:
    """Per split: patients, patients with a lesion, slices, lesion slices and their share."""
    rows = []
    for split, group in index.groupby("split", sort=False):
        per_patient = group.groupby("patient_id")["label"].max()
        rows.append({"split": split, "patients": int(per_patient.size),
                     "patients_with_lesion": int((per_patient == 1).sum()), "slices": int(len(group)),
                     "lesion_slices": int((group["label"] == 1).sum()),
                     "no_lesion_slices": int((group["label"] == 0).sum()),
                     "lesion_fraction": float((group["label"] == 1).mean())})
    return pd.DataFrame(rows)


def build_slice_dataset(manifest: Manifest, root: str | Path, config: SliceConfig, *,
                        progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Cache every patient, split by patient, write ``index.csv``, ``patients.csv``, ``class_balance.csv``."""
    root = Path(root)
    slices, patient_table = cache_cohort(manifest, root, config, progress=progress)
    patient_table["split"] = patient_splits(patient_table, config)
    index = slices.merge(patient_table[["patient_id", "split"]], on="patient_id")
    check_no_leakage(index)
    write_text_atomic(root / PATIENTS, patient_table.to_csv(index=False))
    write_text_atomic(root / INDEX, index.to_csv(index=False))
    labelled = index.dropna(subset=["label"])
    if len(labelled):
        write_text_atomic(root / CLASS_BALANCE, class_balance(labelled).to_csv(index=False))
    return index


def read_index(root: str | Path) -> pd.DataFrame:
    """The slice index of a built dataset, checked for patients in two splits."""
    path = Path(root) / INDEX
    if not path.is_file():
        raise MissingInputError(f"{path}: no slice index; build the slice dataset first")
    index = pd.read_csv(path, dtype={"patient_id": str})
    check_no_leakage(index)
    return index
