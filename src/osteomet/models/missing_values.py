"""Missing clinical values as a study decision: the training cohort's missingness and what a missing value does.

Why: the clinical and fusion models are XGBoost, which sends a missing value down a learned
"default direction" at every split. That direction is learned from the training patients who
had the value missing; when none had (a synthetic cohort with Gleason always known, a
registry that always records it), it is whatever the tree builder chose, and a new patient
without that value gets a probability that reflects no data at all (a real ProstateX patient
without Gleason, ISUP, hematuria and leukocyturia was pushed up by +0.73, +0.67 and +0.52
log-odds). Imputation would hide the same problem; so the study records, per clinical
variable, how often it was missing in each split and which values the training patients had
(:class:`MissingnessRecord`), and ``predict`` shows, for every missing value, the model's
probability over those plausible values next to its "missing" probability: the sensitivity
analysis that multiple imputation makes implicit (van Buuren, *Flexible Imputation of Missing
Data*, 2nd ed. 2018, ch. 2 and 9), without changing the model's own answer.

Plausible values of a variable: the categories the training patients had (a variable with at
most :data:`MAX_CATEGORIES` distinct whole-number values: Gleason, ISUP, yes/no), else the
training quantiles :data:`QUANTILES` (10th, 50th, 90th). Combinations that the manifest's rules
refuse (Gleason 6 with ISUP 4) are left out. Saved as JSON: counts, shares and quantiles only,
never a training patient's own values.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from osteomet.errors import InputError
from osteomet.utils.files import read_json_record, write_json_atomic

FORMAT = "osteomet.missingness/1"
#: Training quantiles tried for a continuous variable.
QUANTILES = (0.1, 0.5, 0.9)
#: A variable with at most this many distinct whole-number values is categorical.
MAX_CATEGORIES = 10
#: The most value combinations scored for the joint range (a product beyond it keeps the quantiles' ends).
MAX_COMBINATIONS = 20_000
DEFAULT_SHIFT = 0.1

Predictor = Callable[[pd.DataFrame], np.ndarray]


def _valid_clinical(row: Mapping[str, float]) -> bool:
    """Whether the manifest's rules accept these values together (Gleason against ISUP, ranges)."""
    from osteomet.data.manifest import ClinicalRecord

    try:
        ClinicalRecord(patient_id="patient", **{k: v for k, v in row.items() if v is not None and v == v})
    except (ValueError, TypeError):
        return False
    return True


