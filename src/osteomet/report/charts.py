"""Figures the report draws itself from a run's tables (the stages did not save them as images)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from osteomet.evaluation.proportions import wilson_interval
from osteomet.utils.figures import pyplot


def bone_group_sensitivity(reference: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Detected reference lesions over all reference lesions per bone group, with the Wilson interval."""
    detected = reference["detected"].astype(str).str.lower().isin(["true", "1", "1.0"])
    groups = reference["bone_group"].fillna("outside bone").astype(str)
    rows = []
    for group, hits in detected.groupby(groups, sort=True):
        estimate, low, high = wilson_interval(int(hits.sum()), int(hits.size), level)
        rows.append({"bone_group": group, "detected": int(hits.sum()), "lesions": int(hits.size),
                     "sensitivity": estimate, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["bone_group", "detected", "lesions", "sensitivity", "ci_low", "ci_high"])


def sensitivity_figure(rates: pd.DataFrame) -> Any:
    """Dot-and-whisker chart of the sensitivity per bone group, with n under each group."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rates) + 1.5), 3.4), dpi=110)
    x = np.arange(len(rates))
    estimate = rates["sensitivity"].to_numpy(float)
    # Wilson bounds at 0/n or n/n sit within rounding of the estimate: clip that to zero length
    low = np.clip(estimate - rates["ci_low"].to_numpy(float), 0.0, None)
    high = np.clip(rates["ci_high"].to_numpy(float) - estimate, 0.0, None)
    ax.errorbar(x, estimate, yerr=[low, high], fmt="o", color="#1f5f99", capsize=4)
    ax.set_xticks(x, [f"{g}\n{d}/{n}" for g, d, n in zip(rates["bone_group"], rates["detected"], rates["lesions"])],
                  fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("lesion sensitivity")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Detected reference lesions by bone group (Wilson 95% CI)", fontsize=9)
    fig.tight_layout()
    return fig
