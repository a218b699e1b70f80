"""Nested tuning of the XGBoost models: a seeded grid scored by stratified k-fold CV AUC on the rows ``fit`` is given.

What is nested in what (nothing outside the training cohort ever takes part):

* **Final model.** ``fit`` on the training cohort first tunes on that cohort alone: each grid
  point is scored by the mean AUC of a stratified k-fold split of the training patients
  (seeded); validation, test and external patients are never passed in. The best point (ties
  go to the earlier grid row, so list simpler values first) is then fitted on every training
  patient.
* **Steps before XGBoost** (the radiomics selection, the fusion model's selection) are refitted
  on the fit rows of every CV fold, so no fold is scored by features chosen with its own
  patients (:meth:`Tunable.design_step`).
* **Out-of-fold training predictions** (:mod:`osteomet.models.out_of_fold`) refit the whole
  model per outer fold, tuning included (``nested_out_of_fold``, the default): each training
  patient is scored by a model whose hyper-parameters were chosen without that patient. With
  ``nested_out_of_fold: false`` the outer folds reuse the values tuned on the whole training
  cohort, which is faster but leaves a small optimism in the training rows (they took part in
  choosing the values that score them).

The number of trees is tuned without refitting: XGBoost builds trees in sequence with the same
seeded sampling, so the first ``n`` trees of a larger model are the model with ``n`` trees, and
one fit per remaining grid point scores every ``n_estimators`` value (``iteration_range``).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import pandas as pd

from osteomet.errors import InputError
from osteomet.layout import TUNING, TUNING_OUT_OF_FOLD
from osteomet.models.xgb import XGBConfig

#: Values searched by default: 3 depths x 2 learning rates x 2 child weights x 3 tree counts = 36 points
#: (12 fits per fold, the tree counts come from the largest fit).
DEFAULT_GRID: dict[str, list[float]] = {"max_depth": [2, 3, 4], "learning_rate": [0.03, 0.1],
                                        "min_child_weight": [1, 5], "n_estimators": [100, 200, 300]}
#: XGBoost settings a grid may name (integers are kept as integers).
TUNABLE = tuple(f.name for f in fields(XGBConfig) if f.name != "seed")
INTEGER = ("n_estimators", "max_depth")

Transform = Callable[[pd.DataFrame], np.ndarray]


class Tunable(Protocol):
    """A model whose steps before XGBoost can be fitted on some rows and applied to others."""

    def design_step(self, X: pd.DataFrame, y: np.ndarray) -> Transform: ...


@dataclass
class TuningConfig:
    """The grid, the CV folds and the seed of the fold split."""

    enabled: bool = True
    folds: int = 5
    grid: dict[str, list[float]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_GRID.items()})
    nested_out_of_fold: bool = True
    seed: int = 0

    def points(self) -> list[dict[str, float]]:
        """Every grid point, in grid order (the keys as given, the last varying fastest)."""
        unknown = sorted(set(self.grid) - set(TUNABLE))
        if unknown:
            raise InputError(f"tuning grid: unknown XGBoost setting(s) {unknown}; use {', '.join(TUNABLE)}")
        empty = [k for k, v in self.grid.items() if not v]
        if empty:
            raise InputError(f"tuning grid: no values for {empty}")
        names = list(self.grid)
        return [{k: (int(v) if k in INTEGER else float(v)) for k, v in zip(names, values)}
                for values in itertools.product(*(self.grid[k] for k in names))]


@dataclass
class TuningResult:
    """The chosen values, their CV AUC, and every grid point's scores (one row per point)."""

    chosen: dict[str, float]
    cv_auc: float
    folds: int
    n: int
    n_positive: int
    table: pd.DataFrame
    note: str = ""

    def summary(self) -> dict[str, Any]:
        """What the model's JSON records (the table goes to ``tuning.csv``)."""
        return {"chosen": self.chosen, "cv_auc": None if self.cv_auc != self.cv_auc else round(self.cv_auc, 6),
                "folds": self.folds, "n": self.n, "n_positive": self.n_positive, "points": len(self.table),
                "note": self.note}