@dataclass
class MissingnessRecord:
    """The training cohort's missingness per clinical variable, per split, its patterns and plausible values."""

    columns: list[str]
    n_train: int
    #: per variable: {"missing": count, "share": share} among training patients
    training: dict[str, dict[str, float]]
    #: per split: {"n": patients, "share": {variable: share missing}}
    splits: dict[str, dict[str, Any]]
    #: training patients per set of missing variables: [{"missing": [...], "n": k, "share": s}], largest first
    patterns: list[dict[str, Any]]
    #: per variable: {"kind": "categorical" | "continuous", "values": [...], "counts" or "quantiles": [...]}
    plausible: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: Sequence[str], *, train_split: str = "train") -> "MissingnessRecord":
        """From a manifest frame (``split`` column and the clinical ``columns``; an absent column is all missing)."""
        values = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce") if c in frame else np.nan
                               for c in columns}, index=frame.index).astype(float)
        split = frame["split"] if "split" in frame else pd.Series(train_split, index=frame.index)
        train = values[split == train_split]
        if train.empty:
            raise InputError(f"no patients with split == {train_split!r}: the missingness of the training cohort "
                             f"cannot be recorded")
        missing = train.isna()
        training = {c: {"missing": int(missing[c].sum()), "share": float(missing[c].mean())} for c in columns}
        splits = {}
        for name in [s for s in ("train", "val", "test", "external") if (split == s).any()] + \
                    sorted(set(split.dropna()) - {"train", "val", "test", "external"}):
            part = values[split == name].isna()
            splits[str(name)] = {"n": int(len(part)), "share": {c: float(part[c].mean()) for c in columns}}
        keys = missing.apply(lambda row: tuple(c for c in columns if row[c]), axis=1)
        counts = keys.value_counts()
        patterns = [{"missing": list(k), "n": int(n), "share": float(n / len(train))} for k, n in counts.items()]
        plausible = {c: plausible_values(train[c]) for c in columns}
        return cls(list(columns), int(len(train)), training, splits, patterns, plausible)

    def values_of(self, column: str) -> list[float]:
        return [float(v) for v in (self.plausible.get(column) or {}).get("values", [])]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "columns": self.columns, "n_train": self.n_train, "training": self.training,
                "splits": self.splits, "patterns": self.patterns, "plausible": self.plausible}

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "MissingnessRecord":
        data = read_json_record(path, "missingness record", remedy="rerun `osteomet run mri` to write it again")
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r} is not {FORMAT!r}")
            return cls(list(data["columns"]), int(data["n_train"]), dict(data["training"]), dict(data["splits"]),
                       list(data["patterns"]), dict(data["plausible"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: damaged or edited ({type(exc).__name__}: {exc}); rerun `osteomet run mri` to "
                             f"write it again") from None


def plausible_values(column: pd.Series) -> dict[str, Any]:
    """The values a missing entry of this variable could have had, from the training patients who had it."""
    present = pd.to_numeric(column, errors="coerce").dropna().astype(float)
    if present.empty:
        return {"kind": "none", "values": []}
    distinct = np.unique(present)
    if len(distinct) <= MAX_CATEGORIES and np.all(distinct == np.round(distinct)):
        counts = present.value_counts()
        return {"kind": "categorical", "values": [float(v) for v in distinct],
                "counts": [int(counts[v]) for v in distinct]}
    quantiles = [float(np.quantile(present, q)) for q in QUANTILES]
    return {"kind": "continuous", "values": sorted(set(quantiles)), "quantiles": list(QUANTILES)}


def missing_columns(record: MissingnessRecord, clinical: Mapping[str, float]) -> list[str]:
    return [c for c in record.columns if c not in clinical or clinical[c] is None or clinical[c] != clinical[c]]


def _rows(clinical: Mapping[str, float], columns: Sequence[str], filled: Sequence[Mapping[str, float]]) -> pd.DataFrame:
    base = {c: float(clinical[c]) if c in clinical and clinical[c] is not None else np.nan for c in columns}
    return pd.DataFrame([{**base, **f} for f in filled], columns=list(columns)).astype(float)


def missing_value_effects(record: MissingnessRecord, clinical: Mapping[str, float],
                          predictors: Mapping[str, Predictor], *, shift: float = DEFAULT_SHIFT,
                          valid: Callable[[Mapping[str, float]], bool] = _valid_clinical) -> dict[str, Any]:
    """For each missing value, each model's probability over its plausible values; the joint range; statements.

    ``predictors``: per model, a function from a table of clinical values (NaN = missing; one
    row per completion) to probabilities. A variable whose plausible values move a model's
    probability by more than ``shift`` from its "missing" probability is ``moves``.
    """
    missing = missing_columns(record, clinical)
    known = {c: float(clinical[c]) for c in record.columns if c not in missing}
    result: dict[str, Any] = {"missing": missing, "shift": shift, "variables": {}, "models": {}, "statements": []}
    if not missing:
        return result
    as_missing = {name: float(fn(_rows(clinical, record.columns, [{}]))[0]) for name, fn in predictors.items()}
    for column in missing:
        tried = [v for v in record.values_of(column) if valid({**known, column: v})]
        entry: dict[str, Any] = {"values": tried, "kind": (record.plausible.get(column) or {}).get("kind", "none"),
                                 "training_missing": record.training.get(column, {}).get("missing"),
                                 "training_share": record.training.get(column, {}).get("share"), "models": {}}
        if tried:
            rows = _rows(clinical, record.columns, [{column: v} for v in tried])
            for name, fn in predictors.items():
                probs = [float(p) for p in fn(rows)]
                moved = max(abs(p - as_missing[name]) for p in probs)
                entry["models"][name] = {"missing": as_missing[name], "probabilities": probs,
                                         "low": min(probs), "high": max(probs), "shift": moved,
                                         "moves": bool(moved > shift)}
        entry["moves"] = any(m["moves"] for m in entry["models"].values())
        result["variables"][column] = entry
    combos = _combinations(record, missing, known, valid)
    if combos:
        rows = _rows(clinical, record.columns, combos)
        for name, fn in predictors.items():
            probs = np.asarray(fn(rows), float)
            result["models"][name] = {"missing": as_missing[name], "low": float(probs.min()),
                                      "high": float(probs.max()), "n_combinations": len(combos)}
    result["statements"] = _statements(record, result)
    return result


def _combinations(record: MissingnessRecord, missing: Sequence[str], known: Mapping[str, float],
                  valid: Callable[[Mapping[str, float]], bool]) -> list[dict[str, float]]:
    """Every combination of the missing variables' plausible values the manifest's rules accept."""
    options = [[(c, v) for v in record.values_of(c)] for c in missing if record.values_of(c)]
    if not options:
        return []
    while math.prod(len(o) for o in options) > MAX_COMBINATIONS:  # keep the ends of the longest list
        longest = max(range(len(options)), key=lambda i: len(options[i]))
        values = options[longest]
        options[longest] = [values[0], values[len(values) // 2], values[-1]] if len(values) > 3 else values[::2]
    return [dict(combo) for combo in itertools.product(*options) if valid({**known, **dict(combo)})]


def _value(v: float) -> str:
    return f"{v:g}" if float(v).is_integer() else f"{v:.3g}"


def _statements(record: MissingnessRecord, result: Mapping[str, Any]) -> list[str]:
    """The sentences ``predict`` prints: each value that moves a prediction, the values no training patient
    lacked, and the range over all plausible completions."""
    lines, never_quiet = [], []
    shift = result["shift"]
    for column, entry in result["variables"].items():
        never = entry.get("training_missing") == 0
        if not entry["models"]:
            lines.append(f"{column} is missing and no training patient had a value for it: its effect cannot be "
                         f"shown")
            continue
        if not entry["moves"]:
            if never:
                never_quiet.append(column)
            continue
        what = ("training values " if entry["kind"] == "categorical" else "training 10th/50th/90th percentiles ") + \
            ", ".join(_value(v) for v in entry["values"])
        models = "; ".join(f"{name} {m['missing']:.3f} as missing, {m['low']:.3f}–{m['high']:.3f} over them"
                           + (f" (moves it by up to {m['shift']:.2f}, more than {shift:g})" if m["moves"] else "")
                           for name, m in entry["models"].items())
        lines.append(f"{column} is missing ({what}): {models}"
                     + (f". No training patient ({record.n_train}) lacked {column}, so what the models do with a "
                        f"missing {column} was not learned from data" if never else ""))
    if never_quiet:
        lines.append(f"Never missing among the {record.n_train} training patients, so what the models do with them "
                     f"missing was not learned from data: {', '.join(never_quiet)} (none moves a probability by more "
                     f"than {shift:g} over its plausible values)")
    if result["models"]:
        span = "; ".join(f"{name} {m['low']:.3f}–{m['high']:.3f} (as given: {m['missing']:.3f})"
                         for name, m in result["models"].items())
        n = next(iter(result["models"].values()))["n_combinations"]
        lines.append(f"Prediction range over plausible values of the missing {', '.join(result['missing'])} "
                     f"({n} combinations from the training distribution): {span}")
    return lines


__all__ = ["MissingnessRecord", "missing_columns", "missing_value_effects", "plausible_values"]
