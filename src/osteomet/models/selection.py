"""Feature selection fitted on training patients only.

Three steps, each recorded so the fitted selector can be saved as JSON and re-applied:
1. variance: drop features (near) constant on the training set;
2. correlation: walk features from most to least univariately discriminative
   (|AUC - 0.5|) and drop any whose |Pearson r| with an already kept one exceeds the
   threshold (0.9), so of each redundant group the most informative survives;
3. LASSO: L1 logistic regression on standardised features, its strength chosen by
   stratified cross-validated AUC; features with non-zero weight are kept (at most
   ``max_features``, largest |weight| first). When LASSO keeps nothing (weak signal,
   tiny cohorts), the ``max_features`` best by univariate AUC are kept instead and the
   fallback is recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from osteomet.errors import InputError


@dataclass
class SelectionConfig:
    variance_threshold: float = 1e-10
    correlation_threshold: float = 0.9
    max_features: int = 20
    lasso_cs: int = 12
    cv_folds: int = 5
    seed: int = 0


@dataclass
class FeatureSelector:
    config: SelectionConfig = field(default_factory=SelectionConfig)
    medians: dict[str, float] = field(default_factory=dict)
    after_variance: list[str] = field(default_factory=list)
    after_correlation: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    lasso_coef: dict[str, float] = field(default_factory=dict)
    fallback: bool = False

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> "FeatureSelector":
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold

        y = np.asarray(y).astype(int)
        X = X.astype(float)
        self.medians = {c: float(v) for c, v in X.median().fillna(0.0).items()}
        Xf = X.fillna(self.medians)
        variances = Xf.var(ddof=0)
        self.after_variance = [c for c in Xf.columns if variances[c] > self.config.variance_threshold]
        if not self.after_variance:
            raise InputError("every feature is constant on the training patients: nothing to select")
        Xv = Xf[self.after_variance]
        relevance = {c: abs(roc_auc_score(y, Xv[c]) - 0.5) for c in self.after_variance}
        order = sorted(self.after_variance, key=lambda c: (-relevance[c], c))
        standard = ((Xv - Xv.mean()) / Xv.std(ddof=0)).to_numpy()
        column_index = {c: i for i, c in enumerate(self.after_variance)}
        kept: list[int] = []
        for name in order:
            i = column_index[name]
            if kept:
                r = standard[:, kept].T @ standard[:, i] / len(y)
                if np.max(np.abs(r)) > self.config.correlation_threshold:
                    continue
            kept.append(i)
        self.after_correlation = [self.after_variance[i] for i in kept]

        Xc = Xv[self.after_correlation]
        Z = ((Xc - Xc.mean()) / Xc.std(ddof=0)).to_numpy()
        folds = min(self.config.cv_folds, int(np.bincount(y).min()))
        coef = np.zeros(Z.shape[1])
        if folds >= 2:
            # C up to 10 on standardised features: beyond that the L1 path is unregularised, and on nearly
            # separable training folds liblinear then spins to max_iter (minutes per fit) for nothing
            lasso = LogisticRegressionCV(
                Cs=np.logspace(-3, 1, self.config.lasso_cs), cv=StratifiedKFold(folds, shuffle=True, random_state=self.config.seed),
                l1_ratios=(1.0,), solver="liblinear", scoring="roc_auc", max_iter=5000,
                random_state=self.config.seed, use_legacy_attributes=False)
            lasso.fit(Z, y)
            coef = lasso.coef_.ravel()
        nonzero = [(abs(w), name, w) for name, w in zip(self.after_correlation, coef) if w != 0]
        if nonzero:
            nonzero.sort(key=lambda t: (-t[0], t[1]))
            chosen = nonzero[: self.config.max_features]
            self.selected = [name for _, name, _ in chosen]
            self.lasso_coef = {name: float(w) for _, name, w in chosen}
            self.fallback = False
        else:
            self.selected = self.after_correlation[: self.config.max_features]
            self.lasso_coef = {}
            self.fallback = True
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.selected if c not in X.columns]
        if missing:
            raise InputError(f"feature table lacks {len(missing)} selected feature(s), e.g. {missing[:3]}")
        return X[self.selected].astype(float)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSelector":
        data = dict(data)
        data["config"] = SelectionConfig(**data["config"])
        return cls(**data)
