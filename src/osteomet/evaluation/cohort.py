"""Cohort characteristics table by label ("Table 1") with tests and logistic odds ratios.

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

Odds ratios come from statsmodels ``Logit`` (maximum likelihood, Wald CIs and p-values):
univariable per variable on the patients that have it, and multivariable with all variables on
complete cases. Continuous variables give an OR per unit; categorical ones one OR per level
against the first (reference) level, which is marked ``ref``. A model that cannot be fitted
(perfect separation, non-convergence) gives NaN with a warning instead of a misleading number.

Aliased columns are handled as R's ``glm`` does. Study variables can be exactly collinear (ISUP
4-5 is Gleason >= 8, so the ISUP and Gleason groupings carry the same information); a fit of
the full design then has a singular information matrix and reports arbitrary ORs with p = 1.
Before fitting, a column in the span of the intercept and the columns before it (the pivoted-QR
rule of R's ``qr``, relative tolerance 1e-7: its residual after projecting on those columns is
below 1e-7 of its norm) is *aliased*: its OR, CI and p are NA and ``or_note`` names the columns
it duplicates (``"multivariable: aliased with gleason_group=>=8 - isup_group=4"``, the linear
combination R's ``alias()`` prints); the model is fitted on the remaining columns, which is
exactly R's fit (its NA coefficients are dropped columns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from osteomet.evaluation._validate import as_labels
from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.multitest import benjamini_hochberg
from osteomet.utils.files import write_text_atomic

OR_COLUMNS = ("or", "ci_low", "ci_high", "p")
ALIAS_TOL = 1e-7  # R's qr() default; exact collinearity leaves residuals near 1e-15


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


def _design(frame: pd.DataFrame, continuous: Sequence[str], categorical: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """Numeric design matrix (no intercept) and a map column -> (variable, level)."""
    parts, names = [], {}
    for var in continuous:
        parts.append(frame[[var]].astype(float))
        names[var] = (var, "")
    for var in categorical:
        levels = _levels(frame[var])
        col = pd.Categorical(frame[var], categories=levels)
        dummies = pd.get_dummies(col, prefix=var, prefix_sep="=", dtype=float).iloc[:, 1:]
        dummies.index = frame.index
        dummies[frame[var].isna().to_numpy()] = np.nan
        for level, name in zip(levels[1:], dummies.columns):
            names[name] = (var, str(level))
        parts.append(dummies)
    return (pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)), names


def _levels(series: pd.Series) -> list:
    """Levels in their declared order for a pandas Categorical (first = reference), else sorted."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(series.dropna().tolist())
        return [c for c in series.cat.categories if c in present]
    values = series.dropna().unique().tolist()
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _term(coef: float, name: str, first: bool) -> str:
    sign = "-" if coef < 0 else ("" if first else "+")
    size = abs(coef)
    text = name if abs(size - 1.0) < 1e-9 else f"{size:.6g}*{name}"
    return f"{sign} {text}".strip() if not first else f"{sign}{text}"


def aliased_columns(x: pd.DataFrame, tol: float = ALIAS_TOL) -> dict[str, str]:
    """Columns of ``x`` (an intercept is added first) in the span of the columns before them.

    Returns ``{column: note}``, the note naming the linear combination of earlier, kept columns
    the column equals (``"aliased with gleason_group=>=8 - isup_group=4"``), as R's ``glm``
    leaves such a column out and reports NA for it.
    """
    data = x.to_numpy(dtype=float)
    columns = [np.ones(data.shape[0]), *data.T]
    names = ["intercept", *map(str, x.columns)]
    kept: list[int] = []
    basis = np.zeros((data.shape[0], 0))
    notes: dict[str, str] = {}
    for j, column in enumerate(columns):
        norm = float(np.linalg.norm(column))
        residual = column - basis @ (basis.T @ column)
        residual = residual - basis @ (basis.T @ residual)  # second pass: Gram-Schmidt loses orthogonality once
        size = float(np.linalg.norm(residual))
        if size > tol * norm and norm > 0.0:
            kept.append(j)
            basis = np.column_stack([basis, residual / size])
            continue
        if j == 0:
            continue  # no rows: nothing to fit anyway
        if norm == 0.0:
            notes[names[j]] = "aliased: zero for every patient in the model (no patient at this level)"
            continue
        coef = np.linalg.lstsq(np.column_stack([columns[k] for k in kept]), column, rcond=None)[0]
        terms = [(c, names[k]) for c, k in zip(coef, kept) if abs(c) > 1e-6]
        text = " ".join(_term(c, n, i == 0) for i, (c, n) in enumerate(terms))
        notes[names[j]] = f"aliased with {text}"
    return notes


