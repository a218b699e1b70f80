"""Figures people would rather look at than read: ROC, calibration and decision curves per cohort.

Each figure is written as PNG (for reports and slides) and, beside it, as SVG (for journals).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from osteomet.evaluation.delong import delong_ci
from osteomet.evaluation.roc import roc_curve
from osteomet.utils.figures import pyplot, save_figure


def _save(fig, path: str | Path) -> Path:
    """The figure as ``path`` (PNG) and the same name with ``.svg``, atomically; closes it."""
    return save_figure(fig, path, svg=True)


def _scored(models: Mapping[str, pd.DataFrame], split: str) -> dict[str, pd.DataFrame]:
    """Each model's labelled patients of one split, for models with both classes there whose scores are
    probabilities (calibration and net benefit mean nothing for logits or ranks)."""
    out = {}
    for name, table in models.items():
        data = table.dropna(subset=["prob", "label"])
        data = data[data["split"] == split]
        if data["label"].nunique() == 2 and data["prob"].between(0, 1).all():
            out[name] = data
    return out


def plot_calibration(models: Mapping[str, pd.DataFrame], split: str, path: str | Path, bins: int = 10) -> Path:
    """Observed rate against mean predicted probability (quantile bins), Brier and slope in the legend."""
    from osteomet.evaluation.calibration import calibration, calibration_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.8), dpi=120)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="ideal")
    for name, data in _scored(models, split).items():
        c = calibration(data["label"], data["prob"])
        curve = calibration_curve(data["label"], data["prob"], bins=bins)
        ax.plot(curve["mean_predicted"], curve["observed"], marker="o", markersize=3,
                label=f"{name}: Brier {c.brier:.3f}, slope {c.slope:.2f}, intercept {c.intercept:.2f}")
    ax.set(xlabel="predicted probability", ylabel="observed proportion", title=f"Calibration, {split} cohort",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=6)
    return _save(fig, path)


def plot_decision_curve(models: Mapping[str, pd.DataFrame], split: str, path: str | Path) -> Path:
    """Net benefit of each model against treat-all and treat-none over threshold probabilities."""
    from osteomet.evaluation.decision_curve import net_benefit

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.2), dpi=120)
    reference = None
    for name, data in _scored(models, split).items():
        table = net_benefit(data["label"], data["prob"])
        ax.plot(table["threshold"], table["model"], label=name)
        reference = table
    if reference is not None:
        ax.plot(reference["threshold"], reference["treat_all"], color="grey", linestyle="--", label="treat all")
        ax.axhline(0.0, color="black", linewidth=0.8, label="treat none")
        top = float(reference["treat_all"].iloc[0])  # treat-all's net benefit at the lowest threshold, ~ prevalence
        ax.set_ylim(min(-0.05, -0.1 * max(top, 0.05)), max(0.05, top * 1.1 + 0.02))
    ax.set(xlabel="threshold probability", ylabel="net benefit", title=f"Decision curve, {split} cohort", xlim=(0, 1))
    ax.legend(loc="upper right", fontsize=7)
    return _save(fig, path)


def plot_roc(models: Mapping[str, pd.DataFrame], split: str, path: str | Path) -> Path:
    """ROC curves of every model on one split, AUC and DeLong 95% CI in the legend; PNG written atomically."""
    plt = pyplot()
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
    return _save(fig, path)
