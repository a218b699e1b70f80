"""The evaluation stages: saved predictions to metrics, DeLong comparisons and ROC figures; the cohort table."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError
from osteomet.layout import DELONG, METRICS, roc_figure
from osteomet.stage import Stage, StageOutcome, refuse_overwriting_inputs

PREDICTIONS_STAGE = "evaluate-predictions"


def load_prediction_files(files: Sequence[str | Path], manifest: str | Path | None = None,
                          names: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """One validated prediction table per model (several models in one file are split by ``model``)."""
    from osteomet.models.predictions import by_model, read_predictions

    if names and len(names) != len(files):
        raise InputError(f"{len(names)} --name value(s) for {len(files)} --predictions file(s)")
    cohort = read_manifest(manifest, require=("label",)).to_frame() if manifest else None
    models: dict[str, pd.DataFrame] = {}
    for i, path in enumerate(files):
        table = read_predictions(path, cohort, model=names[i] if names else None)
        for name, part in by_model(table).items():
            while name in models:
                name += "_"
            models[name] = part
    return models


def evaluate_prediction_files(files: Sequence[str | Path], out: str | Path, *, manifest: str | Path | None = None,
                              names: Sequence[str] | None = None, threshold_split: str | None = None,
                              n_resamples: int = 1000, seed: int = 0) -> tuple[StageOutcome, pd.DataFrame]:
    """Each model on each split (AUC with DeLong CI, threshold metrics with bootstrap CIs), paired DeLong, ROC."""
    from osteomet.evaluation.plots import plot_roc
    from osteomet.evaluation.predictions import compare_predictions, evaluate_predictions
    from osteomet.utils.files import write_text_atomic

    out = Path(out)
    settings = {"names": list(names or []), "threshold_split": threshold_split, "n_resamples": n_resamples,
                "seed": seed}
    stage = Stage(PREDICTIONS_STAGE, out, settings=settings,
                  inputs={"predictions": list(files), "manifest": manifest}, outputs=(METRICS, DELONG))
    stage.check()

    def work() -> dict:
        models = load_prediction_files(files, manifest, names)
        refuse_overwriting_inputs([out / roc_figure(s) for m in models.values() for s in m["split"].unique()], files)
        metrics = evaluate_predictions(models, threshold_split=threshold_split, n_resamples=n_resamples, seed=seed)
        write_text_atomic(out / METRICS, metrics.to_csv(index=False))
        if len(models) > 1:
            write_text_atomic(out / DELONG, compare_predictions(models).to_csv(index=False))
        for split in metrics["cohort"].unique():
            plot_roc(models, split, out / roc_figure(split))
        return {"models": list(models), "cohorts": [str(c) for c in metrics["cohort"].unique()]}

    outcome = stage.run(work)
    return outcome, pd.read_csv(out / METRICS)


def write_cohort_table(manifest: str | Path, out: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The study's cohort characteristics by BM status as CSV; returns the table and the fitting notes."""
    from osteomet.evaluation.cohort import write_characteristics_csv
    from osteomet.evaluation.study_characteristics import study_characteristics

    refuse_overwriting_inputs([out], [manifest])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = study_characteristics(read_manifest(manifest, check_files=False).to_frame())
    write_characteristics_csv(table, out)
    notes = sorted({str(w.message) for w in caught if "osteomet" in str(w.filename) or "fit" in str(w.message)})
    return table, notes


def significant_variables(table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """Variables of the cohort table with BH-adjusted p below ``alpha``."""
    tested = table.dropna(subset=["p_adj"])
    return sorted(tested.loc[tested["p_adj"].astype(float) < alpha, "variable"].unique().tolist())
