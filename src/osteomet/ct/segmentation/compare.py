"""Comparison of segmentation models on the same patients: summary table, paired tests, box plots.

Input: the long per-patient tables that ``osteomet ct segment predict`` (and the nnU-Net
import) write: patient_id, model, dice, precision, recall (plus split). Only patients that
every model scored enter the paired tests (:func:`osteomet.evaluation.segmentation.compare_models`:
paired t-test and Wilcoxon signed-rank between every pair of models, p-values adjusted over
the pairs with Holm by default).

Outputs: ``per_patient.csv``, ``summary.csv`` (per model and metric: n, mean, SD, median,
IQR, and the mean's 95% percentile-bootstrap CI over patients; NaN cases, where a ratio is
undefined, left out and counted), ``pairwise_<metric>.csv``
and ``boxplot_<metric>.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteomet.errors import InputError, MissingInputError
from osteomet.evaluation.segmentation import OVERLAP_METRICS, summarise_overlap
from osteomet.layout import PER_PATIENT, SUMMARY
from osteomet.utils.figures import pyplot, save_figure
from osteomet.utils.files import write_text_atomic

METRICS = OVERLAP_METRICS


def read_metrics(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate per-patient metric tables; every model must be scored on the same patient once."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"{path}: metrics table does not exist")
        frame = pd.read_csv(path, dtype={"patient_id": str})
        missing = {"patient_id", "model", "dice"} - set(frame.columns)
        if missing:
            raise InputError(f"{path}: not a per-patient metrics table (missing column(s) {', '.join(sorted(missing))})")
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    dup = table.duplicated(["patient_id", "model"])
    if dup.any():
        first = table.loc[dup].iloc[0]
        raise InputError(f"patient {first['patient_id']!r} is scored twice for model {first['model']!r}")
    return table


def summary_table(per_patient: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per model and metric: n, mean with its bootstrap CI over patients (the unit sampled), SD, median, IQR
    (:func:`osteomet.evaluation.segmentation.summarise_overlap`)."""
    return summarise_overlap(per_patient, "model", n_resamples=n_resamples, seed=seed)


def boxplot(per_patient: pd.DataFrame, metric: str, path: Path) -> Path:
    plt = pyplot()

    models = list(pd.unique(per_patient["model"]))
    data = [per_patient.loc[per_patient["model"] == m, metric].dropna().to_numpy(float) for m in models]
    fig, ax = plt.subplots(figsize=(1.6 * len(models) + 2, 4), dpi=120)
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(models) + 1), models, rotation=20)
    rng = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.08, 0.08, values.size), values, s=8, alpha=0.6, color="k")
    ax.set_ylabel(f"per-patient {metric}")
    ax.set_ylim(-0.02, 1.02)
    return save_figure(fig, path)


def compare_segmentations(per_patient: pd.DataFrame, out: str | Path, *, adjust: str = "holm",
                          split: str | None = "test") -> dict[str, pd.DataFrame]:
    """Write the comparison of every model pair on the patients of ``split`` (None: all patients)."""
    from osteomet.evaluation.segmentation import compare_models

    out = Path(out)
    table = per_patient
    if split is not None and "split" in table:
        table = table[table["split"] == split]
        if table.empty:
            raise InputError(f"no patient of split {split!r} in the metrics tables (splits: "
                             f"{', '.join(sorted(map(str, per_patient['split'].unique())))})")
    models = list(pd.unique(table["model"]))
    counts = table.groupby("patient_id")["model"].nunique()
    common = counts[counts == len(models)].index
    table = table[table["patient_id"].isin(common)]
    results = {"summary": summary_table(table)}
    write_text_atomic(out / PER_PATIENT, table.to_csv(index=False))
    write_text_atomic(out / SUMMARY, results["summary"].to_csv(index=False))
    long = table.rename(columns={"patient_id": "case_id"})
    for metric in METRICS:
        if metric not in table:
            continue
        if len(models) >= 2:
            pairwise = compare_models(long, metric=metric, adjust=adjust)
            write_text_atomic(out / f"pairwise_{metric}.csv", pairwise.to_csv(index=False))
            results[f"pairwise_{metric}"] = pairwise
        boxplot(table, metric, out / f"boxplot_{metric}.png")
    return results
