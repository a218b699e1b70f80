"""Train the radiomics model on a feature table + manifest, predict every patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteomet.data.manifest import Manifest
from osteomet.errors import InputError, MissingInputError
from osteomet.radiomics.model import RadiomicsModel, numeric_features
from osteomet.utils.files import write_text_atomic


def read_feature_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: feature table does not exist")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    id_column = "patient_id" if "patient_id" in table.columns else "case_id" if "case_id" in table.columns else None
    if id_column is None:
        raise InputError(f"{path}: feature table needs a patient_id (or case_id) column")
    table = table.rename(columns={id_column: "patient_id"})
    table["patient_id"] = table["patient_id"].astype(str)
    dupes = table["patient_id"][table["patient_id"].duplicated()].unique()
    if len(dupes):
        raise InputError(f"{path}: patients appear more than once: {', '.join(map(str, dupes[:5]))}")
    return table


def joined(features: pd.DataFrame, manifest: Manifest) -> pd.DataFrame:
    """Features with label and split from the manifest; patients absent from either are reported."""
    meta = manifest.to_frame()[["patient_id", "label", "split"]]
    unknown = sorted(set(features["patient_id"]) - set(meta["patient_id"]))
    if unknown:
        raise InputError(f"feature table has patients not in the manifest: {', '.join(unknown[:5])}")
    return meta.merge(features, on="patient_id", how="left")


def train_radiomics(features: pd.DataFrame, manifest: Manifest, out: str | Path, *, train_split: str = "train",
                    model: RadiomicsModel | None = None) -> tuple[RadiomicsModel, pd.DataFrame]:
    """Fit on ``split == train_split`` only (no other patient influences selection or fit)."""
    data = joined(features, manifest)
    usable = data["error"].isna() if "error" in data else pd.Series(True, index=data.index)
    usable &= data[numeric_features(features).columns].notna().any(axis=1)
    train = data[(data["split"] == train_split) & usable & data["label"].notna()]
    if train.empty:
        raise InputError(f"no usable training patients: none has split == {train_split!r}, a label and features")
    model = model or RadiomicsModel()
    model.fit(numeric_features(train), train["label"].to_numpy())
    model.save(Path(out) / "model")
    predictions = data[["patient_id", "split", "label"]].copy()
    predictions["prob"] = np.nan
    predictions.loc[usable, "prob"] = model.predict_proba(data.loc[usable])[:, 1]
    write_text_atomic(Path(out) / "predictions.csv", predictions.to_csv(index=False))
    return model, predictions
