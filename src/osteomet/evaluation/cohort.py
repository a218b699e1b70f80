"""Cohort characteristics table by label ("Table 1"): summaries and group tests, then odds ratios.

For each continuous variable the groups (label 0 vs 1) are checked for normality with the
one-sample Kolmogorov-Smirnov test on the standardised values of each group
(``scipy.stats.kstest``; parameters estimated from the data, as the seeds report it; pass
``normality="shapiro"`` for Shapiro-Wilk). If every group looks normal (p > ``normality_alpha``)
the groups are compared with the t-test (Student, or Welch with ``welch=True``) and summarised
as mean (SD); otherwise with the two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``;
R's ``wilcox.test`` convention) and summarised as median [Q1, Q3].

Categorical variables are compared with Pearson's chi-square test (``chi2_contingency``, Yates
correction on 2x2 tables like R's ``chisq.test``), or Fisher's exact test
(``scipy.stats.fisher_exact``, exact also for larger tables) when any expected count is below
``min_expected`` (5). Group-test p-values are Benjamini-Hochberg adjusted over variables
(``p_adj``).

The univariable and multivariable odds ratios beside each row come from
:mod:`osteomet.evaluation.odds_ratios`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from osteomet.evaluation._validate import as_labels
from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.multitest import benjamini_hochberg
from osteomet.evaluation.odds_ratios import add_odds_ratios, category_levels
from osteomet.utils.files import write_text_atomic


def _fmt(value: float, digits: int = 2) -> str:
    return "NA" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _is_normal(groups: Sequence[np.ndarray], method: str, alpha: float) -> bool:
    for g in groups:
        if g.size < 3 or np.std(g, ddof=1) == 0:
            return False
        if method == "ks":
            p = stats.kstest((g - g.mean()) / g.std(ddof=1), "norm").pvalue
        elif method == "shapiro":
            p = stats.shapiro(g).pvalue
        else:
            raise EvaluationInputError(f"unknown normality test {method!r}; use 'ks' or 'shapiro'")
        if p <= alpha:
            return False
    return True


def _continuous_summary(x: np.ndarray, normal: bool) -> str:
    if x.size == 0:
        return "NA"
    if normal:
        return f"{_fmt(x.mean())} ({_fmt(x.std(ddof=1) if x.size > 1 else math.nan)})"
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}]"


def characteristics_table(
    frame: pd.DataFrame,
    label: str = "label",
    continuous: Sequence[str] = (),
    categorical: Sequence[str] = (),
    *,
    normality: str = "ks",
    normality_alpha: float = 0.05,
    welch: bool = False,
    min_expected: float = 5.0,
    odds_ratios: bool = True,
    level: float = 0.95,
) -> pd.DataFrame:
    """Characteristics by label: one row per continuous variable, per categorical variable and per level.

    Columns: ``variable, level, summary, overall, <label>=0, <label>=1, n_missing, test, statistic,
    p, p_adj``, then (when ``odds_ratios``)
    ``or_uni, or_uni_low, or_uni_high, p_uni, or_multi, or_multi_low, or_multi_high, p_multi``,
    ``or_ref`` and ``or_note`` (why an OR is NA, e.g. an aliased column). Counts are ``n (%)``
    within each column. The ``statistic`` is t, U, chi-square, or the 2x2 Fisher odds ratio.
    """
    columns = [label, *continuous, *categorical]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvaluationInputError(f"characteristics table: column(s) {missing} not in the data")
    overlap = set(continuous) & set(categorical)
    if overlap:
        raise EvaluationInputError(f"variable(s) {sorted(overlap)} listed as both continuous and categorical")
    if frame[label].isna().any():
        raise EvaluationInputError(
            f"label column {label!r} has {int(frame[label].isna().sum())} missing value(s); "
            "drop unlabelled patients first"
        )
    y = as_labels(frame[label].to_numpy(), label)
    if y.all() or not y.any():
        raise EvaluationInputError(f"label column {label!r} has only one class; nothing to compare")
    for var in continuous:
        if not pd.api.types.is_numeric_dtype(frame[var]):
            raise EvaluationInputError(f"continuous variable {var!r} is not numeric (dtype {frame[var].dtype})")

    g0, g1 = f"{label}=0", f"{label}=1"
    rows: list[dict[str, Any]] = [
        {"variable": "n", "level": "", "overall": str(y.size), g0: str(int((~y).sum())), g1: str(int(y.sum()))}
    ]
    for var in continuous:
        x = frame[var].to_numpy(dtype=float)
        ok = ~np.isnan(x)
        a, b = x[ok & ~y], x[ok & y]
        normal = _is_normal((a, b), normality, normality_alpha)
        if a.size < 2 or b.size < 2:
            test, stat, p = "none", math.nan, math.nan
        elif normal:
            res = stats.ttest_ind(a, b, equal_var=not welch)
            test, stat, p = ("Welch t-test" if welch else "t-test"), float(res.statistic), float(res.pvalue)
        else:
            res = stats.mannwhitneyu(a, b, alternative="two-sided")
            test, stat, p = "Mann-Whitney U", float(res.statistic), float(res.pvalue)
        rows.append(
            {
                "variable": var,
                "level": "",
                "overall": _continuous_summary(x[ok], normal),
                g0: _continuous_summary(a, normal),
                g1: _continuous_summary(b, normal),
                "summary": "mean (SD)" if normal else "median [Q1, Q3]",
                "n_missing": int((~ok).sum()),
                "test": test,
                "statistic": stat,
                "p": p,
            }
        )
    for var in categorical:
        col = frame[var]
        ok = col.notna().to_numpy()
        levels = category_levels(col)
        table = pd.crosstab(pd.Categorical(col[ok], categories=levels), y[ok]).reindex(
            columns=[False, True], fill_value=0
        )
        counts = table.to_numpy()
        test, stat, p = "none", math.nan, math.nan
        if counts.shape[0] >= 2 and (counts.sum(axis=0) > 0).all():
            chi2, p_chi, _, expected = stats.chi2_contingency(counts)
            if (expected < min_expected).any():
                res = stats.fisher_exact(counts)
                # statistic: the odds ratio for 2x2; for larger tables scipy's is a table probability, not reported
                stat = float(res.statistic) if counts.shape == (2, 2) else math.nan
                test, p = "Fisher exact", float(res.pvalue)
            else:
                test, stat, p = "chi-square", float(chi2), float(p_chi)
        rows.append(
            {
                "variable": var,
                "level": "",
                "summary": "n (%)",
                "n_missing": int((~ok).sum()),
                "test": test,
                "statistic": stat,
                "p": p,
            }
        )
        n_all, n0, n1 = counts.sum(), counts[:, 0].sum(), counts[:, 1].sum()
        for i, lev in enumerate(levels):
            c0, c1 = int(counts[i, 0]), int(counts[i, 1])
            rows.append(
                {
                    "variable": var,
                    "level": str(lev),
                    "overall": f"{c0 + c1} ({_fmt(100 * (c0 + c1) / n_all if n_all else math.nan, 1)}%)",
                    g0: f"{c0} ({_fmt(100 * c0 / n0 if n0 else math.nan, 1)}%)",
                    g1: f"{c1} ({_fmt(100 * c1 / n1 if n1 else math.nan, 1)}%)",
                }
            )

    out = pd.DataFrame(rows)
    for col in ("summary", "n_missing", "test", "statistic", "p"):
        if col not in out.columns:
            out[col] = np.nan
    out = out[["variable", "level", "summary", "overall", g0, g1, "n_missing", "test", "statistic", "p"]]
    header = out["level"].eq("") & out["variable"].ne("n")
    out["p_adj"] = np.nan
    out.loc[header, "p_adj"] = benjamini_hochberg(out.loc[header, "p"].to_numpy(dtype=float))
    if odds_ratios and (continuous or categorical):
        out = add_odds_ratios(out, frame, y, continuous, categorical, level)
    return out.reset_index(drop=True)


def write_characteristics_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as CSV atomically (temp file, then rename)."""
    return write_text_atomic(path, table.to_csv(index=False))
