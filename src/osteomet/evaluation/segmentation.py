"""Per-case segmentation overlap (Dice, precision, recall) and paired model comparison.

This is the one implementation of the per-case overlap metrics in osteomet
(``osteomet.evaluation.segmentation.overlap`` is meant to re-export it).

Empty-mask convention (voxel level, boolean masks):

* prediction and reference both empty: Dice = precision = recall = 1 (nothing to find,
  nothing found: a lesion-free case that the model leaves empty is a correct case; note that
  nnU-Net's evaluation reports NaN here instead, so say which convention a table uses);
* only the reference empty (false positives only): Dice = 0, precision = 0, recall = NaN;
* only the prediction empty (missed lesion): Dice = 0, precision = NaN, recall = 0.

NaN means "undefined for this case", so means over cases should use ``nanmean`` and say how
many cases were defined: :func:`summarise_overlap` (the per-patient summary of every
segmentation table, MRI and CT) does so.

:func:`compare_models` tests models against each other on the same cases with the paired t-test
(``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
zero differences dropped: Wilcoxon's original method, R's ``wilcox.test(paired = TRUE)``
default), then adjusts the p-values over all model pairs (Holm or Benjamini-Hochberg).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.multitest import adjust as adjust_pvalues

#: The per-case overlap metrics, in the order tables report them.
OVERLAP_METRICS: tuple[str, ...] = ("dice", "precision", "recall")


def overlap(prediction: Any, reference: Any) -> dict[str, float]:
    """Dice, precision and recall of a binary prediction against a binary reference (same shape)."""
    p, r = np.asarray(prediction).astype(bool), np.asarray(reference).astype(bool)
    if p.shape != r.shape:
        raise EvaluationInputError(f"prediction shape {p.shape} != reference shape {r.shape}")
    tp = float(np.count_nonzero(p & r))
    n_p, n_r = float(np.count_nonzero(p)), float(np.count_nonzero(r))
    if n_p == 0 and n_r == 0:
        return {"dice": 1.0, "precision": 1.0, "recall": 1.0}
    return {
        "dice": 2.0 * tp / (n_p + n_r),
        "precision": tp / n_p if n_p else math.nan,
        "recall": tp / n_r if n_r else math.nan,
    }


def summarise_overlap(per_case: pd.DataFrame, by: str, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per group of ``by`` (in order of first appearance) and metric of :data:`OVERLAP_METRICS` present.

    Columns: ``by``, metric, n (cases where the metric is defined), n_undefined (NaN cases, left
    out), mean with its percentile-bootstrap 95% CI over cases (the unit sampled), SD, median and
    the quartiles q1, q3. A metric defined for no case of a group gets n = 0 and NaN statistics.
    """
    from osteomet.evaluation.bootstrap import bootstrap_mean

    rows = []
    for group_name, group in per_case.groupby(by, sort=False):
        for metric in OVERLAP_METRICS:
            if metric not in group:
                continue
            values = group[metric].astype(float)
            defined = values.dropna()
            ci = bootstrap_mean(defined, n_resamples, seed) if defined.size else None
            rows.append({by: group_name, "metric": metric, "n": int(defined.size),
                         "n_undefined": int(values.isna().sum()), "mean": defined.mean(),
                         "ci_low": ci.low if ci else np.nan, "ci_high": ci.high if ci else np.nan,
                         "sd": defined.std(ddof=1),
                         "median": defined.median(), "q1": defined.quantile(0.25), "q3": defined.quantile(0.75)})
    return pd.DataFrame(rows)


COMPARISON_COLUMNS: tuple[str, ...] = (
    "model_a",
    "model_b",
    "n",
    "mean_diff",
    "t_stat",
    "t_p",
    "wilcoxon_stat",
    "wilcoxon_p",
    "t_p_adj",
    "wilcoxon_p_adj",
)


def _paired_tests(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    diff = a - b
    if diff.size < 2:
        return (math.nan,) * 4
    if np.all(diff == diff[0]):  # zero variance: t undefined; Wilcoxon undefined if all zero
        t_stat, t_p = (0.0, 1.0) if diff[0] == 0 else (math.copysign(math.inf, diff[0]), 0.0)
    else:
        res = stats.ttest_rel(a, b)
        t_stat, t_p = float(res.statistic), float(res.pvalue)
    if np.all(diff == 0):
        w_stat, w_p = math.nan, 1.0
    else:
        res_w = stats.wilcoxon(a, b, zero_method="wilcox")
        w_stat, w_p = float(res_w.statistic), float(res_w.pvalue)
    return t_stat, t_p, w_stat, w_p


def compare_models(per_case: pd.DataFrame, metric: str = "dice", adjust: str = "holm") -> pd.DataFrame:
    """Paired comparison of every pair of models on the cases both have a (non-NaN) value for.

    ``per_case`` is long format: one row per (case_id, model) with the metric column. Returns
    one row per model pair (in order of first appearance) with ``mean_diff = mean(a - b)``,
    the paired t and Wilcoxon statistics and p-values, and the p-values adjusted over all pairs.
    """
    missing = {"case_id", "model", metric} - set(per_case.columns)
    if missing:
        raise EvaluationInputError(f"per-case table lacks column(s) {sorted(missing)}")
    dup = per_case.duplicated(["case_id", "model"])
    if dup.any():
        first = per_case.loc[dup, ["case_id", "model"]].iloc[0]
        raise EvaluationInputError(f"case {first['case_id']!r} appears more than once for model {first['model']!r}")
    wide = per_case.pivot(index="case_id", columns="model", values=metric)
    models = list(pd.unique(per_case["model"]))
    if len(models) < 2:
        raise EvaluationInputError(f"compare_models needs at least two models, got {models}")
    rows = []
    for a_name, b_name in itertools.combinations(models, 2):
        pair = wide[[a_name, b_name]].astype(float).dropna()
        a, b = pair[a_name].to_numpy(), pair[b_name].to_numpy()
        t_stat, t_p, w_stat, w_p = _paired_tests(a, b)
        rows.append(
            {
                "model_a": a_name,
                "model_b": b_name,
                "n": int(a.size),
                "mean_diff": float(np.mean(a - b)) if a.size else math.nan,
                "t_stat": t_stat,
                "t_p": t_p,
                "wilcoxon_stat": w_stat,
                "wilcoxon_p": w_p,
            }
        )
    table = pd.DataFrame(rows)
    table["t_p_adj"] = adjust_pvalues(table["t_p"].to_numpy(), adjust)
    table["wilcoxon_p_adj"] = adjust_pvalues(table["wilcoxon_p"].to_numpy(), adjust)
    return table[list(COMPARISON_COLUMNS)]
