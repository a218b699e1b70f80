"""Figures people would rather look at than read: ROC curves per cohort."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from osteomet.evaluation.delong import delong_ci
from osteomet.evaluation.roc import roc_curve
from osteomet.utils.files import atomic_path


def plot_roc(models: Mapping[str, pd.DataFrame], split: str, path: str | Path) -> Path:
    """ROC curves of every model on one split, AUC and DeLong 95% CI in the legend; PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.8), dpi=120)
    for name, table in models.items():
        data = table.dropna(subset=["prob", "label"])
        data = data[data["split"] == split]
        if data["label"].nunique() < 2:
            continue
        y, s = data["label"].to_numpy(), data["prob"].to_numpy()
        fpr, tpr, _ = roc_curve(y, s)
        ci = delong_ci(y, s) if min(y.sum(), len(y) - y.sum()) >= 2 else None
        label = f"{name}: AUC {ci.auc:.3f} ({ci.low:.3f}-{ci.high:.3f})" if ci else name
        # straight segments between operating points: staircase without ties, diagonal across tied
        # scores, so the drawn area equals the reported AUC (as pROC plots it)
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC, {split} cohort", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
