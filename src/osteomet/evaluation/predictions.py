"""Evaluate saved model predictions the way the study reports them.

A prediction table has one row per patient: ``patient_id`` and ``prob`` (the score; higher =
bone metastasis), plus ``label`` and ``split`` or a manifest that supplies them. The threshold
is chosen once, by Youden's J on the *threshold splits* (training and validation patients
pooled by default; e.g. ``"val"`` for validation only) and applied unchanged to every split, so
the test and external cohorts never influence their own cut-off.

Outputs are tidy: :func:`evaluate_predictions` gives the rows of
:func:`osteomet.evaluation.metrics_table.evaluate_model` for every model and split, plus a ``note``
column; a split whose scored patients are all of one class (AUC and the threshold metrics are
undefined there) gets one row with NaN estimates and a ``note`` saying why, instead of
vanishing from the output;
:func:`compare_predictions` gives one paired DeLong test per pair of models and split, on the
patients both models scored.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Literal, get_args

import pandas as pd

from osteomet.evaluation.delong import delong_test
from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.metrics_table import evaluate_model
from osteomet.evaluation.multitest import holm
from osteomet.evaluation.roc import youden_threshold

SPLIT_ORDER = ("train", "val", "test", "external")


def _one_class_note(group: pd.DataFrame) -> str:
    n, n_pos = len(group), int(group["label"].sum())
    only = "cases (label 1)" if n_pos else "controls (label 0)"
    return (f"not evaluated: all {n} scored patient(s) of this split are {only}; "
            "the AUC and the threshold metrics need both classes")


def _usable(table: pd.DataFrame) -> pd.DataFrame:
    return table.dropna(subset=["prob", "label"])


#: The splits a threshold may be tuned on ("+" pools them); never test or external, whose metrics it would bias.
ThresholdSplit = Literal["train", "val", "train+val", "val+train"]
THRESHOLD_SPLITS: tuple[str, ...] = get_args(ThresholdSplit)
DEFAULT_THRESHOLD_SPLITS: ThresholdSplit = "train+val"


def threshold_split_problem(value: str) -> str | None:
    """Why ``value`` is not a threshold split (None when it is one of :data:`THRESHOLD_SPLITS`)."""
    if value in THRESHOLD_SPLITS:
        return None
    allowed = ", ".join(THRESHOLD_SPLITS)
    if {s.strip() for s in value.split("+")} & {"test", "external"}:
        return (f"threshold split {value!r}: a threshold tuned on test or external patients would bias their "
                f"metrics; use one of {allowed}")
    return f"threshold split {value!r} is not one of {allowed}"


def choose_threshold(table: pd.DataFrame, threshold_split: str | None = None) -> tuple[float, str]:
    """Youden threshold on the patients of ``threshold_split`` ("train+val" by default; "+" pools splits)."""
    data = _usable(table)
    splits = set(data["split"].dropna())
    threshold_split = threshold_split or DEFAULT_THRESHOLD_SPLITS
    problem = threshold_split_problem(threshold_split)
    if problem:  # a misspelt split would otherwise quietly fix the threshold on the remaining one
        raise EvaluationInputError(problem)
    wanted = threshold_split.split("+")
    chosen = data[data["split"].isin(wanted)]
    if chosen.empty or chosen["label"].nunique() < 2:
        raise EvaluationInputError(
            f"no scored, labelled patients of both classes in split {threshold_split!r} to choose the threshold on "
            f"(splits present: {sorted(splits)})"
        )
    used = "+".join(s for s in wanted if s in splits)
    return youden_threshold(chosen["label"].to_numpy(), chosen["prob"].to_numpy()), used


def evaluate_predictions(
    models: Mapping[str, pd.DataFrame],
    *,
    threshold_split: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Tidy metrics (AUC with DeLong CI, threshold metrics with bootstrap CIs) per model and split.

    A one-class split gives a single ``auc`` row with NaN estimates, ``ci_method`` "none" and
    the reason in ``note`` (empty on every evaluated row).
    """
    frames = []
    evaluated = 0
    for name, table in models.items():
        threshold, used = choose_threshold(table, threshold_split)
        data = _usable(table)
        for split in _ordered(data["split"]):
            group = data[data["split"] == split]
            if group["label"].nunique() < 2:  # AUC undefined on one class: say so rather than guess
                rows = pd.DataFrame([{"model": name, "cohort": str(split), "metric": "auc", "estimate": math.nan,
                                      "ci_low": math.nan, "ci_high": math.nan, "ci_method": "none",
                                      "threshold": float(threshold), "n": len(group),
                                      "n_pos": int(group["label"].sum()), "note": _one_class_note(group)}])
            else:
                rows = evaluate_model(group["label"].to_numpy(), group["prob"].to_numpy(), threshold, model=name,
                                      cohort=str(split), n_resamples=n_resamples, seed=seed)
                rows["note"] = ""
                evaluated += 1
            rows["threshold_split"] = used
            frames.append(rows)
    if not evaluated:
        raise EvaluationInputError("no split has both classes among the scored patients; nothing to evaluate")
    table = pd.concat(frames, ignore_index=True)
    return table[[c for c in table.columns if c != "note"] + ["note"]]


def not_evaluated(metrics: pd.DataFrame) -> list[str]:
    """One line per model and split left out of the metrics, saying why (for the CLI to print)."""
    if "note" not in metrics:
        return []
    rows = metrics[metrics["note"].fillna("").ne("")]
    return [f"{row.model} / {row.cohort}: {row.note}" for row in rows.itertuples(index=False)]


def compare_predictions(models: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Paired DeLong test for every pair of models on every split (patients scored by both); Holm per split."""
    rows = []
    for (name_a, a), (name_b, b) in itertools.combinations(models.items(), 2):
        both = _usable(a)[["patient_id", "split", "label", "prob"]].merge(
            _usable(b)[["patient_id", "prob"]], on="patient_id", suffixes=("_a", "_b"))
        for split in _ordered(both["split"]):
            group = both[both["split"] == split]
            if group["label"].sum() < 2 or (1 - group["label"]).sum() < 2:
                continue
            test = delong_test(group["label"].to_numpy(), group["prob_a"].to_numpy(), group["prob_b"].to_numpy())
            rows.append({"split": split, "model_a": name_a, "model_b": name_b, "n": len(group),
                         "auc_a": test.auc1, "auc_b": test.auc2, "z": test.z, "p": test.p,
                         "diff_low": test.diff_low, "diff_high": test.diff_high})
    table = pd.DataFrame(rows, columns=["split", "model_a", "model_b", "n", "auc_a", "auc_b", "z", "p",
                                        "diff_low", "diff_high"])
    table["p_holm"] = pd.Series(dtype=float)
    for _, index in table.groupby("split").groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p"].to_numpy())
    return table


def _ordered(splits: pd.Series) -> list[str]:
    present = [s for s in pd.unique(splits.dropna())]
    return sorted(present, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), str(s)))