def _logit(y: np.ndarray, x: pd.DataFrame, level: float) -> pd.DataFrame:
    """OR, CI, p and a note per column of ``x``; aliased columns NA with a note, NaN on failure."""
    empty = pd.DataFrame(np.nan, index=x.columns, columns=list(OR_COLUMNS))
    empty["note"] = ""
    if x.shape[1] == 0 or y.all() or not y.any():
        return empty
    aliased = aliased_columns(x)
    for column, note in aliased.items():
        empty.loc[column, "note"] = note
    keep = [c for c in x.columns if c not in aliased]
    if aliased and keep:
        columns = ", ".join(f"{c} ({aliased[c]})" for c in aliased)
        warnings.warn(f"logistic regression on {list(x.columns)}: {columns}; not estimable, reported as NA "
                      "(as R's glm), the other columns fitted without them", RuntimeWarning, stacklevel=3)
    fitted = _fit_logit(y, x[keep], level) if keep else None
    if fitted is not None:
        empty.loc[keep, list(OR_COLUMNS)] = fitted.to_numpy()
    return empty


def _fit_logit(y: np.ndarray, x: pd.DataFrame, level: float) -> pd.DataFrame | None:
    """statsmodels Logit on a full-rank design: OR, CI and p per column (None on failure)."""
    import statsmodels.api as sm

    if x.shape[0] <= x.shape[1] + 1:
        return None
    from statsmodels.tools import sm_exceptions as sme

    design = sm.add_constant(x.to_numpy(dtype=float), has_constant="add")
    trouble = (sme.ConvergenceWarning, sme.HessianInversionWarning, sme.PerfectSeparationWarning)
    try:
        with warnings.catch_warnings():
            for category in trouble:  # separation / non-convergence: report NaN, not a wild OR
                warnings.simplefilter("error", category)
            fit = sm.Logit(y.astype(float), design).fit(disp=0, maxiter=200)
        if not np.all(np.isfinite(np.asarray(fit.bse))):
            raise np.linalg.LinAlgError("singular information matrix")
    except (*trouble, sme.PerfectSeparationError, np.linalg.LinAlgError) as exc:
        warnings.warn(f"logistic regression on {list(x.columns)} not fitted: {exc}", RuntimeWarning, stacklevel=4)
        return None
    ci = np.asarray(fit.conf_int(alpha=1.0 - level))[1:]
    params, pvalues = np.asarray(fit.params)[1:], np.asarray(fit.pvalues)[1:]
    return pd.DataFrame(
        {"or": np.exp(params), "ci_low": np.exp(ci[:, 0]), "ci_high": np.exp(ci[:, 1]), "p": pvalues},
        index=x.columns,
    )


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
        levels = _levels(col)
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
        out = _add_odds_ratios(out, frame, y, continuous, categorical, level)
    return out.reset_index(drop=True)


def _add_odds_ratios(
    out: pd.DataFrame,
    frame: pd.DataFrame,
    y: np.ndarray,
    continuous: Sequence[str],
    categorical: Sequence[str],
    level: float,
) -> pd.DataFrame:
    design, names = _design(frame, continuous, categorical)
    uni_parts = []
    for var in [*continuous, *categorical]:
        cols = [c for c, (v, _) in names.items() if v == var]
        sub = design[cols]
        ok = sub.notna().all(axis=1).to_numpy()
        uni_parts.append(_logit(y[ok], sub[ok], level))
    uni = pd.concat(uni_parts) if uni_parts else pd.DataFrame(columns=[*OR_COLUMNS, "note"])
    ok = design.notna().all(axis=1).to_numpy()
    multi = _logit(y[ok], design[ok], level)
    key = {names[c]: c for c in design.columns}
    reference = {var: str(_levels(frame[var])[0]) for var in categorical if frame[var].notna().any()}
    ref = [lev != "" and reference.get(var) == lev for var, lev in zip(out["variable"], out["level"])]
    notes: list[list[str]] = [[] for _ in range(len(out))]
    for prefix, res in (("uni", uni), ("multi", multi)):
        cols = [f"or_{prefix}", f"or_{prefix}_low", f"or_{prefix}_high", f"p_{prefix}"]
        values = []
        for var, lev, is_ref in zip(out["variable"], out["level"], ref):
            name = key.get((var, lev))
            if name is not None and name in res.index:
                values.append(res.loc[name, list(OR_COLUMNS)].to_numpy(dtype=float))
                if res.loc[name, "note"]:
                    notes[len(values) - 1].append(f"{prefix}variable: {res.loc[name, 'note']}")
            elif is_ref and np.isfinite(res.loc[[c for c, (v, _) in names.items() if v == var], "or"]).any():
                values.append(np.array([1.0, np.nan, np.nan, np.nan]))  # reference level: OR 1 by definition
            else:
                values.append(np.full(4, np.nan))
        out[cols] = np.vstack(values)
    out["or_ref"] = np.where(ref, "ref", "")
    out["or_note"] = ["; ".join(n) for n in notes]
    return out


def write_characteristics_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as CSV atomically (temp file, then rename)."""
    return write_text_atomic(path, table.to_csv(index=False))
