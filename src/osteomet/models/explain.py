"""SHAP explanations of the XGBoost models (clinical, radiomics, fusion): per patient and per model.

``shap.TreeExplainer`` computes exact (path-dependent) Shapley values of the trees in log-odds:
for every patient the values of its features plus the explainer's expected value add up to the
model's margin (``output_margin=True``), so a contribution reads as "this feature moved the
log-odds of bone metastasis by that much". Values are computed on the matrix XGBoost sees
(``model.design``: the clinical columns, the selected radiomics features, the fusion columns),
missing values included: XGBoost routes them by its learnt default direction, and SHAP
follows the same path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

#: The XGBoost models a study explains, in report order.
EXPLAINED = ("clinical", "radiomics", "fusion")


def shap_files(name: str) -> dict[str, str]:
    """The file names one model's explanation writes in the run's ``explanations/`` folder."""
    return {"summary": f"{name}_shap_summary.png", "importance": f"{name}_shap_importance.csv",
            "values": f"{name}_shap_values.csv"}


@dataclass
class Explanation:
    """SHAP values (patients x features, log-odds), the feature values they explain and the expected value."""

    values: pd.DataFrame
    data: pd.DataFrame
    base: float

    def margin(self) -> pd.Series:
        """Expected value + sum of the SHAP values: the model's log-odds for each patient."""
        return self.base + self.values.sum(axis=1)

    def importance(self) -> pd.DataFrame:
        """Mean |SHAP| per feature (the global importance), largest first, with the mean signed value."""
        table = pd.DataFrame({"feature": self.values.columns, "mean_abs_shap": self.values.abs().mean().to_numpy(),
                              "mean_shap": self.values.mean().to_numpy()})
        table = table.sort_values(["mean_abs_shap", "feature"], ascending=[False, True], ignore_index=True)
        table.insert(0, "rank", np.arange(1, len(table) + 1))
        return table

    def top(self, row: Any, k: int) -> list[dict[str, Any]]:
        """The ``k`` largest contributions (by |SHAP|) of one patient (an index label of ``values``)."""
        shap_row, data_row = self.values.loc[row], self.data.loc[row]
        order = sorted(shap_row.index, key=lambda f: (-abs(float(shap_row[f])), f))[:k]
        return [{"feature": f, "value": _number(data_row[f]), "shap": float(shap_row[f])} for f in order]


def _number(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def explain(model: Any, X: pd.DataFrame) -> Explanation:
    """Exact tree SHAP values of a fitted clinical, radiomics or fusion model on the rows of ``X``."""
    import warnings

    with warnings.catch_warnings():  # shap's colour maps use matplotlib calls that warn of a future deprecation
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    if model.classifier is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted")
    design = model.design(X).astype(float)
    explainer = shap.TreeExplainer(model.classifier)
    values = np.asarray(explainer.shap_values(design.to_numpy()), dtype=float)
    base = float(np.ravel(explainer.expected_value)[0])
    return Explanation(pd.DataFrame(values, index=design.index, columns=design.columns), design, base)


def summary_figure(explanation: Explanation, title: str, max_features: int = 15) -> Any:
    """Beeswarm-style summary: one row per feature (largest mean |SHAP| on top), one dot per patient, coloured by
    the feature's value (low blue, high red, missing grey), beside a bar of the mean |SHAP|."""
    from osteomet.utils.figures import pyplot

    plt = pyplot()
    importance = explanation.importance().head(max_features)
    features = list(importance["feature"])[::-1]
    height = 1.2 + 0.32 * len(features)
    fig, (swarm, bars) = plt.subplots(1, 2, figsize=(10, height), sharey=True,
                                      gridspec_kw={"width_ratios": [3, 1.2]})
    rng = np.random.default_rng(0)
    cmap = plt.get_cmap("coolwarm")
    for y, feature in enumerate(features):
        shap_values = explanation.values[feature].to_numpy()
        raw = explanation.data[feature].to_numpy(dtype=float)
        known = ~np.isnan(raw)
        colour = np.full(len(raw), 0.5)
        if known.sum() > 1:
            colour[known] = pd.Series(raw[known]).rank(pct=True).to_numpy()
        jitter = y + rng.uniform(-0.28, 0.28, len(raw))
        swarm.scatter(shap_values[known], jitter[known], c=cmap(colour[known]), s=9, alpha=0.8, linewidths=0)
        swarm.scatter(shap_values[~known], jitter[~known], c="0.6", s=9, alpha=0.8, linewidths=0)
    swarm.axvline(0, color="0.4", linewidth=0.8)
    swarm.set_yticks(range(len(features)), [_short(f) for f in features], fontsize=8)
    swarm.set_xlabel("SHAP value (change in log-odds of bone metastasis)")
    swarm.set_title(title, fontsize=10)
    bars.barh(range(len(features)), importance["mean_abs_shap"].to_numpy()[::-1], color="0.45")
    bars.set_xlabel("mean |SHAP|")
    scale = plt.cm.ScalarMappable(cmap=cmap)
    bar = fig.colorbar(scale, ax=swarm, pad=0.01, fraction=0.03, ticks=[0, 1])
    bar.ax.set_yticklabels(["low", "high"], fontsize=8)
    bar.set_label("feature value (grey: missing)", fontsize=8)
    return fig


def patient_figure(contributions: Mapping[str, Mapping[str, Any]], patient: str) -> Any:
    """One panel per model: the patient's top contributions as signed bars (red raises, blue lowers the risk)."""
    from osteomet.utils.figures import pyplot

    plt = pyplot()
    names = list(contributions)
    rows = max((len(c["top"]) for c in contributions.values()), default=1)
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 1.2 + 0.34 * rows), squeeze=False)
    for ax, name in zip(axes[0], names):
        entry = contributions[name]
        top = list(entry["top"])[::-1]
        values = [t["shap"] for t in top]
        ax.barh(range(len(top)), values, color=["#c0392b" if v > 0 else "#2e6da4" for v in values])
        labels = [f"{_short(t['feature'])} = {_value(t['value'])}" for t in top]
        ax.set_yticks(range(len(top)), labels, fontsize=7)
        ax.axvline(0, color="0.4", linewidth=0.8)
        ax.set_title(f"{name}: p = {entry['probability']:.3f}\nlog-odds {entry['base']:.2f} (average) "
                     f"-> {entry['margin']:.2f}", fontsize=9)
        ax.set_xlabel("SHAP (log-odds)", fontsize=8)
    fig.suptitle(f"Largest contributions, patient {patient}", fontsize=10)
    return fig


def contributions(model: Any, X: pd.DataFrame, k: int) -> dict[str, Any]:
    """One patient's (the single row of ``X``) top-``k`` contributions, expected value, margin and probability."""
    explanation = explain(model, X)
    row = explanation.values.index[0]
    margin = float(explanation.margin().iloc[0])
    return {"base": explanation.base, "margin": margin, "probability": 1.0 / (1.0 + math.exp(-margin)),
            "top": explanation.top(row, k)}


def _value(value: float | None) -> str:
    return "missing" if value is None else f"{value:.3g}"


def _short(name: str, width: int = 42) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]
