"""One table for the three detectors on the same patients: AUC, F1, precision, recall at each one's validation threshold.

``OUT/comparison.csv``: one row per detector, level (slice, patient) and split with every
metric's estimate and 95% CI (taken from each detector's ``metrics.csv``, so the numbers
are the ones reported per detector); ``OUT/boxplot_patient_scores.png``: per detector, the
patient scores (max slice probability) of patients with and without lesions, with the
detector's threshold marked, which shows at a glance how far apart the classes are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteomet.layout import COMPARISON
from osteomet.utils.figures import pyplot, save_figure
from osteomet.utils.files import write_text_atomic

COLUMNS = ("auc", "f1", "precision", "recall", "specificity")


def comparison_table(metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Wide table: architecture, level, split, n, n_positive, threshold, then <metric>, <metric>_low, <metric>_high."""
    rows = []
    for architecture, table in metrics.items():
        for (level, split), part in table.groupby(["level", "split"], sort=False):
            row = {"architecture": architecture, "level": level, "split": split, "n": int(part["n"].iloc[0]),
                   "n_positive": int(part["n_positive"].iloc[0]), "threshold": float(part["threshold"].iloc[0])}
            by_metric = part.set_index("metric")
            for metric in COLUMNS:
                if metric in by_metric.index:
                    row[metric] = by_metric.at[metric, "estimate"]
                    row[f"{metric}_low"] = by_metric.at[metric, "ci_low"]
                    row[f"{metric}_high"] = by_metric.at[metric, "ci_high"]
            rows.append(row)
    return pd.DataFrame(rows)


def patient_boxplot(patients: dict[str, pd.DataFrame], thresholds: dict[str, float], path: Path,
                    split: str | None = "test") -> Path:
    """Box plot of patient scores by reference label, one pair of boxes per detector."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(2.2 * len(patients) + 2, 4), dpi=120)
    positions, data, labels = [], [], []
    for i, (architecture, table) in enumerate(patients.items()):
        part = table.dropna(subset=["label"])
        if split is not None and (part["split"] == split).any():
            part = part[part["split"] == split]
        for j, label in enumerate((0, 1)):
            positions.append(3 * i + j + 1)
            data.append(part.loc[part["label"] == label, "score"].to_numpy(float))
            labels.append(f"{architecture}\n{'lesion' if label else 'no lesion'}")
        ax.hlines(thresholds[architecture], 3 * i + 0.6, 3 * i + 2.4, colors="r", linestyles="--", linewidth=0.8)
    ax.boxplot([d if d.size else np.array([np.nan]) for d in data], positions=positions, showmeans=True)
    ax.set_xticks(positions, labels, fontsize=7)
    ax.set_ylabel("patient score (max slice probability)")
    ax.set_ylim(-0.02, 1.02)
    return save_figure(fig, path)


def write_comparison(metrics: dict[str, pd.DataFrame], patients: dict[str, pd.DataFrame],
                     thresholds: dict[str, float], out: str | Path) -> pd.DataFrame:
    """``comparison.csv`` and the box plot of patient scores."""
    out = Path(out)
    table = comparison_table(metrics)
    write_text_atomic(out / COMPARISON, table.to_csv(index=False))
    patient_boxplot(patients, thresholds, out / "boxplot_patient_scores.png")
    return table
