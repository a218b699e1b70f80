"""Figures people would rather look at than read: ROC, calibration and decision curves per cohort.

Each figure is written as PNG (for reports and slides) and, beside it, as SVG (for journals).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
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


def _interval(estimate: float, low: float, high: float) -> str:
    """``0.48 (-0.01 to 0.97)``; NA for an aliased estimate, 3 significant digits for separation's huge values."""
    if not np.isfinite(estimate):
        return "NA"

    def number(v: float) -> str:
        return f"{v:.2f}" if abs(v) < 1000 else f"{v:.3g}"

    return f"{number(estimate)} ({number(low)} to {number(high)})"


def _calibration_panel(fig, cell, name: str, data: pd.DataFrame, bins: int, colour) -> None:
    """One model: loess curve with its 95% band over the ideal line, statistics, and below it the
    predicted risks of events (up) and non-events (down)."""
    import warnings

    from osteomet.evaluation.calibration import calibration, flexible_calibration
    from osteomet.evaluation.errors import EvaluationInputError

    top, bottom = cell.subgridspec(2, 1, height_ratios=[4, 1], hspace=0.05).subplots(sharex=True)
    y, p = data["label"].to_numpy(), data["prob"].to_numpy(dtype=float)
    c = calibration(y, p)
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    note = ""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            flexible = flexible_calibration(y, p, bins=bins)
        curve = flexible.curve
        top.fill_between(curve["predicted"], curve["ci_low"], curve["ci_high"], color=colour, alpha=0.22, linewidth=0)
        top.plot(curve["predicted"], curve["observed"].clip(-0.02, 1.02), color=colour, linewidth=1.8)
        if any("pseudoinverse" in str(w.message) for w in caught):
            note = "\ncurve not well determined\n(tied predictions)"
        hist = flexible.histogram
    except EvaluationInputError as exc:
        note = "\nno loess curve: " + ("too few patients" if "too few" in str(exc) else "too many tied predictions")
        edges = np.linspace(0, 1, bins + 1)
        hist = pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:],
                             "events": np.histogram(p[y == 1], edges)[0], "non_events": np.histogram(p[y == 0], edges)[0]})
    level = int(round(100 * c.level))
    text = (f"n = {c.n} ({c.events} events)\n"
            f"intercept {_interval(c.intercept, c.intercept_low, c.intercept_high)}\n"
            f"slope {_interval(c.slope, c.slope_low, c.slope_high)}\n"
            f"({level}% Wald CIs)\nBrier {c.brier:.3f}, Eavg {c.eavg:.3f}" + note)
    top.text(0.03, 0.97, text, transform=top.transAxes, va="top", ha="left", fontsize=6.5,
             bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})
    top.set(xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="observed proportion", title=name)
    top.grid(alpha=0.25, linewidth=0.5)
    width = float(hist["bin_high"].iloc[0] - hist["bin_low"].iloc[0])
    centres = (hist["bin_low"] + hist["bin_high"]) / 2
    bottom.bar(centres, hist["events"], width=width * 0.9, color=colour, label="events")
    bottom.bar(centres, -hist["non_events"], width=width * 0.9, color="0.6", label="non-events")
    bottom.axhline(0, color="black", linewidth=0.6)
    peak = max(int(hist["events"].max()), int(hist["non_events"].max()), 1)
    bottom.set_ylim(-peak * 1.15, peak * 1.15)
    bottom.set_yticks([-peak, 0, peak], [str(peak), "0", str(peak)], fontsize=6)
    bottom.set_ylabel("patients", fontsize=7)
    bottom.text(0.99, 0.95, "events", transform=bottom.transAxes, ha="right", va="top", fontsize=6)
    bottom.text(0.99, 0.05, "non-events", transform=bottom.transAxes, ha="right", va="bottom", fontsize=6)
    bottom.set_xlabel("predicted probability")


def plot_calibration(models: Mapping[str, pd.DataFrame], split: str, path: str | Path, bins: int = 20) -> Path:
    """Flexible (loess) calibration curve with its 95% band, one panel per model, as val.prob.ci.2 draws it.

    Each panel: the ideal line, ``loess(y ~ p, degree = 2)`` with ``fit +- 1.96 se`` (Van Calster et al.
    2016), calibration intercept and slope with 95% Wald CIs, Brier and Eavg, and below it a
    histogram (``bins`` equal-width bins) of the predicted risks of events (up) and non-events (down).
    """
    plt = pyplot()
    scored = _scored(models, split)
    columns = 1 if len(scored) <= 1 else 2
    rows = max(1, -(-len(scored) // columns))
    fig = plt.figure(figsize=(4.2 * columns, 4.9 * rows + 0.4), dpi=120)
    height = fig.get_figheight()
    grid = fig.add_gridspec(rows, columns, hspace=0.3, wspace=0.3, top=1 - 0.55 / height, bottom=0.75 / height)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, data) in enumerate(scored.items()):
        _calibration_panel(fig, grid[i // columns, i % columns], name, data, bins, colours[i % len(colours)])
    if scored:  # the same entries in every panel (each in its model's colour): one legend for the figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = [Line2D([], [], color="grey", linestyle="--", linewidth=1), Line2D([], [], color="0.2", linewidth=1.8),
                   Patch(color="0.2", alpha=0.22, linewidth=0)]
        fig.legend(handles, ["ideal", "loess calibration curve", "95% pointwise CI"], loc="lower center", ncol=3,
                   fontsize=7, frameon=False, bbox_to_anchor=(0.5, 0.0))
    if not scored:
        ax = fig.add_subplot(grid[0, 0])
        ax.text(0.5, 0.5, "no model with probabilities and both classes", ha="center", va="center")
        ax.set_axis_off()
    fig.suptitle(f"Calibration, {split} cohort", y=0.995 - 0.02 / rows)
    # nested grids do not go with tight_layout: the spacing is set above and the margins cropped on saving
    return save_figure(fig, path, svg=True, tight_bbox=True)


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
