"""Feature tables on disk: one row per patient, one column per feature (Parquet, plus CSV to read by eye).

Written by ``radiomics extract`` and read by the radiomics model, the ICC comparison and the
fusion model, so reading is written once here: the id column (``patient_id``, or
``case_id`` as other tools name it) comes back as a string column ``patient_id`` with
surrounding blanks removed, and every problem names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from osteomet.errors import InputError, MissingInputError
from osteomet.layout import EXTRACTION_LOG, FEATURES, FEATURES_CSV
from osteomet.utils.files import atomic_path, write_text_atomic

PathLike = str | os.PathLike[str]

#: Accepted id columns, in order of preference.
ID_COLUMNS = ("patient_id", "case_id")


class FeatureTableError(InputError):
    """A feature table cannot be used (the message names the file and what is wrong)."""


def read_feature_table(path: PathLike) -> pd.DataFrame:
    """A CSV/Parquet feature table with its id column as string ``patient_id`` (first column)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: feature table does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".txt"):
        raise FeatureTableError(f"{path}: unsupported feature table format {suffix!r}; use .csv or .parquet")
    try:
        table = pd.read_parquet(path) if suffix in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise FeatureTableError(f"{path}: cannot be read as a feature table ({exc})") from exc
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    if id_column is None:
        raise FeatureTableError(f"{path}: no 'patient_id' (or 'case_id') column "
                                f"(columns: {', '.join(map(str, table.columns[:8]))} ...)")
    ids = table[id_column].astype(str).str.strip()
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise FeatureTableError(f"{path}: duplicated {id_column} value(s): {', '.join(duplicated[:10])}")
    table = table.drop(columns=[c for c in ID_COLUMNS if c in table.columns])
    table.insert(0, "patient_id", ids.to_numpy())
    return table


def write_feature_table(table: pd.DataFrame, log: pd.DataFrame, out: PathLike) -> dict[str, Path]:
    """features.parquet (+ .csv for reading by eye) and extraction_log.csv, all atomic."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"parquet": out / FEATURES, "csv": out / FEATURES_CSV, "log": out / EXTRACTION_LOG}
    with atomic_path(paths["parquet"]) as tmp:
        table.to_parquet(tmp, index=False)
    write_text_atomic(paths["csv"], table.to_csv(index=False))
    write_text_atomic(paths["log"], log.to_csv(index=False))
    return paths
