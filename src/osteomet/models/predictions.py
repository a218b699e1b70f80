"""The prediction-table contract: what every model writes and what evaluation and fusion read.

One row per patient and model::

    patient_id  split     label  model      prob
    P001        train     1      radiomics  0.83
    P002        external         clinical   0.12

* ``patient_id``: the manifest's id (text).
* ``split``: ``train``, ``val``, ``test``, ``external`` (or ``new`` for a patient no study
  split knows); training rows are out-of-fold predictions where a model can give them.
* ``label``: 1 = bone metastasis, 0 = none, empty when unknown.
* ``model``: the model's name; one file may hold several models (long format).
* ``prob``: the model's probability of bone metastasis in [0, 1] (a table a user brings may
  hold any finite score, higher = bone metastasis, where the reader allows it); empty for a
  patient the model could not score (a failed extraction), which evaluation refuses unless
  told to leave such patients out (and then reports how many).

Files are CSV (or Parquet when named ``.parquet``). A table a user brings may hold only
``patient_id`` and ``prob``: :func:`read_predictions` then takes ``label`` and ``split`` from
the manifest and ``model`` from the file name. Every problem names the file, the column and
the first bad row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from osteomet.errors import InputError, MissingInputError
from osteomet.utils.files import atomic_path, write_text_atomic
from osteomet.utils.text import shown as as_shown

PathLike = str | os.PathLike[str]

COLUMNS = ("patient_id", "split", "label", "model", "prob")
SPLITS = ("train", "val", "test", "external", "new")


class PredictionTableError(InputError):
    """A prediction table breaks the contract (the message names the file, column and row)."""


class ProbabilityRangeError(PredictionTableError):
    """A ``prob`` outside [0, 1] where a probability is required."""


class MissingProbabilityError(PredictionTableError):
    """An empty ``prob`` where every patient must be scored."""


class LabelMismatchError(PredictionTableError):
    """A patient's label in a prediction table differs from the manifest's."""


def _row(frame: pd.DataFrame, mask: pd.Series) -> str:
    first = int(np.flatnonzero(mask.to_numpy())[0])
    return f"row {first + 1} (patient {frame['patient_id'].iloc[first]!r})"


def _rows(frame: pd.DataFrame, mask: pd.Series | np.ndarray, *, lines: bool, column: str | None = None,
          limit: int = 5) -> str:
    """Up to ``limit`` flagged rows as "row i (patient 'X', line j of the file) has v; ...", then how many more."""
    index = np.flatnonzero(np.asarray(mask))
    parts = []
    for i in index[:limit]:
        where = f", line {i + 2} of the file" if lines else ""
        value = f" has {frame[column].iloc[i]:g}" if column else ""
        parts.append(f"row {i + 1} (patient {frame['patient_id'].iloc[i]!r}{where}){value}")
    more = f"; and {len(index) - limit} more row(s)" if len(index) > limit else ""
    return "; ".join(parts) + more


def _check_numeric(table: pd.DataFrame, column: str, source: str, *, allowed: tuple[float, ...] | None = None,
                   lines: bool = False) -> None:
    """Convert ``column`` to float; raise naming the source, the column, the first bad row (and its line)."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    bad = (values.isna() & ~blank).to_numpy() | np.isinf(values.to_numpy())
    what = "a finite number"
    if allowed is not None:
        bad |= values.notna().to_numpy() & ~values.isin(allowed).to_numpy()
        what = " or ".join(f"{v:g}" for v in allowed)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = raw.iloc[i]
        shown = as_shown(value)
        where = f", line {i + 2} of the file" if lines else ""
        more = f", and {int(bad.sum()) - 1} more row(s)" if bad.sum() > 1 else ""
        raise PredictionTableError(f"{source}: column {column!r} must be {what} (or empty) in every row; row {i + 1} "
                                   f"(patient {table['patient_id'].iloc[i]!r}{where}) has {shown}{more}")
    table[column] = values