def tune(model: Tunable, X: pd.DataFrame, y: Any, base: XGBConfig, config: TuningConfig) -> TuningResult:
    """Score every grid point by stratified k-fold CV AUC on ``X, y`` (the training rows only); pick the best.

    ``model.design_step`` is refitted on each fold's fit rows. With fewer than 2 patients of a
    class no CV is possible: the preset values are kept and the result says so.
    """
    from sklearn.model_selection import StratifiedKFold

    from osteomet.evaluation import auc

    y = np.asarray(y).astype(int)
    points = config.points()
    counts = np.bincount(y, minlength=2)
    k = int(min(config.folds, counts.min()))
    table = pd.DataFrame(points)
    if k < 2:
        table["mean_auc"] = np.nan
        return TuningResult({}, float("nan"), 0, len(y), int(counts[1]), table.assign(chosen=False),
                            note=f"only {int(counts.min())} training patient(s) of one class: not tuned, preset "
                                 f"values used")
    scores = np.full((len(points), k), np.nan)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed)
    groups = _tree_groups(points)
    for fold, (fit_rows, held_out) in enumerate(splitter.split(np.zeros(len(y)), y)):
        transform = model.design_step(X.iloc[fit_rows], y[fit_rows])
        A, B = transform(X.iloc[fit_rows]), transform(X.iloc[held_out])
        for settings, members in groups:
            trees = max(points[i].get("n_estimators", base.n_estimators) for i in members)
            classifier = replace(base, **settings, n_estimators=trees).classifier().fit(A, y[fit_rows])
            for i in members:
                n = points[i].get("n_estimators", base.n_estimators)
                scores[i, fold] = auc(y[held_out], classifier.predict_proba(B, iteration_range=(0, n))[:, 1])
    table["mean_auc"] = scores.mean(axis=1)
    table["sd_auc"] = scores.std(axis=1, ddof=1)
    for fold in range(k):
        table[f"auc_fold{fold + 1}"] = scores[:, fold]
    best = int(np.argmax(table["mean_auc"].to_numpy()))  # the first of equal means: grid order breaks ties
    table["rank"] = table["mean_auc"].rank(ascending=False, method="min").astype(int)
    table["chosen"] = False
    table.loc[best, "chosen"] = True
    return TuningResult(dict(points[best]), float(table.loc[best, "mean_auc"]), k, len(y), int(counts[1]), table)


def _tree_groups(points: list[dict[str, float]]) -> list[tuple[dict[str, float], list[int]]]:
    """Grid points that differ only in ``n_estimators``: one fit (of the most trees) scores them all."""
    groups: dict[tuple, list[int]] = {}
    for i, point in enumerate(points):
        key = tuple(sorted((k, v) for k, v in point.items() if k != "n_estimators"))
        groups.setdefault(key, []).append(i)
    return [(dict(key), members) for key, members in groups.items()]


def tuned_xgb(base: XGBConfig, result: TuningResult | None) -> XGBConfig:
    """The XGBoost settings a fit uses: the preset with the chosen values in place."""
    return replace(base, **result.chosen) if result is not None and result.chosen else base


def tuning_record(config: TuningConfig | None, result: TuningResult | None, base: XGBConfig) -> dict[str, Any] | None:
    """The ``tuning`` entry of a model's JSON: settings, preset, chosen values and their CV AUC."""
    if config is None or not config.enabled or result is None:
        return None
    return {"settings": asdict(config), "preset": asdict(base), **result.summary()}


def maybe_tune(model: Tunable, X: pd.DataFrame, y: np.ndarray, base: XGBConfig,
               config: TuningConfig | None) -> TuningResult | None:
    """:func:`tune` when ``config`` is enabled, else None (the preset is used as it is)."""
    if config is None or not config.enabled:
        return None
    return tune(model, X, y, base, config)


def tuning_config(data: Mapping[str, Any] | None) -> TuningConfig | None:
    """A :class:`TuningConfig` from its JSON form (None stays None)."""
    return None if data is None else TuningConfig(**dict(data))


def refit_factory(model: Any) -> Callable[[], Any]:
    """Fresh copies of a fitted model for the out-of-fold refits; each remembered (its tuning is recorded).

    Nested (the default): every copy tunes again on its own fit rows. Otherwise the copies
    reuse the values chosen on the whole training cohort.
    """
    nested = model.tuning is None or model.tuning.nested_out_of_fold
    made: list[Any] = []

    def make() -> Any:
        fresh = model.fresh(nested=nested)
        made.append(fresh)
        return fresh

    make.made = made  # type: ignore[attr-defined]
    return make


def write_tuning(out: str | Any, model: Any, refits: Callable[[], Any] | None = None) -> None:
    """``tuning.csv`` (every grid point of the final tuning) and ``tuning_out_of_fold.csv`` (each outer fold's choice).

    Both are removed when the model was not tuned, so a folder never shows a stale grid.
    """
    from pathlib import Path

    from osteomet.utils.files import write_text_atomic

    out = Path(out)
    final, outer = out / TUNING, out / TUNING_OUT_OF_FOLD
    if model.tuned is None:
        final.unlink(missing_ok=True)
        outer.unlink(missing_ok=True)
        return
    write_text_atomic(final, model.tuned.table.to_csv(index=False))
    rows = [{"fold": i + 1, **refit.tuned.chosen, "cv_auc": refit.tuned.cv_auc, "n": refit.tuned.n}
            for i, refit in enumerate(getattr(refits, "made", [])) if getattr(refit, "tuned", None) is not None]
    if rows:
        write_text_atomic(outer, pd.DataFrame(rows).to_csv(index=False))
    else:
        outer.unlink(missing_ok=True)