def validate_predictions(table: pd.DataFrame, source: str = "prediction table", *,
                         probabilities: bool = True, lines: bool = False,
                         allow_missing: bool = True) -> pd.DataFrame:
    """The table with contract dtypes (label float 0/1/NaN, prob float); refuses anything else.

    ``probabilities=False`` accepts any finite score (a user's own model may output logits
    or ranks; only the order matters for the AUC and the threshold). ``lines``: the table was
    read from a CSV file, so errors also give the line of the file. ``allow_missing=False``
    refuses an empty ``prob`` (an unscored patient), naming the patients.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise PredictionTableError(f"{source}: missing column(s) {missing}; a prediction table has {list(COLUMNS)}")
    table = table.loc[:, [*COLUMNS, *[c for c in table.columns if c not in COLUMNS]]].copy()
    table["patient_id"] = table["patient_id"].astype(str).str.strip()
    table["model"] = table["model"].astype(str)
    table["split"] = table["split"].astype(str).str.strip().str.lower()
    bad = ~table["split"].isin(SPLITS)
    if bad.any():
        raise PredictionTableError(f"{source}: column 'split' must be one of {list(SPLITS)}; {_row(table, bad)} has "
                                   f"{table['split'][bad].iloc[0]!r}")
    _check_numeric(table, "prob", source, lines=lines)
    _check_numeric(table, "label", source, allowed=(0.0, 1.0), lines=lines)
    bad = table["prob"].notna() & ((table["prob"] < 0) | (table["prob"] > 1))
    if probabilities and bad.any():
        raise ProbabilityRangeError(f"{source}: column 'prob' must be a probability in [0, 1]; {int(bad.sum())} "
                                    f"row(s) are not: {_rows(table, bad, lines=lines, column='prob')}")
    bad = table["prob"].isna()
    if not allow_missing and bad.any():
        raise MissingProbabilityError(f"{source}: {int(bad.sum())} patient(s) have no probability (empty 'prob'): "
                                      f"{_rows(table, bad, lines=lines)}")
    bad = table.duplicated(["model", "patient_id"])
    if bad.any():
        raise PredictionTableError(f"{source}: patient {table['patient_id'][bad].iloc[0]!r} appears more than once "
                                   f"for model {table['model'][bad].iloc[0]!r}")
    return table.reset_index(drop=True)


def prediction_table(patient_ids, splits, labels, probs, model: str) -> pd.DataFrame:
    """A validated table for one model from parallel sequences."""
    table = pd.DataFrame({"patient_id": list(patient_ids), "split": list(splits), "label": list(labels),
                          "model": model, "prob": list(probs)})
    return validate_predictions(table, f"predictions of {model!r}")


def write_predictions(table: pd.DataFrame, path: PathLike) -> Path:
    """Validate, then write atomically (CSV, or Parquet for a ``.parquet`` name)."""
    path = Path(path)
    table = validate_predictions(table, str(path))
    if path.suffix.lower() == ".parquet":
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
        return path
    return write_text_atomic(path, table.to_csv(index=False))


def read_predictions(path: PathLike, manifest: pd.DataFrame | None = None, *, model: str | None = None,
                     probabilities: bool = False, allow_missing: bool = True,
                     manifest_name: str = "the manifest") -> pd.DataFrame:
    """A prediction table from disk, completed from the manifest (label, split) and the file name (model).

    With a manifest, a label the table gives itself must agree with the manifest's (both known
    and different is refused, naming ``manifest_name``); the manifest's label is then used.
    ``probabilities`` and ``allow_missing`` are passed to :func:`validate_predictions`.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: prediction file not found")
    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, sep=None,
                                                                                           engine="python")
    except Exception as exc:  # pandas raises many types for unreadable files
        raise PredictionTableError(f"{path}: cannot be read as a table ({exc})") from exc
    for column in ("patient_id", "prob"):
        if column not in table.columns:
            raise PredictionTableError(f"{path}: no {column!r} column (columns: {', '.join(map(str, table.columns))})")
    table["patient_id"] = table["patient_id"].astype(str).str.strip()
    if manifest is not None:
        info = manifest[["patient_id", "label", "split"]].copy()
        info["patient_id"] = info["patient_id"].astype(str)
        unknown = sorted(set(table["patient_id"]) - set(info["patient_id"]))
        if unknown:
            raise PredictionTableError(f"{path}: patient(s) {unknown[:5]} are not in the manifest")
        if "label" in table:
            _check_labels_agree(table, info, path, manifest_name)
        table = table.drop(columns=[c for c in ("label", "split") if c in table]).merge(info, on="patient_id",
                                                                                        how="left")
    for column in ("label", "split"):
        if column not in table:
            raise PredictionTableError(f"{path}: no {column!r} column; pass the cohort manifest to supply it")
    if model is not None:
        table["model"] = model
    elif "model" not in table:
        table["model"] = path.stem if path.stem not in ("predictions", "pred") else (path.parent.name or path.stem)
    return validate_predictions(table, str(path), probabilities=probabilities, lines=path.suffix.lower() != ".parquet",
                                allow_missing=allow_missing)


def _check_labels_agree(table: pd.DataFrame, info: pd.DataFrame, path: Path, manifest_name: str) -> None:
    """Refuse a table whose known labels differ from the manifest's known labels for the same patients."""
    mine = pd.to_numeric(table["label"], errors="coerce").to_numpy(dtype=float)
    theirs = pd.to_numeric(table[["patient_id"]].merge(info, on="patient_id", how="left")["label"],
                           errors="coerce").to_numpy(dtype=float)
    bad = ~np.isnan(mine) & ~np.isnan(theirs) & (mine != theirs)
    if bad.any():
        lines = path.suffix.lower() != ".parquet"
        shown = "; ".join(f"patient {table['patient_id'].iloc[i]!r}"
                          + (f" (line {i + 2})" if lines else f" (row {i + 1})")
                          + f": {mine[i]:g} in {path.name}, {theirs[i]:g} in the manifest"
                          for i in np.flatnonzero(bad)[:5])
        more = f"; and {int(bad.sum()) - 5} more" if bad.sum() > 5 else ""
        raise LabelMismatchError(f"{path} and {manifest_name}: {int(bad.sum())} patient(s) have different labels: "
                                 f"{shown}{more}; correct the wrong one (or drop the table's 'label' column to use "
                                 "the manifest's)")


def by_model(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One frame per model, in order of first appearance."""
    return {name: part.reset_index(drop=True) for name, part in table.groupby("model", sort=False)}
